//! EC2: a VPC's security groups with their group-to-group TCP ingress, and the writes berth
//! makes to keep a service's own group and its `-clients` group.

use std::sync::Mutex;

use aws_sdk_ec2::types as ec2;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use super::elbv2::{Failed, sent_error};
use super::{Aws, AwsError, classify};
use crate::core::desired::{Tag, tags};
use crate::core::routing::{GroupIngress, LiveSecurityGroup, SecurityGroup};

/// The largest page DescribeSecurityGroups and DescribeSecurityGroupRules give.
const PAGE_SIZE: i32 = 1000;

/// The tags that make a group berth's, and whose: a group of the same name is the one a
/// create made only if these are equal.
const OWNER_TAGS: [&str; 3] = [tags::MANAGED, tags::ENV, tags::SERVICE];

fn filter(name: &str, value: &str) -> ec2::Filter {
    ec2::Filter::builder().name(name).values(value).build()
}

fn tags_from_sdk(tags: &[ec2::Tag]) -> Vec<Tag> {
    let mut tags: Vec<Tag> = (tags.iter())
        .map(|t| Tag { key: t.key().unwrap_or_default().to_string(), value: t.value().unwrap_or_default().to_string() })
        .collect();
    tags.sort();
    tags
}

fn tags_to_sdk(tags: &[Tag]) -> Vec<ec2::Tag> {
    tags.iter().map(|t| ec2::Tag::builder().key(&t.key).value(&t.value).build()).collect()
}

/// TCP as EC2 may write it: by name, or by protocol number.
fn is_tcp(protocol: Option<&str>) -> bool {
    matches!(protocol, Some("tcp" | "6"))
}

/// The single port of a rule, if it has one (`from == to`).
fn single_port(from: Option<i32>, to: Option<i32>) -> Option<i32> {
    from.filter(|f| Some(*f) == to)
}

/// The TCP single-port rules from other groups, one per (port, source group), sorted. A
/// permission may list a source group more than once (moto keeps one per description).
fn ingress_from_sdk(permissions: &[ec2::IpPermission]) -> Vec<GroupIngress> {
    let mut out: Vec<GroupIngress> = Vec::new();
    for p in permissions.iter().filter(|p| is_tcp(p.ip_protocol())) {
        let Some(port) = single_port(p.from_port(), p.to_port()) else { continue };
        let sources = p.user_id_group_pairs().iter().filter_map(|pair| pair.group_id());
        out.extend(sources.map(|group| GroupIngress { port, from_group: group.to_string() }));
    }
    out.sort();
    out.dedup();
    out
}

fn group_from_sdk(g: &ec2::SecurityGroup) -> LiveSecurityGroup {
    LiveSecurityGroup {
        group_id: g.group_id().unwrap_or_default().to_string(),
        group: SecurityGroup {
            group_name: g.group_name().unwrap_or_default().to_string(),
            description: g.description().unwrap_or_default().to_string(),
            vpc_id: g.vpc_id().unwrap_or_default().to_string(),
            tags: tags_from_sdk(g.tags()),
        },
        ingress: ingress_from_sdk(g.ip_permissions()),
    }
}

/// Whether `live` carries berth's owner tags with the values of `desired` (both absent
/// counts as equal).
fn same_owner(live: &[Tag], desired: &[Tag]) -> bool {
    let value = |tags: &[Tag], key: &str| tags.iter().find(|t| t.key == key).map(|t| t.value.clone());
    OWNER_TAGS.iter().all(|key| value(live, key) == value(desired, key))
}

/// Whether an ingress rule, as DescribeSecurityGroupRules lists it, is `rule`.
fn is_rule(r: &ec2::SecurityGroupRule, rule: &GroupIngress) -> bool {
    r.is_egress() == Some(false)
        && is_tcp(r.ip_protocol())
        && single_port(r.from_port(), r.to_port()) == Some(rule.port)
        && r.referenced_group_info().and_then(|g| g.group_id()) == Some(rule.from_group.as_str())
}

/// A group looked up by name in its VPC, as a create would have made it.
enum Named {
    /// It has berth's owner tags as desired: the create's, by its id.
    Ours(String),
    /// It belongs to someone else: the error to give.
    Theirs(AwsError),
    Absent,
}

/// One attempt, no SDK retry: a create retried after a lost answer fails on the name the
/// first attempt took, which would hide that it was made.
fn once() -> aws_sdk_ec2::config::Builder {
    aws_sdk_ec2::config::Builder::default()
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(1))
}

