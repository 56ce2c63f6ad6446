//! The task definition step: reuse a revision with the desired content, or register one.

use super::{Action, Blocker, Input, Plan, Revision, Step};
use crate::core::diff;

/// Adds the running revision's drift and, when no revision has the desired content, a
/// RegisterTaskDefinition; returns the revision the service is to run.
pub(super) fn step(plan: &mut Plan, input: &Input) -> Step<Revision> {
    let desired = &input.desired.task_definition;
    // Fargate pulls from ECR, writes awslogs and injects secrets with the execution role:
    // without one, AWS rejects the revision.
    if desired.execution_role_arn.is_none() {
        return Err(vec![Blocker::NoExecutionRole]);
    }
    // The running revision, or one of the family's newest, when its content is what git
    // says (one registered by an attempt whose service update then failed, or the one a
    // rollback returns to).
    let running = input.live.task_definition.as_ref();
    let drift = running.map(|td| diff::diff_task_definition(td, desired, input.ctx));
    let reuse = match (running, &drift) {
        (Some(td), Some(drift)) if drift.is_empty() => Some(td.arn.clone()),
        _ => (input.live.recent_revisions.iter())
            .find(|td| diff::task_definition_matches(td, desired, input.ctx))
            .map(|td| td.arn.clone()),
    };
    plan.drift.extend(drift.into_iter().flatten());
    Ok(match reuse {
        Some(arn) => Revision::Existing(arn),
        None => Revision::Output(plan.push(Action::RegisterTaskDefinition { task_definition: desired.clone() })),
    })
}
