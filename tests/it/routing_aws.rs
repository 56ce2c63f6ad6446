//! The ELBv2 and Route53 adapters against moto, in process: what berth writes (a target
//! group, a listener rule, alias records) reads back field for field, next to rules berth
//! does not own; lost answers are settled by reading back, not by writing twice; and tags
//! are read once per ARN.

use std::collections::BTreeSet;

use berth::aws::{Aws, AwsError, RequestStats};
use berth::core::routing::{
    ListenerRule, LiveRecord, LiveRule, LiveTargetGroup, LoadBalancerInfo, TargetGroup, allocate_priority,
};
use serde_json::Value;

use crate::support::adapter::{client, s, tag};
use crate::support::moto::Moto;
use crate::support::proxy::{Fault, Proxy};

/// A VPC with two subnets, an internal and an internet-facing ALB with an HTTP listener
/// each, a target group in another VPC, two rules berth does not own on the internal
/// listener (one with the legacy `Values` form and a plain forward, one with
/// `HostHeaderConfig` and a weighted forward), and a private and a public hosted zone.
const FIXTURE: &str = r#"
import boto3, json
ec2 = boto3.client("ec2"); elb = boto3.client("elbv2"); r53 = boto3.client("route53")
vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.20.{i}.0/24", AvailabilityZone=f"us-east-1{z}")["Subnet"]["SubnetId"]
           for i, z in ((1, "a"), (2, "b"))]
