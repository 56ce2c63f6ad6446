//! ELBv2: a listener's load balancer, its rules and a VPC's target groups, with their tags
//! read once per ARN, and the writes berth makes to route a service.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::time::Duration;

use aws_sdk_elasticloadbalancingv2::types as elb;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use super::{Aws, AwsError, classify};
use crate::core::desired::Tag;
use crate::core::routing::{ListenerRule, LiveRule, LiveTargetGroup, LoadBalancerInfo, TargetGroup};

/// The largest page DescribeRules and DescribeTargetGroups give.
const PAGE_SIZE: i32 = 400;
/// DescribeTags accepts at most twenty ARNs.
const TAGS_BATCH: usize = 20;

/// What berth keeps of ELB between cycles: a listener never moves to another load balancer,
/// and the tags of a rule or group change only when berth writes them (it sets them at
/// creation), so neither is read again.
#[derive(Default)]
pub(crate) struct ElbCache {
    load_balancers: HashMap<String, LoadBalancerInfo>,
    tags: HashMap<String, CachedTags>,
}

struct CachedTags {
    /// The listener (rules) or VPC (target groups) whose listing holds the ARN, so that a
    /// listing without it drops it.
    owner: String,
    /// By key.
    tags: Vec<Tag>,
}

impl ElbCache {
    fn remember(&mut self, arn: &str, owner: &str, tags: &[Tag]) {
        self.tags.insert(arn.to_string(), CachedTags { owner: owner.to_string(), tags: sorted(tags) });
    }
}

fn sorted(tags: &[Tag]) -> Vec<Tag> {
    let mut tags = tags.to_vec();
    tags.sort();
    tags
}

fn tags_from_sdk(tags: &[elb::Tag]) -> Vec<Tag> {
    let tags: Vec<Tag> = (tags.iter())
        .map(|t| Tag { key: t.key().unwrap_or_default().to_string(), value: t.value().unwrap_or_default().to_string() })
        .collect();
    sorted(&tags)
}

fn tags_to_sdk(tags: &[Tag]) -> Option<Vec<elb::Tag>> {
    (!tags.is_empty()).then(|| tags.iter().map(|t| elb::Tag::builder().key(&t.key).value(&t.value).build()).collect())
}

/// A condition's values: its typed config's, else the legacy `Values` (ELB answers with
/// either form, as the rule was written).
fn condition_values(c: &elb::RuleCondition) -> Vec<String> {
    let typed = match c.field() {
        Some("host-header") => c.host_header_config().map(|h| h.values()),
        Some("path-pattern") => c.path_pattern_config().map(|p| p.values()),
        _ => None,
    };
    match typed {
        Some(values) if !values.is_empty() => values.to_vec(),
        _ => c.values().to_vec(),
    }
}

fn rule_from_sdk(r: &elb::Rule, listener_arn: &str) -> LiveRule {
    let mut rule = ListenerRule { listener_arn: listener_arn.to_string(), ..ListenerRule::default() };
    for c in r.conditions() {
        match c.field() {
            Some("host-header") => rule.hosts.extend(condition_values(c)),
            Some("path-pattern") => rule.paths.extend(condition_values(c)),
            _ => {}
        }
    }
    let mut forward_to: Vec<String> = Vec::new();
    let mut serving: Option<(i32, String)> = None;
    for a in r.actions().iter().filter(|a| a.r#type() == Some(&elb::ActionTypeEnum::Forward)) {
        let tuples = a.forward_config().map(|f| f.target_groups()).unwrap_or_default();
        if tuples.len() > 1 {
            for t in tuples {
                let (weight, arn) = (t.weight().unwrap_or(1), t.target_group_arn().unwrap_or_default());
                if serving.as_ref().is_none_or(|(w, _)| weight > *w) {
                    serving = Some((weight, arn.to_string()));
                }
            }
        }
        for arn in a.target_group_arn().into_iter().chain(tuples.iter().filter_map(|t| t.target_group_arn())) {
            if !forward_to.iter().any(|f| f == arn) {
                forward_to.push(arn.to_string());
            }
        }
    }
    // The default rule's priority is "default"; others are numbers written as strings.
    let priority = if r.is_default() == Some(true) { None } else { r.priority().and_then(|p| p.parse().ok()) };
    let serving = serving.map(|(_, arn)| arn);
    LiveRule { arn: r.rule_arn().unwrap_or_default().to_string(), priority, rule, forward_to, serving }
}

