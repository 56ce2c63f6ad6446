//! Safer rollouts (issue 17) on moto: CloudWatch alarms that roll a deployment back
//! (`spec.rollout.alarms`); ECS's blue-green, canary and linear strategies with the
//! alternate target groups, the weighted production rules and the test rule they need,
//! applied, read back equal and undone; the watcher following a service deployment through
//! its lifecycle stages (the test proxy plays ECS's service deployments, which moto lacks)
//! to success, an alarm rollback and a timeout, each with its hold and history entry.

use serde_json::Value;

use crate::routing::{Routed, berths};
use crate::support::proxy::Lifecycle;
use crate::support::world::{World, text};

const TRAFFIC_ROLE: &str = "arn:aws:iam::123456789012:role/ecs-traffic";

fn alarms_of(w: &World, service: &str) -> Value {
    let out = w.console(&format!(
        r#"
import boto3, json
s = boto3.client("ecs").describe_services(cluster="pre", services=["{service}"])["services"][0]
print(json.dumps(s.get("deploymentConfiguration", {{}}).get("alarms")))
"#
    ));
    serde_json::from_str(out.trim()).expect("alarms")
}

#[test]
fn alarms_are_applied_read_back_equal_and_switched_off_when_git_drops_them() {
    let w = World::new();
    *w.envs.borrow_mut() = vec!["pre"];
    w.rewrite_config();
    assert_eq!(w.apply("pre", &[]).status.code(), Some(0));
    w.commit_edit(
        "services/ledger/deploy/service.yaml",
        |t| t.replace("  count: 1\n", "  count: 1\n  rollout:\n    alarms: [ledger-5xx, ledger-latency]\n"),
        "ledger: roll back on its alarms",
    );
    w.push_images();
    // (moto keeps no deployment configuration from CreateService, so this first diff shows
    // the spec hash only; the removal below is named by its field.)
    let (code, diff) = w.diff_json("pre");
    assert_eq!(code, 2, "{diff:#}");
    let out = w.apply("pre", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let alarms = alarms_of(&w, "ledger");
    assert_eq!(alarms["alarmNames"], serde_json::json!(["ledger-5xx", "ledger-latency"]), "{alarms}");
    assert_eq!((alarms["enable"].clone(), alarms["rollback"].clone()), (Value::Bool(true), Value::Bool(true)));

    w.proxy.reset_counts();
    assert_eq!(w.apply("pre", &[]).status.code(), Some(0));
    assert_eq!(w.proxy.writes(), Default::default(), "a second apply writes nothing");
    assert_eq!(w.diff_json("pre").0, 0);

    w.commit_edit(
        "services/ledger/deploy/service.yaml",
        |t| t.replace("  rollout:\n    alarms: [ledger-5xx, ledger-latency]\n", ""),
        "ledger: no alarms",
    );
    w.push_images();
    let (code, diff) = w.diff_json("pre");
    assert_eq!(code, 2, "{diff:#}");
    assert!(diff.to_string().contains("deploymentConfiguration.alarms"), "{diff:#}");
    assert_eq!(w.apply("pre", &[]).status.code(), Some(0));
    assert_eq!(alarms_of(&w, "ledger")["enable"], Value::Bool(false), "alarms that left git are switched off");
    assert_eq!(w.diff_json("pre").0, 0);
}

/// The ECS services' deployment configurations and load balancers, and every rule berth
/// made with the groups it forwards to (weights included), read with boto3.
const READ_ROLLOUT: &str = r#"
import boto3, json
ecs = boto3.client("ecs"); elb = boto3.client("elbv2")
out = {"services": {}, "rules": {}, "groups": {}}
for s in ecs.describe_services(cluster="pre", services=["ledger", "klausapproves"])["services"]:
    out["services"][s["serviceName"]] = {"dc": s.get("deploymentConfiguration", {}), "lbs": s.get("loadBalancers", [])}
for g in elb.describe_target_groups()["TargetGroups"]:
    out["groups"][g["TargetGroupName"]] = g["TargetGroupArn"]
for l in LISTENERS:
    for r in elb.describe_rules(ListenerArn=l)["Rules"]:
        tags = {t["Key"]: t["Value"] for t in elb.describe_tags(ResourceArns=[r["RuleArn"]])["TagDescriptions"][0]["Tags"]}
        if tags.get("berth:service") not in ("ledger", "klausapproves"):
            continue
        a = r["Actions"][0]
        fwd = sorted((t["TargetGroupArn"], t.get("Weight")) for t in a.get("ForwardConfig", {}).get("TargetGroups", [])) or [(a["TargetGroupArn"], None)]
        hosts = [v for c in r["Conditions"] if c["Field"] == "host-header" for v in (c.get("HostHeaderConfig", {}).get("Values") or c.get("Values", []))]
        out["rules"][r["RuleArn"]] = {"listener": l, "service": tags["berth:service"], "hosts": hosts, "forward": fwd}
print(json.dumps(out))
"#;

fn read_rollout(r: &Routed) -> Value {
    let listeners = [&r.net["internal"], &r.net["external"], &r.net["test"]];
    let script = READ_ROLLOUT.replace("LISTENERS", &serde_json::to_string(&listeners).unwrap());
    serde_json::from_str(r.w.console(&script).trim()).expect("read back")
}

/// The rule of `service` on `listener`: (ARN, what it forwards to).
fn rule_on<'a>(live: &'a Value, service: &str, listener: &Value) -> (&'a str, &'a Value) {
    let rules = live["rules"].as_object().unwrap();
    let (arn, rule) = rules
        .iter()
        .find(|(_, r)| r["service"] == service && r["listener"] == *listener)
        .unwrap_or_else(|| panic!("no rule of {service} on {listener}: {live:#}"));
    (arn.as_str(), &rule["forward"])
}

