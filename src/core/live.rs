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
    /// The ARN of the service deployment ECS runs or ran last (`currentServiceDeployment`).
    pub current_deployment: Option<String>,
}

/// A service deployment as DescribeServiceDeployments tells it: its status, why, and the
/// lifecycle stage it is at.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ServiceDeployment {
    pub arn: String,
    /// PENDING, IN_PROGRESS, SUCCESSFUL, STOPPED, STOP_REQUESTED, ROLLBACK_REQUESTED,
    /// ROLLBACK_IN_PROGRESS, ROLLBACK_SUCCESSFUL or ROLLBACK_FAILED.
    pub status: String,
    pub status_reason: Option<String>,
    /// RECONCILE_SERVICE, PRE_SCALE_UP, SCALE_UP, …, BAKE_TIME, CLEAN_UP.
    pub lifecycle_stage: Option<String>,
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
    /// A rollback's pin (`berth:pinned`): git's spec at the time is not applied.
    pub pinned: Option<Pin>,
    /// An operator's pause (`berth:paused`): nothing is applied.
    pub paused: Option<Pause>,
    /// The service's routing, in an environment with `ingress:` (else `None`).
    pub routing: Option<LiveRouting>,
    /// Its dashboard, in an environment with `dashboards: cloudwatch` (`None`: none there).
    pub dashboard: Option<super::dashboard::LiveDashboard>,
}

/// What is live of one service's routing, and what the environment's listeners hold.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LiveRouting {
    /// The target groups with the names berth gives the service's (whoever made them), and
    /// those tagged as the service's.
    pub target_groups: Vec<super::routing::LiveTargetGroup>,
    /// berth's rules of this (service, env) on the environment's listeners (by their tags).
    pub rules: Vec<super::routing::LiveRule>,
    /// The alias records of the service's host names (desired, and those of its live rules).
    pub records: Vec<super::routing::LiveRecord>,
    /// The load balancers of the environment's listeners.
    pub load_balancers: Vec<super::routing::LoadBalancerInfo>,
    /// The security groups of the VPC with the names the service's own group, its
    /// `-clients` group and the `-clients` groups it joins have.
    pub security_groups: Vec<super::routing::LiveSecurityGroup>,
    /// The priorities in use on each listener (every owner), shared by the environment's
    /// services; not part of the fingerprint (a plan that allocates one is never kept).
    #[serde(skip)]
    pub taken: Arc<std::collections::BTreeMap<String, std::collections::BTreeSet<i32>>>,
    /// Priorities that plans earlier in this cycle allocated, by listener.
    pub claimed: Vec<(String, i32)>,
}

impl LiveRouting {
    /// Whether `priority` is free on `listener` for a new rule.
    pub fn is_free(&self, listener: &str, priority: i32) -> bool {
        !self.taken.get(listener).is_some_and(|t| t.contains(&priority))
            && !self.claimed.iter().any(|(l, p)| l == listener && *p == priority)
    }
}

/// A rollback's pin, kept on the ECS service as the tag `berth:pinned`: the service runs
/// `revision`, and berth does not apply `spec_hash` (what git wanted at the rollback) until
/// git changes the service or someone unpins it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pin {
    /// `family:N`.
    pub revision: String,
    pub spec_hash: String,
    pub by: String,
    /// RFC 3339.
    pub at: String,
}

/// An operator's pause of one service, kept on the ECS service as the tag `berth:paused`:
/// drift is reported, nothing is applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pause {
    pub reason: String,
    pub by: String,
    pub at: String,
}

/// ECS tag values: at most 256 characters of letters, digits, spaces and `_ . : / = + - @`.
/// Anything else in free text (a reason, a user name) becomes a space.
pub fn tag_safe(text: &str, max: usize) -> String {
    let mapped: String =
        text.chars().map(|c| if c.is_alphanumeric() || c == ' ' || "_.:/=+-@".contains(c) { c } else { ' ' }).collect();
    let words: Vec<&str> = mapped.split_whitespace().collect();
    words.join(" ").chars().take(max).collect()
}

