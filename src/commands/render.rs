//! `berth render`: what berth would apply for one service in one environment, offline.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::cli::{RenderArgs, RenderPart};
use crate::commands::{Exit, load_config, load_dir};
use crate::core::config::{AwsConfig, EnvConfig, EnvDefaults, Source, SyncMode};
use crate::core::diag;
use crate::core::render::{self, Lookups, Target};

/// Without `--config`, an environment renders with no registry, account or defaults,
/// in us-east-1, on a cluster named after the environment.
fn bare_env(name: &str, tags: bool) -> EnvConfig {
    EnvConfig {
        aws: crate::core::config::AwsConfig::new("us-east-1"),
        name: name.to_string(),
        source: if tags { Source::SemverTags { prereleases: false } } else { Source::Branch("develop".into()) },
        cluster: name.to_string(),
        sync: SyncMode::Auto,
        rollout_wait: true,
        rollout_timeout: Duration::from_secs(600),
        rollout_poll: Duration::from_secs(5),
        defaults: EnvDefaults::default(),
        prune: false,
        prune_limit: crate::core::config::PruneLimit::Percent(10.0),
        ingress: None,
        dashboards: false,
    }
}

fn parse_params(args: &RenderArgs) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    if let Some(path) = &args.params_file {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let file: std::sync::Arc<str> = path.to_string_lossy().into();
        let map: BTreeMap<String, crate::core::at::Text> =
            crate::core::yaml::parse(&file, &text).map_err(|d| anyhow::anyhow!("{d}"))?;
        out.extend(map.into_iter().map(|(k, v)| (k, v.0)));
    }
    for p in &args.params {
        let Some((k, v)) = p.split_once('=') else {
            bail!("--param takes NAME=VALUE, got `{p}`");
        };
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

/// The release `X.Y.Z` of HEAD's `vX.Y.Z` tag, if it has one.
fn head_release(repo_root: &Path) -> Option<String> {
    let (repo, head) = crate::source::git::open_head(repo_root).ok()?;
    crate::source::git::head_version(&repo, head)
}

/// The newest commit that changed the service's folder, from the checkout's HEAD.
fn service_commit(repo_root: &Path, service_dir: &str) -> anyhow::Result<String> {
    let (repo, head) = crate::source::git::open_head(repo_root)
        .context("cannot tell the service's commit: pass --commit SHA, or run in a git checkout")?;
    let prefix = crate::source::git::prefix_in_repo(&repo, repo_root)?;
    let dir = [prefix.as_str(), service_dir].iter().filter(|s| !s.is_empty()).cloned().collect::<Vec<_>>().join("/");
    let commits = crate::source::git::path_commits(&repo, head, std::slice::from_ref(&dir))?;
    Ok(commits.get(&dir).map_or_else(|| head.to_string(), |c| c.to_string()))
}

pub fn run(args: &RenderArgs) -> anyhow::Result<Exit> {
    let config = args.config.as_deref().map(load_config).transpose()?;
    let (_, repo) = load_dir(&args.repo, config.as_ref().map(|c| c.repo.discovery.as_str()))?;
    let Some(def) = repo.service(&args.service) else {
        if let Some(b) = repo.broken.iter().find(|b| b.key == args.service) {
            crate::commands::emit(&diag::render(&b.errors));
            return Ok(Exit::Failed);
        }
        let known: Vec<&str> = repo.services.iter().map(|s| s.name.as_str()).collect();
        bail!("no service `{}` in {} (found: {})", args.service, args.repo.display(), known.join(", "));
    };
    let spec = match def.resolve(&args.env) {
        Ok(s) => s,
        Err(diags) => {
            crate::commands::emit(&diag::render(&diags));
            return Ok(Exit::Failed);
        }
    };
    let env = match &config {
        Some(c) => {
            c.env(&args.env).cloned().with_context(|| format!("environment `{}` is not in the config", args.env))?
        }
        None => bare_env(&args.env, args.version.is_some()),
    };
    // The environment's own target (its account and region, with `aws:` under it).
    let aws = if config.is_some() { env.aws.clone() } else { AwsConfig::new("us-east-1") };
    if let Some(v) = &args.version {
        semver::Version::parse(v).with_context(|| format!("--version `{v}` is not X.Y.Z"))?;
    }
    // A tag environment deploys `X.Y.Z` images: HEAD's release tag, as the daemon would.
    let version = match (&args.version, &env.source) {
        (Some(v), _) => Some(v.clone()),
        (None, crate::core::config::Source::SemverTags { .. }) => {
            Some(head_release(&args.repo).with_context(|| {
                format!(
                    "environment `{}` deploys release tags and HEAD has no vX.Y.Z tag: pass --version X.Y.Z",
                    env.name
                )
            })?)
        }
        (None, _) => None,
    };
    let commit = match &args.commit {
        Some(c) => c.clone(),
        None => service_commit(&args.repo, &spec.dir)?,
    };
    let lookups = Lookups { ssm_values: parse_params(args)?, secret_arns: BTreeMap::new() };
    let target = Target { env: &env, aws: &aws, commit: &commit, version: version.as_deref(), lookups: &lookups };
    let desired = match render::render(&spec, &target) {
        Ok(d) => d,
        Err(diags) => {
            crate::commands::emit(&diag::render(&diags));
            return Ok(Exit::Failed);
        }
    };
    let json = match args.only {
        None => serde_json::to_value(&desired)?,
        Some(RenderPart::TaskDefinition) => serde_json::to_value(&desired.task_definition)?,
        Some(RenderPart::Service) => serde_json::to_value(&desired.service)?,
        Some(RenderPart::Scaling) => serde_json::to_value(&desired.scaling)?,
    };
    crate::commands::emit(&format!("{}\n", serde_json::to_string_pretty(&json)?));
    Ok(Exit::Ok)
}