#[test]
fn each_strategy_is_applied_read_back_equal_and_undone() {
    let ingress = format!("      test_listener: {{TEST}}\n      traffic_role: {TRAFFIC_ROLE}\n");
    let world = World::new();
    let net_probe = Routed::new(world);
    // The test listener's ARN is known once the network exists: write the config again.
    let test = net_probe.net["test"].as_str().unwrap().to_string();
    let r = Routed::reconfigure(net_probe, "", &ingress.replace("{TEST}", &test));
    r.apply_ok();

    let strategies = [
        ("blue-green", "    strategy: blue-green\n    bake: 5m\n", "BLUE_GREEN"),
        ("canary", "    strategy: canary\n    canary: {percent: 20, wait: 3m}\n", "CANARY"),
        ("linear", "    strategy: linear\n    linear: {percent: 25, interval: 2m}\n    bake: 1m\n", "LINEAR"),
    ];
    let mut previous = String::new();
    for (name, yaml, ecs_name) in strategies {
        for service in ["ledger", "klausapproves"] {
            let file = format!("services/{service}/deploy/service.yaml");
            let prev = previous.clone();
            r.w.commit_edit(
                &file,
                |t| {
                    let t = if prev.is_empty() { t } else { t.replace(&prev, "") };
                    t.replace("spec:\n", &format!("spec:\n  rollout:\n{yaml}"))
                },
                &format!("{service}: {name}"),
            );
        }
        previous = format!("  rollout:\n{yaml}");
        r.w.push_images();
        let (code, diff) = r.w.diff_json("pre");
        assert_eq!(code, 2, "{diff:#}");
        r.apply_ok();
        let live = read_rollout(&r);
        for service in ["ledger", "klausapproves"] {
            let s = &live["services"][service];
            assert_eq!(s["dc"]["strategy"], ecs_name, "{name} {service}: {s:#}");
            let lbs = s["lbs"].as_array().unwrap();
            let scopes: &[(&str, &str)] =
                if service == "ledger" { &[("internal", "")] } else { &[("internal", ""), ("external", "-ext")] };
            assert_eq!(lbs.len(), scopes.len(), "{s:#}");
            for ((scope, suffix), lb) in scopes.iter().zip(lbs) {
                let primary = &live["groups"][format!("{service}-pre{suffix}")];
                let alternate = &live["groups"][format!("{service}-pre{suffix}-alt")];
                let (rule, forward) = rule_on(&live, service, &r.net[*scope]);
                let a = &lb["advancedConfiguration"];
                assert_eq!(lb["targetGroupArn"], *primary, "{lb:#}");
                assert_eq!(a["alternateTargetGroupArn"], *alternate, "{lb:#}");
                assert_eq!(a["productionListenerRule"], rule, "{lb:#}");
                assert_eq!(a["roleArn"], TRAFFIC_ROLE);
                // The production rule forwards to both groups, all traffic to the primary.
                let mut want = vec![serde_json::json!([primary, 100]), serde_json::json!([alternate, 0])];
                want.sort_by_key(|v| v.to_string());
                assert_eq!(forward, &Value::from(want), "{name} {service} {scope}: {live:#}");
                if *scope == "internal" {
                    let (test_rule, test_forward) = rule_on(&live, service, &r.net["test"]);
                    assert_eq!(a["testListenerRule"], test_rule, "{lb:#}");
                    assert_eq!(test_forward, forward);
                } else {
                    assert!(a.get("testListenerRule").is_none_or(Value::is_null), "{lb:#}");
                }
            }
        }
        let dc = &live["services"]["ledger"]["dc"];
        match name {
            "blue-green" => assert_eq!(dc["bakeTimeInMinutes"], 5, "{dc:#}"),
            "canary" => assert_eq!(
                dc["canaryConfiguration"],
                serde_json::json!({"canaryPercent": 20.0, "canaryBakeTimeInMinutes": 3}),
                "{dc:#}"
            ),
            _ => assert_eq!(
                (dc["linearConfiguration"].clone(), dc["bakeTimeInMinutes"].clone()),
                (serde_json::json!({"stepPercent": 25.0, "stepBakeTimeInMinutes": 2}), Value::from(1)),
                "{dc:#}"
            ),
        }
        r.w.proxy.reset_counts();
        r.apply_ok();
        assert_eq!(r.w.proxy.writes(), Default::default(), "{name}: a second apply writes nothing");
        assert_eq!(r.w.diff_json("pre").0, 0, "{name}");
    }

    // ECS moves the weights during a deployment: that is no drift.
    let live = read_rollout(&r);
    let (rule, _) = rule_on(&live, "ledger", &r.net["internal"]);
    let (primary, alternate) = (&live["groups"]["ledger-pre"], &live["groups"]["ledger-pre-alt"]);
    let weigh = |primary_weight: u32| {
        r.w.console(&format!(
            r#"
import boto3
boto3.client("elbv2").modify_rule(RuleArn="{rule}", Actions=[{{"Type": "forward", "ForwardConfig": {{"TargetGroups": [
    {{"TargetGroupArn": {primary}, "Weight": {primary_weight}}}, {{"TargetGroupArn": {alternate}, "Weight": {alt}}}]}}}}])
"#,
            alt = 100 - primary_weight
        ))
    };
    weigh(0);
    assert_eq!(r.w.diff_json("pre").0, 0, "weights ECS moved are not drift");

    // Back to rolling: while ledger's traffic is on its alternate, switching would send it
    // to a group without tasks: ledger waits, klausapproves goes.
    for service in ["ledger", "klausapproves"] {
        let file = format!("services/{service}/deploy/service.yaml");
        r.w.commit_edit(&file, |t| t.replace(&previous, ""), &format!("{service}: rolling"));
    }
    r.w.push_images();
    let (code, diff) = r.w.diff_json("pre");
    assert_eq!(code, 1, "ledger cannot be planned yet: {diff:#}");
    assert!(diff.to_string().contains("deploymentConfiguration.strategy"), "{diff:#}");
    let out = r.w.apply("pre", &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out)
            .contains("the internal rule sends its traffic to `ledger-pre-alt`, where ECS's last deployment put it"),
        "{}",
        text(&out)
    );
    assert_eq!(read_rollout(&r)["services"]["ledger"]["dc"]["strategy"], "LINEAR", "ledger is left as it was");
    // ECS's next deployment moves the traffic back to ledger-pre: now the switch goes.
    weigh(100);
    r.apply_ok();
    let live = read_rollout(&r);
    assert_eq!(live["services"]["ledger"]["dc"]["strategy"], "ROLLING");
    assert!(live["groups"].get("ledger-pre-alt").is_none(), "{live:#}");
    assert!(live["groups"].get("klausapproves-pre-ext-alt").is_none(), "{live:#}");
    let (_, forward) = rule_on(&live, "ledger", &r.net["internal"]);
    assert_eq!(forward, &serde_json::json!([[live["groups"]["ledger-pre"], null]]));
    assert!(
        !live["rules"].as_object().unwrap().values().any(|x| x["listener"] == r.net["test"]),
        "the test rules are gone: {live:#}"
    );
    assert!(berths(&r.read()["rules"]).len() >= 5);
    assert_eq!(r.w.diff_json("pre").0, 0);
}

