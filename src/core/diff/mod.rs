//! Normalised, field-level comparison of desired and live state.
//!
//! Both sides are turned into a *view*: a JSON object in which everything AWS fills in,
//! reorders or spells differently has one canonical form (defaults made explicit, lists
//! that are sets sorted or keyed by name, units and ARNs canonical, read-only fields
//! gone). Two views are then compared field by field. Each rule has a test below (the
//! service's in `service.rs`); the list is in docs/diff.md.

mod service;

pub use service::{diff_service, needs_replacement, service_view};

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::desired::*;
use super::live::{LivePolicy, LiveScalableTarget, LiveTaskDefinition};

/// What normalisation needs to know about the account: an SSM parameter may be written
/// as a name or an ARN.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NormContext {
    pub partition: String,
    pub region: String,
    pub account_id: Option<String>,
}

/// One differing field. `live`/`desired` are `None` when the field is absent on that side.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Change {
    pub path: String,
    pub live: Option<Value>,
    pub desired: Option<Value>,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.live, &self.desired) {
            (Some(l), Some(d)) => write!(f, "~ {}: {} → {}", self.path, l, d),
            (None, Some(d)) => write!(f, "+ {}: {}", self.path, d),
            (Some(l), None) => write!(f, "- {}: {}", self.path, l),
            (None, None) => write!(f, "~ {}", self.path),
        }
    }
}

/// `"0.25 vCPU"` → `"256"`, `"1 GB"` → `"1024"`; plain numbers stay.
pub fn normalize_units(value: &str, unit_per_one: f64, suffixes: &[&str]) -> String {
    let v = value.trim();
    let lower = v.to_ascii_lowercase();
    for suffix in suffixes {
        if let Some(num) = lower.strip_suffix(suffix)
            && let Ok(n) = num.trim().parse::<f64>()
        {
            return ((n * unit_per_one).round() as i64).to_string();
        }
    }
    v.to_string()
}

fn cpu_units(v: &str) -> String {
    normalize_units(v, 1024.0, &["vcpu"])
}

fn memory_mib(v: &str) -> String {
    normalize_units(v, 1024.0, &["gb"])
}

/// SSM parameters may be named or ARN'd: both become the ARN when the account is known.
fn canonical_value_from(v: &str, ctx: &NormContext) -> String {
    if !v.starts_with("arn:") {
        return match &ctx.account_id {
            Some(account) => super::spec::reference::ssm_arn(&ctx.partition, &ctx.region, account, v),
            None => v.to_string(),
        };
    }
    v.to_string()
}

fn obj(pairs: impl IntoIterator<Item = (String, Value)>) -> Value {
    Value::Object(pairs.into_iter().collect::<Map<_, _>>())
}

fn container_view(c: &ContainerDefinition, ctx: &NormContext) -> Value {
    let ports = c.port_mappings.iter().map(|p| {
        let mut m = Map::new();
        if let Some(name) = &p.name {
            m.insert("name".into(), json!(name));
        }
        m.insert("protocol".into(), json!(p.protocol.clone().unwrap_or_else(|| "tcp".into()).to_lowercase()));
        // Under awsvpc the host port is the container port; AWS echoes it back.
        if let Some(h) = p.host_port.filter(|h| *h != p.container_port && *h != 0) {
            m.insert("hostPort".into(), json!(h));
        }
        (p.container_port.to_string(), Value::Object(m))
    });
    let env = c.environment.iter().map(|kv| (kv.name.clone(), json!(kv.value)));
    let secrets = c.secrets.iter().map(|s| (s.name.clone(), json!(canonical_value_from(&s.value_from, ctx))));
    let health = c.health_check.as_ref().map(|h| {
        json!({
            "command": h.command,
            "interval": h.interval.unwrap_or(30),
            "timeout": h.timeout.unwrap_or(5),
            "retries": h.retries.unwrap_or(3),
            "startPeriod": h.start_period.unwrap_or(0),
        })
    });
    let mut m = Map::new();
    m.insert("name".into(), json!(c.name));
    m.insert("image".into(), json!(c.image));
    m.insert("essential".into(), json!(c.essential.unwrap_or(true)));
    if let Some(cpu) = c.cpu.filter(|c| *c != 0) {
        m.insert("cpu".into(), json!(cpu));
    }
    m.insert("portMappings".into(), obj(ports));
    m.insert("environment".into(), obj(env));
    m.insert("secrets".into(), obj(secrets));
    m.insert("healthCheck".into(), health.unwrap_or(Value::Null));
    m.insert(
        "logConfiguration".into(),
        c.log_configuration.as_ref().map_or(Value::Null, |l| json!({"logDriver": l.log_driver, "options": l.options})),
    );
    m.insert("dockerLabels".into(), json!(c.docker_labels));
    Value::Object(m)
}

