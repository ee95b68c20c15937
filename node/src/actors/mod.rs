//! Node-local actors (ractor): one file per actor, its message enum first, then its state,
//! `impl Actor` and its tests.
//!
//! # Layout
//! - [`channel`]: the channel actors, a worker pool (ractor factory) per channel on this node
//!   that sends rendered messages through their providers and retries temporary failures.

pub mod channel;
