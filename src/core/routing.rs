//! Routing berth keeps equal to git for a service with `environments.E.ingress`: a target
//! group, a listener rule per load balancer it is reachable through, and Route53 alias
//! records for its host names. Desired and live state in the ELBv2 and Route53 APIs' own
//! field names, so the diff compares like with like.

use serde::{Deserialize, Serialize};

use super::desired::Tag;

/// Everything berth routes for one (service, env).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Routing {
    /// One per production rule (an ALB target group takes one load balancer), and with a
    /// strategy that shifts traffic each one's alternate: see [`route_group_name`].
    pub target_groups: Vec<TargetGroup>,
    /// One per listener (internal, external when asked for, and the test listener for a
    /// strategy that shifts traffic), internal first.
    pub rules: Vec<ListenerRule>,
    /// One per host with a hosted zone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub records: Vec<Record>,
}

/// CreateTargetGroup's input, the fields berth sets. ELB fills in the rest (health-check
/// interval, thresholds, matcher, attributes); those are never compared.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TargetGroup {
    /// At most 32 characters of `[A-Za-z0-9-]`: see [`target_group_name`].
    pub name: String,
    /// `HTTP`.
    pub protocol: String,
    pub port: i32,
    pub vpc_id: String,
    /// `ip` (Fargate tasks in awsvpc mode).
    pub target_type: String,
    pub health_check_path: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Tag>,
}

/// A rule on a listener forwarding to the service's target group (CreateRule's input
/// without the priority, which berth allocates: see [`allocate_priority`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListenerRule {
    pub listener_arn: String,
    /// `internal` or `external`: which of the environment's listeners.
    pub scope: String,
    /// The host-header condition's values.
    pub hosts: Vec<String>,
    /// The path-pattern condition's values; none means every path.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Tag>,
    /// The name of the target group it forwards to (desired only).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub target_group: String,
    /// With a strategy that shifts traffic: the alternate group, which the rule forwards to
    /// too (ECS sets the weights during a deployment; berth never compares them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alternate: Option<String>,
}

/// The scope of the rule on the test listener.
pub const TEST_SCOPE: &str = "test";

/// A Route53 alias A record for `name` in `zone_id`, pointing at the load balancer of
/// `listener_arn`.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Record {
    pub zone_id: String,
    /// Fully qualified, without the trailing dot.
    pub name: String,
    pub listener_arn: String,
}

/// What berth learns about a listener's load balancer (read once, kept for the process).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LoadBalancerInfo {
    pub listener_arn: String,
    pub load_balancer_arn: String,
    /// The alias target of a record: the load balancer's DNS name and its hosted zone.
    pub dns_name: String,
    pub canonical_hosted_zone_id: String,
    pub security_groups: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LiveTargetGroup {
    pub arn: String,
    /// As read back; `tags` are the group's tags.
    pub group: TargetGroup,
}

impl LiveTargetGroup {
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.group.tags.iter().find(|t| t.key == key).map(|t| t.value.as_str())
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LiveRule {
    pub arn: String,
    /// `None` for the listener's default rule.
    pub priority: Option<i32>,
    /// As read back: listener, host and path conditions, tags.
    pub rule: ListenerRule,
    /// The target groups its forward action sends to (empty for other actions).
    pub forward_to: Vec<String>,
    /// Of a weighted forward to several groups, the one with the most weight (the one
    /// serving, after ECS moved the weights); `None` for a plain forward.
    pub serving: Option<String>,
}

impl LiveRule {
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.rule.tags.iter().find(|t| t.key == key).map(|t| t.value.as_str())
    }
}

/// An A record of a zone that is an alias.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LiveRecord {
    pub zone_id: String,
    /// Without the trailing dot, lower case.
    pub name: String,
    /// The alias target's DNS name, without the trailing dot, lower case.
    pub alias_dns_name: String,
    pub alias_hosted_zone_id: String,
}

/// A security group berth keeps for a service: its own (`<service>`, on its tasks, open on
/// its port to its clients and load balancers) and `<service>-clients` (for what calls it).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SecurityGroup {
    pub group_name: String,
    pub description: String,
    pub vpc_id: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Tag>,
}

/// The security groups of a service in an environment with `ingress:`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Access {
    /// `<service>`: on the service's tasks, open on its port to `clients` (and to the load
    /// balancers it is routed through).
    pub own: SecurityGroup,
    /// `<service>-clients`: what calls the service joins it.
    pub clients: SecurityGroup,
    pub port: i32,
    /// The `-clients` groups of its dependencies, which its tasks join.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub joins: Vec<Join>,
}

