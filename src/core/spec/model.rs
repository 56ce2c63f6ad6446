//! The files a user writes: `deploy/service.yaml` and `deploy/<env>/config.yaml`, as parsed.
//!
//! Every field is optional at this level so that one parse reports every missing field
//! and every bad value at once; `resolve` turns a (service, env) pair into a checked
//! [`super::ServiceSpec`]. Unknown keys are rejected by serde.

use schemars::JsonSchema;
use serde::Deserialize;

use crate::core::at::{At, Text, stamp_fields, stamp_nothing};
use crate::core::schema;

/// `deploy/service.yaml`.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "berth service spec (deploy/service.yaml)",
    extend("$id" = schema::SERVICE_ID),
    description = "A service berth deploys to Amazon ECS: `deploy/service.yaml`. It deploys to environment E exactly when `deploy/E/config.yaml` exists beside it."
)]
pub struct ServiceFile {
    /// The kind of workload. Only `service` exists today.
    #[serde(rename = "type")]
    #[schemars(required, transform = schema::service_kind)]
    pub kind: Option<At<String>>,
    /// ECS service name: unique in the repository, `[a-z0-9-]{1,48}`.
    #[schemars(required, pattern(schema::SERVICE_NAME))]
    pub name: Option<At<String>>,
    /// The service specification; `image` and `resources` are required here.
    #[schemars(required, schema_with = "schema::base_spec")]
    pub spec: Option<At<Spec>>,
}

/// The service specification. In `config.yaml` under `overrides`, any subset of it.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// ECR repository name (the registry comes from the agent config) or a full image
    /// reference. A tag or digest in it pins the image; otherwise berth picks the tag.
    #[schemars(transform = schema::image)]
    pub image: Option<At<String>>,
    /// Task size in AWS units: CPU units and MiB. Must be a Fargate-valid pair.
    pub resources: Option<At<Resources>>,
    /// Desired task count, 0 to 5000; ignored when `autoscaling` is set.
    #[schemars(range(max = 5000))]
    pub count: Option<At<u32>>,
    /// Target-tracking autoscaling on average CPU or memory.
    pub autoscaling: Option<At<Autoscaling>>,
    /// HTTP API port, 1 to 65535 (default 8080); not the same as `metrics_port`.
    #[schemars(range(min = 1))]
    pub port: Option<At<u16>>,
    /// Container health check path on `port` (default `/health`): a URL path of letters,
    /// digits and `/-._~%=+,`, at most 200 characters (it runs in a shell command).
    #[schemars(transform = schema::health)]
    pub health: Option<At<String>>,
    /// OpenMetrics port, 1 to 65535 (default 9090).
    #[schemars(range(min = 1))]
    pub metrics_port: Option<At<u16>>,
    /// Routing (with the environment's `ingress:` set) and the docker label `berth.ingress`.
    pub ingress: Option<At<Box<Ingress>>>,
    /// ECS Exec on the service (`enableExecuteCommand`) for its owners (default false).
    pub exec: Option<At<bool>>,
    /// How ECS rolls out a new revision.
    /// (Boxed, like `overrides`: a parsed service is kept for the life of the daemon, and
    /// most services set none of it.)
    pub rollout: Option<At<Box<Rollout>>>,
    /// Tasks berth runs with a deploy.
    pub tasks: Option<At<Box<Tasks>>>,
    /// What the service needs: services that converge first, data stores it uses.
    pub dependencies: Option<At<Dependencies>>,
    /// Container environment; values may use templates.
    pub environment: Option<At<Vec<EnvEntry>>>,
}

/// Task size in AWS units: CPU units and MiB, a Fargate-valid pair.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = schema::fargate_size)]
pub struct Resources {
    /// CPU units: 256, 512, 1024, 2048, 4096, 8192 or 16384.
    pub cpu: Option<At<u32>>,
    /// Memory in MiB, valid for the CPU value on Fargate.
    pub memory: Option<At<u32>>,
}

/// Application Auto Scaling, target tracking.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Autoscaling {
    /// The utilisation to track: average `cpu` or `memory`.
    pub resource: Option<At<ScaleResource>>,
    /// Target utilisation in percent, above 0 and at most 100 (default 70).
    #[schemars(transform = schema::percent)]
    pub target: Option<At<f64>>,
    /// The fewest tasks, at most `max`; the task count when berth creates the service.
    #[schemars(range(max = 5000))]
    pub min: Option<At<u32>>,
    /// The most tasks, 1 to 5000.
    #[schemars(range(min = 1, max = 5000))]
    pub max: Option<At<u32>>,
}

