//! An in-memory implementation of the engine's port ([`berth::engine::cloud::Cloud`]),
//! in berth's own types, for testing the engine and the daemon loop in-process with
//! paused time. It is not a model of AWS (moto is that, and judges the adapters end to
//! end): it keeps what was written and answers with it, and lets a test make writes fail,
//! images go missing and rollouts hang.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use berth::aws::{AwsError, Datum, Item, RequestStats, StateItem, Verified, VerifyRequest};
use berth::core::config::AwsConfig;
use berth::core::desired::{ScalableTarget, ScalingPolicy, ServiceSettings, Tag, TaskDefinition};
use berth::core::live::{Deployment, LivePolicy, LiveScalableTarget, LiveService, LiveTaskDefinition};
use berth::core::routing::{
    GroupIngress, ListenerRule, LiveRecord, LiveRule, LiveSecurityGroup, LiveTargetGroup, LoadBalancerInfo,
    SecurityGroup, TargetGroup,
};
use berth::engine::cloud::{Cloud, Connect};

pub const ACCOUNT: &str = "123456789012";

#[derive(Default)]
pub struct State {
    pub services: BTreeMap<String, LiveService>,
    revisions: BTreeMap<String, Arc<LiveTaskDefinition>>,
    families: BTreeMap<String, u32>,
    targets: BTreeMap<String, LiveScalableTarget>,
    policies: BTreeMap<String, Vec<LivePolicy>>,
    /// Writes to these services (or their families) fail with a 503.
    pub failing: BTreeSet<String>,
    /// The images of these repositories are not in the registry.
    pub missing_images: BTreeSet<String>,
    /// Rollouts of these services never finish.
    pub stuck: BTreeSet<String>,
    /// AWS is gone: every call fails with a 503.
    pub down: bool,
    pub counts: BTreeMap<&'static str, u64>,
    /// Leases by `table/pk`: (holder, version, expires at in Unix ms).
    pub leases: BTreeMap<String, (String, u64, u64)>,
    /// The state tables' items by (pk, sk).
    pub tables: BTreeMap<String, BTreeMap<(String, String), StateItem>>,
    /// One-off tasks started: (task definition, command), in order.
    pub tasks: Vec<(String, Vec<String>)>,
    /// How a task ends: `Some(code)` stopped with that exit code at its first look; `None`
    /// it runs on.
    pub task_exit: Option<i32>,
}

#[derive(Default)]
pub struct FakeCloud {
    pub state: Mutex<State>,
}

fn unavailable(op: &str) -> AwsError {
    AwsError::Unavailable { operation: op.into(), message: "injected 503".into() }
}

impl FakeCloud {
    /// Counts a call; fails it when AWS is down.
    fn count(&self, op: &'static str) -> Result<(), AwsError> {
        let mut s = self.state.lock().unwrap();
        *s.counts.entry(op).or_default() += 1;
        if s.down { Err(unavailable(op)) } else { Ok(()) }
    }

    pub fn calls(&self, op: &str) -> u64 {
        self.state.lock().unwrap().counts.get(op).copied().unwrap_or(0)
    }

    fn fails(&self, op: &str, name: &str) -> Result<(), AwsError> {
        if self.state.lock().unwrap().failing.contains(name) { Err(unavailable(op)) } else { Ok(()) }
    }

    /// The task definition a service runs, as the console would see it.
    pub fn running(&self, service: &str) -> Option<Arc<LiveTaskDefinition>> {
        let s = self.state.lock().unwrap();
        let svc = s.services.values().find(|x| x.settings.service_name == service)?;
        s.revisions.get(&svc.settings.task_definition).cloned()
    }

    /// A console edit: the service's desired count.
    pub fn set_desired_count(&self, service: &str, count: i32) {
        let mut s = self.state.lock().unwrap();
        if let Some(svc) = s.services.values_mut().find(|x| x.settings.service_name == service) {
            svc.settings.desired_count = Some(count);
        }
    }