/// A `-clients` group a service's tasks join.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Join {
    pub group_name: String,
    /// For a service of the repository: the group as that service makes it (whichever of
    /// the two applies first creates it; the other finds it). `None`: a data store's, which
    /// must exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<SecurityGroup>,
    /// Where git asks for it (`path:line:col`); not part of the spec hash.
    #[serde(skip)]
    pub at: String,
}

/// The name of a service's `-clients` group (and of a data store's).
pub fn clients_group(name: &str) -> String {
    format!("{name}-clients")
}

/// A TCP ingress rule of a security group from another security group.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GroupIngress {
    /// The port (from = to).
    pub port: i32,
    /// The source group's id (live), or its name until its id is known (desired).
    pub from_group: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LiveSecurityGroup {
    pub group_id: String,
    /// As read back (name, description, VPC, tags).
    pub group: SecurityGroup,
    /// Its TCP ingress rules from other groups, one per (port, source group); rules of
    /// other kinds (CIDR ranges, port ranges, other protocols) are not listed.
    pub ingress: Vec<GroupIngress>,
}

impl LiveSecurityGroup {
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.group.tags.iter().find(|t| t.key == key).map(|t| t.value.as_str())
    }
}

/// The ELBv2 target group name of (service, env): `service-env` when it fits in 32
/// characters, else its first characters and 6 hex characters of a hash of both, so two
/// long names never share one.
pub fn target_group_name(service: &str, env: &str) -> String {
    fit(format!("{service}-{env}"))
}

/// The target group of (service, env)'s rule of `scope`: `<service>-<env>` for the internal
/// (and test) rule, or the external one of a service routed externally only;
/// `<service>-<env>-ext` for the external rule beside an internal one; and `-alt` after
/// either for its alternate, each fitted to 32 characters like [`target_group_name`].
pub fn route_group_name(service: &str, env: &str, scope: &str, alternate: bool) -> String {
    let ext = if scope == "external" { "-ext" } else { "" };
    let alt = if alternate { "-alt" } else { "" };
    fit(format!("{service}-{env}{ext}{alt}"))
}

/// Every target group name (service, env) may have.
pub fn route_group_names(service: &str, env: &str) -> [String; 4] {
    [
        route_group_name(service, env, "internal", false),
        route_group_name(service, env, "internal", true),
        route_group_name(service, env, "external", false),
        route_group_name(service, env, "external", true),
    ]
}

fn fit(full: String) -> String {
    if full.len() <= 32 {
        return full;
    }
    let hash = hex::encode(&super::render::sha256_of_json(&full)[..3]);
    let head: String = full.chars().take(32 - 7).collect();
    format!("{}-{hash}", head.trim_end_matches('-'))
}

/// The lowest priority's search start for a service: spread by a hash of its name over
/// 1..=40000, so that services rarely contend for one slot, and the same on every cycle.
fn priority_start(service: &str, scope: &str) -> i32 {
    let h = super::render::sha256_of_json(&(service, scope));
    (u32::from_be_bytes([h[0], h[1], h[2], h[3]]) % 40_000) as i32 + 1
}

/// A free priority for a new rule of `service` on a listener whose rules hold `taken`:
/// the first free one from the service's start (wrapping at ELB's limit of 50000). The
/// same inputs give the same answer; an existing rule keeps its priority.
pub fn allocate_priority(service: &str, scope: &str, free: impl Fn(i32) -> bool) -> Option<i32> {
    let start = priority_start(service, scope);
    (start..=50_000).chain(1..start).find(|p| free(*p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_group_names_fit_and_stay_distinct() {
        assert_eq!(target_group_name("payments", "prod"), "payments-prod");
        let a = target_group_name("a-very-long-service-name-for-billing", "prod");
        let b = target_group_name("a-very-long-service-name-for-billing-v2", "prod");
        assert!(a.len() <= 32 && b.len() <= 32, "{a} {b}");
        assert_ne!(a, b);
        assert!(!a.contains("--"), "{a}");
    }

    #[test]
    fn priorities_are_stable_and_skip_taken_ones() {
        let p = allocate_priority("payments", "internal", |_| true).unwrap();
        assert_eq!(allocate_priority("payments", "internal", |_| true), Some(p));
        let taken = [p, p + 1];
        assert_eq!(allocate_priority("payments", "internal", |q| !taken.contains(&q)), Some(p + 2));
        assert_eq!(allocate_priority("payments", "internal", |_| false), None);
    }
}
