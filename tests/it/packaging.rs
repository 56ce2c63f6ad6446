//! Packaging checks: the systemd unit (`systemd-analyze verify` and `security`), berth's
//! own ECS task definition and IAM policy under `deploy/`.
//!
//! Self-contained (std, serde_json, tempfile). `systemd-analyze` comes from Debian's
//! `systemd` package; `.ci/run` installs it. Without it these tests print a skip notice,
//! unless the environment variable `CI` is set: then they fail.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const UNIT: &str = "systemd/berth.service";
const SHIPPED_EXEC_START: &str = "/usr/local/bin/berth daemon --config /etc/berth/berth.yaml --log-format json";
const MAX_EXPOSURE: f64 = 2.0;

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo_file(path)).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

/// `systemd-analyze` on PATH, or None after a skip notice. With `CI` set, a missing tool fails.
fn systemd_analyze(test: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("systemd-analyze"))
        .find(|p| p.is_file());
    if found.is_none() {
        let msg = "systemd-analyze is not installed (Debian package `systemd`; `.ci/run` installs it)";
        if std::env::var_os("CI").is_some() {
            panic!("{test}: {msg}, and CI is set");
        }
        eprintln!("SKIPPED {test}: {msg}");
    }
    found
}

/// The `[Service]` settings of a unit file as (key, value) pairs, in order.
fn unit_settings(text: &str) -> Vec<(String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') {
            section = line.to_string();
            continue;
        }
        if section == "[Service]"
            && let Some((k, v)) = line.split_once('=')
        {
            out.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    out
}

fn setting<'a>(settings: &'a [(String, String)], key: &str) -> Option<&'a str> {
    settings.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// A copy of the shipped unit in a temp dir, its ExecStart pointing at the binary under
/// test (`systemd-analyze verify` insists that the executable exists).
fn unit_copy() -> (tempfile::TempDir, PathBuf) {
    let text = read(UNIT);
    let bin = env!("CARGO_BIN_EXE_berth");
    assert!(text.contains(&format!("ExecStart={SHIPPED_EXEC_START}\n")), "{UNIT}: unexpected ExecStart");
    let exe = if bin.contains(char::is_whitespace) { format!("\"{bin}\"") } else { bin.to_string() };
    let rewritten = text.replace("ExecStart=/usr/local/bin/berth ", &format!("ExecStart={exe} "));
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("berth.service");
    std::fs::write(&path, rewritten).expect("write the unit copy");
    (dir, path)
}

fn run(cmd: &mut Command) -> Output {
    // Diagnostics on stderr, never to a journal that the test cannot see.
    cmd.env("SYSTEMD_LOG_TARGET", "console").env("SYSTEMD_LOG_COLOR", "0");
    cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

#[test]
fn systemd_unit_declares_the_daemon_contract() {
    let settings = unit_settings(&read(UNIT));
    let expect = [
        ("Type", "notify"),
        ("NotifyAccess", "main"),
        ("WatchdogSec", "60"),
        ("ExecStart", SHIPPED_EXEC_START),
        ("Restart", "on-failure"),
        ("StateDirectory", "berth"),
        ("EnvironmentFile", "-/etc/berth/berth.env"),
        ("DynamicUser", "yes"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
    ];
    for (key, value) in expect {
        assert_eq!(setting(&settings, key), Some(value), "{UNIT}: {key}");
    }
    // berth's shutdown grace period is 30 s; systemd must not SIGKILL it before that.
    let stop: u64 = setting(&settings, "TimeoutStopSec")
        .and_then(|v| v.trim_end_matches('s').parse().ok())
        .expect("TimeoutStopSec in seconds");
    assert!((35..=90).contains(&stop), "TimeoutStopSec={stop}: a bit above the 30 s grace period");
}

#[test]
fn systemd_unit_passes_systemd_analyze_verify() {
    let Some(tool) = systemd_analyze("systemd_unit_passes_systemd_analyze_verify") else {
        return;
    };
    let (_dir, unit) = unit_copy();
    let out = run(Command::new(&tool).args(["verify", "--man=no"]).arg(&unit));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify failed ({}):\n{stderr}", out.status);
    // Unknown keys and bad values are only warnings (exit 0): any line about our unit fails.
    let ours: Vec<&str> = stderr.lines().filter(|l| l.contains("berth.service")).collect();
    assert!(ours.is_empty(), "systemd-analyze verify warns about the unit:\n{}", ours.join("\n"));
}

#[test]
fn systemd_unit_exposure_is_at_most_2() {
    let Some(tool) = systemd_analyze("systemd_unit_exposure_is_at_most_2") else {
        return;
    };
    let (_dir, unit) = unit_copy();
    let out = run(Command::new(&tool).args(["security", "--offline=yes", "--no-pager"]).arg(&unit));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "systemd-analyze security --offline=yes failed ({}; needs systemd >= 250):\n{stderr}",
        out.status
    );
    let ours: Vec<&str> = stderr.lines().filter(|l| l.contains("berth.service")).collect();
    assert!(ours.is_empty(), "systemd-analyze security warns about the unit:\n{}", ours.join("\n"));
    // "→ Overall exposure level for berth.service: 1.1 OK 🙂"
    let line = stdout
        .lines()
        .find(|l| l.contains("Overall exposure level for berth.service:"))
        .unwrap_or_else(|| panic!("no overall exposure line in:\n{stdout}"));
    let exposure: f64 = line
        .rsplit_once(':')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cannot parse the exposure from {line:?}"));
    eprintln!("systemd-analyze security: exposure {exposure}");
    assert!(exposure <= MAX_EXPOSURE, "exposure {exposure} > {MAX_EXPOSURE}:\n{stdout}");
}

fn json(path: &str) -> Value {
    serde_json::from_str(&read(path)).unwrap_or_else(|e| panic!("{path} is not JSON: {e}"))
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a.iter().map(|x| x.as_str().expect("a string").to_string()).collect(),
        other => panic!("expected a string or a list of strings, got {other}"),
    }
}

