//! `berth run` on moto: a one-off task of the service's current revision with its network
//! settings and the command given, waited for, its container's exit code as berth's (moto
//! never stops a task: the proxy rewrites DescribeTasks to STOPPED with the exit code).

use crate::support::proxy::TaskEnd;
use crate::support::world::{World, text};

#[test]
fn run_starts_the_current_revision_and_exits_with_the_task_s_code() {
    let w = World::new();
    *w.envs.borrow_mut() = vec!["pre"];
    w.rewrite_config();
    assert_eq!(w.apply("pre", &[]).status.code(), Some(0));
    // moto places a task only with container-level memory (RunTask answers 500 without it;
    // docs/testing.md): the service runs its revision again with `memory` on the container,
    // as a console edit would. berth runs whatever revision the service runs.
    w.console(
        r#"
import boto3
ecs = boto3.client("ecs")
s = ecs.describe_services(cluster="pre", services=["ledger"])["services"][0]
td = ecs.describe_task_definition(taskDefinition=s["taskDefinition"])["taskDefinition"]
for c in td["containerDefinitions"]:
    c["memory"] = int(td["memory"])
keep = ["family", "taskRoleArn", "executionRoleArn", "networkMode", "containerDefinitions", "requiresCompatibilities", "cpu", "memory"]
arn = ecs.register_task_definition(**{k: td[k] for k in keep if k in td})["taskDefinition"]["taskDefinitionArn"]
ecs.update_service(cluster="pre", service="ledger", taskDefinition=arn)
"#,
    );
    let config = w.config.to_string_lossy().into_owned();
    let run = |args: &[&str]| {
        let mut all = vec!["run", "ledger", "--config", config.as_str(), "--env", "pre", "--poll", "50ms"];
        all.extend_from_slice(args);
        w.berth(&all)
    };

    w.proxy.set_tasks(TaskEnd::Exit(0));
    let out = run(&["--", "./migrate", "up"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("task ") && stdout.contains(" exited 0"), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("started task ") && stderr.contains("of ledger-pre:2 in pre: ./migrate up"), "{stderr}");
    assert!(stderr.contains("logs: /ecs/pre/ledger ledger/ledger/"), "{stderr}");
    let body = w.proxy.bodies("RunTask").pop().expect("a RunTask request");
    assert_eq!(body["overrides"]["containerOverrides"][0]["command"], serde_json::json!(["./migrate", "up"]));
    assert_eq!(body["overrides"]["containerOverrides"][0]["name"], "ledger");
    assert!(body["taskDefinition"].as_str().unwrap().ends_with("task-definition/ledger-pre:2"), "{body}");
    assert_eq!(body["networkConfiguration"]["awsvpcConfiguration"]["subnets"], serde_json::json!(w.subnets));
    assert_eq!(body["startedBy"], "berth-run");

    w.proxy.set_tasks(TaskEnd::Exit(3));
    let out = run(&["--output", "json", "--", "false"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["exit_code"], 3);

    w.proxy.set_tasks(TaskEnd::CannotStart);
    let out = run(&["--", "true"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("stopped without running: CannotPullContainerError"),
        "{}",
        text(&out)
    );

    // No command: a usage error. A service berth does not manage: refused.
    assert_eq!(w.berth(&["run", "ledger", "--config", &config, "--env", "pre"]).status.code(), Some(64));
    let out = w.berth(&["run", "nope", "--config", &config, "--env", "pre", "--", "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no service `nope` in cluster `pre`"), "{}", text(&out));
}
