//! `berth diff` and `berth apply`: one environment, once.

use std::fmt::Write as _;

use anyhow::bail;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::aws::RequestStats;
use crate::cli::{ApplyArgs, ConvergeArgs, OutputFormat};
use crate::commands::Exit;
use crate::engine::cloud::{Connect as _, ConnectAws};
use crate::engine::outcome::Verdict;
use crate::engine::reconcile::{self, EnvInput, Mode, Outcome, ServiceReport};
use crate::source::checkout::{local_checkout, remote_checkout};

#[derive(Serialize)]
struct Report<'a> {
    env: &'a str,
    #[serde(rename = "ref")]
    ref_name: &'a str,
    commit: &'a str,
    services: &'a [ServiceReport],
}

/// The human report: one block per service, drift as `~ path: live → desired`.
pub fn render_text(env: &str, checkout_ref: &str, commit: &str, reports: &[ServiceReport], show_plan: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "environment {env} at {checkout_ref} ({})", &commit[..commit.len().min(12)]);
    for r in reports {
        let _ = writeln!(out, "{:<24} {}", r.name, r.outcome.label());
        for c in &r.drift {
            let _ = writeln!(out, "    {c}");
        }
        if let Some(reason) = r.outcome.reason() {
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
    let (config, env) = crate::commands::load_env(&args.config, &args.env)?;
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
    let aws = ConnectAws.connect(&env.aws, RequestStats::new()).await;
    let cancel = CancellationToken::new();
    if mode == Mode::Apply {
        tokio::spawn(stop_on_signal(cancel.clone()));
    }
    let input = EnvInput {
        only: args.service.as_deref(),
        cancel: cancel.clone(),
        ..EnvInput::new(&config, &env, &checkout, mode)
    };
    let reports = tokio::select! {
        reports = reconcile::reconcile_env(&*aws, &input) => reports,
        () = async { cancel.cancelled().await; tokio::time::sleep(APPLY_GRACE).await } => {
            bail!("stopped: the write in flight did not finish within {}s of the signal; run `berth diff` to see what is left", APPLY_GRACE.as_secs())
        }
    };
    match args.output {
        OutputFormat::Json => {
            let report =
                Report { env: &env.name, ref_name: &checkout.ref_name, commit: &checkout.commit, services: &reports };
            crate::commands::emit(&format!("{}\n", serde_json::to_string_pretty(&report)?));
        }
        OutputFormat::Text => {
            crate::commands::emit(&render_text(
                &env.name,
                &checkout.ref_name,
                &checkout.commit,
                &reports,
                mode != Mode::Diff,
            ));
        }
    }
    for (key, n) in aws.stats.snapshot() {
        tracing::debug!(api = %key.api, operation = %key.operation, result = key.result, count = n, "aws requests");
    }
    let verdict = reports.iter().map(|r| r.outcome.verdict(mode)).max().unwrap_or(Verdict::Ok);
    let exit = match verdict {
        Verdict::Ok => Exit::Ok,
        Verdict::Drift => Exit::Drift,
        Verdict::Failed => Exit::Failed,
    };
    Ok((exit, reports))
}

/// How long `apply` lets the write in flight finish after SIGINT or SIGTERM.
const APPLY_GRACE: std::time::Duration = std::time::Duration::from_secs(20);

/// SIGINT or SIGTERM during `apply`: the write in flight finishes, nothing new starts, a
/// rollout wait ends; the report says what was left undone and the exit is 1.
async fn stop_on_signal(cancel: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        return;
    };
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::warn!("{name}: finishing the write in flight, starting nothing new");
    cancel.cancel();
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
