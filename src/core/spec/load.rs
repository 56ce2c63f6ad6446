//! A repository of services: discovery results in, parsed and cross-checked services out.
//!
//! Pure: the shell (`source`) reads the files, from a directory or a git tree, into a
//! [`RepoFiles`]; everything here works on those strings.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::model::{EnvFile, ServiceFile, Spec};
use super::{NAME_RULE, ServiceSpec, check_env_file, check_spec, valid_env_name, valid_service_name};
use crate::core::diag::{self, Diagnostic, Pos};
use crate::core::yaml;

/// The files berth reads from a repository: each discovered `service.yaml` and every
/// `deploy/<env>/config.yaml` beside it, by `/`-separated path relative to the root.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RepoFiles {
    pub files: BTreeMap<String, String>,
    /// The paths of `files` that matched the discovery glob.
    pub service_files: Vec<String>,
}

impl RepoFiles {
    /// Where the environment configs of the service whose spec is `service_file` live.
    pub fn deploy_dir(service_file: &str) -> &str {
        service_file.rsplit_once('/').map_or("", |(dir, _)| dir)
    }

    /// The service's folder: the one that holds its `deploy/`.
    pub fn service_dir(service_file: &str) -> &str {
        let deploy = Self::deploy_dir(service_file);
        deploy.rsplit_once('/').map_or("", |(dir, _)| dir)
    }

    /// The environment a path names, when it is `<deploy>/<env>/config.yaml`.
    pub fn env_of<'a>(deploy_dir: &str, path: &'a str) -> Option<&'a str> {
        let rest = if deploy_dir.is_empty() { path } else { path.strip_prefix(deploy_dir)?.strip_prefix('/')? };
        let (env, file) = rest.split_once('/')?;
        (file == "config.yaml").then_some(env)
    }
}

#[derive(Clone, Debug)]
pub struct EnvDef {
    pub file: Arc<str>,
    pub parsed: Result<EnvFile, Diagnostic>,
}

/// A service whose `service.yaml` parsed and whose name is usable.
#[derive(Clone, Debug)]
pub struct ServiceDef {
    pub name: String,
    pub dir: String,
    pub file: Arc<str>,
    pub name_pos: Pos,
    pub spec_pos: Pos,
    pub spec: Spec,
    /// Problems that affect every environment (type, duplicates, dependencies).
    pub errors: Vec<Diagnostic>,
    /// Boxed: a parsed env config is large, and a B-tree node has room for 11 entries.
    pub envs: BTreeMap<String, Box<EnvDef>>,
}

/// A service that cannot be deployed anywhere: its `service.yaml` does not parse or its
/// name is unusable. `key` is its name when known, else its folder.
#[derive(Clone, Debug)]
pub struct BrokenService {
    pub key: String,
    pub dir: String,
    pub envs: Vec<String>,
    pub errors: Vec<Diagnostic>,
}

#[derive(Clone, Debug, Default)]
pub struct Repo {
    /// Sorted by name.
    pub services: Vec<Arc<ServiceDef>>,
    pub broken: Vec<BrokenService>,
    /// What each `service.yaml` and its env configs parsed to, before the checks across
    /// services, by the SHA-256 of those files: [`Repo::load_reusing`] takes these over
    /// for folders whose files did not change instead of parsing them again.
    parsed: BTreeMap<String, ([u8; 32], Loaded)>,
}

/// One service folder, parsed on its own.
#[derive(Clone, Debug)]
enum Loaded {
    Service(Arc<ServiceDef>),
    Broken(BrokenService),
}

impl Repo {
    pub fn load(files: &RepoFiles) -> Repo {
        Repo::load_reusing(files, None)
    }