/// The utilisation autoscaling tracks.
#[derive(Clone, Copy, Debug, Deserialize, JsonSchema, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum ScaleResource {
    Cpu,
    Memory,
}

/// Whether the service is public.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Ingress {
    /// With the environment's `ingress:` set: whether the service gets the internal route
    /// and DNS name (default true; `false` for a worker nothing calls).
    pub internal: Option<At<bool>>,
    /// Whether the service is reachable from the internet: a rule on the environment's
    /// external listener (default false).
    pub external: Option<At<bool>>,
    /// The external host name, instead of the environment's `external_host` pattern.
    pub host: Option<At<String>>,
    /// Path patterns (`/api/*`) the rules match besides the host; none: every path.
    pub paths: Option<At<Vec<At<String>>>>,
}

/// How ECS rolls out a new revision: ECS's own deployment strategies, with the circuit
/// breaker and, when named, CloudWatch alarms rolling a failed one back.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Rollout {
    /// `rolling` (default), or one that shifts traffic between two target groups (the
    /// service needs a route): `blue-green`, `canary`, `linear`.
    pub strategy: Option<At<Strategy>>,
    /// How long ECS keeps the old revision ready after all traffic moved (whole minutes,
    /// at most 24h; not for `rolling`).
    #[schemars(transform = schema::duration)]
    pub bake: Option<At<String>>,
    /// `strategy: canary`: the share of traffic the new revision gets first, and for how long.
    pub canary: Option<At<Canary>>,
    /// `strategy: linear`: the share of traffic moved at each step, and the time between steps.
    pub linear: Option<At<Linear>>,
    /// CloudWatch alarms that stop the deployment and roll it back while any is in ALARM
    /// (at most 10 names of at most 255 characters).
    #[schemars(transform = schema::alarm_names)]
    pub alarms: Option<At<Vec<At<String>>>>,
    /// Lambda functions ECS calls at lifecycle stages of a deployment (not for `rolling`);
    /// one that fails rolls the deployment back.
    pub hooks: Option<At<Vec<At<Hook>>>>,
}

/// An ECS deployment strategy.
#[derive(Clone, Copy, Debug, Default, Deserialize, JsonSchema, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    #[default]
    Rolling,
    BlueGreen,
    Canary,
    Linear,
}

impl Strategy {
    /// ECS's name (`deploymentConfiguration.strategy`).
    pub fn ecs(self) -> &'static str {
        match self {
            Strategy::Rolling => "ROLLING",
            Strategy::BlueGreen => "BLUE_GREEN",
            Strategy::Canary => "CANARY",
            Strategy::Linear => "LINEAR",
        }
    }

    /// As written in the spec.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Rolling => "rolling",
            Strategy::BlueGreen => "blue-green",
            Strategy::Canary => "canary",
            Strategy::Linear => "linear",
        }
    }

    /// Whether ECS moves traffic between two target groups (everything but rolling).
    pub fn shifts_traffic(self) -> bool {
        self != Strategy::Rolling
    }
}

/// A canary deployment's first step.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Canary {
    /// The share of production traffic the new revision gets first (0.1 to 100, default 10).
    #[schemars(range(min = 0.1, max = 100.0))]
    pub percent: Option<At<f64>>,
    /// How long the canary runs before the rest of the traffic moves (whole minutes,
    /// default 10m).
    #[schemars(transform = schema::duration)]
    pub wait: Option<At<String>>,
}

/// A linear deployment's steps.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Linear {
    /// The share of production traffic moved at each step (3 to 100, default 10).
    #[schemars(range(min = 3.0, max = 100.0))]
    pub percent: Option<At<f64>>,
    /// The time between steps (whole minutes, default 6m).
    #[schemars(transform = schema::duration)]
    pub interval: Option<At<String>>,
}

/// A lifecycle hook: a Lambda function ECS invokes at the stages named.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Hook {
    /// The function's ARN.
    #[schemars(regex(
        pattern = r"^arn:aws[a-z-]*:lambda:[a-z0-9-]+:\d{12}:function:[A-Za-z0-9_-]+(:[A-Za-z0-9_$-]+)?$"
    ))]
    pub lambda: Option<At<String>>,
    /// The IAM role ECS assumes to invoke it.
    #[schemars(transform = schema::role_arn)]
    pub role: Option<At<String>>,
    /// ECS's stage names: `RECONCILE_SERVICE`, `PRE_SCALE_UP`, `POST_SCALE_UP`,
    /// `TEST_TRAFFIC_SHIFT`, `POST_TEST_TRAFFIC_SHIFT`, `PRE_PRODUCTION_TRAFFIC_SHIFT`,
    /// `PRODUCTION_TRAFFIC_SHIFT`, `POST_PRODUCTION_TRAFFIC_SHIFT`.
    #[schemars(extend("minItems" = 1))]
    pub stages: Option<At<Vec<At<HookStage>>>>,
}

