//! `berth diff` and `berth apply`: one environment, once.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context as _, bail};
use serde::Serialize;

use crate::aws::{Aws, ClientOptions, RequestStats};
use crate::cli::{ApplyArgs, ConvergeArgs, OutputFormat};
use crate::commands::{Exit, load_config};
use crate::core::config::{Config, EnvConfig, Source};
use crate::core::spec::{Repo, RepoFiles};
use crate::engine::reconcile::{self, EnvInput, Mode, Outcome, ServiceReport};
use crate::source::git;

/// The repository content an environment deploys.
pub struct Checkout {
    pub repo: Repo,
    pub commits: BTreeMap<String, String>,
    pub version: Option<String>,
    pub ref_name: String,
    pub commit: String,
}

fn commits_for(repo_git: &git2::Repository, head: git2::Oid, prefix: &str, repo: &Repo) -> anyhow::Result<BTreeMap<String, String>> {
    let join = |d: &str| [prefix, d].iter().filter(|s| !s.is_empty()).cloned().collect::<Vec<_>>().join("/");
    let dirs: Vec<String> = repo.services.iter().map(|s| join(&s.dir)).collect();
    let found = git::path_commits(repo_git, head, &dirs)?;
    Ok(repo
        .services
        .iter()
        .map(|s| (s.dir.clone(), found.get(&join(&s.dir)).map_or_else(|| head.to_string(), |c| c.to_string())))
        .collect())
}

/// Reads a local checkout (`--repo DIR`, its HEAD).
pub fn local_checkout(dir: &Path, config: &Config, env: &EnvConfig) -> anyhow::Result<Checkout> {
    let files = crate::source::dir::read(dir, &config.repo.discovery)?;
    let repo = Repo::load(&files);
    let (git_repo, head) = git::open_head(dir)?;
    let prefix = git::prefix_in_repo(&git_repo, dir)?;
    let commits = commits_for(&git_repo, head, &prefix, &repo)?;
    let version = match env.source {
        Source::Branch(_) => None,
        Source::SemverTags { .. } => Some(git::head_version(&git_repo, head).with_context(|| {
            format!("environment `{}` deploys release tags, and HEAD of {} has no vX.Y.Z tag", env.name, dir.display())
        })?),
    };
    let ref_name = git_repo.head().ok().and_then(|h| h.name().ok().map(str::to_string)).unwrap_or_else(|| "HEAD".into());
    Ok(Checkout { repo, commits, version, ref_name, commit: head.to_string() })
}

/// Resolves the environment's ref on `repo.url`, fetching into the work directory.
pub fn remote_checkout(config: &Config, env: &EnvConfig) -> anyhow::Result<Checkout> {
    let auth = git::Auth {
        token: config.repo.token_env.as_ref().and_then(|v| std::env::var(v).ok()),
        ssh_key: config.repo.ssh_key.as_ref().map(Into::into),
    };
    let mirror = git::Mirror::open(&config.repo.url, &Path::new(&config.repo.workdir).join("mirror.git"), auth)?;
    let refs = mirror.list_remote()?;
    let resolved = git::resolve(&refs, &env.source)?;
    if !mirror.has_commit(resolved.commit) {
        mirror.fetch()?;
    }
    let files: RepoFiles = git::read_commit(&mirror.repo, resolved.commit, &config.repo.discovery)?;
    let repo = Repo::load(&files);
    let commits = commits_for(&mirror.repo, resolved.commit, "", &repo)?;
    Ok(Checkout { repo, commits, version: resolved.version, ref_name: resolved.ref_name, commit: resolved.commit.to_string() })
}

#[derive(Serialize)]
struct Report<'a> {
    env: &'a str,
    #[serde(rename = "ref")]
    ref_name: &'a str,
    commit: &'a str,
    services: &'a [ServiceReport],
}

fn outcome_label(o: &Outcome) -> String {
    match o {
        Outcome::Synced => "Synced".into(),
        Outcome::Applied => "Applied".into(),
        Outcome::OutOfSync => "OutOfSync".into(),
        Outcome::WaitingForImage(i) => format!("WaitingForImage ({i})"),
        Outcome::Unmanaged(_) => "Unmanaged".into(),
        Outcome::Failed(_) => "Failed".into(),
        Outcome::Skipped(_) => "Skipped".into(),
    }
}