    /// Like [`Repo::load`], but a service folder whose files are byte for byte those
    /// `previous` parsed is not parsed again (a new commit usually changes a few folders of
    /// many; parsing is most of the cost of a load).
    pub fn load_reusing(files: &RepoFiles, previous: Option<&Repo>) -> Repo {
        let mut repo = Repo::default();
        for path in &files.service_files {
            let Some(text) = files.files.get(path) else {
                continue;
            };
            let deploy = RepoFiles::deploy_dir(path);
            let prefix = format!("{deploy}/");
            let env_files: Vec<(&String, &String)> = files
                .files
                .range(prefix.clone()..)
                .take_while(|(p, _)| deploy.is_empty() || p.starts_with(&prefix))
                .filter(|(p, _)| RepoFiles::env_of(deploy, p).is_some())
                .collect();
            let digest = digest(path, text, &env_files);
            let loaded = match previous.and_then(|p| p.parsed.get(path)) {
                Some((d, loaded)) if *d == digest => loaded.clone(),
                _ => load_service(path, text, &env_files),
            };
            match &loaded {
                Loaded::Service(s) => repo.services.push(s.clone()),
                Loaded::Broken(b) => repo.broken.push(b.clone()),
            }
            repo.parsed.insert(path.clone(), (digest, loaded));
        }
        repo.services.sort_by(|a, b| a.name.cmp(&b.name).then(a.file.cmp(&b.file)));
        repo.check_duplicates();
        repo.check_dependencies();
        repo
    }

    fn check_duplicates(&mut self) {
        let mut first: BTreeMap<String, (Arc<str>, Pos)> = BTreeMap::new();
        let mut dups: Vec<(usize, String)> = Vec::new();
        for (i, s) in self.services.iter().enumerate() {
            let pos = name_pos(s);
            if let Some((_, other)) = first.get(&s.name) {
                dups.push((i, format!("duplicate service name `{}`: also defined at {other}", s.name)));
                let j = self.services.iter().position(|x| x.name == s.name).unwrap_or(i);
                dups.push((j, format!("duplicate service name `{}`: also defined at {pos}", s.name)));
            } else {
                first.insert(s.name.clone(), (s.file.clone(), pos));
            }
        }
        for (i, msg) in dups {
            let pos = name_pos(&self.services[i]);
            Arc::make_mut(&mut self.services[i]).errors.push(Diagnostic::new(pos, msg));
        }
    }

    fn check_dependencies(&mut self) {
        // A service whose own files are broken is still known: its dependents are not at
        // fault (the reconcile skips them, naming the broken dependency).
        let known: BTreeSet<String> =
            self.services.iter().map(|s| s.name.clone()).chain(self.broken.iter().map(|b| b.key.clone())).collect();
        let graph: BTreeMap<String, Vec<String>> =
            self.services.iter().map(|s| (s.name.clone(), base_deps(&s.spec, &s.name))).collect();
        let mut new_errors: Vec<(usize, Diagnostic)> = Vec::new();
        for (i, s) in self.services.iter().enumerate() {
            for dep in s.spec.dependencies.iter().flat_map(|d| d.services.iter()).flat_map(|v| v.value.iter()) {
                if !known.contains(&dep.value) && valid_service_name(&dep.value) {
                    new_errors.push((
                        i,
                        Diagnostic::new(dep.pos.clone(), format!("depends on unknown service `{}`", dep.value)),
                    ));
                }
            }
            if let Some(cycle) = find_cycle(&s.name, &graph) {
                // At the entry that leads into the cycle.
                let pos = s
                    .spec
                    .dependencies
                    .iter()
                    .flat_map(|d| d.services.iter())
                    .flat_map(|v| v.value.iter())
                    .find(|d| d.value == cycle[1])
                    .map_or_else(|| name_pos(s), |d| d.pos.clone());
                new_errors.push((i, Diagnostic::new(pos, format!("dependency cycle: {}", cycle.join(" -> ")))));
            }
        }
        for (i, d) in new_errors {
            Arc::make_mut(&mut self.services[i]).errors.push(d);
        }
    }

    pub fn service(&self, name: &str) -> Option<&ServiceDef> {
        self.services.iter().find(|s| s.name == name).map(|s| &**s)
    }

