//! The act phase: one attempt at each plan, dependencies first, independent services in
//! parallel; then the rollout wait (or its hand-off to the daemon).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use futures::StreamExt as _;
use tokio::sync::Semaphore;

use super::decide::desired;
use super::table::{Stage, Table};
use super::{EnvInput, Failure, Hold, Outcome, RolloutWatch};
use crate::aws::AwsError;
use crate::core::desired::{Desired, Tag, tags};
use crate::core::live::LiveService;
use crate::core::plan::{Action, Outputs, Plan};
use crate::core::rollout::{Rollout, rollout_state};
use crate::engine::cloud::Cloud;
use crate::engine::history::{self, Entry, Trigger};

/// Executes the table's plans with something to do, dependency layer by layer.
pub async fn act<C: Cloud>(cloud: &C, table: &mut Table, input: &EnvInput<'_>) {
    let semaphore =
        input.semaphore.clone().unwrap_or_else(|| Arc::new(Semaphore::new(input.config.concurrency.max(1))));
    let fenced = || input.fence.is_some_and(|may_write| !may_write());
    for layer in dependency_layers(table) {
        if fenced() {
            for name in &layer {
                if table.rows.get(name).is_some_and(|r| r.stage.is_planned()) {
                    table.finish(name, Outcome::Held(Hold::NotLeader));
                }
            }
            continue;
        }
        let runs: Vec<Run> = layer.iter().filter_map(|name| admit(table, name, input)).collect();
        // Each apply's future (SDK calls, rollout wait) is a few KiB: at most `concurrency`
        // of them exist at once (waiting for a permit of the semaphore the daemon shares
        // across environments, or running), not one per service of a commit that changes
        // a thousand.
        let results: Vec<(String, Option<Execution>)> = futures::stream::iter(runs)
            .map(|run| {
                let (sem, cancel) = (semaphore.clone(), input.cancel.clone());
                async move {
                    let _permit = tokio::select! {
                        permit = sem.acquire() => permit.expect("semaphore open"),
                        () = cancel.cancelled() => return (run.name, None),
                    };
                    if cancel.is_cancelled() {
                        return (run.name, None);
                    }
                    if fenced() {
                        tracing::warn!(service = %run.name, "the lease is no longer trusted: not applying");
                        return (run.name, Some(Execution { fenced: true, ..Execution::default() }));
                    }
                    let mut ex = execute(cloud, input, &run).await;
                    record_history(cloud, input, &run, &mut ex).await;
                    (run.name, Some(ex))
                }
            })
            .buffer_unordered(input.config.concurrency.max(1))
            .collect()
            .await;
        for (name, result) in results {
            record(table, &name, result);
        }
    }
}

/// A plan about to be executed.
struct Run {
    name: String,
    desired: Arc<Desired>,
    plan: Box<Plan>,
    spec_hash: String,
    /// State tags of another spec on the live service (a hold, a pin): lifted once this one
    /// applies.
    lift: Vec<&'static str>,
    /// The revision the live service ran when planned (a move to another one is rolled out).
    live_revision: Option<String>,
    /// The spec hash the live service was applied with (equal to this one: a drift heal).
    live_spec_hash: Option<String>,
    commit: String,
}

/// The run for `name`, if its plan has something to do and nothing stops it now (a
/// dependency that did not converge, the gate); otherwise its outcome says why not.
fn admit(table: &mut Table, name: &str, input: &EnvInput<'_>) -> Option<Run> {
    let row = table.rows.get(name)?;
    let Stage::Planned { spec, rendering, plan, .. } = &row.stage else { return None };
    if plan.actions.is_empty() || !plan.blockers.is_empty() {
        return None;
    }
    // Its rollout of this very spec is being watched: the watch decides, not a re-apply.
    if input.watching.is_some_and(|w| w.get(name) == Some(&rendering.spec_hash)) {
        table.finish(name, Outcome::Progressing);
        return None;
    }
    if let Some(reason) = waiting_on(table, &spec.depends_on) {
        table.finish(name, Outcome::Skipped(reason));
        return None;
    }
    if let Some(gate) = input.gate
        && let Err(hold) = gate(name, &rendering.spec_hash)
    {
        table.finish(name, Outcome::Held(hold));
        return None;
    }
    let row = table.rows.get_mut(name)?;
    let live_revision = row.report.task_definition.clone();
    let live_spec_hash = row.report.live_spec_hash.clone();
    let commit = row.report.commit.clone().unwrap_or_default();
    let Stage::Planned { rendering, plan, lift, .. } = std::mem::take(&mut row.stage) else { return None };
    row.stage = Stage::Done;
    Some(Run {
        name: name.to_string(),
        desired: desired(&rendering).clone(),
        spec_hash: rendering.spec_hash,
        plan,
        lift,
        live_revision,
        live_spec_hash,
        commit,
    })
}

