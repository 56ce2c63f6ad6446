//! Reconciling one environment: resolve and verify every service, read live state in
//! batches, plan each service, and (in apply mode) execute the plans in dependency order,
//! independent services in parallel.
//!
//! One service's failure (bad YAML, a missing secret, an AWS error) never stops another.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::Semaphore;

use crate::aws::{Aws, AwsError, VerifyRequest, concurrently, lookups_image};
use crate::core::config::{Config, EnvConfig, SyncMode};
use crate::core::desired::Desired;
use crate::core::diag::{self, Diagnostic};
use crate::core::diff::{Change, NormContext};
use crate::core::live::LiveState;
use crate::core::memo::{Memo, Reused};
use crate::core::plan::{self, Action, Ownership, Plan, Revision};
use crate::core::render::{self, Lookups, Target, image_reference};
use crate::core::rollout::{Rollout, rollout_state};
use crate::core::spec::reference::Reference;
use crate::core::spec::{Repo, ServiceSpec};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Report drift only.
    Diff,
    /// Plan, print, change nothing.
    DryRun,
    /// Converge.
    Apply,
}

/// Whether (service, spec hash) may be applied now; `Err` carries the reason not.
pub type Gate<'a> = &'a (dyn Fn(&str, &str) -> Result<(), String> + Sync);

/// What a reconcile of one environment is given.
pub struct EnvInput<'a> {
    pub config: &'a Config,
    pub env: &'a EnvConfig,
    pub repo: &'a Repo,
    /// Each service folder's commit (the newest that changed it).
    pub commits: &'a BTreeMap<String, String>,
    /// `X.Y.Z` in tag environments.
    pub version: Option<&'a str>,
    /// Limit to one service.
    pub only: Option<&'a str>,
    pub mode: Mode,
    /// Decides, per service and spec hash, whether an apply may be attempted now (the
    /// daemon's backoff and failed-rollout hold); `None` always allows.
    pub gate: Option<Gate<'a>>,
    /// Bounds concurrent service applies (shared across environments by the daemon).
    pub semaphore: Option<Arc<Semaphore>>,
    /// Cancelled on shutdown: rollout waits stop (without marking the rollout failed).
    pub cancel: tokio_util::sync::CancellationToken,
    /// The services (name → spec hash) this process last saw in sync, with nothing
    /// attempted on them since.
    pub settled: Option<&'a BTreeMap<String, String>>,
    /// A cycle a push started: a service that still renders to its `settled` spec hash is
    /// left out (no live read, no report); the next full reconcile checks it for drift.
    /// A settled service the push changed has no half-applied attempt to recover from,
    /// and runs its family's newest revision, so its new revision is registered without
    /// first looking that up. (A full reconcile still looks: a console rollback leaves a
    /// newer revision that may be the one git wants.)
    pub focused: bool,
    /// Resolves, renders and plans kept from this environment's last reconcile (the
    /// daemon's); `None` computes everything afresh.
    pub memo: Option<&'a tokio::sync::Mutex<Memo>>,
}

