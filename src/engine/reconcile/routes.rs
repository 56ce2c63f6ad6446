//! The routing of an environment, read once a cycle for all its services: the listeners'
//! load balancers (kept by the adapter), every rule of each listener, the VPC's target
//! groups and the zones' alias records. Each service then gets its share ([`EnvRoutes::of`]).
//! A failed read fails the services that need it, and no other environment.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::aws::AwsError;
use crate::core::config::IngressConfig;
use crate::core::desired::tags;
use crate::core::live::LiveRouting;
use crate::core::routing::{
    LiveRecord, LiveRule, LiveSecurityGroup, LiveTargetGroup, LoadBalancerInfo, clients_group, route_group_names,
};
use crate::core::spec::ServiceSpec;
use crate::engine::cloud::Cloud;

pub struct EnvRoutes {
    ingress: IngressConfig,
    load_balancers: Result<Vec<LoadBalancerInfo>, AwsError>,
    rules: Result<Vec<LiveRule>, AwsError>,
    taken: Arc<BTreeMap<String, BTreeSet<i32>>>,
    target_groups: Result<BTreeMap<String, LiveTargetGroup>, AwsError>,
    records: Result<Vec<LiveRecord>, AwsError>,
    security_groups: Result<BTreeMap<String, LiveSecurityGroup>, AwsError>,
}

impl EnvRoutes {
    pub async fn read<C: Cloud>(cloud: &C, ingress: &IngressConfig) -> EnvRoutes {
        let listeners: Vec<&String> = std::iter::once(&ingress.internal_listener)
            .chain(&ingress.external_listener)
            .chain(&ingress.test_listener)
            .collect();
        let zones: Vec<&String> = ingress.private_zone.iter().chain(&ingress.public_zone).collect();
        let (lbs, rules, groups, records, security_groups) = tokio::join!(
            crate::aws::concurrently(listeners.iter().map(|l| cloud.listener_load_balancer(l))),
            crate::aws::concurrently(listeners.iter().map(|l| cloud.describe_rules(l))),
            cloud.describe_target_groups(&ingress.vpc),
            crate::aws::concurrently(zones.iter().map(|z| cloud.list_alias_records(z))),
            cloud.describe_security_groups(&ingress.vpc),
        );
        let load_balancers: Result<Vec<_>, _> = lbs.into_iter().collect();
        let rules: Result<Vec<LiveRule>, _> =
            rules.into_iter().collect::<Result<Vec<_>, _>>().map(|r| r.into_iter().flatten().collect());
        let mut taken: BTreeMap<String, BTreeSet<i32>> = BTreeMap::new();
        for r in rules.iter().flatten() {
            if let Some(p) = r.priority {
                taken.entry(r.rule.listener_arn.clone()).or_default().insert(p);
            }
        }
        let records = records.into_iter().collect::<Result<Vec<_>, _>>().map(|r| r.into_iter().flatten().collect());
        EnvRoutes {
            ingress: ingress.clone(),
            load_balancers,
            rules,
            taken: Arc::new(taken),
            target_groups: groups.map(|g| g.into_iter().map(|t| (t.group.name.clone(), t)).collect()),
            records,
            security_groups: security_groups.map(|g| g.into_iter().map(|g| (g.group.group_name.clone(), g)).collect()),
        }
    }

    /// One service's share: its target group (by the name berth gives it, else by its
    /// tags), its rules (by their tags), the records of its host names.
    pub fn of(
        &self,
        name: &str,
        env: &str,
        spec: Option<&ServiceSpec>,
        claimed: &[(String, i32)],
    ) -> Result<LiveRouting, AwsError> {
        let lbs = self.load_balancers.as_ref().map_err(Clone::clone)?;
        let rules = self.rules.as_ref().map_err(Clone::clone)?;
        let groups = self.target_groups.as_ref().map_err(Clone::clone)?;
        let records = self.records.as_ref().map_err(Clone::clone)?;
        let security_groups = self.security_groups.as_ref().map_err(Clone::clone)?;
        let tagged = |tagged: &[crate::core::desired::Tag]| {
            let tag = |k: &str| tagged.iter().find(|t| t.key == k).map(|t| t.value.as_str());
            tag(tags::MANAGED) == Some("true") && tag(tags::SERVICE) == Some(name) && tag(tags::ENV) == Some(env)
        };
        // The groups with the names berth gives (whoever made them), and those tagged as
        // the service's.
        let names = route_group_names(name, env);
        let target_groups =
            groups.values().filter(|g| names.contains(&g.group.name) || tagged(&g.group.tags)).cloned().collect();
        let rules: Vec<LiveRule> = rules.iter().filter(|r| tagged(&r.rule.tags)).cloned().collect();
        let mut hosts: BTreeSet<String> = rules.iter().flat_map(|r| r.rule.hosts.iter().cloned()).collect();
        if let Some(spec) = spec {
            hosts.insert(IngressConfig::host(&self.ingress.internal_host, name, env));
            if let Some(h) = spec
                .route
                .host
                .clone()
                .or_else(|| self.ingress.external_host.as_ref().map(|p| IngressConfig::host(p, name, env)))
            {
                hosts.insert(h);
            }
        }
        let records = records.iter().filter(|r| hosts.contains(&r.name)).cloned().collect();
        let mut names = vec![name.to_string(), clients_group(name)];
        if let Some(spec) = spec {
            names.extend(spec.depends_on.iter().chain(&spec.data).map(|d| clients_group(d)));
        }
        let security_groups = names.iter().filter_map(|n| security_groups.get(n)).cloned().collect();
        Ok(LiveRouting {
            target_groups,
            rules,
            records,
            load_balancers: lbs.clone(),
            security_groups,
            taken: self.taken.clone(),
            claimed: claimed.to_vec(),
        })
    }
}
