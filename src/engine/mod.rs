//! The engine: reconcile an environment (collect → decide → act), and for the daemon the
//! scheduler, the shared status, the metrics and the main loop.

pub mod daemon;
pub mod metrics;
pub mod reconcile;
pub mod scheduler;
pub mod status;

pub use reconcile::{EnvInput, Mode, Outcome, ServiceReport};
