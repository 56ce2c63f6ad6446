//! One case per blocker and per action kind: the kinds of the actions in order, the
//! blockers and the drift paths of each plan.

use super::*;
use crate::core::desired::{ScalingPolicy, TaskDefinition};
use crate::core::testing::{
    converged, ctx, desired, live_policy, live_scalable_target, missing, revision_arn, scalable_target, scaling_policy,
};

struct Case {
    name: &'static str,
    desired: Desired,
    live: LiveState,
    adopt: bool,
    actions: &'static [&'static str],
    blockers: Vec<Blocker>,
    drift: &'static [&'static str],
}

impl Case {
    fn new(name: &'static str, desired: Desired, live: LiveState) -> Case {
        Case { name, desired, live, adopt: false, actions: &[], blockers: Vec::new(), drift: &[] }
    }

    fn adopt(self) -> Case {
        Case { adopt: true, ..self }
    }

    fn actions(self, actions: &'static [&'static str]) -> Case {
        Case { actions, ..self }
    }

    fn blockers(self, blockers: Vec<Blocker>) -> Case {
        Case { blockers, ..self }
    }

    fn drift(self, drift: &'static [&'static str]) -> Case {
        Case { drift, ..self }
    }
}

/// An action's kind, as it is serialized (`{"action": "CreateService", …}`).
fn kind(action: &Action) -> String {
    serde_json::to_value(action).expect("actions serialize")["action"].as_str().expect("a tag").to_string()
}

fn plan_of(desired: &Desired, live: &LiveState) -> Plan {
    plan(desired, live, false, &ctx())
}

fn new_image(td: &mut TaskDefinition) {
    td.container_definitions[0].image = "r/web:def".into();
}

fn untag(tag: &'static str) -> impl FnOnce(&mut LiveService) {
    move |s| s.settings.tags.retain(|t| t.key != tag)
}

fn scaling_left_git(live: &mut LiveState) {
    live.scalable_target = Some(live_scalable_target(scalable_target()));
    live.policies.push(live_policy(scaling_policy("cpu")));
}

fn hand_made_policy() -> ScalingPolicy {
    ScalingPolicy { policy_name: "team-requests".into(), ..scaling_policy("requests") }
}

/// Plans each case and compares it with what the case expects.
fn check(cases: Vec<Case>) {
    for case in cases {
        let p = plan(&case.desired, &case.live, case.adopt, &ctx());
        let name = case.name;
        assert_eq!(p.actions.iter().map(kind).collect::<Vec<_>>(), case.actions, "actions of `{name}`");
        assert_eq!(p.blockers, case.blockers, "blockers of `{name}`");
        assert_eq!(p.drift.iter().map(|c| c.path.as_str()).collect::<Vec<_>>(), case.drift, "drift of `{name}`");
        let synced = case.actions.is_empty() && case.blockers.is_empty() && case.drift.is_empty();
        assert_eq!(p.in_sync(), synced, "in_sync of `{name}`");
    }
}