/// Actions that may be granted on `"Resource": "*"`, because the Service Authorization
/// Reference gives them no resource type that berth could name in advance.
const STAR_OK: &[&str] = &[
    // No resource-level permissions at all.
    "ecs:DescribeTaskDefinition",
    "ecs:ListTaskDefinitions",
    "ssm:DescribeParameters",
    "application-autoscaling:DescribeScalableTargets",
    "application-autoscaling:DescribeScalingPolicies",
    "elasticloadbalancing:DescribeListeners",
    "elasticloadbalancing:DescribeLoadBalancers",
    "elasticloadbalancing:DescribeRules",
    "elasticloadbalancing:DescribeTargetGroups",
    "elasticloadbalancing:DescribeTags",
    "ec2:DescribeSecurityGroups",
    "ec2:DescribeSecurityGroupRules",
    // No resource types; the policy narrows it with the cloudwatch:namespace condition.
    "cloudwatch:PutMetricData",
    // No resource types: a listing (berth asks for its `berth-` prefix only).
    "cloudwatch:ListDashboards",
    // No resource types; narrowed to berth's clusters with the ecs:cluster condition.
    "ecs:ListServices",
];

/// Every permission the daemon needs (sts:GetCallerIdentity needs none).
const REQUIRED: &[&str] = &[
    "ecs:DescribeServices",
    "ecs:DescribeTaskDefinition",
    "ecs:RegisterTaskDefinition",
    "ecs:CreateService",
    "ecs:UpdateService",
    "ecs:TagResource",
    "ecs:UntagResource",
    "ecs:ListServices",
    "ecs:DeleteService",
    "application-autoscaling:DescribeScalableTargets",
    "application-autoscaling:DescribeScalingPolicies",
    "application-autoscaling:RegisterScalableTarget",
    "application-autoscaling:PutScalingPolicy",
    "application-autoscaling:DeleteScalingPolicy",
    "application-autoscaling:DeregisterScalableTarget",
    "ssm:DescribeParameters",
    "ssm:GetParameters",
    "secretsmanager:DescribeSecret",
    "ecr:BatchGetImage",
    "iam:PassRole",
    "iam:CreateServiceLinkedRole",
    "elasticloadbalancing:DescribeListeners",
    "elasticloadbalancing:DescribeLoadBalancers",
    "elasticloadbalancing:DescribeRules",
    "elasticloadbalancing:DescribeTargetGroups",
    "elasticloadbalancing:DescribeTags",
    "elasticloadbalancing:CreateTargetGroup",
    "elasticloadbalancing:ModifyTargetGroup",
    "elasticloadbalancing:DeleteTargetGroup",
    "elasticloadbalancing:CreateRule",
    "elasticloadbalancing:ModifyRule",
    "elasticloadbalancing:DeleteRule",
    "elasticloadbalancing:AddTags",
    "route53:ListResourceRecordSets",
    "route53:ChangeResourceRecordSets",
    "ec2:DescribeSecurityGroups",
    "ec2:DescribeSecurityGroupRules",
    "ec2:CreateSecurityGroup",
    "ec2:CreateTags",
    "ec2:AuthorizeSecurityGroupIngress",
    "ec2:RevokeSecurityGroupIngress",
    "ec2:DeleteSecurityGroup",
    "cloudwatch:ListDashboards",
    "cloudwatch:GetDashboard",
    "cloudwatch:PutDashboard",
    "ecs:RunTask",
    "ecs:DescribeTasks",
    "ecs:DescribeServiceDeployments",
];

