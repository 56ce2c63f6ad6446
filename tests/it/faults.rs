//! The fault matrix: what a real account does to berth, through the test proxy in front of
//! moto. Each kind of fault on 20 % of all requests (reads and writes alike), and a
//! SIGKILL at a few points of an apply; every case must converge, with no family getting a
//! revision twice (counted on the moto side). docs/writes.md has the rules these prove.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::proxy::Fault;
use crate::support::world::{World, text};

const FAMILIES: [&str; 4] = ["bpg-pre", "klausapproves-pre", "ledger-pre", "notifier-pre"];

/// Applies until it exits 0, at most three times: one apply gives up on a service whose
/// call failed `aws.max_attempts` times in a row (the daemon would try it again at its next
/// poll), and the next finishes what it left.
fn apply_until_converged(w: &World) {
    let mut outputs = Vec::new();
    for _ in 0..3 {
        let out = w.apply("pre", &[]);
        if out.status.code() == Some(0) {
            return;
        }
        outputs.push(text(&out));
    }
    panic!("not converged after three applies:\n{}", outputs.join("\n"));
}

fn converges_under(fault: Fault, seed: u64) {
    let w = World::new();
    let config = std::fs::read_to_string(&w.config).unwrap();
    // A slow attempt is abandoned after a second (the default is 10 s).
    std::fs::write(&w.config, config.replace("  max_attempts: 4\n", "  max_attempts: 4\n  attempt_timeout: 1s\n"))
        .unwrap();
    w.proxy.chaos(20, fault, seed);
    apply_until_converged(&w);
    // A change to two services, under the same faults.
    w.commit_edit("services/ledger/deploy/service.yaml", |t| t.replace("count: 1", "count: 2\n  health: /ready"), "l");
    w.commit_edit("services/notifier/deploy/service.yaml", |t| t.replace("value: debug", "value: info"), "n");
    w.push_images();
    apply_until_converged(&w);
    w.proxy.chaos(0, fault, 0);
    let expected = |f: &str| if f == "ledger-pre" || f == "notifier-pre" { 2 } else { 1 };
    for family in FAMILIES {
        assert_eq!(w.revisions(family), expected(family), "{family}: a duplicate revision under {fault:?}");
    }
    let (code, report) = w.diff_json("pre");
    assert_eq!(code, 0, "{report:#}");
}

#[test]
fn lost_answers_on_a_fifth_of_requests() {
    converges_under(Fault::LoseResponse, 11);
}

#[test]
fn server_errors_on_a_fifth_of_requests() {
    converges_under(Fault::Status(503), 12);
}

#[test]
fn throttling_on_a_fifth_of_requests() {
    converges_under(Fault::Throttle, 13);
}

#[test]
fn dropped_connections_on_a_fifth_of_requests() {
    converges_under(Fault::Drop, 14);
}

#[test]
fn slow_answers_on_a_fifth_of_requests() {
    converges_under(Fault::Delay(Duration::from_secs(3)), 15);
}

/// `apply` killed (SIGKILL: no clean-up) as soon as a write of `operation` reaches AWS,
/// then run again: it converges, and nothing was made twice.
fn survives_a_kill_at(operation: &str) {
    let w = World::new();
    let config = w.config.to_string_lossy().into_owned();
    let repo = w.repo.to_string_lossy().into_owned();
    let mut cmd = w.moto.command(env!("CARGO_BIN_EXE_berth"));
    cmd.env_remove("AWS_ENDPOINT_URL").args(["apply", "--config", &config, "--env", "pre", "--repo", &repo]);
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let start = Instant::now();
    while w.proxy.count(operation) == 0 {
        assert!(start.elapsed() < Duration::from_secs(30), "no {operation} within 30 s");
        if child.try_wait().unwrap().is_some() {
            panic!("apply ended before any {operation}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let out = w.apply("pre", &[]);
    assert_eq!(out.status.code(), Some(0), "after a kill at {operation}: {}", text(&out));
    for family in FAMILIES {
        assert_eq!(w.revisions(family), 1, "{family}: a duplicate revision after a kill at {operation}");
    }
    let services =
        w.console("import boto3; print(len(boto3.client('ecs').list_services(cluster='pre')['serviceArns']))");
    assert_eq!(services.trim(), "4", "after a kill at {operation}");
    assert_eq!(w.diff_json("pre").0, 0);
}

#[test]
fn a_kill_during_an_apply_leaves_nothing_half_done() {
    for operation in ["RegisterTaskDefinition", "CreateService", "RegisterScalableTarget"] {
        survives_a_kill_at(operation);
    }
}