impl Aws {
    /// The security groups of a VPC (DescribeSecurityGroups, filter vpc-id, all pages of
    /// 1000), each with its name, description, tags (sorted by key) and its TCP ingress
    /// rules whose source is another security group, one `GroupIngress` per (port, source
    /// group id) for rules with FromPort == ToPort, sorted; other rules (CIDR, port ranges,
    /// other protocols, prefix lists) are left out.
    pub async fn describe_security_groups(&self, vpc_id: &str) -> Result<Vec<LiveSecurityGroup>, AwsError> {
        let mut groups = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let resp = (self.ec2().describe_security_groups())
                .filters(filter("vpc-id", vpc_id))
                .max_results(PAGE_SIZE)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| classify("DescribeSecurityGroups", e))?;
            groups.extend(resp.security_groups().iter().map(group_from_sdk));
            match resp.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => return Ok(groups),
            }
        }
    }

    /// The group named as `sg` in its VPC, judged by berth's owner tags.
    async fn named_security_group(&self, sg: &SecurityGroup) -> Result<Named, AwsError> {
        let resp = (self.ec2().describe_security_groups())
            .filters(filter("vpc-id", &sg.vpc_id))
            .filters(filter("group-name", &sg.group_name))
            .send()
            .await
            .map_err(|e| classify("DescribeSecurityGroups", e))?;
        let found = resp.security_groups().iter().find(|g| g.group_name() == Some(sg.group_name.as_str()));
        let Some(live) = found.map(group_from_sdk) else { return Ok(Named::Absent) };
        if same_owner(&live.group.tags, &sg.tags) {
            return Ok(Named::Ours(live.group_id));
        }
        let message = format!(
            "a security group named {} already exists in {} ({}) with other owner tags",
            sg.group_name, sg.vpc_id, live.group_id
        );
        Ok(Named::Theirs(AwsError::other("CreateSecurityGroup", message)))
    }

    /// CreateSecurityGroup with TagSpecifications (the group's tags); returns its id. When
    /// the outcome is unknown (no answer, 5xx, timeout), or on InvalidGroup.Duplicate, the
    /// group is read back by name in the VPC: one with the name and berth's owner tags
    /// (`berth:managed`, `berth:env`, `berth:service`) equal to the desired ones is the
    /// write; a same-named group with other tags is an error naming it.
    pub async fn create_security_group(&self, sg: &SecurityGroup) -> Result<String, AwsError> {
        const OPERATION: &str = "CreateSecurityGroup";
        let failed = |error: AwsError| Failed { error, timed_out: false };
        let send = || async {
            let tagged = (!sg.tags.is_empty()).then(|| {
                vec![
                    ec2::TagSpecification::builder()
                        .resource_type(ec2::ResourceType::SecurityGroup)
                        .set_tags(Some(tags_to_sdk(&sg.tags)))
                        .build(),
                ]
            });
            let resp = (self.ec2().create_security_group())
                .group_name(&sg.group_name)
                .description(&sg.description)
                .vpc_id(&sg.vpc_id)
                .set_tag_specifications(tagged)
                .customize()
                .config_override(once())
                .send()
                .await;
            match resp {
                Ok(out) => (out.group_id().map(str::to_string))
                    .ok_or_else(|| failed(AwsError::other(OPERATION, "no group id in the answer"))),
                Err(e) if e.code() == Some("InvalidGroup.Duplicate") => match self.named_security_group(sg).await {
                    Ok(Named::Ours(id)) => Ok(id),
                    Ok(Named::Theirs(error)) | Err(error) => Err(failed(error)),
                    // Deleted since: the next cycle creates it.
                    Ok(Named::Absent) => Err(sent_error(OPERATION, e)),
                },
                Err(e) => Err(sent_error(OPERATION, e)),
            }
        };
        // A read-back that finds another owner's group settles the create as failed; the
        // shared settling loop only knows "found" and "not yet", so it is kept here.
        let theirs: Mutex<Option<AwsError>> = Mutex::new(None);
        let find = || async {
            match self.named_security_group(sg).await? {
                Named::Ours(id) => Ok(Some(id)),
                Named::Theirs(error) => {
                    *theirs.lock().expect("read-back lock") = Some(error);
                    Ok(None)
                }
                Named::Absent => Ok(None),
            }
        };
        let created = self.create_once(send, find).await;
        created.map_err(|e| theirs.into_inner().expect("read-back lock").unwrap_or(e))
    }

    /// AuthorizeSecurityGroupIngress: tcp `rule.port` from group `rule.from_group` (an id),
    /// with `description` on the rule. InvalidPermission.Duplicate is success.
    pub async fn authorize_group_ingress(
        &self,
        group_id: &str,
        rule: &GroupIngress,
        description: &str,
    ) -> Result<(), AwsError> {
        let source = ec2::UserIdGroupPair::builder()
            .group_id(&rule.from_group)
            .set_description((!description.is_empty()).then(|| description.to_string()))
            .build();
        let permission = ec2::IpPermission::builder()
            .ip_protocol("tcp")
            .from_port(rule.port)
            .to_port(rule.port)
            .user_id_group_pairs(source)
            .build();
        match self.ec2().authorize_security_group_ingress().group_id(group_id).ip_permissions(permission).send().await {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("InvalidPermission.Duplicate") => Ok(()),
            Err(e) => Err(classify("AuthorizeSecurityGroupIngress", e)),
        }
    }

    /// RevokeSecurityGroupIngress of that rule; a rule that is not there (nothing listed,
    /// or InvalidPermission.NotFound) is success. The rule is revoked by the ids
    /// DescribeSecurityGroupRules lists for it: an id matches the rule whatever its
    /// description, where a revoke by protocol, port and source is matched on the
    /// description too by moto (AWS ignores it).
    pub async fn revoke_group_ingress(&self, group_id: &str, rule: &GroupIngress) -> Result<(), AwsError> {
        let mut ids: Vec<String> = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let resp = (self.ec2().describe_security_group_rules())
                .filters(filter("group-id", group_id))
                .max_results(PAGE_SIZE)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| classify("DescribeSecurityGroupRules", e))?;
            let matching = resp.security_group_rules().iter().filter(|r| is_rule(r, rule));
            ids.extend(matching.filter_map(|r| r.security_group_rule_id()).map(str::to_string));
            match resp.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => break,
            }
        }
        if ids.is_empty() {
            return Ok(());
        }
        let sent = (self.ec2().revoke_security_group_ingress())
            .group_id(group_id)
            .set_security_group_rule_ids(Some(ids))
            .send()
            .await;
        match sent {
            Ok(_) => Ok(()),
            // Revoked since it was listed (AWS names the id; moto the permission).
            Err(e)
                if matches!(e.code(), Some("InvalidPermission.NotFound" | "InvalidSecurityGroupRuleId.NotFound")) =>
            {
                Ok(())
            }
            Err(e) => Err(classify("RevokeSecurityGroupIngress", e)),
        }
    }

    /// DeleteSecurityGroup; InvalidGroup.NotFound is success; DependencyViolation (the
    /// group is still attached or referenced) stays an error.
    pub async fn delete_security_group(&self, group_id: &str) -> Result<(), AwsError> {
        match self.ec2().delete_security_group().group_id(group_id).send().await {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("InvalidGroup.NotFound") => Ok(()),
            Err(e) => Err(classify("DeleteSecurityGroup", e)),
        }
    }

    /// CreateTags on a security group (tags of the same key are replaced). The IAM policy
    /// allows it on groups already tagged `berth:managed = true`.
    pub async fn tag_security_group(&self, group_id: &str, tags: &[Tag]) -> Result<(), AwsError> {
        if tags.is_empty() {
            return Ok(());
        }
        (self.ec2().create_tags())
            .resources(group_id)
            .set_tags(Some(tags_to_sdk(tags)))
            .send()
            .await
            .map_err(|e| classify("CreateTags", e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(group: &str, description: Option<&str>) -> ec2::UserIdGroupPair {
        ec2::UserIdGroupPair::builder().group_id(group).set_description(description.map(str::to_string)).build()
    }

    fn permission(protocol: &str, from: i32, to: i32) -> ec2::builders::IpPermissionBuilder {
        ec2::IpPermission::builder().ip_protocol(protocol).from_port(from).to_port(to)
    }

    fn tag(key: &str, value: &str) -> Tag {
        Tag { key: key.into(), value: value.into() }
    }

    #[test]
    fn only_single_port_tcp_rules_from_groups_are_ingress() {
        let permissions = [
            // Listed once per source, whatever the descriptions.
            permission("tcp", 8080, 8080)
                .user_id_group_pairs(pair("sg-b", Some("one")))
                .user_id_group_pairs(pair("sg-b", Some("two")))
                .user_id_group_pairs(pair("sg-a", None))
                .ip_ranges(ec2::IpRange::builder().cidr_ip("10.0.0.0/8").build())
                .build(),
            permission("6", 9000, 9000).user_id_group_pairs(pair("sg-a", None)).build(),
            permission("tcp", 1000, 2000).user_id_group_pairs(pair("sg-a", None)).build(),
            permission("udp", 53, 53).user_id_group_pairs(pair("sg-a", None)).build(),
            permission("-1", -1, -1).user_id_group_pairs(pair("sg-a", None)).build(),
            permission("tcp", 443, 443).ip_ranges(ec2::IpRange::builder().cidr_ip("0.0.0.0/0").build()).build(),
            permission("tcp", 5432, 5432)
                .prefix_list_ids(ec2::PrefixListId::builder().prefix_list_id("pl-1").build())
                .build(),
        ];
        let ingress = |port: i32, from: &str| GroupIngress { port, from_group: from.into() };
        assert_eq!(
            ingress_from_sdk(&permissions),
            [ingress(8080, "sg-a"), ingress(8080, "sg-b"), ingress(9000, "sg-a")]
        );
    }

    #[test]
    fn a_group_is_ours_when_the_owner_tags_are_equal() {
        let desired = [tag(tags::MANAGED, "true"), tag(tags::ENV, "prod"), tag(tags::SERVICE, "payments")];
        let mut live = desired.to_vec();
        live.push(tag("team", "edge"));
        assert!(same_owner(&live, &desired), "other keys do not count");
        assert!(!same_owner(&live[1..], &desired), "berth:managed missing");
        let other_env = [tag(tags::MANAGED, "true"), tag(tags::ENV, "pre"), tag(tags::SERVICE, "payments")];
        assert!(!same_owner(&other_env, &desired));
        assert!(same_owner(&[], &[]));
    }
}
