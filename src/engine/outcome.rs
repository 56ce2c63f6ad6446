//! What a reconcile found for one service, as types, and every projection of it: the
//! status's sync and health, the metric's `result` label, the command's verdict (exit
//! code), the text people read, and the retry the scheduler makes of a failure.

use std::time::Duration;

use serde::Serialize;

use super::reconcile::Mode;
use super::status::{Health, Sync};
use crate::aws::AwsError;
use crate::core::diag::{self, Diagnostic};

/// Why a service failed.
#[derive(Clone, Debug, PartialEq)]
pub enum Failure {
    /// Its `service.yaml` or env config does not pass validation.
    Invalid(Vec<Diagnostic>),
    /// Referenced parameters or secrets do not exist (each line with its position).
    MissingReferences(Vec<String>),
    /// The plan cannot be carried out (an unmanaged service needing adoption aside).
    Blocked(Vec<String>),
    /// An AWS call failed; `applying` when it was one of the plan's writes.
    Aws { context: &'static str, error: AwsError, applying: bool },
    /// The ECS deployment failed, was rolled back, or did not finish in time.
    Rollout(String),
}

/// The kinds of failure the scheduler tells apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum FailureClass {
    /// A fix in git is needed: retried when the spec changes, never on a timer.
    InvalidSpec,
    /// Something the spec names is missing in AWS (a secret, a parameter, a cluster).
    NotFound,
    AccessDenied,
    Throttled,
    /// No answer, a timeout or a 5xx.
    Unavailable,
    /// Held until git changes the spec.
    RolloutFailed,
    Other,
}

impl Failure {
    pub fn class(&self) -> FailureClass {
        match self {
            Failure::Invalid(_) | Failure::Blocked(_) => FailureClass::InvalidSpec,
            Failure::MissingReferences(_) => FailureClass::NotFound,
            Failure::Rollout(_) => FailureClass::RolloutFailed,
            Failure::Aws { error, .. } => match error {
                AwsError::Throttled { .. } => FailureClass::Throttled,
                AwsError::NotFound { .. } => FailureClass::NotFound,
                AwsError::AccessDenied { .. } => FailureClass::AccessDenied,
                AwsError::Unavailable { .. } => FailureClass::Unavailable,
                AwsError::Other { .. } => FailureClass::Other,
            },
        }
    }

    /// Whether the failure came from an attempt to change AWS. Only attempts count toward
    /// backoff: a read that fails is made again at the next poll anyway, and a poll that
    /// attempts nothing must not make the next attempt wait longer.
    pub fn attempted(&self) -> bool {
        matches!(self, Failure::Aws { applying: true, .. })
    }

    /// The first diagnostic's `path:line:col: message`, when the spec is invalid.
    pub fn first_diagnostic(&self) -> Option<String> {
        match self {
            Failure::Invalid(d) => d.first().map(|d| d.to_string()),
            _ => None,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Invalid(d) => write!(f, "invalid spec:\n{}", diag::render(d).trim_end()),
            Failure::MissingReferences(lines) | Failure::Blocked(lines) => f.write_str(&lines.join("\n")),
            Failure::Aws { context, error, .. } => write!(f, "{context}: {error}"),
            Failure::Rollout(reason) => write!(f, "rollout failed: {reason}"),
        }
    }
}

/// Why berth holds off a service that differs from git.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hold {
    /// Waiting before the next attempt after `attempts` failed ones.
    Backoff { attempts: u32, retry_in: Duration },
    /// The rollout of this spec failed: not applied again until git changes the service.
    /// `in_sync`: live already equals it (ECS left the failed deployment running).
    RolloutFailed { spec_hash: String, in_sync: bool },
    /// A rollback pinned the service to an earlier revision (`berth unpin`, or a change in
    /// git, ends it).
    Pinned { pin: crate::core::live::Pin, in_sync: bool },
    /// An operator paused the service (`berth resume` ends it).
    Paused { pause: crate::core::live::Pause, in_sync: bool },
    /// The daemon is stopping.
    ShuttingDown,
    /// Another replica leads this environment (or this one's lease is no longer trusted).
    NotLeader,
}

