//! The Herald node: a self-hosted customer-engagement cluster.
//!
//! # Layout
//! - [`config`]: the node's configuration file, environment and validation.
//! - [`domain`]: pure rules (records, validation, hashing), no I/O.
//! - [`storage`]: the fjall database and the codecs of persisted records.
//! - [`raft`]: Raft groups: commands, log store, state machines, network, proposer.
//! - [`cluster`]: the node's groups and the operations the API calls.
//! - [`api`]: tonic adapters of the `herald.v1` services.
//! - [`server`]: starting and stopping a node.
//! - [`metrics`]: every Prometheus metric.
//! - [`channels`]: delivery of rendered messages to providers.
//! - [`actors`]: node-local ractor actors: the channel worker pools.
//! - [`cli`]: the client commands of the `herald` binary.
//! - [`bench`]: `herald bench` workloads.

pub mod actors;
pub mod api;
pub mod bench;
pub mod channels;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod domain;
pub mod metrics;
pub mod raft;
pub mod server;
pub mod storage;