/// Why the dependencies `deps` stop a dependent now, if they do: one did not converge
/// (with its first diagnostic when its spec is invalid), or is still rolling out.
/// Why a service with dependencies `deps` must wait, if it must: a dependency did not
/// converge in this reconcile, or is rolling out. (A dependency being watched is never
/// settled, so every cycle's table has it.)
fn waiting_on(table: &Table, deps: &[String]) -> Option<String> {
    let failed: Vec<String> = deps
        .iter()
        .filter_map(|d| {
            let r = table.report(d)?;
            r.outcome.is_failure().then(|| match r.outcome.failure().and_then(Failure::first_diagnostic) {
                Some(diag) => format!("{d} ({diag})"),
                None => d.clone(),
            })
        })
        .collect();
    if !failed.is_empty() {
        return Some(format!("dependency {} did not converge", failed.join(", ")));
    }
    let rolling: Vec<&str> = deps
        .iter()
        .filter(|d| table.report(d).is_some_and(|r| r.outcome == Outcome::Progressing))
        .map(String::as_str)
        .collect();
    (!rolling.is_empty()).then(|| format!("waiting for the rollout of {}", rolling.join(", ")))
}

fn record(table: &mut Table, name: &str, result: Option<Execution>) {
    let Some(r) = table.rows.get_mut(name).map(|r| &mut r.report) else { return };
    let Some(ex) = result else {
        r.outcome = Outcome::Held(Hold::ShuttingDown);
        return;
    };
    r.applied = ex.applied;
    r.trigger = ex.trigger;
    if ex.image.is_some() {
        r.image = ex.image;
    }
    if let Some(td) = ex.task_definition {
        r.task_definition = Some(td);
    }
    r.outcome = match ex.error {
        None if ex.fenced => Outcome::Held(Hold::NotLeader),
        Some(f) => Outcome::Failed(f),
        None if ex.interrupted => Outcome::OutOfSync,
        None if ex.rollout.is_some() => Outcome::Progressing,
        None => Outcome::Applied,
    };
    r.rollout = ex.rollout;
}

/// Records an attempt in the history table (when there is one): what it applied, why, and
/// (when waited for here) how its rollout ended; a detached rollout's watch completes it.
async fn record_history<C: Cloud>(cloud: &C, input: &EnvInput<'_>, run: &Run, ex: &mut Execution) {
    let trigger = if run.live_spec_hash.as_deref() == Some(run.spec_hash.as_str()) {
        Trigger::DriftHeal { fields: run.plan.drift.iter().map(|c| c.path.clone()).collect() }
    } else {
        input.trigger.clone().unwrap_or(Trigger::GitChange)
    };
    ex.trigger = Some(trigger.clone());
    ex.image = run.desired.task_definition.container_definitions.first().map(|c| c.image.clone());
    let Some(state) = &input.config.state else { return };
    if ex.applied.is_empty() && ex.error.is_none() {
        return;
    }
    let (result, error) = match &ex.error {
        Some(Failure::Rollout(reason)) => ("rollout_failed", Some(format!("rollout failed: {reason}"))),
        Some(f) => ("failed", Some(f.to_string())),
        None if ex.rollout.is_some() => ("applied", None),
        None if ex.interrupted => ("interrupted", None),
        // Not waited for: applied, not known to have rolled out.
        None if !input.env.rollout_wait => ("applied", None),
        None => ("completed", None),
    };
    let entry = Entry {
        time: ex.started,
        env: input.env.name.clone(),
        service: run.name.clone(),
        commit: run.commit.clone(),
        spec_hash: run.spec_hash.clone(),
        revision: ex.task_definition.clone().or_else(|| run.live_revision.clone()).unwrap_or_default(),
        image: run.desired.task_definition.container_definitions.first().map(|c| c.image.clone()).unwrap_or_default(),
        trigger,
        result: result.to_string(),
        duration_s: (result != "applied").then(|| (history::unix_now() - ex.started).max(0.0)),
        by: "berth".to_string(),
        error,
        scaling: run.desired.scaling.as_ref().map(|s| s.scalable_target.clone()),
    };
    history::put(cloud, state, &entry).await;
    if let Some(watch) = &mut ex.rollout {
        watch.history = Some(Box::new((state.clone(), entry)));
    }
}

