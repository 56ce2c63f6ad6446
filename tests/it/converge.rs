//! `berth apply` and `berth diff` against moto (behind the test proxy) and a real git
//! repository: convergence, no false drift, console edits, git changes, ownership,
//! failure isolation, throttling and rollouts.

use serde_json::Value;

use crate::support::proxy::{Fault, Rollouts};
use crate::support::world::{World, git, text};

/// `text` without its terminal colour codes.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|c| c.is_ascii_alphabetic());
        } else {
            out.push(c);
        }
    }
    out
}

fn services(v: &Value) -> Vec<&Value> {
    v["services"].as_array().unwrap().iter().collect()
}

fn outcome<'a>(v: &'a Value, name: &str) -> &'a str {
    services(v).into_iter().find(|s| s["name"] == name).unwrap()["outcome"]["status"].as_str().unwrap()
}

fn render_td(w: &World, env: &str, service: &str) -> Value {
    let config = w.config.to_string_lossy().into_owned();
    let repo = w.repo.to_string_lossy().into_owned();
    let commit = git(&w.repo, &["log", "-1", "--first-parent", "--format=%H", "--", &format!("services/{service}")]);
    let mut args = vec![
        "render",
        "--config",
        &config,
        "--repo",
        &repo,
        "--env",
        env,
        "--service",
        service,
        "--only",
        "task-definition",
        "--commit",
        &commit,
    ];
    let ssm = format!("/{env}/klausapproves/db-host=db.{env}.internal");
    args.extend(["--param", &ssm]);
    if env == "prod" {
        args.extend(["--version", "1.0.0"]);
    }
    let out = w.berth(&args);
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

const FIXTURE_SERVICES: [(&str, &[&str]); 4] = [
    ("bpg", &["pre", "prod"]),
    ("klausapproves", &["pre", "prod"]),
    ("ledger", &["pre"]),
    ("notifier", &["pre", "prod"]),
];

#[test]
fn apply_converges_an_empty_account_and_a_second_apply_changes_nothing() {
    let w = World::new();
    for env in ["pre", "prod"] {
        let out = w.apply(env, &[]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        // The request counts (debug log): a clean converge has no AWS errors, only the
        // not-found answers berth expects.
        let log = strip_ansi(&String::from_utf8_lossy(&out.stderr));
        let counted: Vec<&str> = log.lines().filter(|l| l.contains("aws requests")).collect();
        assert!(!counted.is_empty(), "{log}");
        let errors: Vec<&&str> = counted.iter().filter(|l| l.contains("result=\"error\"")).collect();
        assert!(errors.is_empty(), "{errors:#?}");
    }
    // Read everything back through the SDK (boto3) and compare with the render.
    let live: Value = serde_json::from_str(w.console(
        r#"
import boto3, json
ecs = boto3.client("ecs"); aas = boto3.client("application-autoscaling")
out = {}
for env, names in [("pre", ["bpg", "klausapproves", "ledger", "notifier"]), ("prod", ["bpg", "klausapproves", "ledger", "notifier"])]:
    for s in ecs.describe_services(cluster=env, services=names, include=["TAGS"])["services"]:
        td = ecs.describe_task_definition(taskDefinition=s["taskDefinition"], include=["TAGS"])
        out[f"{env}/{s['serviceName']}"] = {"service": s, "td": td["taskDefinition"], "tags": td.get("tags", [])}
out["targets"] = aas.describe_scalable_targets(ServiceNamespace="ecs")["ScalableTargets"]
out["policies"] = aas.describe_scaling_policies(ServiceNamespace="ecs")["ScalingPolicies"]
print(json.dumps(out, default=str))
"#,
    ).trim()).unwrap();
    for (name, envs) in FIXTURE_SERVICES {
        for env in ["pre", "prod"] {
            let key = format!("{env}/{name}");
            if !envs.contains(&env) {
                assert!(live.get(&key).is_none(), "{key} is opted out but exists");
                continue;
            }
            let l = &live[&key];
            assert_eq!(l["service"]["status"], "ACTIVE", "{key}");
            let tags: Vec<(String, String)> = l["service"]["tags"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| (t["key"].as_str().unwrap().into(), t["value"].as_str().unwrap().into()))
                .collect();
            assert!(tags.contains(&("berth:managed".into(), "true".into())), "{key}: {tags:?}");
            assert!(tags.contains(&("berth:env".into(), env.into())), "{key}: {tags:?}");
            let want = render_td(&w, env, name);
            let got = &l["td"];
            assert_eq!(got["family"], want["family"], "{key}");
            assert_eq!(got["cpu"], want["cpu"], "{key}");
            assert_eq!(got["memory"], want["memory"], "{key}");
            let (gc, wc) = (&got["containerDefinitions"][0], &want["containerDefinitions"][0]);
            for field in ["image", "environment", "portMappings", "healthCheck", "logConfiguration", "dockerLabels"] {
                assert_eq!(gc[field], wc[field], "{key}: {field}");
            }
            // Secrets: same names; valueFrom is the full ARN berth looked up.
            let names = |c: &Value| {
                c["secrets"]
                    .as_array()
                    .map(|a| a.iter().map(|s| s["name"].clone()).collect::<Vec<_>>())
                    .unwrap_or_default()
            };
            assert_eq!(names(gc), names(wc), "{key}: secrets");
        }
    }
    let targets = live["targets"].as_array().unwrap();
    let policies = live["policies"].as_array().unwrap();
    for (rid, min, max, metric) in [
        ("service/pre/klausapproves", 1, 10, "ECSServiceAverageCPUUtilization"),
        ("service/prod/klausapproves", 2, 20, "ECSServiceAverageCPUUtilization"),
        ("service/pre/bpg", 2, 6, "ECSServiceAverageMemoryUtilization"),
        ("service/prod/bpg", 2, 6, "ECSServiceAverageMemoryUtilization"),
    ] {
        let t = targets.iter().find(|t| t["ResourceId"] == rid).unwrap_or_else(|| panic!("no target {rid}"));
        assert_eq!((t["MinCapacity"].as_i64(), t["MaxCapacity"].as_i64()), (Some(min), Some(max)), "{rid}");
        let p = policies.iter().find(|p| p["ResourceId"] == rid).unwrap_or_else(|| panic!("no policy {rid}"));
        assert_eq!(
            p["TargetTrackingScalingPolicyConfiguration"]["PredefinedMetricSpecification"]["PredefinedMetricType"],
            metric
        );
    }

    // The no-false-drift proof: apply again writes nothing, and diff finds nothing.
    w.proxy.reset_counts();
    for env in ["pre", "prod"] {
        let out = w.apply(env, &[]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let (code, report) = w.diff_json(env);
        assert_eq!(code, 0, "{report:#}");
        for s in services(&report) {
            assert_eq!(s["outcome"]["status"], "Synced", "{s:#}");
            assert_eq!(s["drift"], Value::Array(vec![]), "{s:#}");
        }
    }
    assert_eq!(w.proxy.writes(), Default::default(), "writes on a converged account: {:?}", w.proxy.counts());
}

#[test]
fn console_edits_are_reported_field_by_field_and_healed() {
    let w = World::new();
    assert_eq!(w.apply("pre", &[]).status.code(), Some(0));
    w.console(
        r#"
import boto3
ecs = boto3.client("ecs"); aas = boto3.client("application-autoscaling")
ecs.update_service(cluster="pre", service="ledger", desiredCount=5)
td = ecs.describe_task_definition(taskDefinition="notifier-pre")["taskDefinition"]
for e in td["containerDefinitions"][0]["environment"]:
    if e["name"] == "LOG_LEVEL": e["value"] = "trace"
keep = {k: td[k] for k in ["family", "containerDefinitions", "networkMode", "requiresCompatibilities", "cpu", "memory", "executionRoleArn", "taskRoleArn"] if k in td}
arn = ecs.register_task_definition(**keep)["taskDefinition"]["taskDefinitionArn"]
ecs.update_service(cluster="pre", service="notifier", taskDefinition=arn)
aas.register_scalable_target(ServiceNamespace="ecs", ResourceId="service/pre/bpg", ScalableDimension="ecs:service:DesiredCount", MinCapacity=3, MaxCapacity=6)
"#,
    );
    let out = w.diff("pre", &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for line in [
        "~ service.desiredCount: 5 → 1",
        "~ container.environment.LOG_LEVEL: \"trace\" → \"debug\"",
        "~ scaling.target.MinCapacity: 3 → 2",
    ] {
        assert!(stdout.contains(line), "missing `{line}` in:\n{stdout}");
    }
    let (_, report) = w.diff_json("pre");
    assert_eq!(outcome(&report, "klausapproves"), "Synced");
    let out = w.apply("pre", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let (code, report) = w.diff_json("pre");
    assert_eq!(code, 0, "{report:#}");
}

#[test]
fn a_git_change_registers_one_revision_per_changed_service_only() {
    let w = World::new();
    assert_eq!(w.apply("pre", &[]).status.code(), Some(0));
    w.commit_edit(
        "services/notifier/deploy/service.yaml",
        |t| t.replace("cpu: 256, memory: 512", "cpu: 512, memory: 1024"),
        "notifier: more cpu",
    );
    w.commit_edit(
        "services/bpg/deploy/pre/config.yaml",
        |t| t.replace("value: debug", "value: trace"),
        "bpg: trace logs",
    );
    w.push_images();
    w.proxy.reset_counts();
    let out = w.apply("pre", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let mut families: Vec<String> =
        w.proxy.bodies("RegisterTaskDefinition").iter().map(|b| b["family"].as_str().unwrap().to_string()).collect();
    families.sort(); // independent services apply in parallel
    assert_eq!(families, vec!["bpg-pre", "notifier-pre"], "{}", text(&out));
    let (code, report) = w.diff_json("pre");
    assert_eq!(code, 0, "{report:#}");
    // The new revisions run the new images: tagged with each service's own newest commit.
    let tag = w.service_tag("services/notifier");
    let td = w.console(
        "import boto3; print(boto3.client('ecs').describe_task_definition(taskDefinition='notifier-pre')['taskDefinition']['containerDefinitions'][0]['image'])",
    );
    assert!(td.trim().ends_with(&format!("notifier:{tag}")), "{td}");
    // ledger and klausapproves were not touched: same revision 1.
    for s in ["ledger", "klausapproves"] {
        let rev = w.console(&format!(
            "import boto3; print(boto3.client('ecs').describe_services(cluster='pre', services=['{s}'])['services'][0]['taskDefinition'])"
        ));
        assert!(rev.trim().ends_with(&format!("{s}-pre:1")), "{s}: {rev}");
    }
}

#[test]
fn an_unmanaged_service_is_left_alone_and_reported_until_adopted() {
    let w = World::new();
    w.console(&format!(
        r#"
import boto3
ecs = boto3.client("ecs")
arn = ecs.register_task_definition(family="hand-made", containerDefinitions=[{{"name": "x", "image": "nginx", "memory": 128}}], networkMode="awsvpc", requiresCompatibilities=["FARGATE"], cpu="256", memory="512")["taskDefinition"]["taskDefinitionArn"]
ecs.create_service(cluster="pre", serviceName="ledger", taskDefinition=arn, desiredCount=3, launchType="FARGATE",
    networkConfiguration={{"awsvpcConfiguration": {{"subnets": ["{}"], "securityGroups": ["{}"]}}}})
"#,
        w.subnets[0], w.security_group
    ));
    let out = w.apply("pre", &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("ledger                   Unmanaged"), "{stdout}");
    assert!(stdout.contains("without the tag berth:managed=true"), "{stdout}");
    let (_, report) = w.diff_json("pre");
    for s in ["bpg", "klausapproves", "notifier"] {
        assert_eq!(outcome(&report, s), "Synced", "{report:#}");
    }
    let live = w.console(
        "import boto3; s = boto3.client('ecs').describe_services(cluster='pre', services=['ledger'])['services'][0]; print(s['taskDefinition'], s['desiredCount'])",
    );
    assert!(live.contains("hand-made:1 3"), "the unmanaged service was changed: {live}");

    // `adopt: true` takes it over.
    w.commit_edit("services/ledger/deploy/pre/config.yaml", |t| format!("{t}adopt: true\n"), "ledger: adopt");
    w.push_images();
    let out = w.apply("pre", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let (code, _) = w.diff_json("pre");
    assert_eq!(code, 0);
}

#[test]
fn a_missing_secret_fails_its_service_alone_and_no_secret_value_is_printed() {
    let w = World::new();
    w.console("import boto3; boto3.client('secretsmanager').delete_secret(SecretId='pre/klaus', ForceDeleteWithoutRecovery=True)");
    let out = w.apply("pre", &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("klausapproves            Failed"), "{stdout}");
    assert!(
        stdout.contains(
            "services/klausapproves/deploy/service.yaml:24:15: secret secretsmanager:pre/klaus#api_key does not exist"
        ),
        "{stdout}"
    );
    let (_, report) = w.diff_json("pre");
    for s in ["bpg", "ledger", "notifier"] {
        assert_eq!(outcome(&report, s), "Synced", "{report:#}");
    }
    // World::berth asserts on every run that no seeded secret value was printed; the JSON
    // report and the debug log are covered too.
    let exists = w.console(
        "import boto3; print(len(boto3.client('ecs').describe_services(cluster='pre', services=['klausapproves'])['services']))",
    );
    assert_eq!(exists.trim(), "0", "nothing of the failing service is applied");
}

/// A lookup that fails for one item fails the services that reference it, and no other:
/// access denied on one secret leaves every other service converging.
#[test]
fn access_denied_on_one_secret_fails_that_service_alone() {
    let w = World::new();
    w.proxy.inject("DescribeSecret", Fault::Code("AccessDeniedException"), 1);
    let out = w.apply("pre", &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("klausapproves            Failed"), "{stdout}");
    assert!(stdout.contains("access denied"), "{stdout}");
    for s in ["bpg", "ledger", "notifier"] {
        assert!(stdout.contains(&format!("{s:<24} Applied")), "{s}: {stdout}");
    }
    // Once AWS answers again, the failed service converges too.
    let out = w.apply("pre", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn throttling_is_retried_and_makes_no_duplicate_revisions() {
    let w = World::new();
    assert_eq!(w.apply("pre", &[]).status.code(), Some(0));
    w.commit_edit(
        "services/notifier/deploy/pre/config.yaml",
        |t| t.replace("notifier-pre", "notifier-pre-2"),
        "notifier: queue",
    );
    w.push_images();
    w.proxy.reset_counts();
    w.proxy.inject("DescribeServices", Fault::Throttle, 2);
    w.proxy.inject("UpdateService", Fault::Throttle, 2);
    w.proxy.inject("RegisterTaskDefinition", Fault::Status(503), 1);
    let out = w.apply("pre", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(w.proxy.count("UpdateService"), 3, "{:?}", w.proxy.counts());
    // The 503 was retried by the SDK; exactly one revision was created.
    let revisions = w.console(
        "import boto3; print(len(boto3.client('ecs').list_task_definitions(familyPrefix='notifier-pre')['taskDefinitionArns']))",
    );
    assert_eq!(revisions.trim(), "2", "{}", text(&out));
    let (code, _) = w.diff_json("pre");
    assert_eq!(code, 0);
}

fn running(w: &World, cluster: &str, service: &str) -> String {
    w.console(&format!(
        "import boto3; print(boto3.client('ecs').describe_services(cluster='{cluster}', services=['{service}'])['services'][0]['taskDefinition'])"
    ))
    .trim()
    .to_string()
}

/// A write carried out whose answer is lost is resolved by reading, not by writing again:
/// no family gets a second revision, and no service is created twice.
#[test]
fn lost_answers_to_writes_make_no_duplicates() {
    let w = World::new();
    w.proxy.inject("RegisterTaskDefinition", Fault::LoseResponse, 3);
    w.proxy.inject("CreateService", Fault::LoseResponse, 2);
    w.proxy.inject("RegisterScalableTarget", Fault::LoseResponse, 1);
    w.proxy.inject("PutScalingPolicy", Fault::LoseResponse, 1);
    let out = w.apply("pre", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    for family in ["bpg-pre", "klausapproves-pre", "ledger-pre", "notifier-pre"] {
        assert_eq!(w.revisions(family), 1, "{family}\n{}", text(&out));
    }
    // The lost answers made berth ask: the CreateService tokens are one per service.
    let tokens: Vec<String> = w.proxy.bodies("CreateService").iter().map(|b| b["clientToken"].to_string()).collect();
    let mut distinct = tokens.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 4, "a token per service, the same on every attempt: {tokens:?}");
    // A change whose registration and update both lose their answers.
    w.commit_edit("services/ledger/deploy/service.yaml", |t| t.replace("count: 1", "count: 2"), "ledger: 2");
    w.push_images();
    w.proxy.inject("RegisterTaskDefinition", Fault::LoseResponse, 1);
    w.proxy.inject("UpdateService", Fault::LoseResponse, 1);
    let out = w.apply("pre", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(w.revisions("ledger-pre"), 2, "{}", text(&out));
    assert_eq!(w.diff_json("pre").0, 0);
}

/// Going back to content an older revision has (a console edit healed, a release tag
/// deleted) runs that revision again instead of registering a copy of it.
#[test]
fn a_heal_and_a_tag_rollback_reuse_the_older_revision() {
    let w = World::new();
    assert_eq!(w.apply("pre", &[]).status.code(), Some(0));
    let first = running(&w, "pre", "notifier");
    // A console edit: a hand-made revision with other content.
    w.console(
        "import boto3\ne = boto3.client('ecs')\ntd = e.describe_task_definition(taskDefinition='notifier-pre')['taskDefinition']\nkeep = ['family', 'containerDefinitions', 'executionRoleArn', 'networkMode', 'requiresCompatibilities']\nnew = e.register_task_definition(**{k: td[k] for k in keep if k in td}, cpu='1024', memory='2048')['taskDefinition']['taskDefinitionArn']\ne.update_service(cluster='pre', service='notifier', taskDefinition=new)",
    );
    assert_eq!(w.revisions("notifier-pre"), 2);
    let out = w.apply("pre", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(running(&w, "pre", "notifier"), first, "the heal runs git's revision again\n{}", text(&out));
    assert_eq!(w.revisions("notifier-pre"), 2, "the heal registered a copy\n{}", text(&out));
    // prod: release v1.1.0, then delete its tag: back to v1.0.0's revision.
    assert_eq!(w.apply("prod", &[]).status.code(), Some(0));
    let released = running(&w, "prod", "notifier");
    w.commit_edit("services/notifier/deploy/service.yaml", |t| t.replace("value: debug", "value: info"), "info logs");
    git(&w.repo, &["tag", "v1.1.0"]);
    w.push();
    w.push_images();
    let out = w.apply("prod", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_ne!(running(&w, "prod", "notifier"), released);
    // Deleted on the remote: berth resolves prod's ref from there (no `--repo`).
    git(&w.origin, &["tag", "-d", "v1.1.0"]);
    let config = w.config.to_string_lossy().into_owned();
    let out = w.berth(&["apply", "--config", &config, "--env", "prod"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(running(&w, "prod", "notifier"), released, "{}", text(&out));
    assert_eq!(w.revisions("notifier-prod"), 2, "the rollback registered a copy\n{}", text(&out));
    let diff = w.berth(&["diff", "--config", &config, "--env", "prod"]);
    assert_eq!(diff.status.code(), Some(0), "{}", text(&diff));
}

/// SIGTERM during `apply` (here: while it waits for a stuck rollout) ends it within its
/// grace period: the write in flight is done, nothing new starts, the exit is 1, and the
/// report says what was left undone.
#[test]
fn apply_stops_cleanly_on_sigterm_and_says_what_is_left() {
    let w = World::new();
    w.write_config("    rollout: {wait: true, timeout: 10m, poll: 100ms}\n");
    w.proxy.set_rollouts(Rollouts::Stuck);
    let config = w.config.to_string_lossy().into_owned();
    let repo = w.repo.to_string_lossy().into_owned();
    let mut cmd = w.moto.command(env!("CARGO_BIN_EXE_berth"));
    cmd.env_remove("AWS_ENDPOINT_URL").args(["apply", "--config", &config, "--env", "pre", "--repo", &repo]);
    let child = cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    // Waiting for the rollouts: services created, their deployments read again and again.
    let start = std::time::Instant::now();
    while w.proxy.count("CreateService") == 0 || w.proxy.count("DescribeServices") < 5 {
        assert!(start.elapsed() < std::time::Duration::from_secs(30), "apply never got to its rollouts");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let created = w.proxy.count("CreateService");
    let signalled = std::time::Instant::now();
    assert!(std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let out = child.wait_with_output().unwrap();
    assert!(signalled.elapsed() < std::time::Duration::from_secs(20), "took {:?}", signalled.elapsed());
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("stopped waiting for the rollout (shutting down)"), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("SIGTERM: finishing the write in flight"), "{}", text(&out));
    // klausapproves waits for bpg's rollout: it was left undone, and said so.
    assert!(stdout.contains("shutting down"), "{}", text(&out));
    assert_eq!(w.proxy.count("CreateService"), created, "a write started after the signal");
}

/// An attempt that does not answer within `aws.attempt_timeout` is abandoned and retried:
/// the slow request holds nothing up, and the apply converges.
#[test]
fn a_slow_attempt_is_abandoned_and_retried() {
    let w = World::new();
    let config = std::fs::read_to_string(&w.config).unwrap();
    std::fs::write(&w.config, config.replace("  max_attempts: 4\n", "  max_attempts: 4\n  attempt_timeout: 1s\n"))
        .unwrap();
    w.proxy.inject("DescribeServices", Fault::Delay(std::time::Duration::from_secs(4)), 1);
    let out = w.apply("pre", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // The first read of the four services, abandoned, and its retry.
    let sizes = w.proxy.describe_services_sizes();
    assert!(sizes.starts_with(&[4, 4]), "{sizes:?}\n{}", text(&out));
}

#[test]
fn an_update_that_fails_after_registering_reuses_the_revision_next_time() {
    let w = World::new();
    assert_eq!(w.apply("pre", &[]).status.code(), Some(0));
    w.commit_edit(
        "services/ledger/deploy/service.yaml",
        |t| t.replace("count: 1", "count: 2\n  health: /ready"),
        "ledger: ready path",
    );
    w.push_images();
    w.proxy.inject("UpdateService", Fault::Status(400), 1);
    let out = w.apply("pre", &["--service", "ledger"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let out = w.apply("pre", &["--service", "ledger"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let revisions = w.console(
        "import boto3; print(len(boto3.client('ecs').list_task_definitions(familyPrefix='ledger-pre')['taskDefinitionArns']))",
    );
    assert_eq!(revisions.trim(), "2", "a second attempt must not register another revision");
}

#[test]
fn describe_services_never_carries_more_than_ten_names() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..23 {
        let d = dir.path().join(format!("services/svc{i:02}/deploy/pre"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.parent().unwrap().join("service.yaml"),
            format!("type: service\nname: svc{i:02}\nspec:\n  image: svc{i:02}\n  resources: {{cpu: 256, memory: 512}}\n  count: 0\n"),
        )
        .unwrap();
        std::fs::write(d.join("config.yaml"), "").unwrap();
    }
    let w = World::with_repo(dir.path());
    let out = w.apply("pre", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    w.proxy.reset_counts();
    let (code, _) = w.diff_json("pre");
    assert_eq!(code, 0);
    let mut sizes = w.proxy.describe_services_sizes();
    sizes.sort_unstable_by(|a, b| b.cmp(a)); // batches go out concurrently
    assert_eq!(sizes, vec![10, 10, 3]);
    assert_eq!(w.proxy.count("DescribeScalableTargets"), 1, "{:?}", w.proxy.counts());
    assert_eq!(w.proxy.count("DescribeScalingPolicies"), 1, "{:?}", w.proxy.counts());
}

#[test]
fn a_rollout_is_waited_for_and_a_circuit_breaker_rollback_fails_the_apply() {
    let w = World::new();
    w.write_config("    rollout: {wait: true, timeout: 20s, poll: 100ms}\n");
    w.proxy.set_rollouts(Rollouts::Complete);
    let out = w.apply("pre", &["--service", "ledger"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("done: rollout completed"), "{}", text(&out));

    w.commit_edit("services/ledger/deploy/service.yaml", |t| t.replace("count: 1", "count: 2"), "ledger: 2 tasks");
    w.commit_edit("services/ledger/deploy/pre/config.yaml", |t| format!("{t}variables: []\n"), "ledger: touch");
    w.push_images();
    w.proxy.set_rollouts(Rollouts::Fail);
    let out = w.apply("pre", &["--service", "ledger", "--output", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ledger = &report["services"][0];
    assert_eq!(ledger["rollout_failed"], true, "{report:#}");
    assert!(ledger["outcome"]["reason"].as_str().unwrap().contains("circuit breaker"), "{report:#}");

    w.proxy.set_rollouts(Rollouts::Stuck);
    w.write_config("    rollout: {wait: true, timeout: 1s, poll: 100ms}\n");
    w.commit_edit("services/ledger/deploy/service.yaml", |t| t.replace("count: 2", "count: 3"), "ledger: 3 tasks");
    w.push_images();
    let out = w.apply("pre", &["--service", "ledger"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("did not finish within 1s"), "{}", text(&out));
}

#[test]
fn a_missing_image_waits_instead_of_failing_hard() {
    let w = World::new();
    w.commit_edit("services/bpg/deploy/pre/config.yaml", |t| t.replace("value: debug", "value: warn"), "bpg: warn");
    // No push: CI has not built bpg's image for this commit yet.
    let out = w.apply("pre", &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("bpg                      WaitingForImage"), "{stdout}");
    // klausapproves depends on bpg: it waits too; independent services converge.
    assert!(stdout.contains("klausapproves            Skipped"), "{stdout}");
    assert!(stdout.contains("! dependency bpg did not converge"), "{stdout}");
    assert!(stdout.contains("ledger                   Applied"), "{stdout}");
    w.push_images();
    let out = w.apply("pre", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn diff_without_repo_resolves_the_environment_ref_from_the_remote() {
    let w = World::new();
    w.push();
    assert_eq!(w.apply("pre", &[]).status.code(), Some(0));
    let config = w.config.to_string_lossy().into_owned();
    // The remote (origin) has what the working clone has: in sync.
    let out = w.berth(&["diff", "--config", &config, "--env", "pre"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // A pushed commit shows as drift without any local checkout.
    w.commit_edit("services/ledger/deploy/service.yaml", |t| t.replace("count: 1", "count: 2"), "ledger: 2");
    w.push_images();
    w.push();
    let out = w.berth(&["diff", "--config", &config, "--env", "pre"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("~ service.desiredCount: 1 → 2"), "{}", text(&out));
    // A tag environment deploys the highest release tag.
    let out = w.berth(&["diff", "--config", &config, "--env", "prod", "--output", "json"]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ref"], "refs/tags/v1.0.0", "{}", text(&out));
}

/// `berth apply` is how an operator converges a `sync: manual` environment.
#[test]
fn apply_acts_on_a_manual_environment() {
    let w = World::new();
    w.write_config("    sync: manual\n");
    let out = w.apply("pre", &["--service", "ledger"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("ledger                   Applied"), "{}", text(&out));
}

/// A dependent of a service whose files are broken is skipped, naming the broken
/// dependency and where it is broken; its own (correct) files are not blamed.
#[test]
fn a_dependent_of_a_broken_service_is_skipped_naming_the_dependency() {
    let w = World::new();
    w.commit_edit("services/bpg/deploy/service.yaml", |t| t.replace("min: 2", "min: [2"), "bpg: broken");
    let out = w.apply("pre", &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("klausapproves            Skipped"), "{stdout}");
    assert!(stdout.contains("! dependency bpg (services/bpg/deploy/service.yaml:"), "{stdout}");
    assert!(!stdout.contains("unknown service"), "{stdout}");
    assert!(stdout.contains("ledger                   Applied"), "{stdout}");
}

/// A GetParameters batch that is denied is asked again name by name: one parameter the
/// role may not read fails only the services that use it (here the denial is passing,
/// so every service converges).
#[test]
fn a_denied_parameter_batch_is_asked_again_name_by_name() {
    let dir = tempfile::tempdir().unwrap();
    for (name, param) in [("alpha", "/pre/klausapproves/db-host"), ("beta", "/pre/beta/host")] {
        let d = dir.path().join(format!("services/{name}/deploy/pre"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.parent().unwrap().join("service.yaml"),
            format!("type: service\nname: {name}\nspec:\n  image: {name}\n  resources: {{cpu: 256, memory: 512}}\n  count: 0\n  environment:\n    - key: HOST\n      value: '{{{{ .Variables[\"host\"] }}}}'\n"),
        )
        .unwrap();
        std::fs::write(d.join("config.yaml"), format!("variables:\n  - key: host\n    value: ssm:{param}\n")).unwrap();
    }
    let w = World::with_repo(dir.path());
    w.console(
        "import boto3; boto3.client('ssm').put_parameter(Name='/pre/beta/host', Value='beta.internal', Type='String')",
    );
    w.proxy.inject("GetParameters", Fault::Code("AccessDeniedException"), 1);
    let out = w.apply("pre", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(w.proxy.count("GetParameters") >= 3, "{:?}", w.proxy.counts());
}