    /// Every problem in the repository, sorted, each once.
    pub fn diagnostics(&self) -> Vec<Diagnostic> {
        let mut out: Vec<Diagnostic> = self.broken.iter().flat_map(|b| b.errors.iter().cloned()).collect();
        for s in &self.services {
            if s.envs.is_empty() {
                out.extend(s.errors.iter().cloned());
                check_spec(&s.name, "", &s.dir, &s.spec_pos, &s.spec, None, None, &mut out);
            }
            for env in s.envs.keys() {
                if let Err(errs) = s.resolve(env) {
                    out.extend(errs);
                }
            }
        }
        diag::normalize(&mut out);
        out
    }
}

impl ServiceDef {
    /// The service as it deploys to `env`: its env config's overrides merged in, and every
    /// field, template and reference checked.
    pub fn resolve(&self, env: &str) -> Result<ServiceSpec, Vec<Diagnostic>> {
        let mut diags = self.errors.clone();
        let Some(def) = self.envs.get(env) else {
            diags.push(Diagnostic::new(
                Pos::file_start(self.file.clone()),
                format!("service `{}` does not deploy to `{env}` (no deploy/{env}/config.yaml)", self.name),
            ));
            return Err(diags);
        };
        let file = match &def.parsed {
            Ok(f) => f,
            Err(d) => {
                diags.push(d.clone());
                return Err(diags);
            }
        };
        let values = check_env_file(file, &mut diags);
        let merged = match &file.overrides {
            Some(o) => self.spec.merged(&o.value),
            None => self.spec.clone(),
        };
        let spec =
            check_spec(&self.name, env, &self.dir, &self.spec_pos, &merged, Some(&values), Some(&def.file), &mut diags);
        match spec {
            Some(spec) if diags.is_empty() => Ok(spec),
            _ => {
                diag::normalize(&mut diags);
                Err(diags)
            }
        }
    }
}

/// The SHA-256 of a service folder's files (paths and contents).
fn digest(path: &str, text: &str, env_files: &[(&String, &String)]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for (p, c) in std::iter::once((path, text)).chain(env_files.iter().map(|(p, c)| (p.as_str(), c.as_str()))) {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
        h.update((c.len() as u64).to_le_bytes());
        h.update(c);
    }
    h.finalize().into()
}

/// Parses one `service.yaml` (at `path`) and its env configs.
fn load_service(path: &str, text: &str, env_files: &[(&String, &String)]) -> Loaded {
    let file: Arc<str> = Arc::from(path);
    let dir = RepoFiles::service_dir(path).to_string();
    let deploy = RepoFiles::deploy_dir(path);
    let mut envs = BTreeMap::new();
    let mut errors = Vec::new();
    for (p, content) in env_files {
        let Some(env) = RepoFiles::env_of(deploy, p) else {
            continue;
        };
        let env_file: Arc<str> = Arc::from(p.as_str());
        if !valid_env_name(env) {
            errors.push(Diagnostic::new(
                Pos::file_start(env_file),
                format!("invalid environment folder `{env}`: names are [a-z0-9-]{{1,32}}"),
            ));
            continue;
        }
        let parsed = yaml::parse::<EnvFile>(&env_file, content).map(|mut f| {
            if let Some(o) = &mut f.overrides {
                point_inside_quotes(&mut o.value, content);
            }
            f
        });
        envs.insert(env.to_string(), Box::new(EnvDef { file: env_file, parsed }));
    }
    let parsed = match yaml::parse::<ServiceFile>(&file, text) {
        Ok(mut p) => {
            if let Some(spec) = &mut p.spec {
                point_inside_quotes(&mut spec.value, text);
            }
            p
        }
        Err(d) => {
            errors.push(d);
            errors.extend(env_errors(&envs));
            return Loaded::Broken(BrokenService {
                key: guess_name(text).unwrap_or_else(|| folder_key(&dir)),
                dir,
                envs: envs.keys().cloned().collect(),
                errors,
            });
        }
    };
    let start = Pos::file_start(file.clone());
    match &parsed.kind {
        None => errors.push(Diagnostic::new(start.clone(), "missing required field `type`")),
        Some(k) if k.value != "service" => errors
            .push(Diagnostic::new(k.pos.clone(), format!("unknown type `{}`: the only type is `service`", k.value))),
        Some(_) => {}
    }
    let name_pos = parsed.name.as_ref().map_or_else(|| start.clone(), |n| n.pos.clone());
    let name = match &parsed.name {
        None => {
            errors.push(Diagnostic::new(start.clone(), "missing required field `name`"));
            None
        }
        Some(n) if !valid_service_name(&n.value) => {
            errors.push(Diagnostic::new(
                n.pos.clone(),
                format!("invalid service name `{}`: names are {NAME_RULE}", n.value),
            ));
            None
        }
        Some(n) => Some(n.value.clone()),
    };
    let (spec_pos, spec) = match parsed.spec {
        Some(s) => (s.pos, s.value),
        None => {
            errors.push(Diagnostic::new(start.clone(), "missing required field `spec`"));
            (start, Spec::default())
        }
    };
    match name {
        Some(name) => Loaded::Service(Arc::new(ServiceDef { name, dir, file, name_pos, spec_pos, spec, errors, envs })),
        None => Loaded::Broken(BrokenService {
            errors: errors.into_iter().chain(env_errors(&envs)).collect(),
            key: folder_key(&dir),
            dir,
            envs: envs.keys().cloned().collect(),
        }),
    }
}

