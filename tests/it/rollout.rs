//! Safer rollouts (issue 17), what is built so far: CloudWatch alarms that roll a
//! deployment back (`spec.rollout.alarms`), rendered into the service's deployment
//! configuration, applied, read back equal, switched off when git drops them.

use serde_json::Value;

use crate::support::world::{World, text};

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
