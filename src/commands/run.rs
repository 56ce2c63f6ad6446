//! `berth run SERVICE --env E -- COMMAND…`: a one-off task of the service's current revision
//! (a migration, a shell command), with the service's network settings and the command in
//! place of the container's; waited for; exits with the container's exit code (ecspresso
//! `run`, `copilot task run`).

use anyhow::{Context as _, bail};
use serde::Serialize;

use crate::aws::{Aws, RequestStats};
use crate::cli::{OutputFormat, RunArgs};
use crate::commands::Exit;
use crate::core::desired::tags;
use crate::engine::cloud::{Connect as _, ConnectAws};
use crate::engine::task::TaskEnd;

#[derive(Serialize)]
struct Ran {
    env: String,
    service: String,
    task: String,
    revision: String,
    /// `<group> <stream>` of the awslogs driver, when the revision logs there.
    #[serde(skip_serializing_if = "Option::is_none")]
    log: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exit_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stopped_reason: Option<String>,
}

pub fn run(args: &RunArgs) -> anyhow::Result<Exit> {
    let timeout = humantime::parse_duration(&args.timeout).with_context(|| format!("--timeout `{}`", args.timeout))?;
    let poll = humantime::parse_duration(&args.poll).with_context(|| format!("--poll `{}`", args.poll))?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async {
        let (_, env) = crate::commands::load_env(&args.config, &args.env)?;
        let aws = ConnectAws.connect(&env.aws, RequestStats::new()).await;
        let name = &args.service;
        let live = aws
            .describe_services(&env.cluster, std::slice::from_ref(name))
            .await?
            .remove(name)
            .filter(|s| s.status != "INACTIVE")
            .with_context(|| format!("no service `{name}` in cluster `{}`", env.cluster))?;
        if live.tag(tags::MANAGED) != Some("true") {
            bail!("service `{name}` in cluster `{}` is not managed by berth (no tag berth:managed=true)", env.cluster);
        }
        let revision = live.settings.task_definition.clone();
        let task = aws.run_task(&live.settings, &revision, name, &args.command, "berth-run").await?;
        let id = task.rsplit('/').next().unwrap_or(&task).to_string();
        let log = log_stream(&aws, &revision, name, &id).await;
        let short = revision.rsplit('/').next().unwrap_or(&revision);
        eprintln!("started task {id} of {short} in {}: {}", env.cluster, args.command.join(" "));
        if let Some(l) = &log {
            eprintln!("logs: {l}");
        }
        let mut ran = Ran {
            env: env.name.clone(),
            service: name.clone(),
            task: task.clone(),
            revision: revision.clone(),
            log,
            exit_code: None,
            stopped_reason: None,
        };
        let cancel = tokio_util::sync::CancellationToken::new();
        let end = crate::engine::task::wait(&*aws, &env.cluster, &task, name, poll, timeout, &cancel).await?;
        let exit = match end {
            TaskEnd::Exited { code, reason } => {
                (ran.exit_code, ran.stopped_reason) = (Some(code), reason);
                Exit::Task(u8::try_from(code).unwrap_or(1))
            }
            TaskEnd::NotStarted(why) => {
                ran.stopped_reason = Some(why);
                Exit::Failed
            }
            TaskEnd::Gone => bail!("task {id} is gone: ECS no longer knows it"),
            TaskEnd::TimedOut | TaskEnd::Cancelled => {
                report(args.output, &ran)?;
                bail!(
                    "task {id} still runs after {}: berth leaves it running (stop it with `aws ecs stop-task --cluster {} --task {id}`)",
                    args.timeout,
                    env.cluster
                );
            }
        };
        report(args.output, &ran)?;
        Ok(exit)
    })
}

fn report(output: OutputFormat, ran: &Ran) -> anyhow::Result<()> {
    match output {
        OutputFormat::Json => crate::commands::emit(&format!("{}\n", serde_json::to_string_pretty(ran)?)),
        OutputFormat::Text => {
            let id = ran.task.rsplit('/').next().unwrap_or(&ran.task);
            let line = match (ran.exit_code, &ran.stopped_reason) {
                (Some(c), _) => format!("task {id} exited {c}\n"),
                (None, Some(r)) => format!("task {id} stopped without running: {r}\n"),
                (None, None) => format!("task {id} has not stopped\n"),
            };
            crate::commands::emit(&line);
        }
    }
    Ok(())
}

/// Where the task's container logs: the revision's awslogs group and the stream
/// `<prefix>/<container>/<task id>`.
async fn log_stream(aws: &Aws, revision: &str, container: &str, task_id: &str) -> Option<String> {
    let td = aws.describe_task_definition(revision).await.ok()??;
    let c = td.definition.container_definitions.iter().find(|c| c.name == container)?;
    let lc = c.log_configuration.as_ref().filter(|l| l.log_driver == "awslogs")?;
    let group = lc.options.get("awslogs-group")?;
    let prefix = lc.options.get("awslogs-stream-prefix")?;
    Some(format!("{group} {prefix}/{container}/{task_id}"))
}
