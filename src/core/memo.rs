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
//!   against last time (compared by [`LiveState::fingerprint`], 128 bits of SHA-256).
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
    commit: String,
    version: Option<String>,
    desired: Arc<Desired>,
    planned: Option<Planned>,
}

struct Planned {
    /// [`LiveState::fingerprint`] of what was planned against (a copy of the state would
    /// cost ~2 KiB a service).
    live: [u8; 16],
    adopt: bool,
    plan: Plan,
}

/// How many of a cycle's steps were reused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reused {
    pub resolves: usize,
    pub renders: usize,
    pub plans: usize,
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
    ) -> Result<Arc<Desired>, Vec<Diagnostic>> {
        debug_assert!(self.inputs.as_ref().is_some_and(|i| i.env == *target.env), "Memo::begin not called");
        let entry = self.services.get_mut(&spec.name).filter(|e| Arc::ptr_eq(&e.spec, spec));
        if let Some(r) = entry.as_ref().and_then(|e| e.rendered.as_ref())
            && r.commit == target.commit
            && r.version.as_deref() == target.version
        {
            reused.renders += 1;
            return Ok(r.desired.clone());
        }
        let desired = Arc::new(render::render(spec, target)?);
        if let Some(e) = entry {
            e.rendered = Some(Rendered {
                commit: target.commit.to_string(),
                version: target.version.map(str::to_string),
                desired: desired.clone(),
                planned: None,
            });
        }
        Ok(desired)
    }

    /// `plan(desired, live, adopt, ctx)`, reused when `desired` is the one rendered last
    /// time and `live` equals what was planned against then.
    pub fn plan(
        &mut self,
        name: &str,
        desired: &Arc<Desired>,
        live: &LiveState,
        adopt: bool,
        reused: &mut Reused,
    ) -> Plan {
        let ctx = &self.inputs.as_ref().expect("Memo::begin not called").ctx;
        let rendered =
            self.services.get_mut(name).and_then(|e| e.rendered.as_mut()).filter(|r| Arc::ptr_eq(&r.desired, desired));
        let Some(rendered) = rendered else { return plan::plan(desired, live, adopt, ctx) };
        let fingerprint = live.fingerprint();
        if let Some(p) = &rendered.planned
            && p.adopt == adopt
            && p.live == fingerprint
        {
            reused.plans += 1;
            return p.plan.clone();
        }
        let plan = plan::plan(desired, live, adopt, ctx);
        rendered.planned = Some(Planned { live: fingerprint, adopt, plan: plan.clone() });
        plan
    }
}