    /// An operator's (or the console's) tag on a service; `None` removes it.
    pub fn set_tag(&self, service: &str, key: &str, value: Option<&str>) {
        let mut s = self.state.lock().unwrap();
        if let Some(svc) = s.services.values_mut().find(|x| x.settings.service_name == service) {
            svc.settings.tags.retain(|t| t.key != key);
            if let Some(v) = value {
                svc.settings.tags.push(Tag { key: key.into(), value: v.into() });
            }
        }
    }

    pub fn tag_of(&self, service: &str, key: &str) -> Option<String> {
        let s = self.state.lock().unwrap();
        s.services.values().find(|x| x.settings.service_name == service)?.tag(key).map(str::to_string)
    }

    /// A console edit: the revision a service runs.
    pub fn set_task_definition(&self, service: &str, arn: &str) {
        let mut s = self.state.lock().unwrap();
        if let Some(svc) = s.services.values_mut().find(|x| x.settings.service_name == service) {
            svc.settings.task_definition = arn.into();
        }
    }

    pub fn exists(&self, cluster: &str, service: &str) -> bool {
        self.state.lock().unwrap().services.contains_key(&format!("{cluster}/{service}"))
    }

    /// Every history entry written, oldest first.
    pub fn history(&self) -> Vec<serde_json::Value> {
        let s = self.state.lock().unwrap();
        let mut items: Vec<&StateItem> = s.tables.values().flat_map(|t| t.values()).collect();
        items.sort_by(|a, b| a.sk.cmp(&b.sk));
        items.iter().map(|i| serde_json::from_str(&i.body).unwrap()).collect()
    }

    pub fn desired_count(&self, service: &str) -> Option<i32> {
        let s = self.state.lock().unwrap();
        s.services.values().find(|x| x.settings.service_name == service)?.settings.desired_count
    }
}

impl Cloud for FakeCloud {
    async fn account_id(&self) -> Result<String, AwsError> {
        self.count("GetCallerIdentity")?;
        Ok(ACCOUNT.into())
    }

    async fn verify(&self, req: &VerifyRequest, _fresh: bool) -> Verified {
        if let Err(e) = self.count("Verify") {
            let items = (req.ssm_secrets.iter().chain(&req.ssm_variables).map(|n| Item::parameter(n)))
                .chain(req.secret_ids.iter().map(|id| Item::Secret(id.clone())))
                .chain(req.images.iter().map(|i| Item::Image(i.clone())));
            return Verified { failed: items.map(|i| (i, e.clone())).collect(), ..Verified::default() };
        }
        let s = self.state.lock().unwrap();
        Verified {
            existing_ssm: req.ssm_secrets.clone(),
            ssm_values: req.ssm_variables.iter().map(|n| (n.clone(), format!("value of {n}"))).collect(),
            secret_arns: req
                .secret_ids
                .iter()
                .map(|id| (id.clone(), format!("arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:{id}-AbCdEf")))
                .collect(),
            missing_images: req.images.iter().filter(|i| s.missing_images.contains(&i.repository)).cloned().collect(),
            ..Verified::default()
        }
    }

    async fn describe_services(
        &self,
        cluster: &str,
        names: &[String],
    ) -> Result<BTreeMap<String, LiveService>, AwsError> {
        self.count("DescribeServices")?;
        let s = self.state.lock().unwrap();
        let mut out = BTreeMap::new();
        for n in names {
            if let Some(svc) = s.services.get(&format!("{cluster}/{n}")) {
                let mut svc = svc.clone();
                let state = if s.stuck.contains(n) { "IN_PROGRESS" } else { "COMPLETED" };
                svc.deployments = vec![Deployment {
                    id: "ecs-svc/1".into(),
                    status: "PRIMARY".into(),
                    task_definition: svc.settings.task_definition.clone(),
                    rollout_state: Some(state.into()),
                    ..Deployment::default()
                }];
                out.insert(n.clone(), svc);
            }
        }
        Ok(out)
    }

