//! The daemon loop in-process, on paused time, over the in-memory port
//! ([`crate::support::cloud`]) and a real git repository: what the scheduler does when
//! writes fail, images are missing and rollouts hang, counted in cycles, not seconds.

use std::sync::Arc;
use std::time::Duration;

use berth::core::config::Config;
use berth::engine::daemon::{Daemon, Shared};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::support::cloud::{ConnectFake, FakeCloud};
use crate::support::fixture;
use crate::support::world::git;

const POLL: Duration = Duration::from_secs(30);

struct Harness {
    shared: Arc<Shared>,
    cloud: Arc<FakeCloud>,
    cancel: CancellationToken,
    repo: std::path::PathBuf,
    origin: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Harness {
    /// The fixture monorepo on `develop`, and a daemon for `pre` polling it every 30 s; the
    /// test runs `body` beside the daemon (on the test's one thread).
    async fn run<F: std::future::Future<Output = ()>>(rollout: &str, body: impl FnOnce(Arc<Harness>) -> F) {
        Harness::run_with(rollout, "", "", body).await
    }

    /// [`Self::run`], with `env_extra` under `environments.pre` and `extra` at the top of
    /// the agent config.
    async fn run_with<F: std::future::Future<Output = ()>>(
        rollout: &str,
        env_extra: &str,
        extra: &str,
        body: impl FnOnce(Arc<Harness>) -> F,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("monorepo");
        copy(&fixture("monorepo"), &repo);
        git(&repo, &["init", "-q", "-b", "develop"]);
        git(&repo, &["add", "-A"]);
        git(&repo, &["commit", "-q", "-m", "services"]);
        let origin = dir.path().join("origin.git");
        git(dir.path(), &["clone", "-q", "--bare", &repo.to_string_lossy(), &origin.to_string_lossy()]);
        git(&repo, &["remote", "add", "origin", &origin.to_string_lossy()]);
        let text = format!(
            "repo:\n  url: file://{}\n  workdir: {}\n  poll_interval: 30s\naws:\n  region: us-east-1\n  account_id: \"123456789012\"\n  registry: 123456789012.dkr.ecr.us-east-1.amazonaws.com\nenvironments:\n  pre:\n    source: {{branch: develop}}\n    cluster: pre\n    rollout: {rollout}\n    defaults:\n      execution_role: arn:aws:iam::123456789012:role/ecs-execution-{{env}}\n      subnets: [subnet-1]\n      security_groups: [sg-1]\n{env_extra}concurrency: 4\n{extra}",
            origin.display(),
            dir.path().join("work").display()
        );
        let config = Config::parse("berth.yaml", &text).expect("a valid config");
        let shared = Shared::new(Arc::new(config));
        let cloud = Arc::new(FakeCloud::default());
        let cancel = CancellationToken::new();
        let (_tx, reloads) = tokio::sync::mpsc::channel::<Arc<Config>>(1);
        let daemon =
            Daemon { shared: shared.clone(), cancel: cancel.clone(), reloads, connect: ConnectFake(cloud.clone()) };
        let h = Arc::new(Harness { shared, cloud, cancel, repo, origin, _dir: dir });
        let test = async {
            h.wait("first sync", |h| h.shared.ready()).await;
            body(h.clone()).await;
        };
        tokio::select! {
            result = daemon.run() => panic!("the daemon stopped: {result:?}"),
            () = test => {}
        }
        drop(_tx);
    }

    /// Cycles completed (`berth_reconcile_duration_seconds_count{env="pre"}`).
    fn cycles(&self) -> u64 {
        let text = self.shared.metrics_text();
        let line = text.lines().find(|l| l.starts_with("berth_reconcile_duration_seconds_count{env=\"pre\"}"));
        line.and_then(|l| l.rsplit(' ').next()?.parse().ok()).unwrap_or(0)
    }

    fn service(&self, name: &str) -> Value {
        let status = serde_json::to_value(self.shared.status()).unwrap();
        let pre = status["environments"].as_array().unwrap().iter().find(|e| e["name"] == "pre").cloned();
        let services = pre.map(|e| e["services"].clone()).unwrap_or_default();
        services.as_array().and_then(|s| s.iter().find(|x| x["name"] == name).cloned()).unwrap_or_default()
    }

    /// Waits (in virtual time, up to ten poll intervals) until `cond` holds.
    async fn wait(&self, what: &str, cond: impl Fn(&Harness) -> bool) -> Duration {
        let start = tokio::time::Instant::now();
        while !cond(self) {
            assert!(
                start.elapsed() < POLL * 10,
                "timed out waiting for {what}: {:#}",
                serde_json::to_value(self.shared.status()).unwrap()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        start.elapsed()
    }

    /// Waits for `n` more completed cycles.
    async fn cycles_more(&self, n: u64) {
        let target = self.cycles() + n;
        self.wait("more cycles", |h| h.cycles() >= target).await;
    }

    /// Commits an edit and pushes it, then tells the daemon (as a webhook would).
    fn push(&self, rel: &str, edit: impl FnOnce(String) -> String) -> String {
        let path = self.repo.join(rel);
        std::fs::write(&path, edit(std::fs::read_to_string(&path).unwrap())).unwrap();
        git(&self.repo, &["commit", "-q", "-am", "edit"]);
        git(&self.repo, &["push", "-q", "--force", "origin", "develop"]);
        let _ = &self.origin;
        self.shared.trigger(["pre".to_string()]);
        git(&self.repo, &["rev-parse", "HEAD"])
    }
}

impl Harness {
    /// Removes a folder in git, pushes, and tells the daemon.
    fn remove(&self, rel: &str) -> String {
        git(&self.repo, &["rm", "-r", "-q", rel]);
        git(&self.repo, &["commit", "-q", "-m", "remove"]);
        git(&self.repo, &["push", "-q", "--force", "origin", "develop"]);
        self.shared.trigger(["pre".to_string()]);
        git(&self.repo, &["rev-parse", "HEAD"])
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

fn copy(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

fn synced_at(h: &Harness, name: &str, commit: &str) -> bool {
    let s = h.service(name);
    s["sync"] == "Synced" && s["commit"] == commit
}

/// (a) A service whose update failed backs off; a fix in git is attempted in the very next
/// cycle, and so is the dependent that was skipped because of it.
#[tokio::test(start_paused = true)]
async fn a_fix_in_git_ends_the_backoff_at_once_dependents_included() {
    Harness::run("{wait: false}", |h| async move {
        h.cloud.state.lock().unwrap().failing.insert("bpg".into());
        // klausapproves depends on bpg: both change.
        h.push("services/bpg/deploy/pre/config.yaml", |t| t.replace("debug", "warn"));
        let broken = h.push("services/klausapproves/deploy/service.yaml", |t| t.replace("target: 70", "target: 60"));
        h.wait("bpg fails", |h| h.service("bpg")["last_error"].as_str().is_some_and(|e| e.contains("injected 503")))
            .await;
        h.wait("klausapproves skipped", |h| {
            h.service("klausapproves")["last_error"].as_str().is_some_and(|e| e.contains("dependency bpg"))
        })
        .await;
        assert!(!synced_at(&h, "klausapproves", &broken));
        // The fix: AWS accepts the write again and git changes bpg.
        h.cloud.state.lock().unwrap().failing.clear();
        let fixed = h.push("services/bpg/deploy/pre/config.yaml", |t| t.replace("warn", "info"));
        let before = h.cycles();
        let took = h
            .wait("both applied", |h| synced_at(h, "bpg", &fixed) && h.service("klausapproves")["sync"] == "Synced")
            .await;
        assert!(h.cycles() <= before + 1, "took {} cycles", h.cycles() - before);
        assert!(took < Duration::from_secs(5), "the fix waited {took:?} (the backoff was at least 5 s)");
    })
    .await;
}

/// (a2) With one service waiting for its image after a failure, ten poll intervals make at
/// most ten cycles plus the one retry its failure scheduled.
#[tokio::test(start_paused = true)]
async fn a_service_waiting_for_its_image_costs_no_extra_cycles() {
    Harness::run("{wait: false}", |h| async move {
        h.cloud.state.lock().unwrap().failing.insert("ledger".into());
        h.push("services/ledger/deploy/service.yaml", |t| t.replace("count: 1", "count: 2"));
        h.wait("ledger fails", |h| h.service("ledger")["last_error"].as_str().is_some_and(|e| e.contains("503"))).await;
        {
            let mut s = h.cloud.state.lock().unwrap();
            s.failing.clear();
            s.missing_images.insert("ledger".into());
        }
        h.push("services/ledger/deploy/service.yaml", |t| t.replace("count: 2", "count: 3"));
        h.wait("ledger waits", |h| h.service("ledger")["last_error"].as_str().is_some_and(|e| e.contains("waiting")))
            .await;
        let before = h.cycles();
        tokio::time::sleep(POLL * 10).await;
        let ran = h.cycles() - before;
        assert!((9..=11).contains(&ran), "{ran} cycles in ten poll intervals");
        assert!(h.cloud.calls("Verify") < 40, "{} verifications", h.cloud.calls("Verify"));
    })
    .await;
}

/// (a3) A rollout that never finishes does not delay the heal of another service's console
/// edit: the next poll heals it, while the stuck one stays Progressing and is not applied
/// again.
#[tokio::test(start_paused = true)]
async fn a_stuck_rollout_does_not_delay_a_heal_elsewhere() {
    Harness::run("{wait: true, timeout: 10m, poll: 5s}", |h| async move {
        h.cloud.state.lock().unwrap().stuck.insert("ledger".into());
        h.push("services/ledger/deploy/service.yaml", |t| t.replace("count: 1", "count: 2"));
        h.wait("ledger rolling out", |h| h.service("ledger")["health"] == "Progressing").await;
        let updates = h.cloud.calls("UpdateService");
        h.cloud.set_desired_count("notifier", 7);
        let took = h.wait("notifier healed", |h| h.cloud.desired_count("notifier") == Some(1)).await;
        assert!(took <= POLL + Duration::from_secs(1), "healed after {took:?}");
        assert_eq!(h.cloud.calls("UpdateService"), updates + 1, "only the heal was written");
        h.cycles_more(2).await;
        eprintln!(
            "cycles {} describe {} verify {}",
            h.cycles(),
            h.cloud.calls("DescribeServices"),
            h.cloud.calls("Verify")
        );
        assert_eq!(h.service("ledger")["health"], "Progressing");
        assert_eq!(h.cloud.calls("UpdateService"), updates + 1, "the stuck rollout was not applied again");
    })
    .await;
}

/// The watches of one commit's rollouts share their reads: four services rolling out at
/// once cost one DescribeServices per `rollout.poll`, not four.
#[tokio::test(start_paused = true)]
async fn rollout_watches_share_their_reads() {
    Harness::run("{wait: true, timeout: 10m, poll: 5s}", |h| async move {
        let names = ["bpg", "klausapproves", "ledger", "notifier"];
        h.cloud.state.lock().unwrap().stuck.extend(names.map(String::from));
        // One commit that changes every service (a new image tag for each).
        for n in names {
            let path = h.repo.join(format!("services/{n}/deploy/service.yaml"));
            let text = std::fs::read_to_string(&path).unwrap();
            std::fs::write(&path, format!("{text}# rebuilt\n")).unwrap();
        }
        h.push("services/bpg/deploy/service.yaml", |t| t);
        h.wait("every service rolling out", |h| names.iter().all(|n| h.service(n)["health"] == "Progressing")).await;
        let (reads, cycles) = (h.cloud.calls("DescribeServices"), h.cycles());
        tokio::time::sleep(Duration::from_secs(20)).await;
        let (reads, cycles) = (h.cloud.calls("DescribeServices") - reads, h.cycles() - cycles);
        // Three or four polls of the watches (a poll is 5 s plus the reader's gathering),
        // plus one read per cycle; unbatched, it would be four times as many.
        assert!(reads <= 5 + cycles, "{reads} reads in 20 s of four stuck rollouts ({cycles} cycles)");
        assert!(reads >= 3, "the watches did not read: {reads}");
    })
    .await;
}

/// A push to a service whose dependency is still rolling out (applied by the push just
/// before) waits for that rollout, and is applied as soon as it ends.
#[tokio::test(start_paused = true)]
async fn a_push_waits_for_a_watched_rollout_of_its_dependency() {
    Harness::run("{wait: true, timeout: 10m, poll: 5s}", |h| async move {
        let with_dependency = |t: String| t.replace("spec:\n", "spec:\n  dependencies: {services: [ledger]}\n");
        let first = h.push("services/notifier/deploy/service.yaml", with_dependency);
        h.wait("notifier depends on ledger", |h| synced_at(h, "notifier", &first)).await;
        h.cloud.state.lock().unwrap().stuck.insert("ledger".into());
        h.push("services/ledger/deploy/service.yaml", |t| t.replace("count: 1", "count: 2"));
        h.wait("ledger applied", |h| h.cloud.desired_count("ledger") == Some(2)).await;
        let updates = h.cloud.calls("UpdateService");
        let commit = h.push("services/notifier/deploy/service.yaml", |t| t.replace("count: 1", "count: 2"));
        h.wait("notifier waits", |h| {
            h.service("notifier")["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("waiting for the rollout of ledger"))
        })
        .await;
        assert_eq!(h.cloud.calls("UpdateService"), updates, "notifier was applied during ledger's rollout");
        h.cloud.state.lock().unwrap().stuck.clear();
        h.wait("notifier applied", |h| synced_at(h, "notifier", &commit)).await;
    })
    .await;
}

/// AWS gone for a while, then back with its state lost: one outage for the environment
/// (readiness and the status say so, nothing backs off), and every service re-created at
/// the first poll after AWS answers again.
#[tokio::test(start_paused = true)]
async fn an_aws_outage_is_one_failure_and_lost_state_is_recreated_at_the_next_poll() {
    Harness::run("{wait: false}", |h| async move {
        h.cloud.state.lock().unwrap().down = true;
        h.wait("the outage noticed", |h| h.shared.not_ready().is_some_and(|r| r.contains("AWS does not answer"))).await;
        let status = serde_json::to_value(h.shared.status()).unwrap();
        assert!(status["environments"][0]["aws_unavailable"].as_str().is_some_and(|e| e.contains("503")), "{status:#}");
        assert!(h.shared.metrics_text().contains("berth_aws_unavailable{env=\"pre\"} 1"));
        // A few polls into the outage, no service is backing off.
        h.cycles_more(3).await;
        for name in ["bpg", "klausapproves", "ledger", "notifier"] {
            let error = h.service(name)["last_error"].as_str().unwrap_or_default().to_string();
            assert!(!error.contains("backing off"), "{name}: {error}");
        }
        // Back, with every service gone.
        {
            let mut s = h.cloud.state.lock().unwrap();
            s.services.clear();
            s.down = false;
        }
        let took = h
            .wait("every service re-created", |h| {
                ["bpg", "klausapproves", "ledger", "notifier"].iter().all(|n| h.cloud.desired_count(n).is_some())
                    && h.shared.ready()
            })
            .await;
        assert!(took <= POLL + Duration::from_secs(1), "re-created after {took:?}");
        assert!(h.shared.metrics_text().contains("berth_aws_unavailable{env=\"pre\"} 0"));
    })
    .await;
}

/// A paused service's drift is reported and not healed while every other service goes on;
/// after resume it is healed. The heal's history entry names the field it put back.
#[tokio::test(start_paused = true)]
async fn a_paused_service_keeps_its_drift_until_resumed() {
    Harness::run_with("{wait: false}", "", "state: {table: berth-state}\n", |h| async move {
        h.cloud.set_tag("notifier", "berth:paused", Some("by=ops at=2026-12-01T10:00:00Z reason=incident 42"));
        h.cloud.set_desired_count("notifier", 7);
        h.cloud.set_desired_count("ledger", 5);
        h.wait("ledger healed", |h| h.cloud.desired_count("ledger") == Some(1)).await;
        h.cycles_more(1).await;
        let s = h.service("notifier");
        assert_eq!((s["health"].as_str(), s["sync"].as_str()), (Some("Paused"), Some("OutOfSync")), "{s}");
        assert_eq!(s["paused"]["reason"], "incident 42");
        assert_eq!(s["drift"], serde_json::json!(["service.desiredCount"]));
        assert_eq!(h.cloud.desired_count("notifier"), Some(7), "a paused service was healed");
        assert!(h.shared.metrics_text().contains("berth_service_paused{env=\"pre\",service=\"notifier\"} 1"));
        h.cloud.set_tag("notifier", "berth:paused", None);
        h.wait("notifier healed after resume", |h| h.cloud.desired_count("notifier") == Some(1)).await;
        let heals: Vec<_> = h.cloud.history().into_iter().filter(|e| e["trigger"]["kind"] == "drift_heal").collect();
        let names: Vec<&str> = heals.iter().filter_map(|e| e["service"].as_str()).collect();
        assert_eq!(names, ["ledger", "notifier"], "{heals:?}");
        assert_eq!(heals[0]["trigger"]["fields"], serde_json::json!(["service.desiredCount"]));
        assert_eq!(heals[0]["result"], "applied");
        assert_eq!(h.service("notifier")["last_change"]["trigger"]["kind"], "drift_heal");
    })
    .await;
}

/// A pin holds off the spec git wanted at the rollback (no UpdateService for the service
/// over several polls, while another service converges); a new spec in git ends it.
#[tokio::test(start_paused = true)]
async fn a_pin_holds_until_git_changes_the_service() {
    Harness::run("{wait: false}", |h| async move {
        let first = h.cloud.running("ledger").unwrap().arn.clone();
        h.push("services/ledger/deploy/service.yaml", |t| t.replace("count: 1", "count: 2"));
        h.wait("ledger at revision 2", |h| h.cloud.running("ledger").is_some_and(|t| t.arn != first)).await;
        let hash = h.cloud.tag_of("ledger", "berth:spec-hash").unwrap();
        // What `berth rollback` leaves: the earlier revision, pinned at git's spec.
        h.cloud.set_tag(
            "ledger",
            "berth:pinned",
            Some(&format!("spec={hash} rev=ledger-pre:1 at=2026-12-01T10:00:00Z by=ops")),
        );
        h.cloud.set_task_definition("ledger", &first);
        let updates = h.cloud.calls("UpdateService");
        h.cloud.set_desired_count("notifier", 3);
        h.wait("notifier healed", |h| h.cloud.desired_count("notifier") == Some(1)).await;
        tokio::time::sleep(POLL * 3).await;
        h.cycles_more(1).await;
        assert_eq!(h.cloud.calls("UpdateService"), updates + 1, "only notifier's heal was written");
        assert_eq!(h.cloud.running("ledger").unwrap().arn, first);
        let s = h.service("ledger");
        assert_eq!(s["health"], "Pinned", "{s}");
        assert_eq!(s["pinned"]["revision"], "ledger-pre:1");
        // A fix in git: deployed, and the pin is over.
        h.push("services/ledger/deploy/service.yaml", |t| t.replace("count: 2", "count: 3"));
        h.wait("ledger deployed", |h| h.service("ledger")["health"] == "Healthy").await;
        assert_ne!(h.cloud.running("ledger").unwrap().arn, first);
        assert_eq!(h.cloud.tag_of("ledger", "berth:pinned"), None);
    })
    .await;
}

/// A service whose folder is gone is pruned (scaled to zero, its scaling removed, deleted)
/// when the environment prunes; deleting every folder prunes nothing and says why.
#[tokio::test(start_paused = true)]
async fn pruning_removes_only_orphans_and_never_everything() {
    Harness::run_with("{wait: false}", "    prune: true\n    prune_limit: 50%\n", "", |h| async move {
        assert!(h.cloud.exists("pre", "notifier"));
        h.remove("services/notifier");
        h.wait("notifier pruned", |h| !h.cloud.exists("pre", "notifier")).await;
        assert_eq!(h.cloud.calls("DeleteService"), 1);
        for s in ["bpg", "klausapproves", "ledger"] {
            assert!(h.cloud.exists("pre", s), "{s} was deleted");
        }
        h.cycles_more(1).await;
        assert_eq!(h.service("notifier"), Value::Null, "a pruned service leaves the status");
        // Every folder gone: nothing is deleted, and the status says why.
        h.remove("services");
        h.wait("orphans reported", |h| h.service("ledger")["health"] == "Orphaned").await;
        let why = h.service("ledger")["last_error"].as_str().unwrap_or_default().to_string();
        assert!(why.contains("git has no services at all"), "{why}");
        assert_eq!(h.cloud.calls("DeleteService"), 1);
        assert!(h.shared.metrics_text().contains("berth_service_orphaned{env=\"pre\",service=\"ledger\"} 1"));
    })
    .await;
}

/// Without `prune`, an orphan is only reported, and more orphans than `prune_limit` allows
/// are not pruned at all.
#[tokio::test(start_paused = true)]
async fn orphans_are_reported_and_the_prune_limit_holds() {
    Harness::run_with("{wait: false}", "    prune: true\n    prune_limit: 1\n", "", |h| async move {
        git(&h.repo, &["rm", "-r", "-q", "services/notifier"]);
        h.remove("services/ledger");
        h.wait("orphans reported", |h| h.service("ledger")["health"] == "Orphaned").await;
        let why = h.service("notifier")["last_error"].as_str().unwrap_or_default().to_string();
        assert!(why.contains("more than prune_limit allows"), "{why}");
        assert_eq!(h.cloud.calls("DeleteService"), 0);
        // Shown until a commit removes another service (orphans are looked for then).
        h.cycles_more(2).await;
        assert_eq!(h.service("notifier")["health"], "Orphaned");
    })
    .await;
}

/// `tasks.before_deploy`: the new revision runs the command as a task before the service
/// moves; exit 0 lets the update go on and is recorded on the service, so a retry of the
/// same spec (its update failed) does not run it again; exit 1 stops the apply with the exit
/// code named and no UpdateService.
#[tokio::test(start_paused = true)]
async fn a_before_deploy_task_gates_the_update_and_runs_once_per_spec() {
    Harness::run("{wait: false, poll: 1s}", |h| async move {
        let task = "  tasks:\n    before_deploy: {command: [./migrate, up], timeout: 5m}\n";
        h.cloud.state.lock().unwrap().task_exit = Some(0);
        h.cloud.state.lock().unwrap().failing.insert("ledger".into());
        let updates = h.cloud.calls("UpdateService");
        let commit = h
            .push("services/ledger/deploy/service.yaml", |t| t.replace("  count: 1\n", &format!("  count: 1\n{task}")));
        h.wait("the task ran", |h| h.cloud.state.lock().unwrap().tasks.len() == 1).await;
        h.wait("the update failed", |h| h.service("ledger")["health"] == "Unknown").await;
        let (td, command) = h.cloud.state.lock().unwrap().tasks[0].clone();
        assert_eq!(command, ["./migrate", "up"]);
        assert!(td.ends_with("task-definition/ledger-pre:2"), "the new revision runs it: {td}");
        let spec_hash = h.service("ledger")["spec_hash"].as_str().unwrap().to_string();
        assert_eq!(h.cloud.tag_of("ledger", "berth:before-deploy"), Some(spec_hash.clone()));
        // The update works again: the retry of this spec updates without a second task.
        h.cloud.state.lock().unwrap().failing.clear();
        h.wait("ledger synced", |h| synced_at(h, "ledger", &commit)).await;
        assert_eq!(h.cloud.state.lock().unwrap().tasks.len(), 1, "the task ran again for the same spec");
        assert!(h.cloud.calls("UpdateService") > updates);

        // A new spec whose task fails: no UpdateService, the exit code in the status.
        h.cloud.state.lock().unwrap().task_exit = Some(1);
        let updates = h.cloud.calls("UpdateService");
        let running = h.cloud.running("ledger").unwrap().arn.clone();
        h.push("services/ledger/deploy/service.yaml", |t| t.replace("./migrate, up", "./migrate, up, --all"));
        h.wait("the failing task", |h| {
            h.service("ledger")["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("before-deploy task") && e.contains("exited 1"))
        })
        .await;
        assert_eq!(h.cloud.calls("UpdateService"), updates, "a failed before-deploy task let the update through");
        assert_eq!(h.cloud.running("ledger").unwrap().arn, running);
    })
    .await;
}
