//! Conversions between berth's desired/live types and the SDK's. The only place that
//! knows both.

use aws_sdk_ecs::types as ecs;

use crate::core::desired::*;
use crate::core::live::{Deployment, LiveService, LiveTaskDefinition};

use super::AwsError;

fn build_err(e: aws_smithy_types::error::operation::BuildError) -> AwsError {
    AwsError::other("build request", e.to_string())
}

pub fn ecs_tags(tags: &[Tag]) -> Vec<ecs::Tag> {
    tags.iter().map(|t| ecs::Tag::builder().key(&t.key).value(&t.value).build()).collect()
}

fn container_to_sdk(c: &ContainerDefinition) -> Result<ecs::ContainerDefinition, AwsError> {
    let mut b = ecs::ContainerDefinition::builder().name(&c.name).image(&c.image);
    if let Some(e) = c.essential {
        b = b.essential(e);
    }
    if let Some(cpu) = c.cpu {
        b = b.cpu(cpu);
    }
    for p in &c.port_mappings {
        let mut pb = ecs::PortMapping::builder().container_port(p.container_port);
        if let Some(n) = &p.name {
            pb = pb.name(n);
        }
        if let Some(h) = p.host_port {
            pb = pb.host_port(h);
        }
        if let Some(proto) = &p.protocol {
            pb = pb.protocol(ecs::TransportProtocol::from(proto.as_str()));
        }
        b = b.port_mappings(pb.build());
    }
    for kv in &c.environment {
        b = b.environment(ecs::KeyValuePair::builder().name(&kv.name).value(&kv.value).build());
    }
    for s in &c.secrets {
        b = b.secrets(ecs::Secret::builder().name(&s.name).value_from(&s.value_from).build().map_err(build_err)?);
    }
    if let Some(h) = &c.health_check {
        let mut hb = ecs::HealthCheck::builder().set_command(Some(h.command.clone()));
        hb = hb.set_interval(h.interval).set_timeout(h.timeout).set_retries(h.retries).set_start_period(h.start_period);
        b = b.health_check(hb.build().map_err(build_err)?);
    }
    if let Some(l) = &c.log_configuration {
        let lb = ecs::LogConfiguration::builder()
            .log_driver(ecs::LogDriver::from(l.log_driver.as_str()))
            .set_options(Some(l.options.clone().into_iter().collect()));
        b = b.log_configuration(lb.build().map_err(build_err)?);
    }
    if !c.docker_labels.is_empty() {
        b = b.set_docker_labels(Some(c.docker_labels.clone().into_iter().collect()));
    }
    Ok(b.build())
}

pub fn register_input(
    client: &aws_sdk_ecs::Client,
    td: &TaskDefinition,
) -> Result<aws_sdk_ecs::operation::register_task_definition::builders::RegisterTaskDefinitionFluentBuilder, AwsError> {
    let mut req = client
        .register_task_definition()
        .family(&td.family)
        .network_mode(ecs::NetworkMode::from(td.network_mode.as_str()))
        .set_task_role_arn(td.task_role_arn.clone())
        .set_execution_role_arn(td.execution_role_arn.clone())
        .set_cpu(td.cpu.clone())
        .set_memory(td.memory.clone())
        .set_tags(Some(ecs_tags(&td.tags)));
    for c in &td.requires_compatibilities {
        req = req.requires_compatibilities(ecs::Compatibility::from(c.as_str()));
    }
    for c in &td.container_definitions {
        req = req.container_definitions(container_to_sdk(c)?);
    }
    Ok(req)
}