fn group_from_sdk(g: &elb::TargetGroup) -> LiveTargetGroup {
    LiveTargetGroup {
        arn: g.target_group_arn().unwrap_or_default().to_string(),
        group: TargetGroup {
            name: g.target_group_name().unwrap_or_default().to_string(),
            protocol: g.protocol().map(|p| p.as_str().to_string()).unwrap_or_default(),
            port: g.port().unwrap_or_default(),
            vpc_id: g.vpc_id().unwrap_or_default().to_string(),
            target_type: g.target_type().map(|t| t.as_str().to_string()).unwrap_or_default(),
            health_check_path: g.health_check_path().unwrap_or_default().to_string(),
            tags: Vec::new(),
        },
    }
}

fn conditions(rule: &ListenerRule) -> Vec<elb::RuleCondition> {
    let mut out = vec![
        elb::RuleCondition::builder()
            .field("host-header")
            .host_header_config(elb::HostHeaderConditionConfig::builder().set_values(Some(rule.hosts.clone())).build())
            .build(),
    ];
    if !rule.paths.is_empty() {
        out.push(
            elb::RuleCondition::builder()
                .field("path-pattern")
                .path_pattern_config(
                    elb::PathPatternConditionConfig::builder().set_values(Some(rule.paths.clone())).build(),
                )
                .build(),
        );
    }
    out
}

/// A forward action: to one group, or to several with the first at weight 100 and the
/// others at 0 (a strategy that shifts traffic, whose weights ECS then moves).
fn forward(forward_to: &[String]) -> elb::Action {
    let action = elb::Action::builder().r#type(elb::ActionTypeEnum::Forward);
    match forward_to {
        [one] => action.target_group_arn(one).build(),
        groups => {
            let tuples = groups.iter().enumerate().map(|(i, arn)| {
                elb::TargetGroupTuple::builder().target_group_arn(arn).weight(if i == 0 { 100 } else { 0 }).build()
            });
            action
                .forward_config(elb::ForwardActionConfig::builder().set_target_groups(Some(tuples.collect())).build())
                .build()
        }
    }
}

/// One attempt, no SDK retry: a create retried after a lost answer fails on the name or
/// priority the first attempt took, which would hide that it was made.
fn once() -> aws_sdk_elasticloadbalancingv2::config::Builder {
    aws_sdk_elasticloadbalancingv2::config::Builder::default()
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(1))
}

/// A failed write's error, and whether it timed out (the request may still arrive).
pub(super) fn sent_error<E>(
    operation: &str,
    err: SdkError<E, aws_smithy_runtime_api::client::orchestrator::HttpResponse>,
) -> Failed
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let timed_out = matches!(err, SdkError::TimeoutError(_));
    Failed { error: classify(operation, err), timed_out }
}

pub(super) struct Failed {
    pub(super) error: AwsError,
    pub(super) timed_out: bool,
}

impl Aws {
    /// The load balancer behind a listener (DescribeListeners, then DescribeLoadBalancers):
    /// its ARN, DNS name, canonical hosted zone id and security groups. Cached per listener
    /// for the life of the process (a listener never moves to another load balancer); an
    /// error is not cached.
    pub async fn listener_load_balancer(&self, listener_arn: &str) -> Result<LoadBalancerInfo, AwsError> {
        if let Some(info) = self.elb_cache.lock().expect("cache lock").load_balancers.get(listener_arn) {
            return Ok(info.clone());
        }
        let listeners = (self.elb().describe_listeners().listener_arns(listener_arn).send().await)
            .map_err(|e| classify("DescribeListeners", e))?;
        let not_found = |operation: &str, what: &str| AwsError::NotFound {
            operation: operation.to_string(),
            message: format!("no {what} for listener {listener_arn}"),
        };
        let lb_arn = (listeners.listeners().first())
            .and_then(|l| l.load_balancer_arn())
            .ok_or_else(|| not_found("DescribeListeners", "listener"))?;
        let lbs = (self.elb().describe_load_balancers().load_balancer_arns(lb_arn).send().await)
            .map_err(|e| classify("DescribeLoadBalancers", e))?;
        let lb = lbs.load_balancers().first().ok_or_else(|| not_found("DescribeLoadBalancers", "load balancer"))?;
        let info = LoadBalancerInfo {
            listener_arn: listener_arn.to_string(),
            load_balancer_arn: lb.load_balancer_arn().unwrap_or(lb_arn).to_string(),
            dns_name: lb.dns_name().unwrap_or_default().to_string(),
            canonical_hosted_zone_id: lb.canonical_hosted_zone_id().unwrap_or_default().to_string(),
            security_groups: lb.security_groups().to_vec(),
        };
        self.elb_cache.lock().expect("cache lock").load_balancers.insert(listener_arn.to_string(), info.clone());
        Ok(info)
    }

