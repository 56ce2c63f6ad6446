//! Builders for unit tests: service `web` of environment `pre`, rendered and read back.
//!
//! Every builder starts from what berth renders and what AWS then reports for it, so a
//! test changes only the field it is about.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::desired::*;
use super::diff::NormContext;
use super::live::{LivePolicy, LiveScalableTarget, LiveService, LiveState, LiveTaskDefinition};
use super::render::{POLICY_PREFIX, SCALABLE_DIMENSION, spec_hash};

pub(crate) const ACCOUNT: &str = "123456789012";
pub(crate) const REGION: &str = "us-east-1";

pub(crate) fn ctx() -> NormContext {
    NormContext { partition: "aws".into(), region: REGION.into(), account_id: Some(ACCOUNT.into()) }
}

/// The ARN of revision `n` of the family `web-pre`.
pub(crate) fn revision_arn(n: u32) -> String {
    format!("arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/web-pre:{n}")
}

/// The task definition as rendered, before berth tags it.
pub(crate) fn task_definition() -> TaskDefinition {
    let port = |name: &str, container_port| PortMapping {
        name: Some(name.into()),
        container_port,
        host_port: None,
        protocol: Some("tcp".into()),
    };
    let var = |name: &str, value: &str| KeyValuePair { name: name.into(), value: value.into() };
    let secret = |name: &str, value_from: String| Secret { name: name.into(), value_from };
    let options = [("awslogs-group", "/ecs/pre/web"), ("awslogs-region", REGION), ("awslogs-stream-prefix", "web")];
    TaskDefinition {
        family: "web-pre".into(),
        task_role_arn: Some(format!("arn:aws:iam::{ACCOUNT}:role/web")),
        execution_role_arn: Some(format!("arn:aws:iam::{ACCOUNT}:role/ecs-execution")),
        network_mode: "awsvpc".into(),
        requires_compatibilities: vec!["FARGATE".into()],
        cpu: Some("256".into()),
        memory: Some("512".into()),
        container_definitions: vec![ContainerDefinition {
            name: "web".into(),
            image: "r/web:abc".into(),
            essential: Some(true),
            port_mappings: vec![port("http", 8080), port("metrics", 9090)],
            environment: vec![var("A", "1"), var("B", "2")],
            secrets: vec![
                secret("P", format!("arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/pre/p")),
                secret("S", format!("arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:pre/s:key::")),
            ],
            health_check: Some(HealthCheck {
                command: vec!["CMD-SHELL".into(), "curl".into()],
                interval: Some(30),
                timeout: Some(5),
                retries: Some(3),
                start_period: None,
            }),
            log_configuration: Some(LogConfiguration {
                log_driver: "awslogs".into(),
                options: options.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            }),
            docker_labels: BTreeMap::from([("team".to_string(), "web".to_string())]),
            ..Default::default()
        }],
        tags: Vec::new(),
    }
}

/// The service settings as rendered, before berth tags them.
pub(crate) fn service_settings() -> ServiceSettings {
    let awsvpc = AwsVpcConfiguration {
        subnets: vec!["s-1".into(), "s-2".into()],
        security_groups: vec!["sg-1".into()],
        assign_public_ip: Some("DISABLED".into()),
    };
    let rollout = DeploymentConfiguration {
        deployment_circuit_breaker: Some(CircuitBreaker { enable: true, rollback: true }),
        maximum_percent: Some(200),
        minimum_healthy_percent: Some(100),
        alarms: None,
        ..Default::default()
    };
    ServiceSettings {
        cluster: "pre".into(),
        service_name: "web".into(),
        task_definition: "web-pre".into(),
        desired_count: Some(2),
        launch_type: Some("FARGATE".into()),
        platform_version: Some("LATEST".into()),
        deployment_configuration: Some(rollout),
        network_configuration: Some(NetworkConfiguration { awsvpc_configuration: awsvpc }),
        propagate_tags: Some("SERVICE".into()),
        enable_ecs_managed_tags: Some(true),
        enable_execute_command: None,
        load_balancers: None,
        tags: Vec::new(),
    }
}

pub(crate) fn scalable_target() -> ScalableTarget {
    ScalableTarget {
        service_namespace: "ecs".into(),
        resource_id: "service/pre/web".into(),
        scalable_dimension: SCALABLE_DIMENSION.into(),
        min_capacity: 1,
        max_capacity: 4,
    }
}

/// A berth-named target-tracking policy (`berth-<short>-target`) on `service/pre/web`.
pub(crate) fn scaling_policy(short: &str) -> ScalingPolicy {
    let metric = PredefinedMetric { predefined_metric_type: "ECSServiceAverageCPUUtilization".into() };
    ScalingPolicy {
        policy_name: format!("{POLICY_PREFIX}{short}-target"),
        service_namespace: "ecs".into(),
        resource_id: "service/pre/web".into(),
        scalable_dimension: SCALABLE_DIMENSION.into(),
        policy_type: "TargetTrackingScaling".into(),
        target_tracking_scaling_policy_configuration: TargetTracking {
            target_value: 70.0,
            predefined_metric_specification: metric,
            scale_in_cooldown: None,
            scale_out_cooldown: None,
        },
    }
}

/// Builds a [`Desired`] as `render` would: tagged, with its spec hash.
pub(crate) struct DesiredBuilder {
    task_definition: TaskDefinition,
    service: ServiceSettings,
    scaling: Option<Scaling>,
}

pub(crate) fn desired() -> DesiredBuilder {
    DesiredBuilder { task_definition: task_definition(), service: service_settings(), scaling: None }
}