fn container_from_sdk(c: &ecs::ContainerDefinition, extras: &mut Vec<String>) -> ContainerDefinition {
    let name = c.name().unwrap_or_default().to_string();
    let mut note = |field: &str, set: bool| {
        if set {
            extras.push(format!("containerDefinitions.{name}.{field}"));
        }
    };
    note("mountPoints", !c.mount_points().is_empty());
    note("volumesFrom", !c.volumes_from().is_empty());
    note("command", !c.command().is_empty());
    note("entryPoint", !c.entry_point().is_empty());
    note("dependsOn", !c.depends_on().is_empty());
    note("ulimits", !c.ulimits().is_empty());
    note("environmentFiles", !c.environment_files().is_empty());
    note("links", !c.links().is_empty());
    note("memory", c.memory().is_some_and(|m| m > 0));
    note("memoryReservation", c.memory_reservation().is_some_and(|m| m > 0));
    note("user", c.user().is_some());
    note("workingDirectory", c.working_directory().is_some());
    note("readonlyRootFilesystem", c.readonly_root_filesystem() == Some(true));
    note("privileged", c.privileged() == Some(true));
    note("linuxParameters", c.linux_parameters().is_some());
    note("repositoryCredentials", c.repository_credentials().is_some());
    note("firelensConfiguration", c.firelens_configuration().is_some());
    note("startTimeout", c.start_timeout().is_some());
    note("stopTimeout", c.stop_timeout().is_some());
    note("systemControls", !c.system_controls().is_empty());
    note("resourceRequirements", !c.resource_requirements().is_empty());
    note("hostname", c.hostname().is_some());
    note("dnsServers", !c.dns_servers().is_empty());
    note("extraHosts", !c.extra_hosts().is_empty());
    note("interactive", c.interactive() == Some(true));
    note("pseudoTerminal", c.pseudo_terminal() == Some(true));
    note("dockerSecurityOptions", !c.docker_security_options().is_empty());
    note("logConfiguration.secretOptions", c.log_configuration().is_some_and(|l| !l.secret_options().is_empty()));
    ContainerDefinition {
        name: name.clone(),
        image: c.image().unwrap_or_default().to_string(),
        essential: c.essential(),
        cpu: Some(c.cpu()),
        port_mappings: c
            .port_mappings()
            .iter()
            .map(|p| PortMapping {
                name: p.name().map(str::to_string),
                container_port: p.container_port().unwrap_or_default(),
                host_port: p.host_port(),
                protocol: p.protocol().map(|t| t.as_str().to_string()),
            })
            .collect(),
        environment: c
            .environment()
            .iter()
            .map(|kv| KeyValuePair {
                name: kv.name().unwrap_or_default().into(),
                value: kv.value().unwrap_or_default().into(),
            })
            .collect(),
        secrets: c
            .secrets()
            .iter()
            .map(|s| Secret { name: s.name().into(), value_from: s.value_from().into() })
            .collect(),
        health_check: c.health_check().map(|h| HealthCheck {
            command: h.command().to_vec(),
            interval: h.interval(),
            timeout: h.timeout(),
            retries: h.retries(),
            start_period: h.start_period(),
        }),
        log_configuration: c.log_configuration().map(|l| LogConfiguration {
            log_driver: l.log_driver().as_str().to_string(),
            options: l.options().map(|o| o.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default(),
        }),
        docker_labels: c
            .docker_labels()
            .map(|d| d.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default(),
    }
}

pub fn task_definition_from_sdk(td: &ecs::TaskDefinition, tags: &[ecs::Tag]) -> LiveTaskDefinition {
    let mut extras = Vec::new();
    let mut note = |field: &str, set: bool| {
        if set {
            extras.push(field.to_string());
        }
    };
    note("volumes", !td.volumes().is_empty());
    note("placementConstraints", !td.placement_constraints().is_empty());
    note("proxyConfiguration", td.proxy_configuration().is_some());
    note("inferenceAccelerators", !td.inference_accelerators().is_empty());
    note("ephemeralStorage", td.ephemeral_storage().is_some());
    note("runtimePlatform", td.runtime_platform().is_some());
    note("pidMode", td.pid_mode().is_some());
    note("ipcMode", td.ipc_mode().is_some());
    let mut containers = Vec::new();
    for c in td.container_definitions() {
        containers.push(container_from_sdk(c, &mut extras));
    }
    let definition = TaskDefinition {
        family: td.family().unwrap_or_default().to_string(),
        task_role_arn: td.task_role_arn().map(str::to_string),
        execution_role_arn: td.execution_role_arn().map(str::to_string),
        network_mode: td.network_mode().map(|n| n.as_str().to_string()).unwrap_or_else(|| "bridge".into()),
        requires_compatibilities: td.requires_compatibilities().iter().map(|c| c.as_str().to_string()).collect(),
        cpu: td.cpu().map(str::to_string),
        memory: td.memory().map(str::to_string),
        container_definitions: containers,
        tags: tags
            .iter()
            .map(|t| Tag { key: t.key().unwrap_or_default().into(), value: t.value().unwrap_or_default().into() })
            .collect(),
    };
    LiveTaskDefinition { arn: td.task_definition_arn().unwrap_or_default().to_string(), definition, extras }
}

pub fn network_to_sdk(n: &NetworkConfiguration) -> Result<ecs::NetworkConfiguration, AwsError> {
    let a = &n.awsvpc_configuration;
    let vpc = ecs::AwsVpcConfiguration::builder()
        .set_subnets(Some(a.subnets.clone()))
        .set_security_groups(Some(a.security_groups.clone()))
        .set_assign_public_ip(a.assign_public_ip.as_deref().map(ecs::AssignPublicIp::from))
        .build()
        .map_err(build_err)?;
    Ok(ecs::NetworkConfiguration::builder().awsvpc_configuration(vpc).build())
}

pub fn deployment_to_sdk(d: &DeploymentConfiguration) -> ecs::DeploymentConfiguration {
    let mut b = ecs::DeploymentConfiguration::builder()
        .set_maximum_percent(d.maximum_percent)
        .set_minimum_healthy_percent(d.minimum_healthy_percent);
    if let Some(cb) = &d.deployment_circuit_breaker {
        b = b.deployment_circuit_breaker(
            ecs::DeploymentCircuitBreaker::builder().enable(cb.enable).rollback(cb.rollback).build(),
        );
    }
    // Always sent: alarms that left git are switched off, not left in place.
    let alarms = d.alarms.clone().unwrap_or_default();
    if let Ok(a) = ecs::DeploymentAlarms::builder()
        .set_alarm_names(Some(alarms.alarm_names))
        .enable(alarms.enable)
        .rollback(alarms.rollback)
        .build()
    {
        b = b.alarms(a);
    }
    // Always sent, like the alarms: a strategy, its settings and hooks removed from git
    // go back to rolling, not stay in place.
    b = b.strategy(ecs::DeploymentStrategy::from(d.strategy.as_deref().unwrap_or("ROLLING")));
    b = b.set_bake_time_in_minutes(d.bake_time_in_minutes);
    if let Some(c) = &d.canary_configuration {
        b = b.canary_configuration(
            ecs::CanaryConfiguration::builder()
                .canary_percent(c.canary_percent)
                .canary_bake_time_in_minutes(c.canary_bake_time_in_minutes)
                .build(),
        );
    }
    if let Some(l) = &d.linear_configuration {
        b = b.linear_configuration(
            ecs::LinearConfiguration::builder()
                .step_percent(l.step_percent)
                .step_bake_time_in_minutes(l.step_bake_time_in_minutes)
                .build(),
        );
    }
    let hooks = d.lifecycle_hooks.iter().map(|h| {
        ecs::DeploymentLifecycleHook::builder()
            .hook_target_arn(&h.hook_target_arn)
            .role_arn(&h.role_arn)
            .set_lifecycle_stages(Some(
                h.lifecycle_stages.iter().map(|s| ecs::DeploymentLifecycleHookStage::from(s.as_str())).collect(),
            ))
            .build()
    });
    b.set_lifecycle_hooks(Some(hooks.collect())).build()
}

pub fn load_balancers_to_sdk(lbs: &[LoadBalancer]) -> Vec<ecs::LoadBalancer> {
    lbs.iter()
        .map(|l| {
            ecs::LoadBalancer::builder()
                .target_group_arn(&l.target_group_arn)
                .container_name(&l.container_name)
                .container_port(l.container_port)
                .set_advanced_configuration(l.advanced_configuration.as_ref().map(|a| {
                    ecs::AdvancedConfiguration::builder()
                        .alternate_target_group_arn(&a.alternate_target_group_arn)
                        .production_listener_rule(&a.production_listener_rule)
                        .set_test_listener_rule(a.test_listener_rule.clone())
                        .role_arn(&a.role_arn)
                        .build()
                }))
                .build()
        })
        .collect()
}

pub fn service_from_sdk(s: &ecs::Service) -> LiveService {
    let settings = ServiceSettings {
        cluster: s.cluster_arn().unwrap_or_default().rsplit('/').next().unwrap_or_default().to_string(),
        service_name: s.service_name().unwrap_or_default().to_string(),
        task_definition: s.task_definition().unwrap_or_default().to_string(),
        desired_count: Some(s.desired_count()),
        launch_type: s.launch_type().map(|l| l.as_str().to_string()),
        platform_version: s.platform_version().map(str::to_string),
        deployment_configuration: s.deployment_configuration().map(|d| DeploymentConfiguration {
            deployment_circuit_breaker: d
                .deployment_circuit_breaker()
                .map(|c| CircuitBreaker { enable: c.enable(), rollback: c.rollback() }),
            maximum_percent: d.maximum_percent(),
            minimum_healthy_percent: d.minimum_healthy_percent(),
            alarms: d.alarms().filter(|a| a.enable()).map(|a| DeploymentAlarms {
                alarm_names: a.alarm_names().to_vec(),
                enable: a.enable(),
                rollback: a.rollback(),
            }),
            strategy: d.strategy().map(|s| s.as_str().to_string()),
            bake_time_in_minutes: d.bake_time_in_minutes(),
            canary_configuration: d.canary_configuration().map(|c| CanaryConfiguration {
                canary_percent: c.canary_percent().unwrap_or_default(),
                canary_bake_time_in_minutes: c.canary_bake_time_in_minutes().unwrap_or_default(),
            }),
            linear_configuration: d.linear_configuration().map(|l| LinearConfiguration {
                step_percent: l.step_percent().unwrap_or_default(),
                step_bake_time_in_minutes: l.step_bake_time_in_minutes().unwrap_or_default(),
            }),
            lifecycle_hooks: d
                .lifecycle_hooks()
                .iter()
                .map(|h| LifecycleHook {
                    hook_target_arn: h.hook_target_arn().unwrap_or_default().to_string(),
                    role_arn: h.role_arn().unwrap_or_default().to_string(),
                    lifecycle_stages: h.lifecycle_stages().iter().map(|s| s.as_str().to_string()).collect(),
                })
                .collect(),
        }),
        network_configuration: s.network_configuration().and_then(|n| n.awsvpc_configuration()).map(|a| {
            NetworkConfiguration {
                awsvpc_configuration: AwsVpcConfiguration {
                    subnets: a.subnets().to_vec(),
                    security_groups: a.security_groups().to_vec(),
                    assign_public_ip: a.assign_public_ip().map(|p| p.as_str().to_string()),
                },
            }
        }),
        propagate_tags: s.propagate_tags().map(|p| p.as_str().to_string()),
        enable_ecs_managed_tags: Some(s.enable_ecs_managed_tags())
            .filter(|_| s.created_by().is_some() || s.enable_ecs_managed_tags()),
        // As for the managed tags: an emulator that drops the field leaves it unread.
        enable_execute_command: Some(s.enable_execute_command())
            .filter(|_| s.created_by().is_some() || s.enable_execute_command()),
        load_balancers: Some(
            s.load_balancers()
                .iter()
                .map(|l| LoadBalancer {
                    target_group_arn: l.target_group_arn().unwrap_or_default().to_string(),
                    container_name: l.container_name().unwrap_or_default().to_string(),
                    container_port: l.container_port().unwrap_or_default(),
                    advanced_configuration: l.advanced_configuration().map(|a| AdvancedConfiguration {
                        alternate_target_group_arn: a.alternate_target_group_arn().unwrap_or_default().to_string(),
                        production_listener_rule: a.production_listener_rule().unwrap_or_default().to_string(),
                        test_listener_rule: a.test_listener_rule().map(str::to_string),
                        role_arn: a.role_arn().unwrap_or_default().to_string(),
                    }),
                })
                .collect(),
        ),
        tags: s
            .tags()
            .iter()
            .map(|t| Tag { key: t.key().unwrap_or_default().into(), value: t.value().unwrap_or_default().into() })
            .collect(),
    };
    LiveService {
        arn: s.service_arn().unwrap_or_default().to_string(),
        status: s.status().unwrap_or_default().to_string(),
        settings,
        scheduling_strategy: s.scheduling_strategy().map(|x| x.as_str().to_string()),
        deployment_controller: s.deployment_controller().map(|d| d.r#type().as_str().to_string()),
        uses_capacity_providers: !s.capacity_provider_strategy().is_empty(),
        current_deployment: s.current_service_deployment().map(str::to_string),
        deployments: s
            .deployments()
            .iter()
            .map(|d| Deployment {
                id: d.id().unwrap_or_default().to_string(),
                status: d.status().unwrap_or_default().to_string(),
                task_definition: d.task_definition().unwrap_or_default().to_string(),
                rollout_state: d.rollout_state().map(|r| r.as_str().to_string()),
                rollout_state_reason: d.rollout_state_reason().map(str::to_string),
                desired_count: d.desired_count(),
                running_count: d.running_count(),
                failed_tasks: d.failed_tasks(),
            })
            .collect(),
    }
}