#[derive(Default)]
struct Execution {
    /// Not attempted: the lease is no longer trusted.
    fenced: bool,
    /// Unix seconds when the attempt started.
    started: f64,
    trigger: Option<Trigger>,
    image: Option<String>,
    interrupted: bool,
    applied: Vec<String>,
    task_definition: Option<String>,
    error: Option<Failure>,
    /// The rollout left to watch (detached).
    rollout: Option<RolloutWatch>,
}

/// Runs the before-deploy task of `revision` and waits for it (looked at every
/// `rollout.poll`, for at most `timeout_s`): `Ok` with what ran when it exited 0; otherwise
/// an error naming its exit code or why it stopped, and its log stream.
async fn before_deploy<C: Cloud>(
    cloud: &C,
    input: &EnvInput<'_>,
    settings: &crate::core::desired::ServiceSettings,
    revision: &str,
    command: &[String],
    timeout_s: u64,
) -> Result<String, crate::aws::AwsError> {
    let container = &settings.service_name;
    let task = cloud.run_task(settings, revision, container, command, "berth-before-deploy").await?;
    let id = task.rsplit('/').next().unwrap_or(&task).to_string();
    tracing::info!(env = %input.env.name, service = %container, task = %id, command = %command.join(" "), "before-deploy task started");
    let fail = |why: String| crate::aws::AwsError::Other { operation: "before_deploy".into(), message: why };
    let poll = input.env.rollout_poll;
    let end = crate::engine::task::wait(
        cloud,
        &settings.cluster,
        &task,
        container,
        poll,
        std::time::Duration::from_secs(timeout_s),
        &input.cancel,
    )
    .await?;
    use crate::engine::task::TaskEnd;
    match end {
        TaskEnd::Exited { code: 0, .. } => Ok(format!("before-deploy task {id} exited 0")),
        TaskEnd::Exited { code, reason } => Err(fail(format!(
            "the before-deploy task {id} exited {code}{}; the service was not updated (logs: stream {container}/{container}/{id})",
            reason.map(|r| format!(" ({r})")).unwrap_or_default(),
        ))),
        TaskEnd::NotStarted(why) => Err(fail(format!(
            "the before-deploy task {id} stopped without running: {why}; the service was not updated"
        ))),
        TaskEnd::Gone => Err(fail(format!("the before-deploy task {id} is gone"))),
        TaskEnd::TimedOut => Err(fail(format!(
            "the before-deploy task {id} did not stop within {timeout_s} s; the service was not updated (the task runs on)"
        ))),
        TaskEnd::Cancelled => Err(fail(format!("task {id}: berth stopped while it ran"))),
    }
}