sg = ec2.create_security_group(GroupName="lb", Description="lb", VpcId=vpc)["GroupId"]
out = {"vpc": vpc, "sg": sg}
for scope, scheme in (("internal", "internal"), ("external", "internet-facing")):
    lb = elb.create_load_balancer(Name=f"edge-{scope}", Subnets=subnets, SecurityGroups=[sg], Scheme=scheme,
                                  Type="application")["LoadBalancers"][0]
    listener = elb.create_listener(LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTP", Port=80,
        DefaultActions=[{"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "404"}}])["Listeners"][0]
    out[scope] = {"lb": lb["LoadBalancerArn"], "dns": lb["DNSName"], "zone": lb["CanonicalHostedZoneId"],
                  "listener": listener["ListenerArn"]}
default_vpc = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
elb.create_target_group(Name="elsewhere", Protocol="HTTP", Port=80, VpcId=default_vpc, TargetType="ip")
other = elb.create_target_group(Name="other", Protocol="HTTP", Port=80, VpcId=vpc, TargetType="ip")["TargetGroups"][0]["TargetGroupArn"]
internal = out["internal"]["listener"]
elb.create_rule(ListenerArn=internal, Priority=10, Conditions=[{"Field": "host-header", "Values": ["legacy.example.com"]}],
                Actions=[{"Type": "forward", "TargetGroupArn": other}])
elb.create_rule(ListenerArn=internal, Priority=11,
                Conditions=[{"Field": "host-header", "HostHeaderConfig": {"Values": ["weighted.example.com"]}}],
                Actions=[{"Type": "forward", "ForwardConfig": {"TargetGroups": [{"TargetGroupArn": other, "Weight": 1}]}}],
                Tags=[{"Key": "team", "Value": "edge"}])
out["other"] = other
out["private_zone"] = r53.create_hosted_zone(Name="internal.example.com", CallerReference="private",
    HostedZoneConfig={"PrivateZone": True}, VPC={"VPCRegion": "us-east-1", "VPCId": vpc})["HostedZone"]["Id"]
out["public_zone"] = r53.create_hosted_zone(Name="example.com", CallerReference="public")["HostedZone"]["Id"]
print(json.dumps(out))
"#;

/// The rule `arn` as `aws` lists it.
async fn listed_rule(aws: &Aws, listener: &str, arn: &str) -> LiveRule {
    let rules = aws.describe_rules(listener).await.unwrap();
    rules.into_iter().find(|r| r.arn == arn).unwrap_or_else(|| panic!("no rule {arn}"))
}

/// Requests of `operation` counted so far.
fn calls(stats: &RequestStats, operation: &str) -> u64 {
    stats.snapshot().iter().filter(|(k, _)| k.operation == operation).map(|(_, n)| n).sum()
}

#[tokio::test]
async fn routing_writes_read_back_and_tags_are_read_once() {
    let moto = Moto::start();
    let fx: Value = serde_json::from_str(&moto.python(FIXTURE)).expect("fixture JSON");
    let proxy = Proxy::start(&moto.endpoint);
    let stats = RequestStats::new();
    let aws = client(&proxy.endpoint, stats.clone()).await;
    // A new process each time: nothing cached, so what it reads comes from ELB.
    let fresh = || client(&moto.endpoint, RequestStats::new());
    let (vpc, internal, other) = (s(&fx, "/vpc"), s(&fx, "/internal/listener"), s(&fx, "/other"));

    // Rules berth does not own, in both condition and forward forms, and the default rule.
    let before = aws.describe_rules(&internal).await.unwrap();
    let summary: Vec<_> = before.iter().map(|r| (r.priority, r.rule.hosts.clone(), r.forward_to.clone())).collect();
    assert_eq!(
        summary,
        vec![
            (Some(10), vec!["legacy.example.com".to_string()], vec![other.clone()]),
            (Some(11), vec!["weighted.example.com".to_string()], vec![other.clone()]),
            (None, vec![], vec![]),
        ]
    );
    assert!(before.iter().all(|r| r.rule.listener_arn == internal && r.rule.scope.is_empty()));
    assert_eq!(before[1].rule.tags, vec![tag("team", "edge")]);
    assert_eq!(calls(&stats, "DescribeTags"), 1, "one call for both rules, none for the default one");
    aws.describe_rules(&internal).await.unwrap();
    assert_eq!(calls(&stats, "DescribeTags"), 1, "an unchanged listener's tags are not read again");

    // The listener's load balancer, read once.
    let lb = aws.listener_load_balancer(&internal).await.unwrap();
    assert_eq!(
        lb,
        LoadBalancerInfo {
            listener_arn: internal.clone(),
            load_balancer_arn: s(&fx, "/internal/lb"),
            dns_name: s(&fx, "/internal/dns"),
            canonical_hosted_zone_id: s(&fx, "/internal/zone"),
            security_groups: vec![s(&fx, "/sg")],
        }
    );
    assert_eq!(aws.listener_load_balancer(&internal).await.unwrap(), lb);
    assert_eq!((calls(&stats, "DescribeListeners"), calls(&stats, "DescribeLoadBalancers")), (1, 1));

    // A target group and a rule forwarding to it; the rule's answer is lost.
    let owned = vec![tag("berth:managed", "true"), tag("berth:service", "payments")];
    let mut group = TargetGroup {
        name: "payments-prod".into(),
        protocol: "HTTP".into(),
        port: 8080,
        vpc_id: vpc.clone(),
        target_type: "ip".into(),
        health_check_path: "/healthz".into(),
        tags: owned.clone(),
    };
    let group_arn = aws.create_target_group(&group).await.unwrap();
    let taken: BTreeSet<i32> = before.iter().filter_map(|r| r.priority).collect();
    let priority = allocate_priority("payments", "internal", |p| !taken.contains(&p)).unwrap();
    let mut rule = ListenerRule {
        listener_arn: internal.clone(),
        scope: "internal".into(),
        hosts: vec!["payments.internal.example.com".into()],
        paths: vec!["/api/*".into()],
        tags: owned.clone(),
        ..Default::default()
    };
    let one = std::slice::from_ref(&group_arn);
    proxy.inject("CreateRule", Fault::LoseResponse, 1);
    let rule_arn = aws.create_rule(&rule, priority, one).await.unwrap();
    assert_eq!(proxy.count("CreateRule"), 1, "a lost answer is read back, not written again");

    let read_group = |groups: Vec<LiveTargetGroup>, arn: &str| {
        let found: Vec<_> = groups.into_iter().filter(|g| g.arn == arn).collect();
        assert_eq!(found.len(), 1, "{arn}");
        found.into_iter().next().unwrap().group
    };
    let groups = fresh().await.describe_target_groups(&vpc).await.unwrap();
    let names: BTreeSet<_> = groups.iter().map(|g| g.group.name.as_str()).collect();
    assert_eq!(names, BTreeSet::from(["other", "payments-prod"]), "only the VPC's groups");
    assert_eq!(read_group(groups, &group_arn), group);
    let rules = fresh().await.describe_rules(&internal).await.unwrap();
    let live = rules.iter().find(|r| r.arn == rule_arn).expect("the rule");
    assert_eq!(live.priority, Some(priority));
    assert_eq!(live.rule, ListenerRule { scope: String::new(), ..rule.clone() });
    assert_eq!(live.forward_to, vec![group_arn.clone()]);
    assert_eq!(rules.len(), 4);
    // A rule at a taken priority stays an error.
    let clash = aws.create_rule(&rule, priority, one).await.unwrap_err();
    assert!(clash.to_string().contains("PriorityInUse"), "{clash}");

    // Changed in place: the rule's host (no path any more) and the group's health check.
    rule.hosts = vec!["pay.internal.example.com".into()];
    rule.paths.clear();
    aws.modify_rule(&rule_arn, &rule, Some(one)).await.unwrap();
    group.health_check_path = "/ready".into();
    aws.modify_target_group(&group_arn, &group).await.unwrap();
    let live = listed_rule(&fresh().await, &internal, &rule_arn).await;
    assert_eq!(
        (live.rule, live.forward_to),
        (ListenerRule { scope: String::new(), ..rule.clone() }, vec![group_arn.clone()])
    );
    assert_eq!(read_group(fresh().await.describe_target_groups(&vpc).await.unwrap(), &group_arn), group);

    // Tags added later reach the cache: the next listing shows them without reading them.
    let tags_read = calls(&stats, "DescribeTags");
    aws.tag_elb_resource(&rule_arn, &[tag("berth:spec-hash", "abc")]).await.unwrap();
    let live = listed_rule(&aws, &internal, &rule_arn).await;
    assert_eq!(
        live.rule.tags,
        vec![tag("berth:managed", "true"), tag("berth:service", "payments"), tag("berth:spec-hash", "abc")]
    );
    assert_eq!(listed_rule(&fresh().await, &internal, &rule_arn).await.rule.tags, live.rule.tags);
    aws.describe_target_groups(&vpc).await.unwrap();
    assert_eq!(calls(&stats, "DescribeTags"), tags_read + 1, "only the group `other` was not known");

    // A target group whose answer is lost is found by name.
    let spare = TargetGroup { name: "payments-canary".into(), ..group.clone() };
    proxy.inject("CreateTargetGroup", Fault::LoseResponse, 1);
    let spare_arn = aws.create_target_group(&spare).await.unwrap();
    assert_eq!(proxy.count("CreateTargetGroup"), 2);
    assert_eq!(read_group(fresh().await.describe_target_groups(&vpc).await.unwrap(), &spare_arn), spare);
    let taken = aws.create_target_group(&TargetGroup { port: 9090, ..spare.clone() }).await.unwrap_err();
    assert!(matches!(&taken, AwsError::Other { message, .. } if message.contains("payments-canary")), "{taken}");
    // A strategy that shifts traffic: the rule forwards to both groups (weights 100 and 0);
    // a change of its conditions alone leaves the action (ECS's weights) as it is.
    let both = [group_arn.clone(), spare_arn.clone()];
    aws.modify_rule(&rule_arn, &rule, Some(&both)).await.unwrap();
    assert_eq!(listed_rule(&fresh().await, &internal, &rule_arn).await.forward_to, both);
    rule.paths = vec!["/v2/*".into()];
    aws.modify_rule(&rule_arn, &rule, None).await.unwrap();
    let live = listed_rule(&fresh().await, &internal, &rule_arn).await;
    assert_eq!((live.rule.paths, live.forward_to), (rule.paths.clone(), both.to_vec()));
    aws.modify_rule(&rule_arn, &rule, Some(one)).await.unwrap();
    aws.delete_target_group(&spare_arn).await.unwrap();

    // Alias records, the zone id in either form; names read back lower case, no trailing dot.
    let (private, public) = (s(&fx, "/private_zone"), s(&fx, "/public_zone"));
    let bare = private.trim_start_matches("/hostedzone/").to_string();
    let (int_dns, int_zone) = (s(&fx, "/internal/dns"), s(&fx, "/internal/zone"));
    aws.change_alias_record(&bare, "Payments.Internal.example.com.", &int_dns, &int_zone, false).await.unwrap();
    aws.change_alias_record(
        &public,
        "payments.example.com",
        &s(&fx, "/external/dns"),
        &s(&fx, "/external/zone"),
        false,
    )
    .await
    .unwrap();
    let record = LiveRecord {
        zone_id: bare.clone(),
        name: "payments.internal.example.com".into(),
        alias_dns_name: int_dns.to_lowercase(),
        alias_hosted_zone_id: int_zone.clone(),
    };
    assert_eq!(aws.list_alias_records(&private).await.unwrap(), vec![record.clone()]);
    assert_eq!(aws.list_alias_records(&bare).await.unwrap(), vec![record]);
    let public_records = aws.list_alias_records(&public).await.unwrap();
    assert_eq!(public_records.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["payments.example.com"]);
    // An upsert of the same record changes it in place.
    aws.change_alias_record(&public, "payments.example.com", &int_dns, &int_zone, false).await.unwrap();
    let public_records = aws.list_alias_records(&public).await.unwrap();
    assert_eq!(public_records.len(), 1);
    assert_eq!(public_records[0].alias_dns_name, int_dns.to_lowercase());
    aws.change_alias_record(&private, "payments.internal.example.com", &int_dns, &int_zone, true).await.unwrap();
    assert_eq!(aws.list_alias_records(&private).await.unwrap(), vec![]);
    aws.change_alias_record(&private, "payments.internal.example.com", &int_dns, &int_zone, true).await.unwrap();

    // Deleted, twice; the deleted rule leaves the listing and the tag cache.
    aws.delete_rule(&rule_arn).await.unwrap();
    aws.delete_rule(&rule_arn).await.unwrap();
    aws.delete_target_group(&group_arn).await.unwrap();
    aws.delete_target_group(&group_arn).await.unwrap();
    let after = aws.describe_rules(&internal).await.unwrap();
    assert_eq!(after.iter().map(|r| r.priority).collect::<Vec<_>>(), [Some(10), Some(11), None]);
    assert!(!aws.describe_target_groups(&vpc).await.unwrap().iter().any(|g| g.arn == group_arn));

    // Every call was counted under the services' IAM prefixes.
    let apis: BTreeSet<String> = stats.snapshot().keys().map(|k| k.api.clone()).collect();
    assert_eq!(apis, BTreeSet::from(["elasticloadbalancing".to_string(), "route53".to_string()]));
}
