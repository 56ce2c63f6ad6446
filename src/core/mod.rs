//! The pure core: no I/O, no async, no SDK types. Parsing and checking specs and config,
//! rendering desired state, normalising and diffing it against live state, and planning.

pub mod at;
pub mod config;
pub mod dashboard;
pub mod desired;
pub mod diag;
pub mod diff;
pub mod live;
pub mod memo;
pub mod plan;
pub mod render;
pub mod rollout;
pub mod routing;
pub mod schema;
pub mod spec;
#[cfg(test)]
pub(crate) mod testing;
pub mod yaml;
