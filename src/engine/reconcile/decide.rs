//! The decide phase: pure functions over the table. Resolve each spec, render what passed
//! verification, plan against live state, and say what each plan means. The memo, when
//! there is one, sits behind this one interface: callers never choose between a memoised
//! and a fresh path.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::table::{Stage, Table};
use super::{Failure, Hold, Outcome, RolloutWatch, Scope};
use crate::aws::{EcrImage, Item, Verified, VerifyRequest, lookups_image};
use crate::core::config::{AwsConfig, EnvConfig};
use crate::core::desired::{Desired, tags};
use crate::core::diag::Diagnostic;
use crate::core::diff::NormContext;
use crate::core::live::{LiveState, LiveTaskDefinition};
use crate::core::memo::{Answers, Memo, Rendering, Reused, Seen};
use crate::core::plan::{self, Action, Blocker, Ownership, Plan};
use crate::core::render::{self, Lookups, Target, image_reference};
use crate::core::rollout::{Rollout, rollout_state};
use crate::core::spec::reference::Reference;
use crate::core::spec::{EnvValue, Repo, ServiceSpec};

/// Decides for one environment; with a memo, reuses what the last reconcile decided.
pub struct Decider<'a> {
    memo: Option<&'a mut Memo>,
    pub reused: Reused,
    env: &'a EnvConfig,
    aws: AwsConfig,
    commits: &'a BTreeMap<String, String>,
    version: Option<&'a str>,
    lookups: Lookups,
    ctx: NormContext,
}