/// The human report: one block per service, drift as `~ path: live → desired`.
pub fn render_text(env: &str, checkout_ref: &str, commit: &str, reports: &[ServiceReport], show_plan: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "environment {env} at {checkout_ref} ({})", &commit[..commit.len().min(12)]);
    for r in reports {
        let _ = writeln!(out, "{:<24} {}", r.name, outcome_label(&r.outcome));
        for c in &r.drift {
            let _ = writeln!(out, "    {c}");
        }
        if let Outcome::Failed(reason) | Outcome::Unmanaged(reason) | Outcome::Skipped(reason) = &r.outcome {
            for line in reason.lines() {
                let _ = writeln!(out, "    ! {line}");
            }
        }
        if show_plan && !r.plan.is_empty() && r.applied.is_empty() {
            let _ = writeln!(out, "    plan:");
            for a in &r.plan {
                let _ = writeln!(out, "      - {a}");
            }
        }
        for a in &r.applied {
            let _ = writeln!(out, "    done: {a}");
        }
    }
    let failed = reports.iter().filter(|r| r.outcome.is_failure()).count();
    let drifted = reports.iter().filter(|r| r.outcome == Outcome::OutOfSync).count();
    let _ = writeln!(out, "{} services: {} out of sync, {} not converged", reports.len(), drifted, failed);
    out
}

async fn run(args: &ConvergeArgs, mode: Mode) -> anyhow::Result<(Exit, Vec<ServiceReport>)> {
    let config = load_config(&args.config)?;
    let env = config
        .env(&args.env)
        .cloned()
        .with_context(|| format!("environment `{}` is not in {}", args.env, args.config.display()))?;
    let checkout = match &args.repo {
        Some(dir) => local_checkout(dir, &config, &env)?,
        None => {
            let (c, e) = (config.clone(), env.clone());
            tokio::task::spawn_blocking(move || remote_checkout(&c, &e)).await??
        }
    };
    if let Some(s) = &args.service
        && checkout.repo.service(s).is_none()
        && !checkout.repo.broken.iter().any(|b| &b.key == s)
    {
        bail!("no service `{s}` in the repository");
    }
    let options = ClientOptions { max_attempts: config.aws.max_attempts, ..ClientOptions::default() };
    let aws = Aws::connect(&config.aws, &options, RequestStats::new()).await;
    let input = EnvInput {
        config: &config,
        env: &env,
        repo: &checkout.repo,
        commits: &checkout.commits,
        version: checkout.version.as_deref(),
        only: args.service.as_deref(),
        mode,
    };
    let reports = reconcile::reconcile_env(&aws, &input).await;
    match args.output {
        OutputFormat::Json => {
            let report = Report { env: &env.name, ref_name: &checkout.ref_name, commit: &checkout.commit, services: &reports };
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        OutputFormat::Text => {
            print!("{}", render_text(&env.name, &checkout.ref_name, &checkout.commit, &reports, mode != Mode::Diff));
        }
    }
    for (key, n) in aws.stats.snapshot() {
        tracing::debug!(api = %key.api, operation = %key.operation, result = key.result, count = n, "aws requests");
    }
    let exit = match mode {
        Mode::Diff => {
            if reports.iter().any(|r| matches!(r.outcome, Outcome::Failed(_) | Outcome::Skipped(_))) {
                Exit::Failed
            } else if reports.iter().any(|r| r.outcome != Outcome::Synced) {
                Exit::Drift
            } else {
                Exit::Ok
            }
        }
        Mode::DryRun => {
            if reports.iter().any(|r| matches!(r.outcome, Outcome::Failed(_))) { Exit::Failed } else { Exit::Ok }
        }
        Mode::Apply => {
            if reports.iter().all(|r| matches!(r.outcome, Outcome::Synced | Outcome::Applied)) { Exit::Ok } else { Exit::Failed }
        }
    };
    Ok((exit, reports))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

pub fn run_diff(args: &ConvergeArgs) -> anyhow::Result<Exit> {
    runtime()?.block_on(async { run(args, Mode::Diff).await.map(|(e, _)| e) })
}

pub fn run_apply(args: &ApplyArgs) -> anyhow::Result<Exit> {
    let mode = if args.dry_run { Mode::DryRun } else { Mode::Apply };
    runtime()?.block_on(async { run(&args.common, mode).await.map(|(e, _)| e) })
}
