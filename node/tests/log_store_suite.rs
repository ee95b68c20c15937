//! The Raft log store passes openraft's own storage test suite: the contract every log store
//! must meet (append, truncate, purge, vote, membership recovery), on real fjall storage.

use herald_node::raft::TypeConfig;
use herald_node::raft::log_store::{FlushQueue, LogStore};
use herald_node::raft::state_machine::StateMachine;
use herald_node::storage::Store;
use openraft::StorageError;
use openraft::testing::log::{StoreBuilder, Suite};

struct FjallBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for FjallBuilder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<TypeConfig>> {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = Store::open(dir.path()).expect("open store");
        let flush = FlushQueue::start(store.clone());
        // A shard group, not group 0, so keys of other groups would show up if ranges leaked.
        let log = LogStore::new(3, store.clone(), flush);
        let state_machine = StateMachine::new(3, store).expect("state machine");
        Ok((dir, log, state_machine))
    }
}

/// Every test of openraft's log-store suite passes against the fjall log store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fjall_log_store_passes_openraft_suite() -> Result<(), StorageError<TypeConfig>> {
    Suite::test_all(FjallBuilder).await
}