/// Never granted: berth does not read secret values.
const FORBIDDEN: &[&str] = &["secretsmanager:GetSecretValue", "ssm:GetParameter", "kms:Decrypt"];

#[test]
fn iam_policy_is_least_privilege() {
    let policy = json("deploy/iam-policy.json");
    assert_eq!(policy["Version"], "2012-10-17");
    let statements = policy["Statement"].as_array().expect("Statement is a list");
    let mut granted = BTreeSet::new();
    let mut sids = BTreeSet::new();
    for st in statements {
        let sid = st["Sid"].as_str().expect("every statement has a Sid");
        assert!(sids.insert(sid.to_string()), "duplicate Sid {sid}");
        assert_eq!(st["Effect"], "Allow", "{sid}");
        for key in ["NotAction", "NotResource", "NotPrincipal"] {
            assert!(st.get(key).is_none(), "{sid}: {key} is not least privilege");
        }
        let actions = strings(&st["Action"]);
        let resources = strings(&st["Resource"]);
        for a in &actions {
            assert!(!a.contains('*'), "{sid}: wildcard action {a}");
            assert!(!FORBIDDEN.contains(&a.as_str()), "{sid}: {a} must not be granted");
            granted.insert(a.clone());
        }
        if resources.iter().any(|r| r == "*") {
            for a in &actions {
                assert!(
                    STAR_OK.contains(&a.as_str()),
                    "{sid}: {a} supports resource-level permissions; scope it instead of \"*\""
                );
            }
        }
        for r in resources.iter().filter(|r| *r != "*") {
            assert!(r.starts_with("arn:aws:"), "{sid}: {r} is not an ARN");
        }
        let condition = |key: &str| st["Condition"]["StringEquals"].get(key).map(strings);
        // Roles go to the tasks (task and execution roles) or to ECS itself (the role it
        // moves traffic with, the hooks' role), never anywhere else.
        if actions.iter().any(|a| a == "iam:PassRole") {
            let to = condition("iam:PassedToService").unwrap_or_default();
            assert!(
                to == ["ecs-tasks.amazonaws.com"] || to == ["ecs.amazonaws.com"],
                "{sid}: iam:PassedToService is {to:?}"
            );
        }
        if actions.iter().any(|a| a == "iam:CreateServiceLinkedRole") {
            assert!(condition("iam:AWSServiceName").is_some(), "{sid}: needs an iam:AWSServiceName condition");
        }
        // Scalable targets' ARNs carry a random id, not the service: the writes are held to
        // ECS services' desired counts by condition.
        if actions.iter().any(|a| a.starts_with("application-autoscaling:") && !a.contains(":Describe")) {
            assert_eq!(condition("application-autoscaling:service-namespace"), Some(vec!["ecs".to_string()]), "{sid}");
            assert_eq!(
                condition("application-autoscaling:scalable-dimension"),
                Some(vec!["ecs:service:DesiredCount".to_string()]),
                "{sid}"
            );
        }
        if actions.iter().any(|a| a == "ecs:ListServices") {
            let clusters = st["Condition"]["ArnEquals"].get("ecs:cluster").map(strings).unwrap_or_default();
            assert!(!clusters.is_empty(), "{sid}: ecs:ListServices needs an ecs:cluster condition");
        }
        if actions.iter().any(|a| a.starts_with("dynamodb:")) {
            assert!(
                resources.iter().all(|r| r.contains(":table/<STATE_TABLE>") || r.contains(":table/<LEASE_TABLE>")),
                "{sid}: only berth's tables"
            );
        }
        if actions.iter().any(|a| a == "sts:AssumeRole") {
            assert!(resources.iter().all(|r| r.contains(":role/")), "{sid}: only the environments' roles");
        }
        if actions.iter().any(|a| a == "cloudwatch:PutMetricData") {
            assert_eq!(condition("cloudwatch:namespace"), Some(vec!["Berth".to_string()]), "{sid}");
        }
        // ELB writes touch only what berth made: created tagged as managed, changed or
        // deleted only while tagged so.
        if actions.iter().any(|a| a.starts_with("elasticloadbalancing:") && !a.contains(":Describe")) {
            let managed = [condition("aws:RequestTag/berth:managed"), condition("aws:ResourceTag/berth:managed")];
            assert!(managed.contains(&Some(vec!["true".to_string()])), "{sid}: needs a berth:managed tag condition");
        }
        // EC2 writes likewise, on security groups; CreateSecurityGroup also names the VPC,
        // which carries no request tags and is granted alone, for that action only.
        if actions.iter().any(|a| a.starts_with("ec2:") && !a.contains(":Describe")) {
            if resources.iter().all(|r| r.contains(":vpc/")) {
                assert_eq!(actions, ["ec2:CreateSecurityGroup"], "{sid}: on VPCs, only the create");
            } else {
                assert!(resources.iter().all(|r| r.ends_with(":security-group/*")), "{sid}: security groups only");
                let managed = [condition("aws:RequestTag/berth:managed"), condition("aws:ResourceTag/berth:managed")];
                assert!(
                    managed.contains(&Some(vec!["true".to_string()])),
                    "{sid}: needs a berth:managed tag condition"
                );
            }
            // Tags on a group not yet berth's only as part of its creation.
            if actions.iter().any(|a| a == "ec2:CreateTags") && condition("aws:ResourceTag/berth:managed").is_none() {
                assert_eq!(condition("ec2:CreateAction"), Some(vec!["CreateSecurityGroup".to_string()]), "{sid}");
            }
        }
        if actions.iter().any(|a| a == "route53:ChangeResourceRecordSets") {
            let types = st["Condition"]["ForAllValues:StringEquals"].get("route53:ChangeResourceRecordSetsRecordTypes");
            assert_eq!(types.map(strings), Some(vec!["A".to_string()]), "{sid}: alias A records only");
        }
    }
    let missing: Vec<&&str> = REQUIRED.iter().filter(|a| !granted.contains(**a)).collect();
    assert!(missing.is_empty(), "the policy lacks {missing:?}");
}

