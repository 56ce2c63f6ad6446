//! Rendering: a checked [`ServiceSpec`] plus its environment becomes the [`Desired`] state.

use std::collections::BTreeMap;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::config::{AwsConfig, EnvConfig, Source};
use super::desired::*;
use super::diag::Diagnostic;
use super::routing::TEST_SCOPE;
use super::spec::reference::{self, Reference};
use super::spec::template::Context;
use super::spec::{EnvValue, ScaleResource, ServiceSpec, Variable};

/// Values looked up outside the core: SSM parameter values for `ssm:` variables, and
/// full secret ARNs found by DescribeSecret. Never secret values.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Lookups {
    pub ssm_values: BTreeMap<String, String>,
    pub secret_arns: BTreeMap<String, String>,
}

/// What a render needs besides the spec.
pub struct Target<'a> {
    pub env: &'a EnvConfig,
    pub aws: &'a AwsConfig,
    /// The full id of the service's commit (the newest that changed its folder).
    pub commit: &'a str,
    /// `X.Y.Z` in tag environments.
    pub version: Option<&'a str>,
    pub lookups: &'a Lookups,
}

impl Target<'_> {
    /// The image tag berth deploys: the commit's 12-character id in branch environments,
    /// `X.Y.Z` in tag environments.
    pub fn image_tag(&self) -> String {
        match (&self.env.source, self.version) {
            (Source::SemverTags { .. }, Some(v)) => v.to_string(),
            _ => self.commit.chars().take(12).collect(),
        }
    }
}

/// The registry host of a full image reference (its first segment has `.` or `:`, or is
/// `localhost`); `None` for a bare repository name, which gets `aws.registry`.
pub fn image_registry(image: &str) -> Option<&str> {
    let (first, _) = image.split_once('/')?;
    (first.contains('.') || first.contains(':') || first == "localhost").then_some(first)
}

/// Whether `image` pins its own tag (`repo:tag`) or digest (`@sha256:…`).
pub fn image_is_pinned(image: &str) -> bool {
    let last = image.rsplit('/').next().unwrap_or(image);
    image.contains('@') || last.contains(':')
}

/// `image` as a full reference: the registry prepended to a bare repository name, and the
/// tag appended unless the image pins its own tag or digest.
pub fn image_reference(image: &str, registry: Option<&str>, tag: &str) -> String {
    let base = match registry {
        Some(r) if image_registry(image).is_none() => format!("{r}/{image}"),
        _ => image.to_string(),
    };
    if image_is_pinned(image) { base } else { format!("{base}:{tag}") }
}