#[test]
fn in_sync_and_blocked() {
    let d = desired().build();
    let scaled = desired().autoscaled().build();
    let changed = desired().task_definition(new_image).build();
    let no_role = desired().task_definition(|td| td.execution_role_arn = None).build();
    let no_network = desired().service(|s| s.network_configuration = None).build();
    let held = changed.spec_hash().to_string();
    check(vec![
        Case::new("converged", d.clone(), converged(&d).build()),
        Case::new("converged, autoscaled", scaled.clone(), converged(&scaled).build()),
        Case::new("held, in sync", d.clone(), converged(&d).with(|l| l.held = Some(d.spec_hash().into())).build())
            .blockers(vec![Blocker::Held { spec_hash: d.spec_hash().into(), in_sync: true }]),
        Case::new("unmanaged", d.clone(), converged(&d).service(untag(tags::MANAGED)).build())
            .blockers(vec![Blocker::Unmanaged { service: "web".into(), cluster: "pre".into() }]),
        Case::new("no execution role", no_role, converged(&d).build()).blockers(vec![Blocker::NoExecutionRole]),
        Case::new("missing, no network settings", no_network, missing().build())
            .blockers(vec![Blocker::NoNetworkSettings { service: "web".into() }])
            .drift(&["service"]),
        Case::new(
            "needs replacement",
            changed.clone(),
            converged(&d)
                .service(|s| {
                    s.settings.launch_type = Some("EC2".into());
                    s.scheduling_strategy = Some("DAEMON".into());
                })
                .build(),
        )
        .blockers(vec![
            Blocker::NeedsReplacement { reason: "launchType EC2 → FARGATE".into() },
            Blocker::NeedsReplacement { reason: "schedulingStrategy DAEMON → REPLICA".into() },
        ])
        .drift(&["container.image"]),
        Case::new("held", changed.clone(), converged(&d).with(|l| l.held = Some(held.clone())).build())
            .blockers(vec![Blocker::Held { spec_hash: held.clone(), in_sync: false }])
            .drift(&["container.image", "service.tags.berth:spec-hash"]),
        Case::new(
            "held, another spec",
            changed.clone(),
            converged(&d).with(|l| l.held = Some(d.spec_hash().into())).build(),
        )
        .actions(&["RegisterTaskDefinition", "UpdateService", "TagService"])
        .drift(&["container.image", "service.tags.berth:spec-hash"]),
        Case::new("paused, drifted", changed.clone(), converged(&d).with(|l| l.paused = Some(pause())).build())
            .blockers(vec![Blocker::Paused { pause: pause(), in_sync: false }])
            .drift(&["container.image", "service.tags.berth:spec-hash"]),
        Case::new("paused, in sync", d.clone(), converged(&d).with(|l| l.paused = Some(pause())).build())
            .blockers(vec![Blocker::Paused { pause: pause(), in_sync: true }]),
        Case::new("pinned at git's spec", changed.clone(), converged(&d).with(|l| l.pinned = Some(pin(&held))).build())
            .blockers(vec![Blocker::Pinned { pin: pin(&held), in_sync: false }])
            .drift(&["container.image", "service.tags.berth:spec-hash"]),
        Case::new(
            "pinned, but not running the pinned revision (a stale pin)",
            changed.clone(),
            converged(&d)
                .with(|l| l.pinned = Some(pin(&held)))
                .service(|s| s.settings.task_definition = crate::core::testing::revision_arn(2))
                .build(),
        )
        .actions(&["RegisterTaskDefinition", "UpdateService", "TagService"])
        .drift(&["container.image", "service.tags.berth:spec-hash"]),
        Case::new(
            "pinned, git changed since",
            changed.clone(),
            converged(&d).with(|l| l.pinned = Some(pin(d.spec_hash()))).build(),
        )
        .actions(&["RegisterTaskDefinition", "UpdateService", "TagService"])
        .drift(&["container.image", "service.tags.berth:spec-hash"]),
    ]);
}

fn pause() -> crate::core::live::Pause {
    crate::core::live::Pause { reason: "incident".into(), by: "ops".into(), at: "2026-12-01T00:00:00Z".into() }
}

fn pin(spec_hash: &str) -> crate::core::live::Pin {
    crate::core::live::Pin {
        revision: "web-pre:1".into(),
        spec_hash: spec_hash.into(),
        by: "ops".into(),
        at: String::new(),
    }
}

/// ECS Exec is a service setting like any other: turned on by git, and off again when git
/// says nothing (a console's `true` is drift); live without the field (moto) is not drift.
#[test]
fn ecs_exec_is_diffed_like_a_service_setting() {
    let off = desired().build();
    let on = desired().service(|s| s.enable_execute_command = Some(true)).build();
    let exec = |v: Option<bool>| move |s: &mut LiveService| s.settings.enable_execute_command = v;
    check(vec![
        Case::new("turned on in git", on.clone(), converged(&off).service(exec(Some(false))).build())
            .actions(&["UpdateService", "TagService"])
            .drift(&["service.enableExecuteCommand", "service.tags.berth:spec-hash"]),
        Case::new("turned on in the console", off.clone(), converged(&off).service(exec(Some(true))).build())
            .actions(&["UpdateService"])
            .drift(&["service.enableExecuteCommand"]),
        Case::new("on, and live says so", on.clone(), converged(&on).build()),
        Case::new("live does not say", on.clone(), converged(&on).service(exec(None)).build()),
    ]);
}

