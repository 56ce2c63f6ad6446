//! Planning: from desired and live state, the ordered actions that converge one service.
//!
//! The executor makes one attempt at the plan; retries are the scheduler's business.

use std::sync::Arc;

use serde::Serialize;

use super::desired::{Desired, ScalableTarget, ScalingPolicy, ServiceSettings, Tag, TaskDefinition, tags};
use super::diff::{self, Change, NormContext};
use super::live::LiveState;
use super::render::POLICY_PREFIX;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Ownership {
    /// No such service yet: berth creates it.
    Missing,
    /// Tagged `berth:managed=true`.
    Managed,
    /// A same-named service berth did not create: left alone unless the env config says `adopt: true`.
    Unmanaged,
    /// Unmanaged, and taken over because of `adopt: true`.
    Adopted,
}

/// Which revision a service update points at.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum Revision {
    /// The one the plan's RegisterTaskDefinition returns.
    Registered,
    /// An existing revision with the desired content.
    Existing(String),
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "action")]
pub enum Action {
    RegisterTaskDefinition { task_definition: Arc<TaskDefinition> },
    CreateService { settings: Arc<ServiceSettings>, revision: Revision, desired_count: i32 },
    UpdateService { settings: Arc<ServiceSettings>, revision: Revision, set_desired_count: bool },
    TagService { arn: String, tags: Vec<Tag> },
    RegisterScalableTarget { target: ScalableTarget },
    PutScalingPolicy { policy: ScalingPolicy },
    DeleteScalingPolicy { policy_name: String, resource_id: String },
    DeregisterScalableTarget { resource_id: String },
}

