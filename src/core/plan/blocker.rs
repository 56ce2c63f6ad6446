//! Why a plan cannot converge its service: each reason, and the text users see for it.

use std::fmt;

use serde::Serialize;

/// One reason a service cannot be converged. A plan with a blocker has no actions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "blocker", rename_all = "snake_case")]
pub enum Blocker {
    /// A same-named service berth did not create, and the env config does not say `adopt: true`.
    Unmanaged { service: String, cluster: String },
    /// Fargate needs an execution role for awslogs, ECR and secrets: AWS would reject the revision.
    NoExecutionRole,
    /// The service must be created, and the environment defaults give no network settings.
    NoNetworkSettings { service: String },
    /// A live setting that ECS cannot change in place (`reason` names it).
    NeedsReplacement { reason: String },
    /// The rollout of this spec failed; it is not applied again until git changes the service.
    /// `in_sync`: live already equals it (ECS left the failed deployment in place).
    Held { spec_hash: String, in_sync: bool },
    /// A rollback pinned the service: git's spec at the time is not applied.
    Pinned { pin: crate::core::live::Pin, in_sync: bool },
    /// An operator paused the service: nothing is applied.
    Paused { pause: crate::core::live::Pause, in_sync: bool },
    /// A target group with the name berth gives the service's exists, and is not berth's.
    TargetGroupTaken { name: String },
    /// A target group setting ELB cannot change in place.
    TargetGroupReplace { name: String, field: String, live: String, desired: String },
    /// The load balancer of a listener could not be read (a record needs its DNS name).
    NoLoadBalancer { listener: String },
    /// Every priority of a listener is in use.
    NoFreePriority { listener: String },
    /// Git leaves a traffic-shifting strategy while the rule's traffic is on the alternate
    /// group (ECS's last deployment moved it there).
    AlternateServes { rule: String, group: String },
    /// A security group with the name berth gives the service's, and not berth's.
    SecurityGroupTaken { name: String },
    /// A data store's `-clients` group that does not exist in the VPC (`at`: where git names
    /// the data store).
    MissingClientsGroup { name: String, at: String },
}

impl fmt::Display for Blocker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Blocker::Unmanaged { service, cluster } => write!(
                f,
                "a service named `{service}` exists in cluster `{cluster}` without the tag berth:managed=true; berth leaves it alone (set `adopt: true` in the env config to take it over)"
            ),
            Blocker::NoExecutionRole => f.write_str(
                "no execution role: set `execution_role` under environments.<env>.defaults in the agent config (Fargate needs it for awslogs, ECR and secrets)",
            ),
            Blocker::NoNetworkSettings { service } => write!(
                f,
                "service `{service}` does not exist and environment defaults give no network settings: set `subnets` and `security_groups` under environments.<env>.defaults in the agent config"
            ),
            Blocker::NeedsReplacement { reason } => {
                write!(f, "needs replacement: {reason}; berth does not replace services (delete it, or rename the service)")
            }
            Blocker::Held { spec_hash, .. } => write!(
                f,
                "the rollout of spec {spec_hash} failed; berth will not retry it until git changes the service"
            ),
            Blocker::Pinned { pin, .. } => fmt::Display::fmt(pin, f),
            Blocker::Paused { pause, .. } => fmt::Display::fmt(pause, f),
            Blocker::TargetGroupTaken { name } => write!(
                f,
                "a target group named `{name}` exists without berth's tags (berth:managed, berth:env, berth:service); berth leaves it alone: delete or rename it"
            ),
            Blocker::TargetGroupReplace { name, field, live, desired } => write!(
                f,
                "target group `{name}`: {field} {live} → {desired} cannot change in place; delete the target group (berth creates it again)"
            ),
            Blocker::NoLoadBalancer { listener } => {
                write!(f, "cannot read the load balancer of listener {listener}")
            }
            Blocker::NoFreePriority { listener } => write!(f, "listener {listener} has no free rule priority"),
            Blocker::AlternateServes { rule, group } => write!(
                f,
                "the {rule} rule sends its traffic to `{group}`, where ECS's last deployment put it: going back to `strategy: rolling` now would send it to a group without tasks; deploy once more with the traffic-shifting strategy (ECS moves the traffic back), then switch"
            ),
            Blocker::SecurityGroupTaken { name } => write!(
                f,
                "a security group named `{name}` exists in the VPC without berth's tags (berth:managed, berth:env, berth:service); berth leaves it alone: rename or delete it"
            ),
            Blocker::MissingClientsGroup { name, at } => write!(
                f,
                "{at}: security group `{name}` does not exist in the environment's VPC: create it for the data store (its clients join it), or remove the dependency"
            ),
        }
    }
}
