//! The run's seed and a small deterministic generator, so that a failing run's random choices
//! (which keys, which node to fault, reads or writes) can be replayed with `CHAOS_SEED`.

use std::time::{SystemTime, UNIX_EPOCH};

/// The environment variable that fixes the seed of a run.
pub const SEED_ENV: &str = "CHAOS_SEED";

/// The seed of this run: `CHAOS_SEED` when set, otherwise derived from the clock and the
/// process id so that successive runs explore different choices.
pub fn seed_from_env() -> anyhow::Result<u64> {
    match std::env::var(SEED_ENV) {
        Ok(text) => text
            .trim()
            .parse()
            .map_err(|error| anyhow::anyhow!("{SEED_ENV}={text:?} is not a u64: {error}")),
        Err(_) => {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|elapsed| elapsed.as_nanos() as u64)
                .unwrap_or_default();
            Ok(SplitMix64::new(nanos ^ u64::from(std::process::id())).next_u64())
        }
    }
}

/// A seed for one scenario: the run's seed mixed with the scenario's name, so that replaying
/// one scenario alone reproduces its choices.
pub fn scenario_seed(run_seed: u64, scenario: &str) -> u64 {
    // FNV-1a of the name, then one SplitMix step to spread it.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in scenario.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    SplitMix64::new(run_seed ^ hash).next_u64()
}

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast and good enough to pick keys and faults.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    /// The generator's whole state; the next output is a function of it alone.
    state: u64,
}

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..bound`; `bound` must be positive.
    pub fn below(&mut self, bound: usize) -> usize {
        assert!(bound > 0, "below(0) has no possible value");
        (self.next_u64() % bound as u64) as usize
    }

    /// True with probability `percent` / 100.
    pub fn percent(&mut self, percent: u32) -> bool {
        self.next_u64() % 100 < u64::from(percent)
    }

    /// A generator for a sub-task (one client), independent of this one's later outputs.
    pub fn fork(&mut self) -> Self {
        Self::new(self.next_u64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same seed gives the same choices: a saved seed replays a run's decisions.
    #[test]
    fn same_seed_same_sequence() {
        let mut first = SplitMix64::new(42);
        let mut second = SplitMix64::new(42);
        let a: Vec<u64> = (0..16).map(|_| first.next_u64()).collect();
        let b: Vec<u64> = (0..16).map(|_| second.next_u64()).collect();
        assert_eq!(a, b);
        assert_ne!(SplitMix64::new(43).next_u64(), a[0]);
    }

    /// `below` stays in range and reaches every value of a small range.
    #[test]
    fn below_covers_its_range() {
        let mut rng = SplitMix64::new(7);
        let mut seen = [false; 5];
        for _ in 0..1_000 {
            seen[rng.below(5)] = true;
        }
        assert!(seen.iter().all(|&hit| hit), "{seen:?}");
    }

    /// Two scenarios of one run get different seeds; the same scenario gets the same one.
    #[test]
    fn scenario_seeds_differ_by_name() {
        assert_eq!(scenario_seed(1, "a"), scenario_seed(1, "a"));
        assert_ne!(scenario_seed(1, "a"), scenario_seed(1, "b"));
    }
}