impl<'a> Decider<'a> {
    /// `aws` carries the account id the ARNs are made with.
    pub fn new(
        memo: Option<&'a mut Memo>,
        env: &'a EnvConfig,
        aws: AwsConfig,
        commits: &'a BTreeMap<String, String>,
        version: Option<&'a str>,
    ) -> Decider<'a> {
        let ctx = NormContext {
            partition: aws.partition().to_string(),
            region: aws.region.clone(),
            account_id: aws.account_id.clone(),
        };
        Decider { memo, reused: Reused::default(), env, aws, commits, version, lookups: Lookups::default(), ctx }
    }

    fn commit_of(&self, spec: &ServiceSpec) -> String {
        self.commits.get(&spec.dir).cloned().unwrap_or_default()
    }

    /// Resolves every service of the environment into the table (or `only` one, or the
    /// scope's); broken ones fail alone, each with its diagnostics.
    pub fn resolve(&mut self, repo: &Repo, only: Option<&str>, scope: Scope<'_>) -> Table {
        let env = self.env.name.as_str();
        let mut table = Table::default();
        if let Some(m) = self.memo.as_deref_mut() {
            let names: BTreeSet<&str> =
                repo.services.iter().filter(|d| d.envs.contains_key(env)).map(|d| d.name.as_str()).collect();
            m.retain(|name| names.contains(name));
        }
        for broken in repo.broken.iter().filter(|b| b.envs.iter().any(|e| e == env)) {
            if only.is_none_or(|o| o == broken.key) {
                let row = table.insert_done(&broken.key, Outcome::Failed(Failure::Invalid(broken.errors.clone())));
                row.report.diagnostics = broken.errors.clone();
            }
        }
        for def in repo.services.iter().filter(|d| d.envs.contains_key(env) && only.is_none_or(|o| o == d.name)) {
            let resolved = match self.memo.as_deref_mut() {
                Some(m) => m.resolve(def, env, &mut self.reused),
                None => def.resolve(env).map(Arc::new),
            };
            match resolved {
                Ok(spec) => {
                    let row = table.insert_done(&def.name, Outcome::Synced);
                    row.report.commit = Some(self.commit_of(&spec));
                    row.report.depends_on = spec.depends_on.clone();
                    row.stage = Stage::Resolved { spec };
                }
                Err(diags) => {
                    let row = table.insert_done(&def.name, Outcome::Failed(Failure::Invalid(diags.clone())));
                    row.report.diagnostics = diags;
                }
            }
        }
        if let Scope::Only(due) = scope {
            keep_with_dependents(&mut table, due);
        }
        table
    }

    /// Adds what `spec` references to a verification request; returns its ECR image, if any.
    pub fn verify_request(&self, spec: &ServiceSpec, req: &mut VerifyRequest) -> Option<EcrImage> {
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
        let image = self.image_of(spec);
        let i = lookups_image(&image, &self.aws.region)?;
        req.images.insert(i.clone());
        Some(i)
    }

    fn image_of(&self, spec: &ServiceSpec) -> String {
        let commit = self.commit_of(spec);
        let lookups = Lookups::default();
        let probe = Target { env: self.env, aws: &self.aws, commit: &commit, version: self.version, lookups: &lookups };
        image_reference(&spec.image, self.aws.registry.as_deref(), &probe.image_tag())
    }

    /// Starts deciding with what verification found (looked-up values and secret ARNs).
    pub fn begin(&mut self, verified: &Verified) {
        self.lookups = Lookups { ssm_values: verified.ssm_values.clone(), secret_arns: verified.secret_arns.clone() };
        if let Some(m) = self.memo.as_deref_mut() {
            m.begin(self.env, &self.aws, &self.lookups, &self.ctx);
        }
    }

    /// Why `spec` cannot be applied given what verification found: a failed lookup of one
    /// of its items, or references that do not exist.
    pub fn reference_failure(&self, spec: &ServiceSpec, verified: &Verified) -> Option<Failure> {
        let mut items: Vec<Item> = spec
            .secret_references()
            .map(|r| match r {
                Reference::Ssm(s) => Item::parameter(s.arn.as_deref().unwrap_or(&s.name)),
                Reference::SecretsManager(s) => Item::Secret(s.id.clone()),
            })
            .collect();
        items.extend(spec.ssm_variables().into_iter().map(|(n, _)| Item::Parameter(n.to_string())));
        if let Some(i) = lookups_image(&self.image_of(spec), &self.aws.region) {
            items.push(Item::Image(i));
        }
        if let Some(error) = verified.failure(&items) {
            return Some(Failure::Aws { context: "verifying references", error: error.clone(), applying: false });
        }
        let problems = reference_problems(spec, verified);
        (!problems.is_empty()).then_some(Failure::MissingReferences(problems))
    }

    fn render_one(&mut self, spec: &Arc<ServiceSpec>) -> Result<Rendering, Vec<Diagnostic>> {
        let commit = self.commit_of(spec);
        let target =
            Target { env: self.env, aws: &self.aws, commit: &commit, version: self.version, lookups: &self.lookups };
        match self.memo.as_deref_mut() {
            Some(m) => m.render(spec, &target, &mut self.reused),
            None => render::render(spec, &target).map(Rendering::fresh),
        }
    }

    /// Renders every resolved service that passed verification. In a push's scope, services
    /// still at the spec hash last seen in sync leave the table.
    pub fn render(&mut self, table: &mut Table, verified: &Verified, scope: Scope<'_>) {
        for name in table.at(Stage::is_resolved) {
            let Some(Stage::Resolved { spec }) = table.rows.get_mut(&name).map(|r| std::mem::take(&mut r.stage)) else {
                continue;
            };
            if let Some(f) = self.reference_failure(&spec, verified) {
                table.finish(&name, Outcome::Failed(f));
                continue;
            }
            let rendering = match self.render_one(&spec) {
                Ok(r) => r,
                Err(diags) => {
                    table.finish(&name, Outcome::Failed(Failure::Invalid(diags)));
                    continue;
                }
            };
            if let Scope::Changed(settled) = scope
                && settled.get(&name).is_some_and(|h| *h == rendering.spec_hash)
            {
                table.rows.remove(&name);
                continue;
            }
            let row = table.rows.get_mut(&name).expect("a row being rendered");
            row.report.spec_hash = Some(rendering.spec_hash.clone());
            row.report.image = Some(rendering.image.clone());
            let image = lookups_image(&rendering.image, &self.aws.region);
            if image.is_some_and(|i| verified.missing_images.contains(&i)) {
                table.finish(&name, Outcome::WaitingForImage(rendering.image.clone()));
                continue;
            }
            row.stage = Stage::Rendered { spec, rendering };
        }
    }

    /// Plans a rendered service against its live state.
    /// `answer`: the digest of the DescribeServices answer `state` was read from, if known.
    pub fn plan(&mut self, table: &mut Table, name: &str, state: LiveState, answer: Option<[u8; 16]>) {
        let Some(row) = table.rows.get_mut(name) else { return };
        let Stage::Rendered { spec, mut rendering } = std::mem::take(&mut row.stage) else { return };
        let seen = Seen::of(&state);
        (row.report.task_definition, row.report.live_spec_hash) = (seen.task_definition, seen.spec_hash);
        let rolling_out = rolling_out(&state, name, &rendering.spec_hash, self.env).map(Box::new);
        // A rollout in progress is judged from the answer each time: never reused undecoded.
        let answers =
            answer.filter(|_| rolling_out.is_none()).map(|service| Answers { service, rest: state.rest_fingerprint() });
        let planned = match self.memo.as_deref_mut() {
            Some(m) => {
                let commit = self.commits.get(&spec.dir).cloned().unwrap_or_default();
                let (env, aws, version, lookups) = (self.env, &self.aws, self.version, &self.lookups);
                let rerender = || render::render(&spec, &Target { env, aws, commit: &commit, version, lookups });
                m.plan(name, &mut rendering, &state, spec.adopt, answers, rerender, &mut self.reused)
            }
            None => Ok(plan::plan(desired(&rendering), &state, spec.adopt, &self.ctx)),
        };
        match planned {
            Ok(plan) => {
                // A hold or a pin of another spec ends when this one applies.
                let lift = [(state.held.is_some(), tags::HELD), (state.pinned.is_some(), tags::PINNED)]
                    .into_iter()
                    .filter_map(|(on, tag)| on.then_some(tag))
                    .collect();
                let state = registers(&plan).then(|| Box::new(state));
                row.stage = Stage::Planned { spec, rendering, plan: Box::new(plan), state, lift, rolling_out };
            }
            Err(diags) => row.report.outcome = Outcome::Failed(Failure::Invalid(diags)),
        }
    }

    /// The digest of the DescribeServices answer that `name`'s kept plan was made from:
    /// what a read may be told it answers again.
    pub fn known_answer(&self, table: &Table, name: &str) -> Option<[u8; 16]> {
        let Some(Stage::Rendered { rendering, .. }) = table.rows.get(name).map(|r| &r.stage) else { return None };
        self.memo.as_deref()?.known_answer(name, rendering)
    }

    /// Plans `name` with the plan kept from its last read, when its service answered what
    /// it did then (`service`, undecoded) and the rest of its state (`rest`, read anew) is
    /// the same too. `false`: it needs its service decoded and a plan of its own.
    pub fn reuse(&mut self, table: &mut Table, name: &str, answers: Answers) -> bool {
        let Some(row) = table.rows.get_mut(name) else { return false };
        let Stage::Rendered { spec, rendering } = &row.stage else { return false };
        let Some(memo) = self.memo.as_deref() else { return false };
        let Some((plan, seen)) = memo.unchanged(name, rendering, spec.adopt, answers, &mut self.reused) else {
            return false;
        };
        let Stage::Rendered { spec, rendering } = std::mem::take(&mut row.stage) else { return false };
        (row.report.task_definition, row.report.live_spec_hash) = (seen.task_definition, seen.spec_hash);
        // A kept plan has nothing to do: no state to keep, no tag to lift, no rollout.
        let (plan, state, lift, rolling_out) = (Box::new(plan), None, Vec::new(), None);
        row.stage = Stage::Planned { spec, rendering, plan, state, lift, rolling_out };
        true
    }

    /// Plans a service again with its family's newest revision known (it may already have
    /// the content git wants: one registered by an attempt whose update then failed).
    pub fn replan(&mut self, table: &mut Table, name: &str, recent: Vec<Arc<LiveTaskDefinition>>) {
        let Some(Stage::Planned { spec, rendering, plan, state: Some(state), .. }) =
            table.rows.get_mut(name).map(|r| &mut r.stage)
        else {
            return;
        };
        state.recent_revisions = recent;
        **plan = plan::plan(desired(rendering), state, spec.adopt, &self.ctx);
    }

    /// What each plan means: its report's ownership, drift, plan lines and outcome.
    /// `watching`: the rollouts the caller watches beside its cycles (the daemon; `None` for
    /// the CLI). A rollout of a service's current spec that ECS is still running and nobody
    /// watches (the daemon restarted during it) is handed back to be watched again, so its
    /// end is judged and a failure held.
    pub fn conclude(&self, table: &mut Table, watching: Option<&BTreeMap<String, String>>) {
        for (name, row) in table.rows.iter_mut() {
            let Stage::Planned { rendering, plan, rolling_out, .. } = &mut row.stage else { continue };
            let r = &mut row.report;
            r.ownership = Some(plan.ownership);
            r.drift = plan.drift.clone();
            r.plan = plan.actions.iter().map(Action::summary).collect();
            r.outcome = plan_outcome(plan, watching.and_then(|w| w.get(name)) == Some(&rendering.spec_hash));
            if r.outcome == Outcome::Synced
                && watching.is_some_and(|w| !w.contains_key(name))
                && let Some(watch) = rolling_out.take()
            {
                r.outcome = Outcome::Progressing;
                r.rollout = Some(*watch);
            }
        }
    }
}

