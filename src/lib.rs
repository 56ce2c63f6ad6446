//! berth: a GitOps agent for Amazon ECS.
//!
//! Map of the crate:
//! - [`core`]: the pure part. `spec` (the files users write: parse, check, overrides,
//!   templates, secret references), `config` (the agent config), `render` (desired state
//!   in AWS field names) and `desired` (those types).
//! - [`source`]: reading specs from a directory or a git repository.
//! - [`commands`]: one module per subcommand; glue only.
//! - [`cli`]: the clap definitions.

pub mod aws;
pub mod cli;
pub mod commands;
pub mod core;
pub mod engine;
pub mod server;
pub mod source;