impl<'a> EnvInput<'a> {
    /// Every service of `checkout` in `env`, ungated, with its own concurrency bound.
    pub fn new(
        config: &'a Config,
        env: &'a EnvConfig,
        checkout: &'a crate::source::checkout::Checkout,
        mode: Mode,
    ) -> Self {
        EnvInput {
            config,
            env,
            repo: &checkout.repo,
            commits: &checkout.commits,
            version: checkout.version.as_deref(),
            only: None,
            mode,
            gate: None,
            semaphore: None,
            cancel: tokio_util::sync::CancellationToken::new(),
            settled: None,
            focused: false,
            memo: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "status", content = "reason")]
pub enum Outcome {
    /// Live equals git.
    Synced,
    /// Changes were made and the rollout (if waited for) finished.
    Applied,
    /// Live differs from git (diff, dry run, or `sync: manual`).
    OutOfSync,
    /// The image is not in the registry yet; nothing applied.
    WaitingForImage(String),
    /// A same-named service berth does not manage.
    Unmanaged(String),
    /// The spec is invalid, a reference is missing, AWS failed, or the rollout failed.
    Failed(String),
    /// Not attempted: a dependency did not converge.
    Skipped(String),
    /// Live differs, but berth holds off: a failed rollout of this same spec, or backoff.
    Held(String),
}

impl Outcome {
    pub fn is_failure(&self) -> bool {
        matches!(
            self,
            Outcome::Failed(_)
                | Outcome::Unmanaged(_)
                | Outcome::WaitingForImage(_)
                | Outcome::Skipped(_)
                | Outcome::Held(_)
        )
    }
}

/// The result for one service.
#[derive(Clone, Debug, Serialize)]
pub struct ServiceReport {
    pub name: String,
    pub outcome: Outcome,
    pub commit: Option<String>,
    pub spec_hash: Option<String>,
    pub drift: Vec<Change>,
    /// The plan's actions, as one-line summaries.
    pub plan: Vec<String>,
    /// What was done (apply mode).
    pub applied: Vec<String>,
    pub task_definition: Option<String>,
    pub ownership: Option<Ownership>,
    /// Whether a rollout failed (circuit breaker / rollback / timeout).
    pub rollout_failed: bool,
    #[serde(skip)]
    pub diagnostics: Vec<Diagnostic>,
}

impl ServiceReport {
    fn new(name: &str) -> ServiceReport {
        ServiceReport {
            name: name.to_string(),
            outcome: Outcome::Synced,
            commit: None,
            spec_hash: None,
            drift: Vec::new(),
            plan: Vec::new(),
            applied: Vec::new(),
            task_definition: None,
            ownership: None,
            rollout_failed: false,
            diagnostics: Vec::new(),
        }
    }