/// A lifecycle stage ECS calls hooks at.
#[derive(Clone, Copy, Debug, Deserialize, JsonSchema, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HookStage {
    ReconcileService,
    PreScaleUp,
    PostScaleUp,
    TestTrafficShift,
    PostTestTrafficShift,
    PreProductionTrafficShift,
    ProductionTrafficShift,
    PostProductionTrafficShift,
}

impl HookStage {
    /// ECS's name, as written in the spec.
    pub fn ecs(self) -> &'static str {
        match self {
            HookStage::ReconcileService => "RECONCILE_SERVICE",
            HookStage::PreScaleUp => "PRE_SCALE_UP",
            HookStage::PostScaleUp => "POST_SCALE_UP",
            HookStage::TestTrafficShift => "TEST_TRAFFIC_SHIFT",
            HookStage::PostTestTrafficShift => "POST_TEST_TRAFFIC_SHIFT",
            HookStage::PreProductionTrafficShift => "PRE_PRODUCTION_TRAFFIC_SHIFT",
            HookStage::ProductionTrafficShift => "PRODUCTION_TRAFFIC_SHIFT",
            HookStage::PostProductionTrafficShift => "POST_PRODUCTION_TRAFFIC_SHIFT",
        }
    }
}

/// Tasks berth runs with a deploy.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Tasks {
    /// Run once per spec, as a task of the new revision (its command instead of the
    /// container's), before the service moves to it; the deploy goes on only when it exits 0.
    pub before_deploy: Option<At<BeforeDeploy>>,
}

/// A task run before a deploy (a schema migration).
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BeforeDeploy {
    /// The command, as an exec list (`["./migrate", "up"]`).
    #[schemars(extend("minItems" = 1))]
    pub command: Option<At<Vec<At<String>>>>,
    /// How long it may run (default 10m, at most 24h).
    #[schemars(transform = schema::duration)]
    pub timeout: Option<At<String>>,
}

/// What the service needs.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Dependencies {
    /// Services of this repository that converge before this one (not itself, no cycles).
    #[schemars(transform = schema::service_names)]
    pub services: Option<At<Vec<At<String>>>>,
    /// Data stores the service uses (recorded as a docker label): letters, digits, `-_.`.
    #[schemars(transform = schema::data_names)]
    pub data: Option<At<Vec<At<String>>>>,
}

/// One container environment variable.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvEntry {
    /// Environment variable name: `[A-Za-z_][A-Za-z0-9_]*`, at most 255 characters, unique.
    #[schemars(transform = schema::env_key)]
    pub key: At<String>,
    /// Value; may hold templates: `{{ .Variables["name"] }}`, `{{ .Service }}`, `{{ .Env }}`,
    /// `{{ .Commit }}`, `{{ .Version }}`. A secret must be the whole value.
    #[schemars(transform = schema::env_value)]
    pub value: At<Text>,
}

/// `deploy/<env>/config.yaml`.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "berth environment config (deploy/<env>/config.yaml)",
    extend("$id" = schema::CONFIG_ID),
    description = "The values and overrides of one service in one environment. Every key is optional: an empty file, or one of comments only, is valid.",
    transform = schema::nullable_root
)]
pub struct EnvFile {
    /// Plain values for templates; `ssm:/name` reads the value from Parameter Store.
    #[schemars(transform = schema::variables)]
    pub variables: Option<At<Vec<KeyValue>>>,
    /// References to secrets (`ssm:/name`, `secretsmanager:NAME#field`, or ARNs).
    /// Their values are never read: they become container `secrets`.
    #[schemars(transform = schema::secrets)]
    pub secrets: Option<At<Vec<KeyValue>>>,
    /// Any spec field, for this environment only.
    pub overrides: Option<At<Box<Spec>>>,
    /// Take over a same-named service that berth did not create.
    pub adopt: Option<At<bool>>,
}

