//! Steering one service: `rollback`, `unpin`, `pause`, `resume`. Each writes berth's state
//! of the service as a tag on the ECS service (`berth:pinned`, `berth:paused`), where the
//! daemon, a restarted one and every replica read it with the service's live state.

use std::fmt::Write as _;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use serde::Serialize;

use crate::aws::{Aws, RequestStats};
use crate::cli::{ApplyArgs, ConvergeArgs, HistoryArgs, OutputFormat, PauseArgs, RollbackArgs, ServiceArgs, SyncArgs};
use crate::commands::{Exit, load_config};
use crate::core::config::{Config, EnvConfig};
use crate::core::desired::{Tag, tags};
use crate::core::live::{LiveService, Pause, Pin};
use crate::engine::cloud::{Connect as _, ConnectAws};
use crate::engine::history::{self, Entry, Trigger};
use crate::engine::reconcile::{self, EnvInput, Mode, RolloutWatch};
use crate::source::checkout::{Checkout, local_checkout, remote_checkout};

pub use crate::engine::history::actor;

pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// A berth-managed service, read live.
struct Target {
    config: Config,
    env: EnvConfig,
    aws: Arc<Aws>,
    live: LiveService,
}

async fn target(args: &ServiceArgs) -> anyhow::Result<Target> {
    let (config, env) = crate::commands::load_env(&args.config, &args.env)?;
    let aws = ConnectAws.connect(&env.aws, RequestStats::new()).await;
    let name = &args.service;
    let mut found = aws.describe_services(&env.cluster, std::slice::from_ref(name)).await?;
    let live = found
        .remove(name)
        .filter(|s| s.status != "INACTIVE")
        .with_context(|| format!("no service `{name}` in cluster `{}`", env.cluster))?;
    if live.tag(tags::MANAGED) != Some("true") {
        bail!("service `{name}` in cluster `{}` is not managed by berth (no tag berth:managed=true)", env.cluster);
    }
    Ok(Target { config, env, aws, live })
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

#[derive(Serialize)]
struct Done<'a> {
    env: &'a str,
    service: &'a str,
    action: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pin: Option<&'a Pin>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pause: Option<&'a Pause>,
    #[serde(skip_serializing_if = "Option::is_none")]
    from: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    to: Option<&'a str>,
    message: String,
}

fn print(output: OutputFormat, done: &Done<'_>) -> anyhow::Result<()> {
    match output {
        OutputFormat::Json => crate::commands::emit(&format!("{}\n", serde_json::to_string_pretty(done)?)),
        OutputFormat::Text => crate::commands::emit(&format!("{}\n", done.message)),
    }
    Ok(())
}

pub fn pause(args: &PauseArgs) -> anyhow::Result<Exit> {
    runtime()?.block_on(async {
        let a = &args.target;
        let t = target(a).await?;
        let pause = Pause { reason: crate::core::live::tag_safe(&args.reason, 160), by: actor(), at: now_rfc3339() };
        t.aws.tag_resource(&t.live.arn, &[Tag { key: tags::PAUSED.into(), value: pause.to_tag() }]).await?;
        let entry = Entry::operator(&t.env.name, &a.service, Trigger::Paused { reason: pause.reason.clone() }, &t.live);
        history::record_now(&t.config, &*t.aws, entry).await;
        let message = format!(
            "paused {} in {}: berth reports its drift and applies nothing until `berth resume {} --env {}`",
            a.service, t.env.name, a.service, t.env.name
        );
        let done = Done {
            env: &t.env.name,
            service: &a.service,
            action: "paused",
            pin: None,
            pause: Some(&pause),
            from: None,
            to: None,
            message,
        };
        print(a.output, &done)?;
        Ok(Exit::Ok)
    })
}

pub fn resume(args: &ServiceArgs) -> anyhow::Result<Exit> {
    lift(args, tags::PAUSED, Trigger::Resumed, "resumed", "paused")
}

pub fn unpin(args: &ServiceArgs) -> anyhow::Result<Exit> {
    lift(args, tags::PINNED, Trigger::Unpinned, "unpinned", "pinned")
}