impl DesiredBuilder {
    pub(crate) fn task_definition(mut self, change: impl FnOnce(&mut TaskDefinition)) -> Self {
        change(&mut self.task_definition);
        self
    }

    pub(crate) fn service(mut self, change: impl FnOnce(&mut ServiceSettings)) -> Self {
        change(&mut self.service);
        self
    }

    /// With autoscaling (`berth-cpu-target`): the autoscaler owns the count.
    pub(crate) fn autoscaled(mut self) -> Self {
        self.service.desired_count = None;
        self.scaling = Some(Scaling { scalable_target: scalable_target(), scaling_policy: scaling_policy("cpu") });
        self
    }

    pub(crate) fn build(self) -> Desired {
        let mut desired = Desired {
            task_definition: Arc::new(self.task_definition),
            service: Arc::new(self.service),
            scaling: self.scaling,
            routing: None,
            access: None,
            before_deploy: None,
            dashboard: None,
        };
        let hash = spec_hash(&desired);
        let tag = |key: &str, value: &str| Tag { key: key.into(), value: value.into() };
        let tags = vec![
            tag(tags::COMMIT, "0123456789abcdef0123456789abcdef01234567"),
            tag(tags::ENV, "pre"),
            tag(tags::MANAGED, "true"),
            tag(tags::SERVICE, "web"),
            tag(tags::SPEC_HASH, &hash),
        ];
        Arc::make_mut(&mut desired.task_definition).tags = tags.clone();
        Arc::make_mut(&mut desired.service).tags = tags;
        desired
    }
}

pub(crate) fn live_task_definition(arn: String, definition: TaskDefinition) -> LiveTaskDefinition {
    LiveTaskDefinition { arn, definition, extras: Vec::new() }
}

/// An ACTIVE service with `settings` (running `settings.task_definition`).
pub(crate) fn live_service(settings: ServiceSettings) -> LiveService {
    LiveService {
        arn: format!("arn:aws:ecs:{REGION}:{ACCOUNT}:service/{}/{}", settings.cluster, settings.service_name),
        status: "ACTIVE".into(),
        settings,
        ..Default::default()
    }
}

pub(crate) fn live_scalable_target(target: ScalableTarget) -> LiveScalableTarget {
    LiveScalableTarget { target, role_arn: None }
}

pub(crate) fn live_policy(policy: ScalingPolicy) -> LivePolicy {
    let arn = format!("arn:aws:autoscaling:{REGION}:{ACCOUNT}:scalingPolicy:{}", policy.policy_name);
    LivePolicy { arn, policy }
}

/// Builds a [`LiveState`]; [`converged`] starts from what AWS reports once `desired` is applied.
pub(crate) struct LiveBuilder(LiveState);

/// The service does not exist.
pub(crate) fn missing() -> LiveBuilder {
    LiveBuilder(LiveState::default())
}

/// `desired` applied as revision 1, its scaling target and policy registered.
pub(crate) fn converged(desired: &Desired) -> LiveBuilder {
    let mut settings = (*desired.service).clone();
    settings.task_definition = revision_arn(1);
    let running = live_task_definition(revision_arn(1), (*desired.task_definition).clone());
    let scaling = desired.scaling.as_ref();
    LiveBuilder(LiveState {
        service: Some(live_service(settings)),
        task_definition: Some(Arc::new(running)),
        scalable_target: scaling.map(|s| live_scalable_target(s.scalable_target.clone())),
        policies: scaling.map(|s| live_policy(s.scaling_policy.clone())).into_iter().collect(),
        ..Default::default()
    })
}

impl LiveBuilder {
    pub(crate) fn service(mut self, change: impl FnOnce(&mut LiveService)) -> Self {
        change(self.0.service.as_mut().expect("a live service"));
        self
    }

    /// Changes the content of the revision the service runs.
    pub(crate) fn running(mut self, change: impl FnOnce(&mut TaskDefinition)) -> Self {
        let running = self.0.task_definition.as_mut().expect("a running revision");
        change(&mut Arc::make_mut(running).definition);
        self
    }

    /// The family's newest revision: revision 2, with `definition`.
    pub(crate) fn latest(mut self, definition: &TaskDefinition) -> Self {
        self.0.recent_revisions.insert(0, Arc::new(live_task_definition(revision_arn(2), definition.clone())));
        self
    }

    /// One more of the family's recent revisions (listed after the newer ones): revision
    /// `n`, with `definition`.
    pub(crate) fn recent(mut self, n: u32, definition: &TaskDefinition) -> Self {
        self.0.recent_revisions.push(Arc::new(live_task_definition(revision_arn(n), definition.clone())));
        self
    }

    pub(crate) fn with(mut self, change: impl FnOnce(&mut LiveState)) -> Self {
        change(&mut self.0);
        self
    }

    pub(crate) fn build(self) -> LiveState {
        self.0
    }
}

/// The kinds of a plan's actions, as they serialize (`{"action": "CreateService", …}`).
pub(crate) fn action_kinds(plan: &crate::core::plan::Plan) -> Vec<String> {
    plan.actions
        .iter()
        .map(|a| serde_json::to_value(a).expect("actions serialize")["action"].as_str().expect("a tag").to_string())
        .collect()
}

/// The kinds of the actions of `desired` planned against `live`, which must plan with no
/// blocker.
pub(crate) fn planned_kinds(desired: &Desired, live: &LiveState) -> Vec<String> {
    let p = crate::core::plan::plan(desired, live, false, &ctx());
    assert!(p.blockers.is_empty(), "{:?}", p.blockers);
    action_kinds(&p)
}
