//! Reconciling one environment: collect → decide → act over one table with a row per
//! service ([`Table`]), each row at its [`Stage`].
//!
//! - [`collect`]: the I/O that gathers inputs: verify references and images, read live
//!   state in batches, the families' newest revisions. Lookups fail per item: an error on
//!   one service's secret or batch fails that service only.
//! - [`decide`]: pure: resolve, render and plan (through the memo when the daemon has one),
//!   and the outcome of each plan. The daemon, the CLI, the bench and the property test
//!   all call it.
//! - [`act`]: execute the plans once, dependencies first, and (unless detached) wait for the
//!   rollouts. Retries are the scheduler's business.

mod act;
mod collect;
mod decide;
mod orphans;
mod routes;
mod table;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Semaphore;

pub use decide::Decider;
pub use table::{Row, Stage, Table};

use super::cloud::Cloud;
pub use super::outcome::{Failure, Hold, Outcome};
use crate::aws::AwsError;
use crate::core::config::{Config, EnvConfig};
use crate::core::diag::Diagnostic;
use crate::core::diff::Change;
use crate::core::live::LiveService;
use crate::core::memo::Answers;
use crate::core::memo::Memo;
use crate::core::plan::Ownership;
use crate::core::spec::Repo;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Report drift only.
    Diff,
    /// Plan, print, change nothing.
    DryRun,
    /// Converge.
    Apply,
}

/// Which services of the environment a reconcile looks at.
#[derive(Clone, Copy, Debug, Default)]
pub enum Scope<'a> {
    #[default]
    All,
    /// A cycle a push started: a service that still renders to the spec hash it was last
    /// seen in sync with (name → hash) is left out: no live read, no report. The next full
    /// reconcile checks it for drift.
    Changed(&'a BTreeMap<String, String>),
    /// A retry: only these services, the services that depend on them, and what those
    /// depend on (a dependency that has not converged holds them off, as in a full cycle).
    Only(&'a BTreeSet<String>),
}

/// Whether (service, spec hash) may be applied now; `Err` says why not.
pub type Gate<'a> = &'a (dyn Fn(&str, &str) -> Result<(), Hold> + Sync);

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
    pub scope: Scope<'a>,
    /// Decides, per service and spec hash, whether an apply may be attempted now (the
    /// daemon's backoff); `None` always allows.
    pub gate: Option<Gate<'a>>,
    /// Bounds concurrent service applies (shared across environments by the daemon).
    pub semaphore: Option<Arc<Semaphore>>,
    /// Cancelled on shutdown: queued applies stop, rollout waits stop (without a verdict).
    pub cancel: tokio_util::sync::CancellationToken,
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
    /// What started this reconcile, for the history of what it applies (a drift heal is
    /// told by the live service itself); `None`: a change in git.
    pub trigger: Option<super::history::Trigger>,
    /// Look for berth-managed services whose folder is gone (a ListServices and the
    /// cluster's DescribeServices): `Orphaned` rows, pruned where the environment says so.
    pub scan_orphans: bool,
    /// Set when the look for orphans was complete (listed, and no prune failed).
    pub orphans_scanned: Option<&'a std::sync::atomic::AtomicBool>,
    /// Whether this process may still write (a leader checks its lease before each apply
    /// batch and each service's apply); `None` always may.
    pub fence: Option<&'a (dyn Fn() -> bool + Sync)>,
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
            scope: Scope::All,
            gate: None,
            semaphore: None,
            cancel: tokio_util::sync::CancellationToken::new(),
            memo: None,
            detach_rollouts: false,
            watching: None,
            trigger: None,
            scan_orphans: true,
            orphans_scanned: None,
            fence: None,
        }
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
    /// Why it was applied (when it was).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trigger: Option<super::history::Trigger>,
    /// The image it applied (when it applied).
    #[serde(skip)]
    pub image: Option<String>,
    pub task_definition: Option<String>,
    pub ownership: Option<Ownership>,
    /// Whether the rollout failed (a projection of the outcome, for `--output json`).
    pub rollout_failed: bool,
    /// The services it depends on (from its spec, when it resolved).
    #[serde(skip)]
    pub depends_on: Vec<String>,
    /// The spec hash the live service was last applied with (`berth:spec-hash`).
    #[serde(skip)]
    pub live_spec_hash: Option<String>,
    /// The rollout to watch, when the input detached rollout waits.
    #[serde(skip)]
    pub rollout: Option<RolloutWatch>,
    #[serde(skip)]
    pub diagnostics: Vec<Diagnostic>,
}

