//! Command-line definitions (clap). Glue lives in `commands/`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "berth",
    version,
    propagate_version = true,
    about = "A GitOps agent for Amazon ECS: keeps every service of a monorepo equal to git",
    after_help = "Exit codes: 0 ok, 1 failed, 2 drift (diff), 64 usage error."
)]
pub struct Cli {
    /// Log format on stderr. RUST_LOG sets the level (default: info).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Parse and check every service and environment config of a repository.
    Validate(ValidateArgs),
    /// Print what berth would apply for one service in one environment (offline).
    /// (Its `--version` is the release to render, not berth's version.)
    #[command(disable_version_flag = true)]
    Render(RenderArgs),
    /// Scaffold files.
    #[command(subcommand)]
    New(NewCommand),
    /// Print the JSON Schema of service.yaml, config.yaml or the agent config, for editors.
    Schema(SchemaArgs),
    /// Compare desired and live state field by field (exit 0 in sync, 2 drift, 1 error).
    Diff(ConvergeArgs),
    /// Converge an environment once and wait for the rollouts (exit 0 converged, 1 failed).
    Apply(ApplyArgs),
    /// The long-running agent: runs until SIGTERM/SIGINT, then drains and exits 0.
    Daemon(DaemonArgs),
    /// Show the daemon's services as a table.
    Status(StatusArgs),
    /// The applies berth made, newest first (from the state table; without one, the
    /// service's task-definition revisions).
    History(HistoryArgs),
    /// Ask the running daemon to reconcile an environment now and end its services'
    /// backoff (without a daemon API configured or --url: one `apply` here).
    Sync(SyncArgs),
    /// Run an earlier revision of a service and pin it until git changes the service.
    Rollback(RollbackArgs),
    /// End a rollback's pin now (the daemon applies git again at its next poll).
    Unpin(ServiceArgs),
    /// Stop applying one service (drift is still reported) until `berth resume`.
    Pause(PauseArgs),
    /// Apply a paused service again.
    Resume(ServiceArgs),
    /// Run a one-off task of a service's current revision (`berth run api --env pre -- ./migrate up`),
    /// wait for it, and exit with its container's exit code.
    Run(RunArgs),
    /// Print a shell completion script: `berth completions bash > /etc/bash_completion.d/berth`.
    Completions(CompletionsArgs),
    /// Print the man page (roff): `berth man > /usr/local/share/man/man1/berth.1`.
    Man,
}

/// One service of one environment, in AWS.
#[derive(Debug, Args)]
pub struct ServiceArgs {
    /// The service (its `name:`).
    pub service: String,
    /// The agent config.
    #[arg(long)]
    pub config: PathBuf,
    /// The environment (a key under `environments:` in the agent config).
    #[arg(long)]
    pub env: String,
    /// `text` or `json`.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The service (its `name:`); the task runs its current revision and network settings.
    pub service: String,
    /// The agent config.
    #[arg(long)]
    pub config: PathBuf,
    /// The environment (a key under `environments:` in the agent config).
    #[arg(long)]
    pub env: String,
    /// How long to wait for the task to stop (`30m`, `90s`).
    #[arg(long, default_value = "30m")]
    pub timeout: String,
    /// How often the task is looked at while it runs.
    #[arg(long, default_value = "2s", hide = true)]
    pub poll: String,
    /// `text` or `json`.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// The command, instead of the container's (after `--`).
    #[arg(last = true, required = true, num_args = 1..)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// The agent config (its `api.token_env` names the token's environment variable).
    #[arg(long)]
    pub config: PathBuf,
    /// The environment (a key under `environments:` in the agent config).
    #[arg(long)]
    pub env: String,
    /// Only this service (its backoff ends; the environment reconciles).
    #[arg(long)]
    pub service: Option<String>,
    /// The daemon's metrics listener (default: http://127.0.0.1:<metrics port> when the
    /// config has `api:`).
    #[arg(long)]
    pub url: Option<String>,
    /// `text` or `json`.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The agent config.
    #[arg(long)]
    pub config: PathBuf,
    /// The environment (a key under `environments:` in the agent config).
    #[arg(long)]
    pub env: String,
    /// Only this service.
    #[arg(long)]
    pub service: Option<String>,
    /// At most this many entries.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// `text` (a table) or `json` (a list of entries).
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    #[command(flatten)]
    pub target: ServiceArgs,
    /// The revision to run: its number, `family:N`, its ARN, or a commit (the revision berth
    /// registered for it). Default: the newest earlier revision whose rollout completed.
    #[arg(long)]
    pub to: Option<String>,
    /// Use a local checkout (its HEAD) to learn git's spec instead of repo.url.
    #[arg(long)]
    pub repo: Option<PathBuf>,
    /// Why (recorded with the pin).
    #[arg(long, default_value = "rollback")]
    pub reason: String,
}

