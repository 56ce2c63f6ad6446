//! One-off tasks (`berth run`, a spec's before-deploy task): waited for until they stop.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::cloud::Cloud;
use crate::aws::AwsError;

/// How a one-off task ended, or why berth stopped waiting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskEnd {
    /// Its container exited with `code`; `reason` is ECS's stopped reason.
    Exited { code: i32, reason: Option<String> },
    /// Stopped before the container ran (an image that cannot be pulled, a secret, capacity).
    NotStarted(String),
    /// ECS no longer knows it.
    Gone,
    /// Still running after the timeout (left running).
    TimedOut,
    /// `cancel` fired while it ran.
    Cancelled,
}

/// Looks at task `arn` every `poll` until it stops, for at most `timeout`.
pub async fn wait<C: Cloud>(
    cloud: &C,
    cluster: &str,
    arn: &str,
    container: &str,
    poll: Duration,
    timeout: Duration,
    cancel: &CancellationToken,
) -> Result<TaskEnd, AwsError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match cloud.describe_task(cluster, arn, container).await? {
            Some(s) if s.last_status == "STOPPED" => {
                return Ok(match s.exit_code {
                    Some(code) => TaskEnd::Exited { code, reason: s.stopped_reason },
                    None => TaskEnd::NotStarted(
                        s.container_reason.or(s.stopped_reason).unwrap_or_else(|| "no reason given".into()),
                    ),
                });
            }
            None => return Ok(TaskEnd::Gone),
            Some(_) if tokio::time::Instant::now() >= deadline => return Ok(TaskEnd::TimedOut),
            Some(_) => {}
        }
        tokio::select! {
            () = cancel.cancelled() => return Ok(TaskEnd::Cancelled),
            () = tokio::time::sleep(poll) => {}
        }
    }
}