/// Ends a pause or a pin: removes its tag (if there is one) and records that in history;
/// the daemon applies git again at its next poll.
fn lift(args: &ServiceArgs, tag: &str, trigger: Trigger, action: &str, state: &str) -> anyhow::Result<Exit> {
    runtime()?.block_on(async {
        let t = target(args).await?;
        let pin = t.live.tag(tags::PINNED).and_then(Pin::parse).filter(|_| tag == tags::PINNED);
        let message = if t.live.tag(tag).is_none() {
            format!("{} in {} is not {state}", args.service, t.env.name)
        } else {
            t.aws.untag_resource(&t.live.arn, &[tag]).await?;
            let entry = Entry::operator(&t.env.name, &args.service, trigger, &t.live);
            history::record_now(&t.config, &*t.aws, entry).await;
            format!("{action} {} in {}: the daemon applies git again at its next poll", args.service, t.env.name)
        };
        let done = Done {
            env: &t.env.name,
            service: &args.service,
            action,
            pin: pin.as_ref(),
            pause: None,
            from: None,
            to: None,
            message,
        };
        print(args.output, &done)?;
        Ok(Exit::Ok)
    })
}

/// `family:N` of a task definition ARN (or of `family:N` itself).
pub fn short_revision(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

fn family_of(arn: &str) -> &str {
    short_revision(arn).rsplit_once(':').map_or(arn, |(f, _)| f)
}

fn number_of(arn: &str) -> Option<u32> {
    short_revision(arn).rsplit_once(':')?.1.parse().ok()
}

/// The revision `--to` names, or (without it) the one to return to: the newest earlier
/// revision whose rollout completed (from history), else the newest earlier ACTIVE one.
async fn rollback_target(t: &Target, service: &str, to: Option<&str>) -> anyhow::Result<String> {
    let current = &t.live.settings.task_definition;
    let family = family_of(current);
    let current_n = number_of(current).unwrap_or(u32::MAX);
    let revisions = t.aws.list_revisions(family, 100).await?;
    match to {
        Some(n) if n.parse::<u32>().is_ok() => Ok(format!("{family}:{n}")),
        Some(arn) if arn.starts_with("arn:") || arn.contains(':') => Ok(arn.to_string()),
        Some(commit) => {
            for (_, arn) in &revisions {
                if let Some(td) = t.aws.describe_task_definition(arn).await?
                    && td.tag(tags::COMMIT).is_some_and(|c| c.starts_with(commit))
                {
                    return Ok(arn.clone());
                }
            }
            bail!("no ACTIVE revision of family `{family}` was registered for commit `{commit}`")
        }
        None => {
            let completed = history::last_completed(&t.config, &*t.aws, &t.env.name, service, current).await;
            if let Some(revision) = completed {
                return Ok(revision);
            }
            revisions
                .iter()
                .find(|(n, _)| *n < current_n)
                .map(|(_, arn)| arn.clone())
                .with_context(|| format!("family `{family}` has no ACTIVE revision before {}", short_revision(current)))
        }
    }
}

/// git's spec of the service now (what the pin holds off), through the engine's own decide.
async fn git_spec_hash(t: &Target, args: &RollbackArgs) -> anyhow::Result<(String, Checkout)> {
    let checkout = match &args.repo {
        Some(dir) => local_checkout(dir, &t.config, &t.env)?,
        None => {
            let (c, e) = (t.config.clone(), t.env.clone());
            tokio::task::spawn_blocking(move || remote_checkout(&c, &e)).await??
        }
    };
    let name = &args.target.service;
    let input = EnvInput { only: Some(name), ..EnvInput::new(&t.config, &t.env, &checkout, Mode::Diff) };
    let reports = reconcile::reconcile_env(&*t.aws, &input).await;
    let report =
        reports.into_iter().find(|r| &r.name == name).with_context(|| format!("no service `{name}` in git"))?;
    let hash = report.spec_hash.with_context(|| {
        format!("cannot render git's spec of `{name}`: {}", report.outcome.reason().unwrap_or_default())
    })?;
    Ok((hash, checkout))
}

pub fn rollback(args: &RollbackArgs) -> anyhow::Result<Exit> {
    runtime()?.block_on(async {
        let a = &args.target;
        let t = target(a).await?;
        let (rendered, checkout) = git_spec_hash(&t, args).await?;
        // The spec the daemon applied (its own rendering) is what it will compare the pin
        // with; this checkout's rendering may differ (a local `--repo`, a daemon behind).
        let spec_hash = match t.live.tag(tags::SPEC_HASH) {
            Some(applied) if applied != rendered => {
                tracing::warn!(applied, rendered = %rendered, "the service was last applied with another spec than this checkout renders; pinning the applied one");
                applied.to_string()
            }
            Some(applied) => applied.to_string(),
            None => rendered,
        };
        let to = rollback_target(&t, &a.service, args.to.as_deref()).await?;
        let Some(revision) = t.aws.describe_task_definition(&to).await? else {
            bail!("no task definition {to}");
        };
        let from = t.live.settings.task_definition.clone();
        if family_of(&revision.arn) != family_of(&from) {
            bail!("{} is not a revision of the service's family `{}`", revision.arn, family_of(&from));
        }
        let pin = Pin {
            revision: short_revision(&revision.arn).to_string(),
            spec_hash,
            by: actor(),
            at: now_rfc3339(),
        };
        let Some(value) = pin.to_tag() else {
            bail!("the pin of {} does not fit in an ECS tag value (256 characters): the family name is too long", pin.revision);
        };
        // The pin first: a daemon polling between the update and the pin would heal the
        // rollback back to git.
        t.aws.tag_resource(&t.live.arn, &[Tag { key: tags::PINNED.into(), value }]).await?;
        let started = std::time::Instant::now();
        let mut settings = t.live.settings.clone();
        settings.task_definition = revision.arn.clone();
        if let Err(e) = t.aws.update_service(&settings, &revision.arn, false).await {
            // Nothing half-applied: no pin without the rollback it stands for.
            if let Err(untag) = t.aws.untag_resource(&t.live.arn, &[tags::PINNED]).await {
                tracing::warn!(error = %untag, "cannot remove the pin after the failed update");
            }
            return Err(e).context(format!("cannot update service {} to {}", a.service, revision.arn));
        }
        // The scaling that revision ran with, when history has it.
        let scaling = history::scaling_of(&t.config, &*t.aws, &t.env.name, &a.service, &revision.arn).await;
        let mut scaled = None;
        if let Some(target) = &scaling {
            let live = t.aws.describe_scalable_targets(std::slice::from_ref(&target.resource_id)).await?;
            let now = live.get(&target.resource_id).map(|l| (l.target.min_capacity, l.target.max_capacity));
            if now != Some((target.min_capacity, target.max_capacity)) {
                t.aws.register_scalable_target(target).await?;
                scaled = Some(format!("scaling restored to min {}, max {}", target.min_capacity, target.max_capacity));
            }
        }
        let mut result = Ok(());
        let waited = t.env.rollout_wait && revision.arn != from;
        if waited {
            let watch = RolloutWatch {
                cluster: t.env.cluster.clone(),
                service: a.service.clone(),
                service_arn: t.live.arn.clone(),
                revision: revision.arn.clone(),
                spec_hash: pin.spec_hash.clone(),
                timeout: t.env.rollout_timeout,
                poll: t.env.rollout_poll,
                history: None,
            };
            result = watch.wait_without_hold(&*t.aws).await;
        }
        let mut entry = Entry::operator(&t.env.name, &a.service, Trigger::Rollback { from: short_revision(&from).into() }, &t.live);
        entry.revision = revision.arn.clone();
        entry.image = revision.definition.container_definitions.first().map(|c| c.image.clone()).unwrap_or_default();
        entry.commit = revision.tag(tags::COMMIT).unwrap_or_default().to_string();
        entry.spec_hash = revision.tag(tags::SPEC_HASH).unwrap_or_default().to_string();
        entry.result = match (&result, waited) {
            (Err(_), _) => "rollout_failed",
            (Ok(()), true) => "completed",
            (Ok(()), false) => "applied",
        }
        .into();
        entry.duration_s = Some(started.elapsed().as_secs_f64());
        history::record_now(&t.config, &*t.aws, entry).await;
        let dependents: Vec<&str> = (checkout.repo.services.iter())
            .filter(|d| d.name != a.service && d.envs.contains_key(&t.env.name))
            .filter(|d| d.resolve(&t.env.name).is_ok_and(|s| s.depends_on.contains(&a.service)))
            .map(|d| d.name.as_str())
            .collect();
        let mut message = String::new();
        let _ = write!(
            message,
            "rolled back {} in {} from {} to {}",
            a.service,
            t.env.name,
            short_revision(&from),
            short_revision(&revision.arn)
        );
        if let Some(s) = &scaled {
            let _ = write!(message, "; {s}");
        }
        match &result {
            Ok(()) if waited => message.push_str(" (rollout completed)"),
            Ok(()) => message.push_str(" (rollout not waited for: rollout.wait is off)"),
            Err(reason) => {
                let _ = write!(message, " (rollout FAILED: {reason})");
            }
        }
        let _ = write!(message, "\npinned: berth will not apply git's spec {} of {} until git changes the service, or `berth unpin {} --env {}`", &pin.spec_hash[..pin.spec_hash.len().min(12)], a.service, a.service, t.env.name);
        if !dependents.is_empty() {
            let _ = write!(message, "\nnote: {} depend on {}; they keep running against the rolled-back revision", dependents.join(", "), a.service);
        }
        tracing::info!(env = %t.env.name, service = %a.service, from = %from, to = %revision.arn, by = %pin.by, "rolled back and pinned");
        let done = Done {
            env: &t.env.name,
            service: &a.service,
            action: "rolled_back",
            pin: Some(&pin),
            pause: None,
            from: Some(&from),
            to: Some(&revision.arn),
            message,
        };
        print(a.output, &done)?;
        Ok(if result.is_ok() { Exit::Ok } else { Exit::Failed })
    })
}

pub fn history(args: &HistoryArgs) -> anyhow::Result<Exit> {
    runtime()?.block_on(async {
        let (config, env) = crate::commands::load_env(&args.config, &args.env)?;
        let aws = ConnectAws.connect(&env.aws, RequestStats::new()).await;
        let entries = match &config.state {
            Some(state) => history::list(&*aws, state, &env.name, args.service.as_deref(), args.limit)
                .await
                .with_context(|| format!("cannot read the history table `{}`", state.table))?,
            None => {
                let Some(service) = &args.service else {
                    bail!("no state table in {} (`state: {{table: …}}`): without one, history needs --service (it lists the service's task-definition revisions)", args.config.display());
                };
                revisions_as_history(&aws, &env, service, args.limit).await?
            }
        };
        match args.output {
            OutputFormat::Json => crate::commands::emit(&format!("{}\n", serde_json::to_string_pretty(&entries)?)),
            OutputFormat::Text => crate::commands::emit(&history_table(&entries)),
        }
        Ok(Exit::Ok)
    })
}

/// The history AWS keeps without a state table: the family's ACTIVE revisions, newest
/// first, with the commit and spec berth tagged them with.
async fn revisions_as_history(aws: &Aws, env: &EnvConfig, service: &str, limit: usize) -> anyhow::Result<Vec<Entry>> {
    let mut found = aws.describe_services(&env.cluster, &[service.to_string()]).await?;
    let live = found.remove(service).with_context(|| format!("no service `{service}` in cluster `{}`", env.cluster))?;
    let family = family_of(&live.settings.task_definition).to_string();
    let mut out = Vec::new();
    for (_, arn) in aws.list_revisions(&family, limit).await? {
        let Some(td) = aws.describe_task_definition(&arn).await? else { continue };
        let running = arn == live.settings.task_definition;
        out.push(Entry {
            time: 0.0,
            env: env.name.clone(),
            service: service.to_string(),
            commit: td.tag(tags::COMMIT).unwrap_or_default().to_string(),
            spec_hash: td.tag(tags::SPEC_HASH).unwrap_or_default().to_string(),
            revision: arn.clone(),
            image: td.definition.container_definitions.first().map(|c| c.image.clone()).unwrap_or_default(),
            trigger: history::Trigger::Unknown,
            result: if running { "running" } else { "registered" }.to_string(),
            duration_s: None,
            by: String::new(),
            error: None,
            scaling: None,
        });
    }
    Ok(out)
}

fn history_table(entries: &[Entry]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<20} {:<20} {:<12} {:<22} {:<15} {:<9} TRIGGER",
        "TIME", "SERVICE", "COMMIT", "REVISION", "RESULT", "DURATION"
    );
    for e in entries {
        let time = if e.time > 0.0 {
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs_f64(e.time);
            humantime::format_rfc3339_seconds(t).to_string()
        } else {
            "-".to_string()
        };
        let duration = e.duration_s.map_or("-".to_string(), |d| format!("{d:.0}s"));
        let commit: String = e.commit.chars().take(12).collect();
        let _ = writeln!(
            out,
            "{:<20} {:<20} {:<12} {:<22} {:<15} {:<9} {}{}",
            time,
            e.service,
            if commit.is_empty() { "-".into() } else { commit },
            short_revision(&e.revision),
            e.result,
            duration,
            e.trigger,
            if e.by.is_empty() || e.by == "berth" { String::new() } else { format!(" by {}", e.by) },
        );
    }
    if entries.is_empty() {
        out.push_str("(no entries)\n");
    }
    out
}

