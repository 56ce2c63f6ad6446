//! The EC2 security-group adapter against moto, in process: the groups berth creates read
//! back with their tags and exactly the group-to-group rule it wrote, next to groups and
//! rules it does not own; repeated writes are no-ops; a lost create is settled by reading
//! back, not by creating twice; a taken name of another owner stays an error.

use std::collections::BTreeSet;

use berth::aws::{AwsError, RequestStats};
use berth::core::routing::{GroupIngress, LiveSecurityGroup, SecurityGroup};
use serde_json::Value;

use crate::support::adapter::{client, s, tag};
use crate::support::moto::Moto;
use crate::support::proxy::{Fault, Proxy};

/// In the default VPC: a group of another team whose name looks like one of berth's, and a
/// group with a CIDR rule only.
const FIXTURE: &str = r#"
import boto3, json
ec2 = boto3.client("ec2")
vpc = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
klaus = ec2.create_security_group(GroupName="klausapproves-rds-clients", Description="the RDS team's", VpcId=vpc,
    TagSpecifications=[{"ResourceType": "security-group", "Tags": [{"Key": "team", "Value": "data"}]}])["GroupId"]
office = ec2.create_security_group(GroupName="office", Description="office access", VpcId=vpc)["GroupId"]
ec2.authorize_security_group_ingress(GroupId=office, IpPermissions=[{"IpProtocol": "tcp", "FromPort": 8080,
    "ToPort": 8080, "IpRanges": [{"CidrIp": "10.0.0.0/8"}]}])
print(json.dumps({"vpc": vpc, "klaus": klaus, "office": office}))
"#;

/// The group named `name` in `groups`, which must hold exactly one.
fn named<'a>(groups: &'a [LiveSecurityGroup], name: &str) -> &'a LiveSecurityGroup {
    let found: Vec<_> = groups.iter().filter(|g| g.group.group_name == name).collect();
    assert_eq!(found.len(), 1, "groups named {name}: {found:#?}");
    found[0]
}

/// A group's ingress permissions as moto holds them (boto3, past the adapter's filter).
fn raw_ingress(moto: &Moto, group_id: &str) -> Value {
    let script = format!(
        "import boto3, json\nec2 = boto3.client('ec2')\n\
         print(json.dumps(ec2.describe_security_groups(GroupIds=['{group_id}'])['SecurityGroups'][0]['IpPermissions']))"
    );
    serde_json::from_str(&moto.python(&script)).expect("permissions JSON")
}

