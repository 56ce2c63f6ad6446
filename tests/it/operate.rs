//! Steering services end to end, against moto and the daemon binary: a rollback and its
//! pin, history in DynamoDB across a restart, pause and resume, sync now.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::daemon::{API_TOKEN, Daemon, http};
use crate::support::proxy::Fault;
use crate::support::world::{World, git, text};

const LIMIT: Duration = Duration::from_secs(30);

/// `family:N` of the revision `service` runs in `pre`, on the moto side.
fn running(w: &World, service: &str) -> String {
    w.console(&format!(
        "import boto3; print(boto3.client('ecs').describe_services(cluster='pre', services=['{service}'])['services'][0]['taskDefinition'].rsplit('/', 1)[1])"
    ))
    .trim()
    .to_string()
}

fn desired_count(w: &World, service: &str) -> i64 {
    w.console(&format!(
        "import boto3; print(boto3.client('ecs').describe_services(cluster='pre', services=['{service}'])['services'][0]['desiredCount'])"
    ))
    .trim()
    .parse()
    .unwrap()
}

/// `pre` only, polled every second, with a state table and the daemon API.
fn world() -> World {
    let w = World::new();
    *w.poll_interval.borrow_mut() = "1s".into();
    *w.envs.borrow_mut() = vec!["pre"];
    *w.top_extra.borrow_mut() = "state: {table: berth-state}\napi: {token_env: BERTH_TEST_API_TOKEN}\n".into();
    w.rewrite_config();
    w
}

fn cli(w: &World, args: &[&str]) -> std::process::Output {
    let config = w.config.to_string_lossy().into_owned();
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--config", &config, "--env", "pre"]);
    w.berth(&all)
}

