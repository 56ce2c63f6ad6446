//! berth: a GitOps agent for Amazon ECS.
//!
//! Map of the crate (collect → decide → act):
//! - [`core`]: the pure part, no I/O. `spec` (the files users write: parse, check,
//!   overrides, templates, secret references), `config` (the agent config), `render`
//!   (desired state in AWS field names), `desired` and `live` (those types), `diff`, `plan`
//!   (one step per resource kind), `memo` (what a daemon reuses between cycles), `rollout`,
//!   `schema` (the JSON Schemas' patterns, ranges and required fields).
//! - [`source`]: reading specs from a directory or a git repository (the edge for files,
//!   git and the credentials they need).
//! - [`aws`]: the AWS SDK adapters; SDK types never leave it.
//! - [`engine`]: reconciling an environment (`reconcile`: collect, decide, act over one
//!   table), outcomes and their projections, the daemon's loop and per-service state,
//!   status and metrics, and the `Cloud` port the engine uses; `history` (the state
//!   table), `notify` (the sinks), the daemon's `lease` (leader election), `task` (one-off
//!   tasks waited for).
//! - [`server`]: `/metrics`, `/healthz`, `/readyz`, `/status`, `/api/v1/sync` and the webhook.
//! - [`page`]: the status page (`GET /`, `GET /services/{env}/{name}`), server-rendered.
//! - [`http`]: the one HTTP client of berth's own requests (the CLI to the daemon,
//!   notification sinks).
//! - [`commands`]: one module per subcommand; glue only.
//! - [`cli`]: the clap definitions.

pub mod aws;
pub mod cli;
pub mod commands;
pub mod core;
pub mod engine;
pub mod http;
pub mod page;
pub mod server;
pub mod source;
