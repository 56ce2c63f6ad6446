//! One environment of the agent config, checked: its source, cluster, rollout, defaults,
//! AWS target (`aws:` over the top-level one), prune, ingress and dashboards.

use std::time::Duration;

use super::*;

pub(super) fn check_env(
    name: &str,
    env: &At<RawEnv>,
    top: Option<&AwsConfig>,
    diags: &mut Vec<Diagnostic>,
) -> Option<EnvConfig> {
    let source = match &env.source {
        None => {
            diags.push(Diagnostic::new(
                env.pos.clone(),
                "missing required field `source` ({branch: NAME} or {tags: semver})",
            ));
            None
        }
        Some(s) => match (&s.branch, &s.tags) {
            (Some(b), None) => {
                if b.is_empty() || git_ref_unsafe(&b.value) {
                    diags.push(Diagnostic::new(b.pos.clone(), format!("invalid branch name `{}`", b.value)));
                }
                if let Some(p) = &s.prereleases {
                    diags.push(Diagnostic::new(p.pos.clone(), "`prereleases` applies to `tags: semver` sources only"));
                }
                Some(Source::Branch(b.value.clone()))
            }
            (None, Some(t)) if t.value == "semver" => {
                Some(Source::SemverTags { prereleases: s.prereleases.as_ref().is_some_and(|p| p.value) })
            }
            (None, Some(t)) => {
                diags.push(Diagnostic::new(
                    t.pos.clone(),
                    format!("unknown tag scheme `{}`: the only one is `semver`", t.value),
                ));
                None
            }
            _ => {
                diags.push(Diagnostic::new(s.pos.clone(), "set exactly one of `branch` or `tags`"));
                None
            }
        },
    };
    let cluster = env.cluster.as_ref().map(|c| c.value.clone());
    if cluster.is_none() {
        diags.push(Diagnostic::new(env.pos.clone(), "missing required field `cluster`"));
    }
    let rollout = env.rollout.as_ref();
    let defaults = env.defaults.as_ref().map_or_else(EnvDefaults::default, |d| EnvDefaults {
        execution_role: d.execution_role.as_ref().map(|v| v.value.clone()),
        task_role: d.task_role.as_ref().map(|v| v.value.clone()),
        subnets: d.subnets.as_ref().map(|v| v.value.clone()).unwrap_or_default(),
        security_groups: d.security_groups.as_ref().map(|v| v.value.clone()).unwrap_or_default(),
        assign_public_ip: d.assign_public_ip.as_ref().is_some_and(|v| v.value),
        log_group: d.log_group.as_ref().map(|v| v.value.clone()),
    });
    if let Some(d) = &env.defaults {
        for role in [&d.execution_role, &d.task_role].into_iter().flatten() {
            if !role.starts_with("arn:") {
                diags.push(Diagnostic::new(role.pos.clone(), format!("`{}` is not an IAM role ARN", role.value)));
            }
        }
    }
    let aws = env_aws(name, env.aws.as_ref(), top?, diags);
    Some(EnvConfig {
        aws,
        name: name.to_string(),
        source: source?,
        cluster: cluster?,
        sync: env.sync.as_ref().map_or(SyncMode::Auto, |s| s.value),
        rollout_wait: rollout.and_then(|r| r.wait.as_ref()).is_none_or(|w| w.value),
        rollout_timeout: duration(&rollout.and_then(|r| r.timeout.clone()), Duration::from_secs(600), diags),
        rollout_poll: duration(&rollout.and_then(|r| r.poll.clone()), Duration::from_secs(5), diags),
        defaults,
        prune: env.prune.as_ref().is_some_and(|p| p.value),
        prune_limit: operate::prune_limit(env.prune_limit.as_ref(), diags),
        ingress: env.ingress.as_ref().and_then(|i| ingress::check(i, diags)),
        dashboards: match &env.dashboards {
            None => false,
            Some(d) if d.value == "cloudwatch" => true,
            Some(d) => {
                diags.push(Diagnostic::new(
                    d.pos.clone(),
                    format!("unknown dashboards `{}`: the only kind is `cloudwatch`", d.value),
                ));
                false
            }
        },
    })
}

/// The environment's AWS target: the top-level `aws:` with the environment's keys over it.
fn env_aws(env: &str, raw: Option<&At<RawEnvAws>>, top: &AwsConfig, diags: &mut Vec<Diagnostic>) -> AwsConfig {
    let mut aws = top.clone();
    let Some(r) = raw else { return aws };
    let text = |f: &Option<At<String>>| f.as_ref().map(|v| v.value.clone());
    if let Some(region) = text(&r.region) {
        aws.region = region;
    }
    if let Some(e) = &r.endpoint_url {
        if !(e.starts_with("http://") || e.starts_with("https://")) {
            diags.push(Diagnostic::new(
                e.pos.clone(),
                format!("invalid endpoint_url `{}`: an http:// or https:// URL", e.value),
            ));
        }
        aws.endpoint_url = Some(e.value.trim_end_matches('/').to_string());
    }
    if let Some(reg) = text(&r.registry) {
        aws.registry = Some(reg.trim_end_matches('/').to_string());
    }
    if let Some(arn) = &r.role_arn {
        if !(arn.starts_with("arn:") && arn.contains(":role/")) {
            diags.push(Diagnostic::new(arn.pos.clone(), format!("`{}` is not an IAM role ARN", arn.value)));
        }
        // The role's account is the environment's: asked of STS, not the top-level one.
        aws.account_id = None;
        aws.role = Some(AssumeRole {
            arn: arn.value.clone(),
            external_id: text(&r.external_id),
            session_name: text(&r.session_name).unwrap_or_else(|| format!("berth-{env}")),
            duration: duration(&r.session_duration, Duration::from_secs(3600), diags),
        });
    } else if let Some(x) = &r.external_id {
        diags.push(Diagnostic::new(x.pos.clone(), "`external_id` needs `role_arn`"));
    }
    if let Some(id) = &r.account_id {
        let v = id.value.0.clone();
        if !(v.len() == 12 && v.chars().all(|c| c.is_ascii_digit())) {
            diags.push(Diagnostic::new(id.pos.clone(), format!("invalid account_id `{v}`: 12 digits, quoted")));
        }
        aws.account_id = Some(v);
    }
    aws
}

fn git_ref_unsafe(name: &str) -> bool {
    name.starts_with('-') || name.contains("..") || name.chars().any(|c| c.is_whitespace() || "~^:?*[\\".contains(c))
}
