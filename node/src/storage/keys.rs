//! Key layouts. Every key starts with the Raft group id (u32, big-endian) so a group's
//! records are one contiguous range. String fields are separated by 0x00, which validation
//! keeps out of ids (no control characters).

/// Raft group id: 0 is the meta group, 1..=S the shards.
pub type GroupId = u32;

/// Tag bytes of the `data` keyspace.
pub mod tag {
    /// Meta: project record, `P | project`.
    pub const PROJECT: u8 = b'P';
    /// Meta: event type registered for a project, `T | project | type`.
    pub const EVENT_TYPE: u8 = b'T';
    /// Meta: a node of the cluster, `N | node id (20 digits)`.
    pub const NODE: u8 = b'N';
    /// Meta: placement of a shard, `S | shard (10 digits)`.
    pub const PLACEMENT: u8 = b'S';
    /// Meta: the cluster record (next node id), `C`.
    pub const CLUSTER: u8 = b'C';
    /// Meta: a template version, `L | project | type | name | version (10 digits)`.
    pub const TEMPLATE: u8 = b'L';
    /// Meta: a template's latest and active versions, `H | project | type | name`.
    pub const TEMPLATE_HEAD: u8 = b'H';
    /// Meta: a segment version, `G | project | segment | version (10 digits)`.
    pub const SEGMENT: u8 = b'G';
    /// Meta: a segment's latest version, `K | project | segment`.
    pub const SEGMENT_HEAD: u8 = b'K';
    /// Meta: an import job, `I | project | job`.
    pub const IMPORT_JOB: u8 = b'I';
    /// Meta: one channel's settings of a project, `Q | project | channel`.
    pub const CHANNEL: u8 = b'Q';
    /// Meta: a campaign version, `B | project | campaign | version (10 digits)`.
    pub const CAMPAIGN: u8 = b'B';
    /// Meta: a campaign's latest version, state and schedule progress, `J | project | campaign`.
    pub const CAMPAIGN_HEAD: u8 = b'J';
    /// Meta: a run of a campaign, `Z | project | campaign | run`.
    pub const CAMPAIGN_RUN: u8 = b'Z';
    /// Shard: endpoint record, `E | project | endpoint`.
    pub const ENDPOINT: u8 = b'E';
    /// Shard: user index entry, `U | project | user | endpoint`.
    pub const USER_INDEX: u8 = b'U';
    /// Shard: user index change not yet applied in the user's shard, `X | project | user | endpoint`.
    pub const PENDING_INDEX: u8 = b'X';
    /// Shard: raw event, `V | project | endpoint | event id`.
    pub const EVENT: u8 = b'V';
    /// Shard: endpoint activity (last seen, counts), `A | project | endpoint`.
    pub const ACTIVITY: u8 = b'A';
    /// Shard: request ids already applied, for deduplicating retried proposals, `R | id`.
    pub const REQUEST: u8 = b'R';
    /// Shard: an in-app message of an endpoint's inbox, `M | project | endpoint | message id`.
    pub const INBOX: u8 = b'M';
    /// Shard: a live one-time password, `O | project | otp key`.
    pub const OTP: u8 = b'O';
    /// Shard: the send intent of an endpoint in a run,
    /// `Y | project | campaign | run | endpoint | trigger`.
    pub const SEND_INTENT: u8 = b'Y';
    /// Shard: an intent with no outcome yet (same key as its intent after the tag).
    pub const PENDING_INTENT: u8 = b'W';
    /// Shard: an endpoint's cap counters, `D | project | endpoint`.
    pub const ENDPOINT_CAPS: u8 = b'D';
    /// Shard: this shard's part of a run, `F | project | campaign | run`.
    pub const RUN_PART: u8 = b'F';
    /// Shard: an endpoint's place in the imported segment of an import job (SEG-3),
    /// `i | project | endpoint | import job`; removed with the endpoint.
    pub const IMPORTED: u8 = b'i';
    /// Shard: the greatest endpoint id with an intent in a scheduled run (triggered intents
    /// aside), `h | project | campaign | run`: an endpoint beyond it has no intent yet, so
    /// committing its intent needs no lookup.
    pub const RUN_HIGH_WATER: u8 = b'h';
    /// Shard: KPI counts, `k | project | campaign | day (10 digits) | treatment (10 digits)`.
    pub const CAMPAIGN_KPI: u8 = b'k';
}

/// Raft state names in the `raft_state` keyspace.
pub mod state {
    /// The vote.
    pub const VOTE: u8 = b'v';
    /// The last committed log id.
    pub const COMMITTED: u8 = b'c';
    /// The last purged log id.
    pub const PURGED: u8 = b'p';
    /// Last applied log id and membership of the state machine.
    pub const APPLIED: u8 = b'a';
    /// The current snapshot's metadata and file name.
    pub const SNAPSHOT: u8 = b's';
    /// Node identity (group 0 only).
    pub const NODE: u8 = b'n';
}

/// `group` as the key prefix of its range.
pub fn group_prefix(group: GroupId) -> [u8; 4] {
    group.to_be_bytes()
}

/// A log entry key.
pub fn log_key(group: GroupId, index: u64) -> [u8; 12] {
    let mut key = [0u8; 12];
    key[..4].copy_from_slice(&group.to_be_bytes());
    key[4..].copy_from_slice(&index.to_be_bytes());
    key
}

/// The index in a log entry key.
pub fn log_index(key: &[u8]) -> u64 {
    u64::from_be_bytes(key[4..12].try_into().expect("log keys are 12 bytes"))
}

/// A raft state key.
pub fn state_key(group: GroupId, name: u8) -> [u8; 5] {
    let mut key = [0u8; 5];
    key[..4].copy_from_slice(&group.to_be_bytes());
    key[4] = name;
    key
}

/// A data key: group, tag, then each field followed by 0x00.
pub fn data_key(group: GroupId, tag: u8, fields: &[&str]) -> Vec<u8> {
    let mut key = Vec::with_capacity(5 + fields.iter().map(|f| f.len() + 1).sum::<usize>());
    key.extend_from_slice(&group.to_be_bytes());
    key.push(tag);
    for field in fields {
        key.extend_from_slice(field.as_bytes());
        key.push(0);
    }
    key
}

/// The fields of a data key made by [`data_key`].
pub fn data_fields(key: &[u8]) -> Vec<String> {
    key[5..]
        .split(|&b| b == 0)
        .filter(|part| !part.is_empty())
        .map(|part| String::from_utf8_lossy(part).into_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A prefix of fields selects exactly the records under it: `p1` does not match `p10`.
    #[test]
    fn prefixes_do_not_bleed() {
        let a = data_key(3, tag::ENDPOINT, &["p1", "e"]);
        let b = data_key(3, tag::ENDPOINT, &["p10", "e"]);
        let prefix = data_key(3, tag::ENDPOINT, &["p1"]);
        assert!(a.starts_with(&prefix));
        assert!(!b.starts_with(&prefix));
        assert_eq!(data_fields(&a), vec!["p1", "e"]);
        assert!(log_key(1, 5) < log_key(1, 6) && log_key(1, u64::MAX) < log_key(2, 0));
    }
}
