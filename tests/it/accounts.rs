//! Environments in different AWS accounts, against moto: an assumed role's account has
//! state of its own there, as in AWS.

use std::time::Duration;

use serde_json::Value;

use crate::daemon::Daemon;
use crate::support::moto::free_port;
use crate::support::proxy::Fault;
use crate::support::world::{World, git, text};

const PROD_ACCOUNT: &str = "222222222222";

/// boto3 code run with the credentials of `berth` assumed in the prod account (`ecs`,
/// `ec2`, … are its clients).
fn in_prod(w: &World, body: &str) -> String {
    w.console(&format!(
        r#"
import boto3, json
c = boto3.client("sts").assume_role(RoleArn="arn:aws:iam::{PROD_ACCOUNT}:role/berth", RoleSessionName="test")["Credentials"]
s = boto3.Session(aws_access_key_id=c["AccessKeyId"], aws_secret_access_key=c["SecretAccessKey"], aws_session_token=c["SessionToken"], region_name="us-east-1")
ecs, ec2, ssm, sm, ecr = (s.client(n) for n in ["ecs", "ec2", "ssm", "secretsmanager", "ecr"])
{body}
"#
    ))
}

/// The prod account's cluster, parameters, secrets and images; its subnets and group.
fn seed_prod(w: &World) -> (String, String) {
    let tags: Vec<String> = w
        .service_dirs()
        .iter()
        .map(|d| d.rsplit('/').next().unwrap().to_string())
        .flat_map(|n| {
            [format!("({n:?}, \"1.0.0\")"), format!("({n:?}, {:?})", w.service_tag(&format!("services/{n}")))]
        })
        .collect();
    let out = in_prod(
        w,
        &format!(
            r#"
ecs.create_cluster(clusterName="prod")
ssm.put_parameter(Name="/prod/klausapproves/db-host", Value="db.prod.internal", Type="String")
ssm.put_parameter(Name="/prod/klausapproves/db-password", Value="hunter2-prod-db-password", Type="SecureString")
sm.create_secret(Name="prod/klaus", SecretString=json.dumps({{"api_key": "sekrit-prod-api-key"}}))
sm.create_secret(Name="prod/klaus-signing", SecretString="sekrit-prod-signing-key")
have = set()
for repo, tag in [{}]:
    if repo not in have:
        ecr.create_repository(repositoryName=repo); have.add(repo)
    m = json.dumps({{"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json", "config": {{"digest": "sha256:" + ("%064x" % abs(hash(repo + tag)))}}, "layers": []}})
    ecr.put_image(repositoryName=repo, imageManifest=m, imageTag=tag)
subnets = [x["SubnetId"] for x in ec2.describe_subnets()["Subnets"]][:2]
print(",".join(subnets), ec2.describe_security_groups()["SecurityGroups"][0]["GroupId"])
"#,
            tags.join(", ")
        ),
    );
    let (subnets, sg) = out.trim().split_once(' ').unwrap();
    (subnets.replace(',', ", "), sg.to_string())
}

/// The config: `pre` in the default account, `prod` through the role in the prod account.
fn write_config(w: &World, subnets: &str, sg: &str, top: &str) {
    let defaults = |account: &str, subnets: &str, sg: &str| {
        format!(
            "    defaults:\n      execution_role: arn:aws:iam::{account}:role/ecs-execution-{{env}}\n      subnets: [{subnets}]\n      security_groups: [{sg}]\n    rollout: {{wait: false}}\n"
        )
    };
    let text = format!(
        "repo:\n  url: file://{origin}\n  workdir: {work}\n  poll_interval: 1s\naws:\n  region: us-east-1\n  endpoint_url: {endpoint}\n  account_id: \"123456789012\"\n  registry: {reg}\nenvironments:\n  pre:\n    source: {{branch: develop}}\n    cluster: pre\n{pre}  prod:\n    source: {{tags: semver}}\n    cluster: prod\n    aws:\n      role_arn: arn:aws:iam::{PROD_ACCOUNT}:role/berth\n      session_duration: 15s\n      registry: {PROD_ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com\n{prod}{top}",
        origin = w.origin.display(),
        work = w.path("work").display(),
        endpoint = w.proxy.endpoint,
        reg = crate::support::world::REGISTRY,
        pre = defaults("123456789012", &w.subnets.join(", "), &w.security_group),
        prod = defaults(PROD_ACCOUNT, subnets, sg),
    );
    std::fs::write(&w.config, text).unwrap();
}

