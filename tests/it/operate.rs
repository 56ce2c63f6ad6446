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

/// `berth history` of a service, run from another working directory.
fn history(w: &World, service: &str) -> Vec<Value> {
    let elsewhere = tempfile::tempdir().unwrap();
    let config = w.config.to_string_lossy().into_owned();
    let mut cmd = w.moto.command(env!("CARGO_BIN_EXE_berth"));
    cmd.env_remove("AWS_ENDPOINT_URL").current_dir(elsewhere.path());
    let args = ["history", "--config", &config, "--env", "pre", "--service", service, "--output", "json"];
    let out = cmd.args(args).output().unwrap();
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
    // Scaled to 0 with the count alone (its settings sent again could start a deployment).
    let scaled: Vec<_> =
        w.proxy.bodies("UpdateService").into_iter().filter(|b| b["service"] == "klausapproves").collect();
    assert_eq!(scaled, [serde_json::json!({"cluster": "pre", "service": "klausapproves", "desiredCount": 0})]);
    for s in ["bpg", "ledger", "notifier"] {
        assert_eq!(d.service("pre", s).unwrap()["sync"], "Synced", "{s}");
    }
    assert!(d.log().contains("pruned: its folder is gone from git"), "{}", d.log());
}

/// A request as received: headers (lower-cased; `:request` is the request line) and body.
type Received = (std::collections::BTreeMap<String, String>, Vec<u8>);

/// A local receiver: records every request and answers 201 `{"id": 7}`.
struct Receiver {
    addr: String,
    got: std::sync::Arc<std::sync::Mutex<Vec<Received>>>,
}

impl Receiver {
    fn start() -> Receiver {
        use std::io::{BufRead as _, BufReader, Read as _, Write as _};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = got.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut headers = std::collections::BTreeMap::new();
                let mut line = String::new();
                let _ = reader.read_line(&mut line);
                headers.insert(":request".to_string(), line.trim_end().to_string());
                loop {
                    line.clear();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some((k, v)) = line.trim_end().split_once(':') {
                        headers.insert(k.to_lowercase(), v.trim().to_string());
                    }
                }
                let len = headers.get("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
                let mut body = vec![0; len];
                let _ = reader.read_exact(&mut body);
                sink.lock().unwrap().push((headers, body));
                // A GitHub API answers a new deployment with its id.
                let _ = conn
                    .write_all(b"HTTP/1.1 201 Created\r\nContent-Length: 9\r\nConnection: close\r\n\r\n{\"id\": 7}");
            }
        });
        Receiver { addr, got }
    }

    /// The request lines received (`POST /path HTTP/1.1`) with their Authorization.
    fn requests(&self) -> Vec<(String, String)> {
        let got = self.got.lock().unwrap();
        got.iter().map(|(h, _)| (h[":request"].clone(), h.get("authorization").cloned().unwrap_or_default())).collect()
    }

    /// The events received, each checked against its signature.
    fn events(&self) -> Vec<Value> {
        use hmac::{KeyInit as _, Mac as _};
        let got = self.got.lock().unwrap();
        got.iter()
            .map(|(headers, body)| {
                let mut mac =
                    hmac::Hmac::<sha2::Sha256>::new_from_slice(crate::daemon::HOOK_SECRET.as_bytes()).unwrap();
                mac.update(body);
                let want = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
                assert_eq!(headers.get("x-berth-signature-256"), Some(&want), "a bad signature");
                let text = String::from_utf8_lossy(body);
                for v in crate::support::world::SECRET_VALUES {
                    assert!(!text.contains(v), "secret value in a notification: {text}");
                }
                serde_json::from_slice(body).unwrap()
            })
            .collect()
    }

    fn has(&self, event: &str, service: &str) -> bool {
        self.events().iter().any(|e| e["event"] == event && e["service"] == service)
    }
}