/// One attempt at a plan. Every step is idempotent against a re-plan: a revision
/// registered before a failed update is found and reused next time.
async fn execute<C: Cloud>(cloud: &C, input: &EnvInput<'_>, run: &Run) -> Execution {
    let mut ex = Execution { started: history::unix_now(), ..Execution::default() };
    let mut outputs = Outputs::default();
    let mut registered: Option<String> = None;
    let mut deployed: Option<String> = None;
    let mut service_arn: Option<String> = None;
    // A before-deploy task that succeeded for a service being created: recorded once it is.
    let mut before_deploy_done: Option<String> = None;
    for (id, action) in run.plan.actions_with_ids() {
        // Every write is fenced: a leader whose lease is no longer trusted stops here.
        if input.fence.is_some_and(|may_write| !may_write()) {
            tracing::warn!(service = %run.name, "the lease is no longer trusted: stopping this apply");
            ex.fenced = true;
            return ex;
        }
        let result = match action {
            Action::RegisterTaskDefinition { task_definition } => {
                cloud.register_task_definition(task_definition).await.map(|arn| {
                    outputs.record(id, arn.clone());
                    registered = Some(arn.clone());
                    format!("registered {arn}")
                })
            }
            Action::CreateService { settings, revision, desired_count, bind } => {
                let arn = outputs.resolve(revision).unwrap_or_default().to_string();
                let settings = &crate::core::plan::bound(settings, bind, &outputs);
                cloud.create_service(settings, &arn, *desired_count).await.map(|live| {
                    deployed = Some(arn.clone());
                    service_arn = Some(live.arn);
                    format!("created service {} ({arn})", settings.service_name)
                })
            }
            Action::UpdateService { settings, revision, set_desired_count, bind } => {
                let arn = outputs.resolve(revision).unwrap_or_default().to_string();
                let settings = &crate::core::plan::bound(settings, bind, &outputs);
                cloud.update_service(settings, &arn, *set_desired_count).await.map(|after| {
                    if run.live_revision.as_deref() != Some(arn.as_str()) || registered.is_some() {
                        deployed = Some(arn.clone());
                    }
                    service_arn = Some(after.arn);
                    format!("updated service {} ({arn})", settings.service_name)
                })
            }
            Action::TagService { arn, tags } => {
                service_arn.get_or_insert_with(|| arn.clone());
                cloud.tag_resource(arn, tags).await.map(|_| "tagged service".to_string())
            }
            Action::RegisterScalableTarget { target } => cloud.register_scalable_target(target).await.map(|_| {
                format!("registered scalable target (min {}, max {})", target.min_capacity, target.max_capacity)
            }),
            Action::PutScalingPolicy { policy } => {
                cloud.put_scaling_policy(policy).await.map(|_| format!("put scaling policy {}", policy.policy_name))
            }
            Action::DeleteScalingPolicy { policy_name, resource_id } => cloud
                .delete_scaling_policy(policy_name, resource_id)
                .await
                .map(|_| format!("deleted scaling policy {policy_name}")),
            Action::DeregisterScalableTarget { resource_id } => {
                cloud.deregister_scalable_target(resource_id).await.map(|_| "deregistered scalable target".to_string())
            }
            Action::CreateTargetGroup { group } => cloud.create_target_group(group).await.map(|arn| {
                outputs.record(id, arn.clone());
                format!("created target group {arn}")
            }),
            Action::ModifyTargetGroup { arn, group } => cloud
                .modify_target_group(arn, group)
                .await
                .map(|_| format!("set the health check of target group {} to {}", group.name, group.health_check_path)),
            Action::TagElbResource { arn, tags } => {
                cloud.tag_elb_resource(arn, tags).await.map(|_| format!("tagged {arn}"))
            }
            Action::DeleteTargetGroup { arn, name } => {
                cloud.delete_target_group(arn).await.map(|_| format!("deleted target group {name}"))
            }
            Action::CreateRule { rule, priority, forward } => {
                let groups = forward_to(forward, &outputs);
                cloud.create_rule(rule, *priority, &groups).await.map(|arn| {
                    outputs.record(id, arn.clone());
                    format!("created {} rule {} (priority {priority}): {arn}", rule.scope, rule.hosts.join(","))
                })
            }
            Action::ModifyRule { arn, rule, forward } => {
                let groups = forward.as_ref().map(|f| forward_to(f, &outputs));
                cloud
                    .modify_rule(arn, rule, groups.as_deref())
                    .await
                    .map(|_| format!("modified {} rule {}", rule.scope, rule.hosts.join(",")))
            }
            Action::DeleteRule { arn, hosts } => {
                cloud.delete_rule(arn).await.map(|_| format!("deleted rule {}", hosts.join(",")))
            }
            Action::UpsertRecord { record, dns_name, alias_zone_id } => cloud
                .change_alias_record(&record.zone_id, &record.name, dns_name, alias_zone_id, false)
                .await
                .map(|_| format!("upserted record {} → {dns_name}", record.name)),
            Action::DeleteRecord { zone_id, name, dns_name, alias_zone_id } => cloud
                .change_alias_record(zone_id, name, dns_name, alias_zone_id, true)
                .await
                .map(|_| format!("deleted record {name}")),
            Action::RunBeforeDeploy { settings, bind, revision, command, timeout_s, spec_hash, service_arn } => {
                let arn = outputs.resolve(revision).unwrap_or_default().to_string();
                let settings = &crate::core::plan::bound(settings, bind, &outputs);
                match before_deploy(cloud, input, settings, &arn, command, *timeout_s).await {
                    Ok(done) => {
                        // Recorded on the service at once: a retry of this spec (its update
                        // failed) does not run the task again.
                        if let Some(service) = service_arn {
                            let tag = Tag { key: tags::BEFORE_DEPLOY.into(), value: spec_hash.clone() };
                            if let Err(e) = cloud.tag_resource(service, &[tag]).await {
                                tracing::warn!(service = %run.name, error = %e, "cannot record the before-deploy task");
                            }
                        } else {
                            before_deploy_done = Some(spec_hash.clone());
                        }
                        Ok(done)
                    }
                    Err(e) => Err(e),
                }
            }
            Action::CreateSecurityGroup { group } => cloud.create_security_group(group).await.map(|gid| {
                outputs.record(id, gid.clone());
                format!("created security group {} ({gid})", group.group_name)
            }),
            Action::AuthorizeIngress { group, port, from, description } => {
                let (g, f) = (outputs.resolve(group).unwrap_or_default(), outputs.resolve(from).unwrap_or_default());
                let rule = crate::core::routing::GroupIngress { port: *port, from_group: f.to_string() };
                cloud
                    .authorize_group_ingress(g, &rule, description)
                    .await
                    .map(|_| format!("allowed tcp {port} into {g} from {f}"))
            }
            Action::PutDashboard { name, body, target_group, load_balancer_arn } => {
                let group = target_group.as_ref().and_then(|t| outputs.resolve(t));
                match crate::core::dashboard::bind(body, group, load_balancer_arn.as_deref()) {
                    Some(body) => cloud.put_dashboard(name, &body).await.map(|_| format!("put dashboard {name}")),
                    None => Err(crate::aws::AwsError::Other {
                        operation: "PutDashboard".into(),
                        message: format!("dashboard {name}: the target group or load balancer is not known"),
                    }),
                }
            }
            Action::RevokeIngress { group_id, rule } => cloud
                .revoke_group_ingress(group_id, rule)
                .await
                .map(|_| format!("revoked tcp {} into {group_id} from {}", rule.port, rule.from_group)),
        };
        match result {
            Ok(done) => ex.applied.push(done),
            Err(error) => {
                ex.error = Some(Failure::Aws { context: "applying", error, applying: true });
                return ex;
            }
        }
    }
    if let (Some(hash), Some(arn)) = (before_deploy_done, &service_arn) {
        let tag = Tag { key: tags::BEFORE_DEPLOY.into(), value: hash };
        if let Err(e) = cloud.tag_resource(arn, &[tag]).await {
            tracing::warn!(service = %run.name, error = %e, "cannot record the before-deploy task");
        }
    }
    ex.task_definition = deployed.clone().or(registered);
    if let (false, Some(arn)) = (run.lift.is_empty(), &service_arn) {
        // Another spec than the held or pinned one is applied: the hold, the pin is over.
        match cloud.untag_resource(arn, &run.lift).await {
            Ok(()) => ex.applied.extend(run.lift.iter().map(|t| match *t {
                tags::PINNED => "ended the pin of a rollback (git changed the service)".to_string(),
                _ => "lifted the hold of a failed rollout".to_string(),
            })),
            Err(e) => {
                tracing::warn!(service = %run.name, error = %e, tags = ?run.lift, "cannot remove berth's state tags")
            }
        }
    }
    let env = input.env;
    if let (Some(revision), true) = (deployed, env.rollout_wait) {
        let watch = RolloutWatch {
            cluster: run.desired.service.cluster.clone(),
            service: run.desired.service.service_name.clone(),
            service_arn: service_arn.unwrap_or_default(),
            revision,
            spec_hash: run.spec_hash.clone(),
            timeout: env.rollout_timeout + crate::core::rollout::scheduled(&run.desired.service),
            poll: env.rollout_poll,
            history: None,
        };
        if input.detach_rollouts {
            ex.rollout = Some(watch);
            return ex;
        }
        tokio::select! {
            result = watch.wait(cloud) => match result {
                Ok(()) => ex.applied.push("rollout completed".to_string()),
                Err(reason) => ex.error = Some(Failure::Rollout(reason)),
            },
            () = input.cancel.cancelled() => {
                ex.interrupted = true;
                ex.applied.push("stopped waiting for the rollout (shutting down)".to_string());
            }
        }
    }
    ex
}

