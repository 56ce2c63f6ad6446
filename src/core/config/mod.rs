//! The agent's own configuration (`config/berth.yaml`): raw serde structs, then a checking
//! step into the typed [`Config`] the rest of berth uses. Errors are `path:line:column`.

use core::net::SocketAddr;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;

use super::at::{At, Text, stamp_fields, stamp_nothing};
use super::diag::{self, Diagnostic, Diagnostics, Pos};
use super::schema;
use super::spec::valid_env_name;
use super::yaml;

mod env;
mod ingress;
mod operate;

pub use ingress::IngressConfig;

pub use operate::{
    ApiConfig, EVENTS, HaConfig, PruneLimit, RawApi, RawHa, RawSink, RawState, SinkConfig, SinkKind, StateConfig,
};

#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "berth agent configuration (config/berth.yaml)",
    extend("$id" = schema::AGENT_ID),
    description = "What the berth daemon watches (a git repository), where it deploys (AWS, one ECS cluster per environment) and how it is operated. Changes are picked up without a restart.",
    transform = schema::agent
)]
pub struct RawConfig {
    /// The git monorepo berth reads the services from.
    pub repo: Option<At<RawRepo>>,
    /// The AWS target every environment starts from.
    pub aws: Option<At<RawAws>>,
    /// The environments, by name (`[a-z0-9-]{1,32}`): each one a branch or the release
    /// tags, deployed to one ECS cluster.
    #[schemars(transform = schema::environments)]
    pub environments: Option<At<BTreeMap<String, At<RawEnv>>>>,
    /// The metrics listener (`/metrics`, `/healthz`, `/readyz`, `/status`, the status page).
    pub metrics: Option<At<RawListen>>,
    /// A listener for git push webhooks that start a poll at once.
    pub webhook: Option<At<RawWebhook>>,
    /// How many services are reconciled at once, 1 to 256 (default 8).
    #[schemars(range(min = 1, max = 256))]
    pub concurrency: Option<At<u32>>,
    /// Publish each service's drift, sync and health as CloudWatch metrics.
    pub cloudwatch: Option<At<RawCloudWatch>>,
    /// Where berth keeps its deployment history (a DynamoDB table).
    pub state: Option<At<RawState>>,
    /// The daemon's API on the metrics listener (`POST /api/v1/sync`).
    pub api: Option<At<RawApi>>,
    /// Where berth tells people what it did: Slack, a signed webhook, GitHub.
    pub notifications: Option<At<Vec<At<RawSink>>>>,
    /// Leader election per environment, on a DynamoDB table: replicas that do not hold an
    /// environment's lease only report on it.
    pub ha: Option<At<RawHa>>,
}

/// The git monorepo.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = schema::repo)]
pub struct RawRepo {
    /// https, ssh, `file://` or a local path.
    pub url: Option<At<String>>,
    /// The environment variable holding an https token (sent as user `x-access-token`);
    /// not together with `ssh_key`.
    pub token_env: Option<At<String>>,
    /// The path of a private key for ssh; not together with `token_env`.
    pub ssh_key: Option<At<String>>,
    /// How often git is fetched (default 60s).
    #[schemars(transform = schema::duration)]
    pub poll_interval: Option<At<String>>,
    /// Where the git cache lives (default /var/lib/berth).
    pub workdir: Option<At<String>>,
    /// The glob that finds services (default `**/deploy/service.yaml`; `*` does not cross `/`).
    pub discovery: Option<At<String>>,
}

/// The AWS target.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = schema::aws)]
pub struct RawAws {
    /// The region, e.g. `us-east-1`.
    pub region: Option<At<String>>,
    /// Another endpoint for every AWS API (an emulator): an http:// or https:// URL.
    #[schemars(transform = schema::http_url)]
    pub endpoint_url: Option<At<String>>,
    /// The 12-digit account id, quoted (default: from STS).
    #[schemars(transform = schema::account_id)]
    pub account_id: Option<At<Text>>,
    /// The registry prepended to bare image names, e.g.
    /// `123456789012.dkr.ecr.us-east-1.amazonaws.com`.
    pub registry: Option<At<String>>,
    /// Attempts per AWS call, throttling retries included (default 5; 1 to 20 are used).
    pub max_attempts: Option<At<u32>>,
    /// Time to open a connection to an AWS endpoint (default 3s).
    #[schemars(transform = schema::duration)]
    pub connect_timeout: Option<At<String>>,
    /// Time for one attempt of a call, answer included (default 5s); a slower attempt is
    /// abandoned and retried.
    #[schemars(transform = schema::duration)]
    pub attempt_timeout: Option<At<String>>,
    /// Time for a whole call, retries included (default 60s).
    #[schemars(transform = schema::duration)]
    pub timeout: Option<At<String>>,
}

