//! ECS: services ten at a time, task definitions cached by ARN, and the writes.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_ecs::types as ecs;
use futures::StreamExt as _;

use super::answers::{Answer, Digest, Since};
use super::convert::{self, ecs_tags};
use super::{Aws, AwsError, classify};
use crate::core::desired::{ServiceSettings, Tag, TaskDefinition, tags};
use crate::core::live::{LiveService, LiveTaskDefinition};

/// DescribeServices accepts at most ten names.
pub const DESCRIBE_SERVICES_BATCH: usize = 10;
/// DescribeServices batches in flight at once.
const CONCURRENT_BATCHES: usize = 4;
/// The revisions of a family berth looks at before registering one (newest first): enough
/// for a revert or a rollback a few releases back, one ListTaskDefinitions call.
pub const RECENT_REVISIONS: usize = 5;

/// CreateService's idempotency token: the same for every attempt at creating this service
/// with this spec, so a retry after a lost answer is the same request to ECS, not a second
/// service. (36 characters at most.)
fn client_token(s: &ServiceSettings) -> String {
    use sha2::Digest as _;
    let spec_hash = s.tags.iter().find(|t| t.key == tags::SPEC_HASH).map_or("", |t| t.value.as_str());
    let digest = sha2::Sha256::digest(format!("{}/{}/{spec_hash}", s.cluster, s.service_name));
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

impl Aws {
    /// The named services of a cluster (with tags). Names not found are absent from the map.
    pub async fn describe_services(
        &self,
        cluster: &str,
        names: &[String],
    ) -> Result<std::collections::BTreeMap<String, LiveService>, AwsError> {
        let mut out = std::collections::BTreeMap::new();
        // Owned chunks: a future borrowing `names` through a closure over `&[String]` is not
        // `Send` for every lifetime, which a spawned rollout watch needs.
        let chunks: Vec<Vec<String>> = names.chunks(DESCRIBE_SERVICES_BATCH).map(<[String]>::to_vec).collect();
        let mut answers = futures::stream::iter(
            chunks.into_iter().map(|chunk| async move { self.describe_services_since(cluster, &chunk, None).await }),
        )
        .buffered(CONCURRENT_BATCHES);
        // Each answer is converted as it comes: the SDK's structures (events, deployments)
        // of a thousand services are never held at once.
        while let Some(answer) = answers.next().await {
            if let Answer::New { value, .. } = answer? {
                out.extend(value);
            }
        }
        Ok(out)
    }

    /// At most ten named services of a cluster (with tags; a name not found, or every name
    /// of a cluster not found, is absent), unless the answer is the one digested as
    /// `known`: then [`Answer::Same`], not decoded (see `aws/answers.rs`).
    pub async fn describe_services_since(
        &self,
        cluster: &str,
        names: &[String],
        known: Option<Digest>,
    ) -> Result<Answer<std::collections::BTreeMap<String, LiveService>>, AwsError> {
        debug_assert!(names.len() <= DESCRIBE_SERVICES_BATCH);
        let since = Since::new(known);
        let resp = self
            .ecs
            .describe_services()
            .cluster(cluster)
            .set_services(Some(names.to_vec()))
            .include(ecs::ServiceField::Tags)
            .customize()
            .interceptor(since.clone())
            .send()
            .await;
        let resp = match resp {
            Ok(r) => r,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_cluster_not_found_exception()) => {
                return Ok(Answer::New { value: Default::default(), digest: None });
            }
            Err(e) => return Err(classify("DescribeServices", e)),
        };
        let services = resp.services().iter().map(convert::service_from_sdk);
        Ok(since.answer(services.map(|s| (s.settings.service_name.clone(), s)).collect()))
    }

    /// A task definition by ARN (cached: revisions never change) or by family (newest
    /// ACTIVE revision; not cached). `None` when it does not exist.
    pub async fn describe_task_definition(&self, id: &str) -> Result<Option<Arc<LiveTaskDefinition>>, AwsError> {
        if let Some(td) = self.td_cache.lock().expect("cache lock").get(id) {
            return Ok(Some(Arc::new(td)));
        }
        let resp = self
            .ecs
            .describe_task_definition()
            .task_definition(id)
            .include(ecs::TaskDefinitionField::Tags)
            .send()
            .await;
        let resp = match resp {
            Ok(r) => r,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_client_exception()) => return Ok(None),
            Err(e) => return Err(classify("DescribeTaskDefinition", e)),
        };
        let Some(td) = resp.task_definition() else { return Ok(None) };
        if td.status().is_some_and(|s| s.as_str() != "ACTIVE") && !id.starts_with("arn:") {
            return Ok(None);
        }
        let live = convert::task_definition_from_sdk(td, resp.tags());
        self.td_cache.lock().expect("cache lock").insert(&live);
        Ok(Some(Arc::new(live)))
    }

    /// Drops cached revisions not used for `idle` (those no service runs any more: every
    /// full reconcile uses the revision each service runs).
    pub fn forget_task_definitions_unused_for(&self, idle: std::time::Duration) {
        self.td_cache.lock().expect("cache lock").forget_unused_for(idle);
    }

    /// The family's newest ACTIVE revisions, newest first (at most [`RECENT_REVISIONS`]),
    /// each described once (revisions are cached by ARN).
    pub async fn recent_task_definitions(&self, family: &str) -> Result<Vec<Arc<LiveTaskDefinition>>, AwsError> {
        let mut out = Vec::new();
        for (_, arn) in self.list_revisions(family, RECENT_REVISIONS).await? {
            out.extend(self.describe_task_definition(&arn).await?);
        }
        Ok(out)
    }

    /// The family's newest `max` ACTIVE revisions as (number, ARN), newest first (one
    /// ListTaskDefinitions call up to 100).
    pub async fn list_revisions(&self, family: &str, max: usize) -> Result<Vec<(u32, String)>, AwsError> {
        let resp = self
            .ecs
            .list_task_definitions()
            .family_prefix(family)
            .status(ecs::TaskDefinitionStatus::Active)
            .sort(ecs::SortOrder::Desc)
            .max_results(max.clamp(1, 100) as i32)
            .send()
            .await
            .map_err(|e| classify("ListTaskDefinitions", e))?;
        // Sorted here too: moto ignores `sort` and `maxResults` (docs/testing.md).
        let mut arns: Vec<(u32, String)> = (resp.task_definition_arns().iter())
            .filter_map(|arn| {
                let (f, revision) = arn.rsplit('/').next()?.rsplit_once(':')?;
                (f == family).then_some((revision.parse().ok()?, arn.clone()))
            })
            .collect();
        arns.sort_unstable_by_key(|a| std::cmp::Reverse(a.0));
        arns.truncate(max);
        Ok(arns)
    }

    /// The revision of `family` carrying `spec_hash`, if a registration whose answer was
    /// lost made it. A request that timed out may still arrive: the family is read again
    /// over a few seconds before berth concludes it did not.
    async fn registered_meanwhile(&self, family: &str, spec_hash: Option<&str>, in_flight: bool) -> Option<String> {
        let hash = spec_hash?;
        let waits: &[u64] = if in_flight { &[0, 1, 2, 4] } else { &[0] };
        for &secs in waits {
            tokio::time::sleep(Duration::from_secs(secs)).await;
            if let Ok(recent) = self.recent_task_definitions(family).await
                && let Some(found) = recent.iter().find(|r| r.tag(tags::SPEC_HASH) == Some(hash))
            {
                return Some(found.arn.clone());
            }
        }
        None
    }

    /// Registers a revision; returns its ARN. RegisterTaskDefinition is not idempotent, so
    /// the SDK does not retry it: berth does, throttling after a pause, and a write whose
    /// outcome is unknown (no answer, a timeout, a 5xx) only after reading the family: a
    /// revision carrying this spec hash is that write (or an earlier one with the same
    /// content), and is used instead of registering another.
    pub async fn register_task_definition(&self, td: &TaskDefinition) -> Result<String, AwsError> {
        let spec_hash = td.tags.iter().find(|t| t.key == tags::SPEC_HASH).map(|t| t.value.as_str());
        let mut attempt = 0;
        loop {
            attempt += 1;
            let once = aws_sdk_ecs::config::Builder::default()
                .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(1));
            let sent = convert::register_input(&self.ecs, td)?.customize().config_override(once).send().await;
            // A timed-out request may still be on its way and be carried out later.
            let in_flight = matches!(&sent, Err(aws_smithy_runtime_api::client::result::SdkError::TimeoutError(_)));
            let error = match sent {
                Ok(resp) => {
                    let td = resp
                        .task_definition()
                        .ok_or_else(|| AwsError::other("RegisterTaskDefinition", "no task definition in the answer"))?;
                    let live = convert::task_definition_from_sdk(td, resp.tags());
                    self.td_cache.lock().expect("cache lock").insert(&live);
                    return Ok(live.arn);
                }
                Err(e) => classify("RegisterTaskDefinition", e),
            };
            match &error {
                AwsError::Unavailable { .. } => {
                    if let Some(arn) = self.registered_meanwhile(&td.family, spec_hash, in_flight).await {
                        tracing::debug!(revision = %arn, error = %error, "the registration's answer was lost; its revision exists");
                        return Ok(arn);
                    }
                }
                AwsError::Throttled { .. } => {}
                _ => return Err(error),
            }
            if attempt >= self.max_attempts {
                return Err(error);
            }
            let pause = Duration::from_millis(200 << attempt.min(6)).mul_f64(0.5 + rand::random::<f64>() / 2.0);
            tokio::time::sleep(pause).await;
        }
    }

    pub async fn create_service(
        &self,
        s: &ServiceSettings,
        revision: &str,
        desired_count: i32,
    ) -> Result<LiveService, AwsError> {
        let mut req = self
            .ecs
            .create_service()
            .cluster(&s.cluster)
            .service_name(&s.service_name)
            .task_definition(revision)
            .desired_count(desired_count)
            .set_launch_type(s.launch_type.as_deref().map(ecs::LaunchType::from))
            .set_platform_version(s.platform_version.clone())
            .set_propagate_tags(s.propagate_tags.as_deref().map(ecs::PropagateTags::from))
            .set_enable_ecs_managed_tags(s.enable_ecs_managed_tags)
            .set_tags(Some(ecs_tags(&s.tags)))
            .set_enable_execute_command(s.enable_execute_command)
            .client_token(client_token(s));
        if let Some(lbs) = s.load_balancers.as_deref().filter(|l| !l.is_empty()) {
            req = req.set_load_balancers(Some(convert::load_balancers_to_sdk(lbs)));
        }
        if let Some(d) = &s.deployment_configuration {
            req = req.deployment_configuration(convert::deployment_to_sdk(d));
        }
        if let Some(n) = &s.network_configuration {
            req = req.network_configuration(convert::network_to_sdk(n)?);
        }
        let resp = req.send().await.map_err(|e| classify("CreateService", e))?;
        let svc = resp.service().ok_or_else(|| AwsError::other("CreateService", "no service in the answer"))?;
        Ok(convert::service_from_sdk(svc))
    }

    /// Points the service at `revision` and applies its settings. The desired count is
    /// sent only when berth owns it (no autoscaling).
    /// UpdateService of the desired count alone: nothing else is sent, so ECS starts no
    /// deployment (a prune scaling a service to 0 before deleting it).
    pub async fn scale_service(&self, cluster: &str, service: &str, count: i32) -> Result<(), AwsError> {
        (self.ecs.update_service())
            .cluster(cluster)
            .service(service)
            .desired_count(count)
            .send()
            .await
            .map_err(|e| classify("UpdateService", e))?;
        Ok(())
    }

    pub async fn update_service(
        &self,
        s: &ServiceSettings,
        revision: &str,
        set_count: bool,
    ) -> Result<LiveService, AwsError> {
        let mut req = self
            .ecs
            .update_service()
            .cluster(&s.cluster)
            .service(&s.service_name)
            .task_definition(revision)
            .set_platform_version(s.platform_version.clone())
            .set_propagate_tags(s.propagate_tags.as_deref().map(ecs::PropagateTags::from))
            .set_enable_ecs_managed_tags(s.enable_ecs_managed_tags)
            // Off unless git turns it on: a console's `true` is drift like any other.
            .enable_execute_command(s.enable_execute_command.unwrap_or(false));
        // An empty list detaches the service from its target groups.
        if let Some(lbs) = &s.load_balancers {
            req = req.set_load_balancers(Some(convert::load_balancers_to_sdk(lbs)));
        }
        if set_count {
            req = req.set_desired_count(s.desired_count);
        }
        if let Some(d) = &s.deployment_configuration {
            req = req.deployment_configuration(convert::deployment_to_sdk(d));
        }
        if let Some(n) = &s.network_configuration {
            req = req.network_configuration(convert::network_to_sdk(n)?);
        }
        let resp = req.send().await.map_err(|e| classify("UpdateService", e))?;
        let svc = resp.service().ok_or_else(|| AwsError::other("UpdateService", "no service in the answer"))?;
        Ok(convert::service_from_sdk(svc))
    }

    /// The names of a cluster's services (ListServices, 100 a page).
    pub async fn list_services(&self, cluster: &str) -> Result<Vec<String>, AwsError> {
        let mut names = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let resp =
                self.ecs.list_services().cluster(cluster).set_next_token(next.take()).max_results(100).send().await;
            let resp = match resp {
                Ok(r) => r,
                Err(e) if e.as_service_error().is_some_and(|s| s.is_cluster_not_found_exception()) => return Ok(names),
                Err(e) => return Err(classify("ListServices", e)),
            };
            names.extend(resp.service_arns().iter().filter_map(|a| a.rsplit('/').next()).map(str::to_string));
            match resp.next_token() {
                Some(t) if !t.is_empty() => next = Some(t.to_string()),
                _ => return Ok(names),
            }
        }
    }

    /// Deletes a service (scaled to zero first by the caller).
    pub async fn delete_service(&self, cluster: &str, service: &str) -> Result<(), AwsError> {
        self.ecs
            .delete_service()
            .cluster(cluster)
            .service(service)
            .force(true)
            .send()
            .await
            .map_err(|e| classify("DeleteService", e))?;
        Ok(())
    }

    pub async fn untag_resource(&self, arn: &str, keys: &[&str]) -> Result<(), AwsError> {
        self.ecs
            .untag_resource()
            .resource_arn(arn)
            .set_tag_keys(Some(keys.iter().map(|k| k.to_string()).collect()))
            .send()
            .await
            .map_err(|e| classify("UntagResource", e))?;
        Ok(())
    }

    pub async fn tag_resource(&self, arn: &str, tags: &[Tag]) -> Result<(), AwsError> {
        self.ecs
            .tag_resource()
            .resource_arn(arn)
            .set_tags(Some(ecs_tags(tags)))
            .send()
            .await
            .map_err(|e| classify("TagResource", e))?;
        Ok(())
    }
}