/// `berth history` of ledger, newest first.
fn history(w: &World) -> Vec<Value> {
    let config = w.config.to_string_lossy().into_owned();
    let out = w.berth(&["history", "--config", &config, "--env", "pre", "--service", "ledger", "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn held(w: &World) -> String {
    w.console(
        "import boto3; e = boto3.client('ecs'); s = e.describe_services(cluster='pre', services=['ledger'], include=['TAGS'])['services'][0]; print({t['key']: t['value'] for t in s.get('tags', [])}.get('berth:held', '-'))",
    )
    .trim()
    .to_string()
}

#[test]
fn the_watcher_follows_the_lifecycle_to_success_an_alarm_rollback_and_a_timeout() {
    let world = World::new();
    *world.top_extra.borrow_mut() = "state: {table: berth-state}\n".into();
    let rollout = "    rollout: {wait: true, timeout: 3s, poll: 100ms}\n";
    let ingress = format!("      traffic_role: {TRAFFIC_ROLE}\n");
    let r = Routed::configured(world, &["klausapproves-rds-clients", "klausapproves-cache-clients"], rollout, &ingress);
    r.w.proxy.set_rollouts(crate::support::proxy::Rollouts::Complete);
    let out = r.w.apply("pre", &["--service", "ledger"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let file = "services/ledger/deploy/service.yaml";
    // A new spec: one task more.
    let step = |count: u32, message: &str| {
        r.w.commit_edit(
            file,
            |t| t.replace(&format!("  count: {}\n", count - 1), &format!("  count: {count}\n")),
            message,
        );
        r.w.push_images();
    };
    r.w.commit_edit(
        file,
        |t| t.replace("spec:\n", "spec:\n  rollout:\n    strategy: blue-green\n    alarms: [ledger-5xx]\n"),
        "ledger: blue-green",
    );
    r.w.push_images();

    // Success: through the traffic shifts and the bake time to SUCCESSFUL.
    r.w.proxy.set_lifecycle(
        "ledger",
        Lifecycle::new(&[
            ("IN_PROGRESS", "SCALE_UP", ""),
            ("IN_PROGRESS", "PRODUCTION_TRAFFIC_SHIFT", ""),
            ("IN_PROGRESS", "BAKE_TIME", ""),
            ("IN_PROGRESS", "BAKE_TIME", ""),
            ("SUCCESSFUL", "CLEAN_UP", "Service deployment completed"),
        ]),
    );
    let out = r.w.apply("pre", &["--service", "ledger"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("done: rollout completed"), "{}", text(&out));
    assert!(r.w.proxy.count("DescribeServiceDeployments") >= 5, "every stage was read");
    assert_eq!(held(&r.w), "-");
    assert_eq!(history(&r.w)[0]["result"], "completed", "{:#?}", history(&r.w));

    // An alarm rolls it back: a failed rollout, held by spec hash, never retried.
    step(2, "ledger: 2 tasks");
    r.w.proxy.set_lifecycle(
        "ledger",
        Lifecycle::new(&[
            ("IN_PROGRESS", "PRODUCTION_TRAFFIC_SHIFT", ""),
            ("ROLLBACK_IN_PROGRESS", "PRODUCTION_TRAFFIC_SHIFT", "CloudWatch alarm ledger-5xx is in ALARM"),
            ("ROLLBACK_SUCCESSFUL", "CLEAN_UP", "CloudWatch alarm ledger-5xx is in ALARM"),
        ]),
    );
    let out = r.w.apply("pre", &["--service", "ledger", "--output", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ledger = &report["services"][0];
    assert_eq!(ledger["rollout_failed"], true, "{report:#}");
    let reason = ledger["outcome"]["reason"].as_str().unwrap();
    assert!(reason.contains("ECS rolled the deployment back: CloudWatch alarm ledger-5xx is in ALARM"), "{reason}");
    let hold = held(&r.w);
    assert_ne!(hold, "-", "the hold is on the service");
    let entry = &history(&r.w)[0];
    assert_eq!(entry["result"], "rollout_failed", "{entry:#}");
    assert!(entry["error"].as_str().unwrap().contains("ledger-5xx"), "{entry:#}");
    r.w.proxy.reset_counts();
    let out = r.w.apply("pre", &["--service", "ledger"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("ledger                   Held"), "{}", text(&out));
    assert!(text(&out).contains("berth will not retry it until git changes the service"), "{}", text(&out));
    assert_eq!(r.w.proxy.count("UpdateService"), 0, "a held spec is not applied again");

    // A deployment stuck in its bake time: the timeout names the stage.
    step(3, "ledger: 3 tasks");
    r.w.proxy.set_lifecycle("ledger", Lifecycle::new(&[("IN_PROGRESS", "BAKE_TIME", "")]));
    let out = r.w.apply("pre", &["--service", "ledger"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("did not finish within 3s (at BAKE_TIME)"), "{}", text(&out));
    assert_ne!(held(&r.w), hold, "held at the new spec");
    assert_eq!(history(&r.w)[0]["result"], "rollout_failed");
}

/// A strategy that shifts traffic needs a route: without the environment's `ingress:` the
/// service fails at its `strategy` line, and the others converge.
#[test]
fn a_strategy_without_a_route_fails_its_service_alone_at_the_line() {
    let w = World::new();
    *w.envs.borrow_mut() = vec!["pre"];
    w.rewrite_config();
    w.commit_edit(
        "services/ledger/deploy/service.yaml",
        |t| t.replace("  count: 1\n", "  count: 1\n  rollout: {strategy: blue-green}\n"),
        "ledger: blue-green",
    );
    w.push_images();
    let out = w.apply("pre", &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = text(&out);
    assert!(
        stdout.contains("services/ledger/deploy/service.yaml:8:23: strategy `blue-green` moves traffic between two target groups, but environment `pre` has no `ingress:`"),
        "{stdout}"
    );
    assert!(stdout.contains("bpg                      Applied"), "{stdout}");
}

/// `tasks.before_deploy` on moto: the new revision runs the command as a task (RunTask with
/// the service's network settings; the proxy ends it with the exit code it is told) before
/// the service moves; a failure stops the deploy with no UpdateService; a retry of a spec
/// whose task succeeded does not run it again.
#[test]
fn a_before_deploy_task_gates_the_deploy_and_runs_once_per_spec() {
    use crate::support::proxy::{Fault, TaskEnd};
    let w = World::new();
    *w.envs.borrow_mut() = vec!["pre"];
    w.rewrite_config();
    w.proxy.set_container_memory();
    let file = "services/ledger/deploy/service.yaml";
    w.commit_edit(
        file,
        |t| {
            t.replace(
                "  count: 1\n",
                "  count: 1\n  tasks:\n    before_deploy: {command: [./migrate, up], timeout: 1m}\n",
            )
        },
        "ledger: migrate before each deploy",
    );
    w.push_images();
    let count = |n: u32, message: &str| {
        w.commit_edit(file, |t| t.replace(&format!("  count: {}\n", n - 1), &format!("  count: {n}\n")), message);
        w.push_images();
    };
    let apply = || w.apply("pre", &["--service", "ledger"]);

    // Exit 0: the service is created after it.
    w.proxy.set_tasks(TaskEnd::Exit(0));
    let out = apply();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let runs = w.proxy.bodies("RunTask");
    assert_eq!(runs.len(), 1, "{runs:?}");
    let overrides = &runs[0]["overrides"]["containerOverrides"][0];
    assert_eq!(
        (overrides["name"].clone(), overrides["command"].clone()),
        ("ledger".into(), serde_json::json!(["./migrate", "up"]))
    );
    assert_eq!(runs[0]["networkConfiguration"]["awsvpcConfiguration"]["subnets"], serde_json::json!(w.subnets));
    assert!(text(&out).contains("before-deploy task"), "{}", text(&out));

    // Exit 1: a failed apply naming the exit code and the log stream, and no UpdateService.
    count(2, "ledger: 2 tasks");
    w.proxy.set_tasks(TaskEnd::Exit(1));
    w.proxy.reset_counts();
    let out = apply();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = text(&out);
    assert!(stdout.contains("exited 1 (Essential container in task exited)"), "{stdout}");
    assert!(stdout.contains("the service was not updated (logs: stream ledger/ledger/"), "{stdout}");
    assert_eq!((w.proxy.count("RunTask"), w.proxy.count("UpdateService")), (1, 0));

    // Fixed (the task exits 0 now), but the update fails: the retry does not run it again.
    w.proxy.set_tasks(TaskEnd::Exit(0));
    w.proxy.inject("UpdateService", Fault::Code("InvalidParameterException"), 1);
    w.proxy.reset_counts();
    let out = apply();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!((w.proxy.count("RunTask"), w.proxy.count("UpdateService")), (1, 1));
    w.proxy.reset_counts();
    let out = apply();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!((w.proxy.count("RunTask"), w.proxy.count("UpdateService")), (0, 1), "once per spec");
    // Nothing to deploy: no task either.
    w.proxy.reset_counts();
    assert_eq!(apply().status.code(), Some(0));
    assert_eq!(w.proxy.count("RunTask"), 0);
}