pub fn sync(args: &SyncArgs) -> anyhow::Result<Exit> {
    let config = load_config(&args.config)?;
    if config.env(&args.env).is_none() {
        bail!("environment `{}` is not in {}", args.env, args.config.display());
    }
    let url = match (&args.url, &config.api) {
        (Some(u), _) => u.trim_end_matches('/').to_string(),
        (None, Some(_)) => format!("http://127.0.0.1:{}", config.metrics_listen.port()),
        (None, None) => {
            // No daemon to ask: converge here, once.
            let apply = ApplyArgs {
                common: ConvergeArgs {
                    config: args.config.clone(),
                    env: args.env.clone(),
                    service: args.service.clone(),
                    repo: None,
                    output: args.output,
                },
                dry_run: false,
            };
            return crate::commands::converge::run_apply(&apply);
        }
    };
    let token_env = config.api.as_ref().map_or("BERTH_API_TOKEN", |a| a.token_env.as_str());
    let token = std::env::var(token_env).unwrap_or_default();
    if token.is_empty() {
        bail!("no API token: set the environment variable {token_env}");
    }
    let body = serde_json::json!({"env": args.env, "services": args.service.iter().collect::<Vec<_>>()}).to_string();
    let endpoint = format!("{url}/api/v1/sync");
    let (status, answer) = runtime()?
        .block_on(crate::http::request(
            hyper::Method::POST,
            &endpoint,
            &[("authorization", format!("Bearer {token}")), ("content-type", "application/json".into())],
            Some(body.into_bytes()),
        ))
        .with_context(|| format!("cannot reach {endpoint}"))?;
    if !status.is_success() {
        bail!("{endpoint} refused: HTTP {status}: {}", answer.trim());
    }
    match args.output {
        OutputFormat::Json => crate::commands::emit(&format!("{}\n", answer.trim())),
        OutputFormat::Text => {
            let v: serde_json::Value = serde_json::from_str(&answer).unwrap_or_default();
            let cleared: Vec<&str> =
                (v["backoff_cleared"].as_array().into_iter().flatten()).filter_map(|s| s.as_str()).collect();
            let mut line = format!("accepted: the daemon reconciles {} now", args.env);
            if !cleared.is_empty() {
                let _ = write!(line, "; backoff ended for {}", cleared.join(", "));
            }
            crate::commands::emit(&format!("{line}\n"));
        }
    }
    Ok(Exit::Ok)
}
