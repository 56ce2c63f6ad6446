//! What `/status`, `/metrics` and `berth status` show: the wire shape, derived from the
//! daemon's one map of services (`scheduler::Services::status`).

use serde::{Deserialize, Serialize};

use super::reconcile::{Hold, Outcome, ServiceReport};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Sync {
    Synced,
    OutOfSync,
    Unknown,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Health {
    Healthy,
    Progressing,
    Degraded,
    Missing,
    Unmanaged,
    Unknown,
    /// A rollback pinned it to an earlier revision.
    Pinned,
    /// An operator paused it.
    Paused,
    /// Berth-managed in AWS, but its folder is gone from git.
    Orphaned,
}

impl Sync {
    pub fn as_str(self) -> &'static str {
        match self {
            Sync::Synced => "Synced",
            Sync::OutOfSync => "OutOfSync",
            Sync::Unknown => "Unknown",
        }
    }
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Healthy => "Healthy",
            Health::Progressing => "Progressing",
            Health::Degraded => "Degraded",
            Health::Missing => "Missing",
            Health::Unmanaged => "Unmanaged",
            Health::Unknown => "Unknown",
            Health::Pinned => "Pinned",
            Health::Paused => "Paused",
            Health::Orphaned => "Orphaned",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub name: String,
    pub sync: Sync,
    pub health: Health,
    pub commit: Option<String>,
    pub task_definition: Option<String>,
    /// The tag of the image git wants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_tag: Option<String>,
    /// The differing field paths.
    pub drift: Vec<String>,
    pub last_error: Option<String>,
    #[serde(default)]
    pub spec_hash: Option<String>,
    /// Unix seconds of the last cycle that found (or made) this service synced.
    #[serde(default)]
    pub last_sync: Option<f64>,
    /// Whether a failed rollout holds this spec.
    #[serde(default)]
    pub held: bool,
    /// A rollback's pin: the revision, git's spec it holds off, who and when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned: Option<Box<crate::core::live::Pin>>,
    /// An operator's pause: why, who and when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<Box<crate::core::live::Pause>>,
    /// When this daemon last changed the service, and why (the full record is in
    /// `berth history`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_change: Option<Box<LastChange>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LastChange {
    /// Unix seconds.
    pub at: f64,
    pub trigger: crate::engine::history::Trigger,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EnvStatus {
    pub name: String,
    #[serde(rename = "ref")]
    pub ref_name: Option<String>,
    pub commit: Option<String>,
    pub services: Vec<ServiceStatus>,
    #[serde(default)]
    pub last_fetch_error: Option<String>,
    /// The first full sync of this environment is done.
    #[serde(default)]
    pub ready: bool,
    /// A tag environment with no release tag yet (nothing to deploy; not an error).
    #[serde(default)]
    pub no_release: bool,
    /// AWS answered none of the last cycle's calls (an outage, not N service failures):
    /// the first error.
    #[serde(default)]
    pub aws_unavailable: Option<String>,
    /// With `ha:`: `leader` (this replica converges the environment) or `follower` (it
    /// only reports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The AWS account and region of the environment's services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub environments: Vec<EnvStatus>,
}

impl ServiceStatus {
    /// A watched rollout of the service ended (the next cycle, which follows at once, brings
    /// the rest of its status up to date).
    pub fn rollout_finished(&mut self, result: &Result<(), String>) {
        match result {
            Ok(()) => {
                self.health = Health::Healthy;
                self.last_error = None;
            }
            Err(reason) => {
                self.health = Health::Degraded;
                self.held = true;
                self.last_error = Some(format!("rollout failed: {reason}"));
            }
        }
    }
}

/// The status of a service from its latest report. `previous` keeps what a report that
/// does not say (a commit, a task definition, the last sync) leaves as it was.
pub fn service_status(report: &ServiceReport, now: f64, previous: Option<&ServiceStatus>) -> ServiceStatus {
    let o = &report.outcome;
    // Drift that an apply healed is gone.
    let drift: Vec<String> = match o {
        Outcome::Applied | Outcome::Synced | Outcome::Progressing => Vec::new(),
        _ => report.drift.iter().map(|c| c.path.clone()).collect(),
    };
    let missing = report.ownership == Some(crate::core::plan::Ownership::Missing);
    let held = report.held();
    let sync = o.sync();
    let last_sync = if sync == Sync::Synced { Some(now) } else { previous.and_then(|p| p.last_sync) };
    ServiceStatus {
        name: report.name.clone(),
        sync,
        health: o.health(missing, held),
        commit: report.commit.clone().or_else(|| previous.and_then(|p| p.commit.clone())),
        task_definition: report.task_definition.clone().or_else(|| previous.and_then(|p| p.task_definition.clone())),
        image_tag: (report.image.as_deref().and_then(|i| i.rsplit_once(':')).map(|(_, t)| t.to_string()))
            .or_else(|| previous.and_then(|p| p.image_tag.clone())),
        drift,
        last_error: o.error_text(),
        spec_hash: report.spec_hash.clone(),
        last_sync,
        held,
        pinned: match o {
            Outcome::Held(Hold::Pinned { pin, .. }) => Some(Box::new(pin.clone())),
            _ => None,
        },
        paused: match o {
            Outcome::Held(Hold::Paused { pause, .. }) => Some(Box::new(pause.clone())),
            _ => None,
        },
        last_change: match (&report.trigger, report.applied.is_empty()) {
            (Some(trigger), false) => Some(Box::new(LastChange { at: now, trigger: trigger.clone() })),
            _ => previous.and_then(|p| p.last_change.clone()),
        },
    }
}