    async fn describe_scalable_targets(
        &self,
        ids: &[String],
    ) -> Result<BTreeMap<String, LiveScalableTarget>, AwsError> {
        self.count("DescribeScalableTargets")?;
        let s = self.state.lock().unwrap();
        Ok(ids.iter().filter_map(|i| Some((i.clone(), s.targets.get(i)?.clone()))).collect())
    }

    async fn describe_scaling_policies(
        &self,
        ids: &BTreeSet<String>,
    ) -> Result<BTreeMap<String, Vec<LivePolicy>>, AwsError> {
        self.count("DescribeScalingPolicies")?;
        let s = self.state.lock().unwrap();
        Ok(s.policies.iter().filter(|(k, _)| ids.contains(*k)).map(|(k, v)| (k.clone(), v.clone())).collect())
    }

    async fn describe_task_definition(&self, id: &str) -> Result<Option<Arc<LiveTaskDefinition>>, AwsError> {
        self.count("DescribeTaskDefinition")?;
        let s = self.state.lock().unwrap();
        if id.starts_with("arn:") {
            return Ok(s.revisions.get(id).cloned());
        }
        let newest = s.families.get(id).map(|n| format!("arn:aws:ecs:us-east-1:{ACCOUNT}:task-definition/{id}:{n}"));
        Ok(newest.and_then(|arn| s.revisions.get(&arn).cloned()))
    }

    async fn recent_task_definitions(&self, family: &str) -> Result<Vec<Arc<LiveTaskDefinition>>, AwsError> {
        self.count("ListTaskDefinitions")?;
        let s = self.state.lock().unwrap();
        let newest = s.families.get(family).copied().unwrap_or(0);
        let arn = |n: u32| format!("arn:aws:ecs:us-east-1:{ACCOUNT}:task-definition/{family}:{n}");
        Ok((1..=newest).rev().take(5).filter_map(|n| s.revisions.get(&arn(n)).cloned()).collect())
    }

    async fn register_task_definition(&self, td: &TaskDefinition) -> Result<String, AwsError> {
        self.count("RegisterTaskDefinition")?;
        let mut s = self.state.lock().unwrap();
        let n = s.families.entry(td.family.clone()).or_default();
        *n += 1;
        let arn = format!("arn:aws:ecs:us-east-1:{ACCOUNT}:task-definition/{}:{n}", td.family);
        let live = LiveTaskDefinition { arn: arn.clone(), definition: td.clone(), extras: Vec::new() };
        s.revisions.insert(arn.clone(), Arc::new(live));
        Ok(arn)
    }

    async fn create_service(&self, st: &ServiceSettings, revision: &str, count: i32) -> Result<LiveService, AwsError> {
        self.count("CreateService")?;
        self.fails("CreateService", &st.service_name)?;
        let mut settings = st.clone();
        settings.task_definition = revision.into();
        settings.desired_count = Some(count);
        let arn = format!("arn:aws:ecs:us-east-1:{ACCOUNT}:service/{}/{}", st.cluster, st.service_name);
        let svc = LiveService { arn, status: "ACTIVE".into(), settings, ..LiveService::default() };
        self.state.lock().unwrap().services.insert(format!("{}/{}", st.cluster, st.service_name), svc.clone());
        Ok(svc)
    }

    async fn update_service(&self, st: &ServiceSettings, revision: &str, set: bool) -> Result<LiveService, AwsError> {
        self.count("UpdateService")?;
        self.fails("UpdateService", &st.service_name)?;
        let mut s = self.state.lock().unwrap();
        let svc = s.services.get_mut(&format!("{}/{}", st.cluster, st.service_name)).ok_or_else(|| {
            AwsError::NotFound { operation: "UpdateService".into(), message: "ServiceNotFoundException".into() }
        })?;
        let before = svc.clone();
        let (tags, count) = (svc.settings.tags.clone(), svc.settings.desired_count);
        svc.settings = st.clone();
        svc.settings.tags = tags;
        svc.settings.task_definition = revision.into();
        svc.settings.desired_count = if set { st.desired_count } else { count };
        Ok(before)
    }