/// `key=value` words, the last one (`last`) taking the rest of the text.
fn fields<'a>(value: &'a str, last: &'a str) -> std::collections::BTreeMap<&'a str, &'a str> {
    let mut out = std::collections::BTreeMap::new();
    let marker = format!(" {last}=");
    let (head, tail) = match value.find(&marker) {
        Some(i) => (&value[..i], Some(&value[i + marker.len()..])),
        None => match value.strip_prefix(&format!("{last}=")) {
            Some(t) => ("", Some(t)),
            None => (value, None),
        },
    };
    for word in head.split(' ') {
        if let Some((k, v)) = word.split_once('=') {
            out.insert(k, v);
        }
    }
    if let Some(t) = tail {
        out.insert(last, t);
    }
    out
}

impl Pin {
    /// The tag value: `spec=HASH rev=family:N at=TIME by=WHO`; `None` when it would not fit
    /// in an ECS tag value (a family name over about 150 characters).
    pub fn to_tag(&self) -> Option<String> {
        let v = format!("spec={} rev={} at={} by={}", self.spec_hash, self.revision, self.at, tag_safe(&self.by, 40));
        (v.len() <= 256).then_some(v)
    }

    pub fn parse(value: &str) -> Option<Pin> {
        let f = fields(value, "by");
        Some(Pin {
            revision: f.get("rev")?.to_string(),
            spec_hash: f.get("spec")?.to_string(),
            by: f.get("by").unwrap_or(&"").to_string(),
            at: f.get("at").unwrap_or(&"").to_string(),
        })
    }
}

impl Pause {
    /// The tag value: `by=WHO at=TIME reason=TEXT`.
    pub fn to_tag(&self) -> String {
        format!("by={} at={} reason={}", tag_safe(&self.by, 40), self.at, tag_safe(&self.reason, 160))
    }

    pub fn parse(value: &str) -> Pause {
        let f = fields(value, "reason");
        Pause {
            reason: f.get("reason").map_or_else(|| value.to_string(), |r| r.to_string()),
            by: f.get("by").unwrap_or(&"").to_string(),
            at: f.get("at").unwrap_or(&"").to_string(),
        }
    }
}

impl std::fmt::Display for Pin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pinned to {} by {} at {}", self.revision, or_unknown(&self.by), or_unknown(&self.at))?;
        write!(
            f,
            "; git's spec {} is not applied until git changes the service or `berth unpin`",
            short(&self.spec_hash)
        )
    }
}

impl std::fmt::Display for Pause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "paused by {} at {}: {} (`berth resume` to apply again)",
            or_unknown(&self.by),
            or_unknown(&self.at),
            self.reason
        )
    }
}

fn or_unknown(s: &str) -> &str {
    if s.is_empty() { "unknown" } else { s }
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
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
            &self.routing,
            &self.dashboard,
        );
        first_half(&super::render::sha256_of_json(&fields))
    }

    /// The fingerprint of what is not read from the service's DescribeServices answer
    /// (its revision and hold come from that answer): for a service whose answer is known
    /// already, see `Memo::unchanged`.
    pub fn rest_fingerprint(&self) -> [u8; 16] {
        let fields = (&self.scalable_target, &self.policies, &self.routing, &self.dashboard);
        first_half(&super::render::sha256_of_json(&fields))
    }
}

fn first_half(digest: &[u8; 32]) -> [u8; 16] {
    let mut out = [0; 16];
    out.copy_from_slice(&digest[..16]);
    out
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

    #[test]
    fn pins_and_pauses_round_trip_through_their_tags() {
        use super::{Pause, Pin, tag_safe};
        let pin = Pin {
            revision: "web:7".into(),
            spec_hash: "ab".repeat(32),
            by: "alice".into(),
            at: "2026-12-01T13:40:00Z".into(),
        };
        assert_eq!(Pin::parse(&pin.to_tag().unwrap()), Some(pin.clone()));
        let long = Pin { revision: format!("{}:1", "f".repeat(200)), ..pin.clone() };
        assert_eq!(long.to_tag(), None, "a pin that does not fit is refused, not cut");
        let spaced = Pin { by: "Ada Lovelace".into(), ..pin.clone() };
        assert_eq!(Pin::parse(&spaced.to_tag().unwrap()).unwrap().by, "Ada Lovelace");
        let pause = Pause {
            reason: "incident 42: db failover".into(),
            by: "bob@host".into(),
            at: "2026-12-01T13:40:00Z".into(),
        };
        assert_eq!(Pause::parse(&pause.to_tag()), pause);
        assert_eq!(tag_safe("INC-42 (db) \"x\"; rm", 256), "INC-42 db x rm");
        // A value written by hand is the reason.
        assert_eq!(Pause::parse("freeze").reason, "freeze");
    }
}
