//! The one stable hash Herald uses to place records and split audiences.
//!
//! It must never change for an existing cluster: shard of a record and cohort of an endpoint
//! are derived from it and persisted implicitly in where data lives.

/// 64-bit FNV-1a over the given parts, each followed by a 0xff separator so that
/// `("ab", "c")` and `("a", "bc")` differ.
pub fn stable_hash(parts: &[&str]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET;
    for part in parts {
        for byte in part.bytes().chain(std::iter::once(0xff)) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(PRIME);
        }
    }
    hash
}

/// Shard (0-based) of a key within a project, for `shard_count` shards.
pub fn shard_of(project_id: &str, key: &str, shard_count: u32) -> u32 {
    (stable_hash(&[project_id, key]) % u64::from(shard_count)) as u32
}

/// Cohort 0–99 of an endpoint: stable, so A/B splits and holdouts never reshuffle.
pub fn cohort_of(project_id: &str, endpoint_id: &str) -> u8 {
    // A different salt than placement, so cohorts are independent of shards.
    (stable_hash(&["cohort", project_id, endpoint_id]) % 100) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Placement and cohorts are persisted implicitly, so the hash must not drift between
    /// releases: these values are fixed forever.
    #[test]
    fn hash_values_are_fixed() {
        assert_eq!(stable_hash(&[]), 0xcbf2_9ce4_8422_2325);
        assert_ne!(stable_hash(&["ab", "c"]), stable_hash(&["a", "bc"]));
        let cohort = cohort_of("p1", "e1");
        assert!(cohort < 100);
        assert_eq!(cohort, cohort_of("p1", "e1"));
    }

    /// Cohorts spread evenly enough that a 10% holdout is about 10% of endpoints.
    #[test]
    fn cohorts_spread_evenly() {
        let mut counts = [0u32; 100];
        for i in 0..100_000 {
            counts[usize::from(cohort_of("p", &format!("endpoint-{i}")))] += 1;
        }
        let below_ten: u32 = counts[..10].iter().sum();
        assert!((9_000..11_000).contains(&below_ten), "{below_ten}");
    }
}