    fn failed(name: &str, reason: impl Into<String>) -> ServiceReport {
        ServiceReport { outcome: Outcome::Failed(reason.into()), ..ServiceReport::new(name) }
    }
}

struct Prepared {
    spec: Arc<ServiceSpec>,
    desired: Arc<Desired>,
    image: String,
}

fn reference_label(r: &Reference) -> String {
    r.to_string()
}

/// Reconciles every service of one environment (or `only` one).
pub async fn reconcile_env(aws: &Aws, input: &EnvInput<'_>) -> Vec<ServiceReport> {
    let env = input.env;
    let mut reports: BTreeMap<String, ServiceReport> = BTreeMap::new();
    let mut memo = match input.memo {
        Some(m) => Some(m.lock().await),
        None => None,
    };
    let mut reused = Reused::default();
    if let Some(m) = memo.as_deref_mut() {
        let names: BTreeSet<&str> =
            input.repo.services.iter().filter(|d| d.envs.contains_key(&env.name)).map(|d| d.name.as_str()).collect();
        m.retain(|name| names.contains(name));
    }

    // 1. Resolve every spec; broken ones fail alone.
    for broken in &input.repo.broken {
        if broken.envs.iter().any(|e| e == &env.name) && input.only.is_none_or(|o| o == broken.key) {
            let mut r = ServiceReport::failed(
                &broken.key,
                format!("invalid spec:\n{}", diag::render(&broken.errors).trim_end()),
            );
            r.diagnostics = broken.errors.clone();
            reports.insert(broken.key.clone(), r);
        }
    }
    let mut specs: Vec<Arc<ServiceSpec>> = Vec::new();
    for def in &input.repo.services {
        if !def.envs.contains_key(&env.name) || input.only.is_some_and(|o| o != def.name) {
            continue;
        }
        let resolved = match memo.as_deref_mut() {
            Some(m) => m.resolve(def, &env.name, &mut reused),
            None => def.resolve(&env.name).map(Arc::new),
        };
        match resolved {
            Ok(spec) => specs.push(spec),
            Err(diags) => {
                let mut r =
                    ServiceReport::failed(&def.name, format!("invalid spec:\n{}", diag::render(&diags).trim_end()));
                r.diagnostics = diags;
                reports.insert(def.name.clone(), r);
            }
        }
    }

    // 2. Verify references and images, in batches across all services.
    let account = match aws.account_id().await {
        Ok(a) => Some(a),
        Err(e) => {
            for s in &specs {
                reports.insert(
                    s.name.clone(),
                    ServiceReport::failed(&s.name, format!("cannot tell the AWS account: {e}")),
                );
            }
            return reports.into_values().collect();
        }
    };
    let mut aws_config = input.config.aws.clone();
    aws_config.account_id = account.clone();
    let commit_of = |spec: &ServiceSpec| input.commits.get(&spec.dir).cloned().unwrap_or_default();
    let mut req = VerifyRequest::default();
    let mut images = BTreeMap::new();
    for spec in &specs {
        let commit = commit_of(spec);
        if let Some(i) = verify_request(spec, env, &aws_config, &commit, input.version, &mut req) {
            images.insert(spec.name.clone(), i);
        }
    }
    let verified = match aws.verify(&req, false).await {
        Ok(v) => v,
        Err(e) => {
            for s in &specs {
                reports.insert(s.name.clone(), ServiceReport::failed(&s.name, format!("verify: {e}")));
            }
            return reports.into_values().collect();
        }
    };

    // 3. Render what passed.
    let lookups = Lookups { ssm_values: verified.ssm_values.clone(), secret_arns: verified.secret_arns.clone() };
    let ctx = NormContext {
        partition: aws_config.partition().to_string(),
        region: aws_config.region.clone(),
        account_id: account,
    };
    if let Some(m) = memo.as_deref_mut() {
        m.begin(env, &aws_config, &lookups, &ctx);
    }
    let mut prepared: BTreeMap<String, Box<Prepared>> = BTreeMap::new();
    for spec in specs {
        let problems = reference_problems(&spec, &verified);
        if !problems.is_empty() {
            reports.insert(spec.name.clone(), ServiceReport::failed(&spec.name, problems.join("\n")));
            continue;
        }
        let commit = commit_of(&spec);
        let target = Target { env, aws: &aws_config, commit: &commit, version: input.version, lookups: &lookups };
        let rendered = match memo.as_deref_mut() {
            Some(m) => m.render(&spec, &target, &mut reused),
            None => render::render(&spec, &target).map(Arc::new),
        };
        match rendered {
            Ok(desired) => {
                if input.focused
                    && input.settled.is_some_and(|s| s.get(&spec.name).is_some_and(|h| h == desired.spec_hash()))
                {
                    continue;
                }
                let image = desired.task_definition.container_definitions[0].image.clone();
                let mut report = ServiceReport::new(&spec.name);
                report.commit = Some(commit.clone());
                report.spec_hash = Some(desired.spec_hash().to_string());
                if let Some(i) = images.get(&spec.name)
                    && verified.missing_images.contains(i)
                {
                    report.outcome = Outcome::WaitingForImage(image.clone());
                    reports.insert(spec.name.clone(), report);
                    continue;
                }
                reports.insert(spec.name.clone(), report);
                // Boxed: a B-tree node holds eleven values inline, and a `Prepared` is ~1 KiB.
                prepared.insert(spec.name.clone(), Box::new(Prepared { spec, desired, image }));
            }
            Err(diags) => {
                reports.insert(
                    spec.name.clone(),
                    ServiceReport::failed(&spec.name, diag::render(&diags).trim_end().to_string()),
                );
            }
        }
    }

    // 4. Read live state in batches.
    let names: Vec<String> = prepared.keys().cloned().collect();
    let mut live = match read_live(aws, &env.cluster, &names, &prepared).await {
        Ok(l) => l,
        Err(e) => {
            for name in &names {
                reports.insert(name.clone(), ServiceReport::failed(name, format!("reading live state: {e}")));
            }
            return reports.into_values().collect();
        }
    };

    // 5. Plan each service.
    let mut states: BTreeMap<String, LiveState> = BTreeMap::new();
    let mut firsts: BTreeMap<String, Plan> = BTreeMap::new();
    for (name, p) in &prepared {
        let state = live.remove(name).unwrap_or_default();
        let first = match memo.as_deref_mut() {
            Some(m) => m.plan(name, &p.desired, &state, p.spec.adopt, &mut reused),
            None => plan::plan(&p.desired, &state, p.spec.adopt, &ctx),
        };
        firsts.insert(name.clone(), first);
        states.insert(name.clone(), state);
    }
    drop(memo);
    if input.memo.is_some() {
        tracing::debug!(env = %env.name, resolves = reused.resolves, renders = reused.renders, plans = reused.plans, "reused from the last reconcile");
    }
    // Before registering, look for a revision with this content already (one registered by
    // an attempt whose service update then failed): the families' latest revisions, a few
    // lookups in flight at once. Services settled since their last attempt have none.
    let families: Vec<(&String, &str)> = firsts
        .iter()
        .filter(|(_, p)| p.actions.iter().any(|a| matches!(a, Action::RegisterTaskDefinition { .. })))
        .filter(|(name, _)| !(input.focused && input.settled.is_some_and(|s| s.contains_key(*name))))
        .map(|(name, _)| (name, prepared[name].desired.task_definition.family.as_str()))
        .collect();
    let latest = concurrently(
        families
            .into_iter()
            .map(|(name, family)| async move { (name.clone(), aws.describe_task_definition(family).await) }),
    )
    .await;
    for (name, result) in latest {
        match result {
            Ok(latest) => {
                let p = &prepared[&name];
                let state = states.get_mut(&name).expect("state of a planned service");
                state.latest_revision = latest;
                firsts.insert(name, plan::plan(&p.desired, state, p.spec.adopt, &ctx));
            }
            Err(e) => {
                firsts.remove(&name);
                reports.insert(name.clone(), ServiceReport::failed(&name, format!("reading live state: {e}")));
            }
        }
    }
    let mut plans: BTreeMap<String, Plan> = BTreeMap::new();
    for (name, first) in firsts {
        let state = &states[&name];
        let report = reports.get_mut(&name).expect("prepared services have reports");
        report.ownership = Some(first.ownership);
        report.drift = first.drift.clone();
        report.plan = first.actions.iter().map(Action::summary).collect();
        report.task_definition = state.service.as_ref().map(|s| s.settings.task_definition.clone());
        report.outcome = if !first.blockers.is_empty() {
            if first.ownership == Ownership::Unmanaged {
                Outcome::Unmanaged(first.blockers.join("; "))
            } else {
                Outcome::Failed(first.blockers.join("; "))
            }
        } else if first.in_sync() {
            Outcome::Synced
        } else {
            Outcome::OutOfSync
        };
        plans.insert(name, first);
    }
    if input.mode != Mode::Apply || env.sync == SyncMode::Manual {
        return reports.into_values().collect();
    }

    // Before applying, ask AWS afresh about the references and images of the services that
    // will change (the poll above may have answered from the cache).
    let changing: Vec<String> =
        plans.iter().filter(|(_, p)| !p.actions.is_empty() && p.blockers.is_empty()).map(|(n, _)| n.clone()).collect();
    if !changing.is_empty() {
        let mut req = VerifyRequest::default();
        for name in &changing {
            let spec = &prepared[name.as_str()].spec;
            verify_request(spec, env, &aws_config, &commit_of(spec), input.version, &mut req);
        }
        // Image tags are not re-asked: once pushed, a tag is there (the first pass found it).
        req.images.clear();
        match aws.verify(&req, true).await {
            Ok(fresh) => {
                for name in &changing {
                    let problems = reference_problems(&prepared[name].spec, &fresh);
                    if !problems.is_empty() {
                        plans.remove(name);
                        reports.get_mut(name).expect("report").outcome = Outcome::Failed(problems.join("\n"));
                    }
                }
            }
            Err(e) => {
                for name in &changing {
                    plans.remove(name);
                    reports.get_mut(name).expect("report").outcome = Outcome::Failed(format!("verify: {e}"));
                }
            }
        }
    }

    // 6. Execute, dependencies first, independent services in parallel.
    let layers = dependency_layers(&prepared);
    let semaphore =
        input.semaphore.clone().unwrap_or_else(|| Arc::new(Semaphore::new(input.config.concurrency.max(1))));
    for layer in layers {
        let mut tasks = Vec::new();
        for name in layer {
            let Some(plan) = plans.get(&name).filter(|p| !p.actions.is_empty() && p.blockers.is_empty()) else {
                continue;
            };
            let p = &prepared[&name];
            let blocked: Vec<&String> =
                p.spec.depends_on.iter().filter(|d| reports.get(*d).is_some_and(|r| r.outcome.is_failure())).collect();
            if !blocked.is_empty() {
                let r = reports.get_mut(&name).expect("report");
                r.outcome = Outcome::Skipped(format!(
                    "dependency {} did not converge",
                    blocked.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                ));
                continue;
            }
            if input.cancel.is_cancelled() {
                reports.get_mut(&name).expect("report").outcome = Outcome::Held("shutting down".into());
                continue;
            }
            if let Some(gate) = input.gate
                && let Err(reason) = gate(&name, p.desired.spec_hash())
            {
                reports.get_mut(&name).expect("report").outcome = Outcome::Held(reason);
                continue;
            }
            let sem = semaphore.clone();
            let cancel = input.cancel.clone();
            let desired = p.desired.clone();
            let plan = plan.clone();
            let image = p.image.clone();
            tasks.push(async move {
                let _permit = sem.acquire().await.expect("semaphore open");
                let result = execute(aws, env, &desired, &plan, env.rollout_poll, &cancel).await;
                (name, image, result)
            });
        }
        for (name, _image, result) in futures::future::join_all(tasks).await {
            let r = reports.get_mut(&name).expect("report");
            r.applied = result.applied;
            if let Some(td) = result.task_definition {
                r.task_definition = Some(td);
            }
            r.rollout_failed = result.rollout_failed;
            r.outcome = match result.error {
                None if result.interrupted => Outcome::OutOfSync,
                None => Outcome::Applied,
                Some(e) => Outcome::Failed(e),
            };
        }
    }
    reports.into_values().collect()
}

/// Adds what `spec` references to a verification request; returns its ECR image, if any.
fn verify_request(
    spec: &ServiceSpec,
    env: &EnvConfig,
    aws_config: &crate::core::config::AwsConfig,
    commit: &str,
    version: Option<&str>,
    req: &mut VerifyRequest,
) -> Option<crate::aws::EcrImage> {
    for r in spec.secret_references() {
        match r {
            Reference::Ssm(s) => {
                req.ssm_secrets.insert(s.arn.clone().unwrap_or_else(|| s.name.clone()));
            }
            Reference::SecretsManager(s) => {
                req.secret_ids.insert(s.id.clone());
            }
        }
    }
    for (name, _) in spec.ssm_variables() {
        req.ssm_variables.insert(name.to_string());
    }
    let probe = Target { env, aws: aws_config, commit, version, lookups: &Lookups::default() };
    let image = image_reference(&spec.image, aws_config.registry.as_deref(), &probe.image_tag());
    let i = lookups_image(&image, &aws_config.region)?;
    req.images.insert(i.clone());
    Some(i)
}

/// Missing secrets and parameters of a service, each with where it is referenced.
fn reference_problems(spec: &ServiceSpec, verified: &crate::aws::Verified) -> Vec<String> {
    let mut problems = Vec::new();
    for r in spec.secret_references() {
        let exists = match r {
            Reference::Ssm(s) => verified.ssm_exists(s.arn.as_deref().unwrap_or(&s.name)),
            Reference::SecretsManager(s) => verified.secret_arns.contains_key(&s.id),
        };
        if !exists {
            let at =
                spec.environment.iter().find(|e| matches!(&e.value, crate::core::spec::EnvValue::Secret(x) if x == r));
            let pos = at.map(|e| e.pos.to_string()).unwrap_or_default();
            problems.push(format!("{pos}: secret {} does not exist", reference_label(r)));
        }
    }
    for (name, pos) in spec.ssm_variables() {
        if verified.secure_variables.contains(name) {
            problems.push(format!(
                "{pos}: SSM parameter {name} is a SecureString: declare it under `secrets`, not `variables`"
            ));
        } else if !verified.ssm_values.contains_key(name) {
            problems.push(format!("{pos}: SSM parameter {name} does not exist"));
        }
    }
    problems
}

/// Services grouped so that each group's dependencies are in earlier groups.
fn dependency_layers(prepared: &BTreeMap<String, Box<Prepared>>) -> Vec<Vec<String>> {
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut left: BTreeSet<String> = prepared.keys().cloned().collect();
    let mut layers = Vec::new();
    while !left.is_empty() {
        let ready: Vec<String> = left
            .iter()
            .filter(|n| prepared[*n].spec.depends_on.iter().all(|d| done.contains(d) || !prepared.contains_key(d)))
            .cloned()
            .collect();
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

async fn read_live(
    aws: &Aws,
    cluster: &str,
    names: &[String],
    prepared: &BTreeMap<String, Box<Prepared>>,
) -> Result<BTreeMap<String, LiveState>, AwsError> {
    let mut services = aws.describe_services(cluster, names).await?;
    let resource_ids: Vec<String> = names.iter().map(|n| format!("service/{cluster}/{n}")).collect();
    let existing: Vec<String> = resource_ids
        .iter()
        .zip(names)
        .filter(|(_, n)| services.get(*n).is_some_and(|s| s.status != "INACTIVE"))
        .map(|(r, _)| r.clone())
        .collect();
    let (mut targets, mut policies) = if existing.is_empty() {
        (BTreeMap::new(), BTreeMap::new())
    } else {
        let ids: BTreeSet<String> = existing.iter().cloned().collect();
        (aws.describe_scalable_targets(&existing).await?, aws.describe_scaling_policies(&ids).await?)
    };
    // The services' current task definitions (cached by ARN: only new ones are asked).
    let arns: BTreeSet<&str> = services
        .values()
        .filter(|s| s.status != "INACTIVE" && !s.settings.task_definition.is_empty())
        .map(|s| s.settings.task_definition.as_str())
        .collect();
    let mut task_definitions = BTreeMap::new();
    let answers =
        concurrently(arns.into_iter().map(|arn| async move { (arn, aws.describe_task_definition(arn).await) })).await;
    for (arn, answer) in answers {
        task_definitions.insert(arn.to_string(), answer?);
    }
    let mut out = BTreeMap::new();
    for name in names {
        let _ = &prepared[name];
        let rid = format!("service/{cluster}/{name}");
        let service = services.remove(name).filter(|s| s.status != "INACTIVE");
        let task_definition =
            service.as_ref().and_then(|s| task_definitions.get(s.settings.task_definition.as_str()).cloned().flatten());
        out.insert(
            name.clone(),
            LiveState {
                service,
                task_definition,
                latest_revision: None,
                scalable_target: targets.remove(&rid),
                policies: policies.remove(&rid).unwrap_or_default(),
            },
        );
    }
    Ok(out)
}

struct Execution {
    interrupted: bool,
    applied: Vec<String>,
    task_definition: Option<String>,
    error: Option<String>,
    rollout_failed: bool,
}

/// One attempt at a plan. Every step is idempotent against a re-plan: a revision
/// registered before a failed update is found and reused next time.
async fn execute(
    aws: &Aws,
    env: &EnvConfig,
    desired: &Desired,
    plan: &Plan,
    poll: Duration,
    cancel: &tokio_util::sync::CancellationToken,
) -> Execution {
    let mut ex = Execution {
        interrupted: false,
        applied: Vec::new(),
        task_definition: None,
        error: None,
        rollout_failed: false,
    };
    let mut registered: Option<String> = None;
    let mut deployed: Option<String> = None;
    for action in &plan.actions {
        let result = match action {
            Action::RegisterTaskDefinition { task_definition } => {
                aws.register_task_definition(task_definition).await.map(|arn| {
                    registered = Some(arn.clone());
                    format!("registered {arn}")
                })
            }
            Action::CreateService { settings, revision, desired_count } => {
                let arn = revision_arn(revision, &registered);
                aws.create_service(settings, &arn, *desired_count).await.map(|_| {
                    deployed = Some(arn.clone());
                    format!("created service {} ({arn})", settings.service_name)
                })
            }
            Action::UpdateService { settings, revision, set_desired_count } => {
                let arn = revision_arn(revision, &registered);
                aws.update_service(settings, &arn, *set_desired_count).await.map(|before| {
                    if before.settings.task_definition != arn || registered.is_some() {
                        deployed = Some(arn.clone());
                    }
                    format!("updated service {} ({arn})", settings.service_name)
                })
            }
            Action::TagService { arn, tags } => aws.tag_resource(arn, tags).await.map(|_| "tagged service".to_string()),
            Action::RegisterScalableTarget { target } => aws.register_scalable_target(target).await.map(|_| {
                format!("registered scalable target (min {}, max {})", target.min_capacity, target.max_capacity)
            }),
            Action::PutScalingPolicy { policy } => {
                aws.put_scaling_policy(policy).await.map(|_| format!("put scaling policy {}", policy.policy_name))
            }
            Action::DeleteScalingPolicy { policy_name, resource_id } => aws
                .delete_scaling_policy(policy_name, resource_id)
                .await
                .map(|_| format!("deleted scaling policy {policy_name}")),
            Action::DeregisterScalableTarget { resource_id } => {
                aws.deregister_scalable_target(resource_id).await.map(|_| "deregistered scalable target".to_string())
            }
        };
        match result {
            Ok(done) => ex.applied.push(done),
            Err(e) => {
                ex.error = Some(e.to_string());
                return ex;
            }
        }
    }
    ex.task_definition = deployed.clone().or(registered);
    if let (Some(arn), true) = (deployed, env.rollout_wait) {
        let wait = wait_for_rollout(
            aws,
            &desired.service.cluster,
            &desired.service.service_name,
            &arn,
            env.rollout_timeout,
            poll,
        );
        tokio::select! {
            result = wait => match result {
                Ok(()) => ex.applied.push("rollout completed".to_string()),
                Err(reason) => {
                    ex.rollout_failed = true;
                    ex.error = Some(format!("rollout failed: {reason}"));
                }
            },
            () = cancel.cancelled() => {
                ex.interrupted = true;
                ex.applied.push("stopped waiting for the rollout (shutting down)".to_string());
            }
        }
    }
    ex
}

fn revision_arn(revision: &Revision, registered: &Option<String>) -> String {
    match revision {
        Revision::Existing(arn) => arn.clone(),
        Revision::Registered => registered.clone().unwrap_or_default(),
    }
}

async fn wait_for_rollout(
    aws: &Aws,
    cluster: &str,
    service: &str,
    revision: &str,
    timeout: Duration,
    poll: Duration,
) -> Result<(), String> {
    let start = Instant::now();
    loop {
        let services = aws.describe_services(cluster, &[service.to_string()]).await.map_err(|e| e.to_string())?;
        let Some(live) = services.get(service) else {
            return Err(format!("service {service} disappeared"));
        };
        match rollout_state(live, revision) {
            Rollout::Done => return Ok(()),
            Rollout::Failed(reason) => return Err(reason),
            Rollout::InProgress => {}
        }
        if start.elapsed() >= timeout {
            return Err(format!("the deployment did not finish within {}", humantime::format_duration(timeout)));
        }
        tokio::time::sleep(poll.min(timeout.saturating_sub(start.elapsed())).max(Duration::from_millis(50))).await;
    }
}