/// The comparable content of a task definition (tags and read-only fields left out).
pub fn task_definition_view(td: &TaskDefinition, extras: &[String], ctx: &NormContext) -> Value {
    let mut compat = td.requires_compatibilities.clone();
    compat.sort();
    compat.dedup();
    let mut m = Map::new();
    m.insert("family".into(), json!(td.family));
    m.insert("taskRoleArn".into(), json!(td.task_role_arn));
    m.insert("executionRoleArn".into(), json!(td.execution_role_arn));
    m.insert("networkMode".into(), json!(td.network_mode));
    m.insert("requiresCompatibilities".into(), json!(compat));
    m.insert("cpu".into(), json!(td.cpu.as_deref().map(cpu_units)));
    m.insert("memory".into(), json!(td.memory.as_deref().map(memory_mib)));
    let containers = td.container_definitions.iter().map(|c| (c.name.clone(), container_view(c, ctx)));
    m.insert("containers".into(), obj(containers));
    if !extras.is_empty() {
        let mut e = extras.to_vec();
        e.sort();
        m.insert("unmanagedFields".into(), json!(e));
    }
    Value::Object(m)
}

/// Whether `live` is the full ARN of the secret `desired` names by partial ARN: the same
/// but for the `-XXXXXX` (six random characters) AWS appends to the name.
fn same_secret(live: &str, desired: &str) -> bool {
    let (Some((lp, lr)), Some((dp, dr))) = (live.split_once(":secret:"), desired.split_once(":secret:")) else {
        return false;
    };
    let (ln, lt) = lr.split_once(':').unwrap_or((lr, ""));
    let (dn, dt) = dr.split_once(':').unwrap_or((dr, ""));
    lp == dp
        && lt == dt
        && ln
            .strip_prefix(dn)
            .and_then(|rest| rest.strip_prefix('-'))
            .is_some_and(|suffix| suffix.len() == 6 && suffix.chars().all(|c| c.is_ascii_alphanumeric()))
}

/// Differences between a live task definition and the desired one. Container paths are
/// written `container.<field>` (berth's task definitions hold one container).
pub fn diff_task_definition(live: &LiveTaskDefinition, desired: &TaskDefinition, ctx: &NormContext) -> Vec<Change> {
    let mut live_def = live.definition.clone();
    for c in &mut live_def.container_definitions {
        let Some(d) = desired.container_definitions.iter().find(|d| d.name == c.name) else { continue };
        for s in &mut c.secrets {
            if let Some(ds) = d.secrets.iter().find(|x| x.name == s.name)
                && same_secret(&s.value_from, &ds.value_from)
            {
                s.value_from = ds.value_from.clone();
            }
        }
    }
    let l = task_definition_view(&live_def, &live.extras, ctx);
    let d = task_definition_view(desired, &[], ctx);
    let mut out = Vec::new();
    diff_values("taskDefinition", &l, &d, &mut out);
    let single = desired.container_definitions.first().map(|c| c.name.clone()).unwrap_or_default();
    let prefix = format!("taskDefinition.containers.{single}.");
    for c in &mut out {
        if let Some(rest) = c.path.strip_prefix(&prefix) {
            c.path = format!("container.{rest}");
        }
    }
    out
}

