//! Pure rules with no I/O: the records Herald stores and the checks they must pass.
//!
//! # Layout
//! - [`campaign`]: campaigns, treatments and holdout by cohort, event filters, caps, send intents, run counts and KPIs (SPEC CMP).
//! - [`channel`]: per-project channel settings and the origination identity rule (SPEC PRJ-3, CHN-4).
//! - [`endpoint`]: endpoints, users and their validation (SPEC END-1..4).
//! - [`event`]: events and their validation (SPEC EVT-1..3).
//! - [`project`]: projects and their settings (SPEC PRJ-1, PRJ-2).
//! - [`limits`]: the configurable limits table of SPEC.
//! - [`violation`]: a bad field, named by path, with the reason.
//! - [`import_job`]: import jobs, their states and bounded row errors (SPEC SEG-3, DAT-1).
//! - [`hashing`]: the stable hash behind shard placement and cohorts.
//! - [`placement`]: nodes, shard placements and the placement plan.
//! - [`segment`]: segment definitions, their validation and the plain evaluator (SPEC SEG-1, SEG-2).
//! - [`segment_index`]: a shard's columnar index of endpoints for fast segment counts and members.
//! - [`message`]: direct sends: content per channel, message events, in-app inbox messages.
//! - [`schedule`]: campaign schedules: run times, when each endpoint is due, quiet time (SPEC CMP-2, CMP-3).
//! - [`rate`]: the token bucket behind channel rate limits and each channel's limit (SPEC CHN-2).
//! - [`otp`]: one-time passwords: request rules, the hashed record, verification.
//! - [`template`]: message templates, their validation and personalization (SPEC TPL-1..3).

pub mod campaign;
pub mod channel;
pub mod endpoint;
pub mod event;
pub mod hashing;
pub mod import_job;
pub mod limits;
pub mod message;
pub mod otp;
pub mod placement;
pub mod project;
pub mod rate;
pub mod schedule;
pub mod segment;
pub mod segment_index;
pub mod template;
pub mod violation;

pub use violation::FieldViolation;
