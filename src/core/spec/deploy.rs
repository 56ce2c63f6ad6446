//! The checks of what a spec asks of the deploy around the service: its routing
//! (`ingress`), its rollout (`rollout.alarms`) and its tasks (`tasks.before_deploy`).

use super::RouteSpec;
use super::model;
use crate::core::at::At;
use crate::core::diag::Diagnostic;

/// `tasks.before_deploy`, checked: a command of non-empty words, a timeout of 1s to 24h.
pub(super) fn before_deploy(
    tasks: Option<&At<model::Tasks>>,
    diags: &mut Vec<Diagnostic>,
) -> Option<crate::core::desired::BeforeDeploy> {
    let b = tasks.and_then(|t| t.before_deploy.as_ref())?;
    let command: Vec<String> = b.command.iter().flat_map(|c| c.value.iter().map(|a| a.value.clone())).collect();
    if command.is_empty() || command.iter().any(String::is_empty) {
        let pos = b.command.as_ref().map_or(&b.pos, |c| &c.pos);
        diags.push(Diagnostic::new(pos.clone(), "`before_deploy.command` needs a command: a list of non-empty words"));
    }
    let timeout = match &b.timeout {
        None => Some(600),
        Some(t) => match humantime::parse_duration(&t.value) {
            Ok(d) if (1..=86_400).contains(&d.as_secs()) => Some(d.as_secs()),
            _ => {
                diags.push(Diagnostic::new(
                    t.pos.clone(),
                    format!("invalid timeout `{}`: a duration from 1s to 24h (`10m`)", t.value),
                ));
                None
            }
        },
    };
    Some(crate::core::desired::BeforeDeploy { command, timeout_s: timeout? })
}

/// `rollout.alarms`, checked: at most 10 names of 1 to 255 characters, duplicates dropped.
pub(super) fn alarms(rollout: Option<&At<model::Rollout>>, diags: &mut Vec<Diagnostic>) -> Vec<String> {
    let mut alarms = Vec::new();
    if let Some(list) = rollout.and_then(|r| r.alarms.as_ref()) {
        if list.value.len() > 10 {
            diags.push(Diagnostic::new(
                list.pos.clone(),
                format!("{} alarms: a deployment takes at most 10", list.value.len()),
            ));
        }
        for a in &list.value {
            if a.value.is_empty() || a.value.len() > 255 || a.value.chars().any(char::is_control) {
                diags.push(Diagnostic::new(
                    a.pos.clone(),
                    format!("invalid alarm name `{}`: 1 to 255 characters, no control characters", a.value),
                ));
            } else if !alarms.contains(&a.value) {
                alarms.push(a.value.clone());
            }
        }
    }
    alarms
}

/// Checks `spec.ingress`: a host name, and at most four path patterns (an ALB rule matches
/// at most five values: the host and the paths).
pub(super) fn route_spec(ingress: Option<&At<model::Ingress>>, diags: &mut Vec<Diagnostic>) -> RouteSpec {
    let mut route = RouteSpec { internal: true, external_at: None, host: None, paths: Vec::new() };
    let Some(i) = ingress else { return route };
    route.internal = i.internal.as_ref().is_none_or(|v| v.value);
    route.external_at = i.external.as_ref().filter(|e| e.value).map(|e| e.pos.clone());
    if let Some(h) = &i.host {
        if valid_host(&h.value) {
            route.host = Some(h.value.clone());
        } else {
            diags.push(Diagnostic::new(
                h.pos.clone(),
                format!("invalid host `{}`: a lower-case DNS name (`pay.example.com`)", h.value),
            ));
        }
        if route.external_at.is_none() {
            diags.push(Diagnostic::new(h.pos.clone(), "`host` names the external route: it needs `external: true`"));
        }
    }
    if let Some(paths) = &i.paths {
        if paths.value.len() > 4 {
            diags.push(Diagnostic::new(
                paths.pos.clone(),
                format!("{} paths: a load balancer rule matches the host and at most 4 paths", paths.value.len()),
            ));
        }
        for p in &paths.value {
            let ok = p.value.starts_with('/')
                && p.value.len() <= 128
                && p.value.chars().all(|c| c.is_ascii_alphanumeric() || "_-.$/~\"'@:+&*?".contains(c));
            if ok {
                route.paths.push(p.value.clone());
            } else {
                diags.push(Diagnostic::new(
                    p.pos.clone(),
                    format!(
                        "invalid path pattern `{}`: starts with `/`, at most 128 characters, `*` and `?` as wildcards",
                        p.value
                    ),
                ));
            }
        }
    }
    route
}

/// A DNS name as ELB host conditions and Route53 take it: lower-case labels of letters,
/// digits and `-`, and a leading `*.` wildcard.
pub fn valid_host(host: &str) -> bool {
    let name = host.strip_prefix("*.").unwrap_or(host);
    name.len() <= 253
        && name.contains('.')
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        })
}
