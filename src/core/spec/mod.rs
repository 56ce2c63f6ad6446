//! The service spec: the files users write (`model`), how a repository of them is loaded
//! (`load`), and how one (service, environment) pair is checked into a [`ServiceSpec`].

mod deploy;
pub mod fargate;
pub mod load;
pub mod model;
pub mod reference;
pub mod template;

pub use deploy::valid_host;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::core::at::At;
use crate::core::diag::{Diagnostic, Pos};
pub use load::{Repo, RepoFiles, ServiceDef};
pub use model::ScaleResource;
use model::{EnvFile, KeyValue, Spec};
use reference::Reference;
use template::Template;

/// One service in one environment, checked and ready to render.
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceSpec {
    pub name: String,
    pub env: String,
    /// The folder that holds the service's `deploy/` ("" for the repository root).
    pub dir: String,
    pub image: String,
    pub cpu: u32,
    pub memory: u32,
    pub count: u32,
    pub autoscaling: Option<ScalingSpec>,
    pub port: u16,
    pub health: String,
    pub metrics_port: u16,
    pub external: bool,
    /// What `spec.ingress` asks of the environment's routing (used when it has `ingress:`).
    pub route: RouteSpec,
    /// ECS Exec on the service.
    pub exec: bool,
    /// How ECS rolls out a new revision.
    pub rollout: RolloutSpec,
    /// A task run before a deploy: its command and how long it may run.
    pub before_deploy: Option<crate::core::desired::BeforeDeploy>,
    pub depends_on: Vec<String>,
    pub data: Vec<String>,
    /// Where each entry of `depends_on` and `data` is written.
    pub dependency_at: Vec<(String, Pos)>,
    /// Container environment, sorted by key.
    pub environment: Vec<EnvVar>,
    pub variables: BTreeMap<String, Variable>,
    pub adopt: bool,
}

/// `spec.rollout`, checked: the strategy with its settings (minutes, percentages), the
/// alarms and the hooks.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RolloutSpec {
    pub strategy: model::Strategy,
    /// Where `strategy` is written (an error about the route it needs points there).
    pub strategy_at: Option<Pos>,
    pub bake_minutes: Option<i32>,
    /// `canary`: the percentage and minutes of the first step.
    pub canary: Option<(f64, i32)>,
    /// `linear`: the percentage of each step and the minutes between steps.
    pub linear: Option<(f64, i32)>,
    /// CloudWatch alarms that roll a deployment back.
    pub alarms: Vec<String>,
    pub hooks: Vec<HookSpec>,
}

/// A lifecycle hook, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct HookSpec {
    pub lambda: String,
    pub role: String,
    /// Sorted, without duplicates.
    pub stages: Vec<model::HookStage>,
}

