//! The routing step (environments with `ingress:`): the target group, a listener rule
//! per load balancer, alias records. Creates and changes come before the service step
//! ([`before`]: ECS takes a target group only once a rule forwards to it); what git no
//! longer routes is removed after it ([`after`]: rules, then the group the service let
//! go of, then records). Only resources tagged as this (service, env)'s are changed.

use serde_json::{Value, json};

use super::{Action, Blocker, Forward, Input, Plan, Revision, Step};
use crate::core::desired::tags;
use crate::core::diff::Change;
use crate::core::live::LiveRouting;
use crate::core::routing::{ListenerRule, LiveRule, LiveTargetGroup, Record, TargetGroup, allocate_priority};

/// Whether a resource's tags say it is this (service, env)'s.
fn ours(tagged: &[crate::core::desired::Tag], input: &Input) -> bool {
    let tag = |k: &str| tagged.iter().find(|t| t.key == k).map(|t| t.value.as_str());
    let service = &input.desired.service;
    tag(tags::MANAGED) == Some("true")
        && tag(tags::SERVICE) == Some(service.service_name.as_str())
        && input.desired.tag(tags::ENV).is_some_and(|env| tag(tags::ENV) == Some(env))
}

fn change(path: String, live: Option<Value>, desired: Option<Value>) -> Change {
    Change { path, live, desired }
}

/// Creates and changes; returns what the service's `loadBalancers` names, by the names the
/// rendered settings use: each target group by its name, each rule by `rule:<scope>`.
pub(super) fn before(plan: &mut Plan, input: &Input) -> Step<Vec<(String, Revision)>> {
    let (Some(live), Some(desired)) = (&input.live.routing, &input.desired.routing) else { return Ok(Vec::new()) };
    let mut bound = Vec::new();
    for want in &desired.target_groups {
        let group = target_group(plan, input, live, want)?;
        bound.push((want.name.clone(), group));
    }
    let group =
        |name: &str, bound: &[(String, Revision)]| bound.iter().find(|(n, _)| n == name).map(|(_, r)| r.clone());
    for rule in &desired.rules {
        let (Some(primary), alternate) =
            (group(&rule.target_group, &bound), rule.alternate.as_ref().and_then(|a| group(a, &bound)))
        else {
            continue;
        };
        let arn = converge_rule(plan, input, live, rule, &primary, alternate.as_ref())?;
        bound.push((crate::core::render::rule_placeholder(&rule.scope), arn));
    }
    for record in &desired.records {
        converge_record(plan, live, record)?;
    }
    Ok(bound)
}

fn target_group(plan: &mut Plan, input: &Input, live: &LiveRouting, want: &TargetGroup) -> Step<Revision> {
    let Some(tg) = live.target_groups.iter().find(|t| t.group.name == want.name) else {
        plan.drift.push(change(format!("routing.targetGroup.{}", want.name), None, Some(json!("create"))));
        return Ok(Revision::Output(plan.push(Action::CreateTargetGroup { group: want.clone() })));
    };
    if !ours(&tg.group.tags, input) {
        return Err(vec![Blocker::TargetGroupTaken { name: want.name.clone() }]);
    }
    let have = &tg.group;
    for (field, l, d) in [
        ("port", have.port.to_string(), want.port.to_string()),
        ("protocol", have.protocol.clone(), want.protocol.clone()),
        ("vpc", have.vpc_id.clone(), want.vpc_id.clone()),
        ("target type", have.target_type.clone(), want.target_type.clone()),
    ] {
        if l != d {
            return Err(vec![Blocker::TargetGroupReplace {
                name: want.name.clone(),
                field: field.into(),
                live: l,
                desired: d,
            }]);
        }
    }
    if have.health_check_path != want.health_check_path {
        plan.drift.push(change(
            format!("routing.targetGroup.{}.HealthCheckPath", want.name),
            Some(json!(have.health_check_path)),
            Some(json!(want.health_check_path)),
        ));
        plan.push(Action::ModifyTargetGroup { arn: tg.arn.clone(), group: want.clone() });
    }
    Ok(Revision::Existing(tg.arn.clone()))
}

