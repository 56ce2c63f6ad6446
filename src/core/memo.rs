//! Work kept between reconciles of one environment, so that a poll of an unchanged
//! service costs comparisons instead of a resolve, a render and a diff.
//!
//! Every step is a pure function of its inputs, and each is reused only when those inputs
//! are the same as last time:
//! - resolving: the same parsed service folder (the `Arc` the repository reuses for a
//!   folder whose files did not change, see `Repo::load_reusing`);
//! - rendering: the same resolved spec, commit and version, under the same environment
//!   config, AWS settings and looked-up SSM values and secret ARNs (checked once per cycle
//!   in [`Memo::begin`]: any difference forgets the environment's renders);
//! - planning: the same rendered state against a live state equal to the one planned
//!   against last time (compared by [`LiveState::fingerprint`], 128 bits of SHA-256),
//!   when that plan had nothing to do.
//!
//! What it holds is kept small for an idle daemon: a service last planned in sync keeps
//! its plan and spec hash but not its rendered state (rendered again if its live state
//! changes); one with work to do keeps its rendered state but not its plan.
//!
//! A service with a reused plan gets exactly the plan a fresh computation gives
//! (`tests/parse_props.rs` checks this on random changes).

use std::collections::HashMap;
use std::sync::Arc;

use super::config::{AwsConfig, EnvConfig};
use super::desired::Desired;
use super::diag::Diagnostic;
use super::diff::NormContext;
use super::live::LiveState;
use super::plan::{self, Plan};
use super::render::{self, Lookups, Target};
use super::spec::{ServiceDef, ServiceSpec};

/// One environment's memo. The daemon keeps one per environment for the life of the
/// process (dropping it when the environment leaves the config); a config that changes
/// the environment or AWS settings makes [`Memo::begin`] forget the renders.
#[derive(Default)]
pub struct Memo {
    inputs: Option<CycleInputs>,
    services: HashMap<String, Entry>,
    /// The last [`Rendered::id`] handed out.
    renders: u64,
}

/// What every render of a cycle shares.
struct CycleInputs {
    env: EnvConfig,
    aws: AwsConfig,
    lookups: Lookups,
    ctx: NormContext,
}

struct Entry {
    def: Arc<ServiceDef>,
    spec: Arc<ServiceSpec>,
    rendered: Option<Rendered>,
}

struct Rendered {
    /// Tells this render from earlier ones of the service ([`Rendering::id`]).
    id: u64,
    commit: String,
    version: Option<String>,
    spec_hash: String,
    image: String,
    /// Let go once a plan against it has nothing to do: a poll that finds the same live
    /// state again needs only the plan, and a thousand rendered states are ~3 MB that an
    /// idle daemon would otherwise hold. Rendered again when the live state changes.
    desired: Option<Arc<Desired>>,
    planned: Option<Planned>,
}

struct Planned {
    /// [`LiveState::fingerprint`] of what was planned against (a copy of the state would
    /// cost ~2 KiB a service).
    live: [u8; 16],
    adopt: bool,
    plan: Plan,
    /// The answers the state was read from, when the reader digested them.
    answers: Option<Answers>,
    /// The live revision and spec hash tag the service had, for the report of a plan
    /// reused without its state.
    seen: Seen,
}

/// Digests of the answers a service's live state was read from: its DescribeServices
/// batch's body, and [`LiveState::rest_fingerprint`] of the rest. The same body decodes
/// to the same service, so equal answers mean an equal live state, and a plan made
/// against it can be reused without decoding the body again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Answers {
    pub service: [u8; 16],
    pub rest: [u8; 16],
}

/// What a report says of the live service (its revision, its spec hash tag).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Seen {
    pub task_definition: Option<String>,
    pub spec_hash: Option<String>,
}

