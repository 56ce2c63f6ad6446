//! The service settings' view: defaults ECS fills in, sets, the strategy and the
//! load balancers compared as ECS reports them (docs/diff.md, "Service").

use serde_json::{Map, Value, json};

use super::{Change, diff_values, obj};
use crate::core::desired::*;
use crate::core::live::LiveService;

fn berth_tags(tags: &[Tag]) -> Value {
    obj(tags
        .iter()
        .filter(|t| t.key.starts_with("berth:") && !crate::core::desired::tags::is_state(&t.key))
        .map(|t| (t.key.clone(), json!(t.value))))
}

/// The comparable service settings. Fields the live side does not report at all are
/// taken as equal: AWS always returns them, and only an emulator leaves them out
/// (moto drops `deploymentConfiguration` and `enableECSManagedTags` on create).
pub fn service_view(s: &ServiceSettings, reference: &ServiceSettings) -> Value {
    let mut m = Map::new();
    if reference.desired_count.is_some() {
        m.insert("desiredCount".into(), json!(s.desired_count));
    }
    m.insert("launchType".into(), json!(s.launch_type.clone().or_else(|| reference.launch_type.clone())));
    if reference.platform_version.as_deref() != Some("LATEST") {
        m.insert("platformVersion".into(), json!(s.platform_version.clone().unwrap_or_else(|| "LATEST".into())));
    }
    let dc = s.deployment_configuration.as_ref().or(reference.deployment_configuration.as_ref());
    if let Some(dc) = dc {
        let cb = dc.deployment_circuit_breaker.clone().unwrap_or_default();
        let mut view = json!({
            "deploymentCircuitBreaker": {"enable": cb.enable, "rollback": cb.rollback},
            "maximumPercent": dc.maximum_percent.unwrap_or(200),
            "minimumHealthyPercent": dc.minimum_healthy_percent.unwrap_or(100),
        });
        // Enabled alarms only (switched-off ones read as none); names as a set.
        if let Some(a) = dc.alarms.as_ref().filter(|a| a.enable) {
            let mut names = a.alarm_names.clone();
            names.sort();
            view["alarms"] = json!({"alarmNames": names, "rollback": a.rollback});
        }
        strategy_view(dc, reference.deployment_configuration.as_ref(), &mut view);
        m.insert("deploymentConfiguration".into(), view);
    }
    let net = s.network_configuration.as_ref().map(|n| {
        let mut subnets = n.awsvpc_configuration.subnets.clone();
        subnets.sort();
        let mut sgs = n.awsvpc_configuration.security_groups.clone();
        sgs.sort();
        json!({
            "subnets": subnets,
            "securityGroups": sgs,
            "assignPublicIp": n.awsvpc_configuration.assign_public_ip.clone().unwrap_or_else(|| "DISABLED".into()),
        })
    });
    // Without network settings in the environment defaults berth sends none, so the live
    // ones are not berth's to compare.
    if reference.network_configuration.is_some() {
        m.insert("networkConfiguration".into(), net.unwrap_or(Value::Null));
    }
    m.insert(
        "propagateTags".into(),
        json!(s.propagate_tags.clone().or_else(|| reference.propagate_tags.clone()).unwrap_or_else(|| "NONE".into())),
    );
    m.insert(
        "enableECSManagedTags".into(),
        json!(s.enable_ecs_managed_tags.or(reference.enable_ecs_managed_tags).unwrap_or(false)),
    );
    m.insert(
        "enableExecuteCommand".into(),
        json!(s.enable_execute_command.or(reference.enable_execute_command).unwrap_or(false)),
    );
    // Compared only where berth routes the environment (its own `None` otherwise).
    if reference.load_balancers.is_some() {
        let mut lbs: Vec<Value> = (s.load_balancers.iter().flatten()).map(load_balancer_view).collect();
        lbs.sort_by_key(|v| v.to_string());
        m.insert("loadBalancers".into(), Value::Array(lbs));
    }
    m.insert("tags".into(), berth_tags(&s.tags));
    Value::Object(m)
}

