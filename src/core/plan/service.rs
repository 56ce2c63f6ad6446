//! The service step: create it, or update its revision, settings and tags in place.

use serde_json::json;

use super::{Action, Blocker, Input, Ownership, Plan, Revision, Step};
use crate::core::diff::{self, Change};
use crate::core::live::LiveService;

pub(super) fn step(plan: &mut Plan, input: &Input, revision: Revision) -> Step {
    match input.service() {
        None => create(plan, input, revision),
        Some(live) => update(plan, input, live, revision),
    }
}

fn create(plan: &mut Plan, input: &Input, revision: Revision) -> Step {
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
    plan.push(Action::CreateService { settings: desired.service.clone(), revision, desired_count });
    Ok(())
}

fn update(plan: &mut Plan, input: &Input, live: &LiveService, revision: Revision) -> Step {
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
    let (tags, settings): (Vec<Change>, Vec<Change>) =
        diff::diff_service(live, &desired.service).into_iter().partition(|c| c.path.starts_with("service.tags"));
    let adopted = plan.ownership == Ownership::Adopted;
    if moves || !settings.is_empty() || adopted {
        plan.push(Action::UpdateService {
            settings: desired.service.clone(),
            revision,
            set_desired_count: desired.service.desired_count.is_some(),
        });
    }
    if !tags.is_empty() || adopted {
        plan.push(Action::TagService { arn: live.arn.clone(), tags: desired.service.tags.clone() });
    }
    plan.drift.extend(settings);
    plan.drift.extend(tags);
    Ok(())
}
