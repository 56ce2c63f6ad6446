//! The service step: create it, or update its revision, settings and tags in place.

use std::sync::Arc;

use serde_json::json;

use super::{Action, Blocker, Input, Ownership, Plan, Revision, Step};
use crate::core::desired::ServiceSettings;
use crate::core::diff::{self, Change};
use crate::core::live::LiveService;

/// `target_group`: the routed service's target group (existing, or created by this plan).
pub(super) fn step(plan: &mut Plan, input: &Input, revision: Revision, target_group: Option<Revision>) -> Step {
    // With the group's ARN known, the settings name it (a rendered entry names the group).
    let settings = match &target_group {
        Some(Revision::Existing(arn)) => with_target_group(&input.desired.service, arn),
        _ => input.desired.service.clone(),
    };
    match input.service() {
        None => create(plan, input, settings, revision, target_group),
        Some(live) => update(plan, input, live, settings, revision, target_group),
    }
}

/// The settings with their `loadBalancers` entry pointing at `arn`.
pub fn with_target_group(settings: &Arc<ServiceSettings>, arn: &str) -> Arc<ServiceSettings> {
    let mut s = settings.clone();
    if let Some(lbs) = Arc::make_mut(&mut s).load_balancers.as_mut() {
        for lb in lbs {
            lb.target_group_arn = arn.to_string();
        }
    }
    s
}

fn create(
    plan: &mut Plan,
    input: &Input,
    settings: Arc<ServiceSettings>,
    revision: Revision,
    target_group: Option<Revision>,
) -> Step {
    let desired = &input.desired;
    plan.drift.push(Change { path: "service".into(), live: None, desired: Some(json!("create")) });
    if desired.service.network_configuration.is_none() {
        return Err(vec![Blocker::NoNetworkSettings { service: desired.service.service_name.clone() }]);
    }
    let desired_count = desired
        .service
        .desired_count
        .or_else(|| desired.scaling.as_ref().map(|s| s.scalable_target.min_capacity))
        .unwrap_or(1);
    plan.push(Action::CreateService { settings, revision, desired_count, target_group });
    Ok(())
}

fn update(
    plan: &mut Plan,
    input: &Input,
    live: &LiveService,
    settings: Arc<ServiceSettings>,
    revision: Revision,
    target_group: Option<Revision>,
) -> Step {
    let desired = &input.desired;
    let replace = diff::needs_replacement(live, &desired.service);
    if !replace.is_empty() {
        return Err(replace.into_iter().map(|reason| Blocker::NeedsReplacement { reason }).collect());
    }
    let moves = match &revision {
        Revision::Existing(arn) => *arn != live.settings.task_definition,
        Revision::Output(_) => true,
    };
    // A move to a new revision shows as the running revision's content drift, one to an
    // existing revision as its ARN; with the running revision unread, the family stands in.
    let moved_to = if input.live.task_definition.is_none() {
        Some(json!(desired.task_definition.family))
    } else if let Revision::Existing(arn) = &revision {
        Some(json!(arn))
    } else {
        None
    };
    if let Some(to) = moved_to.filter(|_| moves) {
        plan.drift.push(Change {
            path: "service.taskDefinition".into(),
            live: Some(json!(live.settings.task_definition)),
            desired: Some(to),
        });
    }
    let (tags, changed): (Vec<Change>, Vec<Change>) =
        diff::diff_service(live, &settings).into_iter().partition(|c| c.path.starts_with("service.tags"));
    let adopted = plan.ownership == Ownership::Adopted;
    if moves || !changed.is_empty() || adopted {
        plan.push(Action::UpdateService {
            set_desired_count: settings.desired_count.is_some(),
            settings,
            revision,
            target_group,
        });
    }
    if !tags.is_empty() || adopted {
        plan.push(Action::TagService { arn: live.arn.clone(), tags: desired.service.tags.clone() });
    }
    plan.drift.extend(changed);
    plan.drift.extend(tags);
    Ok(())
}