fn services_in(w: &World, prod_account: bool, cluster: &str) -> Vec<String> {
    let body = format!(
        "print(json.dumps(sorted(a.rsplit('/', 1)[1] for a in ecs.list_services(cluster='{cluster}')['serviceArns'])))"
    );
    let out = if prod_account {
        in_prod(w, &body)
    } else {
        w.console(&format!("import boto3, json; ecs = boto3.client('ecs'); {body}"))
    };
    serde_json::from_str(out.trim()).unwrap()
}

/// `pre` in one account and `prod` in another: each converges into its own account only;
/// the status names each environment's account; the prod role's short-lived credentials
/// are renewed during the run without a failed cycle; a role that cannot be assumed fails
/// its environment alone.
#[test]
fn each_environment_converges_into_its_own_account() {
    let w = World::new();
    let (subnets, sg) = seed_prod(&w);
    let (m, h) = (free_port(), free_port());
    let listeners = format!(
        "metrics: {{listen: 127.0.0.1:{m}}}\nwebhook: {{listen: 127.0.0.1:{h}, secret_env: BERTH_TEST_WEBHOOK}}\n"
    );
    write_config(&w, &subnets, &sg, &listeners);
    let d = Daemon::start_at(&w, &w.config, m, h);
    d.wait_for("both synced", Duration::from_secs(60), |d| {
        let s = d.status();
        let envs = s["environments"].as_array().cloned().unwrap_or_default();
        envs.len() == 2
            && envs.iter().all(|e| {
                let services = e["services"].as_array().cloned().unwrap_or_default();
                !services.is_empty() && services.iter().all(|x| x["sync"] == "Synced")
            })
    });
    let all = ["bpg", "klausapproves", "ledger", "notifier"].map(String::from).to_vec();
    assert_eq!(services_in(&w, false, "pre"), all);
    assert_eq!(services_in(&w, true, "prod"), ["bpg", "klausapproves", "notifier"].map(String::from).to_vec());
    assert!(services_in(&w, false, "prod").is_empty(), "prod's services landed in the default account");
    let arn =
        in_prod(&w, "print(ecs.describe_services(cluster='prod', services=['bpg'])['services'][0]['taskDefinition'])");
    assert!(arn.contains(&format!(":{PROD_ACCOUNT}:task-definition/bpg-prod:")), "{arn}");
    let status = d.status();
    let env = |n: &str| -> Value {
        status["environments"].as_array().unwrap().iter().find(|e| e["name"] == n).unwrap().clone()
    };
    assert_eq!(
        (env("pre")["account"].as_str(), env("prod")["account"].as_str()),
        (Some("123456789012"), Some(PROD_ACCOUNT))
    );
    assert_eq!(env("prod")["region"], "us-east-1");

    // 15 s credentials, a poll a second: renewed before they expire, no cycle fails.
    let assumed = w.proxy.count("AssumeRole");
    d.wait_for("the credentials renewed", Duration::from_secs(40), |_| w.proxy.count("AssumeRole") > assumed);
    d.cycles_more("prod", 3);
    let (_, metrics) = d.get("/metrics");
    assert!(
        !metrics.lines().any(|l| l.starts_with("berth_reconcile_total") && l.contains("result=\"failed\"")),
        "{metrics}"
    );

    // The role refused: prod fails alone, with STS's answer; pre goes on.
    w.proxy.inject("AssumeRole", Fault::Code("AccessDenied"), 10_000);
    drop(d);
    let d = Daemon::start_at(&w, &w.config, m, h);
    let commit = w.commit_edit("services/ledger/deploy/service.yaml", |t| format!("{t}# pre only\n"), "ledger");
    w.push_images();
    git(&w.repo, &["push", "-q", "origin", "develop"]);
    d.wait_for("pre converges", Duration::from_secs(60), |d| {
        d.service("pre", "ledger").is_some_and(|s| s["commit"] == commit.as_str() && s["sync"] == "Synced")
    });
    d.wait_for("prod fails", Duration::from_secs(60), |d| {
        d.service("prod", "bpg").is_some_and(|s| s["last_error"].as_str().is_some_and(|e| e.contains("AccessDenied")))
    });
    let err = d.service("prod", "bpg").unwrap()["last_error"].as_str().unwrap().to_string();
    assert!(err.contains("arn:aws:iam::222222222222:role/berth"), "{err}");
    let out = w.berth(&["status", "--url", &format!("http://127.0.0.1:{m}")]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("# pre: account 123456789012, us-east-1"), "{}", text(&out));
}