fn history(w: &World, service: &str) -> Vec<Value> {
    let out = cli(w, &["history", "--service", service, "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn synced_at(d: &Daemon, service: &str, commit: &str) -> bool {
    d.service("pre", service).is_some_and(|s| s["commit"] == commit && s["sync"] == "Synced")
}

/// A bad commit rolls out; `berth rollback` returns the service to the revision before and
/// pins it: over several polls berth sends it no UpdateService while another service
/// converges. `berth history` lists the applies in order, from the table, after a daemon
/// restart. A new commit to the service ends the pin and deploys.
#[test]
fn a_rollback_is_pinned_until_git_changes_the_service() {
    let w = world();
    let mut d = Daemon::ready(&w);
    assert_eq!(running(&w, "ledger"), "ledger-pre:1");
    let bad =
        w.commit_edit("services/ledger/deploy/service.yaml", |t| t.replace("memory: 1024", "memory: 2048"), "bad");
    w.push_images();
    w.push();
    d.wait_for("the bad commit deployed", LIMIT, |d| synced_at(d, "ledger", &bad));
    assert_eq!(running(&w, "ledger"), "ledger-pre:2");

    let repo = w.repo.to_string_lossy().into_owned();
    let out = cli(&w, &["rollback", "ledger", "--repo", &repo, "--reason", "bad memory"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("rolled back ledger in pre from ledger-pre:2 to ledger-pre:1"), "{stdout}");
    assert!(stdout.contains("pinned"), "{stdout}");
    assert_eq!(running(&w, "ledger"), "ledger-pre:1");

    // Other services keep converging; ledger is left alone.
    w.proxy.reset_counts();
    let other = w.commit_edit("services/notifier/deploy/pre/config.yaml", |t| format!("{t}# touched\n"), "notifier");
    w.push_images();
    w.push();
    d.wait_for("notifier deployed", LIMIT, |d| synced_at(d, "notifier", &other));
    d.cycles_more("pre", 3);
    assert_eq!(w.proxy.count("UpdateService"), 1, "only notifier was updated\n{}", d.log());
    assert_eq!(running(&w, "ledger"), "ledger-pre:1");
    let s = d.service("pre", "ledger").unwrap();
    assert_eq!(s["health"], "Pinned", "{s}");
    assert_eq!(s["pinned"]["revision"], "ledger-pre:1");

    // History: durable, newest first, read with the CLI after a restart.
    let (code, _) = d.terminate();
    assert_eq!(code, Some(0));
    drop(d);
    let entries = history(&w, "ledger");
    let triggers: Vec<&str> = entries.iter().filter_map(|e| e["trigger"]["kind"].as_str()).collect();
    assert_eq!(triggers, ["rollback", "git_change", "git_change"], "{entries:#?}");
    assert_eq!(entries[0]["revision"].as_str().unwrap().rsplit('/').next(), Some("ledger-pre:1"));
    assert_eq!(entries[1]["commit"], bad.as_str());
    // Rollouts are not waited for in this config: applied, not known to be completed.
    assert!(entries.iter().all(|e| e["result"] == "applied"), "{entries:#?}");
    assert_eq!(entries[0]["by"], std::env::var("USER").unwrap_or_else(|_| "unknown".into()));
    let d2 = Daemon::ready(&w);
    d2.cycles_more("pre", 2);
    assert_eq!(running(&w, "ledger"), "ledger-pre:1", "a restarted daemon undid the rollback\n{}", d2.log());

    // The fix: a new spec ends the pin.
    let fix =
        w.commit_edit("services/ledger/deploy/service.yaml", |t| t.replace("memory: 2048", "memory: 1024"), "fix");
    w.push_images();
    w.push();
    d2.wait_for("the fix deployed", LIMIT, |d| synced_at(d, "ledger", &fix));
    assert_eq!(d2.service("pre", "ledger").unwrap()["health"], "Healthy");
    assert_ne!(running(&w, "ledger"), "ledger-pre:1");
    let tags = w.console(
        "import boto3; e = boto3.client('ecs'); a = e.describe_services(cluster='pre', services=['ledger'])['services'][0]['serviceArn']; print(sorted(t['key'] for t in e.list_tags_for_resource(resourceArn=a)['tags']))",
    );
    assert!(!tags.contains("berth:pinned"), "{tags}");
}

/// Pause: a console edit stays while the service is paused (its drift reported), and is
/// healed once it is resumed.
#[test]
fn a_paused_service_is_not_healed_until_resumed() {
    let w = world();
    let d = Daemon::ready(&w);
    let out = cli(&w, &["pause", "notifier", "--reason", "incident #42 (db failover)"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    w.console("import boto3; boto3.client('ecs').update_service(cluster='pre', service='notifier', desiredCount=4)");
    d.wait_for("the drift reported", LIMIT, |d| {
        d.service("pre", "notifier").is_some_and(|s| s["health"] == "Paused" && s["sync"] == "OutOfSync")
    });
    d.cycles_more("pre", 2);
    assert_eq!(desired_count(&w, "notifier"), 4, "a paused service was healed");
    let s = d.service("pre", "notifier").unwrap();
    assert_eq!(s["paused"]["reason"], "incident 42 db failover");
    let (_, metrics) = d.get("/metrics");
    assert!(metrics.contains("berth_service_paused{env=\"pre\",service=\"notifier\"} 1"), "{metrics}");
    let out = cli(&w, &["resume", "notifier"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    d.wait_for("healed after resume", LIMIT, |_| desired_count(&w, "notifier") == 1);
    let kinds: Vec<String> =
        history(&w, "notifier").iter().filter_map(|e| e["trigger"]["kind"].as_str().map(str::to_string)).collect();
    assert_eq!(kinds[..3], ["drift_heal", "resumed", "paused"], "{kinds:?}");
}

/// Sync now: a service in backoff (access denied: a minute) is applied within a second of
/// `berth sync`; a wrong token gets 401 and triggers nothing.
#[test]
fn sync_now_ends_a_backoff_and_needs_the_token() {
    let w = world();
    let d = Daemon::ready(&w);
    w.proxy.inject("RegisterTaskDefinition", Fault::Code("AccessDeniedException"), 1);
    let change =
        w.commit_edit("services/ledger/deploy/service.yaml", |t| t.replace("memory: 1024", "memory: 2048"), "x");
    w.push_images();
    w.push();
    d.wait_for("ledger backs off", LIMIT, |d| {
        d.service("pre", "ledger").is_some_and(|s| s["last_error"].as_str().is_some_and(|e| e.contains("backing off")))
    });
    let wrong = [("Authorization", "Bearer nope".to_string()), ("Content-Type", "application/json".into())];
    let (code, _) = http(&d_addr(&d), "POST", "/api/v1/sync", &wrong, br#"{"env": "pre"}"#);
    assert_eq!(code, 401);
    let (code, _) = http(&d_addr(&d), "POST", "/api/v1/sync", &[], br#"{"env": "pre"}"#);
    assert_eq!(code, 401);
    d.cycles_more("pre", 2);
    assert!(!synced_at(&d, "ledger", &change), "a refused request ended the backoff");

    let url = format!("http://{}", d_addr(&d));
    let start = Instant::now();
    let config = w.config.to_string_lossy().into_owned();
    let mut cmd = w.moto.command(env!("CARGO_BIN_EXE_berth"));
    cmd.env_remove("AWS_ENDPOINT_URL").env("BERTH_TEST_API_TOKEN", API_TOKEN);
    let out =
        cmd.args(["sync", "--config", &config, "--env", "pre", "--service", "ledger", "--url", &url]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("backoff ended for ledger"), "{}", text(&out));
    d.wait_for("ledger applied", LIMIT, |d| synced_at(d, "ledger", &change));
    // The backoff had a minute left (LIMIT is shorter): only the sync can have ended it.
    let took = start.elapsed();
    eprintln!("sync now: applied {} ms after `berth sync`", took.as_millis());
}

fn d_addr(d: &Daemon) -> String {
    d.metrics.clone()
}

/// Prune: a service whose folder is deleted in git is scaled to zero, its scaling removed
/// and deleted; a same-named service berth does not manage, in another cluster, is left.
#[test]
fn a_deleted_folder_prunes_only_its_berth_managed_service() {
    let w = world();
    w.write_config("    prune: true\n");
    w.console(
        "import boto3; e = boto3.client('ecs'); e.register_task_definition(family='foreign', containerDefinitions=[{'name': 'x', 'image': 'x', 'memory': 128}]); e.create_service(cluster='prod', serviceName='klausapproves', taskDefinition='foreign', desiredCount=0)",
    );
    let d = Daemon::ready(&w);
    git(&w.repo, &["rm", "-r", "-q", "services/klausapproves"]);
    git(&w.repo, &["commit", "-q", "-m", "retire klausapproves"]);
    w.push();
    let state = |cluster: &str| {
        w.console(&format!(
            "import boto3; s = boto3.client('ecs').describe_services(cluster='{cluster}', services=['klausapproves'])['services']; print(s[0]['status'] if s else 'MISSING')"
        ))
        .trim()
        .to_string()
    };
    d.wait_for("klausapproves pruned", LIMIT, |_| state("pre") != "ACTIVE");
    assert_eq!(state("prod"), "ACTIVE", "the unmanaged service in another cluster was touched");
    let targets = w.console(
        "import boto3; print(len(boto3.client('application-autoscaling').describe_scalable_targets(ServiceNamespace='ecs', ResourceIds=['service/pre/klausapproves'])['ScalableTargets']))",
    );
    assert_eq!(targets.trim(), "0", "its scalable target is left");
    for s in ["bpg", "ledger", "notifier"] {
        assert_eq!(d.service("pre", s).unwrap()["sync"], "Synced", "{s}");
    }
    assert!(d.log().contains("pruned: its folder is gone from git"), "{}", d.log());
}