impl Hold {
    /// A hold an operator chose (a pin, a pause): the service is as it should be, and its
    /// dependents go on.
    pub fn is_intended(&self) -> bool {
        matches!(self, Hold::Pinned { .. } | Hold::Paused { .. })
    }

    /// Live equals the spec being held (nothing differs from git).
    pub fn in_sync(&self) -> bool {
        matches!(
            self,
            Hold::RolloutFailed { in_sync: true, .. }
                | Hold::Pinned { in_sync: true, .. }
                | Hold::Paused { in_sync: true, .. }
        )
    }
}

impl std::fmt::Display for Hold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Hold::Backoff { attempts, retry_in } => write!(
                f,
                "backing off after {attempts} failed attempt(s); next attempt in {}s",
                retry_in.as_secs().max(1)
            ),
            Hold::RolloutFailed { spec_hash, in_sync } => {
                let blocker = crate::core::plan::Blocker::Held { spec_hash: spec_hash.clone(), in_sync: *in_sync };
                std::fmt::Display::fmt(&blocker, f)
            }
            Hold::Pinned { pin, .. } => std::fmt::Display::fmt(pin, f),
            Hold::Paused { pause, .. } => std::fmt::Display::fmt(pause, f),
            Hold::ShuttingDown => f.write_str("shutting down"),
            Hold::NotLeader => f.write_str("this replica does not hold the environment's lease: another one applies"),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Live equals git.
    Synced,
    /// Changes were made and the rollout (if waited for) finished.
    Applied,
    /// Live differs from git (diff, dry run, or `sync: manual`).
    OutOfSync,
    /// Live equals git and the ECS deployment is still rolling out (watched by the daemon).
    Progressing,
    /// The image is not in the registry yet; nothing applied.
    WaitingForImage(String),
    /// A same-named service berth does not manage.
    Unmanaged(String),
    Failed(Failure),
    /// Not attempted: a dependency did not converge (or is still rolling out).
    Skipped(String),
    /// Live differs, but berth holds off.
    Held(Hold),
    /// Berth-managed in AWS, and its folder is gone from git; not pruned (the reason).
    Orphaned(String),
    /// Deleted: its folder is gone from git and the environment prunes.
    Pruned,
}

/// What a command makes of an outcome (its exit code).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    Ok,
    Drift,
    Failed,
}

impl Outcome {
    /// Not converged: dependents of such a service are skipped.
    pub fn is_failure(&self) -> bool {
        matches!(self, Outcome::Failed(_) | Outcome::Unmanaged(_) | Outcome::WaitingForImage(_) | Outcome::Skipped(_))
            || matches!(self, Outcome::Held(h) if !h.is_intended())
    }

    pub fn failure(&self) -> Option<&Failure> {
        match self {
            Outcome::Failed(f) => Some(f),
            _ => None,
        }
    }

    /// The status's sync.
    pub fn sync(&self) -> Sync {
        match self {
            Outcome::Synced | Outcome::Applied | Outcome::Progressing | Outcome::Pruned => Sync::Synced,
            Outcome::Held(h) if h.in_sync() => Sync::Synced,
            Outcome::Failed(f) if f.class() != FailureClass::RolloutFailed => Sync::Unknown,
            _ => Sync::OutOfSync,
        }
    }

    /// The status's health. `missing`: the service does not exist in AWS; `held`: a
    /// failed rollout holds the spec git wants (Degraded even where ECS left it running).
    pub fn health(&self, missing: bool, held: bool) -> Health {
        if held {
            return Health::Degraded;
        }
        let or_missing = |h| if missing { Health::Missing } else { h };
        match self {
            Outcome::Synced | Outcome::Applied => Health::Healthy,
            Outcome::Orphaned(_) => Health::Orphaned,
            Outcome::Pruned => Health::Missing,
            Outcome::OutOfSync => or_missing(Health::Healthy),
            Outcome::Progressing | Outcome::WaitingForImage(_) | Outcome::Skipped(_) => Health::Progressing,
            Outcome::Unmanaged(_) => Health::Unmanaged,
            Outcome::Held(Hold::RolloutFailed { .. }) => Health::Degraded,
            Outcome::Held(Hold::Pinned { .. }) => Health::Pinned,
            Outcome::Held(Hold::Paused { .. }) => Health::Paused,
            Outcome::Held(_) => or_missing(Health::Progressing),
            Outcome::Failed(f) if f.class() == FailureClass::RolloutFailed => Health::Degraded,
            Outcome::Failed(_) => or_missing(Health::Unknown),
        }
    }

