//! Events read straight from stopped nodes' stores. The public API has no way to read events
//! back, so "every acknowledged event is readable" is checked where events live: each node's
//! fjall database, opened after the node stopped.
//!
//! This mirrors the key layout of `node/src/storage/keys.rs` (also in docs/ARCHITECTURE.md):
//! keyspace `data`, keys `group (u32 BE) | b'V' | project 0x00 endpoint 0x00 event id 0x00`.
//! If that layout changes, the scan finds no events and the check reports every acknowledged
//! event missing, naming this module.

use std::path::Path;

use anyhow::Context;
use fjall::{Database, KeyspaceCreateOptions};

use crate::checker::StoredEvents;

/// The keyspace of state-machine records.
const DATA_KEYSPACE: &str = "data";

/// The tag byte of a raw event record.
const EVENT_TAG: u8 = b'V';

/// Every event of `project_id` in the store under `data_dir` (a stopped node's `--data-dir`).
pub fn stored_events(data_dir: &Path, project_id: &str) -> anyhow::Result<StoredEvents> {
    let db_dir = data_dir.join("db");
    anyhow::ensure!(
        db_dir.is_dir(),
        "{} has no database directory (db/)",
        data_dir.display()
    );
    let db = Database::builder(&db_dir)
        .open()
        .with_context(|| format!("cannot open the store at {}", db_dir.display()))?;
    anyhow::ensure!(
        db.keyspace_exists(DATA_KEYSPACE),
        "the store at {} has no {DATA_KEYSPACE:?} keyspace; has the layout changed?",
        db_dir.display()
    );
    let data = db.keyspace(DATA_KEYSPACE, KeyspaceCreateOptions::default)?;
    let mut events = StoredEvents::new();
    for guard in data.iter() {
        let key = guard.key()?;
        if let Some((project, endpoint, event)) = parse_event_key(&key)
            && project == project_id
        {
            events.insert((endpoint, event));
        }
    }
    Ok(events)
}

/// (project, endpoint, event id) of an event record's key; `None` for any other record.
fn parse_event_key(key: &[u8]) -> Option<(String, String, String)> {
    if key.len() < 5 || key[4] != EVENT_TAG {
        return None;
    }
    let mut fields = key[5..].split(|&byte| byte == 0);
    let mut next = || {
        fields
            .next()
            .and_then(|field| String::from_utf8(field.to_vec()).ok())
    };
    let project = next()?;
    let endpoint = next()?;
    let event = next()?;
    // Exactly three fields, each terminated by 0x00: the split leaves one empty tail.
    (next().as_deref() == Some("") && next().is_none()).then_some((project, endpoint, event))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(group: u32, tag: u8, fields: &[&str]) -> Vec<u8> {
        let mut key = group.to_be_bytes().to_vec();
        key.push(tag);
        for field in fields {
            key.extend_from_slice(field.as_bytes());
            key.push(0);
        }
        key
    }

    /// Event keys decode into their fields; other records are skipped.
    #[test]
    fn parses_event_keys_only() {
        assert_eq!(
            parse_event_key(&key(3, b'V', &["p", "e1", "x1"])),
            Some(("p".into(), "e1".into(), "x1".into()))
        );
        assert_eq!(parse_event_key(&key(3, b'E', &["p", "e1"])), None);
        assert_eq!(parse_event_key(&key(3, b'V', &["p", "e1"])), None);
        assert_eq!(parse_event_key(&[0, 0]), None);
    }

    /// A store written with the node's layout is read back, filtered by project.
    #[test]
    fn reads_events_of_a_project_from_a_store() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = Database::builder(dir.path().join("db")).open().unwrap();
            let data = db
                .keyspace(DATA_KEYSPACE, KeyspaceCreateOptions::default)
                .unwrap();
            data.insert(key(1, b'V', &["p", "e1", "x1"]), b"event")
                .unwrap();
            data.insert(key(2, b'V', &["q", "e1", "x2"]), b"event")
                .unwrap();
            data.insert(key(2, b'E', &["p", "e1"]), b"endpoint")
                .unwrap();
            db.persist(fjall::PersistMode::SyncAll).unwrap();
        }
        let events = stored_events(dir.path(), "p").unwrap();
        assert_eq!(
            events.into_iter().collect::<Vec<_>>(),
            vec![("e1".to_string(), "x1".to_string())]
        );
        assert!(stored_events(&dir.path().join("missing"), "p").is_err());
    }
}
