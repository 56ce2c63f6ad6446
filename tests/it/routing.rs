//! Routing on moto (issue 16): an environment with `ingress:` gets a target group, listener
//! rules on the internal (and, where asked, the external) load balancer and Route53 alias
//! records per service, the ECS service pointing at its group; a second apply writes
//! nothing, console edits are named and healed, a route removed from git is removed, and
//! 60 services share a listener with rules berth does not own without a collision.

use serde_json::Value;

use crate::support::world::{World, text};

/// Two load balancers with an HTTP listener each, a private and a public zone, and two
/// rules on the internal listener that are not berth's.
const NETWORK: &str = r#"
import boto3, json
ec2 = boto3.client("ec2"); elb = boto3.client("elbv2"); r53 = boto3.client("route53")
vpc = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
subnets = [s["SubnetId"] for s in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"]][:2]
out = {"vpc": vpc}
for scope, scheme in [("internal", "internal"), ("external", "internet-facing")]:
    lb = elb.create_load_balancer(Name=f"berth-{scope}", Subnets=subnets, Scheme=scheme, Type="application")["LoadBalancers"][0]
    l = elb.create_listener(LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTP", Port=80,
        DefaultActions=[{"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "404"}}])["Listeners"][0]
    out[scope] = l["ListenerArn"]
    out[scope + "_dns"] = lb["DNSName"].lower()
    if scope == "internal":
        # A listener for test traffic (blue-green, canary and linear deployments).
        out["test"] = elb.create_listener(LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTP", Port=8080,
            DefaultActions=[{"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "404"}}])["Listeners"][0]["ListenerArn"]
tg = elb.create_target_group(Name="not-berths", Protocol="HTTP", Port=80, VpcId=vpc, TargetType="ip")["TargetGroups"][0]
for i, p in enumerate(FOREIGN):
    host = f"legacy{i}.example.com"
    elb.create_rule(ListenerArn=out["internal"], Priority=p,
        Conditions=[{"Field": "host-header", "HostHeaderConfig": {"Values": [host]}}],
        Actions=[{"Type": "forward", "TargetGroupArn": tg["TargetGroupArn"]}])
# The data stores' client groups (the databases' teams make them, not berth).
for name in DATA_GROUPS:
    ec2.create_security_group(GroupName=name, Description="clients of a data store", VpcId=vpc)
out["private"] = r53.create_hosted_zone(Name="internal.example.com", CallerReference="p",
    VPC={"VPCRegion": "us-east-1", "VPCId": vpc}, HostedZoneConfig={"PrivateZone": True})["HostedZone"]["Id"].split("/")[-1]
out["public"] = r53.create_hosted_zone(Name="example.com", CallerReference="q")["HostedZone"]["Id"].split("/")[-1]
print(json.dumps(out))
"#;

/// What AWS holds of the environment's routing, read with boto3.
const READ: &str = r#"
import boto3, json
elb = boto3.client("elbv2"); r53 = boto3.client("route53"); ecs = boto3.client("ecs")
net = json.loads(NET)
out = {"groups": {}, "rules": [], "records": {}, "services": {}}
for g in elb.describe_target_groups()["TargetGroups"]:
    tags = {t["Key"]: t["Value"] for t in elb.describe_tags(ResourceArns=[g["TargetGroupArn"]])["TagDescriptions"][0]["Tags"]}
    out["groups"][g["TargetGroupName"]] = {"arn": g["TargetGroupArn"], "port": g["Port"], "path": g.get("HealthCheckPath"), "tags": tags}
for scope in ["internal", "external"]:
    rules, marker = [], None
    while True:
        page = elb.describe_rules(ListenerArn=net[scope], **({"Marker": marker} if marker else {}))
        rules += page["Rules"]
        marker = page.get("NextMarker")
        if not marker:
            break
    for r in rules:
        if r["IsDefault"]:
            continue
        hosts = [v for c in r["Conditions"] if c["Field"] == "host-header" for v in (c.get("HostHeaderConfig", {}).get("Values") or c.get("Values", []))]
        paths = [v for c in r["Conditions"] if c["Field"] == "path-pattern" for v in (c.get("PathPatternConfig", {}).get("Values") or c.get("Values", []))]
        tags = {t["Key"]: t["Value"] for t in elb.describe_tags(ResourceArns=[r["RuleArn"]])["TagDescriptions"][0]["Tags"]}
        fwd = [a.get("TargetGroupArn") for a in r["Actions"]]
        out["rules"].append({"scope": scope, "arn": r["RuleArn"], "priority": int(r["Priority"]), "hosts": hosts, "paths": paths, "tags": tags, "forward": fwd})
for z in ["private", "public"]:
    for rr in r53.list_resource_record_sets(HostedZoneId=net[z])["ResourceRecordSets"]:
        if rr["Type"] == "A" and "AliasTarget" in rr:
            out["records"][rr["Name"].rstrip(".")] = {"zone": z, "to": rr["AliasTarget"]["DNSName"].rstrip(".").lower()}
ec2 = boto3.client("ec2")
out["groups_by_id"] = {}
out["security_groups"] = {}
groups = ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [net["vpc"]]}])["SecurityGroups"]
for g in groups:
    out["groups_by_id"][g["GroupId"]] = g["GroupName"]
for g in groups:
    ingress = sorted(f"{p['FromPort']} from {out['groups_by_id'].get(u['GroupId'], u['GroupId'])}" for p in g["IpPermissions"] for u in p.get("UserIdGroupPairs", []))
    out["security_groups"][g["GroupName"]] = {"id": g["GroupId"], "tags": {t["Key"]: t["Value"] for t in g.get("Tags", [])}, "ingress": ingress}
cw = boto3.client("cloudwatch")
out["dashboards"] = {d["DashboardName"]: json.loads(cw.get_dashboard(DashboardName=d["DashboardName"])["DashboardBody"]) for d in cw.list_dashboards(DashboardNamePrefix="berth-pre-")["DashboardEntries"]}
out["tasks_join"] = {}
arns = ecs.list_services(cluster="pre")["serviceArns"]
for s in ecs.describe_services(cluster="pre", services=arns)["services"]:
    out["services"][s["serviceName"]] = [lb["targetGroupArn"] for lb in s.get("loadBalancers", [])]
    sgs = s["networkConfiguration"]["awsvpcConfiguration"]["securityGroups"]
    out["tasks_join"][s["serviceName"]] = sorted(out["groups_by_id"].get(x, x) for x in sgs)
print(json.dumps(out))
"#;

/// The priorities of the 5 rules on the internal listener that are not berth's: two
/// arbitrary ones, and the very priorities berth's allocation starts from for three of
/// the services of the 60-service test (so that berth must step past them).
fn foreign_priorities() -> Vec<i64> {
    let start = |s: &str| i64::from(berth::core::routing::allocate_priority(s, "internal", |_| true).unwrap());
    vec![10, 20, start("svc00"), start("svc01"), start("svc02")]
}

pub(crate) struct Routed {
    pub w: World,
    pub net: Value,
}

impl Routed {
    pub fn new(world: World) -> Routed {
        Self::with_data_groups(world, &["klausapproves-rds-clients", "klausapproves-cache-clients"])
    }

    fn with_data_groups(world: World, data_groups: &[&str]) -> Routed {
        Self::configured(world, data_groups, "", "")
    }

    /// The network, and the environment's config with `env_extra` (four spaces in) and
    /// `ingress_extra` (six spaces in) beside the ingress.
    pub fn configured(world: World, data_groups: &[&str], env_extra: &str, ingress_extra: &str) -> Routed {
        let script = NETWORK
            .replace("FOREIGN", &format!("{:?}", foreign_priorities()))
            .replace("DATA_GROUPS", &format!("{data_groups:?}"));
        let net: Value = serde_json::from_str(world.console(&script).trim()).expect("network fixture");
        *world.envs.borrow_mut() = vec!["pre"];
        Self::reconfigure(Routed { w: world, net }, env_extra, ingress_extra)
    }

    /// The same network, the environment's config written again with these extras.
    pub fn reconfigure(r: Routed, env_extra: &str, ingress_extra: &str) -> Routed {
        let net = &r.net;
        r.w.write_config(&format!(
            "{env_extra}    dashboards: cloudwatch\n    ingress:\n      vpc: {vpc}\n      internal_listener: {i}\n      external_listener: {e}\n      domain: example.com\n      private_zone: {pz}\n      public_zone: {uz}\n{ingress_extra}",
            vpc = net["vpc"].as_str().unwrap(),
            i = net["internal"].as_str().unwrap(),
            e = net["external"].as_str().unwrap(),
            pz = net["private"].as_str().unwrap(),
            uz = net["public"].as_str().unwrap(),
        ));
        r
    }

    pub fn read(&self) -> Value {
        let script = READ.replace("json.loads(NET)", &format!("json.loads({:?})", self.net.to_string()));
        serde_json::from_str(self.w.console(&script).trim()).expect("read back")
    }

    pub fn apply_ok(&self) -> String {
        let out = self.w.apply("pre", &[]);
        assert_eq!(out.status.code(), Some(0), "apply:\n{}", text(&out));
        text(&out)
    }
}

pub(crate) fn berths(rules: &Value) -> Vec<&Value> {
    rules.as_array().unwrap().iter().filter(|r| r["tags"]["berth:managed"] == "true").collect()
}

#[test]
fn apply_routes_every_service_and_a_second_apply_writes_nothing() {
    let r = Routed::new(World::new());
    let render = r.w.berth(&[
        "render",
        "--config",
        &r.w.config.to_string_lossy(),
        "--env",
        "pre",
        "--repo",
        &r.w.repo.to_string_lossy(),
        "--service",
        "klausapproves",
        "--param",
        "/pre/klausapproves/db-host=db.pre.internal",
    ]);
    let rendered = text(&render);
    assert!(rendered.contains("klausapproves.pre.internal.example.com"), "{rendered}");
    assert!(rendered.contains("klausapproves.pre.example.com"), "{rendered}");

    r.apply_ok();
    let live = r.read();
    let services = ["bpg", "klausapproves", "ledger", "notifier"];
    for s in services {
        let group = &live["groups"][format!("{s}-pre")];
        assert_eq!(group["tags"]["berth:service"], s, "{live:#}");
        // An ALB target group serves one load balancer: the external route has its own.
        let groups = match s {
            "klausapproves" => serde_json::json!([group["arn"], live["groups"]["klausapproves-pre-ext"]["arn"]]),
            _ => serde_json::json!([group["arn"]]),
        };
        assert_eq!(live["services"][s], groups, "{s}: the ECS service points at its groups");
        let internal = format!("{s}.pre.internal.example.com");
        let rule =
            berths(&live["rules"]).into_iter().find(|x| x["scope"] == "internal" && x["hosts"][0] == internal.as_str());
        let rule = rule.unwrap_or_else(|| panic!("no internal rule for {s}: {live:#}"));
        assert_eq!(rule["forward"], serde_json::json!([group["arn"]]));
        assert_eq!(live["records"][&internal]["to"], r.net["internal_dns"], "{live:#}");
    }
    assert_eq!(live["groups"]["notifier-pre"]["path"], "/healthz", "the health check follows spec.health");
    // Security access: each service's own group, open on its port to its -clients group;
    // its tasks in the defaults' group, its own and its dependencies' -clients groups.
    let default_group = live["groups_by_id"][&r.w.security_group].as_str().unwrap().to_string();
    for s in services {
        for g in [s.to_string(), format!("{s}-clients")] {
            assert_eq!(live["security_groups"][&g]["tags"]["berth:service"], s, "{g}: {live:#}");
        }
        let ingress = live["security_groups"][s]["ingress"].as_array().unwrap();
        assert!(ingress.contains(&Value::from(format!("8080 from {s}-clients"))), "{s}: {ingress:?}");
    }
    let mut kl = vec![
        default_group.clone(),
        "bpg-clients".into(),
        "klausapproves".into(),
        "klausapproves-cache-clients".into(),
        "klausapproves-rds-clients".into(),
    ];
    kl.sort();
    assert_eq!(live["tasks_join"]["klausapproves"], serde_json::json!(kl), "{live:#}");
    // A dashboard per service; a routed one charts its own target group.
    for s in services {
        let body = live["dashboards"][format!("berth-pre-{s}")].to_string();
        let tg = live["groups"][format!("{s}-pre")]["arn"].as_str().unwrap();
        let suffix = &tg[tg.find(":targetgroup/").unwrap() + 1..];
        assert!(body.contains("CPUUtilization") && body.contains(suffix), "{s}: {body}");
    }
    let mut bpg = vec![default_group, "bpg".to_string()];
    bpg.sort();
    assert_eq!(live["tasks_join"]["bpg"], serde_json::json!(bpg));
    // Only klausapproves asks for the external route.
    let external: Vec<&Value> = berths(&live["rules"]).into_iter().filter(|x| x["scope"] == "external").collect();
    assert_eq!(external.len(), 1, "{live:#}");
    assert_eq!(external[0]["hosts"][0], "klausapproves.pre.example.com");
    assert_eq!(external[0]["forward"], serde_json::json!([live["groups"]["klausapproves-pre-ext"]["arn"]]));
    assert_eq!(live["records"]["klausapproves.pre.example.com"]["to"], r.net["external_dns"]);
    // The rules berth does not own are untouched, and no priority is shared.
    let priorities: Vec<i64> =
        live["rules"].as_array().unwrap().iter().map(|x| x["priority"].as_i64().unwrap()).collect();
    let mut unique = priorities.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), priorities.len(), "{priorities:?}");

    r.w.proxy.reset_counts();
    r.apply_ok();
    assert_eq!(r.w.proxy.writes(), Default::default(), "a second apply writes nothing");
    let (code, diff) = r.w.diff_json("pre");
    assert_eq!(code, 0, "{diff:#}");
}

#[test]
fn console_edits_are_named_and_healed() {
    let r = Routed::new(World::new());
    r.apply_ok();
    let live = r.read();
    let rule = berths(&live["rules"])
        .into_iter()
        .find(|x| x["hosts"][0] == "ledger.pre.internal.example.com")
        .unwrap()
        .clone();
    let group = live["groups"]["ledger-pre"]["arn"].as_str().unwrap().to_string();
    r.w.console(&format!(
        r#"
import boto3
elb = boto3.client("elbv2")
elb.modify_rule(RuleArn="{rule}", Conditions=[{{"Field": "host-header", "HostHeaderConfig": {{"Values": ["hijacked.example.com"]}}}}])
elb.modify_target_group(TargetGroupArn="{group}", HealthCheckPath="/")
boto3.client("cloudwatch").put_dashboard(DashboardName="berth-pre-ledger", DashboardBody='{{"widgets": []}}')
ec2 = boto3.client("ec2")
ids = [r["SecurityGroupRuleId"] for r in ec2.describe_security_group_rules(Filters=[{{"Name": "group-id", "Values": ["{own}"]}}])["SecurityGroupRules"]
       if not r["IsEgress"] and r.get("ReferencedGroupInfo", {{}}).get("GroupId") == "{clients}"]
ec2.revoke_security_group_ingress(GroupId="{own}", SecurityGroupRuleIds=ids)
"#,
        own = live["security_groups"]["ledger"]["id"].as_str().unwrap(),
        clients = live["security_groups"]["ledger-clients"]["id"].as_str().unwrap(),
        rule = rule["arn"].as_str().unwrap()
    ));
    let out = r.w.diff("pre", &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let diff = text(&out);
    assert!(diff.contains("routing.rule.internal.hosts"), "{diff}");
    assert!(diff.contains("routing.targetGroup.ledger-pre.HealthCheckPath"), "{diff}");
    assert!(diff.contains("access.group.ledger.ingress"), "{diff}");
    assert!(diff.contains("dashboard.berth-pre-ledger"), "{diff}");
    r.apply_ok();
    let healed = r.read();
    let after = berths(&healed["rules"]).into_iter().find(|x| x["arn"] == rule["arn"]).unwrap();
    assert_eq!(after["hosts"][0], "ledger.pre.internal.example.com");
    assert_eq!(healed["groups"]["ledger-pre"]["path"], "/health");
    assert_eq!(healed["security_groups"]["ledger"]["ingress"], serde_json::json!(["8080 from ledger-clients"]));
    assert_eq!(healed["dashboards"]["berth-pre-ledger"]["widgets"].as_array().map(Vec::len), Some(4));
    assert_eq!(r.w.diff("pre", &[]).status.code(), Some(0));
}

#[test]
fn a_route_removed_from_git_removes_exactly_its_rules_records_and_group() {
    let r = Routed::new(World::new());
    r.apply_ok();
    let before = r.read();
    r.w.commit_edit(
        "services/klausapproves/deploy/service.yaml",
        |t| t.replace("ingress: {external: true}", "ingress: {internal: false}"),
        "klausapproves: no route",
    );
    r.w.push_images();
    r.apply_ok();
    let after = r.read();
    for g in ["klausapproves-pre", "klausapproves-pre-ext"] {
        assert!(before["groups"].get(g).is_some() && after["groups"].get(g).is_none(), "{g}: {after:#}");
    }
    assert_eq!(after["services"]["klausapproves"], serde_json::json!([]));
    for host in ["klausapproves.pre.internal.example.com", "klausapproves.pre.example.com"] {
        assert!(after["records"].get(host).is_none(), "{host}: {after:#}");
        assert!(!after["rules"].as_array().unwrap().iter().any(|x| x["hosts"][0] == host), "{host}");
    }
    // Everything else is as it was.
    let others = |v: &Value| {
        let mut rules: Vec<(i64, String)> = (v["rules"].as_array().unwrap().iter())
            .filter(|x| !x["hosts"][0].as_str().unwrap().starts_with("klausapproves."))
            .map(|x| (x["priority"].as_i64().unwrap(), x["hosts"][0].as_str().unwrap().to_string()))
            .collect();
        rules.sort();
        rules
    };
    assert_eq!(others(&before), others(&after));
    assert_eq!(before["groups"]["bpg-pre"], after["groups"]["bpg-pre"]);
}

/// 60 services on one listener beside 5 rules berth does not own: no collision, and the
/// priorities stay put across cycles and when one service goes.
#[test]
fn sixty_services_share_a_listener_with_stable_priorities() {
    let source = crate::support::fixture("monorepo");
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let spec = std::fs::read_to_string(source.join("services/ledger/deploy/service.yaml")).unwrap();
    for i in 0..60 {
        let name = format!("svc{i:02}");
        let d = repo.join(format!("services/{name}/deploy"));
        std::fs::create_dir_all(d.join("pre")).unwrap();
        std::fs::write(d.join("service.yaml"), spec.replace("ledger", &name)).unwrap();
        std::fs::copy(source.join("services/ledger/deploy/pre/config.yaml"), d.join("pre/config.yaml")).unwrap();
    }
    let r = Routed::new(World::with_repo(&repo));
    r.apply_ok();
    let priorities = |v: &Value| -> std::collections::BTreeMap<String, i64> {
        berths(&v["rules"])
            .into_iter()
            .map(|x| (x["hosts"][0].as_str().unwrap().to_string(), x["priority"].as_i64().unwrap()))
            .collect()
    };
    let first = r.read();
    let taken = priorities(&first);
    assert_eq!(taken.len(), 60, "{taken:?}");
    let all: Vec<i64> = first["rules"].as_array().unwrap().iter().map(|x| x["priority"].as_i64().unwrap()).collect();
    let mut unique = all.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), all.len(), "priorities collide: {all:?}");
    let foreign = foreign_priorities();
    assert!(!taken.values().any(|p| foreign.contains(p)), "{taken:?} {foreign:?}");
    assert_eq!(all.len(), 65, "60 of berth's and 5 others");
    r.apply_ok();
    assert_eq!(priorities(&r.read()), taken, "priorities change across cycles");
    std::fs::remove_dir_all(r.w.repo.join("services/svc07")).unwrap();
    crate::support::world::git(&r.w.repo, &["add", "-A"]);
    crate::support::world::git(&r.w.repo, &["commit", "-q", "-m", "svc07 gone"]);
    r.w.apply("pre", &[]);
    let mut left = taken.clone();
    left.remove("svc07.pre.internal.example.com");
    let now = priorities(&r.read());
    for (host, p) in &left {
        assert_eq!(now.get(host), Some(p), "{host} moved");
    }
}

/// A timer poll of a converged, routed environment adds exactly the batched reads of its
/// routing to the minimum: one DescribeRules per listener, one DescribeTargetGroups page,
/// one ListResourceRecordSets per zone, one DescribeSecurityGroups page; tags and load
/// balancers come from the cache, and nothing is written.
#[test]
fn a_routed_steady_poll_costs_one_read_per_listener_page_and_zone() {
    let r = Routed::new(World::new());
    *r.w.poll_interval.borrow_mut() = "2s".into();
    r.w.rewrite_config();
    let d = crate::daemon::Daemon::ready(&r.w);
    d.cycles_more("pre", 1);
    r.w.proxy.reset_counts();
    d.cycles_more("pre", 1);
    let counts = r.w.proxy.counts();
    let routing: std::collections::BTreeMap<&str, u64> = [
        ("DescribeRules", 2),
        ("DescribeTargetGroups", 1),
        ("ListResourceRecordSets", 2),
        ("DescribeSecurityGroups", 1),
        ("ListDashboards", 1),
    ]
    .into();
    for (op, n) in &routing {
        assert_eq!(counts.get(*op).copied().unwrap_or(0), *n, "{op}: {counts:?}");
    }
    for op in ["DescribeTags", "DescribeListeners", "DescribeLoadBalancers", "GetDashboard"] {
        assert!(!counts.contains_key(op), "{op} on a steady poll: {counts:?}");
    }
    assert_eq!(r.w.proxy.writes(), Default::default(), "{counts:?}\n{}", d.log());
}

/// A data store whose `-clients` group is missing fails that service alone, with the
/// message at the entry's `path:line:col`; the others converge.
#[test]
fn a_missing_data_store_group_fails_only_its_service() {
    let r = Routed::with_data_groups(World::new(), &["klausapproves-cache-clients"]);
    let out = r.w.apply("pre", &[]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains("services/klausapproves/deploy/service.yaml:19:12: security group `klausapproves-rds-clients` does not exist"),
        "{t}"
    );
    for s in ["bpg", "ledger", "notifier"] {
        assert!(t.lines().any(|l| l.starts_with(s) && l.contains("Applied")), "{s}: {t}");
    }
    assert!(r.read()["services"].get("klausapproves").is_none(), "nothing of klausapproves was applied");
}
