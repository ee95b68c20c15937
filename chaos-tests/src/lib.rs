//! Chaos tests for Herald: real `herald` processes on loopback, a workload recorded as a
//! history, injected faults (kill -9, SIGSTOP/SIGCONT, partitions, restarts, membership
//! changes) and a checker that says which property broke.
//!
//! The harness never links herald-node: it runs the binary `cargo test --workspace` builds
//! (see [`binary`]). Scenarios live in `tests/chaos.rs`; `CHAOS_SEED` replays a run's choices,
//! `CHAOS_LONG=1` runs longer with more faults, `CHAOS_ARTIFACTS` says where failed runs are
//! saved (default: `<temp>/herald-chaos`).
//!
//! # Layout
//! - [`scenario`]: what every test does around its faults: start, heal, read back, check, save.
//! - [`cluster`]: [`cluster::LocalCluster`], N `herald serve` processes and the faults.
//! - [`proxy`]: the fault-injecting TCP proxy in front of each peer port, and the network
//!   state that decides which links are blocked.
//! - [`socket_owner`]: which process opened a loopback connection (how a proxy tells callers
//!   apart).
//! - [`process`]: one node process: start, log, signals.
//! - [`status`]: the one parser of `herald cluster status --json`.
//! - [`workload`]: the clients, and the final reads.
//! - [`history`]: operations and faults with their times; saving and loading as JSON lines.
//! - [`checker`]: the properties, each a function over a history.
//! - [`campaign`]: a paced campaign run as a workload, and the exactly-once check over every
//!   node's outbox.
//! - [`stores`]: events read from stopped nodes' stores (the API cannot read events back).
//! - [`seed`]: the run's seed and a SplitMix64 generator.
//! - [`binary`]: finding (or building) the `herald` binary.
//! - [`ports`]: fixed loopback ports that survive restarts.
#![deny(missing_docs)]

pub mod binary;
pub mod campaign;
pub mod checker;
pub mod cluster;
pub mod history;
pub mod ports;
pub mod process;
pub mod proxy;
pub mod scenario;
pub mod seed;
pub mod socket_owner;
pub mod status;
pub mod stores;
pub mod workload;