/// The strategy (ECS reports `ROLLING` when none was sent), and what berth sets for it:
/// a bake time or canary/linear step only where the spec sets one (ECS fills in its
/// defaults otherwise), the hooks as a set.
fn strategy_view(dc: &DeploymentConfiguration, reference: Option<&DeploymentConfiguration>, view: &mut Value) {
    let strategy = dc.strategy.clone().unwrap_or_else(|| "ROLLING".into());
    view["strategy"] = json!(strategy);
    let Some(r) = reference else { return };
    if r.bake_time_in_minutes.is_some() {
        view["bakeTimeInMinutes"] = json!(dc.bake_time_in_minutes);
    }
    if r.canary_configuration.is_some() {
        view["canaryConfiguration"] = json!(dc.canary_configuration);
    }
    if r.linear_configuration.is_some() {
        view["linearConfiguration"] = json!(dc.linear_configuration);
    }
    let mut hooks: Vec<Value> = dc
        .lifecycle_hooks
        .iter()
        .map(|h| {
            let mut stages = h.lifecycle_stages.clone();
            stages.sort();
            json!({"hookTargetArn": h.hook_target_arn, "roleArn": h.role_arn, "lifecycleStages": stages})
        })
        .collect();
    hooks.sort_by_key(|v| v.to_string());
    if !hooks.is_empty() || !r.lifecycle_hooks.is_empty() {
        view["lifecycleHooks"] = Value::Array(hooks);
    }
}

/// A `loadBalancers` entry. With a strategy that shifts traffic the two groups are a set:
/// which of them serves production is ECS's to say after each deployment.
fn load_balancer_view(l: &LoadBalancer) -> Value {
    let mut v = json!({"containerName": l.container_name, "containerPort": l.container_port});
    match &l.advanced_configuration {
        None => v["targetGroupArn"] = json!(l.target_group_arn),
        Some(a) => {
            let mut groups = [l.target_group_arn.clone(), a.alternate_target_group_arn.clone()];
            groups.sort();
            v["targetGroups"] = json!(groups);
            v["productionListenerRule"] = json!(a.production_listener_rule);
            v["testListenerRule"] = json!(a.test_listener_rule);
            v["roleArn"] = json!(a.role_arn);
        }
    }
    v
}

/// Differences in service settings (the task definition revision is compared by the plan).
pub fn diff_service(live: &LiveService, desired: &ServiceSettings) -> Vec<Change> {
    let mut out = Vec::new();
    diff_values("service", &service_view(&live.settings, desired), &service_view(desired, desired), &mut out);
    out
}

