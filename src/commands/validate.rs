//! `berth validate`: every problem of every service and environment, then exit 0 or 1.

use crate::cli::{OutputFormat, ValidateArgs};
use crate::commands::{Exit, load_dir};
use crate::core::diag;

pub fn run(args: &ValidateArgs) -> anyhow::Result<Exit> {
    let mut problems = Vec::new();
    let config = match &args.config {
        Some(path) => match crate::source::dir::config(path) {
            Ok(c) => Some(c),
            Err(d) => {
                problems.extend(d.0);
                None
            }
        },
        None => None,
    };
    let glob = config.as_ref().map(|c| c.repo.discovery.clone());
    let (_, repo) = load_dir(&args.repo, glob.as_deref())?;
    problems.extend(repo.diagnostics());
    let glob = glob.unwrap_or_else(|| crate::core::config::DEFAULT_DISCOVERY.to_string());
    let misses = crate::source::dir::near_misses(&args.repo, &glob)?;
    for (path, what) in &misses {
        eprintln!("{}: {path}: {what}", if args.strict { "error" } else { "warning" });
    }
    if args.strict && !misses.is_empty() && problems.is_empty() {
        eprintln!("error: {} file(s) berth would skip (--strict)", misses.len());
        return Ok(Exit::Failed);
    }
    diag::normalize(&mut problems);
    if args.output == OutputFormat::Json {
        let list: Vec<serde_json::Value> = (problems.iter())
            .map(|d| {
                serde_json::json!({"file": &*d.pos.file, "line": d.pos.line, "column": d.pos.column, "message": d.message})
            })
            .collect();
        crate::commands::emit(&format!("{}\n", serde_json::to_string_pretty(&list)?));
        return Ok(if problems.is_empty() { Exit::Ok } else { Exit::Failed });
    }
    if problems.is_empty() {
        let envs: usize = repo.services.iter().map(|s| s.envs.len()).sum();
        eprintln!("ok: {} services, {envs} service environments", repo.services.len());
        Ok(Exit::Ok)
    } else {
        crate::commands::emit(&diag::render(&problems));
        let files: std::collections::BTreeSet<_> = problems.iter().map(|d| d.pos.file.clone()).collect();
        eprintln!("error: {} problem(s) in {} file(s)", problems.len(), files.len());
        Ok(Exit::Failed)
    }
}