impl ServiceReport {
    pub fn new(name: &str) -> ServiceReport {
        ServiceReport {
            name: name.to_string(),
            outcome: Outcome::Synced,
            commit: None,
            spec_hash: None,
            drift: Vec::new(),
            plan: Vec::new(),
            applied: Vec::new(),
            trigger: None,
            image: None,
            task_definition: None,
            ownership: None,
            rollout_failed: false,
            depends_on: Vec::new(),
            live_spec_hash: None,
            rollout: None,
            diagnostics: Vec::new(),
        }
    }

    /// Whether a failed rollout holds the spec git wants.
    pub fn held(&self) -> bool {
        matches!(self.outcome, Outcome::Held(Hold::RolloutFailed { .. }))
    }
}

/// A rollout an apply started and did not wait for.
#[derive(Clone, Debug)]
pub struct RolloutWatch {
    pub cluster: String,
    pub service: String,
    /// The service's ARN (where a failed rollout's hold is written).
    pub service_arn: String,
    /// The task definition ARN being rolled out.
    pub revision: String,
    pub spec_hash: String,
    pub timeout: Duration,
    pub poll: Duration,
    /// The history entry of the apply that started this rollout, completed with the
    /// rollout's result and duration when it ends.
    pub history: Option<Box<(crate::core::config::StateConfig, super::history::Entry)>>,
}

impl RolloutWatch {
    /// Waits until the rollout completes (`Ok`) or fails or times out (`Err`, the reason),
    /// reading the service on its own.
    pub async fn wait<C: Cloud>(&self, cloud: &C) -> Result<(), String> {
        let read = || async {
            let mut found = cloud.describe_services(&self.cluster, std::slice::from_ref(&self.service)).await?;
            Ok(found.remove(&self.service))
        };
        self.wait_reading(cloud, read, &|| true).await
    }

    /// [`Self::wait`], without writing a hold when it fails (a rollback's rollout: git's
    /// spec did not fail).
    pub async fn wait_without_hold<C: Cloud>(&self, cloud: &C) -> Result<(), String> {
        let read = || async {
            let mut found = cloud.describe_services(&self.cluster, std::slice::from_ref(&self.service)).await?;
            Ok(found.remove(&self.service))
        };
        act::wait_for_rollout(cloud, self, read).await
    }

    /// [`Self::wait`], with the service's state read by `read` (the daemon batches the
    /// reads of all its watches). A failure is written on the service as its hold
    /// (`berth:held`), so that no berth process applies this spec again until git changes it.
    /// The hold and the history are written only while `may_write` (a replica that lost its
    /// lease meanwhile leaves them to the new leader, which follows the rollout itself).
    pub async fn wait_reading<C: Cloud, F>(
        &self,
        cloud: &C,
        read: impl Fn() -> F,
        may_write: &(dyn Fn() -> bool + Sync),
    ) -> Result<(), String>
    where
        F: std::future::Future<Output = Result<Option<LiveService>, AwsError>>,
    {
        let result = act::wait_for_rollout(cloud, self, read).await;
        if !may_write() {
            return result;
        }
        if result.is_err() {
            act::write_hold(cloud, &self.service_arn, &self.spec_hash).await;
        }
        if let Some(h) = &self.history {
            let (state, mut entry) = (&h.0, h.1.clone());
            entry.result = if result.is_ok() { "completed" } else { "rollout_failed" }.to_string();
            entry.error = result.as_ref().err().map(|r| format!("rollout failed: {r}"));
            entry.duration_s = Some((super::history::unix_now() - entry.time).max(0.0));
            super::history::put(cloud, state, &entry).await;
        }
        result
    }
}