/// Deployment alarms: compared as a set, only while enabled (ECS keeps switched-off ones).
#[test]
fn deployment_alarms_are_diffed_as_a_set_while_enabled() {
    use crate::core::desired::DeploymentAlarms;
    let alarms = |names: &[&str], enable: bool| {
        let names = names.iter().map(|n| n.to_string()).collect();
        move |dc: &mut crate::core::desired::DeploymentConfiguration| {
            dc.alarms = Some(DeploymentAlarms { alarm_names: names, enable, rollback: enable })
        }
    };
    let set = |f: Box<dyn FnOnce(&mut crate::core::desired::DeploymentConfiguration)>| {
        move |s: &mut ServiceSettings| f(s.deployment_configuration.as_mut().unwrap())
    };
    let none = desired().build();
    let two = desired().service(set(Box::new(alarms(&["a", "b"], true)))).build();
    let live_two = |names: &[&str], enable: bool| {
        let f = alarms(names, enable);
        move |s: &mut LiveService| f(s.settings.deployment_configuration.as_mut().unwrap())
    };
    check(vec![
        Case::new("added in git", two.clone(), converged(&none).build())
            .actions(&["UpdateService", "TagService"])
            .drift(&["service.deploymentConfiguration.alarms", "service.tags.berth:spec-hash"]),
        Case::new("in another order", two.clone(), converged(&two).service(live_two(&["b", "a"], true)).build()),
        Case::new(
            "switched off live, none in git",
            none.clone(),
            converged(&none).service(live_two(&["a"], false)).build(),
        ),
        Case::new("left git", none.clone(), converged(&none).service(live_two(&["a"], true)).build())
            .actions(&["UpdateService"])
            .drift(&["service.deploymentConfiguration.alarms"]),
    ]);
}

#[test]
fn task_definition_and_service() {
    let d = desired().build();
    let changed = desired().task_definition(new_image).build();
    check(vec![
        Case::new("missing", d.clone(), missing().build())
            .actions(&["RegisterTaskDefinition", "CreateService"])
            .drift(&["service"]),
        Case::new(
            "missing, the family's latest revision reused",
            d.clone(),
            missing().latest(&d.task_definition).build(),
        )
        .actions(&["CreateService"])
        .drift(&["service"]),
        Case::new(
            "inactive, its revision reused",
            d.clone(),
            converged(&d).service(|s| s.status = "INACTIVE".into()).build(),
        )
        .actions(&["CreateService"])
        .drift(&["service"]),
        Case::new("new image", changed.clone(), converged(&d).build())
            .actions(&["RegisterTaskDefinition", "UpdateService", "TagService"])
            .drift(&["container.image", "service.tags.berth:spec-hash"]),
        Case::new(
            "new image, the latest revision has it",
            changed.clone(),
            converged(&d).latest(&changed.task_definition).build(),
        )
        .actions(&["UpdateService", "TagService"])
        .drift(&["container.image", "service.taskDefinition", "service.tags.berth:spec-hash"]),
        Case::new(
            "new image, the latest revision has not",
            changed.clone(),
            converged(&d).latest(&d.task_definition).build(),
        )
        .actions(&["RegisterTaskDefinition", "UpdateService", "TagService"])
        .drift(&["container.image", "service.tags.berth:spec-hash"]),
        Case::new(
            "back to an older revision's content (a rollback), which is reused",
            changed.clone(),
            converged(&d).latest(&d.task_definition).recent(9, &changed.task_definition).build(),
        )
        .actions(&["UpdateService", "TagService"])
        .drift(&["container.image", "service.taskDefinition", "service.tags.berth:spec-hash"]),
        Case::new(
            "running revision edited",
            d.clone(),
            converged(&d).running(|td| td.cpu = Some("512".into())).build(),
        )
        .actions(&["RegisterTaskDefinition", "UpdateService"])
        .drift(&["taskDefinition.cpu"]),
        Case::new("running revision unread", d.clone(), converged(&d).with(|l| l.task_definition = None).build())
            .actions(&["RegisterTaskDefinition", "UpdateService"])
            .drift(&["service.taskDefinition"]),
        Case::new("settings changed", d.clone(), converged(&d).service(|s| s.settings.desired_count = Some(5)).build())
            .actions(&["UpdateService"])
            .drift(&["service.desiredCount"]),
        Case::new("tag changed", d.clone(), converged(&d).service(untag(tags::COMMIT)).build())
            .actions(&["TagService"])
            .drift(&["service.tags.berth:commit"]),
        Case::new(
            "settings and a tag changed",
            d.clone(),
            converged(&d).service(untag(tags::COMMIT)).service(|s| s.settings.desired_count = Some(5)).build(),
        )
        .actions(&["UpdateService", "TagService"])
        .drift(&["service.desiredCount", "service.tags.berth:commit"]),
        Case::new("adopted", d.clone(), converged(&d).service(|s| s.settings.tags.clear()).build())
            .adopt()
            .actions(&["UpdateService", "TagService"])
            .drift(&[
                "service.tags.berth:commit",
                "service.tags.berth:env",
                "service.tags.berth:managed",
                "service.tags.berth:service",
                "service.tags.berth:spec-hash",
            ]),
    ]);
}