/// A named value of an env config.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyValue {
    /// The name templates use: letters, digits, `_`, `-` and `.`, unique across `variables`
    /// and `secrets`.
    #[schemars(transform = schema::variable_key)]
    pub key: At<String>,
    /// A variable: any scalar, or `ssm:/name`. A secret: a reference.
    pub value: At<Text>,
}

stamp_fields! {
    ServiceFile { kind, name, spec }
    Spec { image, resources, count, autoscaling, port, health, metrics_port, ingress, exec, rollout, tasks, dependencies, environment }
    Rollout { strategy, bake, canary, linear, alarms, hooks }
    Canary { percent, wait }
    Linear { percent, interval }
    Hook { lambda, role, stages }
    Tasks { before_deploy }
    BeforeDeploy { command, timeout }
    Resources { cpu, memory }
    Autoscaling { resource, target, min, max }
    Ingress { internal, external, host, paths }
    Dependencies { services, data }
    EnvEntry { key, value }
    EnvFile { variables, secrets, overrides, adopt }
    KeyValue { key, value }
}
stamp_nothing!(ScaleResource);
stamp_nothing!(Strategy);
stamp_nothing!(HookStage);

fn merge_opt<T: Clone>(base: &Option<At<T>>, over: &Option<At<T>>, f: impl Fn(&T, &T) -> T) -> Option<At<T>> {
    match (base, over) {
        (Some(b), Some(o)) => Some(At::new(f(&b.value, &o.value), o.pos.clone())),
        (b, o) => o.clone().or_else(|| b.clone()),
    }
}

fn pick<T: Clone>(base: &Option<At<T>>, over: &Option<At<T>>) -> Option<At<T>> {
    over.clone().or_else(|| base.clone())
}

impl Spec {
    /// The spec with an environment's `overrides` laid over it: maps merge field by field,
    /// `environment` merges by key, other lists are replaced whole.
    pub fn merged(&self, over: &Spec) -> Spec {
        Spec {
            image: pick(&self.image, &over.image),
            resources: merge_opt(&self.resources, &over.resources, |b, o| Resources {
                cpu: pick(&b.cpu, &o.cpu),
                memory: pick(&b.memory, &o.memory),
            }),
            count: pick(&self.count, &over.count),
            autoscaling: merge_opt(&self.autoscaling, &over.autoscaling, |b, o| Autoscaling {
                resource: pick(&b.resource, &o.resource),
                target: pick(&b.target, &o.target),
                min: pick(&b.min, &o.min),
                max: pick(&b.max, &o.max),
            }),
            port: pick(&self.port, &over.port),
            health: pick(&self.health, &over.health),
            metrics_port: pick(&self.metrics_port, &over.metrics_port),
            ingress: merge_opt(&self.ingress, &over.ingress, |b, o| {
                Box::new(Ingress {
                    internal: pick(&b.internal, &o.internal),
                    external: pick(&b.external, &o.external),
                    host: pick(&b.host, &o.host),
                    paths: pick(&b.paths, &o.paths),
                })
            }),
            exec: pick(&self.exec, &over.exec),
            rollout: merge_opt(&self.rollout, &over.rollout, |b, o| {
                Box::new(Rollout {
                    strategy: pick(&b.strategy, &o.strategy),
                    bake: pick(&b.bake, &o.bake),
                    canary: merge_opt(&b.canary, &o.canary, |b, o| Canary {
                        percent: pick(&b.percent, &o.percent),
                        wait: pick(&b.wait, &o.wait),
                    }),
                    linear: merge_opt(&b.linear, &o.linear, |b, o| Linear {
                        percent: pick(&b.percent, &o.percent),
                        interval: pick(&b.interval, &o.interval),
                    }),
                    alarms: pick(&b.alarms, &o.alarms),
                    hooks: pick(&b.hooks, &o.hooks),
                })
            }),
            tasks: merge_opt(&self.tasks, &over.tasks, |b, o| {
                Box::new(Tasks { before_deploy: pick(&b.before_deploy, &o.before_deploy) })
            }),
            dependencies: merge_opt(&self.dependencies, &over.dependencies, |b, o| Dependencies {
                services: pick(&b.services, &o.services),
                data: pick(&b.data, &o.data),
            }),
            environment: merge_opt(&self.environment, &over.environment, |b, o| {
                let mut out: Vec<EnvEntry> = b.clone();
                for entry in o {
                    match out.iter_mut().find(|e| e.key.value == entry.key.value) {
                        Some(existing) => *existing = entry.clone(),
                        None => out.push(entry.clone()),
                    }
                }
                out
            }),
        }
    }
}