/// The rendered state; there whenever the service's plan may have something to do (see
/// [`Memo::plan`]).
pub fn desired(rendering: &Rendering) -> &Arc<Desired> {
    rendering.desired.as_ref().expect("a service being planned keeps its rendered state")
}

/// The rollout of `spec_hash` that ECS is still running on the live service, if berth
/// waits for rollouts in this environment.
fn rolling_out(state: &LiveState, name: &str, spec_hash: &str, env: &EnvConfig) -> Option<RolloutWatch> {
    let service = state.service.as_ref().filter(|_| env.rollout_wait)?;
    let revision = &service.settings.task_definition;
    let ours = service.tag(tags::SPEC_HASH) == Some(spec_hash) && state.held.is_none();
    (ours && rollout_state(service, revision) == Rollout::InProgress).then(|| RolloutWatch {
        cluster: env.cluster.clone(),
        service: name.to_string(),
        service_arn: service.arn.clone(),
        revision: revision.clone(),
        spec_hash: spec_hash.to_string(),
        timeout: env.rollout_timeout + crate::core::rollout::scheduled(&service.settings),
        poll: env.rollout_poll,
        history: None,
    })
}

fn registers(plan: &Plan) -> bool {
    plan.actions.iter().any(|a| matches!(a, Action::RegisterTaskDefinition { .. }))
}