/// The ARNs a rule forwards to, its group first.
fn forward_to(forward: &crate::core::plan::Forward, outputs: &crate::core::plan::Outputs) -> Vec<String> {
    std::iter::once(&forward.primary)
        .chain(&forward.alternate)
        .map(|r| outputs.resolve(r).unwrap_or_default().to_string())
        .collect()
}

/// Writes the hold of a failed rollout on the service, where every berth process (a
/// restarted one, another replica) reads it back with the service's tags.
pub async fn write_hold<C: Cloud>(cloud: &C, service_arn: &str, spec_hash: &str) {
    if service_arn.is_empty() {
        return;
    }
    let tag = Tag { key: tags::HELD.to_string(), value: spec_hash.to_string() };
    if let Err(e) = cloud.tag_resource(service_arn, &[tag]).await {
        tracing::warn!(service = %service_arn, error = %e, "cannot write the hold of a failed rollout (berth:held)");
    }
}

/// Follows the rollout until it completes, fails or times out. A service whose strategy
/// shifts traffic is judged by its service deployment (DescribeServiceDeployments): its
/// lifecycle stages, the bake time included, and a rollback by ECS; others (and a service
/// deployment ECS does not report) by the service's deployments.
pub async fn wait_for_rollout<C: Cloud, F>(cloud: &C, watch: &RolloutWatch, read: impl Fn() -> F) -> Result<(), String>
where
    F: std::future::Future<Output = Result<Option<LiveService>, AwsError>>,
{
    let start = Instant::now();
    let (service, timeout) = (&watch.service, watch.timeout);
    let mut stage: Option<String> = None;
    loop {
        // A read that fails says nothing about the rollout: ask again until the timeout
        // (a verdict from a throttled read would hold a healthy spec).
        match read().await {
            Ok(found) => {
                let Some(live) = found else {
                    return Err(format!("service {service} disappeared"));
                };
                let state = match (crate::core::rollout::shifts_traffic(&live), &live.current_deployment) {
                    (true, Some(arn)) => match cloud.describe_service_deployment(arn).await {
                        Ok(Some(d)) => {
                            if d.lifecycle_stage.is_some() && d.lifecycle_stage != stage {
                                tracing::info!(service = %service, deployment = %d.arn, status = %d.status,
                                    stage = d.lifecycle_stage.as_deref().unwrap_or_default(), "rollout stage");
                                stage.clone_from(&d.lifecycle_stage);
                            }
                            crate::core::rollout::deployment_state(&d, &live, &watch.revision)
                        }
                        Ok(None) => rollout_state(&live, &watch.revision),
                        // Without the service deployment (no permission for it, say), the
                        // service's deployments still tell completion and the circuit breaker.
                        Err(e) => {
                            tracing::debug!(service = %service, error = %e, "cannot read the service deployment; judging by the service's deployments");
                            rollout_state(&live, &watch.revision)
                        }
                    },
                    _ => rollout_state(&live, &watch.revision),
                };
                match state {
                    Rollout::Done => return Ok(()),
                    Rollout::Failed(reason) => return Err(reason),
                    Rollout::InProgress => {}
                }
            }
            Err(e) => tracing::debug!(service = %service, error = %e, "cannot read the rollout's state; asking again"),
        }
        if start.elapsed() >= timeout {
            let at = stage.as_deref().map(|s| format!(" (at {s})")).unwrap_or_default();
            return Err(format!("the deployment did not finish within {}{at}", humantime::format_duration(timeout)));
        }
        let left = timeout.saturating_sub(start.elapsed());
        tokio::time::sleep(watch.poll.min(left).max(Duration::from_millis(50))).await;
    }
}

/// The planned services grouped so that each group's dependencies are in earlier groups.
fn dependency_layers(table: &Table) -> Vec<Vec<String>> {
    let planned: BTreeSet<&String> = table.rows.iter().filter(|(_, r)| r.stage.is_planned()).map(|(n, _)| n).collect();
    let deps = |n: &String| table.rows[n].report.depends_on.clone();
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut left: BTreeSet<String> = planned.iter().map(|n| (*n).clone()).collect();
    let mut layers = Vec::new();
    while !left.is_empty() {
        let ready: Vec<String> =
            left.iter().filter(|n| deps(n).iter().all(|d| done.contains(d) || !planned.contains(d))).cloned().collect();
        // Cycles are rejected by validation; never spin on one anyway.
        let ready = if ready.is_empty() { left.iter().cloned().collect() } else { ready };
        for n in &ready {
            left.remove(n);
            done.insert(n.clone());
        }
        layers.push(ready);
    }
    layers
}