    /// What the status shows as the last error.
    pub fn error_text(&self) -> Option<String> {
        match self {
            Outcome::WaitingForImage(image) => Some(format!("waiting for image {image}")),
            // A pin or a pause is shown as such, not as an error; an orphan says why it stays.
            Outcome::Held(h) if h.is_intended() => None,
            Outcome::Orphaned(r) => Some(r.clone()),
            other => other.reason(),
        }
    }

    /// `berth_reconcile_total{result}`; `applied`: the cycle changed something.
    pub fn metric_result(&self, applied: bool) -> &'static str {
        match self {
            Outcome::Synced => "synced",
            Outcome::Applied | Outcome::Pruned => "applied",
            Outcome::Orphaned(_) => "skipped",
            Outcome::Progressing if applied => "applied",
            Outcome::Progressing => "synced",
            Outcome::Failed(_) | Outcome::Unmanaged(_) => "failed",
            Outcome::OutOfSync | Outcome::WaitingForImage(_) | Outcome::Skipped(_) | Outcome::Held(_) => "skipped",
        }
    }

    /// What a command makes of this outcome.
    pub fn verdict(&self, intent: Mode) -> Verdict {
        match (intent, self) {
            (_, Outcome::Failed(_)) => Verdict::Failed,
            (Mode::Diff, Outcome::Skipped(_)) => Verdict::Failed,
            (Mode::Diff, Outcome::Synced) => Verdict::Ok,
            (Mode::Diff, Outcome::Held(h)) if h.in_sync() => Verdict::Ok,
            (Mode::Diff, _) => Verdict::Drift,
            (Mode::DryRun, _) => Verdict::Ok,
            (Mode::Apply, Outcome::Synced | Outcome::Applied | Outcome::Pruned | Outcome::Orphaned(_)) => Verdict::Ok,
            // What an operator chose is not a failure of the apply.
            (Mode::Apply, Outcome::Held(h)) if h.is_intended() => Verdict::Ok,
            (Mode::Apply, _) => Verdict::Failed,
        }
    }

    /// The one-word label of the CLI's text report.
    pub fn label(&self) -> String {
        match self {
            Outcome::Synced => "Synced".into(),
            Outcome::Applied => "Applied".into(),
            Outcome::OutOfSync => "OutOfSync".into(),
            Outcome::Progressing => "Progressing".into(),
            Outcome::WaitingForImage(i) => format!("WaitingForImage ({i})"),
            Outcome::Unmanaged(_) => "Unmanaged".into(),
            Outcome::Failed(_) => "Failed".into(),
            Outcome::Skipped(_) => "Skipped".into(),
            other => other.status_name().into(),
        }
    }

    /// The reason lines the CLI's text report prints under the service.
    pub fn reason(&self) -> Option<String> {
        match self {
            Outcome::Failed(f) => Some(f.to_string()),
            Outcome::Unmanaged(r) | Outcome::Skipped(r) | Outcome::Orphaned(r) => Some(r.clone()),
            Outcome::Held(h) => Some(h.to_string()),
            _ => None,
        }
    }

    fn status_name(&self) -> &'static str {
        match self {
            Outcome::Synced => "Synced",
            Outcome::Applied => "Applied",
            Outcome::OutOfSync => "OutOfSync",
            Outcome::Progressing => "Progressing",
            Outcome::WaitingForImage(_) => "WaitingForImage",
            Outcome::Unmanaged(_) => "Unmanaged",
            Outcome::Failed(_) => "Failed",
            Outcome::Skipped(_) => "Skipped",
            Outcome::Held(Hold::Pinned { .. }) => "Pinned",
            Outcome::Held(Hold::Paused { .. }) => "Paused",
            Outcome::Held(_) => "Held",
            Outcome::Orphaned(_) => "Orphaned",
            Outcome::Pruned => "Pruned",
        }
    }
}