/// Notifications: a local receiver gets applied, healed and failed events, each signed;
/// a sink that is down and one that never answers delay no reconcile, and the slow one's
/// full queue drops its oldest notices (counted).
#[test]
fn notifications_are_signed_and_a_dead_sink_delays_nothing() {
    let w = world();
    let good = Receiver::start();
    let github = Receiver::start();
    let down = crate::support::moto::free_port();
    // Accepts connections (the kernel's backlog) and never answers.
    let stuck = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let stuck_addr = stuck.local_addr().unwrap();
    let base = w.top_extra.borrow().clone();
    *w.top_extra.borrow_mut() = format!(
        "{base}notifications:\n  - {{type: webhook, name: good, url: \"http://{}/hook\", secret_env: BERTH_TEST_HOOK_SECRET}}\n  - {{type: webhook, name: down, url: \"http://127.0.0.1:{down}/\"}}\n  - {{type: webhook, name: slow, url: \"http://{stuck_addr}/\", queue: 2, envs: [pre]}}\n  - {{type: github, token_env: BERTH_TEST_GITHUB_TOKEN, repo: acme/monorepo, api_url: \"http://{}\", events: [applied, failed]}}\n",
        good.addr, github.addr
    );
    w.rewrite_config();
    let d = Daemon::ready(&w);
    d.wait_for("applied events", LIMIT, |_| good.has("applied", "ledger"));
    // A console edit is healed at the next poll (1 s) while two sinks hang or fail.
    w.console("import boto3; boto3.client('ecs').update_service(cluster='pre', service='notifier', desiredCount=4)");
    let started = Instant::now();
    d.wait_for("healed", LIMIT, |_| desired_count(&w, "notifier") == 1);
    eprintln!("notifications: a heal with a dead and a stuck sink took {} ms", started.elapsed().as_millis());
    d.wait_for("healed event", LIMIT, |_| good.has("drift_healed", "notifier"));
    let healed = good.events().into_iter().find(|e| e["event"] == "drift_healed").unwrap();
    assert_eq!(healed["fields"], serde_json::json!(["service.desiredCount"]), "{healed}");
    // A failure.
    w.proxy.inject("UpdateService", Fault::Code("InvalidParameterException"), 4);
    w.commit_edit("services/ledger/deploy/service.yaml", |t| t.replace("count: 1", "count: 2"), "ledger: 2");
    w.push_images();
    w.push();
    d.wait_for("failed event", LIMIT, |_| good.has("failed", "ledger"));
    d.wait_for("dropped counted", LIMIT, |d| {
        d.get("/metrics")
            .1
            .lines()
            .any(|l| l.starts_with("berth_notifications_total{sink=\"slow\",result=\"dropped\"}") && !l.ends_with(" 0"))
    });
    let (_, metrics) = d.get("/metrics");
    assert!(metrics.contains("berth_notifications_total{sink=\"good\",result=\"sent\"}"), "{metrics}");
    // GitHub: a commit status and a deployment (with its status) per apply, authenticated.
    let calls = github.requests();
    let commit = crate::support::world::git(&w.repo, &["log", "-1", "--format=%H", "--", "services/bpg"]);
    let status = format!("POST /repos/acme/monorepo/statuses/{commit} HTTP/1.1");
    assert!(calls.iter().any(|(r, _)| *r == status), "{calls:#?}");
    assert!(calls.iter().any(|(r, _)| r == "POST /repos/acme/monorepo/deployments HTTP/1.1"), "{calls:#?}");
    assert!(calls.iter().any(|(r, _)| r == "POST /repos/acme/monorepo/deployments/7/statuses HTTP/1.1"), "{calls:#?}");
    assert!(calls.iter().all(|(_, auth)| auth == "Bearer github-test-token"), "{calls:#?}");
    drop(stuck);
}

/// Removing the newest release tag rolls prod back to the newest remaining release, said
/// out loud: a log line, and each apply in history with the trigger `release_tag_removed`.
#[test]
fn removing_the_newest_release_tag_rolls_prod_back_explicitly() {
    let w = World::new();
    *w.poll_interval.borrow_mut() = "1s".into();
    *w.envs.borrow_mut() = vec!["prod"];
    *w.top_extra.borrow_mut() = "state: {table: berth-state}\n".into();
    w.rewrite_config();
    let d = Daemon::ready(&w);
    let running =
        |d: &Daemon| d.service("prod", "notifier").and_then(|s| s["task_definition"].as_str().map(str::to_string));
    d.wait_for("v1.0.0 deployed", LIMIT, |d| running(d).is_some());
    let first = running(&d).unwrap();
    w.commit_edit(
        "services/notifier/deploy/service.yaml",
        |t| t.replace("value: debug", "value: info"),
        "notifier: info",
    );
    git(&w.repo, &["tag", "v1.1.0"]);
    w.push_images();
    w.push();
    d.wait_for("v1.1.0 deployed", LIMIT, |d| running(d).is_some_and(|r| r != first));
    git(&w.repo, &["tag", "-d", "v1.1.0"]);
    git(&w.origin, &["tag", "-d", "v1.1.0"]);
    d.wait_for("back on v1.0.0", LIMIT, |d| running(d).as_deref() == Some(first.as_str()));
    assert!(d.log().contains("the newest release tag was removed"), "{}", d.log());
    let config = w.config.to_string_lossy().into_owned();
    let out = w.berth(&["history", "--config", &config, "--env", "prod", "--service", "notifier", "--output", "json"]);
    let entries: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(entries[0]["trigger"]["kind"], "release_tag_removed", "{entries:#?}");
    assert_eq!(entries[0]["trigger"]["from"], "v1.1.0", "{entries:#?}");
}

/// A rollback returns to its revision's scaling too (from history), and names the
/// services that depend on the one rolled back.
#[test]
fn a_rollback_restores_scaling_and_names_dependents() {
    let w = world();
    let d = Daemon::ready(&w);
    let max = || {
        w.console(
            "import boto3; print(boto3.client('application-autoscaling').describe_scalable_targets(ServiceNamespace='ecs', ResourceIds=['service/pre/bpg'])['ScalableTargets'][0]['MaxCapacity'])",
        )
        .trim()
        .to_string()
    };
    assert_eq!(max(), "6");
    let bad = w.commit_edit("services/bpg/deploy/service.yaml", |t| t.replace("max: 6", "max: 9"), "bpg: max 9");
    w.push_images();
    w.push();
    d.wait_for("the bad commit deployed", LIMIT, |d| synced_at(d, "bpg", &bad));
    assert_eq!((running(&w, "bpg"), max()), ("bpg-pre:2".to_string(), "9".to_string()));
    let repo = w.repo.to_string_lossy().into_owned();
    let out = cli(&w, &["rollback", "bpg", "--repo", &repo]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("scaling restored to min 2, max 6"), "{stdout}");
    assert!(stdout.contains("note: klausapproves depend on bpg"), "{stdout}");
    assert_eq!((running(&w, "bpg"), max()), ("bpg-pre:1".to_string(), "6".to_string()));
    d.cycles_more("pre", 2);
    assert_eq!(max(), "6", "the daemon undid the rollback's scaling");
}