/// One environment.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = schema::env)]
pub struct RawEnv {
    /// What deploys here: `{branch: NAME}` or `{tags: semver}`.
    pub source: Option<At<RawSource>>,
    /// The ECS cluster name.
    pub cluster: Option<At<String>>,
    /// `auto` converges drift; `manual` only reports it (default auto).
    pub sync: Option<At<SyncMode>>,
    /// Whether and how long berth waits for an ECS deployment to finish.
    pub rollout: Option<At<RawRollout>>,
    /// Per-environment service defaults; `{service}` and `{env}` are filled in.
    pub defaults: Option<At<RawDefaults>>,
    /// This environment's AWS target; each key falls back to the top-level `aws:`.
    pub aws: Option<At<RawEnvAws>>,
    /// Delete berth-managed services whose folder is gone from git (default false).
    pub prune: Option<At<bool>>,
    /// At most this many services (`3`) or this share of the environment's (`10%`) are
    /// pruned in one cycle (default 10%).
    #[schemars(transform = schema::prune_limit)]
    pub prune_limit: Option<At<Text>>,
    /// Routing of the environment's services: target groups, listener rules on the
    /// internal (and external) load balancer, Route53 alias records.
    pub ingress: Option<At<ingress::RawIngress>>,
    /// `cloudwatch`: a CloudWatch dashboard per service, kept equal to what berth renders.
    pub dashboards: Option<At<String>>,
}

/// An environment's own AWS target.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = schema::env_aws)]
pub struct RawEnvAws {
    /// The environment's region (default: the top-level one).
    pub region: Option<At<String>>,
    /// A role to assume (with the default credential chain as the source) for this
    /// environment: its account is the environment's.
    #[schemars(transform = schema::role_arn)]
    pub role_arn: Option<At<String>>,
    /// The external id the role's trust policy asks for; needs `role_arn`.
    pub external_id: Option<At<String>>,
    /// The session name of the assumed role (default `berth-<env>`).
    pub session_name: Option<At<String>>,
    /// How long assumed credentials last before berth asks for new ones (default 1h).
    #[schemars(transform = schema::duration)]
    pub session_duration: Option<At<String>>,
    /// Another endpoint for this environment's AWS APIs: an http:// or https:// URL.
    #[schemars(transform = schema::http_url)]
    pub endpoint_url: Option<At<String>>,
    /// The registry of bare image names in this environment (default: the top-level one).
    pub registry: Option<At<String>>,
    /// The account id, 12 digits (default: from STS; the top-level one only without
    /// `role_arn`).
    #[schemars(transform = schema::account_id)]
    pub account_id: Option<At<Text>>,
}

/// What deploys to an environment: exactly one of `branch` or `tags`.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = schema::source)]
pub struct RawSource {
    /// The branch whose head deploys (image tag: the service's commit, 12 characters).
    #[schemars(transform = schema::branch)]
    pub branch: Option<At<String>>,
    /// `semver`: the highest `vX.Y.Z` tag deploys (image tag `X.Y.Z`).
    #[schemars(transform = schema::tags)]
    pub tags: Option<At<String>>,
    /// With `tags: semver`, whether pre-releases (`v1.2.0-rc.1`) count (default false).
    pub prereleases: Option<At<bool>>,
}

/// Waiting for ECS deployments.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRollout {
    /// Wait for each deployment to finish (default true).
    pub wait: Option<At<bool>>,
    /// How long a deployment may take before it counts as failed (default 10m).
    #[schemars(transform = schema::duration)]
    pub timeout: Option<At<String>>,
    /// How often a rollout in progress is looked at (default 5s).
    #[schemars(transform = schema::duration)]
    pub poll: Option<At<String>>,
}

/// Per-environment service defaults.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawDefaults {
    /// The task execution role's ARN (pulls images, reads secrets).
    #[schemars(transform = schema::arn)]
    pub execution_role: Option<At<String>>,
    /// The task role's ARN (what the service's code may call).
    #[schemars(transform = schema::arn)]
    pub task_role: Option<At<String>>,
    /// The subnets of the tasks.
    pub subnets: Option<At<Vec<String>>>,
    /// The security groups of the tasks.
    pub security_groups: Option<At<Vec<String>>>,
    /// Give each task a public IP (default false).
    pub assign_public_ip: Option<At<bool>>,
    /// The CloudWatch log group (default `/ecs/{env}/{service}`).
    pub log_group: Option<At<String>>,
}

