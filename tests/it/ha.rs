//! Two replicas on one config, against moto: leader election on DynamoDB (`ha:`).

use std::time::{Duration, Instant};

use crate::daemon::Daemon;
use crate::support::proxy::{Fault, Proxy};
use crate::support::world::World;

const LIMIT: Duration = Duration::from_secs(40);
const LEASE: Duration = Duration::from_secs(3);

fn world() -> World {
    let w = World::new();
    *w.poll_interval.borrow_mut() = "1s".into();
    *w.envs.borrow_mut() = vec!["pre"];
    *w.top_extra.borrow_mut() = "ha: {table: berth-leases, lease: 3s}\n".into();
    w.rewrite_config();
    w
}

fn role(d: &Daemon) -> String {
    let (code, body) = d.get("/readyz");
    if code != 200 { format!("not ready ({code})") } else { body.trim().to_string() }
}

fn all_synced(d: &Daemon) -> bool {
    ["bpg", "klausapproves", "ledger", "notifier"]
        .iter()
        .all(|n| d.service("pre", n).is_some_and(|s| s["sync"] == "Synced"))
}

fn leads(d: &Daemon) -> bool {
    role(d).contains("leader of pre")
}

fn synced_at(d: &Daemon, service: &str, commit: &str) -> bool {
    d.service("pre", service).is_some_and(|s| s["commit"] == commit && s["sync"] == "Synced")
}

/// Change one service in git and push; the commit.
fn change(w: &World, service: &str, n: u32) -> String {
    let c =
        w.commit_edit(&format!("services/{service}/deploy/service.yaml"), |t| format!("{t}# change {n}\n"), "change");
    w.push_images();
    w.push();
    c
}

/// Two daemons on the same config: one leads, the other reports. Over several commits each
/// changed service gets exactly one RegisterTaskDefinition and one UpdateService (counted
/// on the moto side); both serve `/status`. The lease costs one DynamoDB request per
/// replica per third of the lease.
#[test]
fn two_replicas_apply_each_change_once() {
    let w = world();
    let a = Daemon::ready(&w);
    a.wait_for("a leads and converged", LIMIT, |d| leads(d) && all_synced(d));
    let b = Daemon::replica(&w, None);
    b.wait_for("b ready", LIMIT, |d| d.get("/readyz").0 == 200);
    assert_eq!(role(&b), "ready: follower of pre");
    let before = (w.revisions("ledger-pre"), w.revisions("notifier-pre"));
    w.proxy.reset_counts();
    let started = Instant::now();
    for n in 0..3 {
        let service = if n % 2 == 0 { "ledger" } else { "notifier" };
        let c = change(&w, service, n);
        a.wait_for("applied", LIMIT, |d| synced_at(d, service, &c));
        b.wait_for("the follower sees it", LIMIT, |d| synced_at(d, service, &c));
    }
    let took = started.elapsed();
    assert_eq!((w.revisions("ledger-pre"), w.revisions("notifier-pre")), (before.0 + 2, before.1 + 1));
    let counts = w.proxy.counts();
    assert_eq!(counts.get("RegisterTaskDefinition"), Some(&3), "{counts:?}");
    assert_eq!(counts.get("UpdateService"), Some(&3), "{counts:?}");
    let renewals = counts.get("UpdateItem").copied().unwrap_or(0);
    let most = 2 * (took.as_secs_f64() / (LEASE.as_secs_f64() / 3.0)).ceil() as u64 + 2;
    assert!(renewals <= most, "{renewals} lease writes in {took:?} (at most {most})");
    let (_, metrics) = a.get("/metrics");
    assert!(metrics.contains("berth_leader{env=\"pre\"} 1"), "{metrics}");
    let (_, metrics) = b.get("/metrics");
    assert!(metrics.contains("berth_leader{env=\"pre\"} 0"), "{metrics}");
}

/// SIGKILL of the leader: the other replica takes over and applies the next commit within
/// the lease and a poll interval.
#[test]
fn the_other_replica_takes_over_when_the_leader_dies() {
    let w = world();
    let mut a = Daemon::ready(&w);
    a.wait_for("a leads and converged", LIMIT, |d| leads(d) && all_synced(d));
    let b = Daemon::replica(&w, None);
    b.wait_for("b ready", LIMIT, |d| d.get("/readyz").0 == 200);
    a.kill();
    let killed = Instant::now();
    let c = change(&w, "ledger", 1);
    b.wait_for("b applies the next commit", LIMIT, |d| synced_at(d, "ledger", &c));
    let took = killed.elapsed();
    eprintln!(
        "takeover: the next commit applied {} ms after SIGKILL of the leader (lease 3s, poll 1s)",
        took.as_millis()
    );
    assert!(leads(&b), "{}", role(&b));
    assert_eq!(w.revisions("ledger-pre"), 2, "applied once");
}

/// The leader cut off from DynamoDB (its requests dropped) stops writing before its lease
/// expires; the other replica takes over; no write of the old leader lands after that.
#[test]
fn a_leader_cut_off_from_dynamodb_stops_writing() {
    let w = world();
    let a = Daemon::ready(&w);
    a.wait_for("a leads and converged", LIMIT, |d| leads(d) && all_synced(d));
    // b reaches AWS through a proxy of its own: a's cut does not touch it.
    let other = Proxy::start(&w.moto.endpoint);
    let b = Daemon::replica(&w, Some(&other.endpoint));
    b.wait_for("b ready", LIMIT, |d| d.get("/readyz").0 == 200);
    w.proxy.inject("UpdateItem", Fault::Drop, 10_000);
    let cut = Instant::now();
    b.wait_for("b takes over", LIMIT, leads);
    let took = cut.elapsed();
    eprintln!("partition: the other replica led {} ms after the leader lost DynamoDB (lease 3s)", took.as_millis());
    assert!(!leads(&a), "the cut-off leader still claims the lease: {}", role(&a));
    w.proxy.reset_counts();
    let c = change(&w, "ledger", 1);
    b.wait_for("b applies", LIMIT, |d| synced_at(d, "ledger", &c));
    a.cycles_more("pre", 2);
    let writes: Vec<(String, u64)> =
        w.proxy.writes().into_iter().filter(|(op, _)| op != "UpdateItem" && op != "PutMetricData").collect();
    assert!(writes.is_empty(), "the old leader wrote after the takeover: {writes:?}\n{}", a.log());
    assert_eq!(w.revisions("ledger-pre"), 2);
    let s = a.service("pre", "ledger").unwrap();
    assert!(s["sync"] == "Synced" || s["sync"] == "OutOfSync", "{s}");
}