/// berth's live rule of this service on `listener`.
fn live_rule<'a>(live: &'a LiveRouting, input: &Input, listener: &str) -> Option<&'a LiveRule> {
    live.rules.iter().find(|r| r.rule.listener_arn == listener && ours(&r.rule.tags, input))
}

fn sorted(v: &[String]) -> Vec<String> {
    let mut v = v.to_vec();
    v.sort();
    v
}

/// Creates or heals the rule; returns its ARN (or the CreateRule that makes it). A rule of a
/// strategy that shifts traffic forwards to both groups; ECS owns the weights.
fn converge_rule(
    plan: &mut Plan,
    input: &Input,
    live: &LiveRouting,
    rule: &ListenerRule,
    group: &Revision,
    alternate: Option<&Revision>,
) -> Step<Revision> {
    let path = format!("routing.rule.{}", rule.scope);
    let mut forward = Forward { primary: group.clone(), alternate: alternate.cloned() };
    let have = live_rule(live, input, &rule.listener_arn);
    // The group that serves now keeps all the traffic when berth rewrites the action: after
    // a blue-green deployment that is the alternate (ECS swapped their roles).
    if let (Some(Revision::Existing(alt)), Some(h)) = (alternate, have)
        && h.serving.as_deref() == Some(alt.as_str())
    {
        forward = Forward { primary: Revision::Existing(alt.clone()), alternate: Some(group.clone()) };
    }
    // Leaving a traffic-shifting strategy while the alternate serves would move all the
    // traffic to the group ECS drained: that one deployment must come first.
    if let (None, Some(h)) = (alternate, have)
        && let Some(serving) = h.serving.as_ref()
        && Some(serving.as_str()) != group.existing()
        && h.forward_to.len() > 1
    {
        return Err(vec![Blocker::AlternateServes { rule: rule.scope.clone(), group: group_name(live, serving) }]);
    }
    let Some(have) = have else {
        let name = &input.desired.service.service_name;
        let Some(priority) = allocate_priority(name, &rule.scope, |p| live.is_free(&rule.listener_arn, p)) else {
            return Err(vec![Blocker::NoFreePriority { listener: rule.listener_arn.clone() }]);
        };
        plan.drift.push(change(path, None, Some(rule_view(&rule.hosts, &rule.paths))));
        return Ok(Revision::Output(plan.push(Action::CreateRule { rule: rule.clone(), priority, forward })));
    };
    let mut conditions = false;
    for (field, l, d) in [("hosts", &have.rule.hosts, &rule.hosts), ("paths", &have.rule.paths, &rule.paths)] {
        if sorted(l) != sorted(d) {
            plan.drift.push(change(format!("{path}.{field}"), Some(json!(sorted(l))), Some(json!(sorted(d)))));
            conditions = true;
        }
    }
    // The groups it forwards to, as a set: ECS moves the weights between the two.
    let want: Option<Vec<String>> =
        std::iter::once(group).chain(alternate).map(|r| r.existing().map(str::to_string)).collect();
    let forwards = want.map(|w| sorted(&w)) == Some(sorted(&have.forward_to));
    if !forwards {
        plan.drift.push(change(
            format!("{path}.forward"),
            Some(json!(have.forward_to)),
            Some(json!(if alternate.is_some() { "the target group and its alternate" } else { "the target group" })),
        ));
    }
    if conditions || !forwards {
        plan.push(Action::ModifyRule {
            arn: have.arn.clone(),
            rule: rule.clone(),
            forward: (!forwards).then_some(forward),
        });
    }
    Ok(Revision::Existing(have.arn.clone()))
}

/// The name of the live target group with this ARN (the ARN when not known).
fn group_name(live: &LiveRouting, arn: &str) -> String {
    live.target_groups.iter().find(|g| g.arn == arn).map_or_else(|| arn.to_string(), |g| g.group.name.clone())
}

fn rule_view(hosts: &[String], paths: &[String]) -> Value {
    json!({"hosts": sorted(hosts), "paths": sorted(paths)})
}

