//! The answers (and one request) the test proxy rewrites where moto has a gap: service
//! deployments and their lifecycle, deployments' rollout states, stopped tasks, and the
//! container memory moto's RunTask needs. See docs/testing.md.

use std::collections::BTreeMap;

use serde_json::Value;

use super::proxy::{Rollouts, TaskEnd};

/// The course of one service's deployment, as DescribeServiceDeployments tells it (moto
/// has neither the operation nor `currentServiceDeployment`): each answer gives the next
/// step and the last one stays. DescribeServices answers of the service name the
/// deployment and show its deployments as the step's status implies (IN_PROGRESS, COMPLETED,
/// or FAILED with a rollback PRIMARY).
#[derive(Clone, Debug, Default)]
pub struct Lifecycle {
    /// (status, lifecycle stage, status reason)
    pub steps: Vec<(&'static str, &'static str, &'static str)>,
    pub(super) at: usize,
}

impl Lifecycle {
    pub fn new(steps: &[(&'static str, &'static str, &'static str)]) -> Lifecycle {
        Lifecycle { steps: steps.to_vec(), at: 0 }
    }

    pub(super) fn current(&self) -> (&'static str, &'static str, &'static str) {
        self.steps[self.at.min(self.steps.len() - 1)]
    }

    /// How the service's deployments look at the current step.
    pub(super) fn rollouts(&self) -> Rollouts {
        match self.current().0 {
            "SUCCESSFUL" => Rollouts::Complete,
            s if s.starts_with("ROLLBACK") || s.starts_with("STOP") => Rollouts::Fail,
            _ => Rollouts::Stuck,
        }
    }
}

/// RegisterTaskDefinition's request with `memoryReservation` on each container that has no
/// memory of its own (the task's memory).
pub(super) fn add_container_memory(body: &[u8]) -> Vec<u8> {
    let Ok(mut v) = serde_json::from_slice::<Value>(body) else { return body.to_vec() };
    let memory: i64 = v.get("memory").and_then(Value::as_str).and_then(|m| m.parse().ok()).unwrap_or(512);
    for c in v.get_mut("containerDefinitions").and_then(Value::as_array_mut).into_iter().flatten() {
        if c.get("memory").is_none() && c.get("memoryReservation").is_none() {
            c["memoryReservation"] = memory.into();
        }
    }
    serde_json::to_vec(&v).unwrap_or_else(|_| body.to_vec())
}

/// A task definition answer without the containers' `memoryReservation` (berth sets none).
pub(super) fn strip_container_memory(body: &[u8]) -> Vec<u8> {
    let Ok(mut v) = serde_json::from_slice::<Value>(body) else { return body.to_vec() };
    let containers = v.get_mut("taskDefinition").and_then(|t| t.get_mut("containerDefinitions"));
    for c in containers.and_then(Value::as_array_mut).into_iter().flatten() {
        if let Some(o) = c.as_object_mut() {
            o.remove("memoryReservation");
        }
    }
    serde_json::to_vec(&v).unwrap_or_else(|_| body.to_vec())
}

pub(super) fn rewrite_tasks(body: &[u8], end: TaskEnd) -> Vec<u8> {
    let Ok(mut v) = serde_json::from_slice::<Value>(body) else { return body.to_vec() };
    for t in v.get_mut("tasks").and_then(Value::as_array_mut).into_iter().flatten() {
        t["lastStatus"] = "STOPPED".into();
        t["desiredStatus"] = "STOPPED".into();
        let (reason, code) = match end {
            TaskEnd::Exit(c) => ("Essential container in task exited", Some(c)),
            TaskEnd::CannotStart => ("Task failed to start", None),
        };
        t["stoppedReason"] = reason.into();
        for c in t.get_mut("containers").and_then(Value::as_array_mut).into_iter().flatten() {
            c["lastStatus"] = "STOPPED".into();
            match code {
                Some(code) => c["exitCode"] = code.into(),
                None => {
                    c["reason"] = "CannotPullContainerError: pull image manifest has been retried 5 time(s)".into();
                    if let Some(o) = c.as_object_mut() {
                        o.remove("exitCode");
                    }
                }
            }
        }
    }
    serde_json::to_vec(&v).unwrap_or_else(|_| body.to_vec())
}

/// The ARN of the service deployment the proxy gives `service`.
pub(super) fn service_deployment_arn(service: &str) -> String {
    format!("arn:aws:ecs:us-east-1:123456789012:service-deployment/berth/{service}/1")
}

/// Adds `currentServiceDeployment` to the services that have a lifecycle.
pub(super) fn name_service_deployments(body: &[u8], lifecycles: &[String]) -> Vec<u8> {
    let Ok(mut v) = serde_json::from_slice::<Value>(body) else { return body.to_vec() };
    for s in v.get_mut("services").and_then(Value::as_array_mut).into_iter().flatten() {
        let name = s.get("serviceName").and_then(Value::as_str).unwrap_or_default().to_string();
        if lifecycles.contains(&name) {
            s["currentServiceDeployment"] = Value::from(service_deployment_arn(&name));
        }
    }
    serde_json::to_vec(&v).unwrap_or_else(|_| body.to_vec())
}

/// DescribeServiceDeployments, answered from the lifecycles (each answer moves its
/// deployment one step on); an unknown ARN is in `failures`, as ECS answers.
pub(super) fn service_deployments(request: &str, lifecycles: &mut BTreeMap<String, Lifecycle>) -> String {
    let req: Value = serde_json::from_str(request).unwrap_or(Value::Null);
    let mut found = Vec::new();
    let mut failures = Vec::new();
    for arn in req.get("serviceDeploymentArns").and_then(Value::as_array).into_iter().flatten() {
        let arn = arn.as_str().unwrap_or_default();
        match lifecycles.iter_mut().find(|(name, _)| service_deployment_arn(name) == arn) {
            Some((_, l)) => {
                let (status, stage, reason) = l.current();
                l.at += 1;
                found.push(serde_json::json!({
                    "serviceDeploymentArn": arn, "status": status, "lifecycleStage": stage,
                    "statusReason": reason,
                }));
            }
            None => failures.push(serde_json::json!({"arn": arn, "reason": "MISSING"})),
        }
    }
    serde_json::json!({"serviceDeployments": found, "failures": failures}).to_string()
}

pub(super) fn rewrite_deployments(
    body: &[u8],
    default: &Rollouts,
    per_service: &BTreeMap<String, Rollouts>,
) -> Vec<u8> {
    let Ok(mut v) = serde_json::from_slice::<Value>(body) else { return body.to_vec() };
    if let Some(services) = v.get_mut("services").and_then(Value::as_array_mut) {
        for s in services {
            let name = s.get("serviceName").and_then(Value::as_str).unwrap_or_default();
            let mode = *per_service.get(name).unwrap_or(default);
            let td = s.get("taskDefinition").cloned().unwrap_or(Value::Null);
            let desired = s.get("desiredCount").cloned().unwrap_or(Value::from(1));
            let dep = |id: &str, status: &str, td: Value, state: &str, reason: &str| {
                serde_json::json!({
                    "id": id, "status": status, "taskDefinition": td,
                    "desiredCount": desired, "runningCount": desired, "pendingCount": 0, "failedTasks": 0,
                    "launchType": "FARGATE", "rolloutState": state, "rolloutStateReason": reason,
                    "createdAt": 1.0, "updatedAt": 1.0
                })
            };
            let deployments = match mode {
                Rollouts::Complete => vec![dep("ecs-svc/1", "PRIMARY", td, "COMPLETED", "ECS deployment completed.")],
                Rollouts::Stuck => vec![dep("ecs-svc/1", "PRIMARY", td, "IN_PROGRESS", "in progress")],
                Rollouts::Fail => vec![
                    dep(
                        "ecs-svc/2",
                        "PRIMARY",
                        Value::from("arn:aws:ecs:us-east-1:123456789012:task-definition/rollback:1"),
                        "IN_PROGRESS",
                        "rolling back",
                    ),
                    dep("ecs-svc/1", "ACTIVE", td, "FAILED", "ECS deployment circuit breaker: tasks failed to start."),
                ],
                Rollouts::Moto => continue,
            };
            s["deployments"] = Value::from(deployments);
        }
    }
    serde_json::to_vec(&v).unwrap_or_else(|_| body.to_vec())
}