    /// Every rule of a listener (DescribeRules, all pages), default rule included (priority
    /// `None`), with its host and path conditions, forward target groups and tags (sorted
    /// by key). `rule.scope` is left empty. Tags are read only for rules not seen before.
    pub async fn describe_rules(&self, listener_arn: &str) -> Result<Vec<LiveRule>, AwsError> {
        let mut rules = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let resp = (self.elb().describe_rules())
                .listener_arn(listener_arn)
                .page_size(PAGE_SIZE)
                .set_marker(marker.take())
                .send()
                .await
                .map_err(|e| classify("DescribeRules", e))?;
            rules.extend(resp.rules().iter().map(|r| rule_from_sdk(r, listener_arn)));
            match resp.next_marker() {
                Some(m) if !m.is_empty() => marker = Some(m.to_string()),
                _ => break,
            }
        }
        // The default rule carries no tags berth sets (and moto's has a malformed ARN).
        let arns: Vec<String> = rules.iter().filter(|r| r.priority.is_some()).map(|r| r.arn.clone()).collect();
        let mut tags = self.elb_tags(listener_arn, &arns).await?;
        for r in &mut rules {
            r.rule.tags = tags.remove(&r.arn).unwrap_or_default();
        }
        Ok(rules)
    }

    /// The target groups of a VPC (DescribeTargetGroups, all pages, kept when VpcId
    /// matches), with their tags (sorted by key, read once per ARN as for rules).
    pub async fn describe_target_groups(&self, vpc_id: &str) -> Result<Vec<LiveTargetGroup>, AwsError> {
        let mut groups = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let resp = (self.elb().describe_target_groups())
                .page_size(PAGE_SIZE)
                .set_marker(marker.take())
                .send()
                .await
                .map_err(|e| classify("DescribeTargetGroups", e))?;
            groups.extend(resp.target_groups().iter().filter(|g| g.vpc_id() == Some(vpc_id)).map(group_from_sdk));
            match resp.next_marker() {
                Some(m) if !m.is_empty() => marker = Some(m.to_string()),
                _ => break,
            }
        }
        let arns: Vec<String> = groups.iter().map(|g| g.arn.clone()).collect();
        let mut tags = self.elb_tags(vpc_id, &arns).await?;
        for g in &mut groups {
            g.group.tags = tags.remove(&g.arn).unwrap_or_default();
        }
        Ok(groups)
    }

    /// The tags of `arns` (all of `owner`'s listing): DescribeTags for those not cached,
    /// twenty at a time; cached ARNs of `owner` not in `arns` are dropped (deleted).
    async fn elb_tags(&self, owner: &str, arns: &[String]) -> Result<HashMap<String, Vec<Tag>>, AwsError> {
        let missing: Vec<String> = {
            let cache = self.elb_cache.lock().expect("cache lock");
            arns.iter().filter(|a| !cache.tags.contains_key(a.as_str())).cloned().collect()
        };
        let chunks: Vec<Vec<String>> = missing.chunks(TAGS_BATCH).map(<[String]>::to_vec).collect();
        let answers = super::concurrently(
            chunks.into_iter().map(|chunk| self.elb().describe_tags().set_resource_arns(Some(chunk)).send()),
        )
        .await;
        let mut cache = self.elb_cache.lock().expect("cache lock");
        for answer in answers {
            let answer = answer.map_err(|e| classify("DescribeTags", e))?;
            for d in answer.tag_descriptions() {
                if let Some(arn) = d.resource_arn() {
                    cache.remember(arn, owner, &tags_from_sdk(d.tags()));
                }
            }
        }
        let listed: HashSet<&str> = arns.iter().map(String::as_str).collect();
        cache.tags.retain(|arn, c| c.owner != owner || listed.contains(arn.as_str()));
        Ok(arns.iter().filter_map(|a| Some((a.clone(), cache.tags.get(a)?.tags.clone()))).collect())
    }

    /// A create whose answer may be lost: sent once, throttling retried after a pause, and
    /// an unknown outcome (no answer, a timeout, a 5xx) settled by `find`, which gives the
    /// ARN of what the write made, if it did. A request that timed out may still arrive, so
    /// `find` is asked again over a few seconds before berth concludes it did not.
    pub(super) async fn create_once<S, SF, F, FF>(&self, mut send: S, mut find: F) -> Result<String, AwsError>
    where
        S: FnMut() -> SF,
        SF: Future<Output = Result<String, Failed>>,
        F: FnMut() -> FF,
        FF: Future<Output = Result<Option<String>, AwsError>>,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let Failed { error, timed_out } = match send().await {
                Ok(arn) => return Ok(arn),
                Err(failed) => failed,
            };
            match &error {
                AwsError::Unavailable { .. } => {
                    let waits: &[u64] = if timed_out { &[0, 1, 2, 4] } else { &[0] };
                    for &secs in waits {
                        tokio::time::sleep(Duration::from_secs(secs)).await;
                        if let Ok(Some(arn)) = find().await {
                            tracing::debug!(arn = %arn, error = %error, "a create's answer was lost; it was made");
                            return Ok(arn);
                        }
                    }
                    return Err(error);
                }
                AwsError::Throttled { .. } if attempt < self.max_attempts => {}
                _ => return Err(error),
            }
            let pause = Duration::from_millis(200 << attempt.min(6)).mul_f64(0.5 + rand::random::<f64>() / 2.0);
            tokio::time::sleep(pause).await;
        }
    }

    /// CreateTargetGroup with the group's tags; returns its ARN. An unknown outcome is
    /// settled by reading the group by name.
    pub async fn create_target_group(&self, tg: &TargetGroup) -> Result<String, AwsError> {
        let send = || async {
            let resp = (self.elb().create_target_group())
                .name(&tg.name)
                .protocol(elb::ProtocolEnum::from(tg.protocol.as_str()))
                .port(tg.port)
                .vpc_id(&tg.vpc_id)
                .target_type(elb::TargetTypeEnum::from(tg.target_type.as_str()))
                .set_health_check_path((!tg.health_check_path.is_empty()).then(|| tg.health_check_path.clone()))
                .set_tags(tags_to_sdk(&tg.tags))
                .customize()
                .config_override(once())
                .send()
                .await;
            match resp {
                Ok(out) => (out.target_groups().first().and_then(|g| g.target_group_arn()).map(str::to_string))
                    .ok_or_else(|| Failed {
                        error: AwsError::other("CreateTargetGroup", "no target group in the answer"),
                        timed_out: false,
                    }),
                Err(e) if e.as_service_error().is_some_and(|s| s.is_duplicate_target_group_name_exception()) => {
                    let message = format!("a target group named {} already exists with other settings", tg.name);
                    Err(Failed { error: AwsError::other("CreateTargetGroup", message), timed_out: false })
                }
                Err(e) => Err(sent_error("CreateTargetGroup", e)),
            }
        };
        let find = || async {
            match self.elb().describe_target_groups().names(&tg.name).send().await {
                Ok(out) => Ok(out.target_groups().first().and_then(|g| g.target_group_arn()).map(str::to_string)),
                Err(e) if e.as_service_error().is_some_and(|s| s.is_target_group_not_found_exception()) => Ok(None),
                Err(e) => Err(classify("DescribeTargetGroups", e)),
            }
        };
        let arn = self.create_once(send, find).await?;
        self.elb_cache.lock().expect("cache lock").remember(&arn, &tg.vpc_id, &tg.tags);
        Ok(arn)
    }

    /// ModifyTargetGroup: the health-check path (the only field berth sets that can change
    /// in place).
    pub async fn modify_target_group(&self, arn: &str, tg: &TargetGroup) -> Result<(), AwsError> {
        (self.elb().modify_target_group())
            .target_group_arn(arn)
            .health_check_path(&tg.health_check_path)
            .send()
            .await
            .map_err(|e| classify("ModifyTargetGroup", e))?;
        Ok(())
    }

    /// DeleteTargetGroup; a group that is already gone is success.
    pub async fn delete_target_group(&self, arn: &str) -> Result<(), AwsError> {
        match self.elb().delete_target_group().target_group_arn(arn).send().await {
            Ok(_) => {}
            // DeleteTargetGroup models no not-found error, but ELB answers with one.
            Err(e) if e.code() == Some("TargetGroupNotFound") => {}
            Err(e) => return Err(classify("DeleteTargetGroup", e)),
        }
        self.elb_cache.lock().expect("cache lock").tags.remove(arn);
        Ok(())
    }

    /// CreateRule: the host-header condition, a path-pattern condition when there are
    /// paths, a forward action (see [`forward`]), the priority and the rule's tags;
    /// returns its ARN. An unknown outcome is settled by the listener's rules: the one at
    /// `priority` with these tags is the write. `PriorityInUse` stays an error (the caller
    /// plans again next cycle).
    pub async fn create_rule(
        &self,
        rule: &ListenerRule,
        priority: i32,
        forward_to: &[String],
    ) -> Result<String, AwsError> {
        let send = || async {
            let resp = (self.elb().create_rule())
                .listener_arn(&rule.listener_arn)
                .set_conditions(Some(conditions(rule)))
                .actions(forward(forward_to))
                .priority(priority)
                .set_tags(tags_to_sdk(&rule.tags))
                .customize()
                .config_override(once())
                .send()
                .await;
            match resp {
                Ok(out) => (out.rules().first().and_then(|r| r.rule_arn()).map(str::to_string)).ok_or_else(|| Failed {
                    error: AwsError::other("CreateRule", "no rule in the answer"),
                    timed_out: false,
                }),
                Err(e) => Err(sent_error("CreateRule", e)),
            }
        };
        let tags = sorted(&rule.tags);
        let find = || async {
            let rules = self.describe_rules(&rule.listener_arn).await?;
            Ok(rules.into_iter().find(|r| r.priority == Some(priority) && r.rule.tags == tags).map(|r| r.arn))
        };
        let arn = self.create_once(send, find).await?;
        self.elb_cache.lock().expect("cache lock").remember(&arn, &rule.listener_arn, &rule.tags);
        Ok(arn)
    }

    /// ModifyRule: conditions as in [`Aws::create_rule`], the forward action only when
    /// given (a rule's weights are ECS's during a deployment); the priority is left as it is.
    pub async fn modify_rule(
        &self,
        arn: &str,
        rule: &ListenerRule,
        forward_to: Option<&[String]>,
    ) -> Result<(), AwsError> {
        (self.elb().modify_rule())
            .rule_arn(arn)
            .set_conditions(Some(conditions(rule)))
            .set_actions(forward_to.map(|f| vec![forward(f)]))
            .send()
            .await
            .map_err(|e| classify("ModifyRule", e))?;
        Ok(())
    }

    /// DeleteRule; a rule already gone is success.
    pub async fn delete_rule(&self, arn: &str) -> Result<(), AwsError> {
        match self.elb().delete_rule().rule_arn(arn).send().await {
            Ok(_) => {}
            Err(e) if e.as_service_error().is_some_and(|s| s.is_rule_not_found_exception()) => {}
            Err(e) => return Err(classify("DeleteRule", e)),
        }
        self.elb_cache.lock().expect("cache lock").tags.remove(arn);
        Ok(())
    }

    /// AddTags on a rule or target group (tags of the same key are replaced). The IAM
    /// policy allows it on resources already tagged `berth:managed = true`.
    pub async fn tag_elb_resource(&self, arn: &str, tags: &[Tag]) -> Result<(), AwsError> {
        if tags.is_empty() {
            return Ok(());
        }
        (self.elb().add_tags())
            .resource_arns(arn)
            .set_tags(tags_to_sdk(tags))
            .send()
            .await
            .map_err(|e| classify("AddTags", e))?;
        // Merged into what is cached; an ARN not cached is read whole by its next listing.
        if let Some(cached) = self.elb_cache.lock().expect("cache lock").tags.get_mut(arn) {
            cached.tags.retain(|t| !tags.iter().any(|n| n.key == t.key));
            cached.tags.extend(tags.iter().cloned());
            cached.tags.sort();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_read_both_condition_forms_and_every_forward() {
        let legacy = elb::RuleCondition::builder().field("host-header").values("a.example.com").build();
        let typed = elb::RuleCondition::builder()
            .field("path-pattern")
            .path_pattern_config(elb::PathPatternConditionConfig::builder().values("/api/*").build())
            .build();
        let weighted = elb::Action::builder()
            .r#type(elb::ActionTypeEnum::Forward)
            .target_group_arn("tg-1")
            .forward_config(
                elb::ForwardActionConfig::builder()
                    .target_groups(elb::TargetGroupTuple::builder().target_group_arn("tg-1").build())
                    .target_groups(elb::TargetGroupTuple::builder().target_group_arn("tg-2").build())
                    .build(),
            )
            .build();
        let r = elb::Rule::builder()
            .rule_arn("rule-1")
            .priority("7")
            .conditions(legacy)
            .conditions(typed)
            .actions(weighted)
            .is_default(false)
            .build();
        let live = rule_from_sdk(&r, "listener-1");
        assert_eq!(live.priority, Some(7));
        assert_eq!((live.rule.hosts, live.rule.paths), (vec!["a.example.com".into()], vec!["/api/*".into()]));
        assert_eq!(live.forward_to, ["tg-1", "tg-2"]);
        assert_eq!(live.rule.listener_arn, "listener-1");

        let default = elb::Rule::builder().rule_arn("rule-0").priority("default").is_default(true).build();
        assert_eq!(rule_from_sdk(&default, "listener-1").priority, None);
    }
}
