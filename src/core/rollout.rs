//! Judging a rollout from a service's deployments.

use super::live::LiveService;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rollout {
    Done,
    InProgress,
    Failed(String),
}

/// The state of the rollout of `revision` (a task definition ARN) on `service`.
///
/// ECS's circuit breaker marks the failed deployment `FAILED` and, with rollback on,
/// starts a new PRIMARY deployment of the previous revision; either sign is a failure.
pub fn rollout_state(service: &LiveService, revision: &str) -> Rollout {
    let ours = service.deployments.iter().find(|d| d.task_definition == revision);
    match ours {
        Some(d) if d.rollout_state.as_deref() == Some("FAILED") => Rollout::Failed(format!(
            "deployment {} failed{}",
            d.id,
            d.rollout_state_reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default()
        )),
        Some(d) if d.status == "PRIMARY" && d.rollout_state.as_deref() == Some("COMPLETED") => Rollout::Done,
        // Older ECS services without rollout states: done when the primary runs every task
        // and nothing else is left.
        Some(d)
            if d.status == "PRIMARY"
                && d.rollout_state.is_none()
                && d.running_count >= d.desired_count
                && service.deployments.len() == 1 =>
        {
            Rollout::Done
        }
        Some(d) if d.status == "PRIMARY" || d.status == "ACTIVE" => Rollout::InProgress,
        Some(d) => Rollout::Failed(format!("deployment {} is {}", d.id, d.status)),
        None => match service.deployments.iter().find(|d| d.status == "PRIMARY") {
            Some(p) => Rollout::Failed(format!("rolled back: the primary deployment runs {}", p.task_definition)),
            None => Rollout::InProgress,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::live::Deployment;

    fn svc(deps: Vec<Deployment>) -> LiveService {
        LiveService { deployments: deps, ..Default::default() }
    }

    fn dep(status: &str, td: &str, state: Option<&str>) -> Deployment {
        Deployment {
            id: format!("ecs-svc/{td}"),
            status: status.into(),
            task_definition: td.into(),
            rollout_state: state.map(Into::into),
            ..Default::default()
        }
    }

    #[test]
    fn states() {
        assert_eq!(rollout_state(&svc(vec![dep("PRIMARY", "td:2", Some("COMPLETED"))]), "td:2"), Rollout::Done);
        assert_eq!(
            rollout_state(
                &svc(vec![dep("PRIMARY", "td:2", Some("IN_PROGRESS")), dep("ACTIVE", "td:1", Some("COMPLETED"))]),
                "td:2"
            ),
            Rollout::InProgress
        );
        assert!(matches!(
            rollout_state(
                &svc(vec![dep("ACTIVE", "td:2", Some("FAILED")), dep("PRIMARY", "td:1", Some("IN_PROGRESS"))]),
                "td:2"
            ),
            Rollout::Failed(_)
        ));
        assert!(
            matches!(rollout_state(&svc(vec![dep("PRIMARY", "td:1", Some("COMPLETED"))]), "td:2"), Rollout::Failed(m) if m.contains("rolled back"))
        );
    }
}