/// `{"status": "Failed", "reason": "…"}`, as `--output json` has always printed it.
impl Serialize for Outcome {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let reason = match self {
            Outcome::WaitingForImage(i) => Some(i.clone()),
            other => other.reason(),
        };
        let mut m = s.serialize_map(Some(if reason.is_some() { 2 } else { 1 }))?;
        m.serialize_entry("status", self.status_name())?;
        if let Some(r) = reason {
            m.serialize_entry("reason", &r)?;
        }
        m.end()
    }
}

/// The CloudWatch gauges of a service's status: drift, sync failure, degraded (0 or 1).
pub fn cloudwatch_values(sync: Sync, health: Health, has_error: bool) -> [(&'static str, bool); 3] {
    [
        ("Drift", sync == Sync::OutOfSync),
        ("SyncFailed", sync == Sync::Unknown && has_error),
        ("Degraded", health == Health::Degraded),
    ]
}

/// How long to wait before attempt `attempts + 1` after a failure of `class`; `None`: not on
/// a timer (a fix in git, or the next poll, starts it). `jitter` in [0, 1) spreads retries
/// of many services over up to half the delay again.
pub fn retry_delay(class: FailureClass, attempts: u32, jitter: f64) -> Option<Duration> {
    let (first, cap) = match class {
        FailureClass::InvalidSpec | FailureClass::RolloutFailed => return None,
        FailureClass::Throttled | FailureClass::Unavailable | FailureClass::Other => (5, 300),
        // Someone has to create what is missing, or grant what is denied.
        FailureClass::NotFound => (30, 300),
        FailureClass::AccessDenied => (60, 600),
    };
    let exp = attempts.saturating_sub(1).min(16);
    let base = (first as f64 * 2f64.powi(exp as i32)).min(cap as f64);
    Some(Duration::from_secs_f64(base * (1.0 + jitter.clamp(0.0, 1.0) / 2.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aws(error: AwsError, applying: bool) -> Failure {
        Failure::Aws { context: "applying", error, applying }
    }

    fn other(op: &str) -> AwsError {
        AwsError::Other { operation: op.into(), message: "x".into() }
    }

    #[test]
    fn the_retry_delay_follows_the_failure_class() {
        let throttled = FailureClass::Throttled;
        assert_eq!(retry_delay(throttled, 1, 0.0), Some(Duration::from_secs(5)));
        assert_eq!(retry_delay(throttled, 2, 0.0), Some(Duration::from_secs(10)));
        assert_eq!(retry_delay(throttled, 3, 0.999), Some(Duration::from_secs_f64(20.0 * 1.4995)));
        assert_eq!(retry_delay(throttled, 40, 0.0), Some(Duration::from_secs(300)));
        assert_eq!(retry_delay(FailureClass::AccessDenied, 1, 0.0), Some(Duration::from_secs(60)));
        assert_eq!(retry_delay(FailureClass::AccessDenied, 9, 0.0), Some(Duration::from_secs(600)));
        assert_eq!(retry_delay(FailureClass::NotFound, 1, 0.0), Some(Duration::from_secs(30)));
        assert_eq!(retry_delay(FailureClass::InvalidSpec, 1, 0.0), None);
        assert_eq!(retry_delay(FailureClass::RolloutFailed, 1, 0.0), None);
    }

    #[test]
    fn every_outcome_projects_consistently() {
        let missing = Failure::MissingReferences(vec!["a.yaml:1:2: secret x does not exist".into()]);
        let rows: Vec<(Outcome, Sync, Health, &str, Verdict, Verdict)> = vec![
            (Outcome::Synced, Sync::Synced, Health::Healthy, "synced", Verdict::Ok, Verdict::Ok),
            (Outcome::Applied, Sync::Synced, Health::Healthy, "applied", Verdict::Drift, Verdict::Ok),
            (Outcome::Progressing, Sync::Synced, Health::Progressing, "synced", Verdict::Drift, Verdict::Failed),
            (Outcome::OutOfSync, Sync::OutOfSync, Health::Healthy, "skipped", Verdict::Drift, Verdict::Failed),
            (
                Outcome::WaitingForImage("i".into()),
                Sync::OutOfSync,
                Health::Progressing,
                "skipped",
                Verdict::Drift,
                Verdict::Failed,
            ),
            (
                Outcome::Skipped("d".into()),
                Sync::OutOfSync,
                Health::Progressing,
                "skipped",
                Verdict::Failed,
                Verdict::Failed,
            ),
            (
                Outcome::Held(Hold::RolloutFailed { spec_hash: "h".into(), in_sync: false }),
                Sync::OutOfSync,
                Health::Degraded,
                "skipped",
                Verdict::Drift,
                Verdict::Failed,
            ),
            (
                Outcome::Held(Hold::RolloutFailed { spec_hash: "h".into(), in_sync: true }),
                Sync::Synced,
                Health::Degraded,
                "skipped",
                Verdict::Ok,
                Verdict::Failed,
            ),
            (Outcome::Failed(missing), Sync::Unknown, Health::Unknown, "failed", Verdict::Failed, Verdict::Failed),
            (
                Outcome::Failed(Failure::Rollout("circuit breaker".into())),
                Sync::OutOfSync,
                Health::Degraded,
                "failed",
                Verdict::Failed,
                Verdict::Failed,
            ),
        ];
        for (o, sync, health, result, diff, apply) in rows {
            assert_eq!(o.sync(), sync, "{o:?}");
            assert_eq!(o.health(false, false), health, "{o:?}");
            assert_eq!(o.metric_result(false), result, "{o:?}");
            assert_eq!(o.verdict(Mode::Diff), diff, "{o:?}");
            assert_eq!(o.verdict(Mode::Apply), apply, "{o:?}");
            assert_eq!(o.health(false, true), Health::Degraded, "held: {o:?}");
        }
        let pause = crate::core::live::Pause { reason: "r".into(), by: "b".into(), at: "t".into() };
        let paused = Outcome::Held(Hold::Paused { pause, in_sync: false });
        assert_eq!((paused.sync(), paused.health(false, false)), (Sync::OutOfSync, Health::Paused));
        assert_eq!((paused.verdict(Mode::Diff), paused.verdict(Mode::Apply)), (Verdict::Drift, Verdict::Ok));
        assert!(!paused.is_failure(), "a paused service's dependents go on");
        let pin =
            crate::core::live::Pin { revision: "w:1".into(), spec_hash: "h".into(), by: "b".into(), at: "t".into() };
        let pinned = Outcome::Held(Hold::Pinned { pin, in_sync: false });
        assert_eq!((pinned.health(false, false), pinned.label()), (Health::Pinned, "Pinned".to_string()));
        assert_eq!(Outcome::Progressing.metric_result(true), "applied");
        assert_eq!(Outcome::OutOfSync.health(true, false), Health::Missing);
    }

    #[test]
    fn failures_know_their_class_and_whether_they_were_attempts() {
        let denied = AwsError::AccessDenied { operation: "DescribeSecret".into(), message: "no".into() };
        assert_eq!(aws(denied, false).class(), FailureClass::AccessDenied);
        assert!(!aws(other("DescribeServices"), false).attempted());
        assert!(aws(other("UpdateService"), true).attempted());
        assert_eq!(Failure::Invalid(vec![]).class(), FailureClass::InvalidSpec);
        let json = serde_json::to_value(Outcome::Failed(Failure::Rollout("x".into()))).unwrap();
        assert_eq!(json, serde_json::json!({"status": "Failed", "reason": "rollout failed: x"}));
        assert_eq!(serde_json::to_value(Outcome::Synced).unwrap(), serde_json::json!({"status": "Synced"}));
    }
}