/// A service's render as a reconcile holds it: its spec hash and image always, the
/// rendered state whenever a plan may need it.
#[derive(Clone, Debug)]
pub struct Rendering {
    pub spec_hash: String,
    pub image: String,
    /// `None` only when the memo's last plan against it had nothing to do;
    /// [`Memo::plan`] renders it again when it plans afresh.
    pub desired: Option<Arc<Desired>>,
    /// The memo's render this came from (0: none).
    id: u64,
}

impl Rendering {
    /// A render made outside a memo.
    pub fn fresh(desired: Desired) -> Rendering {
        Rendering {
            spec_hash: desired.spec_hash().to_string(),
            image: desired.task_definition.container_definitions[0].image.clone(),
            desired: Some(Arc::new(desired)),
            id: 0,
        }
    }
}

/// How many of a cycle's steps were reused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reused {
    pub resolves: usize,
    pub renders: usize,
    pub plans: usize,
    /// Of the reused plans, those whose service's answer was not decoded.
    pub answers: usize,
}

impl Memo {
    /// Starts a cycle with the inputs every render of the environment shares; renders made
    /// under different ones are forgotten.
    pub fn begin(&mut self, env: &EnvConfig, aws: &AwsConfig, lookups: &Lookups, ctx: &NormContext) {
        let same = self
            .inputs
            .as_ref()
            .is_some_and(|i| i.env == *env && i.aws == *aws && i.lookups == *lookups && i.ctx == *ctx);
        if !same {
            for e in self.services.values_mut() {
                e.rendered = None;
            }
            self.inputs =
                Some(CycleInputs { env: env.clone(), aws: aws.clone(), lookups: lookups.clone(), ctx: ctx.clone() });
        }
    }