/// The decide phase alone, for an environment whose inputs are at hand: resolve, render
/// and plan every service of `repo`, as [`reconcile_env`] does between its lookups
/// (through the decider's memo when it has one). `verify` answers for the references and
/// images; `live` gives each service's live state. The bench and the memo's property test
/// run exactly this.
pub fn decide(
    decider: &mut Decider<'_>,
    repo: &Repo,
    verify: impl FnOnce(&crate::aws::VerifyRequest) -> crate::aws::Verified,
    mut live: impl FnMut(&str) -> crate::core::live::LiveState,
) -> Table {
    let mut table = decider.resolve(repo, None, Scope::All);
    let mut req = crate::aws::VerifyRequest::default();
    for row in table.rows.values() {
        if let Some(spec) = row.stage.spec() {
            decider.verify_request(spec, &mut req);
        }
    }
    let verified = verify(&req);
    decider.begin(&verified);
    decider.render(&mut table, &verified, Scope::All);
    for name in table.at(Stage::is_rendered) {
        let state = live(&name);
        // The state's fingerprint stands for its DescribeServices answer (it changes
        // whenever the service does), so that the bench and the property test take the
        // undecoded path a steady poll takes.
        let answer = state.service.as_ref().map(|_| state.fingerprint());
        if let Some(service) = answer.filter(|a| decider.known_answer(&table, &name) == Some(*a))
            && decider.reuse(&mut table, &name, Answers { service, rest: state.rest_fingerprint() })
        {
            continue;
        }
        decider.plan(&mut table, &name, state, answer);
    }
    decider.conclude(&mut table, None);
    table
}

/// Reconciles every service of one environment (or `only` one).
pub async fn reconcile_env<C: Cloud>(cloud: &C, input: &EnvInput<'_>) -> Vec<ServiceReport> {
    let env = input.env;
    let mut memo = match input.memo {
        Some(m) => Some(m.lock().await),
        None => None,
    };
    let account = match cloud.account_id().await {
        Ok(a) => a,
        Err(e) => {
            let e = match &env.aws.role {
                Some(role) => e.with_role(&role.arn),
                None => e,
            };
            let failure = Failure::Aws { context: "cannot tell the AWS account", error: e, applying: false };
            return Table::failing(input.repo, &env.name, input.only, failure).into_reports();
        }
    };
    let mut aws_config = env.aws.clone();
    aws_config.account_id = Some(account);
    let mut decider = Decider::new(memo.as_deref_mut(), env, aws_config, input.commits, input.version);

    // Collect and decide, phase by phase, over one table.
    let mut table = decider.resolve(input.repo, input.only, input.scope);
    let verified = collect::verify(cloud, &mut table, &decider).await;
    decider.begin(&verified);
    decider.render(&mut table, &verified, input.scope);
    collect::read_and_plan(cloud, &mut table, &mut decider, env).await;
    collect::recent_revisions(cloud, &mut table, &mut decider).await;
    // Only a process that applies follows rollouts (a follower replica, `sync: manual`
    // and `diff` watch nothing, and write no holds).
    decider.conclude(&mut table, if input.mode == Mode::Apply { input.watching } else { None });
    if input.mode == Mode::Apply {
        collect::verify_changing(cloud, &mut table, &decider).await;
    }
    let reused = decider.reused;
    drop(decider);
    drop(memo);
    if input.memo.is_some() {
        tracing::debug!(env = %env.name, resolves = reused.resolves, renders = reused.renders, plans = reused.plans, undecoded = reused.answers, "reused from the last reconcile");
    }
    if input.mode == Mode::Apply {
        act::act(cloud, &mut table, input).await;
    }
    if input.scan_orphans && input.only.is_none() {
        let complete = orphans::orphans(cloud, &mut table, input).await;
        if let Some(done) = input.orphans_scanned {
            done.store(complete, std::sync::atomic::Ordering::Relaxed);
        }
    }
    table.into_reports()
}