#[test]
fn autoscaling() {
    let d = desired().build();
    let scaled = desired().autoscaled().build();
    check(vec![
        Case::new("missing, autoscaled", scaled.clone(), missing().build())
            .actions(&["RegisterTaskDefinition", "CreateService", "RegisterScalableTarget", "PutScalingPolicy"])
            .drift(&["service", "scaling.target", "scaling.policy.berth-cpu-target"]),
        Case::new(
            "scalable target changed",
            scaled.clone(),
            converged(&scaled).with(|l| l.scalable_target.as_mut().unwrap().target.max_capacity = 9).build(),
        )
        .actions(&["RegisterScalableTarget"])
        .drift(&["scaling.target.MaxCapacity"]),
        Case::new(
            "scaling policy changed",
            scaled.clone(),
            converged(&scaled)
                .with(|l| l.policies[0].policy.target_tracking_scaling_policy_configuration.target_value = 50.0)
                .build(),
        )
        .actions(&["PutScalingPolicy"])
        .drift(&["scaling.policy.berth-cpu-target.TargetValue"]),
        Case::new(
            "a berth policy git no longer has",
            scaled.clone(),
            converged(&scaled).with(|l| l.policies.push(live_policy(scaling_policy("memory")))).build(),
        )
        .actions(&["DeleteScalingPolicy"])
        .drift(&["scaling.policy.berth-memory-target"]),
        Case::new("autoscaling left git", d.clone(), converged(&d).with(scaling_left_git).build())
            .actions(&["DeleteScalingPolicy", "DeregisterScalableTarget"])
            .drift(&["scaling.policy.berth-cpu-target", "scaling.target"]),
        Case::new(
            "autoscaling left git, a policy not berth's stays with its target",
            d.clone(),
            converged(&d)
                .with(|l| {
                    scaling_left_git(l);
                    l.policies.push(live_policy(hand_made_policy()));
                })
                .build(),
        )
        .actions(&["DeleteScalingPolicy"])
        .drift(&["scaling.policy.berth-cpu-target"]),
    ]);
}

#[test]
fn ownership_of_the_live_service() {
    let d = desired().build();
    let of = |live: LiveState, adopt| plan(&d, &live, adopt, &ctx()).ownership;
    assert_eq!(of(missing().build(), false), Ownership::Missing);
    assert_eq!(of(converged(&d).service(|s| s.status = "INACTIVE".into()).build(), false), Ownership::Missing);
    assert_eq!(of(converged(&d).build(), false), Ownership::Managed);
    assert_eq!(of(converged(&d).build(), true), Ownership::Managed);
    assert_eq!(of(converged(&d).service(untag(tags::MANAGED)).build(), false), Ownership::Unmanaged);
    assert_eq!(of(converged(&d).service(untag(tags::MANAGED)).build(), true), Ownership::Adopted);
}