#[tokio::test]
async fn security_groups_read_back_and_writes_repeat_as_no_ops() {
    let moto = Moto::start();
    let fx: Value = serde_json::from_str(&moto.python(FIXTURE)).expect("fixture JSON");
    let proxy = Proxy::start(&moto.endpoint);
    let stats = RequestStats::new();
    let aws = client(&proxy.endpoint, stats.clone()).await;
    let vpc = s(&fx, "/vpc");

    // What is there before berth: the VPC's default group, the other team's and the
    // office group, whose CIDR rule is no group-to-group ingress.
    let before = aws.describe_security_groups(&vpc).await.unwrap();
    let names: BTreeSet<&str> = before.iter().map(|g| g.group.group_name.as_str()).collect();
    assert_eq!(names, BTreeSet::from(["default", "klausapproves-rds-clients", "office"]));
    assert_eq!(named(&before, "klausapproves-rds-clients").group.tags, vec![tag("team", "data")]);
    assert_eq!(named(&before, "office").ingress, vec![]);
    assert!(before.iter().all(|g| g.group.vpc_id == vpc));

    // berth's two groups; the answer to the second create is lost.
    let owner =
        |service: &str| vec![tag("berth:env", "prod"), tag("berth:managed", "true"), tag("berth:service", service)];
    let group = |name: &str| SecurityGroup {
        group_name: name.into(),
        description: format!("berth: {name} (prod)"),
        vpc_id: vpc.clone(),
        tags: owner("payments"),
    };
    let (service, clients) = (group("payments"), group("payments-clients"));
    let service_id = aws.create_security_group(&service).await.unwrap();
    proxy.inject("CreateSecurityGroup", Fault::LoseResponse, 1);
    let clients_id = aws.create_security_group(&clients).await.unwrap();
    assert_eq!(proxy.count("CreateSecurityGroup"), 2, "a lost answer is read back, not written again");
    assert_eq!(proxy.count("DescribeSecurityGroups"), 2, "the first listing and one read-back");

    // Created again: the name is taken by the group berth made, so that is the answer.
    assert_eq!(aws.create_security_group(&service).await.unwrap(), service_id);
    // A name taken by another owner (other tags) stays an error that names the group.
    let taken = aws.create_security_group(&group("klausapproves-rds-clients")).await.unwrap_err();
    assert!(
        matches!(&taken, AwsError::Other { message, .. }
            if message.contains("klausapproves-rds-clients") && message.contains(&s(&fx, "/klaus"))),
        "{taken}"
    );
    // So does one of berth's own for another service.
    let mut other_service = group("payments");
    other_service.tags = owner("billing");
    let taken = aws.create_security_group(&other_service).await.unwrap_err();
    assert!(taken.to_string().contains(&service_id), "{taken}");

    // payments open on 8080 to payments-clients; twice, the second a no-op.
    let rule = GroupIngress { port: 8080, from_group: clients_id.clone() };
    let description = "berth: payments-clients to payments";
    aws.authorize_group_ingress(&service_id, &rule, description).await.unwrap();
    aws.authorize_group_ingress(&service_id, &rule, description).await.unwrap();
    assert_eq!(proxy.count("AuthorizeSecurityGroupIngress"), 2);
    // A rule berth does not own on the same port, from a CIDR range, added by hand.
    moto.python(&format!(
        "import boto3\nboto3.client('ec2').authorize_security_group_ingress(GroupId='{service_id}', IpPermissions=[\
         {{'IpProtocol': 'tcp', 'FromPort': 8080, 'ToPort': 8080, 'IpRanges': [{{'CidrIp': '10.1.0.0/16'}}]}}])"
    ));
    let raw = raw_ingress(&moto, &service_id);
    let pairs = raw[0]["UserIdGroupPairs"].as_array().expect("pairs");
    assert_eq!(pairs.len(), 1, "the second authorize added nothing: {raw}");
    assert_eq!((s(&pairs[0], "/GroupId"), s(&pairs[0], "/Description")), (clients_id.clone(), description.into()));

    // Read back field for field by a client with nothing in common with the writer.
    let groups = client(&moto.endpoint, RequestStats::new()).await.describe_security_groups(&vpc).await.unwrap();
    assert_eq!(groups.len(), 5);
    let live = named(&groups, "payments");
    assert_eq!(
        live,
        &LiveSecurityGroup { group_id: service_id.clone(), group: service.clone(), ingress: vec![rule.clone()] }
    );
    let live_clients = named(&groups, "payments-clients");
    assert_eq!((&live_clients.group_id, &live_clients.group), (&clients_id, &clients));
    assert_eq!(live_clients.ingress, vec![]);
    assert_eq!(live.tag("berth:service"), Some("payments"));

    // Tags added later read back, merged by key.
    aws.tag_security_group(&service_id, &[tag("berth:spec-hash", "abc"), tag("berth:env", "prod")]).await.unwrap();
    let live = aws.describe_security_groups(&vpc).await.unwrap();
    assert_eq!(named(&live, "payments").tag("berth:spec-hash"), Some("abc"));
    assert_eq!(named(&live, "payments").group.tags.len(), 4);

    // Revoked, twice: the rule goes, the CIDR rule stays; the second finds nothing to revoke.
    aws.revoke_group_ingress(&service_id, &rule).await.unwrap();
    aws.revoke_group_ingress(&service_id, &rule).await.unwrap();
    assert_eq!(proxy.count("RevokeSecurityGroupIngress"), 1, "nothing is revoked when nothing is listed");
    assert_eq!(named(&aws.describe_security_groups(&vpc).await.unwrap(), "payments").ingress, vec![]);
    let raw = raw_ingress(&moto, &service_id);
    assert_eq!(raw.as_array().map(Vec::len), Some(1), "{raw}");
    assert_eq!(
        (s(&raw[0], "/IpRanges/0/CidrIp"), raw[0]["UserIdGroupPairs"].clone()),
        ("10.1.0.0/16".into(), Value::Array(vec![]))
    );

    // Deleted, twice each; the other groups are left.
    for id in [&service_id, &clients_id] {
        aws.delete_security_group(id).await.unwrap();
        aws.delete_security_group(id).await.unwrap();
    }
    let after = aws.describe_security_groups(&vpc).await.unwrap();
    let names: BTreeSet<&str> = after.iter().map(|g| g.group.group_name.as_str()).collect();
    assert_eq!(names, BTreeSet::from(["default", "klausapproves-rds-clients", "office"]));

    // Every request was counted under EC2's IAM prefix, as the proxy saw them.
    let apis: BTreeSet<String> = stats.snapshot().keys().map(|k| k.api.clone()).collect();
    assert_eq!(apis, BTreeSet::from(["ec2".to_string()]));
    let counted: u64 = stats.snapshot().values().sum();
    assert_eq!(counted, proxy.counts().values().sum::<u64>());
    let writes = proxy.writes();
    assert_eq!(
        writes,
        [
            ("AuthorizeSecurityGroupIngress", 2),
            ("CreateSecurityGroup", 5),
            ("CreateTags", 1),
            ("DeleteSecurityGroup", 4),
            ("RevokeSecurityGroupIngress", 1),
        ]
        .into_iter()
        .map(|(op, n)| (op.to_string(), n))
        .collect()
    );
}
