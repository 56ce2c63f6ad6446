//! Live state as read from AWS, in berth's own types (the `aws` module converts into these).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::desired::{ScalableTarget, ScalingPolicy, ServiceSettings, TaskDefinition};

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LiveService {
    pub arn: String,
    /// ACTIVE, DRAINING or INACTIVE.
    pub status: String,
    /// The service's settings; `task_definition` is the revision ARN it runs.
    pub settings: ServiceSettings,
    pub scheduling_strategy: Option<String>,
    pub deployment_controller: Option<String>,
    pub uses_capacity_providers: bool,
    pub deployments: Vec<Deployment>,
}

impl LiveService {
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.settings.tags.iter().find(|t| t.key == key).map(|t| t.value.as_str())
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Deployment {
    pub id: String,
    /// PRIMARY, ACTIVE or INACTIVE.
    pub status: String,
    pub task_definition: String,
    /// IN_PROGRESS, COMPLETED or FAILED.
    pub rollout_state: Option<String>,
    pub rollout_state_reason: Option<String>,
    pub desired_count: i32,
    pub running_count: i32,
    pub failed_tasks: i32,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LiveTaskDefinition {
    pub arn: String,
    pub definition: TaskDefinition,
    /// Fields set on the live revision that berth never sets (volumes, extra containers, …):
    /// each is drift, since git does not have it.
    pub extras: Vec<String>,
}

impl LiveTaskDefinition {
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.definition.tags.iter().find(|t| t.key == key).map(|t| t.value.as_str())
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LiveScalableTarget {
    pub target: ScalableTarget,
    /// AWS replaces any role with its service-linked role; never compared.
    pub role_arn: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LivePolicy {
    pub arn: String,
    pub policy: ScalingPolicy,
}

/// Everything live about one service.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LiveState {
    /// `None` when the service does not exist (or is INACTIVE).
    pub service: Option<LiveService>,
    /// The revision the service runs (from the cache of revisions by ARN).
    pub task_definition: Option<Arc<LiveTaskDefinition>>,
    /// The family's newest ACTIVE revisions, newest first (read only when a registration is
    /// planned): one with the desired content is run instead of registering another (a
    /// revision registered before a failed update, or the one a rollback returns to).
    pub recent_revisions: Vec<Arc<LiveTaskDefinition>>,
    pub scalable_target: Option<LiveScalableTarget>,
    /// The scaling policies on the service's resource id.
    pub policies: Vec<LivePolicy>,
    /// The spec hash whose rollout failed (the service's `berth:held` tag): not applied
    /// again until git changes the service.
    pub held: Option<String>,
}

impl LiveState {
    /// A digest of everything in the state (128 bits of SHA-256 over its JSON): equal
    /// states have equal fingerprints, and different ones, in practice, never do. A task
    /// definition revision never changes once registered, so its ARN stands for its content
    /// (most of a state's bytes, and most of the digest's cost on a steady poll).
    pub fn fingerprint(&self) -> [u8; 16] {
        let fields = (
            &self.service,
            self.task_definition.as_ref().map(|t| t.arn.as_str()),
            self.recent_revisions.iter().map(|t| t.arn.as_str()).collect::<Vec<_>>(),
            &self.scalable_target,
            &self.policies,
            &self.held,
        );
        let digest = super::render::sha256_of_json(&fields);
        let mut out = [0; 16];
        out.copy_from_slice(&digest[..16]);
        out
    }
}

#[cfg(test)]
mod tests {
    use crate::core::testing::{converged, desired};

    #[test]
    fn the_fingerprint_covers_the_hold() {
        let d = desired().build();
        let free = converged(&d).build();
        let held = converged(&d).with(|l| l.held = Some(d.spec_hash().into())).build();
        assert_eq!(free.fingerprint(), converged(&d).build().fingerprint());
        assert_ne!(free.fingerprint(), held.fingerprint());
    }
}