/// Why a live service cannot be changed into the desired one in place.
pub fn needs_replacement(live: &LiveService, desired: &ServiceSettings) -> Vec<String> {
    let mut out = Vec::new();
    if live.uses_capacity_providers {
        out.push("the service uses a capacity provider strategy; berth deploys launchType FARGATE".to_string());
    } else if let (Some(l), Some(d)) = (&live.settings.launch_type, &desired.launch_type)
        && l != d
    {
        out.push(format!("launchType {l} → {d}"));
    }
    if let Some(s) = live.scheduling_strategy.as_deref().filter(|s| *s != "REPLICA") {
        out.push(format!("schedulingStrategy {s} → REPLICA"));
    }
    if let Some(c) = live.deployment_controller.as_deref().filter(|c| *c != "ECS") {
        out.push(format!("deploymentController {c} → ECS"));
    }
    if live.settings.network_configuration.is_none() && desired.network_configuration.is_some() {
        out.push("network mode: the service has no awsvpc network configuration".to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::testing;

    fn settings() -> ServiceSettings {
        testing::service_settings()
    }

    #[test]
    fn service_defaults_order_and_platform_are_not_drift() {
        let desired = settings();
        let mut l = settings();
        l.platform_version = Some("1.4.0".into()); // LATEST resolved
        l.network_configuration.as_mut().unwrap().awsvpc_configuration.subnets.reverse();
        l.network_configuration.as_mut().unwrap().awsvpc_configuration.assign_public_ip = None;
        l.deployment_configuration = None; // not reported (moto after create)
        l.enable_ecs_managed_tags = None;
        l.tags.push(Tag { key: "team".into(), value: "x".into() }); // other tags are not ours
        let live = testing::live_service(l);
        assert_eq!(diff_service(&live, &desired), vec![]);
        // No network settings in git: the live ones are not compared (nothing to send).
        let mut bare = settings();
        bare.network_configuration = None;
        assert_eq!(diff_service(&live, &bare), vec![]);
    }

    #[test]
    fn what_ecs_fills_in_for_a_strategy_is_not_drift() {
        let dc = |s: &mut ServiceSettings| s.deployment_configuration.as_mut().unwrap().clone();
        // Rolling: ECS reports ROLLING where git sends nothing else; its bake default too.
        let desired = settings();
        let mut l = settings();
        let mut d = dc(&mut l);
        (d.strategy, d.bake_time_in_minutes) = (Some("ROLLING".into()), Some(0));
        l.deployment_configuration = Some(d);
        assert_eq!(diff_service(&testing::live_service(l), &desired), vec![]);
        // Blue-green without a bake time in git: ECS's default is not compared; hooks are
        // a set, their stages too; the two target groups of an entry are a pair.
        let hook = |stages: &[&str]| LifecycleHook {
            hook_target_arn: "arn:aws:lambda:us-east-1:1:function:f".into(),
            role_arn: "arn:aws:iam::1:role/h".into(),
            lifecycle_stages: stages.iter().map(|s| s.to_string()).collect(),
        };
        let mut desired = settings();
        let mut d = dc(&mut desired);
        (d.strategy, d.lifecycle_hooks) = (Some("BLUE_GREEN".into()), vec![hook(&["PRE_SCALE_UP", "POST_SCALE_UP"])]);
        desired.deployment_configuration = Some(d.clone());
        let advanced = |alt: &str| AdvancedConfiguration {
            alternate_target_group_arn: alt.into(),
            production_listener_rule: "rule".into(),
            test_listener_rule: None,
            role_arn: "role".into(),
        };
        let lb = |tg: &str, alt: &str| LoadBalancer {
            target_group_arn: tg.into(),
            container_name: "web".into(),
            container_port: 8080,
            advanced_configuration: Some(advanced(alt)),
        };
        desired.load_balancers = Some(vec![lb("blue", "green")]);
        let mut l = desired.clone();
        let mut ld = d.clone();
        (ld.bake_time_in_minutes, ld.lifecycle_hooks) = (Some(15), vec![hook(&["POST_SCALE_UP", "PRE_SCALE_UP"])]);
        l.deployment_configuration = Some(ld);
        l.load_balancers = Some(vec![lb("green", "blue")]);
        assert_eq!(diff_service(&testing::live_service(l.clone()), &desired), vec![]);
        // What git sets is compared.
        d.bake_time_in_minutes = Some(5);
        desired.deployment_configuration = Some(d);
        let changes = diff_service(&testing::live_service(l), &desired);
        assert_eq!(
            changes.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
            ["~ service.deploymentConfiguration.bakeTimeInMinutes: 15 → 5"]
        );
    }

    #[test]
    fn desired_count_is_the_autoscalers_when_autoscaling_is_on() {
        let mut desired = settings();
        desired.desired_count = None;
        let mut l = settings();
        l.desired_count = Some(7);
        let live = testing::live_service(l.clone());
        assert_eq!(diff_service(&live, &desired), vec![]);
        let changes = diff_service(&live, &settings());
        assert_eq!(changes[0].to_string(), "~ service.desiredCount: 7 → 2");
    }

    #[test]
    fn launch_type_change_needs_replacement() {
        let mut l = settings();
        l.launch_type = Some("EC2".into());
        let live = testing::live_service(l);
        assert_eq!(needs_replacement(&live, &settings()), vec!["launchType EC2 → FARGATE"]);
    }
}
