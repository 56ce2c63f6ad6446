//! The engine's port to AWS: the calls a reconcile and the daemon make, in berth's own
//! types. [`Aws`] is the implementation; tests drive the engine and the daemon loop
//! in-process through another (with paused time), and moto judges the adapter.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;

use crate::aws::answers::{Answer, Digest};
use crate::aws::{Aws, AwsError, Datum, StateItem, Verified, VerifyRequest};
use crate::core::dashboard::LiveDashboard;
use crate::core::desired::{ScalableTarget, ScalingPolicy, ServiceSettings, Tag, TaskDefinition};
use crate::core::live::{LivePolicy, LiveScalableTarget, LiveService, LiveTaskDefinition};
use crate::core::routing::{
    GroupIngress, ListenerRule, LiveRecord, LiveRule, LiveSecurityGroup, LiveTargetGroup, LoadBalancerInfo,
    SecurityGroup, TargetGroup,
};

pub trait Cloud: Send + Sync + 'static {
    /// The account id (from the config, else asked once).
    fn account_id(&self) -> impl Future<Output = Result<String, AwsError>> + Send;
    /// References and images (see [`Aws::verify`]); failures are per item.
    fn verify(&self, req: &VerifyRequest, fresh: bool) -> impl Future<Output = Verified> + Send;
    /// The named services of a cluster; a name not found is absent.
    fn describe_services(
        &self,
        cluster: &str,
        names: &[String],
    ) -> impl Future<Output = Result<BTreeMap<String, LiveService>, AwsError>> + Send;
    /// At most ten services, as `describe_services`, unless the answer is the one digested
    /// as `known` ([`Answer::Same`]: not decoded). A port that cannot digest its answers
    /// answers each one `New` without a digest.
    fn describe_services_since(
        &self,
        cluster: &str,
        names: &[String],
        known: Option<Digest>,
    ) -> impl Future<Output = Result<Answer<BTreeMap<String, LiveService>>, AwsError>> + Send {
        let _ = known;
        async move { self.describe_services(cluster, names).await.map(|value| Answer::New { value, digest: None }) }
    }
    fn describe_scalable_targets(
        &self,
        resource_ids: &[String],
    ) -> impl Future<Output = Result<BTreeMap<String, LiveScalableTarget>, AwsError>> + Send;
    fn describe_scaling_policies(
        &self,
        resource_ids: &BTreeSet<String>,
    ) -> impl Future<Output = Result<BTreeMap<String, Vec<LivePolicy>>, AwsError>> + Send;
    /// By ARN (cached) or by family (its newest ACTIVE revision); `None` when absent.
    fn describe_task_definition(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<Arc<LiveTaskDefinition>>, AwsError>> + Send;
    /// The family's newest ACTIVE revisions, newest first (at most
    /// [`crate::aws::RECENT_REVISIONS`]).
    fn recent_task_definitions(
        &self,
        family: &str,
    ) -> impl Future<Output = Result<Vec<Arc<LiveTaskDefinition>>, AwsError>> + Send;
    /// Registers a revision. When the outcome of the write is unknown (no answer, a 5xx),
    /// the family is read: a revision with the desired spec hash is the write, not retried.
    fn register_task_definition(&self, td: &TaskDefinition) -> impl Future<Output = Result<String, AwsError>> + Send;
    fn create_service(
        &self,
        s: &ServiceSettings,
        revision: &str,
        desired_count: i32,
    ) -> impl Future<Output = Result<LiveService, AwsError>> + Send;
    fn update_service(
        &self,
        s: &ServiceSettings,
        revision: &str,
        set_count: bool,
    ) -> impl Future<Output = Result<LiveService, AwsError>> + Send;
    /// The names of the services of `cluster`.
    /// One task of `task_definition` with the service's network settings and `command` in
    /// place of `container`'s (see [`Aws::run_task`]); its ARN.
    fn run_task(
        &self,
        settings: &ServiceSettings,
        task_definition: &str,
        container: &str,
        command: &[String],
        started_by: &str,
    ) -> impl Future<Output = Result<String, AwsError>> + Send;
    fn describe_task(
        &self,
        cluster: &str,
        arn: &str,
        container: &str,
    ) -> impl Future<Output = Result<Option<crate::aws::TaskState>, AwsError>> + Send;
    fn describe_service_deployment(
        &self,
        arn: &str,
    ) -> impl Future<Output = Result<Option<crate::core::live::ServiceDeployment>, AwsError>> + Send;
    /// The desired count alone (no deployment starts).
    fn scale_service(
        &self,
        cluster: &str,
        service: &str,
        count: i32,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
    fn list_services(&self, cluster: &str) -> impl Future<Output = Result<Vec<String>, AwsError>> + Send;
    fn delete_service(&self, cluster: &str, service: &str) -> impl Future<Output = Result<(), AwsError>> + Send;
    fn tag_resource(&self, arn: &str, tags: &[Tag]) -> impl Future<Output = Result<(), AwsError>> + Send;
    fn untag_resource(&self, arn: &str, keys: &[&str]) -> impl Future<Output = Result<(), AwsError>> + Send;
    fn register_scalable_target(&self, t: &ScalableTarget) -> impl Future<Output = Result<(), AwsError>> + Send;
    fn put_scaling_policy(&self, p: &ScalingPolicy) -> impl Future<Output = Result<(), AwsError>> + Send;
    fn delete_scaling_policy(&self, name: &str, resource_id: &str)
    -> impl Future<Output = Result<(), AwsError>> + Send;
    fn deregister_scalable_target(&self, resource_id: &str) -> impl Future<Output = Result<(), AwsError>> + Send;
    fn put_metric_data(&self, namespace: &str, data: &[Datum]) -> impl Future<Output = Result<usize, AwsError>> + Send;
    /// The load balancer behind a listener (cached).
    fn listener_load_balancer(
        &self,
        listener_arn: &str,
    ) -> impl Future<Output = Result<LoadBalancerInfo, AwsError>> + Send;
    /// Every rule of a listener, with tags.
    fn describe_rules(&self, listener_arn: &str) -> impl Future<Output = Result<Vec<LiveRule>, AwsError>> + Send;
    /// The target groups of a VPC, with tags.
    fn describe_target_groups(
        &self,
        vpc_id: &str,
    ) -> impl Future<Output = Result<Vec<LiveTargetGroup>, AwsError>> + Send;
    fn create_target_group(&self, tg: &TargetGroup) -> impl Future<Output = Result<String, AwsError>> + Send;
    fn modify_target_group(&self, arn: &str, tg: &TargetGroup) -> impl Future<Output = Result<(), AwsError>> + Send;
    fn delete_target_group(&self, arn: &str) -> impl Future<Output = Result<(), AwsError>> + Send;
    /// `forward_to`: the target groups, the first with weight 100, the others 0.
    fn create_rule(
        &self,
        rule: &ListenerRule,
        priority: i32,
        forward_to: &[String],
    ) -> impl Future<Output = Result<String, AwsError>> + Send;
    /// `forward_to`: `None` leaves the rule's action (and the weights ECS set) as it is.
    fn modify_rule(
        &self,
        arn: &str,
        rule: &ListenerRule,
        forward_to: Option<&[String]>,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
    fn delete_rule(&self, arn: &str) -> impl Future<Output = Result<(), AwsError>> + Send;
    fn tag_elb_resource(&self, arn: &str, tags: &[Tag]) -> impl Future<Output = Result<(), AwsError>> + Send;
    /// The alias A records of a hosted zone.
    fn list_alias_records(&self, zone_id: &str) -> impl Future<Output = Result<Vec<LiveRecord>, AwsError>> + Send;
    fn change_alias_record(
        &self,
        zone_id: &str,
        name: &str,
        alias_dns_name: &str,
        alias_zone_id: &str,
        delete: bool,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
    /// The security groups of a VPC, with their group-to-group TCP ingress rules.
    fn describe_security_groups(
        &self,
        vpc_id: &str,
    ) -> impl Future<Output = Result<Vec<LiveSecurityGroup>, AwsError>> + Send;
    fn create_security_group(&self, sg: &SecurityGroup) -> impl Future<Output = Result<String, AwsError>> + Send;
    fn authorize_group_ingress(
        &self,
        group_id: &str,
        rule: &GroupIngress,
        description: &str,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
    fn revoke_group_ingress(
        &self,
        group_id: &str,
        rule: &GroupIngress,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
    fn delete_security_group(&self, group_id: &str) -> impl Future<Output = Result<(), AwsError>> + Send;
    fn tag_security_group(&self, group_id: &str, tags: &[Tag]) -> impl Future<Output = Result<(), AwsError>> + Send;
    /// The dashboards whose names start with `prefix`, with their bodies (read again only
    /// when one changed).
    fn list_dashboards(&self, prefix: &str) -> impl Future<Output = Result<Vec<LiveDashboard>, AwsError>> + Send;
    fn put_dashboard(&self, name: &str, body: &serde_json::Value) -> impl Future<Output = Result<(), AwsError>> + Send;
    /// Drops cached revisions no service used for `idle`.
    fn forget_unused(&self, idle: std::time::Duration);
    /// The state table (history): see [`crate::aws::StateItem`].
    fn ensure_state_table(&self, table: &str) -> impl Future<Output = Result<(), AwsError>> + Send;
    fn put_state_item(&self, table: &str, item: &StateItem) -> impl Future<Output = Result<(), AwsError>> + Send;
    fn query_state_items(
        &self,
        table: &str,
        pk: &str,
        service: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<StateItem>, AwsError>> + Send;
    /// Takes (no `version`) or renews a lease: see [`Aws::write_lease`].
    fn write_lease(
        &self,
        table: &str,
        pk: &str,
        holder: &str,
        version: Option<u64>,
        now_ms: u64,
        expires_ms: u64,
    ) -> impl Future<Output = Result<Option<u64>, AwsError>> + Send;
    fn release_lease(
        &self,
        table: &str,
        pk: &str,
        holder: &str,
        version: u64,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
}

impl Cloud for Aws {
    async fn account_id(&self) -> Result<String, AwsError> {
        Aws::account_id(self).await
    }
    async fn verify(&self, req: &VerifyRequest, fresh: bool) -> Verified {
        Aws::verify(self, req, fresh).await
    }
    async fn describe_services(
        &self,
        cluster: &str,
        names: &[String],
    ) -> Result<BTreeMap<String, LiveService>, AwsError> {
        Aws::describe_services(self, cluster, names).await
    }
    async fn describe_services_since(
        &self,
        cluster: &str,
        names: &[String],
        known: Option<Digest>,
    ) -> Result<Answer<BTreeMap<String, LiveService>>, AwsError> {
        Aws::describe_services_since(self, cluster, names, known).await
    }
    async fn describe_scalable_targets(
        &self,
        resource_ids: &[String],
    ) -> Result<BTreeMap<String, LiveScalableTarget>, AwsError> {
        Aws::describe_scalable_targets(self, resource_ids).await
    }
    async fn describe_scaling_policies(
        &self,
        resource_ids: &BTreeSet<String>,
    ) -> Result<BTreeMap<String, Vec<LivePolicy>>, AwsError> {
        Aws::describe_scaling_policies(self, resource_ids).await
    }
    async fn describe_task_definition(&self, id: &str) -> Result<Option<Arc<LiveTaskDefinition>>, AwsError> {
        Aws::describe_task_definition(self, id).await
    }
    async fn recent_task_definitions(&self, family: &str) -> Result<Vec<Arc<LiveTaskDefinition>>, AwsError> {
        Aws::recent_task_definitions(self, family).await
    }
    async fn register_task_definition(&self, td: &TaskDefinition) -> Result<String, AwsError> {
        Aws::register_task_definition(self, td).await
    }
    async fn create_service(&self, s: &ServiceSettings, revision: &str, count: i32) -> Result<LiveService, AwsError> {
        Aws::create_service(self, s, revision, count).await
    }
    async fn update_service(&self, s: &ServiceSettings, revision: &str, set: bool) -> Result<LiveService, AwsError> {
        Aws::update_service(self, s, revision, set).await
    }
    async fn run_task(
        &self,
        settings: &ServiceSettings,
        task_definition: &str,
        container: &str,
        command: &[String],
        started_by: &str,
    ) -> Result<String, AwsError> {
        Aws::run_task(self, settings, task_definition, container, command, started_by).await
    }
    async fn describe_task(
        &self,
        cluster: &str,
        arn: &str,
        container: &str,
    ) -> Result<Option<crate::aws::TaskState>, AwsError> {
        Aws::describe_task(self, cluster, arn, container).await
    }
    async fn describe_service_deployment(
        &self,
        arn: &str,
    ) -> Result<Option<crate::core::live::ServiceDeployment>, AwsError> {
        Aws::describe_service_deployment(self, arn).await
    }
    async fn scale_service(&self, cluster: &str, service: &str, count: i32) -> Result<(), AwsError> {
        Aws::scale_service(self, cluster, service, count).await
    }
    async fn list_services(&self, cluster: &str) -> Result<Vec<String>, AwsError> {
        Aws::list_services(self, cluster).await
    }
    async fn delete_service(&self, cluster: &str, service: &str) -> Result<(), AwsError> {
        Aws::delete_service(self, cluster, service).await
    }
    async fn tag_resource(&self, arn: &str, tags: &[Tag]) -> Result<(), AwsError> {
        Aws::tag_resource(self, arn, tags).await
    }
    async fn untag_resource(&self, arn: &str, keys: &[&str]) -> Result<(), AwsError> {
        Aws::untag_resource(self, arn, keys).await
    }
    async fn register_scalable_target(&self, t: &ScalableTarget) -> Result<(), AwsError> {
        Aws::register_scalable_target(self, t).await
    }
    async fn put_scaling_policy(&self, p: &ScalingPolicy) -> Result<(), AwsError> {
        Aws::put_scaling_policy(self, p).await
    }
    async fn delete_scaling_policy(&self, name: &str, resource_id: &str) -> Result<(), AwsError> {
        Aws::delete_scaling_policy(self, name, resource_id).await
    }
    async fn deregister_scalable_target(&self, resource_id: &str) -> Result<(), AwsError> {
        Aws::deregister_scalable_target(self, resource_id).await
    }
    async fn put_metric_data(&self, namespace: &str, data: &[Datum]) -> Result<usize, AwsError> {
        Aws::put_metric_data(self, namespace, data).await
    }
    fn forget_unused(&self, idle: std::time::Duration) {
        self.forget_task_definitions_unused_for(idle)
    }
    async fn listener_load_balancer(&self, listener_arn: &str) -> Result<LoadBalancerInfo, AwsError> {
        Aws::listener_load_balancer(self, listener_arn).await
    }
    async fn describe_rules(&self, listener_arn: &str) -> Result<Vec<LiveRule>, AwsError> {
        Aws::describe_rules(self, listener_arn).await
    }
    async fn describe_target_groups(&self, vpc_id: &str) -> Result<Vec<LiveTargetGroup>, AwsError> {
        Aws::describe_target_groups(self, vpc_id).await
    }
    async fn create_target_group(&self, tg: &TargetGroup) -> Result<String, AwsError> {
        Aws::create_target_group(self, tg).await
    }
    async fn modify_target_group(&self, arn: &str, tg: &TargetGroup) -> Result<(), AwsError> {
        Aws::modify_target_group(self, arn, tg).await
    }
    async fn delete_target_group(&self, arn: &str) -> Result<(), AwsError> {
        Aws::delete_target_group(self, arn).await
    }
    async fn create_rule(&self, rule: &ListenerRule, priority: i32, forward_to: &[String]) -> Result<String, AwsError> {
        Aws::create_rule(self, rule, priority, forward_to).await
    }
    async fn modify_rule(&self, arn: &str, rule: &ListenerRule, forward_to: Option<&[String]>) -> Result<(), AwsError> {
        Aws::modify_rule(self, arn, rule, forward_to).await
    }
    async fn delete_rule(&self, arn: &str) -> Result<(), AwsError> {
        Aws::delete_rule(self, arn).await
    }
    async fn tag_elb_resource(&self, arn: &str, tags: &[Tag]) -> Result<(), AwsError> {
        Aws::tag_elb_resource(self, arn, tags).await
    }
    async fn list_alias_records(&self, zone_id: &str) -> Result<Vec<LiveRecord>, AwsError> {
        Aws::list_alias_records(self, zone_id).await
    }
    async fn change_alias_record(
        &self,
        zone_id: &str,
        name: &str,
        alias_dns_name: &str,
        alias_zone_id: &str,
        delete: bool,
    ) -> Result<(), AwsError> {
        Aws::change_alias_record(self, zone_id, name, alias_dns_name, alias_zone_id, delete).await
    }
    async fn describe_security_groups(&self, vpc_id: &str) -> Result<Vec<LiveSecurityGroup>, AwsError> {
        Aws::describe_security_groups(self, vpc_id).await
    }
    async fn create_security_group(&self, sg: &SecurityGroup) -> Result<String, AwsError> {
        Aws::create_security_group(self, sg).await
    }
    async fn authorize_group_ingress(
        &self,
        group_id: &str,
        rule: &GroupIngress,
        description: &str,
    ) -> Result<(), AwsError> {
        Aws::authorize_group_ingress(self, group_id, rule, description).await
    }
    async fn revoke_group_ingress(&self, group_id: &str, rule: &GroupIngress) -> Result<(), AwsError> {
        Aws::revoke_group_ingress(self, group_id, rule).await
    }
    async fn delete_security_group(&self, group_id: &str) -> Result<(), AwsError> {
        Aws::delete_security_group(self, group_id).await
    }
    async fn tag_security_group(&self, group_id: &str, tags: &[Tag]) -> Result<(), AwsError> {
        Aws::tag_security_group(self, group_id, tags).await
    }
    async fn list_dashboards(&self, prefix: &str) -> Result<Vec<LiveDashboard>, AwsError> {
        Aws::list_dashboards(self, prefix).await
    }
    async fn put_dashboard(&self, name: &str, body: &serde_json::Value) -> Result<(), AwsError> {
        Aws::put_dashboard(self, name, body).await
    }
    async fn ensure_state_table(&self, table: &str) -> Result<(), AwsError> {
        Aws::ensure_state_table(self, table).await
    }
    async fn put_state_item(&self, table: &str, item: &StateItem) -> Result<(), AwsError> {
        Aws::put_state_item(self, table, item).await
    }
    async fn query_state_items(
        &self,
        table: &str,
        pk: &str,
        service: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StateItem>, AwsError> {
        Aws::query_state_items(self, table, pk, service, limit).await
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
        Aws::write_lease(self, table, pk, holder, version, now_ms, expires_ms).await
    }
    async fn release_lease(&self, table: &str, pk: &str, holder: &str, version: u64) -> Result<(), AwsError> {
        Aws::release_lease(self, table, pk, holder, version).await
    }
}

/// Makes the [`Cloud`] of an AWS target (the top-level `aws:`, or an environment's),
/// again when its settings change.
pub trait Connect: Send + Sync + 'static {
    type Cloud: Cloud;
    fn connect(
        &self,
        aws: &crate::core::config::AwsConfig,
        stats: Arc<crate::aws::RequestStats>,
    ) -> impl Future<Output = Arc<Self::Cloud>> + Send;
}

/// The SDK clients, from the default credential chain.
pub struct ConnectAws;

impl Connect for ConnectAws {
    type Cloud = Aws;
    async fn connect(&self, aws: &crate::core::config::AwsConfig, stats: Arc<crate::aws::RequestStats>) -> Arc<Aws> {
        Arc::new(Aws::connect(aws, stats).await)
    }
}