impl Action {
    /// A one-line description for the plan printout.
    pub fn summary(&self) -> String {
        match self {
            Action::RegisterTaskDefinition { task_definition } => {
                format!("register task definition {} (new revision)", task_definition.family)
            }
            Action::CreateService { settings, desired_count, .. } => {
                format!(
                    "create service {} in cluster {} ({} tasks)",
                    settings.service_name, settings.cluster, desired_count
                )
            }
            Action::UpdateService { settings, revision, .. } => match revision {
                Revision::Registered => format!("update service {} to the new revision", settings.service_name),
                Revision::Existing(arn) => format!("update service {} ({arn})", settings.service_name),
            },
            Action::TagService { tags, .. } => {
                format!(
                    "tag service ({})",
                    tags.iter().map(|t| format!("{}={}", t.key, t.value)).collect::<Vec<_>>().join(", ")
                )
            }
            Action::RegisterScalableTarget { target } => {
                format!(
                    "register scalable target {} (min {}, max {})",
                    target.resource_id, target.min_capacity, target.max_capacity
                )
            }
            Action::PutScalingPolicy { policy } => format!("put scaling policy {}", policy.policy_name),
            Action::DeleteScalingPolicy { policy_name, .. } => format!("delete scaling policy {policy_name}"),
            Action::DeregisterScalableTarget { resource_id } => format!("deregister scalable target {resource_id}"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Plan {
    pub ownership: Ownership,
    pub drift: Vec<Change>,
    pub actions: Vec<Action>,
    /// Why the service cannot be converged (needs replacement, no network settings, unmanaged).
    pub blockers: Vec<String>,
}

impl Plan {
    pub fn in_sync(&self) -> bool {
        self.drift.is_empty() && self.actions.is_empty() && self.blockers.is_empty()
    }
}

/// Plans one service. `adopt` is the env config's `adopt: true`.
pub fn plan(desired: &Desired, live: &LiveState, adopt: bool, ctx: &NormContext) -> Plan {
    let service = live.service.as_ref().filter(|s| s.status != "INACTIVE");
    let ownership = match service {
        None => Ownership::Missing,
        Some(s) if s.tag(tags::MANAGED) == Some("true") => Ownership::Managed,
        Some(_) if adopt => Ownership::Adopted,
        Some(_) => Ownership::Unmanaged,
    };
    let mut p = Plan { ownership, drift: Vec::new(), actions: Vec::new(), blockers: Vec::new() };
    if ownership == Ownership::Unmanaged {
        p.blockers.push(format!(
            "a service named `{}` exists in cluster `{}` without the tag berth:managed=true; berth leaves it alone (set `adopt: true` in the env config to take it over)",
            desired.service.service_name, desired.service.cluster
        ));
        return p;
    }

    // Fargate pulls from ECR, writes awslogs and injects secrets with the execution role:
    // without one, AWS rejects the revision.
    if desired.task_definition.execution_role_arn.is_none() {
        p.blockers.push(
            "no execution role: set `execution_role` under environments.<env>.defaults in the agent config (Fargate needs it for awslogs, ECR and secrets)".to_string(),
        );
        return p;
    }

    // The task definition: reuse the running revision, or the family's newest one, when
    // its content is what git says; register a new revision only otherwise.
    let current = live.task_definition.as_ref();
    let current_drift = current.map(|td| diff::diff_task_definition(td, &desired.task_definition, ctx));
    let revision = match (current, &current_drift) {
        (Some(td), Some(drift)) if drift.is_empty() => Some(td.arn.clone()),
        _ => live
            .latest_revision
            .as_ref()
            .filter(|td| diff::task_definition_matches(td, &desired.task_definition, ctx))
            .map(|td| td.arn.clone()),
    };
    p.drift.extend(current_drift.into_iter().flatten());
    let register = revision.is_none();
    if register {
        p.actions.push(Action::RegisterTaskDefinition { task_definition: desired.task_definition.clone() });
    }
    let rev = revision.clone().map_or(Revision::Registered, Revision::Existing);

    match service {
        None => {
            p.drift.push(Change { path: "service".into(), live: None, desired: Some(serde_json::json!("create")) });
            if desired.service.network_configuration.is_none() {
                p.blockers.push(format!(
                    "service `{}` does not exist and environment defaults give no network settings: set `subnets` and `security_groups` under environments.<env>.defaults in the agent config",
                    desired.service.service_name
                ));
                p.actions.clear();
                return p;
            }
            let count = desired
                .service
                .desired_count
                .or_else(|| desired.scaling.as_ref().map(|s| s.scalable_target.min_capacity))
                .unwrap_or(1);
            p.actions.push(Action::CreateService {
                settings: desired.service.clone(),
                revision: rev,
                desired_count: count,
            });
        }
        Some(s) => {
            let replace = diff::needs_replacement(s, &desired.service);
            if !replace.is_empty() {
                for r in replace {
                    p.blockers.push(format!(
                        "needs replacement: {r}; berth does not replace services (delete it, or rename the service)"
                    ));
                }
                p.actions.clear();
                return p;
            }
            let changes = diff::diff_service(s, &desired.service);
            let revision_moves = match &revision {
                Some(arn) => *arn != s.settings.task_definition,
                None => true,
            };
            if revision_moves && current.is_none() {
                p.drift.push(Change {
                    path: "service.taskDefinition".into(),
                    live: Some(serde_json::json!(s.settings.task_definition)),
                    desired: Some(serde_json::json!(desired.task_definition.family)),
                });
            } else if revision_moves && revision.is_some() {
                p.drift.push(Change {
                    path: "service.taskDefinition".into(),
                    live: Some(serde_json::json!(s.settings.task_definition)),
                    desired: revision.clone().map(serde_json::Value::from),
                });
            }
            let (tag_changes, setting_changes): (Vec<Change>, Vec<Change>) =
                changes.into_iter().partition(|c| c.path.starts_with("service.tags"));
            if revision_moves || !setting_changes.is_empty() || ownership == Ownership::Adopted {
                p.actions.push(Action::UpdateService {
                    settings: desired.service.clone(),
                    revision: rev,
                    set_desired_count: desired.service.desired_count.is_some(),
                });
            }
            if !tag_changes.is_empty() || ownership == Ownership::Adopted {
                p.actions.push(Action::TagService { arn: s.arn.clone(), tags: desired.service.tags.clone() });
            }
            p.drift.extend(setting_changes);
            p.drift.extend(tag_changes);
        }
    }

    // Autoscaling: the target, then the policy; berth-named policies git no longer has go.
    let resource_id = format!("service/{}/{}", desired.service.cluster, desired.service.service_name);
    if let Some(scaling) = &desired.scaling {
        let target_changes = diff::diff_scalable_target(live.scalable_target.as_ref(), &scaling.scalable_target);
        if !target_changes.is_empty() {
            p.actions.push(Action::RegisterScalableTarget { target: scaling.scalable_target.clone() });
        }
        p.drift.extend(target_changes);
        let live_policy = live.policies.iter().find(|lp| lp.policy.policy_name == scaling.scaling_policy.policy_name);
        let policy_changes = diff::diff_policy(live_policy, &scaling.scaling_policy);
        if !policy_changes.is_empty() {
            p.actions.push(Action::PutScalingPolicy { policy: scaling.scaling_policy.clone() });
        }
        p.drift.extend(policy_changes);
    }
    let wanted = desired.scaling.as_ref().map(|s| s.scaling_policy.policy_name.as_str());
    for lp in &live.policies {
        if lp.policy.policy_name.starts_with(POLICY_PREFIX) && Some(lp.policy.policy_name.as_str()) != wanted {
            p.drift.push(Change {
                path: format!("scaling.policy.{}", lp.policy.policy_name),
                live: Some(serde_json::json!("present")),
                desired: None,
            });
            p.actions.push(Action::DeleteScalingPolicy {
                policy_name: lp.policy.policy_name.clone(),
                resource_id: resource_id.clone(),
            });
        }
    }
    if desired.scaling.is_none()
        && let Some(t) = &live.scalable_target
        && live.policies.iter().all(|lp| lp.policy.policy_name.starts_with(POLICY_PREFIX))
        && !live.policies.is_empty()
    {
        // Autoscaling was removed from git: the target would keep clamping desiredCount.
        p.drift.push(Change {
            path: "scaling.target".into(),
            live: Some(diff::scalable_target_view(&t.target)),
            desired: None,
        });
        p.actions.push(Action::DeregisterScalableTarget { resource_id });
    }
    p
}