/// Task definition revisions by ARN (revisions never change), each with when it was last
/// used, so that revisions no service runs any more can be dropped.
///
/// Each is kept as its JSON: one allocation of ~1 KiB where the parsed revision is a few
/// hundred small ones (~4 KiB with the allocator's overhead), so the cache of a thousand
/// services is ~1 MB, not ~4 (docs/benchmarks.md, footprint). A hit parses it again, in
/// microseconds.
#[derive(Default)]
pub(crate) struct TaskDefinitionCache {
    revisions: std::collections::HashMap<String, (Box<[u8]>, std::time::Instant)>,
}

impl TaskDefinitionCache {
    fn get(&mut self, arn: &str) -> Option<LiveTaskDefinition> {
        let (json, used) = self.revisions.get_mut(arn)?;
        match serde_json::from_slice(json) {
            Ok(td) => {
                *used = std::time::Instant::now();
                Some(td)
            }
            Err(e) => {
                // Cannot happen for what `insert` wrote; asking AWS again is always right.
                tracing::warn!(arn, error = %e, "cached task definition unreadable; dropping it");
                self.revisions.remove(arn);
                None
            }
        }
    }

    fn insert(&mut self, td: &LiveTaskDefinition) {
        let json = serde_json::to_vec(td).expect("a task definition serializes");
        // Every field must survive the round trip, or each hit would ask AWS again.
        debug_assert_eq!(serde_json::from_slice::<LiveTaskDefinition>(&json).ok().as_ref(), Some(td));
        self.revisions.insert(td.arn.clone(), (json.into_boxed_slice(), std::time::Instant::now()));
    }