    async fn scale_service(&self, cluster: &str, service: &str, count: i32) -> Result<(), AwsError> {
        self.count("UpdateService")?;
        self.fails("UpdateService", service)?;
        let mut s = self.state.lock().unwrap();
        let svc = s.services.get_mut(&format!("{cluster}/{service}")).ok_or_else(|| AwsError::NotFound {
            operation: "UpdateService".into(),
            message: "ServiceNotFoundException".into(),
        })?;
        svc.settings.desired_count = Some(count);
        Ok(())
    }

    async fn tag_resource(&self, arn: &str, tags: &[Tag]) -> Result<(), AwsError> {
        self.count("TagResource")?;
        let mut s = self.state.lock().unwrap();
        if let Some(svc) = s.services.values_mut().find(|x| x.arn == arn) {
            for t in tags {
                svc.settings.tags.retain(|x| x.key != t.key);
                svc.settings.tags.push(t.clone());
            }
        }
        Ok(())
    }

    async fn untag_resource(&self, arn: &str, keys: &[&str]) -> Result<(), AwsError> {
        self.count("UntagResource")?;
        let mut s = self.state.lock().unwrap();
        if let Some(svc) = s.services.values_mut().find(|x| x.arn == arn) {
            svc.settings.tags.retain(|x| !keys.contains(&x.key.as_str()));
        }
        Ok(())
    }

    async fn register_scalable_target(&self, t: &ScalableTarget) -> Result<(), AwsError> {
        self.count("RegisterScalableTarget")?;
        let live = LiveScalableTarget { target: t.clone(), role_arn: None };
        self.state.lock().unwrap().targets.insert(t.resource_id.clone(), live);
        Ok(())
    }

    async fn put_scaling_policy(&self, p: &ScalingPolicy) -> Result<(), AwsError> {
        self.count("PutScalingPolicy")?;
        let mut s = self.state.lock().unwrap();
        let list = s.policies.entry(p.resource_id.clone()).or_default();
        list.retain(|x| x.policy.policy_name != p.policy_name);
        list.push(LivePolicy { arn: format!("policy/{}", p.policy_name), policy: p.clone() });
        Ok(())
    }

    async fn delete_scaling_policy(&self, name: &str, resource_id: &str) -> Result<(), AwsError> {
        self.count("DeleteScalingPolicy")?;
        let mut s = self.state.lock().unwrap();
        if let Some(list) = s.policies.get_mut(resource_id) {
            list.retain(|x| x.policy.policy_name != name);
        }
        Ok(())
    }

    async fn deregister_scalable_target(&self, resource_id: &str) -> Result<(), AwsError> {
        self.count("DeregisterScalableTarget")?;
        self.state.lock().unwrap().targets.remove(resource_id);
        Ok(())
    }

    async fn put_metric_data(&self, _namespace: &str, data: &[Datum]) -> Result<usize, AwsError> {
        self.count("PutMetricData")?;
        Ok(data.len().div_ceil(1000))
    }