/// The services `name` depends on, without itself (that is reported on its own).
fn base_deps(spec: &Spec, name: &str) -> Vec<String> {
    spec.dependencies
        .iter()
        .flat_map(|d| d.services.iter())
        .flat_map(|v| v.value.iter().map(|s| s.value.clone()))
        .filter(|d| d != name)
        .collect()
}

/// The problems of a broken service's env configs, which are still worth reporting.
fn env_errors(envs: &BTreeMap<String, Box<EnvDef>>) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for def in envs.values() {
        match &def.parsed {
            Ok(f) => {
                check_env_file(f, &mut out);
            }
            Err(d) => out.push(d.clone()),
        }
    }
    out
}

/// The position of a quoted scalar is its opening quote; templates count columns from the
/// first character of the value, so environment values are moved past the quote.
fn point_inside_quotes(spec: &mut Spec, text: &str) {
    for entry in spec.environment.iter_mut().flat_map(|e| e.value.iter_mut()) {
        let pos = &entry.value.pos;
        let at = text.lines().nth(pos.line as usize - 1).and_then(|l| l.chars().nth(pos.column as usize - 1));
        if matches!(at, Some('\'' | '"')) {
            entry.value.pos = pos.shifted(1);
        }
    }
}

/// A cycle through `start`, as the list of names from `start` back to it.
fn find_cycle(start: &str, graph: &BTreeMap<String, Vec<String>>) -> Option<Vec<String>> {
    fn dfs(
        node: &str,
        start: &str,
        graph: &BTreeMap<String, Vec<String>>,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        for next in graph.get(node).into_iter().flatten() {
            if next == start {
                path.push(next.clone());
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if dfs(next, start, graph, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_string()];
    let mut seen = BTreeSet::new();
    dfs(start, start, graph, &mut path, &mut seen).then_some(path)
}

fn name_pos(s: &ServiceDef) -> Pos {
    s.name_pos.clone()
}

fn folder_key(dir: &str) -> String {
    dir.rsplit('/').next().filter(|s| !s.is_empty()).unwrap_or("(root)").to_string()
}

/// The `name:` of a service.yaml that does not parse, so status can still name it.
fn guess_name(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix("name:"))
        .map(|v| v.trim().trim_matches(['"', '\'']).to_string())
        .filter(|n| valid_service_name(n))
}