pub fn render(spec: &ServiceSpec, target: &Target<'_>) -> Result<Desired, Vec<Diagnostic>> {
    let env = target.env;
    let aws = target.aws;
    let defaults = env.defaults.for_service(&spec.name, &env.name);
    let mut errors = Vec::new();
    let ctx =
        Context { service: &spec.name, env: &env.name, commit: target.commit, version: target.version.unwrap_or("") };
    let mut environment = Vec::new();
    let mut secrets = Vec::new();
    for var in &spec.environment {
        match &var.value {
            EnvValue::Template(t) => {
                let value = t.expand(&ctx, |name| match spec.variables.get(name) {
                    Some(Variable::Literal(v)) => v.clone(),
                    Some(Variable::Ssm { name: param, pos }) => match target.lookups.ssm_values.get(param) {
                        Some(v) => v.clone(),
                        None => {
                            errors.push(Diagnostic::new(
                                pos.clone(),
                                format!("no value for SSM parameter `{param}` (offline, pass --param {param}=VALUE)"),
                            ));
                            String::new()
                        }
                    },
                    None => String::new(),
                });
                environment.push(KeyValuePair { name: var.key.clone(), value });
            }
            EnvValue::Secret(r) => {
                let arn = match r {
                    Reference::SecretsManager(s) => target.lookups.secret_arns.get(&s.id).map(String::as_str),
                    Reference::Ssm(_) => None,
                };
                match reference::value_from(r, aws.partition(), &aws.region, aws.account_id.as_deref(), arn) {
                    Ok(value_from) => secrets.push(Secret { name: var.key.clone(), value_from }),
                    Err(msg) => errors.push(Diagnostic::new(var.pos.clone(), msg)),
                }
            }
        }
    }
    if !errors.is_empty() {
        errors.sort();
        errors.dedup();
        return Err(errors);
    }
    environment.sort();
    secrets.sort();

    let mut labels = BTreeMap::from([
        ("PROMETHEUS_EXPORTER_PORT".to_string(), spec.metrics_port.to_string()),
        ("PROMETHEUS_EXPORTER_PATH".to_string(), "/metrics".to_string()),
        ("ECS_PROMETHEUS_EXPORTER_PORT".to_string(), spec.metrics_port.to_string()),
        ("berth.service".to_string(), spec.name.clone()),
        ("berth.env".to_string(), env.name.clone()),
        ("berth.ingress".to_string(), if spec.external { "external" } else { "internal" }.to_string()),
    ]);
    if !spec.data.is_empty() {
        labels.insert("berth.dependencies.data".to_string(), spec.data.join(","));
    }
    let log_group = defaults.log_group.clone().unwrap_or_default();
    let container = ContainerDefinition {
        name: spec.name.clone(),
        image: image_reference(&spec.image, aws.registry.as_deref(), &target.image_tag()),
        essential: Some(true),
        cpu: None,
        port_mappings: vec![
            PortMapping {
                name: Some("http".into()),
                container_port: spec.port.into(),
                host_port: None,
                protocol: Some("tcp".into()),
            },
            PortMapping {
                name: Some("metrics".into()),
                container_port: spec.metrics_port.into(),
                host_port: None,
                protocol: Some("tcp".into()),
            },
        ],
        environment,
        secrets,
        health_check: Some(HealthCheck {
            command: vec![
                "CMD-SHELL".into(),
                format!("curl -fsS http://localhost:{}{} || exit 1", spec.port, spec.health),
            ],
            interval: Some(30),
            timeout: Some(5),
            retries: Some(3),
            start_period: Some(30),
        }),
        log_configuration: Some(LogConfiguration {
            log_driver: "awslogs".into(),
            options: BTreeMap::from([
                ("awslogs-group".to_string(), log_group),
                ("awslogs-region".to_string(), aws.region.clone()),
                ("awslogs-stream-prefix".to_string(), spec.name.clone()),
            ]),
        }),
        docker_labels: labels,
    };
    let family = format!("{}-{}", spec.name, env.name);
    let task_definition = TaskDefinition {
        family: family.clone(),
        task_role_arn: defaults.task_role.clone(),
        execution_role_arn: defaults.execution_role.clone(),
        network_mode: "awsvpc".into(),
        requires_compatibilities: vec!["FARGATE".into()],
        cpu: Some(spec.cpu.to_string()),
        memory: Some(spec.memory.to_string()),
        container_definitions: vec![container],
        tags: Vec::new(),
    };
    let access = env.ingress.as_ref().map(|ingress| access(spec, &env.name, ingress));
    // The service's own group and the `-clients` groups it joins, by name until the plan
    // knows their ids (a security group's name never starts with `sg-`).
    let mut security_groups = defaults.security_groups.clone();
    if let Some(a) = &access {
        security_groups.push(a.own.group_name.clone());
        security_groups.extend(a.joins.iter().map(|j| j.group_name.clone()));
        // A task's network interface takes 5 security groups (the default quota).
        if security_groups.len() > 5
            && let Some((_, pos)) = spec.dependency_at.get(5 - (security_groups.len() - a.joins.len()).min(5))
        {
            return Err(vec![Diagnostic::new(
                pos.clone(),
                format!(
                    "the tasks would join {} security groups (the defaults, the service's own and one `-clients` group per dependency); a task takes at most 5",
                    security_groups.len()
                ),
            )]);
        }
    }
    let network_configuration = (!defaults.subnets.is_empty()).then(|| NetworkConfiguration {
        awsvpc_configuration: AwsVpcConfiguration {
            subnets: defaults.subnets.clone(),
            security_groups,
            assign_public_ip: Some(if defaults.assign_public_ip { "ENABLED" } else { "DISABLED" }.into()),
        },
    });
    let rollout = &spec.rollout;
    let (routing, load_balancers) = match &env.ingress {
        None => (None, None),
        Some(ingress) => match route(spec, &env.name, ingress) {
            Ok(Some(r)) => {
                let lbs = load_balancers(spec, &r, ingress);
                (Some(r), Some(lbs))
            }
            Ok(None) => (None, Some(Vec::new())),
            Err(d) => return Err(vec![d]),
        },
    };
    if let (true, Some(at)) = (rollout.strategy.shifts_traffic(), &rollout.strategy_at) {
        let name = rollout.strategy.name();
        let env_name = &env.name;
        let why = match &env.ingress {
            None => Some(format!("environment `{env_name}` has no `ingress:`")),
            Some(_) if routing.is_none() => Some("the service has no route here (`ingress: {internal: false}`)".into()),
            Some(i) if i.traffic_role.is_none() => Some(format!(
                "environment `{env_name}` has no `ingress.traffic_role` (the role ECS moves traffic with)"
            )),
            Some(_) => None,
        };
        if let Some(why) = why {
            return Err(vec![Diagnostic::new(
                at.clone(),
                format!("strategy `{name}` moves traffic between two target groups, but {why}"),
            )]);
        }
    }
    let service = ServiceSettings {
        cluster: env.cluster.clone(),
        service_name: spec.name.clone(),
        task_definition: family,
        desired_count: spec.autoscaling.is_none().then_some(spec.count as i32),
        launch_type: Some("FARGATE".into()),
        platform_version: Some("LATEST".into()),
        deployment_configuration: Some(DeploymentConfiguration {
            deployment_circuit_breaker: Some(CircuitBreaker { enable: true, rollback: true }),
            maximum_percent: Some(200),
            minimum_healthy_percent: Some(100),
            alarms: (!rollout.alarms.is_empty()).then(|| DeploymentAlarms {
                alarm_names: rollout.alarms.clone(),
                enable: true,
                rollback: true,
            }),
            strategy: rollout.strategy.shifts_traffic().then(|| rollout.strategy.ecs().to_string()),
            bake_time_in_minutes: rollout.bake_minutes,
            canary_configuration: rollout.canary.map(|(canary_percent, canary_bake_time_in_minutes)| {
                CanaryConfiguration { canary_percent, canary_bake_time_in_minutes }
            }),
            linear_configuration: rollout.linear.map(|(step_percent, step_bake_time_in_minutes)| LinearConfiguration {
                step_percent,
                step_bake_time_in_minutes,
            }),
            lifecycle_hooks: rollout
                .hooks
                .iter()
                .map(|h| LifecycleHook {
                    hook_target_arn: h.lambda.clone(),
                    role_arn: h.role.clone(),
                    lifecycle_stages: h.stages.iter().map(|s| s.ecs().to_string()).collect(),
                })
                .collect(),
        }),
        network_configuration,
        propagate_tags: Some("SERVICE".into()),
        enable_ecs_managed_tags: Some(true),
        enable_execute_command: spec.exec.then_some(true),
        load_balancers,
        tags: Vec::new(),
    };
    let scaling = spec.autoscaling.as_ref().map(|a| {
        let resource_id = scaling_resource_id(&env.cluster, &spec.name);
        let (metric, short) = match a.resource {
            ScaleResource::Cpu => ("ECSServiceAverageCPUUtilization", "cpu"),
            ScaleResource::Memory => ("ECSServiceAverageMemoryUtilization", "memory"),
        };
        Scaling {
            scalable_target: ScalableTarget {
                service_namespace: "ecs".into(),
                resource_id: resource_id.clone(),
                scalable_dimension: SCALABLE_DIMENSION.into(),
                min_capacity: a.min as i32,
                max_capacity: a.max as i32,
            },
            scaling_policy: ScalingPolicy {
                policy_name: format!("{POLICY_PREFIX}{short}-target"),
                service_namespace: "ecs".into(),
                resource_id,
                scalable_dimension: SCALABLE_DIMENSION.into(),
                policy_type: "TargetTrackingScaling".into(),
                target_tracking_scaling_policy_configuration: TargetTracking {
                    target_value: a.target,
                    predefined_metric_specification: PredefinedMetric { predefined_metric_type: metric.into() },
                    scale_in_cooldown: None,
                    scale_out_cooldown: None,
                },
            },
        }
    });
    let dashboard = env
        .dashboards
        .then(|| super::dashboard::render(&spec.name, &env.name, &env.cluster, &aws.region, routing.is_some()));
    let mut desired = Desired {
        task_definition: Arc::new(task_definition),
        service: Arc::new(service),
        scaling,
        routing,
        access,
        before_deploy: spec.before_deploy.clone(),
        dashboard,
    };
    let hash = spec_hash(&desired);
    let tags = vec![
        Tag { key: tags::COMMIT.into(), value: target.commit.to_string() },
        Tag { key: tags::ENV.into(), value: env.name.clone() },
        Tag { key: tags::MANAGED.into(), value: "true".into() },
        Tag { key: tags::SERVICE.into(), value: spec.name.clone() },
        Tag { key: tags::SPEC_HASH.into(), value: hash },
    ];
    // Not shared yet: make_mut changes them in place.
    Arc::make_mut(&mut desired.task_definition).tags = tags.clone();
    Arc::make_mut(&mut desired.service).tags = tags;
    Ok(desired)
}

