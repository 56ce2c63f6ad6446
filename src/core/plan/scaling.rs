//! The autoscaling step: the target, then the policy; berth-named policies git no longer
//! has are deleted, and the target deregistered once autoscaling left git.

use serde_json::json;

use super::{Action, Input, Plan};
use crate::core::desired::{Scaling, scaling_resource_id};
use crate::core::diff::{self, Change};
use crate::core::render::POLICY_PREFIX;

pub(super) fn step(plan: &mut Plan, input: &Input) {
    if let Some(scaling) = &input.desired.scaling {
        register(plan, input, scaling);
    }
    let service = &input.desired.service;
    let resource_id = scaling_resource_id(&service.cluster, &service.service_name);
    delete_stale_policies(plan, input, &resource_id);
    deregister_target(plan, input, resource_id);
}

fn register(plan: &mut Plan, input: &Input, scaling: &Scaling) {
    let target = diff::diff_scalable_target(input.live.scalable_target.as_ref(), &scaling.scalable_target);
    if !target.is_empty() {
        plan.push(Action::RegisterScalableTarget { target: scaling.scalable_target.clone() });
    }
    plan.drift.extend(target);
    let name = &scaling.scaling_policy.policy_name;
    let live = input.live.policies.iter().find(|lp| lp.policy.policy_name == *name);
    let policy = diff::diff_policy(live, &scaling.scaling_policy);
    if !policy.is_empty() {
        plan.push(Action::PutScalingPolicy { policy: scaling.scaling_policy.clone() });
    }
    plan.drift.extend(policy);
}

fn delete_stale_policies(plan: &mut Plan, input: &Input, resource_id: &str) {
    let wanted = input.desired.scaling.as_ref().map(|s| s.scaling_policy.policy_name.as_str());
    for lp in &input.live.policies {
        let name = &lp.policy.policy_name;
        if name.starts_with(POLICY_PREFIX) && Some(name.as_str()) != wanted {
            plan.drift.push(Change {
                path: format!("scaling.policy.{name}"),
                live: Some(json!("present")),
                desired: None,
            });
            plan.push(Action::DeleteScalingPolicy { policy_name: name.clone(), resource_id: resource_id.to_string() });
        }
    }
}

/// Autoscaling removed from git: the target would keep clamping desiredCount. Only a target
/// whose policies were all berth's is berth's to deregister.
fn deregister_target(plan: &mut Plan, input: &Input, resource_id: String) {
    let live = input.live;
    if input.desired.scaling.is_none()
        && let Some(t) = &live.scalable_target
        && !live.policies.is_empty()
        && live.policies.iter().all(|lp| lp.policy.policy_name.starts_with(POLICY_PREFIX))
    {
        plan.drift.push(Change {
            path: "scaling.target".into(),
            live: Some(diff::scalable_target_view(&t.target)),
            desired: None,
        });
        plan.push(Action::DeregisterScalableTarget { resource_id });
    }
}
