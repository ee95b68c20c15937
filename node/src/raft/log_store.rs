//! The Raft log of every group in one fjall keyspace, with group commit.
//!
//! `append` writes entries to the journal without syncing and hands its completion callback
//! to the node's [`FlushQueue`]; one thread syncs the journal once for every callback queued
//! meanwhile, whatever group it came from, then completes them all. Many concurrent appends
//! across shards thus cost one fdatasync.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::mpsc;

use openraft::alias::{LogIdOf, VoteOf};
use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, RaftLogStorage};
use openraft::{LogState, OptionalSend, RaftLogReader};

use super::{GroupId, TypeConfig};
use crate::storage::keys::{self, state};
use crate::storage::{Store, codec};

type Entry = <TypeConfig as openraft::RaftTypeConfig>::Entry;

/// Completions waiting for the next journal sync.
#[derive(Clone)]
pub struct FlushQueue {
    sender: mpsc::Sender<Flush>,
    thread: std::sync::Arc<std::sync::Mutex<Option<std::thread::JoinHandle<()>>>>,
}

enum Flush {
    /// Complete this append once the journal is synced.
    Append(IOFlushed<TypeConfig>),
    /// Sync what is queued and end the thread.
    Stop,
}

impl FlushQueue {
    /// Starts the sync thread for `store`.
    pub fn start(store: Store) -> Self {
        let (sender, receiver) = mpsc::channel::<Flush>();
        let thread = std::thread::Builder::new()
            .name("herald-fsync".into())
            .spawn(move || {
                let mut stop = false;
                while !stop {
                    let Ok(first) = receiver.recv() else { break };
                    let mut waiting = Vec::new();
                    for message in std::iter::once(first).chain(receiver.try_iter()) {
                        match message {
                            Flush::Append(callback) => waiting.push(callback),
                            Flush::Stop => stop = true,
                        }
                    }
                    let result = store.sync();
                    metrics::histogram!(crate::metrics::FSYNC_BATCH_SIZE)
                        .record(waiting.len() as f64);
                    for callback in waiting {
                        let outcome = match &result {
                            Ok(()) => Ok(()),
                            Err(error) => Err(io::Error::other(error.to_string())),
                        };
                        callback.io_completed(outcome);
                    }
                }
            })
            .expect("spawning the fsync thread");
        Self {
            sender,
            thread: std::sync::Arc::new(std::sync::Mutex::new(Some(thread))),
        }
    }

    fn submit(&self, callback: IOFlushed<TypeConfig>) -> io::Result<()> {
        self.sender
            .send(Flush::Append(callback))
            .map_err(|_| io::Error::other("fsync thread stopped"))
    }

    /// Syncs what is queued and stops the thread, releasing its handle on the database.
    pub fn stop(&self) {
        let _ = self.sender.send(Flush::Stop);
        if let Some(thread) = self.thread.lock().expect("lock").take() {
            let _ = thread.join();
        }
    }
}

/// The log of one group.
#[derive(Clone)]
pub struct LogStore {
    group: GroupId,
    store: Store,
    flush: FlushQueue,
}

impl LogStore {
    /// The log of `group` in `store`, syncing through `flush`.
    pub fn new(group: GroupId, store: Store, flush: FlushQueue) -> Self {
        Self {
            group,
            store,
            flush,
        }
    }

    fn read_state<T: serde::de::DeserializeOwned>(&self, name: u8) -> io::Result<Option<T>> {
        Ok(self
            .store
            .get(&self.store.raft_state, &keys::state_key(self.group, name))?)
    }

    fn write_state<T: serde::Serialize>(&self, name: u8, value: &T) -> io::Result<()> {
        self.store
            .raft_state
            .insert(keys::state_key(self.group, name), codec::encode(value))
            .map_err(io::Error::other)
    }

    /// Removes log entries with index in `from..to` (to exclusive, None = end).
    fn remove_range(&self, from: u64, to: Option<u64>) -> io::Result<()> {
        let start = keys::log_key(self.group, from);
        let end = match to {
            Some(to) => keys::log_key(self.group, to).to_vec(),
            None => (self.group + 1).to_be_bytes().to_vec(),
        };
        let mut batch = self.store.db.batch();
        for guard in self.store.raft_log.range(start.to_vec()..end) {
            let key = guard.key().map_err(io::Error::other)?;
            batch.remove(&self.store.raft_log, key);
        }
        batch.commit().map_err(io::Error::other)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let start = match range.start_bound() {
            Bound::Included(&i) => i,
            Bound::Excluded(&i) => i + 1,
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&i) => i.checked_add(1),
            Bound::Excluded(&i) => Some(i),
            Bound::Unbounded => None,
        };
        let end_key = match end {
            Some(end) => keys::log_key(self.group, end).to_vec(),
            None => (self.group + 1).to_be_bytes().to_vec(),
        };
        let mut entries = Vec::new();
        for guard in self
            .store
            .raft_log
            .range(keys::log_key(self.group, start).to_vec()..end_key)
        {
            let value = guard.value().map_err(io::Error::other)?;
            entries.push(codec::decode::<Entry>(&value).map_err(io::Error::other)?);
        }
        Ok(entries)
    }

    async fn read_vote(&mut self) -> Result<Option<VoteOf<TypeConfig>>, io::Error> {
        self.read_state(state::VOTE)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let last_purged: Option<LogIdOf<TypeConfig>> = self.read_state(state::PURGED)?;
        let prefix = keys::group_prefix(self.group);
        let last = match self.store.raft_log.prefix(prefix).next_back() {
            Some(guard) => {
                let value = guard.value().map_err(io::Error::other)?;
                Some(
                    codec::decode::<Entry>(&value)
                        .map_err(io::Error::other)?
                        .log_id(),
                )
            }
            None => last_purged,
        };
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &VoteOf<TypeConfig>) -> Result<(), io::Error> {
        self.write_state(state::VOTE, vote)?;
        // A vote must survive a crash before it is acted on.
        self.store.sync().map_err(io::Error::other)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogIdOf<TypeConfig>>,
    ) -> Result<(), io::Error> {
        self.write_state(state::COMMITTED, &committed)
    }

    async fn read_committed(&mut self) -> Result<Option<LogIdOf<TypeConfig>>, io::Error> {
        Ok(self
            .read_state::<Option<LogIdOf<TypeConfig>>>(state::COMMITTED)?
            .flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
    {
        let mut batch = self.store.db.batch();
        for entry in entries {
            batch.insert(
                &self.store.raft_log,
                keys::log_key(self.group, entry.index()),
                codec::encode(&entry),
            );
        }
        batch.commit().map_err(io::Error::other)?;
        self.flush.submit(callback)
    }

    async fn truncate_after(
        &mut self,
        last_log_id: Option<LogIdOf<TypeConfig>>,
    ) -> Result<(), io::Error> {
        let from = last_log_id.map_or(0, |id| id.index() + 1);
        self.remove_range(from, None)?;
        self.store.sync().map_err(io::Error::other)
    }

    async fn purge(&mut self, log_id: LogIdOf<TypeConfig>) -> Result<(), io::Error> {
        self.write_state(state::PURGED, &log_id)?;
        self.remove_range(0, Some(log_id.index() + 1))
    }
}