/// The security groups of a service in an environment with `ingress:`.
fn access(spec: &ServiceSpec, env: &str, ingress: &super::config::IngressConfig) -> super::routing::Access {
    use super::routing::{Access, Join, SecurityGroup, clients_group};
    let group = |name: String, description: String, service: &str| SecurityGroup {
        group_name: name,
        description,
        vpc_id: ingress.vpc.clone(),
        tags: vec![
            Tag { key: tags::ENV.into(), value: env.to_string() },
            Tag { key: tags::MANAGED.into(), value: "true".into() },
            Tag { key: tags::SERVICE.into(), value: service.to_string() },
        ],
    };
    let clients =
        |service: &str| group(clients_group(service), format!("berth: what calls {service} in {env}"), service);
    let at = |name: &str| spec.dependency_at.iter().find(|(n, _)| n == name).map(|(_, p)| p.to_string());
    let joins = (spec.depends_on.iter().map(|d| (d, Some(clients(d)))))
        .chain(spec.data.iter().map(|d| (d, None)))
        .map(|(d, service)| Join { group_name: clients_group(d), service, at: at(d).unwrap_or_default() })
        .collect();
    Access {
        own: group(spec.name.clone(), format!("berth: {} in {env}", spec.name), &spec.name),
        clients: clients(&spec.name),
        port: spec.port.into(),
        joins,
    }
}