    fn forget_unused_for(&mut self, idle: std::time::Duration) {
        let now = std::time::Instant::now();
        self.revisions.retain(|_, (_, used)| now.duration_since(*used) < idle);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::testing;

    #[test]
    fn cached_revisions_read_back_equal() {
        let mut td = testing::live_task_definition(
            testing::revision_arn(7),
            testing::desired().build().task_definition.as_ref().clone(),
        );
        td.extras = vec!["volumes".into()];
        let mut cache = TaskDefinitionCache::default();
        cache.insert(&td);
        assert_eq!(cache.get(&td.arn), Some(td.clone()));
        assert_eq!(cache.get(&testing::revision_arn(8)), None);
        cache.forget_unused_for(std::time::Duration::ZERO);
        assert_eq!(cache.get(&td.arn), None);
    }
}

/// A one-off task's state, as DescribeTasks tells it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaskState {
    /// PROVISIONING, PENDING, RUNNING, …, STOPPED.
    pub last_status: String,
    pub stopped_reason: Option<String>,
    /// The named container's exit code, once it exited.
    pub exit_code: Option<i32>,
    /// Why the container stopped, when ECS says (an image that cannot be pulled, …).
    pub container_reason: Option<String>,
}

impl Aws {
    /// RunTask: one Fargate task of `task_definition` with the service's network settings,
    /// `command` instead of the container's, started by `started_by`. A task ECS cannot
    /// place (the answer's `failures`) is an error naming the reason.
    pub async fn run_task(
        &self,
        settings: &ServiceSettings,
        task_definition: &str,
        container: &str,
        command: &[String],
        started_by: &str,
    ) -> Result<String, AwsError> {
        let overrides = ecs::TaskOverride::builder()
            .container_overrides(
                ecs::ContainerOverride::builder().name(container).set_command(Some(command.to_vec())).build(),
            )
            .build();
        let mut req = self
            .ecs
            .run_task()
            .cluster(&settings.cluster)
            .task_definition(task_definition)
            .count(1)
            .set_launch_type(settings.launch_type.as_deref().map(ecs::LaunchType::from))
            .set_platform_version(settings.platform_version.clone())
            .overrides(overrides)
            .started_by(started_by);
        if let Some(n) = &settings.network_configuration {
            req = req.network_configuration(convert::network_to_sdk(n)?);
        }
        let resp = req.send().await.map_err(|e| classify("RunTask", e))?;
        if let Some(f) = resp.failures().first() {
            let why = [f.reason(), f.detail()].into_iter().flatten().collect::<Vec<_>>().join(": ");
            return Err(AwsError::other("RunTask", format!("the task could not be placed: {why}")));
        }
        resp.tasks()
            .first()
            .and_then(|t| t.task_arn())
            .map(str::to_string)
            .ok_or_else(|| AwsError::other("RunTask", "no task in the answer"))
    }

