//! `berth daemon` end to end: a real daemon process, a real git remote, moto behind the
//! test proxy. Pushes deploy, console edits heal, webhooks wake it, failed rollouts hold,
//! broken services fail alone, metrics parse as OpenMetrics, reloads apply, SIGTERM drains.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::moto::free_port;
use crate::support::proxy::{Fault, Rollouts};
use crate::support::world::{SECRET_VALUES, World, git, text};

const WEBHOOK_SECRET: &str = "webhook-test-secret";
/// The daemon API's bearer token (`api: {token_env: BERTH_TEST_API_TOKEN}`).
pub(crate) const API_TOKEN: &str = "api-test-token";
/// The notification webhook's HMAC key (`secret_env: BERTH_TEST_HOOK_SECRET`).
pub(crate) const HOOK_SECRET: &str = "hook-test-secret";

pub(crate) struct Daemon {
    child: Option<Child>,
    pub(crate) metrics: String,
    webhook: String,
    log: PathBuf,
}

impl Daemon {
    /// Starts `berth daemon` for the world (listeners on free loopback ports) and waits
    /// until `/healthz` answers.
    pub(crate) fn start(w: &World) -> Daemon {
        let (m, h) = (free_port(), free_port());
        *w.top_level.borrow_mut() = format!(
            "metrics: {{listen: 127.0.0.1:{m}}}\nwebhook: {{listen: 127.0.0.1:{h}, secret_env: BERTH_TEST_WEBHOOK}}\nconcurrency: 4\n"
        );
        w.rewrite_config();
        Daemon::start_at(w, &w.config, m, h)
    }

    /// A second replica: the world's config with its own listeners, its own git workdir
    /// and (when given) its own AWS endpoint, in a file of its own.
    pub(crate) fn replica(w: &World, endpoint: Option<&str>) -> Daemon {
        let (m, h) = (free_port(), free_port());
        let text = std::fs::read_to_string(&w.config).unwrap();
        let mut out = String::new();
        for line in text.lines() {
            let line = if line.starts_with("metrics:") {
                format!("metrics: {{listen: 127.0.0.1:{m}}}")
            } else if line.starts_with("webhook:") {
                format!("webhook: {{listen: 127.0.0.1:{h}, secret_env: BERTH_TEST_WEBHOOK}}")
            } else if let Some(dir) = line.strip_prefix("  workdir: ") {
                format!("  workdir: {dir}-{m}")
            } else if let (Some(e), true) = (endpoint, line.starts_with("  endpoint_url: ")) {
                format!("  endpoint_url: {e}")
            } else {
                line.to_string()
            };
            out.push_str(&line);
            out.push('\n');
        }
        let config = w.path(&format!("berth-{m}.yaml"));
        std::fs::write(&config, out).unwrap();
        Daemon::start_at(w, &config, m, h)
    }