/// parliament (duo-labs' IAM linter, from PyPI; in the test venv) finds nothing in the
/// policy but what is explained here. The placeholders get example values first.
#[test]
fn iam_policy_passes_parliament() {
    /// A kind of finding explained: its issue, which of its findings (by their detail), why.
    struct Explained {
        issue: &'static str,
        which: fn(&str) -> bool,
        why: &'static str,
    }
    const EXPLAINED: &[Explained] = &[
        Explained {
            issue: "CREDENTIALS_EXPOSURE",
            which: |_| true,
            why: "sts:AssumeRole returns credentials by nature (an environment's `aws.role_arn`); it is \
             scoped to those roles' ARNs",
        },
        Explained {
            issue: "PERMISSIONS_MANAGEMENT_ACTIONS",
            which: |_| true,
            why: "iam:PassRole (the execution and task roles to ecs-tasks.amazonaws.com, the traffic and hook roles to ecs.amazonaws.com, each by name) and \
         iam:CreateServiceLinkedRole (ECS's and Application Auto Scaling's own roles, by name) \
         manage permissions by nature; both are scoped by resource and condition",
        },
        Explained {
            issue: "RESOURCE_MISMATCH",
            which: |detail| detail.contains("/net/") && !detail.contains("/app/"),
            why: "parliament takes each of a rule action's alternative resource types (an ALB's `app` or \
             an NLB's `net` listener) as required; berth routes on ALBs only, and NLB listeners \
             have no rules",
        },
        Explained {
            issue: "UNKNOWN_CONDITION_FOR_ACTION",
            which: |detail| detail.contains("elasticloadbalancing:CreateAction"),
            why: "elasticloadbalancing:CreateAction is AddTags' documented key for tags given at \
             creation; parliament's list of ELB keys predates it",
        },
        Explained {
            issue: "RESOURCE_MISMATCH",
            which: |detail| detail.contains("'ec2:CreateSecurityGroup'") && !detail.contains("elasticloadbalancing"),
            why: "CreateSecurityGroup is authorized on the new group (held to berth's tag by \
             aws:RequestTag) and on its VPC, which has no request tags, so the VPC is granted in a \
             statement of its own (as in EC2's documented examples); parliament reads each statement \
             alone and wants the required security-group resource in that one too",
        },
    ];
    let script = r#"
import json, sys
from parliament import analyze_policy_string
text = open(sys.argv[1]).read()
for k, v in {"<REGION>": "us-east-1", "<ACCOUNT_ID>": "123456789012", "<PRE_CLUSTER>": "pre", "<PROD_CLUSTER>": "prod", "<STATE_TABLE>": "berth-state", "<LEASE_TABLE>": "berth-leases", "<PROD_ACCOUNT_ID>": "222222222222", "<PROD_ROLE_NAME>": "berth", "<TRAFFIC_ROLE>": "ecs-traffic", "<HOOK_ROLE>": "ecs-hooks"}.items():
    text = text.replace(k, v)
found = analyze_policy_string(text, include_community_auditors=True).findings
print(json.dumps([{"issue": f.issue, "detail": str(f.detail), "at": str(f.location)} for f in found]))
"#;
    let python = crate::support::moto::python_binary();
    let out = Command::new(&python).arg("-c").arg(script).arg(repo_file("deploy/iam-policy.json")).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && stderr.contains("No module named 'parliament'") {
        let msg = "parliament is not installed (scripts/setup.sh installs it in the venv)";
        assert!(std::env::var_os("CI").is_none(), "{msg}, and CI is set");
        eprintln!("SKIPPED iam_policy_passes_parliament: {msg}");
        return;
    }
    assert!(out.status.success(), "{stderr}");
    let findings: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let mut unexplained: Vec<&Value> = Vec::new();
    for f in &findings {
        let detail = f["detail"].as_str().unwrap_or_default();
        match EXPLAINED.iter().find(|e| f["issue"] == e.issue && (e.which)(detail)) {
            Some(e) => eprintln!("parliament {}: explained: {}", e.issue, e.why),
            None => unexplained.push(f),
        }
    }
    assert!(unexplained.is_empty(), "parliament: {unexplained:#?}");
}