    /// Keeps only the services in `keep` (the others left the repository).
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.services.retain(|name, _| keep(name));
    }

    /// `def.resolve(env)`, reused while the folder's parse is the same.
    pub fn resolve(
        &mut self,
        def: &Arc<ServiceDef>,
        env: &str,
        reused: &mut Reused,
    ) -> Result<Arc<ServiceSpec>, Vec<Diagnostic>> {
        if let Some(e) = self.services.get(&def.name)
            && Arc::ptr_eq(&e.def, def)
        {
            reused.resolves += 1;
            return Ok(e.spec.clone());
        }
        let spec = Arc::new(def.resolve(env)?);
        self.services.insert(def.name.clone(), Entry { def: def.clone(), spec: spec.clone(), rendered: None });
        Ok(spec)
    }

    /// `render(spec, target)`, reused for the same spec, commit and version (the rest of
    /// `target` was checked by [`Memo::begin`]). `spec` must come from [`Memo::resolve`].
    pub fn render(
        &mut self,
        spec: &Arc<ServiceSpec>,
        target: &Target<'_>,
        reused: &mut Reused,
    ) -> Result<Rendering, Vec<Diagnostic>> {
        debug_assert!(self.inputs.as_ref().is_some_and(|i| i.env == *target.env), "Memo::begin not called");
        let entry = self.services.get_mut(&spec.name).filter(|e| Arc::ptr_eq(&e.spec, spec));
        if let Some(r) = entry.as_ref().and_then(|e| e.rendered.as_ref())
            && r.commit == target.commit
            && r.version.as_deref() == target.version
        {
            reused.renders += 1;
            return Ok(Rendering {
                spec_hash: r.spec_hash.clone(),
                image: r.image.clone(),
                desired: r.desired.clone(),
                id: r.id,
            });
        }
        let mut rendering = Rendering::fresh(render::render(spec, target)?);
        if let Some(e) = entry {
            self.renders += 1;
            rendering.id = self.renders;
            e.rendered = Some(Rendered {
                id: rendering.id,
                commit: target.commit.to_string(),
                version: target.version.map(str::to_string),
                spec_hash: rendering.spec_hash.clone(),
                image: rendering.image.clone(),
                desired: rendering.desired.clone(),
                planned: None,
            });
        }
        Ok(rendering)
    }

    /// `plan(desired, live, adopt, ctx)`, reused when `rendering` is the memo's latest
    /// render of the service and `live` equals what was planned against then. Planning
    /// afresh a rendering whose state the memo let go renders it again with `rerender`,
    /// and puts it back in `rendering`; a plan with something to do always leaves it there.
    /// `answers`: what `live` was read from, kept with a plan that has nothing to do (see
    /// [`Memo::unchanged`]).
    #[allow(clippy::too_many_arguments)]
    pub fn plan(
        &mut self,
        name: &str,
        rendering: &mut Rendering,
        live: &LiveState,
        adopt: bool,
        answers: Option<Answers>,
        rerender: impl FnOnce() -> Result<Desired, Vec<Diagnostic>>,
        reused: &mut Reused,
    ) -> Result<Plan, Vec<Diagnostic>> {
        let ctx = &self.inputs.as_ref().expect("Memo::begin not called").ctx;
        let id = rendering.id;
        let mut rendered =
            self.services.get_mut(name).and_then(|e| e.rendered.as_mut()).filter(|r| id != 0 && r.id == id);
        let fingerprint = rendered.as_ref().map(|_| live.fingerprint());
        if let Some(r) = rendered.as_deref_mut()
            && let Some(p) = r.planned.as_mut()
            && p.adopt == adopt
            && Some(p.live) == fingerprint
        {
            reused.plans += 1;
            // The same state: the plan holds for the answers it was read from now.
            p.answers = answers;
            return Ok(p.plan.clone());
        }
        let desired = match &rendering.desired {
            Some(d) => d.clone(),
            None => {
                let d = Arc::new(rerender()?);
                rendering.desired = Some(d.clone());
                d
            }
        };
        let plan = plan::plan(&desired, live, adopt, ctx);
        if let (Some(r), Some(fingerprint)) = (rendered, fingerprint) {
            // Only plans with nothing to do are kept: one with actions is applied at once
            // and planned again next time against what the apply left (a service held by
            // backoff or a failed rollout is diffed again each poll: CPU, not memory).
            if plan.actions.is_empty() {
                r.desired = None;
                let seen = Seen::of(live);
                r.planned = Some(Planned { live: fingerprint, adopt, plan: plan.clone(), answers, seen });
            } else {
                r.desired = Some(desired);
                r.planned = None;
            }
        }
        Ok(plan)
    }

    /// The digest of the DescribeServices answer `name`'s kept plan was made from, while
    /// `rendering` is the memo's latest render of it: the answer a read may find again.
    pub fn known_answer(&self, name: &str, rendering: &Rendering) -> Option<[u8; 16]> {
        let r = self.services.get(name)?.rendered.as_ref().filter(|r| rendering.id != 0 && r.id == rendering.id)?;
        Some(r.planned.as_ref()?.answers?.service)
    }

    /// The kept plan of `name` when `rendering` is the latest render and `answers` are the
    /// ones it was planned from (its live state is then the same, undecoded), with what the
    /// report says of the live service.
    pub fn unchanged(
        &self,
        name: &str,
        rendering: &Rendering,
        adopt: bool,
        answers: Answers,
        reused: &mut Reused,
    ) -> Option<(Plan, Seen)> {
        let r = self.services.get(name)?.rendered.as_ref().filter(|r| rendering.id != 0 && r.id == rendering.id)?;
        let p = r.planned.as_ref().filter(|p| p.adopt == adopt && p.answers == Some(answers))?;
        reused.plans += 1;
        reused.answers += 1;
        Some((p.plan.clone(), p.seen.clone()))
    }
}

impl Seen {
    pub fn of(live: &LiveState) -> Seen {
        let service = live.service.as_ref();
        Seen {
            task_definition: service.map(|s| s.settings.task_definition.clone()),
            spec_hash: service.and_then(|s| s.tag(super::desired::tags::SPEC_HASH)).map(str::to_string),
        }
    }
}