    pub(crate) fn start_at(w: &World, config: &std::path::Path, m: u16, h: u16) -> Daemon {
        let log = w.path(&format!("daemon-{m}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let mut cmd = w.moto.command(env!("CARGO_BIN_EXE_berth"));
        cmd.env_remove("AWS_ENDPOINT_URL")
            .env("RUST_LOG", "berth=debug,info")
            .env("BERTH_TEST_WEBHOOK", WEBHOOK_SECRET)
            .env("BERTH_TEST_API_TOKEN", API_TOKEN)
            .env("BERTH_TEST_HOOK_SECRET", HOOK_SECRET)
            .env("BERTH_TEST_GITHUB_TOKEN", "github-test-token")
            .args(["daemon", "--config", &config.to_string_lossy()])
            .stdout(file.try_clone().unwrap())
            .stderr(file);
        let child = cmd.spawn().expect("cannot start berth daemon");
        let d =
            Daemon { child: Some(child), metrics: format!("127.0.0.1:{m}"), webhook: format!("127.0.0.1:{h}"), log };
        d.wait_for("healthz", Duration::from_secs(20), |d| d.get("/healthz").0 == 200);
        d
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub(crate) fn get(&self, path: &str) -> (u16, String) {
        http(&self.metrics, "GET", path, &[], b"")
    }

    pub(crate) fn status(&self) -> Value {
        let (code, body) = self.get("/status");
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    pub(crate) fn service(&self, env: &str, name: &str) -> Option<Value> {
        let s = self.status();
        let e = s["environments"].as_array()?.iter().find(|e| e["name"] == env)?.clone();
        e["services"].as_array()?.iter().find(|x| x["name"] == name).cloned()
    }

    /// Polls `cond` until it holds or `limit` passes (then fails with the daemon's log).
    pub(crate) fn wait_for(&self, what: &str, limit: Duration, cond: impl Fn(&Daemon) -> bool) -> Duration {
        let start = Instant::now();
        while start.elapsed() < limit {
            if cond(self) {
                return start.elapsed();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "timed out after {limit:?} waiting for {what}\n--- status\n{}\n--- log\n{}",
            self.get("/status").1,
            self.log()
        );
    }

    /// [`Daemon::start`], then waits for the first sync of every environment.
    pub(crate) fn ready(w: &World) -> Daemon {
        let d = Daemon::start(w);
        d.wait_for("first sync", Duration::from_secs(60), |d| d.get("/readyz").0 == 200);
        d
    }

    /// Waits until `n` more cycles of `env` have completed.
    pub(crate) fn cycles_more(&self, env: &str, n: u64) {
        let target = cycles(self, env) + n;
        self.wait_for("more cycles", Duration::from_secs(60), |d| cycles(d, env) >= target);
    }

    fn webhook(&self, body: &str, signature: Option<String>) -> (u16, String) {
        let mut headers =
            vec![("X-GitHub-Event", "push".to_string()), ("Content-Type", "application/json".to_string())];
        if let Some(s) = signature {
            headers.push(("X-Hub-Signature-256", s));
        }
        http(&self.webhook, "POST", "/webhook/github", &headers, body.as_bytes())
    }

    /// SIGKILL: the process is gone at once, its lease left to expire.
    pub(crate) fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then the exit status and how long it took.
    pub(crate) fn terminate(&mut self) -> (Option<i32>, Duration) {
        let mut child = self.child.take().unwrap();
        let start = Instant::now();
        let ok = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
        assert!(ok.success());
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return (status.code(), start.elapsed());
            }
            if start.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                panic!("the daemon did not stop within 60 s\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let log = self.log();
        for v in SECRET_VALUES {
            assert!(!log.contains(v), "secret value {v:?} in the daemon log");
        }
    }
}

pub(crate) fn http(addr: &str, method: &str, path: &str, headers: &[(&str, String)], body: &[u8]) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect(addr) else { return (0, String::new()) };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    if s.write_all(req.as_bytes()).is_err() || s.write_all(body).is_err() {
        return (0, String::new());
    }
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    let code = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (code, body)
}

fn sign(body: &str) -> String {
    use hmac::{KeyInit as _, Mac as _};
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(WEBHOOK_SECRET.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

pub(crate) fn image_of(w: &World, cluster: &str, service: &str) -> String {
    w.console(&format!(
        "import boto3; e = boto3.client('ecs'); s = e.describe_services(cluster='{cluster}', services=['{service}'])['services']; print(e.describe_task_definition(taskDefinition=s[0]['taskDefinition'])['taskDefinition']['containerDefinitions'][0]['image'] if s else '-')"
    ))
    .trim()
    .to_string()
}

fn synced(d: &Daemon, env: &str, names: &[&str]) -> bool {
    names.iter().all(|n| d.service(env, n).is_some_and(|s| s["sync"] == "Synced"))
}

#[test]
fn pushes_deploy_develop_to_pre_and_release_tags_to_prod() {
    let w = World::new();
    *w.poll_interval.borrow_mut() = "1s".into();
    let d = Daemon::ready(&w);
    assert!(synced(&d, "pre", &["bpg", "klausapproves", "ledger", "notifier"]), "{:#}", d.status());
    assert!(synced(&d, "prod", &["bpg", "klausapproves", "notifier"]), "{:#}", d.status());
    assert!(d.service("prod", "ledger").is_none(), "ledger is opted out of prod");
    assert!(image_of(&w, "prod", "bpg").ends_with("bpg:1.0.0"));

    // A commit to develop deploys to pre with the commit's image tag.
    let commit = w.commit_edit("services/bpg/deploy/pre/config.yaml", |t| t.replace("debug", "warn"), "bpg: warn");
    w.push_images();
    w.push();
    d.wait_for("pre bpg on the new commit", Duration::from_secs(30), |d| {
        d.service("pre", "bpg").is_some_and(|s| s["commit"] == commit.as_str() && s["sync"] == "Synced")
    });
    assert!(image_of(&w, "pre", "bpg").ends_with(&format!("bpg:{}", &commit[..12])));
    assert!(image_of(&w, "prod", "bpg").ends_with("bpg:1.0.0"), "prod must not move on a develop commit");

    // A release tag deploys to prod; a pre-release is ignored.
    git(&w.repo, &["tag", "v1.2.0"]);
    w.push_images();
    w.push();
    d.wait_for("prod on 1.2.0", Duration::from_secs(30), |_| image_of(&w, "prod", "bpg").ends_with("bpg:1.2.0"));
    w.commit_edit(
        "services/notifier/deploy/prod/config.yaml",
        |t| t.replace("notifier-prod", "notifier-prod-rc"),
        "rc",
    );
    git(&w.repo, &["tag", "v1.3.0-rc.1"]);
    w.push_images();
    w.push();
    // A commit on another branch changes nothing.
    git(&w.repo, &["checkout", "-q", "-b", "feature/x"]);
    w.commit_edit("services/ledger/deploy/pre/config.yaml", |t| format!("{t}variables: []\n"), "feature work");
    w.push_images();
    w.push();
    // Two full cycles after the pushes: both have seen them.
    d.cycles_more("prod", 2);
    d.cycles_more("pre", 2);
    assert!(image_of(&w, "prod", "notifier").ends_with("notifier:1.2.0"), "the pre-release must be ignored");
    let ledger = d.service("pre", "ledger").unwrap();
    assert_ne!(ledger["commit"], git(&w.repo, &["rev-parse", "HEAD"]).as_str());
    let prod = d.status()["environments"].as_array().unwrap().iter().find(|e| e["name"] == "prod").unwrap().clone();
    assert_eq!(prod["ref"], "refs/tags/v1.2.0");
}

#[test]
fn console_edits_heal_within_one_poll_interval() {
    let w = World::new();
    *w.poll_interval.borrow_mut() = "5s".into();
    let d = Daemon::ready(&w);
    w.console(
        r#"
import boto3
ecs = boto3.client("ecs")
ecs.update_service(cluster="pre", service="ledger", desiredCount=7)
td = ecs.describe_task_definition(taskDefinition="notifier-pre")["taskDefinition"]
for e in td["containerDefinitions"][0]["environment"]:
    if e["name"] == "LOG_LEVEL": e["value"] = "trace"
keep = {k: td[k] for k in ["family", "containerDefinitions", "networkMode", "requiresCompatibilities", "cpu", "memory", "executionRoleArn", "taskRoleArn"] if k in td}
ecs.update_service(cluster="pre", service="notifier", taskDefinition=ecs.register_task_definition(**keep)["taskDefinition"]["taskDefinitionArn"])
"#,
    );
    let healed = d.wait_for("heal", Duration::from_secs(30), |_| {
        w.console(
            "import boto3; e=boto3.client('ecs'); l=e.describe_services(cluster='pre', services=['ledger'])['services'][0]; n=e.describe_services(cluster='pre', services=['notifier'])['services'][0]; env=e.describe_task_definition(taskDefinition=n['taskDefinition'])['taskDefinition']['containerDefinitions'][0]['environment']; print(l['desiredCount'], [x['value'] for x in env if x['name']=='LOG_LEVEL'][0])",
        )
        .trim()
            == "1 debug"
    });
    // Healed by the next poll (5 s) with no push or webhook; the bound leaves room for a
    // loaded CI machine and for this check's own python calls.
    assert!(healed < Duration::from_secs(15), "healed after {healed:?}");
    // The log says what each heal put back, and that notifier runs git's revision again.
    let log = d.log();
    let line = |service: &str| {
        log.lines()
            .rev()
            .find(|l| l.contains(" applied ") && l.contains(&format!("service={service} ")))
            .map(str::to_string)
    };
    let ledger = line("ledger").unwrap_or_else(|| panic!("no apply line for ledger:\n{log}"));
    assert!(ledger.contains("changed=service.desiredCount"), "{ledger}");
    let notifier = line("notifier").unwrap_or_else(|| panic!("no apply line for notifier:\n{log}"));
    assert!(
        notifier.contains("container.environment.LOG_LEVEL") && notifier.contains("revision=notifier-pre:1"),
        "{notifier}"
    );
}

#[test]
fn a_signed_webhook_wakes_the_daemon_and_a_bad_one_is_refused() {
    let w = World::new();
    *w.poll_interval.borrow_mut() = "10m".into();
    let d = Daemon::ready(&w);
    let commit =
        w.commit_edit("services/ledger/deploy/service.yaml", |t| t.replace("count: 1", "count: 2"), "ledger: 2");
    w.push_images();
    w.push();
    let body = r#"{"ref":"refs/heads/develop","after":"x"}"#;
    let before = cycles(&d, "pre");
    let (code, _) = d.webhook(body, Some("sha256=0000".into()));
    assert_eq!(code, 401);
    let (code, _) = d.webhook(body, None);
    assert_eq!(code, 401);
    let (code, answer) = d.webhook(body, Some(sign(body)));
    assert_eq!(code, 202, "{answer}");
    assert!(answer.contains("\"pre\""), "{answer}");
    // The poll interval is 10 minutes: picking the commit up at all proves the webhook.
    d.wait_for("webhook deploy", Duration::from_secs(60), |d| {
        d.service("pre", "ledger").is_some_and(|s| s["commit"] == commit.as_str() && s["sync"] == "Synced")
    });
    // Only the signed webhook made a cycle (the poll interval is 10 minutes).
    assert_eq!(cycles(&d, "pre"), before + 1, "a refused webhook triggered a cycle\n{}", d.log());
    // Oversized bodies are refused before any signature work.
    let big = "x".repeat(2 * 1024 * 1024);
    assert_eq!(d.webhook(&big, Some(sign(&big))).0, 413);
}

#[test]
fn a_failed_rollout_is_degraded_and_not_retried_until_git_changes() {
    let w = World::new();
    *w.poll_interval.borrow_mut() = "1s".into();
    w.write_config("    rollout: {wait: true, timeout: 10s, poll: 100ms}\n");
    w.proxy.set_rollouts(Rollouts::Complete);
    let d = Daemon::ready(&w);
    // Rollouts are watched beside the cycles: the first ones may still be running.
    d.wait_for("every rollout done", Duration::from_secs(30), |d| {
        d.status()["environments"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["services"].as_array().unwrap().iter().all(|s| s["health"] == "Healthy"))
    });
    w.proxy.set_rollouts(Rollouts::Fail);
    let commit =
        w.commit_edit("services/ledger/deploy/service.yaml", |t| t.replace("count: 1", "count: 2"), "ledger: 2");
    w.push_images();
    w.push();
    d.wait_for("Degraded", Duration::from_secs(30), |d| {
        d.service("pre", "ledger").is_some_and(|s| s["health"] == "Degraded" && s["commit"] == commit.as_str())
    });
    let updates = w.proxy.count("UpdateService");
    d.cycles_more("pre", 3);
    assert_eq!(w.proxy.count("UpdateService"), updates, "the failed spec was applied again:\n{}", d.log());
    let s = d.service("pre", "ledger").unwrap();
    assert_eq!(s["held"], true, "{s:#}");
    let (_, metrics) = d.get("/metrics");
    assert!(metrics.contains("berth_service_held{env=\"pre\",service=\"ledger\"} 1"), "{metrics}");
    // A new commit releases the hold.
    w.proxy.set_rollouts(Rollouts::Complete);
    w.commit_edit("services/ledger/deploy/service.yaml", |t| t.replace("count: 2", "count: 1"), "ledger: revert");
    w.push_images();
    w.push();
    d.wait_for("Healthy again", Duration::from_secs(30), |d| {
        d.service("pre", "ledger").is_some_and(|s| s["health"] == "Healthy" && s["sync"] == "Synced")
    });
}

#[test]
fn a_broken_service_fails_alone_and_is_named_in_status_and_metrics() {
    let w = World::new();
    *w.poll_interval.borrow_mut() = "1s".into();
    let d = Daemon::ready(&w);
    w.commit_edit("services/notifier/deploy/service.yaml", |t| t.replace("count: 1", "count: [1"), "notifier: broken");
    let bpg = w.commit_edit("services/bpg/deploy/pre/config.yaml", |t| t.replace("debug", "info"), "bpg: info");
    w.push_images();
    w.push();
    d.wait_for("bpg converges", Duration::from_secs(30), |d| {
        d.service("pre", "bpg").is_some_and(|s| s["commit"] == bpg.as_str() && s["sync"] == "Synced")
    });
    let notifier = d.service("pre", "notifier").unwrap();
    assert_eq!(notifier["sync"], "Unknown", "{notifier:#}");
    assert!(
        notifier["last_error"].as_str().unwrap().contains("services/notifier/deploy/service.yaml:"),
        "{notifier:#}"
    );
    let (_, metrics) = d.get("/metrics");
    assert!(metrics.contains("berth_reconcile_total{env=\"pre\",service=\"notifier\",result=\"failed\"}"), "{metrics}");
    assert!(metrics.contains("service=\"notifier\",commit="), "{metrics}");
    // `berth status`, filtered to the broken service: its row names the file, line and column.
    let url = format!("http://{}", d.metrics);
    let out = w.berth(&["status", "--url", &url, "--env", "pre", "--service", "notifier"]);
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let rows: Vec<&str> = table.lines().skip(1).filter(|l| !l.starts_with('#')).collect();
    assert_eq!(rows.len(), 1, "{table}");
    assert!(table.contains("# pre: account 123456789012, us-east-1"), "{table}");
    assert!(rows[0].starts_with("pre ") && rows[0].contains("services/notifier/deploy/service.yaml:"), "{table}");
    for json in [vec!["--output", "json"], vec!["--json"]] {
        let mut args = vec!["status", "--url", &url, "--service", "bpg"];
        args.extend(json);
        let out = w.berth(&args);
        let status: Value = serde_json::from_slice(&out.stdout).unwrap();
        let envs = status["environments"].as_array().unwrap();
        assert!(
            envs.iter().all(|e| e["services"].as_array().unwrap().iter().all(|s| s["name"] == "bpg")),
            "{status:#}"
        );
    }
}

#[test]
fn metrics_are_strict_openmetrics_with_the_design_families() {
    let w = World::new();
    *w.poll_interval.borrow_mut() = "1s".into();
    let d = Daemon::ready(&w);
    d.cycles_more("pre", 1);
    d.cycles_more("prod", 1);
    // What Prometheus asks for first: OpenMetrics. Without it, the Prometheus text format.
    let accept = [("Accept", "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5".to_string())];
    let (code, text) = http(&d.metrics, "GET", "/metrics", &accept, b"");
    assert_eq!(code, 200);
    assert!(text.trim_end().ends_with("# EOF"), "{text}");
    let (_, plain) = d.get("/metrics");
    assert!(!plain.contains("# EOF") && plain.contains("# TYPE berth_reconcile_total counter"), "{plain}");
    let plain_file = w.path("metrics-0.0.4.txt");
    std::fs::write(&plain_file, &plain).unwrap();
    let families = w.moto.python(&format!(
        "from prometheus_client.parser import text_string_to_metric_families\nprint(len(list(text_string_to_metric_families(open({:?}).read()))))",
        plain_file.to_string_lossy()
    ));
    assert!(families.trim().parse::<usize>().unwrap() > 10, "{families}");
    let file = w.path("metrics.txt");
    std::fs::write(&file, &text).unwrap();
    let parsed = w.moto.python(&format!(
        r#"
import json
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = {{}}
for fam in text_string_to_metric_families(open({:?}).read()):
    out[fam.name] = {{"type": fam.type, "samples": [[s.name, s.labels, s.value] for s in fam.samples]}}
print(json.dumps(out))
"#,
        file.to_string_lossy()
    ));
    let fams: Value = serde_json::from_str(parsed.trim()).unwrap();
    for (name, kind) in [
        ("berth_build_info", "gauge"),
        ("berth_source_info", "gauge"),
        ("berth_git_fetch_duration_seconds", "histogram"),
        ("berth_git_fetch", "counter"),
        ("berth_reconcile_duration_seconds", "histogram"),
        ("berth_reconcile", "counter"),
        ("berth_service_drift", "gauge"),
        ("berth_service_info", "gauge"),
        ("berth_service_last_sync_timestamp_seconds", "gauge"),
        ("berth_aws_requests", "counter"),
        ("berth_aws_unavailable", "gauge"),
        ("process_cpu_seconds", "counter"),
        ("process_resident_memory_bytes", "gauge"),
        ("process_virtual_memory_bytes", "gauge"),
        ("process_start_time_seconds", "gauge"),
        ("process_open_fds", "gauge"),
        ("process_max_fds", "gauge"),
    ] {
        assert_eq!(fams[name]["type"], kind, "{name} in {fams:#}");
    }
    // The daemon's own numbers: tens of MiB resident, started within the last minutes.
    let rss = fams["process_resident_memory_bytes"]["samples"][0][2].as_f64().unwrap();
    assert!(rss > 1e6 && rss < 1e9, "{rss}");
    let samples = |f: &str| fams[f]["samples"].as_array().unwrap().clone();
    let applied = samples("berth_reconcile")
        .iter()
        .filter(|s| s[0] == "berth_reconcile_total" && s[1]["result"] == "applied")
        .count();
    assert_eq!(applied, 7, "4 pre + 3 prod services applied once: {:#}", fams["berth_reconcile"]);
    for s in samples("berth_service_drift") {
        assert_eq!(s[2], 0.0, "{s}");
    }
    let info = samples("berth_service_info");
    assert_eq!(info.len(), 7);
    assert!(info.iter().all(|s| s[1]["sync"] == "Synced" && s[1]["health"] == "Healthy"), "{info:#?}");
    let source = samples("berth_source_info");
    let pre = source.iter().find(|s| s[1]["env"] == "pre").unwrap();
    assert_eq!(pre[1]["commit"], git(&w.repo, &["rev-parse", "develop"]).as_str());
    let aws = samples("berth_aws_requests");
    assert!(
        aws.iter().any(|s| s[1]["api"] == "ecs"
            && s[1]["operation"] == "DescribeServices"
            && s[1]["result"] == "ok"
            && s[1]["region"] == "us-east-1"
            && s[1]["account"] == "123456789012"),
        "{aws:#?}"
    );
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    for s in samples("berth_service_last_sync_timestamp_seconds") {
        assert!((now - s[2].as_f64().unwrap()).abs() < 60.0, "{s}");
    }
}

#[test]
fn sigterm_during_a_rollout_wait_exits_zero_within_the_grace_period() {
    let w = World::new();
    *w.poll_interval.borrow_mut() = "1s".into();
    w.write_config("    rollout: {wait: true, timeout: 10m, poll: 200ms}\n");
    w.proxy.set_rollouts(Rollouts::Stuck);
    let mut d = Daemon::start(&w);
    d.wait_for("a rollout in progress", Duration::from_secs(60), |_| w.proxy.count("CreateService") > 0);
    std::thread::sleep(Duration::from_millis(500));
    let (code, took) = d.terminate();
    assert_eq!(code, Some(0), "{}", d.log());
    assert!(took < Duration::from_secs(30), "{took:?}");
    assert!(d.log().contains("berth daemon stopped"), "{}", d.log());
}

/// Neither listener can be held open: 50 connections that never finish their headers are
/// closed by the daemon (within its 10 s header timeout) while `/metrics` answers
/// throughout; a replayed webhook delivery is answered but not acted on.
#[test]
fn slow_clients_are_cut_off_and_replayed_deliveries_ignored() {
    let w = World::new();
    *w.envs.borrow_mut() = vec!["pre"];
    let d = Daemon::ready(&w);
    let mut slow: Vec<TcpStream> = (0..50)
        .map(|_| {
            let mut c = TcpStream::connect(&d.metrics).unwrap();
            c.write_all(b"GET /metrics HTTP/1.1\r\nHost: berth\r\nX-Slow: ").unwrap();
            c
        })
        .collect();
    let (code, body) = d.get("/metrics");
    assert_eq!(code, 200, "/metrics did not answer beside 50 slow clients");
    assert!(body.contains("berth_build_info"), "{body}");
    for c in &mut slow {
        c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut rest = Vec::new();
        // Closed by the daemon: the read ends (EOF, or a reset) well before 30 s.
        if let Err(e) = c.read_to_end(&mut rest) {
            assert!(
                !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
                "a slow connection was still open after 30 s"
            );
        }
    }
    assert_eq!(d.get("/healthz").0, 200);
    // A delivery sent twice: the second is recognised by its id.
    let body = r#"{"ref":"refs/heads/develop"}"#;
    let headers = vec![
        ("X-GitHub-Event", "push".to_string()),
        ("X-GitHub-Delivery", "0e4b1a2c-replayed".to_string()),
        ("X-Hub-Signature-256", sign(body)),
    ];
    assert_eq!(http(&d.webhook, "POST", "/webhook/github", &headers, body.as_bytes()).0, 202);
    let (code, answer) = http(&d.webhook, "POST", "/webhook/github", &headers, body.as_bytes());
    assert_eq!(code, 200, "{answer}");
    assert!(answer.contains("duplicate"), "{answer}");
    assert!(d.log().contains("replayed webhook delivery ignored"), "{}", d.log());
}

/// SIGHUP reads the config again (as systemd's `ExecReload` sends it), and never stops the
/// daemon: it still serves and polls after it.
#[test]
fn sighup_reloads_the_config_and_the_daemon_keeps_running() {
    let w = World::new();
    *w.envs.borrow_mut() = vec!["pre"];
    let d = Daemon::ready(&w);
    let pid = d.child.as_ref().unwrap().id().to_string();
    assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    d.wait_for("the reload", Duration::from_secs(10), |d| d.log().contains("configuration reloaded"));
    assert!(d.log().contains("SIGHUP: reading the configuration again"), "{}", d.log());
    // The log is a file, not a terminal: no colour codes in it.
    assert!(!d.log().contains('\u{1b}'), "ANSI colour codes in a log file:\n{}", d.log());
    let before = cycles(&d, "pre");
    let body = r#"{"ref":"refs/heads/develop"}"#;
    assert_eq!(d.webhook(body, Some(sign(body))).0, 202);
    d.wait_for("a cycle after the SIGHUP", Duration::from_secs(30), |d| cycles(d, "pre") > before);
    assert_eq!(d.get("/healthz").0, 200);
}

#[test]
fn config_changes_apply_without_restart_and_a_broken_config_is_ignored() {
    let w = World::new();
    *w.poll_interval.borrow_mut() = "10m".into();
    // Start with pre only.
    *w.envs.borrow_mut() = vec!["pre"];
    let d = Daemon::start(&w);
    d.wait_for("pre synced", Duration::from_secs(60), |d| synced(d, "pre", &["ledger"]));
    // A broken config is logged and the running one kept.
    let good = std::fs::read_to_string(&w.config).unwrap();
    assert!(!good.contains("prod:"));
    let tmp = w.config.with_extension("tmp");
    std::fs::write(&tmp, format!("{good}\nbogus_key: 1\n")).unwrap();
    std::fs::rename(&tmp, &w.config).unwrap();
    d.wait_for("the error in the log", Duration::from_secs(10), |d| d.log().contains("the changed config is invalid"));
    assert!(d.log().contains("unknown field `bogus_key`"), "{}", d.log());
    assert_eq!(d.get("/healthz").0, 200);
    // A valid change: shorter poll interval and a new environment.
    *w.poll_interval.borrow_mut() = "1s".into();
    *w.envs.borrow_mut() = vec!["pre", "prod"];
    w.rewrite_config();
    d.wait_for("prod added", Duration::from_secs(30), |d| synced(d, "prod", &["bpg", "klausapproves", "notifier"]));
    assert!(d.log().contains("configuration reloaded"), "{}", d.log());
    // The new interval is in force: a console edit heals without any push or webhook.
    w.console("import boto3; boto3.client('ecs').update_service(cluster='pre', service='ledger', desiredCount=4)");
    d.wait_for("heal at the new interval", Duration::from_secs(8), |_| {
        w.console("import boto3; print(boto3.client('ecs').describe_services(cluster='pre', services=['ledger'])['services'][0]['desiredCount'])").trim() == "1"
    });
}

#[test]
fn cloudwatch_gets_drift_failure_and_degraded_counts_per_service() {
    let w = World::new();
    *w.poll_interval.borrow_mut() = "1s".into();
    *w.envs.borrow_mut() = vec!["pre"];
    let d = {
        let d = Daemon::start(&w);
        *w.top_level.borrow_mut() = format!("{}cloudwatch: {{namespace: Berth}}\n", w.top_level.borrow());
        w.rewrite_config();
        d
    };
    d.wait_for("first sync", Duration::from_secs(60), |d| d.get("/readyz").0 == 200);
    d.wait_for("PutMetricData", Duration::from_secs(20), |_| w.proxy.count("PutMetricData") >= 2);
    let metrics = w.console(
        r#"
import boto3, json
cw = boto3.client("cloudwatch")
seen = set()
for m in cw.list_metrics(Namespace="Berth")["Metrics"]:
    dims = {d["Name"]: d["Value"] for d in m["Dimensions"]}
    seen.add(f'{m["MetricName"]}/{dims["Environment"]}/{dims["Service"]}')
print(json.dumps(sorted(seen)))
"#,
    );
    let seen: Vec<String> = serde_json::from_str(metrics.trim()).unwrap();
    for service in ["bpg", "klausapproves", "ledger", "notifier"] {
        for name in ["Drift", "SyncFailed", "Degraded"] {
            assert!(seen.contains(&format!("{name}/pre/{service}")), "{name}/pre/{service} not in {seen:?}");
        }
    }
}

/// The steady-state cost of a poll, in requests (issue: "prove berth's speed"). With N
/// services converged and nothing changed, a timer poll must cost the minimum: ⌈N/10⌉
/// DescribeServices, ⌈N/50⌉ DescribeScalableTargets, ⌈P/50⌉ DescribeScalingPolicies, and
/// nothing else: task definitions come from the cache, references and images were verified
/// before, and there are no writes. Git: one ref negotiation and no fetch. A webhook for a
/// push that changed nothing costs no AWS request at all, and one that changed one service
/// reads and writes that service only.
#[test]
fn a_poll_of_a_converged_repository_costs_the_minimum_requests() {
    let n: usize = 57;
    let dir = tempfile::tempdir().unwrap();
    for i in 0..n {
        let d = dir.path().join(format!("services/svc{i:02}/deploy/pre"));
        std::fs::create_dir_all(&d).unwrap();
        let scaling = if i % 4 == 0 { "  autoscaling: {resource: cpu, min: 1, max: 3}\n" } else { "  count: 0\n" };
        std::fs::write(
            d.parent().unwrap().join("service.yaml"),
            format!(
                "type: service\nname: svc{i:02}\nspec:\n  image: svc{i:02}\n  resources: {{cpu: 256, memory: 512}}\n{scaling}  environment:\n    - key: DB_PASSWORD\n      value: '{{{{ .Variables[\"db\"] }}}}'\n"
            ),
        )
        .unwrap();
        std::fs::write(d.join("config.yaml"), "secrets:\n  - key: db\n    value: ssm:/pre/klausapproves/db-password\n")
            .unwrap();
    }
    let w = World::with_repo(dir.path());
    *w.envs.borrow_mut() = vec!["pre"];
    // Timer polls 5 s apart; a cycle here takes well under a second, so reading and
    // resetting the counts right after one cycle ends cannot overlap the next.
    *w.poll_interval.borrow_mut() = "5s".into();
    let d = Daemon::start(&w);
    d.wait_for("first sync", Duration::from_secs(120), |d| d.get("/readyz").0 == 200);
    let fetch_head = w.path("work/mirror.git/FETCH_HEAD");
    let fetched_at = std::fs::metadata(&fetch_head).and_then(|m| m.modified()).ok();
    let polls = |d: &Daemon| {
        let (_, m) = d.get("/metrics");
        m.lines()
            .find(|l| l.starts_with("berth_reconcile_duration_seconds_count{env=\"pre\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let next_cycle = |d: &Daemon, seen: &mut u64| {
        d.wait_for("one more cycle", Duration::from_secs(30), |d| polls(d) > *seen);
        *seen = polls(d);
    };
    let mut seen = polls(&d);
    next_cycle(&d, &mut seen);
    w.proxy.reset_counts();
    let policies = n.div_ceil(4); // every fourth service scales
    let minimum: std::collections::BTreeMap<String, u64> = [
        ("DescribeServices".to_string(), n.div_ceil(10) as u64),
        ("DescribeScalableTargets".to_string(), n.div_ceil(50) as u64),
        ("DescribeScalingPolicies".to_string(), policies.div_ceil(50) as u64),
    ]
    .into();
    for round in 0..3 {
        next_cycle(&d, &mut seen);
        let counts = w.proxy.counts();
        let mut sizes = w.proxy.describe_services_sizes();
        w.proxy.reset_counts();
        assert_eq!(counts, minimum, "round {round}: a steady-state poll made other requests\n{}", d.log());
        sizes.sort_unstable_by(|a, b| b.cmp(a)); // batches go out concurrently
        assert_eq!(sizes, vec![10, 10, 10, 10, 10, 7]);
    }
    assert_eq!(std::fs::metadata(&fetch_head).and_then(|m| m.modified()).ok(), fetched_at, "an unchanged poll fetched");
    // Nor does it decode the answers it had already: every service's plan is reused undecoded.
    let log = d.log();
    let last = log.lines().rfind(|l| l.contains("reused from the last reconcile")).unwrap_or_default();
    assert!(last.contains(&format!("plans={n} undecoded={n}")), "a steady poll decoded its answers again: {last}");

    // A webhook for a push that changed nothing here: no AWS request.
    let body = r#"{"ref":"refs/heads/develop"}"#;
    next_cycle(&d, &mut seen);
    w.proxy.reset_counts();
    assert_eq!(d.webhook(body, Some(sign(body))).0, 202);
    next_cycle(&d, &mut seen);
    assert_eq!(w.proxy.counts(), Default::default(), "an empty push cost AWS requests\n{}", d.log());

    // A push that changes one service: only that service is read and written.
    let commit = w.commit_edit("services/svc04/deploy/service.yaml", |t| t.replace("max: 3", "max: 4"), "svc04: max 4");
    w.push_images();
    next_cycle(&d, &mut seen);
    w.proxy.reset_counts();
    w.push();
    assert_eq!(d.webhook(body, Some(sign(body))).0, 202);
    next_cycle(&d, &mut seen);
    let counts = w.proxy.counts();
    assert_eq!(w.proxy.describe_services_sizes(), vec![1], "{counts:?}");
    for op in ["DescribeScalableTargets", "DescribeScalingPolicies", "RegisterTaskDefinition", "UpdateService"] {
        assert_eq!(counts.get(op), Some(&1), "{op} in {counts:?}");
    }
    assert_eq!(counts.get("RegisterScalableTarget"), Some(&1), "{counts:?}");
    // svc04 was in sync with nothing attempted since: no revision to look for first.
    assert_eq!(counts.get("DescribeTaskDefinition"), None, "{counts:?}");
    let status: serde_json::Value = serde_json::from_str(&d.get("/status").1).unwrap();
    let services = status["environments"][0]["services"].as_array().unwrap();
    assert_eq!(services.len(), n, "every service keeps its status");
    for s in services {
        assert_eq!(s["sync"], "Synced", "{s:#}");
        if s["name"] == "svc04" {
            assert_eq!(s["commit"], commit.as_str(), "{s:#}");
        }
    }
}

/// The cycles the daemon has completed for `env` (`berth_reconcile_duration_seconds_count`).
pub(crate) fn cycles(d: &Daemon, env: &str) -> u64 {
    let (_, m) = d.get("/metrics");
    let prefix = format!("berth_reconcile_duration_seconds_count{{env=\"{env}\"}}");
    m.lines().find(|l| l.starts_with(&prefix)).and_then(|l| l.rsplit(' ').next()?.parse().ok()).unwrap_or(0)
}

/// A service whose update failed backs off, and its dependent is skipped; a fix in git is
/// attempted at once (not when the backoff ends), dependents included. (The in-process
/// test in `engine.rs` counts the cycles; this one is the same against moto.)
#[test]
fn a_fix_in_git_ends_the_backoff_at_once() {
    let w = World::new();
    *w.poll_interval.borrow_mut() = "1s".into();
    *w.envs.borrow_mut() = vec!["pre"];
    let d = Daemon::ready(&w);
    // klausapproves depends on bpg; both change, and bpg's update is refused once.
    w.commit_edit("services/bpg/deploy/pre/config.yaml", |t| t.replace("debug", "warn"), "bpg: warn");
    w.commit_edit("services/klausapproves/deploy/service.yaml", |t| t.replace("target: 70", "target: 60"), "k: 60");
    w.push_images();
    w.proxy.inject("UpdateService", Fault::Code("InvalidParameterException"), 1);
    w.push();
    d.wait_for("bpg fails", Duration::from_secs(30), |d| {
        d.service("pre", "bpg").is_some_and(|s| s["last_error"].as_str().is_some_and(|e| e.contains("Invalid")))
    });
    let fix = w.commit_edit("services/bpg/deploy/pre/config.yaml", |t| t.replace("warn", "info"), "bpg: info");
    w.push_images();
    w.push();
    let took = d.wait_for("both applied", Duration::from_secs(30), |d| {
        let synced = |n: &str| d.service("pre", n).is_some_and(|s| s["sync"] == "Synced");
        synced("klausapproves") && d.service("pre", "bpg").is_some_and(|s| s["commit"] == fix.as_str()) && synced("bpg")
    });
    // The first retry after a failed attempt waits at least 5 s; the next poll is 1 s away.
    assert!(took < Duration::from_secs(5), "the fix waited {took:?}\n{}", d.log());
}

/// A rollout that never finishes is watched beside the daemon's cycles: while it runs, a
/// console edit of another service heals at the next poll, the stuck service shows
/// `Progressing`, and nothing is applied to it again.
#[test]
fn a_stuck_rollout_of_one_service_does_not_delay_a_heal_of_another() {
    let w = World::new();
    *w.poll_interval.borrow_mut() = "1s".into();
    *w.envs.borrow_mut() = vec!["pre"];
    w.write_config("    rollout: {wait: true, timeout: 10m, poll: 100ms}\n");
    w.proxy.set_rollouts(Rollouts::Complete);
    let d = Daemon::ready(&w);
    w.proxy.set_rollouts_for("ledger", Rollouts::Stuck);
    let commit =
        w.commit_edit("services/ledger/deploy/service.yaml", |t| t.replace("count: 1", "count: 2"), "ledger: 2");
    w.push_images();
    w.push();
    // The stuck answers make ledger `Progressing` at once; wait for the new commit's apply.
    d.wait_for("ledger rolling out", Duration::from_secs(30), |d| {
        d.service("pre", "ledger")
            .is_some_and(|s| s["health"] == "Progressing" && s["sync"] == "Synced" && s["commit"] == commit.as_str())
    });
    let updates = w.proxy.count("UpdateService");
    w.console("import boto3; boto3.client('ecs').update_service(cluster='pre', service='notifier', desiredCount=5)");
    let healed = d.wait_for("notifier healed", Duration::from_secs(30), |_| {
        w.console("import boto3; print(boto3.client('ecs').describe_services(cluster='pre', services=['notifier'])['services'][0]['desiredCount'])").trim() == "1"
    });
    // The next 1 s poll heals it; the bound leaves room for a loaded machine, and is far
    // below the rollout timeout (10 minutes) that used to come first.
    assert!(healed < Duration::from_secs(15), "healed after {healed:?}\n{}", d.log());
    let written: Vec<_> = w.proxy.bodies("UpdateService").iter().map(|b| b["service"].to_string()).collect();
    assert_eq!(
        w.proxy.count("UpdateService"),
        updates + 1,
        "only notifier's heal is written: {written:?}\n{}",
        d.log()
    );
    let ledger = d.service("pre", "ledger").unwrap();
    assert_eq!(ledger["health"], "Progressing", "{ledger:#}");
}

/// A pre-only daemon (1 s polls, rollouts watched every 100 ms up to `timeout`) with every
/// rollout completing, then ledger's next rollout answered as `ledger`, and a push of a
/// change to ledger; returns the daemon and the commit.
fn ledger_rollout(w: &World, timeout: &str, ledger: Rollouts) -> (Daemon, String) {
    *w.poll_interval.borrow_mut() = "1s".into();
    *w.envs.borrow_mut() = vec!["pre"];
    w.write_config(&format!("    rollout: {{wait: true, timeout: {timeout}, poll: 100ms}}\n"));
    w.proxy.set_rollouts(Rollouts::Complete);
    let d = Daemon::ready(w);
    d.wait_for("ledger healthy", Duration::from_secs(30), |d| {
        d.service("pre", "ledger").is_some_and(|s| s["health"] == "Healthy")
    });
    w.proxy.set_rollouts_for("ledger", ledger);
    let commit =
        w.commit_edit("services/ledger/deploy/service.yaml", |t| t.replace("count: 1", "count: 2"), "ledger: 2");
    w.push_images();
    w.push();
    (d, commit)
}

/// The service's `berth:held` tag on the moto side, or `-`.
fn held_tag(w: &World, service: &str) -> String {
    w.console(&format!(
        "import boto3; e = boto3.client('ecs'); s = e.describe_services(cluster='pre', services=['{service}'], include=['TAGS'])['services'][0]; print({{t['key']: t['value'] for t in s.get('tags', [])}}.get('berth:held', '-'))"
    ))
}

/// The hold of a failed rollout lives on the ECS service (`berth:held`), not in the
/// daemon: a restarted daemon applies nothing to the held service until git changes it.
#[test]
fn a_hold_survives_a_daemon_restart() {
    let w = World::new();
    let (mut d, commit) = ledger_rollout(&w, "10s", Rollouts::Fail);
    d.wait_for("Degraded", Duration::from_secs(30), |d| {
        d.service("pre", "ledger").is_some_and(|s| s["health"] == "Degraded" && s["commit"] == commit.as_str())
    });
    assert_eq!(d.terminate().0, Some(0));
    let tags = held_tag(&w, "ledger");
    assert_ne!(tags.trim(), "-", "no berth:held tag on the service");
    let updates = w.proxy.count("UpdateService");
    let d = Daemon::start(&w);
    d.wait_for("first sync after the restart", Duration::from_secs(60), |d| d.get("/readyz").0 == 200);
    d.cycles_more("pre", 3);
    assert_eq!(w.proxy.count("UpdateService"), updates, "the held spec was applied after a restart\n{}", d.log());
    let s = d.service("pre", "ledger").unwrap();
    // ECS left the failed deployment running, so live equals git: Synced, but Degraded.
    let shown = (s["held"].clone(), s["sync"].clone(), s["health"].clone());
    assert_eq!(shown, (Value::from(true), Value::from("Synced"), Value::from("Degraded")), "{s:#}");
    let diff = w.diff("pre", &[]);
    assert_eq!(diff.status.code(), Some(0), "a held spec equal to live is no drift\n{}", text(&diff));
    assert!(String::from_utf8_lossy(&diff.stdout).contains("will not retry it"), "{}", text(&diff));
    // A new commit to the service ends the hold, and its tag.
    w.proxy.set_rollouts_for("ledger", Rollouts::Complete);
    w.commit_edit("services/ledger/deploy/service.yaml", |t| t.replace("count: 2", "count: 3"), "ledger: 3");
    w.push_images();
    w.push();
    d.wait_for("Healthy again", Duration::from_secs(30), |d| {
        d.service("pre", "ledger").is_some_and(|s| s["health"] == "Healthy" && s["sync"] == "Synced")
    });
    let tags = held_tag(&w, "ledger");
    assert_eq!(tags.trim(), "-", "the hold's tag stayed");
}

/// A daemon restarted while ECS still rolls a service out watches that rollout again: its
/// failure is judged and held as if the daemon had never stopped.
#[test]
fn a_restart_during_a_rollout_resumes_its_watch() {
    let w = World::new();
    let (mut d, commit) = ledger_rollout(&w, "10m", Rollouts::Stuck);
    d.wait_for("ledger rolling out", Duration::from_secs(30), |d| {
        d.service("pre", "ledger").is_some_and(|s| s["health"] == "Progressing" && s["commit"] == commit.as_str())
    });
    assert_eq!(d.terminate().0, Some(0));
    let updates = w.proxy.count("UpdateService");
    let d = Daemon::start(&w);
    d.wait_for("first sync after the restart", Duration::from_secs(60), |d| d.get("/readyz").0 == 200);
    let ledger = d.service("pre", "ledger").unwrap();
    assert_eq!((ledger["sync"].clone(), ledger["health"].clone()), (Value::from("Synced"), Value::from("Progressing")));
    // ECS's circuit breaker now fails the deployment: the resumed watch sees it.
    w.proxy.set_rollouts_for("ledger", Rollouts::Fail);
    d.wait_for("Degraded", Duration::from_secs(30), |d| {
        d.service("pre", "ledger").is_some_and(|s| s["health"] == "Degraded" && s["held"] == true)
    });
    let tags = held_tag(&w, "ledger");
    assert_ne!(tags.trim(), "-", "no berth:held tag on the service\n{}", d.log());
    assert_eq!(w.proxy.count("UpdateService"), updates, "the restart applied the spec again\n{}", d.log());
}

/// A tag environment before its first release is a state, not an error: ready, no fetch
/// error counted, said once in the log, shown as "no release yet".
#[test]
fn no_release_tag_yet_is_a_state_not_an_error() {
    let w = World::new();
    *w.poll_interval.borrow_mut() = "1s".into();
    git(&w.origin, &["tag", "-d", "v1.0.0"]);
    let d = Daemon::ready(&w);
    d.cycles_more("pre", 3);
    let prod = d.status()["environments"].as_array().unwrap().iter().find(|e| e["name"] == "prod").unwrap().clone();
    assert_eq!(prod["no_release"], true, "{prod:#}");
    assert_eq!(prod["last_fetch_error"], Value::Null, "{prod:#}");
    let (_, metrics) = d.get("/metrics");
    assert!(!metrics.contains("berth_git_fetch_total{result=\"error\"}"), "{metrics}");
    // One record per poll of the repository, however many environments it serves.
    let polls = metric_value(&metrics, "berth_git_fetch_total{result=\"ok\"}");
    let observed = metric_value(&metrics, "berth_git_fetch_duration_seconds_count");
    assert_eq!(polls, observed, "{metrics}");
    let cycles = metric_value(&metrics, "berth_reconcile_duration_seconds_count{env=\"pre\"}");
    assert!(polls <= cycles + 1.0, "{polls} polls for {cycles} cycles of pre: one poll is counted once\n{metrics}");
    assert_eq!(d.log().matches("no release tag vX.Y.Z yet").count(), 1, "{}", d.log());
    assert!(!d.log().contains("git poll failed"), "{}", d.log());
}

/// The value of the sample `series` (name and labels as printed) in a metrics page; 0 when absent.
fn metric_value(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .map_or(0.0, |v| v.split_whitespace().next().unwrap_or("0").parse().expect("a number"))
}
