//! The engine: reconcile an environment (collect → decide → act), and for the daemon the
//! services' state, the shared status, the metrics and the main loop.
//!
//! - [`outcome`]: what a reconcile found for a service, and every projection of it (sync,
//!   health, metric label, verdict, text, retry delay).
//! - [`reconcile`]: one environment, once: [`reconcile::reconcile_env`].
//! - [`cloud`]: the port to AWS the engine and the daemon use.
//! - [`scheduler`]: the daemon's per-(env, service) state: backoff, settled, watches.
//! - [`status`], [`metrics`]: what `/status` and `/metrics` show.
//! - [`daemon`]: the loop.

pub mod cloud;
pub mod daemon;
pub mod history;
pub mod metrics;
pub mod notify;
pub mod outcome;
pub mod reconcile;
pub mod scheduler;
pub mod status;
pub mod task;

pub use outcome::{Failure, Hold, Outcome};
pub use reconcile::{EnvInput, Mode, ServiceReport};
