//! The dashboard step (`dashboards: cloudwatch`): put the rendered dashboard when the live
//! one differs (or is missing). A routed service's dashboard names its target group, which
//! this plan may create: the executor fills it in.

use serde_json::json;

use super::{Action, Input, Plan, Revision};
use crate::core::dashboard::bind;
use crate::core::diff::Change;

pub(super) fn step(plan: &mut Plan, input: &Input, target_group: Option<Revision>) {
    let Some(want) = &input.desired.dashboard else { return };
    // The internal route's load balancer, else the external one's.
    let routing = input.live.routing.as_ref();
    let listener = input.desired.routing.as_ref().and_then(|r| r.rules.first()).map(|r| r.listener_arn.as_str());
    let load_balancer = routing
        .and_then(|r| r.load_balancers.iter().find(|l| Some(l.listener_arn.as_str()) == listener))
        .map(|l| l.load_balancer_arn.clone());
    let known = target_group.as_ref().and_then(Revision::existing);
    let body = bind(&want.dashboard_body, known, load_balancer.as_deref());
    let live = input.live.dashboard.as_ref();
    if let (Some(body), Some(live)) = (&body, live)
        && *body == live.body
    {
        return;
    }
    plan.drift.push(Change {
        path: format!("dashboard.{}", want.dashboard_name),
        live: live.map(|_| json!("differs")),
        desired: Some(json!(if live.is_some() { "the rendered body" } else { "create" })),
    });
    plan.push(Action::PutDashboard {
        name: want.dashboard_name.clone(),
        body: want.dashboard_body.clone(),
        target_group,
        load_balancer_arn: load_balancer,
    });
}
