//! `berth status`: the daemon's `/status` as a table.

use std::fmt::Write as _;

use anyhow::Context as _;

use crate::cli::StatusArgs;
use crate::commands::Exit;
use crate::engine::status::Status;

pub fn table(status: &Status) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<8} {:<24} {:<10} {:<12} {:<12} {:<22} DRIFT / ERROR",
        "ENV", "SERVICE", "SYNC", "HEALTH", "COMMIT", "TASK DEFINITION"
    );
    for env in &status.environments {
        if let Some(e) = &env.last_fetch_error {
            let _ = writeln!(out, "{:<8} {:<24} git: {e}", env.name, "-");
        }
        if let Some(e) = &env.aws_unavailable {
            let _ = writeln!(
                out,
                "{:<8} {:<24} AWS does not answer (an outage; retried at every poll): {e}",
                env.name, "-"
            );
        }
        if env.no_release {
            let _ = writeln!(out, "{:<8} (no release yet: nothing to deploy until the first vX.Y.Z tag)", env.name);
        } else if env.services.is_empty() && env.last_fetch_error.is_none() {
            let _ = writeln!(
                out,
                "{:<8} (no services yet{})",
                env.name,
                if env.ready { "" } else { "; first sync in progress" }
            );
        }
        for s in &env.services {
            let commit = s.commit.as_deref().map_or("-".to_string(), |c| c.chars().take(12).collect());
            let td = s.task_definition.as_deref().and_then(|t| t.rsplit('/').next()).unwrap_or("-");
            let mut note = s.drift.join(", ");
            let state =
                (s.pinned.as_ref().map(ToString::to_string)).or_else(|| s.paused.as_ref().map(ToString::to_string));
            if let Some(err) = s.last_error.as_ref().or(state.as_ref()) {
                if !note.is_empty() {
                    note.push_str("; ");
                }
                note.push_str(&first_problem(err));
            }
            let _ = writeln!(
                out,
                "{:<8} {:<24} {:<10} {:<12} {:<12} {:<22} {}",
                env.name,
                s.name,
                s.sync.as_str(),
                s.health.as_str(),
                commit,
                td,
                if note.is_empty() { "-".to_string() } else { note }
            );
        }
    }
    // Where each environment lives, under the table (`#` lines: the rows stay one per service).
    for env in &status.environments {
        let place: Vec<String> =
            [env.account.as_ref().map(|a| format!("account {a}")), env.region.clone(), env.role.clone()]
                .into_iter()
                .flatten()
                .collect();
        if !place.is_empty() {
            let _ = writeln!(out, "# {}: {}", env.name, place.join(", "));
        }
    }
    out
}

/// The first line of an error, with the first problem under a heading line such as
/// `invalid spec:` (its `path:line:col: message`), so the table names where to look.
pub fn first_problem(error: &str) -> String {
    let mut lines = error.lines().map(str::trim).filter(|l| !l.is_empty());
    match (lines.next(), lines.next()) {
        (Some(head), Some(next)) if head.ends_with(':') => format!("{head} {next}"),
        (Some(head), _) => head.to_string(),
        _ => String::new(),
    }
}

pub fn run(args: &StatusArgs) -> anyhow::Result<Exit> {
    let url = format!("{}/status", args.url.trim_end_matches('/'));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let body = runtime.block_on(fetch(&url)).with_context(|| format!("cannot read {url}"))?;
    let mut status: Status =
        serde_json::from_str(&body).with_context(|| format!("{url} did not answer berth status JSON"))?;
    status.environments.retain(|e| args.env.as_ref().is_none_or(|n| &e.name == n));
    if let Some(name) = &args.service {
        for e in &mut status.environments {
            e.services.retain(|s| &s.name == name);
        }
    }
    if args.json || args.output == crate::cli::OutputFormat::Json {
        crate::commands::emit(&format!("{}\n", serde_json::to_string_pretty(&status)?));
    } else {
        crate::commands::emit(&table(&status));
    }
    Ok(Exit::Ok)
}

/// GET `url` (http or https, answers chunked or not) with a 10 s bound on each step.
async fn fetch(url: &str) -> anyhow::Result<String> {
    let (status, body) = crate::http::request(hyper::Method::GET, url, &[], None).await?;
    if !status.is_success() {
        anyhow::bail!("HTTP {status}");
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_first_problem_is_shown_whole() {
        let error = "invalid spec:\nservices/a/deploy/service.yaml:4:8: expected a number\nmore";
        assert_eq!(super::first_problem(error), "invalid spec: services/a/deploy/service.yaml:4:8: expected a number");
        assert_eq!(super::first_problem("applying: UpdateService: boom"), "applying: UpdateService: boom");
    }
}
