//! Judging a rollout from a service's deployments.

use super::desired::ServiceSettings;
use super::live::{LiveService, ServiceDeployment};

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

/// Whether ECS moves traffic between target groups on `service` (blue-green, canary,
/// linear): its deployments are followed through their lifecycle stages.
pub fn shifts_traffic(service: &LiveService) -> bool {
    let strategy = service.settings.deployment_configuration.as_ref().and_then(|d| d.strategy.as_deref());
    strategy.is_some_and(|s| s != "ROLLING")
}

/// How long a deployment of `settings` takes by its own schedule: a canary's wait, a linear
/// deployment's steps (one interval each), and the bake time. The watcher waits this long
/// beyond `rollout.timeout`, which bounds the rest (starting tasks, health checks).
pub fn scheduled(settings: &ServiceSettings) -> std::time::Duration {
    let Some(d) = &settings.deployment_configuration else { return std::time::Duration::ZERO };
    let mut minutes = i64::from(d.bake_time_in_minutes.unwrap_or(0).max(0));
    if let Some(c) = &d.canary_configuration {
        minutes += i64::from(c.canary_bake_time_in_minutes.max(0));
    }
    if let Some(l) = &d.linear_configuration
        && l.step_percent > 0.0
    {
        let steps = (100.0 / l.step_percent).ceil() as i64;
        minutes += steps * i64::from(l.step_bake_time_in_minutes.max(0));
    }
    std::time::Duration::from_secs(minutes.max(0) as u64 * 60)
}

/// The state of the rollout of `revision` from `service`'s current service deployment:
/// done once ECS calls it SUCCESSFUL (after the bake time) and the service's primary
/// deployment runs `revision` (right after an update the deployment named may still be the
/// one before); failed as soon as ECS stops it or rolls it back (an alarm, the circuit
/// breaker, a lifecycle hook).
pub fn deployment_state(d: &ServiceDeployment, service: &LiveService, revision: &str) -> Rollout {
    let why = d.status_reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default();
    match d.status.as_str() {
        "SUCCESSFUL" if service.deployments.iter().any(|p| p.status == "PRIMARY" && p.task_definition == revision) => {
            Rollout::Done
        }
        "SUCCESSFUL" => Rollout::InProgress,
        "PENDING" | "IN_PROGRESS" => Rollout::InProgress,
        "ROLLBACK_REQUESTED" | "ROLLBACK_IN_PROGRESS" | "ROLLBACK_SUCCESSFUL" => {
            Rollout::Failed(format!("ECS rolled the deployment back{why}"))
        }
        "ROLLBACK_FAILED" => Rollout::Failed(format!("ECS could not roll the deployment back{why}")),
        other => Rollout::Failed(format!("the deployment is {other}{why}")),
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

    #[test]
    fn service_deployment_states() {
        let d = |status: &str| ServiceDeployment {
            status: status.into(),
            status_reason: Some("alarm payments-5xx is in ALARM".into()),
            ..Default::default()
        };
        let service = svc(vec![dep("PRIMARY", "td:2", Some("COMPLETED"))]);
        let state = |status: &str| deployment_state(&d(status), &service, "td:2");
        assert_eq!(state("IN_PROGRESS"), Rollout::InProgress);
        assert_eq!(state("SUCCESSFUL"), Rollout::Done);
        assert_eq!(
            deployment_state(&d("SUCCESSFUL"), &service, "td:3"),
            Rollout::InProgress,
            "the deployment before the update"
        );
        let Rollout::Failed(why) = state("ROLLBACK_SUCCESSFUL") else { panic!() };
        assert_eq!(why, "ECS rolled the deployment back: alarm payments-5xx is in ALARM");
        assert!(matches!(state("STOPPED"), Rollout::Failed(_)));
    }

    #[test]
    fn a_strategys_own_schedule_is_waited_for_beyond_the_timeout() {
        use crate::core::desired::{CanaryConfiguration, DeploymentConfiguration, LinearConfiguration};
        let with =
            |dc: DeploymentConfiguration| ServiceSettings { deployment_configuration: Some(dc), ..Default::default() };
        assert_eq!(scheduled(&ServiceSettings::default()).as_secs(), 0);
        let canary = DeploymentConfiguration {
            bake_time_in_minutes: Some(5),
            canary_configuration: Some(CanaryConfiguration { canary_percent: 10.0, canary_bake_time_in_minutes: 10 }),
            ..Default::default()
        };
        assert_eq!(scheduled(&with(canary)).as_secs(), 15 * 60);
        let linear = DeploymentConfiguration {
            linear_configuration: Some(LinearConfiguration { step_percent: 30.0, step_bake_time_in_minutes: 2 }),
            ..Default::default()
        };
        assert_eq!(scheduled(&with(linear)).as_secs(), 4 * 2 * 60, "30 % steps: four of them");
    }
}
