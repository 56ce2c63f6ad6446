//! The service step: create it, or update its revision, settings and tags in place.

use std::sync::Arc;

use serde_json::json;

use serde::Serialize;

use super::{Action, Blocker, Input, Outputs, Ownership, Plan, Revision, Step};
use crate::core::desired::ServiceSettings;
use crate::core::diff::{self, Change};
use crate::core::live::LiveService;

/// What a routed service's settings name by reference: its target groups (by name) and
/// listener rules (by `rule:<scope>`), and its tasks' security groups (existing, or made by
/// this plan; `None`: as rendered).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Bind {
    pub routes: Vec<(String, Revision)>,
    pub security_groups: Option<Vec<Revision>>,
}

pub(super) fn step(plan: &mut Plan, input: &Input, revision: Revision, bind: Bind) -> Step {
    // With the ids known, the settings name them (a rendered entry names them by name).
    let settings = bound(&input.desired.service, &bind, &Outputs::default());
    match input.service() {
        None => create(plan, input, settings, revision, bind),
        Some(live) => update(plan, input, live, settings, revision, bind),
    }
}

/// The spec's before-deploy task, when the service moves to a revision and the task has not
/// succeeded for this spec yet (the `berth:before-deploy` tag says so).
fn before_deploy(plan: &mut Plan, input: &Input, settings: &Arc<ServiceSettings>, revision: &Revision, bind: &Bind) {
    let Some(task) = &input.desired.before_deploy else { return };
    let spec_hash = input.desired.spec_hash();
    if input.service().and_then(|s| s.tag(crate::core::desired::tags::BEFORE_DEPLOY)) == Some(spec_hash) {
        return;
    }
    plan.push(Action::RunBeforeDeploy {
        settings: settings.clone(),
        bind: bind.clone(),
        revision: revision.clone(),
        command: task.command.clone(),
        timeout_s: task.timeout_s,
        spec_hash: spec_hash.to_string(),
        service_arn: input.service().map(|s| s.arn.clone()),
    });
}

/// The settings with the target group and security groups of `bind` that are known
/// (existing ones, or what `outputs` recorded).
pub fn bound(settings: &Arc<ServiceSettings>, bind: &Bind, outputs: &Outputs) -> Arc<ServiceSettings> {
    let sgs: Option<Vec<&str>> =
        bind.security_groups.as_ref().and_then(|g| g.iter().map(|r| outputs.resolve(r)).collect());
    if bind.routes.is_empty() && sgs.is_none() {
        return settings.clone();
    }
    let known = |name: &mut String| {
        if let Some(arn) = bind.routes.iter().find(|(n, _)| n == name).and_then(|(_, r)| outputs.resolve(r)) {
            *name = arn.to_string();
        }
    };
    let mut s = settings.clone();
    let m = Arc::make_mut(&mut s);
    for lb in m.load_balancers.iter_mut().flatten() {
        known(&mut lb.target_group_arn);
        if let Some(a) = lb.advanced_configuration.as_mut() {
            known(&mut a.alternate_target_group_arn);
            known(&mut a.production_listener_rule);
            a.test_listener_rule.as_mut().map(known);
        }
    }
    if let (Some(ids), Some(n)) = (sgs, m.network_configuration.as_mut()) {
        n.awsvpc_configuration.security_groups = ids.into_iter().map(str::to_string).collect();
    }
    s
}

/// A `loadBalancers` entry whose group and alternate ECS swapped after a blue-green
/// deployment keeps the live order in an update: sending git's order would tell ECS the
/// drained group serves.
fn live_order(settings: Arc<ServiceSettings>, live: &LiveService) -> Arc<ServiceSettings> {
    let live_lbs = live.settings.load_balancers.as_deref().unwrap_or_default();
    let swapped = |lb: &crate::core::desired::LoadBalancer| {
        lb.advanced_configuration.as_ref().is_some_and(|a| {
            live_lbs.iter().any(|l| {
                l.target_group_arn == a.alternate_target_group_arn
                    && l.advanced_configuration.as_ref().map(|x| x.alternate_target_group_arn.as_str())
                        == Some(lb.target_group_arn.as_str())
            })
        })
    };
    if !settings.load_balancers.iter().flatten().any(swapped) {
        return settings;
    }
    let mut s = settings;
    for lb in Arc::make_mut(&mut s).load_balancers.iter_mut().flatten() {
        if swapped(lb)
            && let Some(a) = lb.advanced_configuration.as_mut()
        {
            std::mem::swap(&mut lb.target_group_arn, &mut a.alternate_target_group_arn);
        }
    }
    s
}

fn create(plan: &mut Plan, input: &Input, settings: Arc<ServiceSettings>, revision: Revision, bind: Bind) -> Step {
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
    before_deploy(plan, input, &settings, &revision, &bind);
    plan.push(Action::CreateService { settings, revision, desired_count, bind });
    Ok(())
}

fn update(
    plan: &mut Plan,
    input: &Input,
    live: &LiveService,
    settings: Arc<ServiceSettings>,
    revision: Revision,
    bind: Bind,
) -> Step {
    let desired = &input.desired;
    let settings = live_order(settings, live);
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
    if moves {
        before_deploy(plan, input, &settings, &revision, &bind);
    }
    if moves || !changed.is_empty() || adopted {
        plan.push(Action::UpdateService {
            set_desired_count: settings.desired_count.is_some(),
            settings,
            revision,
            bind,
        });
    }
    if !tags.is_empty() || adopted {
        plan.push(Action::TagService { arn: live.arn.clone(), tags: desired.service.tags.clone() });
    }
    plan.drift.extend(changed);
    plan.drift.extend(tags);
    Ok(())
}