/// Whether the live revision has the desired content.
pub fn task_definition_matches(live: &LiveTaskDefinition, desired: &TaskDefinition, ctx: &NormContext) -> bool {
    diff_task_definition(live, desired, ctx).is_empty()
}

pub fn scalable_target_view(t: &ScalableTarget) -> Value {
    json!({"MinCapacity": t.min_capacity, "MaxCapacity": t.max_capacity})
}

pub fn diff_scalable_target(live: Option<&LiveScalableTarget>, desired: &ScalableTarget) -> Vec<Change> {
    let mut out = Vec::new();
    match live {
        None => {
            out.push(Change { path: "scaling.target".into(), live: None, desired: Some(scalable_target_view(desired)) })
        }
        // RoleARN is never compared: AWS swaps in its service-linked role.
        Some(l) => {
            diff_values("scaling.target", &scalable_target_view(&l.target), &scalable_target_view(desired), &mut out)
        }
    }
    out
}

pub fn policy_view(p: &ScalingPolicy, reference: &ScalingPolicy) -> Value {
    let t = &p.target_tracking_scaling_policy_configuration;
    let r = &reference.target_tracking_scaling_policy_configuration;
    let mut m = Map::new();
    m.insert("PolicyType".into(), json!(p.policy_type));
    m.insert("TargetValue".into(), json!(t.target_value));
    m.insert("PredefinedMetricType".into(), json!(t.predefined_metric_specification.predefined_metric_type));
    // Cooldowns are compared only when git sets them; AWS applies its own defaults.
    if r.scale_in_cooldown.is_some() {
        m.insert("ScaleInCooldown".into(), json!(t.scale_in_cooldown));
    }
    if r.scale_out_cooldown.is_some() {
        m.insert("ScaleOutCooldown".into(), json!(t.scale_out_cooldown));
    }
    Value::Object(m)
}

pub fn diff_policy(live: Option<&LivePolicy>, desired: &ScalingPolicy) -> Vec<Change> {
    let path = format!("scaling.policy.{}", desired.policy_name);
    let mut out = Vec::new();
    match live {
        None => out.push(Change { path, live: None, desired: Some(policy_view(desired, desired)) }),
        Some(l) => diff_values(&path, &policy_view(&l.policy, desired), &policy_view(desired, desired), &mut out),
    }
    out
}

/// Field-level diff of two JSON values; objects recurse, anything else compares whole.
pub fn diff_values(path: &str, live: &Value, desired: &Value, out: &mut Vec<Change>) {
    // Most of a converged service is equal: one deep comparison, no paths built.
    if live == desired {
        return;
    }
    match (live, desired) {
        (Value::Object(l), Value::Object(d)) => {
            let keys: BTreeMap<&String, ()> = l.keys().chain(d.keys()).map(|k| (k, ())).collect();
            for key in keys.keys() {
                let sub = format!("{path}.{key}");
                match (l.get(*key), d.get(*key)) {
                    (Some(a), Some(b)) => diff_values(&sub, a, b, out),
                    (Some(a), None) if !a.is_null() => {
                        out.push(Change { path: sub, live: Some(a.clone()), desired: None })
                    }
                    (None, Some(b)) if !b.is_null() => {
                        out.push(Change { path: sub, live: None, desired: Some(b.clone()) })
                    }
                    _ => {}
                }
            }
        }
        (Value::Null, b) if !b.is_null() => {
            out.push(Change { path: path.to_string(), live: None, desired: Some(b.clone()) })
        }
        (a, Value::Null) if !a.is_null() => {
            out.push(Change { path: path.to_string(), live: Some(a.clone()), desired: None })
        }
        (a, b) if !numbers_equal(a, b) && a != b => {
            out.push(Change { path: path.to_string(), live: Some(a.clone()), desired: Some(b.clone()) })
        }
        _ => {}
    }
}