fn converge_record(plan: &mut Plan, live: &LiveRouting, record: &Record) -> Step {
    let Some(lb) = live.load_balancers.iter().find(|l| l.listener_arn == record.listener_arn) else {
        return Err(vec![Blocker::NoLoadBalancer { listener: record.listener_arn.clone() }]);
    };
    let dns = lb.dns_name.trim_end_matches('.').to_ascii_lowercase();
    let have = live.records.iter().find(|r| r.zone_id == record.zone_id && r.name == record.name);
    if have.is_some_and(|r| r.alias_dns_name == dns) {
        return Ok(());
    }
    plan.drift.push(change(
        format!("routing.record.{}", record.name),
        have.map(|r| json!(r.alias_dns_name)),
        Some(json!(dns)),
    ));
    plan.push(Action::UpsertRecord {
        record: record.clone(),
        dns_name: dns,
        alias_zone_id: lb.canonical_hosted_zone_id.clone(),
    });
    Ok(())
}

/// Removes what this service's routing no longer has: rules on listeners git does not
/// route it through, records of host names no rule has any more, and the target group
/// once nothing routes to it.
pub(super) fn after(plan: &mut Plan, input: &Input) {
    let Some(live) = &input.live.routing else { return };
    let desired = input.desired.routing.as_ref();
    let wanted_rule =
        |r: &LiveRule| desired.is_some_and(|d| d.rules.iter().any(|w| w.listener_arn == r.rule.listener_arn));
    for rule in live.rules.iter().filter(|r| ours(&r.rule.tags, input) && !wanted_rule(r)) {
        plan.drift.push(change(
            format!("routing.rule.{}", rule.rule.hosts.join(",")),
            Some(rule_view(&rule.rule.hosts, &rule.rule.paths)),
            None,
        ));
        plan.push(Action::DeleteRule { arn: rule.arn.clone(), hosts: rule.rule.hosts.clone() });
    }
    // Records berth made for the hosts of this service's rules, pointing at the
    // environment's load balancers, that git no longer wants.
    let hosts: Vec<&String> =
        live.rules.iter().filter(|r| ours(&r.rule.tags, input)).flat_map(|r| &r.rule.hosts).collect();
    let wanted_record =
        |zone: &str, name: &str| desired.is_some_and(|d| d.records.iter().any(|w| w.zone_id == zone && w.name == name));
    for record in &live.records {
        let points_at_ours = live
            .load_balancers
            .iter()
            .any(|lb| lb.dns_name.trim_end_matches('.').eq_ignore_ascii_case(&record.alias_dns_name));
        if points_at_ours && hosts.contains(&&record.name) && !wanted_record(&record.zone_id, &record.name) {
            plan.drift.push(change(
                format!("routing.record.{}", record.name),
                Some(json!(record.alias_dns_name)),
                None,
            ));
            plan.push(Action::DeleteRecord {
                zone_id: record.zone_id.clone(),
                name: record.name.clone(),
                dns_name: record.alias_dns_name.clone(),
                alias_zone_id: record.alias_hosted_zone_id.clone(),
            });
        }
    }
    let wanted_group =
        |g: &LiveTargetGroup| desired.is_some_and(|d| d.target_groups.iter().any(|w| w.name == g.group.name));
    for tg in live.target_groups.iter().filter(|t| ours(&t.group.tags, input) && !wanted_group(t)) {
        plan.drift.push(change(format!("routing.targetGroup.{}", tg.group.name), Some(json!("exists")), None));
        plan.push(Action::DeleteTargetGroup { arn: tg.arn.clone(), name: tg.group.name.clone() });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::{Action, Blocker, plan};
    use crate::core::desired::{AdvancedConfiguration, Desired, LoadBalancer, Tag, tags};
    use crate::core::live::{LiveRouting, LiveState};
    use crate::core::routing::*;
    use crate::core::testing::{converged, ctx, desired, planned_kinds};

    const INTERNAL: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/internal/1/2";
    const TG_ARN: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web-pre/1";

    fn berth_tags() -> Vec<Tag> {
        [(tags::ENV, "pre"), (tags::MANAGED, "true"), (tags::SERVICE, "web")]
            .map(|(k, v)| Tag { key: k.into(), value: v.into() })
            .to_vec()
    }

    /// `web` in `pre`, routed on the internal listener as web.pre.internal.example.com.
    fn routed() -> Desired {
        let mut d = desired().build();
        let service = Arc::make_mut(&mut d.service);
        service.load_balancers = Some(vec![LoadBalancer {
            target_group_arn: "web-pre".into(),
            container_name: "web".into(),
            container_port: 8080,
            advanced_configuration: None,
        }]);
        d.routing = Some(Routing {
            target_groups: vec![TargetGroup {
                name: "web-pre".into(),
                protocol: "HTTP".into(),
                port: 8080,
                vpc_id: "vpc-1".into(),
                target_type: "ip".into(),
                health_check_path: "/health".into(),
                tags: berth_tags(),
            }],
            rules: vec![ListenerRule {
                listener_arn: INTERNAL.into(),
                scope: "internal".into(),
                hosts: vec!["web.pre.internal.example.com".into()],
                paths: Vec::new(),
                tags: berth_tags(),
                target_group: "web-pre".into(),
                alternate: None,
            }],
            records: vec![Record {
                zone_id: "ZPRIVATE".into(),
                name: "web.pre.internal.example.com".into(),
                listener_arn: INTERNAL.into(),
            }],
        });
        d
    }

    fn lb() -> LoadBalancerInfo {
        LoadBalancerInfo {
            listener_arn: INTERNAL.into(),
            load_balancer_arn: "arn:lb".into(),
            dns_name: "internal-1.us-east-1.elb.amazonaws.com".into(),
            canonical_hosted_zone_id: "ZELB".into(),
            security_groups: Vec::new(),
        }
    }

    /// Live equal to `d`'s routing (the service pointing at the group).
    fn live_routed(d: &Desired) -> LiveState {
        let r = d.routing.as_ref().unwrap();
        let mut live = converged(d)
            .service(|s| {
                s.settings.load_balancers.as_mut().unwrap()[0].target_group_arn = TG_ARN.into();
            })
            .build();
        let rule = LiveRule {
            arn: "arn:rule/1".into(),
            priority: Some(7),
            rule: r.rules[0].clone(),
            forward_to: vec![TG_ARN.into()],
            serving: None,
        };
        live.routing = Some(LiveRouting {
            target_groups: vec![LiveTargetGroup { arn: TG_ARN.into(), group: r.target_groups[0].clone() }],
            rules: vec![rule],
            records: vec![LiveRecord {
                zone_id: "ZPRIVATE".into(),
                name: "web.pre.internal.example.com".into(),
                alias_dns_name: "internal-1.us-east-1.elb.amazonaws.com".into(),
                alias_hosted_zone_id: "ZELB".into(),
            }],
            load_balancers: vec![lb()],
            ..Default::default()
        });
        live
    }

    #[test]
    fn a_new_route_creates_group_rule_record_before_the_service_points_at_it() {
        let d = routed();
        let mut live = live_routed(&d);
        let r = live.routing.as_mut().unwrap();
        (r.target_groups, r.rules, r.records) = (Vec::new(), Vec::new(), Vec::new());
        live.service.as_mut().unwrap().settings.load_balancers = Some(Vec::new());
        let p = plan(&d, &live, false, &ctx());
        let kinds: Vec<String> = p
            .actions
            .iter()
            .map(|a| serde_json::to_value(a).unwrap()["action"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(kinds, ["CreateTargetGroup", "CreateRule", "UpsertRecord", "UpdateService"]);
        let Action::UpdateService { bind: super::super::Bind { routes, .. }, .. } = &p.actions[3] else {
            panic!("{:?}", p.actions[3])
        };
        assert_eq!(routes[0], ("web-pre".to_string(), super::Revision::Output(super::super::ActionId(0))));
        assert_eq!(routes[1].1, super::Revision::Output(super::super::ActionId(1)), "and the rule it creates");
    }

    #[test]
    fn a_converged_route_plans_nothing() {
        let d = routed();
        assert_eq!(planned_kinds(&d, &live_routed(&d)), Vec::<String>::new());
    }

    #[test]
    fn console_edits_are_healed_field_by_field() {
        let d = routed();
        let mut live = live_routed(&d);
        let r = live.routing.as_mut().unwrap();
        r.rules[0].rule.hosts = vec!["other.example.com".into()];
        r.target_groups[0].group.health_check_path = "/".into();
        let p = plan(&d, &live, false, &ctx());
        let paths: Vec<&str> = p.drift.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(paths, ["routing.targetGroup.web-pre.HealthCheckPath", "routing.rule.internal.hosts"]);
        assert_eq!(planned_kinds(&d, &live), ["ModifyTargetGroup", "ModifyRule"]);
    }

    #[test]
    fn a_route_removed_from_git_goes_after_the_service_lets_go() {
        let mut d = routed();
        d.routing = None;
        Arc::make_mut(&mut d.service).load_balancers = Some(Vec::new());
        let live = live_routed(&routed());
        assert_eq!(planned_kinds(&d, &live), ["UpdateService", "DeleteRule", "DeleteRecord", "DeleteTargetGroup"]);
    }

    #[test]
    fn a_group_berth_did_not_make_blocks_the_service() {
        let d = routed();
        let mut live = live_routed(&d);
        live.routing.as_mut().unwrap().target_groups[0].group.tags.clear();
        let p = plan(&d, &live, false, &ctx());
        assert_eq!(p.blockers, [Blocker::TargetGroupTaken { name: "web-pre".into() }]);
        assert!(p.actions.is_empty());
    }

    #[test]
    fn a_new_rule_takes_a_priority_no_rule_or_earlier_plan_holds() {
        let d = routed();
        let mut live = live_routed(&d);
        live.routing.as_mut().unwrap().rules.clear();
        let first = allocate_priority("web", "internal", |_| true).unwrap();
        let r = live.routing.as_mut().unwrap();
        r.taken = Arc::new([(INTERNAL.to_string(), [first].into())].into());
        r.claimed = vec![(INTERNAL.to_string(), first + 1)];
        let p = plan(&d, &live, false, &ctx());
        let Action::CreateRule { priority, .. } = &p.actions[0] else { panic!("{:?}", p.actions) };
        assert_eq!(*priority, first + 2);
    }

    const ALT_ARN: &str = "arn:aws:elbv2:us-east-1:123456789012:targetgroup/web-pre-alt/2";
    const ROLE: &str = "arn:aws:iam::123456789012:role/ecs-traffic";

    /// `routed()` with `strategy: blue-green`: the alternate group, the rule forwarding to
    /// both, the service's entry naming them and the rule.
    fn blue_green() -> Desired {
        let mut d = routed();
        let r = d.routing.as_mut().unwrap();
        let alt = TargetGroup { name: "web-pre-alt".into(), ..r.target_groups[0].clone() };
        r.target_groups.push(alt);
        r.rules[0].alternate = Some("web-pre-alt".into());
        let lb = &mut Arc::make_mut(&mut d.service).load_balancers.as_mut().unwrap()[0];
        lb.advanced_configuration = Some(AdvancedConfiguration {
            alternate_target_group_arn: "web-pre-alt".into(),
            production_listener_rule: "rule:internal".into(),
            test_listener_rule: None,
            role_arn: ROLE.into(),
        });
        d
    }

    /// Live equal to `blue_green()`, as ECS leaves it after a deployment: the groups'
    /// roles swapped in the service, the rule's groups in another order.
    fn live_blue_green(d: &Desired) -> LiveState {
        let mut live = live_routed(&routed());
        let r = live.routing.as_mut().unwrap();
        let alt = d.routing.as_ref().unwrap().target_groups[1].clone();
        r.target_groups.push(LiveTargetGroup { arn: ALT_ARN.into(), group: alt });
        r.rules[0].forward_to = vec![ALT_ARN.into(), TG_ARN.into()];
        r.rules[0].serving = Some(ALT_ARN.into());
        let lb = &mut live.service.as_mut().unwrap().settings.load_balancers.as_mut().unwrap()[0];
        lb.target_group_arn = ALT_ARN.into();
        lb.advanced_configuration = Some(AdvancedConfiguration {
            alternate_target_group_arn: TG_ARN.into(),
            production_listener_rule: "arn:rule/1".into(),
            test_listener_rule: None,
            role_arn: ROLE.into(),
        });
        live
    }

    #[test]
    fn blue_green_makes_the_alternate_and_forwards_to_both() {
        let d = blue_green();
        let live = live_routed(&routed());
        let p = plan(&d, &live, false, &ctx());
        assert!(p.blockers.is_empty(), "{:?}", p.blockers);
        assert_eq!(crate::core::testing::action_kinds(&p), ["CreateTargetGroup", "ModifyRule", "UpdateService"]);
        let Action::ModifyRule { forward: Some(f), .. } = &p.actions[1] else { panic!("{:?}", p.actions[1]) };
        assert_eq!(f.primary, super::Revision::Existing(TG_ARN.into()));
        assert_eq!(f.alternate, Some(super::Revision::Output(super::super::ActionId(0))));
        let Action::UpdateService { settings, bind, .. } = &p.actions[2] else { panic!() };
        let mut outputs = super::super::Outputs::default();
        outputs.record(super::super::ActionId(0), ALT_ARN.into());
        let bound = super::super::bound(settings, bind, &outputs);
        let lb = &bound.load_balancers.as_ref().unwrap()[0];
        assert_eq!(lb.target_group_arn, TG_ARN);
        let a = lb.advanced_configuration.as_ref().unwrap();
        assert_eq!(
            (a.alternate_target_group_arn.as_str(), a.production_listener_rule.as_str()),
            (ALT_ARN, "arn:rule/1")
        );
    }

    #[test]
    fn what_ecs_moves_in_a_blue_green_deployment_is_no_drift() {
        let d = blue_green();
        assert_eq!(planned_kinds(&d, &live_blue_green(&d)), Vec::<String>::new());
    }

    #[test]
    fn a_host_change_of_a_blue_green_rule_leaves_its_weights_alone() {
        let d = blue_green();
        let mut live = live_blue_green(&d);
        live.routing.as_mut().unwrap().rules[0].rule.hosts = vec!["old.example.com".into()];
        let p = plan(&d, &live, false, &ctx());
        assert_eq!(crate::core::testing::action_kinds(&p), ["ModifyRule"]);
        assert!(matches!(&p.actions[0], Action::ModifyRule { forward: None, .. }), "{:?}", p.actions[0]);
    }

    #[test]
    fn back_to_rolling_waits_while_the_alternate_serves() {
        let p = plan(&routed(), &live_blue_green(&blue_green()), false, &ctx());
        assert_eq!(p.blockers, [Blocker::AlternateServes { rule: "internal".into(), group: "web-pre-alt".into() }]);
        assert!(p.actions.is_empty(), "{:?}", p.actions);
    }

    #[test]
    fn back_to_rolling_forwards_to_one_group_and_deletes_the_alternate_after_the_service() {
        let mut live = live_blue_green(&blue_green());
        live.routing.as_mut().unwrap().rules[0].serving = Some(TG_ARN.into());
        let p = plan(&routed(), &live, false, &ctx());
        assert_eq!(crate::core::testing::action_kinds(&p), ["ModifyRule", "UpdateService", "DeleteTargetGroup"]);
    }

    #[test]
    fn the_serving_group_keeps_the_traffic_and_the_service_its_order() {
        let mut d = blue_green();
        Arc::make_mut(&mut d.service).desired_count = Some(3);
        let mut live = live_blue_green(&d);
        live.routing.as_mut().unwrap().rules[0].forward_to = vec![ALT_ARN.into(), "arn:stray".into()];
        let p = plan(&d, &live, false, &ctx());
        let Action::ModifyRule { forward: Some(f), .. } = &p.actions[0] else { panic!("{:?}", p.actions) };
        assert_eq!(f.primary, super::Revision::Existing(ALT_ARN.into()), "the alternate serves: it stays at 100");
        let Some(Action::UpdateService { settings, .. }) =
            p.actions.iter().find(|a| matches!(a, Action::UpdateService { .. }))
        else {
            panic!("{:?}", p.actions)
        };
        let lb = &settings.load_balancers.as_ref().unwrap()[0];
        assert_eq!(lb.target_group_arn, ALT_ARN, "the update keeps ECS's order of the pair");
    }
}