/// The texts users see (status, `berth plan`, logs) are those of the string blockers before.
#[test]
fn blocker_texts() {
    let texts = [
        (
            Blocker::Unmanaged { service: "web".into(), cluster: "pre".into() },
            "a service named `web` exists in cluster `pre` without the tag berth:managed=true; berth leaves it alone (set `adopt: true` in the env config to take it over)",
        ),
        (
            Blocker::NoExecutionRole,
            "no execution role: set `execution_role` under environments.<env>.defaults in the agent config (Fargate needs it for awslogs, ECR and secrets)",
        ),
        (
            Blocker::NoNetworkSettings { service: "web".into() },
            "service `web` does not exist and environment defaults give no network settings: set `subnets` and `security_groups` under environments.<env>.defaults in the agent config",
        ),
        (
            Blocker::NeedsReplacement { reason: "launchType EC2 → FARGATE".into() },
            "needs replacement: launchType EC2 → FARGATE; berth does not replace services (delete it, or rename the service)",
        ),
        (
            Blocker::Held { spec_hash: "0123abcd".into(), in_sync: false },
            "the rollout of spec 0123abcd failed; berth will not retry it until git changes the service",
        ),
    ];
    for (blocker, text) in texts {
        assert_eq!(blocker.to_string(), text);
    }
    let p = Plan {
        ownership: Ownership::Managed,
        drift: Vec::new(),
        actions: Vec::new(),
        blockers: vec![
            Blocker::NeedsReplacement { reason: "a".into() },
            Blocker::NeedsReplacement { reason: "b".into() },
        ],
    };
    assert_eq!(
        p.blocker_text(),
        "needs replacement: a; berth does not replace services (delete it, or rename the service); needs replacement: b; berth does not replace services (delete it, or rename the service)"
    );
}

fn revisions(p: &Plan) -> Vec<&Revision> {
    p.actions
        .iter()
        .filter_map(|a| match a {
            Action::CreateService { revision, .. } | Action::UpdateService { revision, .. } => Some(revision),
            _ => None,
        })
        .collect()
}

#[test]
fn a_service_action_runs_the_registered_revision_or_an_existing_one() {
    let d = desired().build();
    let changed = desired().task_definition(new_image).build();
    let created = plan_of(&d, &missing().build());
    assert_eq!(created.registration(), Some(ActionId(0)));
    assert_eq!(revisions(&created), [&Revision::Output(ActionId(0))]);
    let updated = plan_of(&changed, &converged(&d).build());
    assert_eq!(revisions(&updated), [&Revision::Output(ActionId(0))]);
    assert_eq!(updated.actions[1].summary(), "update service web to the new revision");
    let running = plan_of(&d, &converged(&d).service(|s| s.settings.desired_count = Some(5)).build());
    assert_eq!(running.registration(), None);
    assert_eq!(revisions(&running), [&Revision::Existing(revision_arn(1))]);
    let latest = plan_of(&changed, &converged(&d).latest(&changed.task_definition).build());
    assert_eq!(revisions(&latest), [&Revision::Existing(revision_arn(2))]);
    assert_eq!(latest.drift[1].desired, Some(serde_json::json!(revision_arn(2))));
}

#[test]
fn outputs_resolve_references_to_earlier_actions() {
    let mut outputs = Outputs::default();
    let registered = Revision::Output(ActionId(0));
    assert_eq!(outputs.resolve(&registered), None);
    outputs.record(ActionId(0), revision_arn(3));
    assert_eq!(outputs.resolve(&registered), Some(revision_arn(3).as_str()));
    assert_eq!(outputs.resolve(&Revision::Existing(revision_arn(1))), Some(revision_arn(1).as_str()));
    assert_eq!(serde_json::to_value(&registered).unwrap(), serde_json::json!({"Output": 0}));
}

#[test]
fn a_created_service_starts_with_the_desired_or_minimum_count() {
    let count = |d: &Desired| match &plan_of(d, &missing().build()).actions[1] {
        Action::CreateService { desired_count, .. } => *desired_count,
        other => panic!("not a create: {other:?}"),
    };
    assert_eq!(count(&desired().build()), 2);
    let mut scaled = desired().autoscaled().build();
    scaled.scaling.as_mut().unwrap().scalable_target.min_capacity = 3;
    assert_eq!(count(&scaled), 3);
    assert_eq!(count(&desired().service(|s| s.desired_count = None).build()), 1);
}

#[test]
fn a_held_plan_keeps_its_drift_and_loses_its_actions() {
    let d = desired().build();
    let changed = desired().task_definition(new_image).build();
    let free = plan_of(&changed, &converged(&d).build());
    let held = plan_of(&changed, &converged(&d).with(|l| l.held = Some(changed.spec_hash().into())).build());
    assert_eq!(held.drift, free.drift);
    assert!(held.actions.is_empty() && !held.in_sync());
    // Blocked for another reason, a held spec is not reported held as well.
    let no_role = desired().task_definition(|td| td.execution_role_arn = None).build();
    let blocked = plan_of(&no_role, &converged(&d).with(|l| l.held = Some(no_role.spec_hash().into())).build());
    assert_eq!(blocked.blockers, [Blocker::NoExecutionRole]);
}
