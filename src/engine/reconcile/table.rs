//! The reconcile's one table: a row per service, its report so far and its stage.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Failure, Outcome, RolloutWatch, ServiceReport};
use crate::core::live::LiveState;
use crate::core::memo::Rendering;
use crate::core::plan::Plan;
use crate::core::spec::{Repo, ServiceSpec};

/// Where a service is in the reconcile. Each phase takes the rows at its stage and moves
/// them on, or to [`Stage::Done`] with their outcome in the report.
#[derive(Debug, Default)]
pub enum Stage {
    /// The report's outcome is final (invalid, a failed lookup, waiting for an image, …).
    #[default]
    Done,
    /// The spec resolved for the environment.
    Resolved { spec: Arc<ServiceSpec> },
    /// References exist and the desired state is rendered.
    Rendered { spec: Arc<ServiceSpec>, rendering: Rendering },
    /// Planned against the live state. `state` is kept only when the plan registers a
    /// revision (a family's newest revision may still be the one git wants); `lift`: the
    /// state tags of another spec on the live service (`berth:held`, `berth:pinned`), removed
    /// once this one applies; `rolling_out`: ECS is still rolling
    /// out this very spec (a watch of it may need resuming).
    Planned {
        spec: Arc<ServiceSpec>,
        rendering: Rendering,
        plan: Box<Plan>,
        state: Option<Box<LiveState>>,
        lift: Vec<&'static str>,
        rolling_out: Option<Box<RolloutWatch>>,
    },
}

#[derive(Debug)]
pub struct Row {
    pub report: ServiceReport,
    pub stage: Stage,
}

/// The rows of one reconcile, by service name.
#[derive(Debug, Default)]
pub struct Table {
    pub rows: BTreeMap<String, Row>,
}

impl Table {
    /// Every service of `repo` in `env` (or `only`), failed with `failure`.
    pub fn failing(repo: &Repo, env: &str, only: Option<&str>, failure: Failure) -> Table {
        let mut t = Table::default();
        let names = repo
            .services
            .iter()
            .filter(|d| d.envs.contains_key(env))
            .map(|d| d.name.clone())
            .chain(repo.broken.iter().filter(|b| b.envs.iter().any(|e| e == env)).map(|b| b.key.clone()));
        for name in names.filter(|n| only.is_none_or(|o| o == n)) {
            t.insert_done(&name, Outcome::Failed(failure.clone()));
        }
        t
    }

    pub fn insert_done(&mut self, name: &str, outcome: Outcome) -> &mut Row {
        let mut report = ServiceReport::new(name);
        report.outcome = outcome;
        self.rows.insert(name.to_string(), Row { report, stage: Stage::Done });
        self.rows.get_mut(name).expect("just inserted")
    }

    /// Ends a row with `outcome`.
    pub fn finish(&mut self, name: &str, outcome: Outcome) {
        if let Some(row) = self.rows.get_mut(name) {
            row.report.outcome = outcome;
            row.stage = Stage::Done;
        }
    }

    /// The names of the rows at a stage.
    pub fn at(&self, stage: fn(&Stage) -> bool) -> Vec<String> {
        self.rows.iter().filter(|(_, r)| stage(&r.stage)).map(|(n, _)| n.clone()).collect()
    }

    pub fn report(&self, name: &str) -> Option<&ServiceReport> {
        self.rows.get(name).map(|r| &r.report)
    }

    pub fn into_reports(self) -> Vec<ServiceReport> {
        let class = |r: &ServiceReport| r.outcome.failure().map(Failure::class);
        self.rows
            .into_values()
            .map(|mut r| {
                r.report.rollout_failed = class(&r.report) == Some(crate::engine::outcome::FailureClass::RolloutFailed);
                r.report
            })
            .collect()
    }
}

impl Stage {
    pub fn is_resolved(&self) -> bool {
        matches!(self, Stage::Resolved { .. })
    }

    pub fn is_rendered(&self) -> bool {
        matches!(self, Stage::Rendered { .. })
    }

    pub fn is_planned(&self) -> bool {
        matches!(self, Stage::Planned { .. })
    }

    pub fn spec(&self) -> Option<&Arc<ServiceSpec>> {
        match self {
            Stage::Done => None,
            Stage::Resolved { spec } | Stage::Rendered { spec, .. } | Stage::Planned { spec, .. } => Some(spec),
        }
    }
}
