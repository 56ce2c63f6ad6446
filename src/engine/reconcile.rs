//! Reconciling one environment: resolve and verify every service, read live state in
//! batches, plan each service, and (in apply mode) execute the plans in dependency order,
//! independent services in parallel.
//!
//! One service's failure (bad YAML, a missing secret, an AWS error) never stops another.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use serde::Serialize;
use tokio::sync::Semaphore;

use crate::aws::{Aws, AwsError, VerifyRequest, concurrently, lookups_image};
use crate::core::config::{Config, EnvConfig, SyncMode};
use crate::core::desired::Desired;
use crate::core::diag::{self, Diagnostic};
use crate::core::diff::{Change, NormContext};
use crate::core::live::LiveState;
use crate::core::memo::{Memo, Rendering, Reused};
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
    /// Hand rollout waits back instead of waiting (the daemon watches them beside its
    /// cycles, so a slow rollout delays no other service): an applied service's report
    /// carries a [`RolloutWatch`] and the outcome [`Outcome::Progressing`].
    pub detach_rollouts: bool,
    /// The services (name → spec hash) whose rollout the daemon is watching: one still in
    /// sync with that spec is `Progressing`, and its dependents wait for it.
    pub watching: Option<&'a BTreeMap<String, String>>,
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
            detach_rollouts: false,
            watching: None,
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
    /// Live equals git and the ECS deployment is still rolling out (watched by the daemon).
    Progressing,
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
    /// The rollout to watch, when the input detached rollout waits.
    #[serde(skip)]
    pub rollout: Option<RolloutWatch>,
    #[serde(skip)]
    pub diagnostics: Vec<Diagnostic>,
}

/// A rollout an apply started and did not wait for.
#[derive(Clone, Debug)]
pub struct RolloutWatch {
    pub cluster: String,
    pub service: String,
    /// The task definition ARN being rolled out.
    pub revision: String,
    pub timeout: Duration,
    pub poll: Duration,
}

impl RolloutWatch {
    /// Waits until the rollout completes (`Ok`) or fails or times out (`Err`, the reason).
    pub async fn wait(&self, aws: &Aws) -> Result<(), String> {
        wait_for_rollout(aws, &self.cluster, &self.service, &self.revision, self.timeout, self.poll).await
    }
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
            rollout: None,
            diagnostics: Vec::new(),
        }
    }

    fn failed(name: &str, reason: impl Into<String>) -> ServiceReport {
        ServiceReport { outcome: Outcome::Failed(reason.into()), ..ServiceReport::new(name) }
    }
}

struct Prepared {
    spec: Arc<ServiceSpec>,
    rendering: Rendering,
}