fn plan_outcome(plan: &Plan, watched: bool) -> Outcome {
    for b in &plan.blockers {
        let hold = match b {
            Blocker::Held { spec_hash, in_sync } => {
                Hold::RolloutFailed { spec_hash: spec_hash.clone(), in_sync: *in_sync }
            }
            Blocker::Pinned { pin, in_sync } => Hold::Pinned { pin: pin.clone(), in_sync: *in_sync },
            Blocker::Paused { pause, in_sync } => Hold::Paused { pause: pause.clone(), in_sync: *in_sync },
            _ => continue,
        };
        return Outcome::Held(hold);
    }
    if !plan.blockers.is_empty() {
        let text: Vec<String> = plan.blockers.iter().map(ToString::to_string).collect();
        return if plan.ownership == Ownership::Unmanaged {
            Outcome::Unmanaged(text.join("; "))
        } else {
            Outcome::Failed(Failure::Blocked(text))
        };
    }
    match (plan.in_sync(), watched) {
        (true, true) => Outcome::Progressing,
        (true, false) => Outcome::Synced,
        (false, _) => Outcome::OutOfSync,
    }
}

/// Keeps the rows of `due` and of the services that depend on them, transitively.
fn keep_with_dependents(table: &mut Table, due: &BTreeSet<String>) {
    let mut keep: BTreeSet<String> = due.iter().filter(|n| table.rows.contains_key(*n)).cloned().collect();
    // The due services' dependents: a retry that converges one lets them follow.
    close(&mut keep, |keep| {
        (table.rows.iter())
            .filter(|(n, r)| !keep.contains(*n) && r.report.depends_on.iter().any(|d| keep.contains(d)))
            .map(|(n, _)| n.clone())
            .collect()
    });
    // And what they depend on, so that a dependency that is failing, backing off or
    // rolling out holds them off as in a full cycle.
    close(&mut keep, |keep| {
        (keep.iter())
            .filter_map(|n| table.rows.get(n))
            .flat_map(|r| r.report.depends_on.iter())
            .filter(|d| !keep.contains(*d) && table.rows.contains_key(*d))
            .cloned()
            .collect()
    });
    table.rows.retain(|n, _| keep.contains(n));
}

/// Grows `set` with what `more` finds until it finds nothing new.
fn close(set: &mut BTreeSet<String>, more: impl Fn(&BTreeSet<String>) -> Vec<String>) {
    loop {
        let found = more(set);
        if found.is_empty() {
            return;
        }
        set.extend(found);
    }
}

/// Missing secrets and parameters of a service, each with where it is referenced.
fn reference_problems(spec: &ServiceSpec, verified: &Verified) -> Vec<String> {
    let mut problems = Vec::new();
    for r in spec.secret_references() {
        let exists = match r {
            Reference::Ssm(s) => verified.ssm_exists(s.arn.as_deref().unwrap_or(&s.name)),
            Reference::SecretsManager(s) => verified.secret_arns.contains_key(&s.id),
        };
        if !exists {
            let at = spec.environment.iter().find(|e| matches!(&e.value, EnvValue::Secret(x) if x == r));
            let pos = at.map(|e| e.pos.to_string()).unwrap_or_default();
            problems.push(format!("{pos}: secret {r} does not exist"));
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A retry keeps the due services, their dependents and what those depend on.
    #[test]
    fn a_retry_keeps_dependents_and_dependencies() {
        let mut table = Table::default();
        for (name, deps) in
            [("db", vec![]), ("api", vec!["db"]), ("web", vec!["api", "cdn"]), ("cdn", vec![]), ("etl", vec![])]
        {
            table.insert_done(name, Outcome::Synced).report.depends_on = deps.into_iter().map(String::from).collect();
        }
        keep_with_dependents(&mut table, &BTreeSet::from(["api".to_string()]));
        let kept: Vec<&str> = table.rows.keys().map(String::as_str).collect();
        assert_eq!(kept, ["api", "cdn", "db", "web"]);
    }
}