/// berth's own service runs two replicas (leader election, `ha:`) across two subnets.
#[test]
fn the_service_runs_two_replicas_across_zones() {
    let svc = json("deploy/service.json");
    assert_eq!(svc["desiredCount"], 2);
    let subnets = svc["networkConfiguration"]["awsvpcConfiguration"]["subnets"].as_array().unwrap();
    assert!(subnets.len() >= 2, "one subnet per AZ");
    assert!(svc["deploymentConfiguration"]["maximumPercent"].as_i64().unwrap() <= 100, "never a third replica");
    let tables = std::fs::read_to_string(repo_file("deploy/dynamodb-tables.yaml")).unwrap();
    for key in ["AttributeName: pk, KeyType: HASH", "AttributeName: sk, KeyType: RANGE", "AttributeName: ttl"] {
        assert!(tables.contains(key), "{key}");
    }
}

#[test]
fn task_definition_runs_the_daemon() {
    let td = json("deploy/task-definition.json");
    assert_eq!(td["requiresCompatibilities"], serde_json::json!(["FARGATE"]));
    assert_eq!(td["networkMode"], "awsvpc");
    let containers = td["containerDefinitions"].as_array().expect("containerDefinitions");
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    assert!(c["image"].as_str().unwrap().contains(".dkr.ecr."), "image from ECR");
    let ports: BTreeSet<u64> =
        c["portMappings"].as_array().unwrap().iter().map(|p| p["containerPort"].as_u64().unwrap()).collect();
    assert_eq!(ports, BTreeSet::from([8080, 9090]));
    let health = strings(&c["healthCheck"]["command"]).join(" ");
    assert!(health.contains("http://127.0.0.1:9090/healthz"), "health check on /healthz: {health}");
    assert_eq!(c["logConfiguration"]["logDriver"], "awslogs");
    let secrets: BTreeSet<&str> =
        c["secrets"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(secrets, BTreeSet::from(["BERTH_WEBHOOK_SECRET", "GIT_TOKEN"]));
    for s in c["secrets"].as_array().unwrap() {
        assert!(s["valueFrom"].as_str().unwrap().starts_with("arn:aws:secretsmanager:"), "{s}");
    }
    let env_names: Vec<&str> =
        c["environment"].as_array().map_or(vec![], |e| e.iter().map(|v| v["name"].as_str().unwrap()).collect());
    assert!(!env_names.iter().any(|n| secrets.contains(n)), "secrets must not be plain environment");
    // ECS sends SIGTERM, then SIGKILL after stopTimeout: leave room for the 30 s drain.
    assert!(c["stopTimeout"].as_u64().unwrap() > 30, "stopTimeout above the 30 s grace period");
}