/// The routing of a service in an environment with `ingress:`; `None` when it asks for
/// no route (`internal: false` and not external).
fn route(
    spec: &ServiceSpec,
    env: &str,
    ingress: &super::config::IngressConfig,
) -> Result<Option<super::routing::Routing>, Diagnostic> {
    use super::config::IngressConfig;
    use super::routing::{ListenerRule, Record, Routing, TargetGroup, route_group_name};
    let route = &spec.route;
    let tags = vec![
        Tag { key: tags::ENV.into(), value: env.to_string() },
        Tag { key: tags::MANAGED.into(), value: "true".into() },
        Tag { key: tags::SERVICE.into(), value: spec.name.clone() },
    ];
    let mut rules = Vec::new();
    let mut records = Vec::new();
    if route.internal {
        let host = IngressConfig::host(&ingress.internal_host, &spec.name, env);
        if let Some(zone) = &ingress.private_zone {
            records.push(Record {
                zone_id: zone.clone(),
                name: host.clone(),
                listener_arn: ingress.internal_listener.clone(),
            });
        }
        rules.push(ListenerRule {
            listener_arn: ingress.internal_listener.clone(),
            scope: "internal".into(),
            hosts: vec![host],
            paths: route.paths.clone(),
            tags: tags.clone(),
            ..Default::default()
        });
    }
    if let Some(at) = &route.external_at {
        let (Some(listener), Some(pattern)) = (&ingress.external_listener, &ingress.external_host) else {
            return Err(Diagnostic::new(
                at.clone(),
                format!("`external: true`, but environment `{env}` has no `ingress.external_listener`"),
            ));
        };
        let host = route.host.clone().unwrap_or_else(|| IngressConfig::host(pattern, &spec.name, env));
        if let Some(zone) = &ingress.public_zone {
            records.push(Record { zone_id: zone.clone(), name: host.clone(), listener_arn: listener.clone() });
        }
        rules.push(ListenerRule {
            listener_arn: listener.clone(),
            scope: "external".into(),
            hosts: vec![host],
            paths: route.paths.clone(),
            tags: tags.clone(),
            ..Default::default()
        });
    }
    if rules.is_empty() {
        return Ok(None);
    }
    // A group per production rule (an ALB target group serves one load balancer), and an
    // alternate of each when ECS shifts traffic between two. The first rule's is
    // `<service>-<env>` (an external-only service keeps the name it always had); the
    // external rule beside an internal one has `-ext`.
    let shifts = spec.rollout.strategy.shifts_traffic();
    let mut target_groups = Vec::new();
    for (i, rule) in rules.iter_mut().enumerate() {
        let named_as = if i == 0 { "internal" } else { rule.scope.as_str() };
        rule.target_group = route_group_name(&spec.name, env, named_as, false);
        rule.alternate = shifts.then(|| route_group_name(&spec.name, env, named_as, true));
        for name in std::iter::once(&rule.target_group).chain(&rule.alternate) {
            target_groups.push(TargetGroup {
                name: name.clone(),
                protocol: "HTTP".into(),
                port: spec.port.into(),
                vpc_id: ingress.vpc.clone(),
                target_type: "ip".into(),
                health_check_path: spec.health.clone(),
                tags: tags.clone(),
            });
        }
    }
    // The test rule: the internal host on the test listener, forwarding to the internal
    // groups (ECS points it at the new revision first).
    if let (true, Some(listener), Some(internal)) =
        (shifts, &ingress.test_listener, rules.iter().find(|r| r.scope == "internal").cloned())
    {
        rules.push(ListenerRule { listener_arn: listener.clone(), scope: TEST_SCOPE.into(), ..internal });
    }
    Ok(Some(Routing { target_groups, rules, records }))
}

