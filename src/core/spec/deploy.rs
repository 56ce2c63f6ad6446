//! The checks of what a spec asks of the deploy around the service: its routing
//! (`ingress`), its rollout (`rollout`) and its tasks (`tasks.before_deploy`).

use super::model::{self, HookStage, Strategy};
use super::{HookSpec, RolloutSpec, RouteSpec};
use crate::core::at::At;
use crate::core::diag::Diagnostic;

/// `tasks.before_deploy`, checked: a command of non-empty words, a timeout of 1s to 24h.
pub(super) fn before_deploy(
    tasks: Option<&At<Box<model::Tasks>>>,
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

/// `rollout`, checked: the strategy and its settings (only the chosen strategy's), whole
/// minutes within ECS's ranges, the alarms and the hooks.
pub(super) fn rollout(rollout: Option<&At<Box<model::Rollout>>>, diags: &mut Vec<Diagnostic>) -> RolloutSpec {
    let mut spec = RolloutSpec { alarms: alarms(rollout, diags), ..RolloutSpec::default() };
    let Some(r) = rollout else { return spec };
    if let Some(s) = &r.strategy {
        spec.strategy = s.value;
        spec.strategy_at = Some(s.pos.clone());
    }
    let shifts = spec.strategy.shifts_traffic();
    let not_for = |what: &str, pos: &crate::core::diag::Pos, want: &str, diags: &mut Vec<Diagnostic>| {
        diags.push(Diagnostic::new(pos.clone(), format!("`{what}` is for `strategy: {want}`")));
    };
    if let Some(b) = &r.bake {
        if shifts {
            spec.bake_minutes = minutes(b, diags);
        } else {
            not_for("bake", &b.pos, "blue-green`, `canary` or `linear", diags);
        }
    }
    // (percent, minutes) of a canary's first step or of each linear step.
    let step = |block: Option<StepBlock<'_>>,
                of: Strategy,
                (min_percent, default_minutes): (f64, i32),
                diags: &mut Vec<Diagnostic>| match block {
        Some((pos, _, _)) if spec.strategy != of => {
            not_for(of.name(), pos, of.name(), diags);
            None
        }
        Some((_, p, m)) => {
            let percent = percent(p, 10.0, min_percent, diags);
            percent.zip(m.map_or(Some(default_minutes), |m| minutes(m, diags)))
        }
        None => (spec.strategy == of).then_some((10.0, default_minutes)),
    };
    let canary = r.canary.as_ref().map(|c| (&c.pos, c.percent.as_ref(), c.wait.as_ref()));
    spec.canary = step(canary, Strategy::Canary, (0.1, 10), diags);
    let linear = r.linear.as_ref().map(|l| (&l.pos, l.percent.as_ref(), l.interval.as_ref()));
    spec.linear = step(linear, Strategy::Linear, (3.0, 6), diags);
    for h in r.hooks.iter().flat_map(|h| h.value.iter()) {
        if !shifts {
            not_for("hooks", &h.pos, "blue-green`, `canary` or `linear", diags);
            break;
        }
        let lambda = h.lambda.as_ref().filter(|l| valid_lambda_arn(&l.value));
        if lambda.is_none() {
            let pos = h.lambda.as_ref().map_or(&h.pos, |l| &l.pos);
            diags.push(Diagnostic::new(
                pos.clone(),
                "a hook needs `lambda`: a Lambda function ARN (`arn:aws:lambda:REGION:ACCOUNT:function:NAME`)",
            ));
        }
        let role = h.role.as_ref().filter(|r| r.starts_with("arn:") && r.contains(":role/"));
        if role.is_none() {
            let pos = h.role.as_ref().map_or(&h.pos, |r| &r.pos);
            diags.push(Diagnostic::new(
                pos.clone(),
                "a hook needs `role`: the ARN of the IAM role ECS invokes the function with",
            ));
        }
        let mut stages: Vec<HookStage> = h.stages.iter().flat_map(|s| s.value.iter().map(|s| s.value)).collect();
        stages.sort();
        stages.dedup();
        if stages.is_empty() {
            let pos = h.stages.as_ref().map_or(&h.pos, |s| &s.pos);
            diags.push(Diagnostic::new(pos.clone(), "a hook needs `stages`: the lifecycle stages ECS calls it at"));
        }
        if let (Some(l), Some(r), false) = (lambda, role, stages.is_empty()) {
            spec.hooks.push(HookSpec { lambda: l.value.clone(), role: r.value.clone(), stages });
        }
    }
    spec
}

/// A `canary:` or `linear:` block: where it is written, its percentage and its minutes.
type StepBlock<'a> = (&'a crate::core::diag::Pos, Option<&'a At<f64>>, Option<&'a At<String>>);

/// A duration in whole minutes from 0 to 24h (ECS's bake and step times).
fn minutes(d: &At<String>, diags: &mut Vec<Diagnostic>) -> Option<i32> {
    match humantime::parse_duration(&d.value) {
        Ok(t) if t.as_secs() % 60 == 0 && t.as_secs() <= 86_400 => Some((t.as_secs() / 60) as i32),
        _ => {
            diags.push(Diagnostic::new(
                d.pos.clone(),
                format!("invalid duration `{}`: whole minutes from 0m to 24h (`5m`)", d.value),
            ));
            None
        }
    }
}

fn percent(p: Option<&At<f64>>, default: f64, min: f64, diags: &mut Vec<Diagnostic>) -> Option<f64> {
    let Some(p) = p else { return Some(default) };
    if (min..=100.0).contains(&p.value) {
        Some(p.value)
    } else {
        diags.push(Diagnostic::new(p.pos.clone(), format!("percent {} is out of range ({min} to 100)", p.value)));
        None
    }
}

fn valid_lambda_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.split(':').collect();
    parts.len() >= 7
        && parts.len() <= 8
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "lambda"
        && !parts[3].is_empty()
        && parts[4].len() == 12
        && parts[4].chars().all(|c| c.is_ascii_digit())
        && parts[5] == "function"
        && !parts[6].is_empty()
        && parts[6..].iter().all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || "_-$".contains(c)))
}

/// `rollout.alarms`, checked: at most 10 names of 1 to 255 characters, duplicates dropped.
fn alarms(rollout: Option<&At<Box<model::Rollout>>>, diags: &mut Vec<Diagnostic>) -> Vec<String> {
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
pub(super) fn route_spec(ingress: Option<&At<Box<model::Ingress>>>, diags: &mut Vec<Diagnostic>) -> RouteSpec {
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