fn numbers_equal(a: &Value, b: &Value) -> bool {
    matches!((a.as_f64(), b.as_f64()), (Some(x), Some(y)) if (x - y).abs() < 1e-9)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::testing::{self, ctx};

    fn td() -> TaskDefinition {
        testing::task_definition()
    }

    fn live(def: TaskDefinition) -> LiveTaskDefinition {
        testing::live_task_definition(testing::revision_arn(1), def)
    }

    #[test]
    fn what_aws_returns_is_not_drift() {
        let desired = testing::desired().build().task_definition;
        let mut l = td(); // untagged: tags are not content
        l.cpu = Some("0.25 vCPU".into());
        l.memory = Some("0.5 GB".into());
        l.requires_compatibilities = vec!["FARGATE".into()];
        let c = &mut l.container_definitions[0];
        c.environment.reverse(); // order
        c.secrets.reverse();
        c.port_mappings.reverse();
        c.port_mappings[0].host_port = Some(9090); // awsvpc echo
        c.port_mappings[1].protocol = None; // default tcp
        c.essential = None; // default true
        c.cpu = Some(0); // 0 = unset
        let h = c.health_check.as_mut().unwrap();
        h.interval = None; // defaults 30/5/3
        h.timeout = None;
        h.retries = None;
        h.start_period = Some(0);
        // SSM by name vs ARN; Secrets Manager full ARN with suffix vs partial.
        c.secrets[1].value_from = "/pre/p".into();
        c.secrets[0].value_from = "arn:aws:secretsmanager:us-east-1:123456789012:secret:pre/s-AbC123:key::".into();
        assert_eq!(diff_task_definition(&live(l), &desired, &ctx()), vec![]);
    }

    #[test]
    fn a_secret_whose_name_ends_like_a_suffix_is_not_confused() {
        let arn = |n: &str| format!("arn:aws:secretsmanager:us-east-1:123456789012:secret:{n}:key::");
        assert!(same_secret(&arn("app-secret-AbC123"), &arn("app-secret")));
        assert!(!same_secret(&arn("app-secret-AbC123"), &arn("app")));
        let mut desired = td();
        desired.container_definitions[0].secrets[1].value_from = arn("app-secret");
        let mut l = td();
        l.container_definitions[0].secrets[1].value_from = arn("app-secret-AbC123");
        assert_eq!(diff_task_definition(&live(l), &desired, &ctx()), vec![]);
        let mut other = td();
        other.container_definitions[0].secrets[1].value_from = arn("app-secrez-AbC123");
        assert_eq!(diff_task_definition(&live(other), &desired, &ctx()).len(), 1);
    }

    #[test]
    fn real_changes_are_named() {
        let desired = td();
        let mut l = td();
        l.container_definitions[0].image = "r/web:old".into();
        l.container_definitions[0].environment[0].value = "0".into();
        l.cpu = Some("512".into());
        let changes = diff_task_definition(&live(l), &desired, &ctx());
        let text: Vec<String> = changes.iter().map(|c| c.to_string()).collect();
        assert_eq!(
            text,
            vec![
                "~ container.environment.A: \"0\" → \"1\"",
                "~ container.image: \"r/web:old\" → \"r/web:abc\"",
                "~ taskDefinition.cpu: \"512\" → \"256\"",
            ]
        );
    }

    #[test]
    fn unmanaged_live_fields_are_drift() {
        let l = LiveTaskDefinition { extras: vec!["volumes".into()], ..live(td()) };
        let changes = diff_task_definition(&l, &td(), &ctx());
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].path, "taskDefinition.unmanagedFields");
    }

    #[test]
    fn scaling_role_and_default_cooldowns_are_not_drift() {
        let t = testing::scalable_target();
        let live =
            LiveScalableTarget { target: t.clone(), role_arn: Some("arn:aws:iam::1:role/aws-service-role/x".into()) };
        assert!(diff_scalable_target(Some(&live), &t).is_empty());
        let p = testing::scaling_policy("cpu");
        let mut lp = p.clone();
        lp.target_tracking_scaling_policy_configuration.scale_in_cooldown = Some(300);
        let live = LivePolicy { arn: "a".into(), policy: lp };
        assert!(diff_policy(Some(&live), &p).is_empty());
    }
}