impl Prepared {
    /// The rendered state; there whenever the service's plan has something to do (see
    /// [`Memo::plan`]).
    fn desired(&self) -> &Arc<Desired> {
        self.rendering.desired.as_ref().expect("a service with actions keeps its rendered state")
    }
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
    let mut prepared: BTreeMap<String, Prepared> = BTreeMap::new();
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
            None => render::render(&spec, &target).map(Rendering::fresh),
        };
        match rendered {
            Ok(rendering) => {
                if input.focused
                    && input.settled.is_some_and(|s| s.get(&spec.name).is_some_and(|h| *h == rendering.spec_hash))
                {
                    continue;
                }
                let mut report = ServiceReport::new(&spec.name);
                report.commit = Some(commit.clone());
                report.spec_hash = Some(rendering.spec_hash.clone());
                if let Some(i) = images.get(&spec.name)
                    && verified.missing_images.contains(i)
                {
                    report.outcome = Outcome::WaitingForImage(rendering.image.clone());
                    reports.insert(spec.name.clone(), report);
                    continue;
                }
                reports.insert(spec.name.clone(), report);
                prepared.insert(spec.name.clone(), Prepared { spec, rendering });
            }
            Err(diags) => {
                reports.insert(
                    spec.name.clone(),
                    ServiceReport::failed(&spec.name, diag::render(&diags).trim_end().to_string()),
                );
            }
        }
    }

    // 4–5. Read live state and plan, a batch of services at a time: only the states of
    // services whose plan registers a revision outlive their batch.
    let names: Vec<String> = prepared.keys().cloned().collect();
    let mut reader = LiveReader::new(aws, &env.cluster, &names);
    let mut states: BTreeMap<String, LiveState> = BTreeMap::new();
    let mut firsts: BTreeMap<String, Plan> = BTreeMap::new();
    for batch in names.chunks(LIVE_BATCH) {
        let mut live = match reader.read(batch).await {
            Ok(l) => l,
            Err(e) => {
                for name in prepared.keys() {
                    reports.insert(name.clone(), ServiceReport::failed(name, format!("reading live state: {e}")));
                }
                return reports.into_values().collect();
            }
        };
        for name in batch {
            let p = prepared.get_mut(name).expect("a prepared service");
            let state = live.remove(name).unwrap_or_default();
            let first = match memo.as_deref_mut() {
                Some(m) => {
                    let spec = &p.spec;
                    let rerender = || {
                        let commit = commit_of(spec);
                        let version = input.version;
                        render::render(
                            spec,
                            &Target { env, aws: &aws_config, commit: &commit, version, lookups: &lookups },
                        )
                    };
                    match m.plan(name, &mut p.rendering, &state, spec.adopt, rerender, &mut reused) {
                        Ok(plan) => plan,
                        Err(diags) => {
                            reports.insert(
                                name.clone(),
                                ServiceReport::failed(name, diag::render(&diags).trim_end().to_string()),
                            );
                            continue;
                        }
                    }
                }
                None => plan::plan(p.desired(), &state, p.spec.adopt, &ctx),
            };
            let report = reports.get_mut(name).expect("prepared services have reports");
            report.task_definition = state.service.as_ref().map(|s| s.settings.task_definition.clone());
            if first.actions.iter().any(|a| matches!(a, Action::RegisterTaskDefinition { .. })) {
                states.insert(name.clone(), state);
            }
            firsts.insert(name.clone(), first);
        }
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
        .map(|(name, _)| (name, prepared[name].desired().task_definition.family.as_str()))
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
                firsts.insert(name, plan::plan(p.desired(), state, p.spec.adopt, &ctx));
            }
            Err(e) => {
                firsts.remove(&name);
                reports.insert(name.clone(), ServiceReport::failed(&name, format!("reading live state: {e}")));
            }
        }
    }
    let mut plans: BTreeMap<String, Plan> = BTreeMap::new();
    for (name, first) in firsts {
        let report = reports.get_mut(&name).expect("prepared services have reports");
        report.ownership = Some(first.ownership);
        report.drift = first.drift.clone();
        report.plan = first.actions.iter().map(Action::summary).collect();
        report.outcome = if !first.blockers.is_empty() {
            if first.ownership == Ownership::Unmanaged {
                Outcome::Unmanaged(first.blockers.join("; "))
            } else {
                Outcome::Failed(first.blockers.join("; "))
            }
        } else if first.in_sync() {
            let watched = input.watching.and_then(|w| w.get(&name));
            if watched.is_some_and(|h| *h == prepared[&name].rendering.spec_hash) {
                Outcome::Progressing
            } else {
                Outcome::Synced
            }
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
        let mut runs = Vec::new();
        for name in layer {
            let Some(plan) = plans.remove(&name).filter(|p| !p.actions.is_empty() && p.blockers.is_empty()) else {
                continue;
            };
            let p = &prepared[&name];
            let blocked: Vec<&String> =
                p.spec.depends_on.iter().filter(|d| reports.get(*d).is_some_and(|r| r.outcome.is_failure())).collect();
            let rolling: Vec<&String> = p
                .spec
                .depends_on
                .iter()
                .filter(|d| reports.get(*d).is_some_and(|r| r.outcome == Outcome::Progressing))
                .collect();
            if blocked.is_empty() && !rolling.is_empty() {
                let r = reports.get_mut(&name).expect("report");
                r.outcome = Outcome::Skipped(format!(
                    "waiting for the rollout of {}",
                    rolling.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                ));
                continue;
            }
            if !blocked.is_empty() {
                let r = reports.get_mut(&name).expect("report");
                r.outcome = Outcome::Skipped(format!(
                    "dependency {} did not converge",
                    blocked.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                ));
                continue;
            }
            if let Some(gate) = input.gate
                && let Err(reason) = gate(&name, &p.rendering.spec_hash)
            {
                reports.get_mut(&name).expect("report").outcome = Outcome::Held(reason);
                continue;
            }
            runs.push((name, p.desired().clone(), plan));
        }
        // Each apply's future (SDK calls, rollout wait) is a few KiB: at most `concurrency`
        // of them exist at once (waiting for a permit of the semaphore the daemon shares
        // across environments, or running), not one per service of a commit that changes
        // a thousand.
        let results: Vec<(String, Option<Execution>)> = futures::stream::iter(runs)
            .map(|(name, desired, plan)| {
                let sem = semaphore.clone();
                let cancel = input.cancel.clone();
                async move {
                    let _permit = tokio::select! {
                        permit = sem.acquire() => permit.expect("semaphore open"),
                        () = cancel.cancelled() => return (name, None),
                    };
                    if cancel.is_cancelled() {
                        return (name, None);
                    }
                    let result = execute(aws, env, &desired, &plan, input.detach_rollouts, &cancel).await;
                    (name, Some(result))
                }
            })
            .buffer_unordered(input.config.concurrency.max(1))
            .collect()
            .await;
        for (name, result) in results {
            let r = reports.get_mut(&name).expect("report");
            let Some(result) = result else {
                r.outcome = Outcome::Held("shutting down".into());
                continue;
            };
            r.applied = result.applied;
            if let Some(td) = result.task_definition {
                r.task_definition = Some(td);
            }
            r.rollout_failed = result.rollout_failed;
            r.outcome = match result.error {
                None if result.interrupted => Outcome::OutOfSync,
                None if result.rollout.is_some() => Outcome::Progressing,
                None => Outcome::Applied,
                Some(e) => Outcome::Failed(e),
            };
            r.rollout = result.rollout;
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
fn dependency_layers(prepared: &BTreeMap<String, Prepared>) -> Vec<Vec<String>> {
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

/// Services read and planned per batch. A multiple of the DescribeServices (10) and
/// DescribeScalableTargets (50) batches, so a steady poll (every service exists) takes as
/// many requests as reading all at once (services that do not exist yet can cost one
/// DescribeScalableTargets more per batch, never more than ⌈N/50⌉ in all); small enough
/// that a poll of 1,000 services never holds every live state (and the SDK answers they
/// come from) at once.
const LIVE_BATCH: usize = 100;

/// Reads the live state of an environment's services, a batch at a time.
struct LiveReader<'a> {
    aws: &'a Aws,
    cluster: &'a str,
    /// The resource ids of every service to be read.
    resource_ids: BTreeSet<String>,
    /// The environment's scaling policies by resource id: read (one listing of the
    /// namespace) when a batch first has a service that exists.
    policies: Option<BTreeMap<String, Vec<crate::core::live::LivePolicy>>>,
}

impl<'a> LiveReader<'a> {
    fn new(aws: &'a Aws, cluster: &'a str, names: &[String]) -> Self {
        let resource_ids = names.iter().map(|n| resource_id(cluster, n)).collect();
        LiveReader { aws, cluster, resource_ids, policies: None }
    }

    async fn read(&mut self, names: &[String]) -> Result<BTreeMap<String, LiveState>, AwsError> {
        let (aws, cluster) = (self.aws, self.cluster);
        let mut services = aws.describe_services(cluster, names).await?;
        services.retain(|_, s| s.status != "INACTIVE");
        let existing: Vec<String> =
            names.iter().filter(|n| services.contains_key(n.as_str())).map(|n| resource_id(cluster, n)).collect();
        let mut targets = BTreeMap::new();
        if !existing.is_empty() {
            targets = aws.describe_scalable_targets(&existing).await?;
            if self.policies.is_none() {
                self.policies = Some(aws.describe_scaling_policies(&self.resource_ids).await?);
            }
        }
        // The services' current task definitions (cached by ARN: only new ones are asked).
        let arns: BTreeSet<&str> = services
            .values()
            .filter(|s| !s.settings.task_definition.is_empty())
            .map(|s| s.settings.task_definition.as_str())
            .collect();
        let mut task_definitions = BTreeMap::new();
        let answers =
            concurrently(arns.into_iter().map(|arn| async move { (arn, aws.describe_task_definition(arn).await) }))
                .await;
        for (arn, answer) in answers {
            task_definitions.insert(arn.to_string(), answer?);
        }
        let mut out = BTreeMap::new();
        for name in names {
            let rid = resource_id(cluster, name);
            let service = services.remove(name.as_str());
            let task_definition = service
                .as_ref()
                .and_then(|s| task_definitions.get(s.settings.task_definition.as_str()).cloned().flatten());
            let policies = match (&service, self.policies.as_mut()) {
                (Some(_), Some(p)) => p.remove(&rid).unwrap_or_default(),
                _ => Vec::new(),
            };
            let scalable_target = if service.is_some() { targets.remove(&rid) } else { None };
            out.insert(
                name.clone(),
                LiveState { service, task_definition, latest_revision: None, scalable_target, policies },
            );
        }
        Ok(out)
    }
}

fn resource_id(cluster: &str, service: &str) -> String {
    format!("service/{cluster}/{service}")
}

struct Execution {
    interrupted: bool,
    applied: Vec<String>,
    task_definition: Option<String>,
    error: Option<String>,
    rollout_failed: bool,
    /// The rollout left to watch (`detach`).
    rollout: Option<RolloutWatch>,
}

/// One attempt at a plan. Every step is idempotent against a re-plan: a revision
/// registered before a failed update is found and reused next time.
async fn execute(
    aws: &Aws,
    env: &EnvConfig,
    desired: &Desired,
    plan: &Plan,
    detach: bool,
    cancel: &tokio_util::sync::CancellationToken,
) -> Execution {
    let mut ex = Execution {
        interrupted: false,
        applied: Vec::new(),
        task_definition: None,
        error: None,
        rollout_failed: false,
        rollout: None,
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
        let watch = RolloutWatch {
            cluster: desired.service.cluster.clone(),
            service: desired.service.service_name.clone(),
            revision: arn,
            timeout: env.rollout_timeout,
            poll: env.rollout_poll,
        };
        if detach {
            ex.rollout = Some(watch);
            return ex;
        }
        tokio::select! {
            result = watch.wait(aws) => match result {
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