/// `spec.ingress`, checked. With the environment's `ingress:` set, a service is routed
/// internally unless `internal: false`, and externally when `external: true`.
#[derive(Clone, Debug, PartialEq)]
pub struct RouteSpec {
    pub internal: bool,
    /// Where `external: true` is written (errors about the external route point there).
    pub external_at: Option<Pos>,
    /// The external host name, instead of the environment's pattern.
    pub host: Option<String>,
    pub paths: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ScalingSpec {
    pub resource: ScaleResource,
    pub target: f64,
    pub min: u32,
    pub max: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub struct EnvVar {
    pub key: String,
    pub value: EnvValue,
    /// Where the value is written.
    pub pos: Pos,
}

#[derive(Clone, Debug, PartialEq)]
pub enum EnvValue {
    /// A plain value, possibly templated.
    Template(Template),
    /// The whole value is a secret: the container gets `secrets[].valueFrom`, never a value.
    Secret(Reference),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Variable {
    Literal(String),
    /// `ssm:/name`: read from Parameter Store when rendering.
    Ssm {
        name: String,
        pos: Pos,
    },
}

impl ServiceSpec {
    /// The secrets the container uses, by reference.
    pub fn secret_references(&self) -> impl Iterator<Item = &Reference> {
        self.environment.iter().filter_map(|e| match &e.value {
            EnvValue::Secret(r) => Some(r),
            EnvValue::Template(_) => None,
        })
    }

    /// The SSM parameters whose values the templates use, with where each is declared.
    pub fn ssm_variables(&self) -> Vec<(&str, &Pos)> {
        let used: BTreeSet<&str> = self
            .environment
            .iter()
            .filter_map(|e| match &e.value {
                EnvValue::Template(t) => Some(t.variables().map(|(n, _)| n)),
                EnvValue::Secret(_) => None,
            })
            .flatten()
            .collect();
        self.variables
            .iter()
            .filter(|(k, _)| used.contains(k.as_str()))
            .filter_map(|(_, v)| match v {
                Variable::Ssm { name, pos } => Some((name.as_str(), pos)),
                Variable::Literal(_) => None,
            })
            .collect()
    }
}

pub const NAME_RULE: &str = "[a-z0-9-]{1,48}";

pub fn valid_service_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 48
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

pub fn valid_env_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn valid_env_key(key: &str) -> bool {
    let mut chars = key.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && key.len() <= 255
}

fn valid_variable_key(key: &str) -> bool {
    !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
}

/// Health paths end up inside the container's `CMD-SHELL` health check, so only URL-path
/// characters that mean nothing to a shell are allowed.
fn valid_health_path(path: &str) -> bool {
    path.starts_with('/')
        && path.len() <= 200
        && path.chars().all(|c| c.is_ascii_alphanumeric() || "/-._~%=+,".contains(c))
}

/// When a merged value comes from another file than the one a problem is reported in, where
/// it is set (an override in `config.yaml` against a base in `service.yaml`, or back).
fn set_elsewhere(reported: &Pos, other: &Pos, name: &str) -> String {
    if reported.file == other.file { String::new() } else { format!(" ({name} is set at {other})") }
}

/// The checked variables and secrets of one env config.
pub(crate) struct EnvValues {
    pub variables: BTreeMap<String, Variable>,
    pub secrets: BTreeMap<String, Reference>,
    /// Keys that are declared but whose value is invalid (already reported): templates that
    /// use them are not reported again as unknown.
    pub invalid: BTreeSet<String>,
    pub adopt: bool,
}

/// Checks an env config's own content (keys, references) without the spec.
pub(crate) fn check_env_file(file: &EnvFile, diags: &mut Vec<Diagnostic>) -> EnvValues {
    let mut variables = BTreeMap::new();
    let mut secrets = BTreeMap::new();
    let mut invalid = BTreeSet::new();
    let mut seen: BTreeMap<String, Pos> = BTreeMap::new();
    let mut check_key = |kv: &KeyValue, diags: &mut Vec<Diagnostic>| -> bool {
        if !valid_variable_key(&kv.key) {
            diags.push(Diagnostic::new(
                kv.key.pos.clone(),
                format!("invalid key `{}`: use letters, digits, `_`, `-` and `.`", kv.key.value),
            ));
            return false;
        }
        if let Some(first) = seen.get(&kv.key.value) {
            diags.push(Diagnostic::new(
                kv.key.pos.clone(),
                format!("duplicate key `{}` (first defined at {first})", kv.key.value),
            ));
            return false;
        }
        seen.insert(kv.key.value.clone(), kv.key.pos.clone());
        true
    };
    for kv in file.variables.iter().flat_map(|v| v.value.iter()) {
        if !check_key(kv, diags) {
            continue;
        }
        let text = &kv.value.value.0;
        let value = if let Some(rest) = text.strip_prefix("ssm:") {
            match reference::parse_ssm(rest) {
                Ok(Reference::Ssm(r)) => Variable::Ssm { name: r.arn.unwrap_or(r.name), pos: kv.value.pos.clone() },
                Ok(_) => unreachable!("parse_ssm returns SSM references"),
                Err(msg) => {
                    diags.push(Diagnostic::new(kv.value.pos.clone(), msg));
                    invalid.insert(kv.key.value.clone());
                    continue;
                }
            }
        } else {
            Variable::Literal(text.clone())
        };
        variables.insert(kv.key.value.clone(), value);
    }
    for kv in file.secrets.iter().flat_map(|v| v.value.iter()) {
        if !check_key(kv, diags) {
            continue;
        }
        match reference::parse_secret(&kv.value.value.0) {
            Ok(r) => {
                secrets.insert(kv.key.value.clone(), r);
            }
            Err(msg) => {
                diags.push(Diagnostic::new(kv.value.pos.clone(), msg));
                invalid.insert(kv.key.value.clone());
            }
        }
    }
    EnvValues { variables, secrets, invalid, adopt: file.adopt.as_ref().is_some_and(|a| a.value) }
}

/// `path` names the field as `parent.field`; the problem is reported where the parent starts.
fn required<'a, T>(
    field: &'a Option<At<T>>,
    path: &str,
    parent: &Pos,
    diags: &mut Vec<Diagnostic>,
) -> Option<&'a At<T>> {
    if field.is_none() {
        let (parent_name, name) = path.rsplit_once('.').unwrap_or(("", path));
        diags.push(Diagnostic::new(parent.clone(), format!("missing required field `{name}` in `{parent_name}`")));
    }
    field.as_ref()
}

/// Checks a (merged) spec for one environment. `values` is `None` for a service with no
/// environment folder, where templates are checked for syntax only.
#[allow(clippy::too_many_arguments)] // one (service, env) pair and where it came from
pub(crate) fn check_spec(
    name: &str,
    env: &str,
    dir: &str,
    spec_pos: &Pos,
    spec: &Spec,
    values: Option<&EnvValues>,
    env_file: Option<&Arc<str>>,
    diags: &mut Vec<Diagnostic>,
) -> Option<ServiceSpec> {
    let start = diags.len();
    let image = required(&spec.image, "spec.image", spec_pos, diags).and_then(|image| {
        let ok = !image.trim().is_empty() && !image.chars().any(char::is_whitespace);
        if !ok {
            diags.push(Diagnostic::new(
                image.pos.clone(),
                "`image` must be a repository name or image reference without spaces",
            ));
        }
        ok.then(|| image.value.clone())
    });
    let mut cpu_mem = None;
    if let Some(res) = required(&spec.resources, "spec.resources", spec_pos, diags) {
        let cpu = required(&res.cpu, "resources.cpu", &res.pos, diags);
        let mem = required(&res.memory, "resources.memory", &res.pos, diags);
        if let (Some(cpu), Some(mem)) = (cpu, mem) {
            match fargate::check(cpu.value, mem.value) {
                Ok(()) => cpu_mem = Some((cpu.value, mem.value)),
                Err(msg) => {
                    let (pos, other, other_name) = if fargate::memory_options(cpu.value).is_none() {
                        (&cpu.pos, &mem.pos, "memory")
                    } else {
                        (&mem.pos, &cpu.pos, "cpu")
                    };
                    diags.push(Diagnostic::new(pos.clone(), format!("{msg}{}", set_elsewhere(pos, other, other_name))));
                }
            }
        }
    }
    let count = spec.count.as_ref().map_or(1, |c| c.value);
    if let Some(c) = &spec.count
        && c.value > 5000
    {
        diags.push(Diagnostic::new(c.pos.clone(), format!("count {} is out of range (0 to 5000)", c.value)));
    }
    let mut autoscaling = None;
    if let Some(a) = &spec.autoscaling {
        let resource = required(&a.resource, "autoscaling.resource", &a.pos, diags);
        let min = required(&a.min, "autoscaling.min", &a.pos, diags);
        let max = required(&a.max, "autoscaling.max", &a.pos, diags);
        let target = a.target.as_ref().map_or(70.0, |t| t.value);
        let mut ok = true;
        if let Some(t) = &a.target
            && !(t.value > 0.0 && t.value <= 100.0)
        {
            diags.push(Diagnostic::new(
                t.pos.clone(),
                format!("target {} is out of range: a percentage above 0, at most 100", t.value),
            ));
            ok = false;
        }
        if let Some(max) = max
            && !(1..=5000).contains(&max.value)
        {
            diags.push(Diagnostic::new(max.pos.clone(), format!("max {} is out of range (1 to 5000)", max.value)));
            ok = false;
        }
        if let (Some(min), Some(max)) = (min, max)
            && min.value > max.value
        {
            let hint = set_elsewhere(&min.pos, &max.pos, "max");
            diags.push(Diagnostic::new(
                min.pos.clone(),
                format!("min {} is greater than max {}{hint}", min.value, max.value),
            ));
            ok = false;
        }
        if let (Some(resource), Some(min), Some(max), true) = (resource, min, max, ok) {
            autoscaling = Some(ScalingSpec { resource: resource.value, target, min: min.value, max: max.value });
        }
    }
    let port = spec.port.as_ref().map_or(8080, |p| p.value);
    let metrics_port = spec.metrics_port.as_ref().map_or(9090, |p| p.value);
    for p in [&spec.port, &spec.metrics_port].into_iter().flatten() {
        if p.value == 0 {
            diags.push(Diagnostic::new(p.pos.clone(), "port 0 is out of range (1 to 65535)"));
        }
    }
    if port == metrics_port {
        let pos = spec.metrics_port.as_ref().or(spec.port.as_ref()).map_or(spec_pos, |p| &p.pos);
        diags.push(Diagnostic::new(pos.clone(), format!("`port` and `metrics_port` are both {port}")));
    }
    let health = spec.health.as_ref().map_or("/health".to_string(), |h| h.value.clone());
    if let Some(h) = &spec.health
        && !valid_health_path(&h.value)
    {
        diags.push(Diagnostic::new(
            h.pos.clone(),
            format!("invalid health path `{}`: a URL path starting with `/` (letters, digits, `/-._~%=+,`)", h.value),
        ));
    }
    let route = deploy::route_spec(spec.ingress.as_ref(), diags);
    let before_deploy = deploy::before_deploy(spec.tasks.as_ref(), diags);
    let rollout = deploy::rollout(spec.rollout.as_ref(), diags);
    let mut depends_on = Vec::new();
    let mut data = Vec::new();
    let mut dependency_at = Vec::new();
    if let Some(deps) = &spec.dependencies {
        for s in deps.services.iter().flat_map(|s| s.value.iter()) {
            if !valid_service_name(s) {
                diags.push(Diagnostic::new(
                    s.pos.clone(),
                    format!("invalid service name `{}` in dependencies: names are {NAME_RULE}", s.value),
                ));
            } else if s.value == name {
                diags.push(Diagnostic::new(s.pos.clone(), format!("service `{name}` depends on itself")));
            } else {
                depends_on.push(s.value.clone());
                dependency_at.push((s.value.clone(), s.pos.clone()));
            }
        }
        for d in deps.data.iter().flat_map(|s| s.value.iter()) {
            if d.is_empty() || !d.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
                diags.push(Diagnostic::new(
                    d.pos.clone(),
                    format!("invalid data dependency `{}`: use letters, digits, `-`, `_` and `.`", d.value),
                ));
            } else {
                data.push(d.value.clone());
                dependency_at.push((d.value.clone(), d.pos.clone()));
            }
        }
    }
    let mut environment = Vec::new();
    let mut keys: BTreeMap<&str, &Pos> = BTreeMap::new();
    for entry in spec.environment.iter().flat_map(|e| e.value.iter()) {
        if entry.key.is_empty() {
            diags.push(Diagnostic::new(entry.key.pos.clone(), "empty environment variable name"));
            continue;
        }
        if !valid_env_key(&entry.key) {
            diags.push(Diagnostic::new(
                entry.key.pos.clone(),
                format!(
                    "invalid environment variable name `{}`: use letters, digits and `_`, not starting with a digit",
                    entry.key.value
                ),
            ));
            continue;
        }
        if let Some(first) = keys.insert(&entry.key.value, &entry.key.pos) {
            diags.push(Diagnostic::new(
                entry.key.pos.clone(),
                format!("duplicate environment variable `{}` (first defined at {first})", entry.key.value),
            ));
            continue;
        }
        let text = &entry.value.value.0;
        let template = match Template::parse(text, &entry.value.pos) {
            Ok(t) => t,
            Err(errs) => {
                diags.extend(errs);
                continue;
            }
        };
        let Some(values) = values else {
            environment.push(EnvVar {
                key: entry.key.value.clone(),
                value: EnvValue::Template(template),
                pos: entry.value.pos.clone(),
            });
            continue;
        };
        let mut secret = None;
        let mut ok = true;
        for (var, pos) in template.variables() {
            if let Some(r) = values.secrets.get(var) {
                if template.sole_variable() == Some(var) {
                    secret = Some(r.clone());
                } else {
                    diags.push(Diagnostic::new(pos.clone(), format!("secret `{var}` is used inside a larger string: a secret must be the whole value of an environment variable")));
                    ok = false;
                }
            } else if values.invalid.contains(var) {
                ok = false;
            } else if !values.variables.contains_key(var) {
                let file = env_file.map_or(String::new(), |f| format!(" (not in {f})"));
                let known = values.variables.keys().chain(values.secrets.keys());
                let hint = suggest(var, known).map_or(String::new(), |s| format!("; did you mean `{s}`?"));
                diags.push(Diagnostic::new(
                    pos.clone(),
                    format!("unknown variable `{var}` in environment `{env}`{file}{hint}"),
                ));
                ok = false;
            }
        }
        if ok {
            let value = match secret {
                Some(r) => EnvValue::Secret(r),
                None => EnvValue::Template(template),
            };
            environment.push(EnvVar { key: entry.key.value.clone(), value, pos: entry.value.pos.clone() });
        }
    }
    environment.sort_by(|a, b| a.key.cmp(&b.key));
    if diags.len() > start {
        return None;
    }
    let (cpu, memory) = cpu_mem?;
    Some(ServiceSpec {
        name: name.to_string(),
        env: env.to_string(),
        dir: dir.to_string(),
        image: image?,
        cpu,
        memory,
        count,
        autoscaling,
        port,
        health,
        metrics_port,
        external: route.external_at.is_some(),
        route,
        exec: spec.exec.as_ref().is_some_and(|e| e.value),
        rollout,
        before_deploy,
        depends_on,
        data,
        dependency_at,
        environment,
        variables: values.map(|v| v.variables.clone()).unwrap_or_default(),
        adopt: values.is_some_and(|v| v.adopt),
    })
}

/// The declared name closest to an unknown one (same letters in another case, or at most two
/// edits away), for a "did you mean" hint.
fn suggest<'a>(unknown: &str, known: impl Iterator<Item = &'a String>) -> Option<&'a str> {
    let limit = if unknown.chars().count() > 4 { 2 } else { 1 };
    known
        .map(|k| (edit_distance(&unknown.to_lowercase(), &k.to_lowercase()), k))
        .filter(|(d, _)| *d <= limit)
        .min()
        .map(|(_, k)| k.as_str())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names() {
        let known = ["dbHost".to_string(), "apiKey".to_string()];
        assert_eq!(suggest("dbhost", known.iter()), Some("dbHost"));
        assert_eq!(suggest("dbHots", known.iter()), Some("dbHost"));
        assert_eq!(suggest("token", known.iter()), None);
    }
}