#[derive(Debug, Args)]
pub struct PauseArgs {
    #[command(flatten)]
    pub target: ServiceArgs,
    /// Why (shown in status and history).
    #[arg(long)]
    pub reason: String,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// The agent config; changes to it are picked up without a restart.
    #[arg(long)]
    pub config: PathBuf,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The daemon's metrics listener.
    #[arg(long, default_value = "http://127.0.0.1:9090")]
    pub url: String,
    /// `text` (a table) or `json` (the daemon's /status as is).
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// The same as `--output json` (kept for scripts written before `--output`).
    #[arg(long, hide = true)]
    pub json: bool,
    /// Only this environment.
    #[arg(long)]
    pub env: Option<String>,
    /// Only this service.
    #[arg(long)]
    pub service: Option<String>,
}

#[derive(Debug, Args)]
pub struct ConvergeArgs {
    /// The agent config.
    #[arg(long)]
    pub config: PathBuf,
    /// The environment (a key under `environments:` in the agent config).
    #[arg(long)]
    pub env: String,
    /// Only this service.
    #[arg(long)]
    pub service: Option<String>,
    /// Use a local checkout (its HEAD) instead of resolving the environment's ref from repo.url.
    #[arg(long)]
    pub repo: Option<PathBuf>,
    /// `text` (drift as `~ path: live → desired`) or `json` (docs/diff.md).
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub common: ConvergeArgs,
    /// Print the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum OutputFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The repository (default: the current directory).
    #[arg(long, default_value = ".")]
    pub repo: PathBuf,
    /// Also check an agent config, and take the discovery glob from it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// `text` (`path:line:col: message` lines) or `json` (a list of `{file, line, column, message}`).
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Fail on files berth would skip (`service.yml`, a `config.yaml` that is not a file, …),
    /// which are otherwise warnings on stderr.
    #[arg(long)]
    pub strict: bool,
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    /// Agent config: registry, account, region and per-environment defaults.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The repository (default: the current directory).
    #[arg(long, default_value = ".")]
    pub repo: PathBuf,
    /// The environment to render for.
    #[arg(long)]
    pub env: String,
    /// The service (its `name:`).
    #[arg(long)]
    pub service: String,
    /// The service's commit (default: the newest commit that changed its folder, from git).
    /// With `--version` too, it fills `{{ .Commit }}` and the `berth:commit` tag.
    #[arg(long)]
    pub commit: Option<String>,
    /// Render as a tag environment release `X.Y.Z`.
    #[arg(long)]
    pub version: Option<String>,
    /// The value of an `ssm:` variable: `--param /pre/app/db-host=db.internal`. Repeatable.
    #[arg(long = "param", value_name = "NAME=VALUE")]
    pub params: Vec<String>,
    /// A YAML map of SSM parameter names to values, for `ssm:` variables.
    #[arg(long, value_name = "FILE")]
    pub params_file: Option<PathBuf>,
    /// Print one part only.
    #[arg(long, value_enum)]
    pub only: Option<RenderPart>,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum RenderPart {
    /// The RegisterTaskDefinition input (for `aws ecs register-task-definition --cli-input-json`).
    TaskDefinition,
    /// The service settings.
    Service,
    /// The scalable target and scaling policy.
    Scaling,
}

#[derive(Debug, Subcommand)]
pub enum NewCommand {
    /// Scaffold deploy/service.yaml, deploy/<env>/config.yaml and a CI workflow.
    Service(NewServiceArgs),
}

#[derive(Debug, Args)]
pub struct NewServiceArgs {
    /// Service name, [a-z0-9-]{1,48}.
    pub name: String,
    /// Environments to deploy to.
    #[arg(long, value_delimiter = ',', default_value = "pre,prod")]
    pub envs: Vec<String>,
    /// The repository root (the CI workflow goes to its .github/workflows).
    #[arg(long, default_value = ".")]
    pub repo: PathBuf,
    /// The service's folder, relative to the repository root (default: services/NAME).
    #[arg(long)]
    pub dir: Option<String>,
    /// ECR repository name or image reference (default: NAME).
    #[arg(long)]
    pub image: Option<String>,
    /// CPU units (a Fargate size).
    #[arg(long, default_value_t = 256)]
    pub cpu: u32,
    /// Memory in MiB (valid for the CPU on Fargate).
    #[arg(long, default_value_t = 512)]
    pub memory: u32,
    /// Scale on `cpu` or `memory` (target tracking at 70%, 1 to 4 tasks).
    #[arg(long)]
    pub autoscaling: Option<String>,
    /// Services this one depends on (converge first).
    #[arg(long, value_delimiter = ',')]
    pub depends_on: Vec<String>,
    /// Data stores it uses (recorded).
    #[arg(long, value_delimiter = ',')]
    pub data: Vec<String>,
    /// Reachable from the internet: a rule on the environment's external listener.
    #[arg(long)]
    pub external: bool,
    /// The external host name (`pay.example.com`), instead of the environment's
    /// `external_host` pattern; needs --external.
    #[arg(long, requires = "external")]
    pub domain: Option<String>,
    /// The branch that deploys to the first environment.
    #[arg(long, default_value = "develop")]
    pub branch: String,
    /// Overwrite existing files.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// Which file (default: both service.yaml and config.yaml, as one JSON object).
    #[arg(value_enum)]
    pub which: Option<SchemaWhich>,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum SchemaWhich {
    Service,
    Config,
    Agent,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    /// clap's own consistency checks (unique names, valid defaults, …) over every command:
    /// what `completions` and `man` would otherwise find at run time.
    #[test]
    fn the_command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