/// The service's `loadBalancers`: an entry per production rule's group, and with a
/// strategy that shifts traffic its alternate, rules and role (`rule:<scope>` stands for a
/// rule's ARN until the plan knows it).
fn load_balancers(
    spec: &ServiceSpec,
    routing: &super::routing::Routing,
    ingress: &super::config::IngressConfig,
) -> Vec<LoadBalancer> {
    let has_test = routing.rules.iter().any(|r| r.scope == TEST_SCOPE);
    routing
        .rules
        .iter()
        .filter(|r| r.scope != TEST_SCOPE)
        .map(|r| LoadBalancer {
            target_group_arn: r.target_group.clone(),
            container_name: spec.name.clone(),
            container_port: spec.port.into(),
            advanced_configuration: r.alternate.as_ref().map(|alt| AdvancedConfiguration {
                alternate_target_group_arn: alt.clone(),
                production_listener_rule: rule_placeholder(&r.scope),
                test_listener_rule: (has_test && r.scope == "internal").then(|| rule_placeholder(TEST_SCOPE)),
                role_arn: ingress.traffic_role.clone().unwrap_or_default(),
            }),
        })
        .collect()
}

/// What a rendered `loadBalancers` entry names a rule by until its ARN is known.
pub fn rule_placeholder(scope: &str) -> String {
    format!("rule:{scope}")
}

pub const SCALABLE_DIMENSION: &str = "ecs:service:DesiredCount";
/// Scaling policies berth creates are named `berth-…`; only those are ever deleted.
pub const POLICY_PREFIX: &str = "berth-";

/// A stable hash of what berth applies (tags left out, since the hash is one of them).
pub fn spec_hash(desired: &Desired) -> String {
    let untagged;
    let desired = if desired.task_definition.tags.is_empty() && desired.service.tags.is_empty() {
        desired
    } else {
        let mut copy = desired.clone();
        Arc::make_mut(&mut copy.task_definition).tags.clear();
        Arc::make_mut(&mut copy.service).tags.clear();
        untagged = copy;
        &untagged
    };
    hex::encode(&sha256_of_json(desired)[..8])
}

/// SHA-256 of `value`'s JSON, written straight into the hasher (no buffer).
pub fn sha256_of_json(value: &impl serde::Serialize) -> [u8; 32] {
    let mut hasher = HashWriter(Sha256::new());
    serde_json::to_writer(&mut hasher, value).expect("berth's own types serialize");
    hasher.0.finalize().into()
}

struct HashWriter(Sha256);

impl std::io::Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references() {
        let reg = Some("123456789012.dkr.ecr.us-east-1.amazonaws.com");
        assert_eq!(image_reference("web", reg, "abc"), "123456789012.dkr.ecr.us-east-1.amazonaws.com/web:abc");
        assert_eq!(
            image_reference("team/web", reg, "abc"),
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/team/web:abc"
        );
        assert_eq!(image_reference("web:1.0", reg, "abc"), "123456789012.dkr.ecr.us-east-1.amazonaws.com/web:1.0");
        assert_eq!(image_reference("ghcr.io/acme/web", reg, "abc"), "ghcr.io/acme/web:abc");
        assert_eq!(image_reference("localhost:5000/web", reg, "abc"), "localhost:5000/web:abc");
        assert_eq!(image_reference("ghcr.io/acme/web@sha256:00", reg, "abc"), "ghcr.io/acme/web@sha256:00");
        assert_eq!(image_reference("nginx", None, "1.2.3"), "nginx:1.2.3");
    }
}
