//! The engine: reconcile an environment (collect → decide → act), and (in the daemon) the
//! scheduler and shared status.

pub mod reconcile;

pub use reconcile::{EnvInput, Mode, Outcome, ServiceReport};