    /// DescribeTasks of one task; `None` when ECS no longer knows it.
    pub async fn describe_task(
        &self,
        cluster: &str,
        arn: &str,
        container: &str,
    ) -> Result<Option<TaskState>, AwsError> {
        let resp = self
            .ecs
            .describe_tasks()
            .cluster(cluster)
            .tasks(arn)
            .send()
            .await
            .map_err(|e| classify("DescribeTasks", e))?;
        Ok(resp.tasks().first().map(|t| {
            let c = t.containers().iter().find(|c| c.name() == Some(container));
            TaskState {
                last_status: t.last_status().unwrap_or_default().to_string(),
                stopped_reason: t.stopped_reason().map(str::to_string),
                exit_code: c.and_then(|c| c.exit_code()),
                container_reason: c.and_then(|c| c.reason()).map(str::to_string),
            }
        }))
    }

    /// DescribeServiceDeployments of one deployment (`None`: ECS does not know it).
    pub async fn describe_service_deployment(
        &self,
        arn: &str,
    ) -> Result<Option<crate::core::live::ServiceDeployment>, AwsError> {
        let resp = (self.ecs.describe_service_deployments())
            .service_deployment_arns(arn)
            .send()
            .await
            .map_err(|e| classify("DescribeServiceDeployments", e))?;
        Ok(resp.service_deployments().first().map(|d| crate::core::live::ServiceDeployment {
            arn: d.service_deployment_arn().unwrap_or(arn).to_string(),
            status: d.status().map(|s| s.as_str().to_string()).unwrap_or_default(),
            status_reason: d.status_reason().map(str::to_string),
            lifecycle_stage: d.lifecycle_stage().map(|s| s.as_str().to_string()),
        }))
    }
}