/// A listener.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawListen {
    /// `IP:PORT` (default 0.0.0.0:9090).
    #[schemars(transform = schema::listen)]
    pub listen: Option<At<String>>,
}

/// The webhook listener.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawWebhook {
    /// `IP:PORT` (default 0.0.0.0:8080).
    #[schemars(transform = schema::listen)]
    pub listen: Option<At<String>>,
    /// The environment variable holding the webhook's HMAC secret (default
    /// BERTH_WEBHOOK_SECRET).
    pub secret_env: Option<At<String>>,
}

/// CloudWatch metrics.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCloudWatch {
    /// The metric namespace (default `Berth`; not `AWS/…`).
    #[schemars(transform = schema::cloudwatch_namespace)]
    pub namespace: Option<At<String>>,
}

stamp_fields! {
    RawConfig { repo, aws, environments, metrics, webhook, concurrency, cloudwatch, state, api, notifications, ha }
    RawRepo { url, token_env, ssh_key, poll_interval, workdir, discovery }
    RawAws { region, endpoint_url, account_id, registry, max_attempts, connect_timeout, attempt_timeout, timeout }
    RawEnv { source, cluster, sync, rollout, defaults, aws, prune, prune_limit, ingress, dashboards }
    RawEnvAws { region, role_arn, external_id, session_name, session_duration, endpoint_url, registry, account_id }
    RawSource { branch, tags, prereleases }
    RawRollout { wait, timeout, poll }
    RawDefaults { execution_role, task_role, subnets, security_groups, assign_public_ip, log_group }
    RawListen { listen }
    RawWebhook { listen, secret_env }
    RawCloudWatch { namespace }
}
stamp_nothing!(SyncMode);

#[derive(Clone, Copy, Debug, Default, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    /// Converge drift.
    #[default]
    Auto,
    /// Report drift only.
    Manual,
}

