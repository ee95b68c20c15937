//! The node's one fjall database and the codecs of everything persisted.
//!
//! # Layout
//! - [`codec`]: versioned bincode encoding of every persisted record.
//! - [`keys`]: key layouts of the keyspaces below.
//!
//! Keyspaces, each shared by every Raft group on the node (keys start with the group id):
//! - `raft_log`: log entries, `group | index`.
//! - `raft_state`: vote, committed, last purged, applied state and snapshot pointer per group.
//! - `data`: the state machines' records, `group | tag | fields…`.
//!
//! One journal serves all keyspaces, so one `persist(SyncData)` makes every pending append of
//! every group durable at once: the basis of group commit in [`crate::raft::log_store`].

pub mod codec;
pub mod keys;

use std::path::{Path, PathBuf};

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

/// A storage failure; the node cannot continue the operation.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// fjall failed.
    #[error("storage engine: {0}")]
    Engine(#[from] fjall::Error),
    /// A record did not decode.
    #[error("corrupt record: {0}")]
    Codec(#[from] codec::CodecError),
    /// A file operation failed.
    #[error("file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Result of storage operations.
pub type Result<T> = std::result::Result<T, StorageError>;

impl From<StorageError> for std::io::Error {
    fn from(error: StorageError) -> Self {
        std::io::Error::other(error)
    }
}

/// Handles to the node's database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    /// The database: owns the journal that `persist` syncs.
    pub db: Database,
    /// Raft log entries of every group.
    pub raft_log: Keyspace,
    /// Raft hard state and state-machine bookkeeping of every group.
    pub raft_state: Keyspace,
    /// State machine records of every group.
    pub data: Keyspace,
    /// Directory of state-machine snapshot files.
    pub snapshot_dir: PathBuf,
}

impl Store {
    /// Opens (or creates) the database under `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self> {
        let db_dir = data_dir.join("db");
        let snapshot_dir = data_dir.join("snapshots");
        std::fs::create_dir_all(&snapshot_dir).map_err(|source| StorageError::Io {
            path: snapshot_dir.clone(),
            source,
        })?;
        let db = Database::builder(&db_dir).open()?;
        let raft_log = db.keyspace("raft_log", KeyspaceCreateOptions::default)?;
        let raft_state = db.keyspace("raft_state", KeyspaceCreateOptions::default)?;
        let data = db.keyspace("data", KeyspaceCreateOptions::default)?;
        Ok(Self {
            db,
            raft_log,
            raft_state,
            data,
            snapshot_dir,
        })
    }

    /// Makes everything written so far durable (fdatasync of the journal).
    pub fn sync(&self) -> Result<()> {
        self.db.persist(PersistMode::SyncData)?;
        Ok(())
    }

    /// Reads and decodes a record.
    pub fn get<T: serde::de::DeserializeOwned>(
        &self,
        keyspace: &Keyspace,
        key: &[u8],
    ) -> Result<Option<T>> {
        match keyspace.get(key)? {
            Some(bytes) => Ok(Some(codec::decode(&bytes)?)),
            None => Ok(None),
        }
    }

    /// Decodes every record under `prefix`, in key order.
    pub fn scan<T: serde::de::DeserializeOwned>(
        &self,
        keyspace: &Keyspace,
        prefix: &[u8],
    ) -> Result<Vec<(Vec<u8>, T)>> {
        let mut records = Vec::new();
        for guard in keyspace.prefix(prefix) {
            let (key, value) = guard.into_inner()?;
            records.push((key.to_vec(), codec::decode(&value)?));
        }
        Ok(records)
    }
}