    fn forget_unused(&self, _idle: std::time::Duration) {}
    async fn run_task(
        &self,
        _: &ServiceSettings,
        task_definition: &str,
        _: &str,
        command: &[String],
        _: &str,
    ) -> Result<String, AwsError> {
        self.count("RunTask")?;
        let mut s = self.state.lock().unwrap();
        s.tasks.push((task_definition.to_string(), command.to_vec()));
        Ok(format!("arn:aws:ecs:us-east-1:{ACCOUNT}:task/pre/{}", s.tasks.len()))
    }
    async fn describe_service_deployment(
        &self,
        _: &str,
    ) -> Result<Option<berth::core::live::ServiceDeployment>, AwsError> {
        self.count("DescribeServiceDeployments")?;
        Ok(None)
    }
    async fn describe_task(&self, _: &str, _: &str, _: &str) -> Result<Option<berth::aws::TaskState>, AwsError> {
        self.count("DescribeTasks")?;
        let exit = self.state.lock().unwrap().task_exit;
        Ok(Some(berth::aws::TaskState {
            last_status: if exit.is_some() { "STOPPED" } else { "RUNNING" }.into(),
            stopped_reason: exit.map(|_| "Essential container in task exited".into()),
            exit_code: exit,
            container_reason: None,
        }))
    }
    async fn list_services(&self, cluster: &str) -> Result<Vec<String>, AwsError> {
        self.count("ListServices")?;
        let s = self.state.lock().unwrap();
        Ok(s.services
            .values()
            .filter(|x| x.settings.cluster == cluster)
            .map(|x| x.settings.service_name.clone())
            .collect())
    }
    async fn delete_service(&self, cluster: &str, service: &str) -> Result<(), AwsError> {
        self.count("DeleteService")?;
        self.state
            .lock()
            .unwrap()
            .services
            .retain(|_, x| !(x.settings.cluster == cluster && x.settings.service_name == service));
        Ok(())
    }
    async fn ensure_state_table(&self, table: &str) -> Result<(), AwsError> {
        self.count("CreateTable")?;
        self.state.lock().unwrap().tables.entry(table.to_string()).or_default();
        Ok(())
    }
    async fn put_state_item(&self, table: &str, item: &StateItem) -> Result<(), AwsError> {
        self.count("PutItem")?;
        let mut s = self.state.lock().unwrap();
        let Some(t) = s.tables.get_mut(table) else {
            return Err(AwsError::NotFound { operation: "PutItem".into(), message: "no table".into() });
        };
        t.insert((item.pk.clone(), item.sk.clone()), item.clone());
        Ok(())
    }
    async fn write_lease(
        &self,
        table: &str,
        pk: &str,
        holder: &str,
        version: Option<u64>,
        now_ms: u64,
        expires_ms: u64,
    ) -> Result<Option<u64>, AwsError> {
        self.count("UpdateItem")?;
        let mut s = self.state.lock().unwrap();
        let lease = s.leases.entry(format!("{table}/{pk}")).or_insert((String::new(), 0, 0));
        let free = lease.2 < now_ms || lease.0.is_empty();
        let ok = match version {
            None => free,
            Some(v) => lease.0 == holder && lease.1 == v,
        };
        if !ok {
            return Ok(None);
        }
        if version.is_none() {
            lease.1 += 1;
        }
        lease.0 = holder.to_string();
        lease.2 = expires_ms;
        Ok(Some(lease.1))
    }
    async fn release_lease(&self, table: &str, pk: &str, holder: &str, version: u64) -> Result<(), AwsError> {
        self.count("UpdateItem")?;
        let mut s = self.state.lock().unwrap();
        if let Some(l) = s.leases.get_mut(&format!("{table}/{pk}"))
            && l.0 == holder
            && l.1 == version
        {
            l.2 = 0;
        }
        Ok(())
    }
    async fn query_state_items(
        &self,
        table: &str,
        pk: &str,
        service: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StateItem>, AwsError> {
        self.count("Query")?;
        let s = self.state.lock().unwrap();
        let Some(t) = s.tables.get(table) else {
            return Err(AwsError::NotFound { operation: "Query".into(), message: "no table".into() });
        };
        Ok((t.values().rev())
            .filter(|i| i.pk == pk && service.is_none_or(|x| x == i.service))
            .take(limit)
            .cloned()
            .collect())
    }

    // The in-process engine tests run environments without `ingress:`: routing is proven
    // on moto (tests/it/routing.rs). A call here is a test that should be there.
    async fn listener_load_balancer(&self, _: &str) -> Result<LoadBalancerInfo, AwsError> {
        Err(no_routing("DescribeListeners"))
    }
    async fn describe_rules(&self, _: &str) -> Result<Vec<LiveRule>, AwsError> {
        Err(no_routing("DescribeRules"))
    }
    async fn describe_target_groups(&self, _: &str) -> Result<Vec<LiveTargetGroup>, AwsError> {
        Err(no_routing("DescribeTargetGroups"))
    }
    async fn create_target_group(&self, _: &TargetGroup) -> Result<String, AwsError> {
        Err(no_routing("CreateTargetGroup"))
    }
    async fn modify_target_group(&self, _: &str, _: &TargetGroup) -> Result<(), AwsError> {
        Err(no_routing("ModifyTargetGroup"))
    }
    async fn delete_target_group(&self, _: &str) -> Result<(), AwsError> {
        Err(no_routing("DeleteTargetGroup"))
    }
    async fn create_rule(&self, _: &ListenerRule, _: i32, _: &[String]) -> Result<String, AwsError> {
        Err(no_routing("CreateRule"))
    }
    async fn modify_rule(&self, _: &str, _: &ListenerRule, _: Option<&[String]>) -> Result<(), AwsError> {
        Err(no_routing("ModifyRule"))
    }
    async fn delete_rule(&self, _: &str) -> Result<(), AwsError> {
        Err(no_routing("DeleteRule"))
    }
    async fn tag_elb_resource(&self, _: &str, _: &[Tag]) -> Result<(), AwsError> {
        Err(no_routing("AddTags"))
    }
    async fn list_alias_records(&self, _: &str) -> Result<Vec<LiveRecord>, AwsError> {
        Err(no_routing("ListResourceRecordSets"))
    }
    async fn change_alias_record(&self, _: &str, _: &str, _: &str, _: &str, _: bool) -> Result<(), AwsError> {
        Err(no_routing("ChangeResourceRecordSets"))
    }
    async fn describe_security_groups(&self, _: &str) -> Result<Vec<LiveSecurityGroup>, AwsError> {
        Err(no_routing("DescribeSecurityGroups"))
    }
    async fn create_security_group(&self, _: &SecurityGroup) -> Result<String, AwsError> {
        Err(no_routing("CreateSecurityGroup"))
    }
    async fn authorize_group_ingress(&self, _: &str, _: &GroupIngress, _: &str) -> Result<(), AwsError> {
        Err(no_routing("AuthorizeSecurityGroupIngress"))
    }
    async fn revoke_group_ingress(&self, _: &str, _: &GroupIngress) -> Result<(), AwsError> {
        Err(no_routing("RevokeSecurityGroupIngress"))
    }
    async fn delete_security_group(&self, _: &str) -> Result<(), AwsError> {
        Err(no_routing("DeleteSecurityGroup"))
    }
    async fn tag_security_group(&self, _: &str, _: &[Tag]) -> Result<(), AwsError> {
        Err(no_routing("CreateTags"))
    }
    async fn list_dashboards(&self, _: &str) -> Result<Vec<berth::core::dashboard::LiveDashboard>, AwsError> {
        Err(no_routing("ListDashboards"))
    }
    async fn put_dashboard(&self, _: &str, _: &serde_json::Value) -> Result<(), AwsError> {
        Err(no_routing("PutDashboard"))
    }
}

fn no_routing(operation: &str) -> AwsError {
    AwsError::Other { operation: operation.into(), message: "the in-process fake has no load balancers".into() }
}

/// Hands the daemon the one [`FakeCloud`] of a test.
#[derive(Clone)]
pub struct ConnectFake(pub Arc<FakeCloud>);

impl Connect for ConnectFake {
    type Cloud = FakeCloud;
    async fn connect(&self, _aws: &AwsConfig, _stats: Arc<RequestStats>) -> Arc<FakeCloud> {
        self.0.clone()
    }
}