/// The checked configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub repo: RepoConfig,
    pub aws: AwsConfig,
    pub environments: BTreeMap<String, EnvConfig>,
    pub metrics_listen: SocketAddr,
    pub webhook: Option<WebhookConfig>,
    pub concurrency: usize,
    pub cloudwatch_namespace: Option<String>,
    pub state: Option<StateConfig>,
    pub api: Option<ApiConfig>,
    pub notifications: Vec<SinkConfig>,
    pub ha: Option<HaConfig>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RepoConfig {
    pub url: String,
    pub token_env: Option<String>,
    pub ssh_key: Option<String>,
    pub poll_interval: Duration,
    pub workdir: String,
    pub discovery: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct AwsConfig {
    pub region: String,
    pub endpoint_url: Option<String>,
    pub account_id: Option<String>,
    pub registry: Option<String>,
    pub max_attempts: u32,
    pub connect_timeout: Duration,
    pub attempt_timeout: Duration,
    pub timeout: Duration,
    /// A role to assume for these clients (an environment's `aws.role_arn`).
    pub role: Option<AssumeRole>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct AssumeRole {
    pub arn: String,
    pub external_id: Option<String>,
    pub session_name: String,
    pub duration: Duration,
}

impl AwsConfig {
    /// `region` with every other setting at its default (the offline `render`).
    pub fn new(region: &str) -> AwsConfig {
        AwsConfig {
            region: region.to_string(),
            endpoint_url: None,
            account_id: None,
            registry: None,
            max_attempts: 5,
            connect_timeout: Duration::from_secs(3),
            attempt_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(60),
            role: None,
        }
    }

    pub fn partition(&self) -> &'static str {
        if self.region.starts_with("cn-") {
            "aws-cn"
        } else if self.region.starts_with("us-gov-") {
            "aws-us-gov"
        } else {
            "aws"
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Branch(String),
    /// The highest `vX.Y.Z` tag.
    SemverTags {
        prereleases: bool,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct EnvConfig {
    pub name: String,
    /// Where the environment's services live: the top-level `aws:` and the environment's
    /// `aws:` over it.
    pub aws: AwsConfig,
    pub source: Source,
    pub cluster: String,
    pub sync: SyncMode,
    pub rollout_wait: bool,
    pub rollout_timeout: Duration,
    pub rollout_poll: Duration,
    pub defaults: EnvDefaults,
    pub prune: bool,
    pub prune_limit: PruneLimit,
    pub ingress: Option<IngressConfig>,
    /// A CloudWatch dashboard per service (`dashboards: cloudwatch`).
    pub dashboards: bool,
}

/// Per-environment service defaults. `{service}` and `{env}` are filled in by `for_service`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EnvDefaults {
    pub execution_role: Option<String>,
    pub task_role: Option<String>,
    pub subnets: Vec<String>,
    pub security_groups: Vec<String>,
    pub assign_public_ip: bool,
    pub log_group: Option<String>,
}

impl EnvDefaults {
    pub fn for_service(&self, service: &str, env: &str) -> EnvDefaults {
        let fill = |s: &String| s.replace("{service}", service).replace("{env}", env);
        EnvDefaults {
            execution_role: self.execution_role.as_ref().map(fill),
            task_role: self.task_role.as_ref().map(fill),
            subnets: self.subnets.clone(),
            security_groups: self.security_groups.clone(),
            assign_public_ip: self.assign_public_ip,
            log_group: Some(self.log_group.as_ref().map_or_else(|| format!("/ecs/{env}/{service}"), fill)),
        }
    }
}

pub const DEFAULT_DISCOVERY: &str = "**/deploy/service.yaml";

impl Config {
    /// Checks the text of a config file (`path` names it in diagnostics; reading it is the
    /// caller's: `source::dir::config`).
    pub fn parse(path: &str, text: &str) -> Result<Config, Diagnostics> {
        let file: Arc<str> = Arc::from(path);
        let raw: RawConfig = yaml::parse(&file, text).map_err(|d| Diagnostics(vec![d]))?;
        let mut diags = Vec::new();
        let config = check(&file, &raw, &mut diags);
        diag::normalize(&mut diags);
        match config {
            Some(c) if diags.is_empty() => Ok(c),
            _ => Err(Diagnostics(diags)),
        }
    }

    pub fn env(&self, name: &str) -> Option<&EnvConfig> {
        self.environments.get(name)
    }
}

pub(super) fn duration(field: &Option<At<String>>, default: Duration, diags: &mut Vec<Diagnostic>) -> Duration {
    match field {
        None => default,
        Some(s) => match humantime::parse_duration(s.trim()) {
            Ok(d) if !d.is_zero() => d,
            Ok(_) => {
                diags.push(Diagnostic::new(s.pos.clone(), "a duration must be greater than zero"));
                default
            }
            Err(e) => {
                diags.push(Diagnostic::new(
                    s.pos.clone(),
                    format!("invalid duration `{}`: {e} (write e.g. 60s, 5m)", s.value),
                ));
                default
            }
        },
    }
}

fn listen(field: &Option<At<String>>, default: &str, diags: &mut Vec<Diagnostic>) -> SocketAddr {
    let fallback: SocketAddr = default.parse().expect("valid default address");
    match field {
        None => fallback,
        Some(s) => s.parse().unwrap_or_else(|_| {
            diags.push(Diagnostic::new(
                s.pos.clone(),
                format!("invalid listen address `{}`: write HOST:PORT, e.g. 0.0.0.0:9090", s.value),
            ));
            fallback
        }),
    }
}

fn check(file: &Arc<str>, raw: &RawConfig, diags: &mut Vec<Diagnostic>) -> Option<Config> {
    let start = Pos::file_start(file.clone());
    let repo = match &raw.repo {
        None => {
            diags.push(Diagnostic::new(start.clone(), "missing required field `repo`"));
            None
        }
        Some(r) => {
            let url = r.url.as_ref().map(|u| u.value.clone());
            if url.is_none() {
                diags.push(Diagnostic::new(r.pos.clone(), "missing required field `url`"));
            }
            if let (Some(_), Some(k)) = (&r.token_env, &r.ssh_key) {
                diags.push(Diagnostic::new(k.pos.clone(), "set either `token_env` or `ssh_key`, not both"));
            }
            let discovery = r.discovery.as_ref().map_or(DEFAULT_DISCOVERY.to_string(), |d| d.value.clone());
            if let Some(d) = &r.discovery
                && let Err(e) = globset::Glob::new(&d.value)
            {
                diags.push(Diagnostic::new(d.pos.clone(), format!("invalid discovery glob: {e}")));
            }
            url.map(|url| RepoConfig {
                url,
                token_env: r.token_env.as_ref().map(|t| t.value.clone()),
                ssh_key: r.ssh_key.as_ref().map(|t| t.value.clone()),
                poll_interval: duration(&r.poll_interval, Duration::from_secs(60), diags),
                workdir: r.workdir.as_ref().map_or("/var/lib/berth".to_string(), |w| w.value.clone()),
                discovery,
            })
        }
    };
    let aws = match &raw.aws {
        None => {
            diags.push(Diagnostic::new(start.clone(), "missing required field `aws`"));
            None
        }
        Some(a) => {
            let region = a.region.as_ref().map(|r| r.value.clone());
            if region.is_none() {
                diags.push(Diagnostic::new(a.pos.clone(), "missing required field `region`"));
            }
            if let Some(e) = &a.endpoint_url
                && !(e.starts_with("http://") || e.starts_with("https://"))
            {
                diags.push(Diagnostic::new(
                    e.pos.clone(),
                    format!("invalid endpoint_url `{}`: an http:// or https:// URL", e.value),
                ));
            }
            let account_id = a.account_id.as_ref().map(|t| t.value.0.clone());
            if let (Some(id), Some(at)) = (&account_id, &a.account_id)
                && !(id.len() == 12 && id.chars().all(|c| c.is_ascii_digit()))
            {
                diags.push(Diagnostic::new(at.pos.clone(), format!("invalid account_id `{id}`: 12 digits, quoted")));
            }
            region.map(|region| {
                let d = AwsConfig::new(&region);
                AwsConfig {
                    region,
                    endpoint_url: a.endpoint_url.as_ref().map(|e| e.value.trim_end_matches('/').to_string()),
                    account_id,
                    registry: a.registry.as_ref().map(|r| r.value.trim_end_matches('/').to_string()),
                    max_attempts: a.max_attempts.as_ref().map_or(d.max_attempts, |m| m.value.clamp(1, 20)),
                    connect_timeout: duration(&a.connect_timeout, d.connect_timeout, diags),
                    attempt_timeout: duration(&a.attempt_timeout, d.attempt_timeout, diags),
                    timeout: duration(&a.timeout, d.timeout, diags),
                    role: None,
                }
            })
        }
    };
    let mut environments = BTreeMap::new();
    match &raw.environments {
        None => diags.push(Diagnostic::new(start.clone(), "missing required field `environments`")),
        Some(envs) => {
            for (name, env) in envs.value.iter() {
                if !valid_env_name(name) {
                    diags.push(Diagnostic::new(
                        env.pos.clone(),
                        format!("invalid environment name `{name}`: names are [a-z0-9-]{{1,32}}"),
                    ));
                    continue;
                }
                if let Some(e) = env::check_env(name, env, aws.as_ref(), diags) {
                    environments.insert(name.clone(), e);
                }
            }
        }
    }
    let concurrency = raw.concurrency.as_ref().map_or(8, |c| c.value as usize);
    if let Some(c) = &raw.concurrency
        && !(1..=256).contains(&c.value)
    {
        diags.push(Diagnostic::new(c.pos.clone(), format!("concurrency {} is out of range (1 to 256)", c.value)));
    }
    let metrics_listen = listen(&raw.metrics.as_ref().and_then(|m| m.listen.clone()), "0.0.0.0:9090", diags);
    let webhook = raw.webhook.as_ref().map(|w| {
        let secret_env = w.secret_env.as_ref().map_or("BERTH_WEBHOOK_SECRET".to_string(), |s| s.value.clone());
        WebhookConfig { listen: listen(&w.listen, "0.0.0.0:8080", diags), secret_env }
    });
    let cloudwatch_namespace = raw.cloudwatch.as_ref().map(|c| {
        let ns = c.namespace.as_ref().map_or("Berth".to_string(), |n| n.value.clone());
        if ns.is_empty() || ns.starts_with("AWS/") || ns.len() > 255 {
            diags.push(Diagnostic::new(c.pos.clone(), format!("invalid CloudWatch namespace `{ns}`")));
        }
        ns
    });
    let (state, api, notifications, ha) = operate::check(raw, &environments, diags);
    Some(Config {
        notifications,
        ha,
        repo: repo?,
        aws: aws?,
        environments,
        metrics_listen,
        webhook,
        concurrency,
        cloudwatch_namespace,
        state,
        api,
    })
}

#[derive(Clone, Debug, PartialEq)]
pub struct WebhookConfig {
    pub listen: SocketAddr,
    pub secret_env: String,
}

#[cfg(test)]
mod tests;
