//! The agent config's keys for operating berth: the state table (history), the daemon's
//! API, leader election (`ha:`), notification sinks and the prune limit: raw forms, the
//! checked ones, and their checks.

use std::collections::BTreeMap;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;

use super::{EnvConfig, RawConfig, duration};
use crate::core::at::{At, Text, stamp_fields};
use crate::core::diag::Diagnostic;
use crate::core::schema;

/// Leader election.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = schema::required_table)]
pub struct RawHa {
    /// The DynamoDB table of the leases (the state table's key schema; it may be the same
    /// table).
    #[schemars(transform = schema::table)]
    pub table: Option<At<String>>,
    /// How long a lease lasts unless renewed (default 15s, at least 3s; renewed every
    /// third of it).
    #[schemars(transform = schema::duration)]
    pub lease: Option<At<String>>,
    /// Create the table when it does not exist (default true).
    pub create: Option<At<bool>>,
}

/// A notification sink.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = schema::sink)]
pub struct RawSink {
    /// `slack` (incoming webhook), `webhook` (JSON, signed) or `github` (commit statuses
    /// and deployments).
    #[serde(rename = "type")]
    pub kind: Option<At<String>>,
    /// The sink's name in metrics and logs (default: its type, then its position).
    pub name: Option<At<String>>,
    /// The URL (webhook).
    #[schemars(transform = schema::http_url)]
    pub url: Option<At<String>>,
    /// The environment variable holding the URL (slack; webhook).
    pub url_env: Option<At<String>>,
    /// The environment variable holding the HMAC key (webhook).
    pub secret_env: Option<At<String>>,
    /// The environment variable holding the token (github).
    pub token_env: Option<At<String>>,
    /// `owner/name` (github).
    pub repo: Option<At<String>>,
    /// The API base (github; default https://api.github.com, or GitHub Enterprise's).
    #[schemars(transform = schema::http_url)]
    pub api_url: Option<At<String>>,
    /// Only these events (default: all).
    #[schemars(transform = schema::events)]
    pub events: Option<At<Vec<At<String>>>>,
    /// Only these environments of this config (default: all).
    #[schemars(transform = schema::env_names)]
    pub envs: Option<At<Vec<At<String>>>>,
    /// Notices kept waiting for this sink at most (default 1000); when full, the oldest
    /// is dropped (and counted).
    pub queue: Option<At<u32>>,
}

/// The state table.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = schema::required_table)]
pub struct RawState {
    /// The DynamoDB table (partition key `pk`, sort key `sk`, both strings; TTL on `ttl`).
    #[schemars(transform = schema::table)]
    pub table: Option<At<String>>,
    /// How long history entries are kept (default 90d).
    #[schemars(transform = schema::duration)]
    pub ttl: Option<At<String>>,
    /// Create the table (on-demand billing) when it does not exist (default true).
    pub create: Option<At<bool>>,
}

/// The daemon's API.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawApi {
    /// The environment variable holding the bearer token the API requires.
    pub token_env: Option<At<String>>,
}

stamp_fields! {
    RawHa { table, lease, create }
    RawSink { kind, name, url, url_env, secret_env, token_env, repo, api_url, events, envs, queue }
    RawState { table, ttl, create }
    RawApi { token_env }
}

/// Leader election: one lease per environment in `table`.
#[derive(Clone, Debug, PartialEq)]
pub struct HaConfig {
    pub table: String,
    pub lease: Duration,
    pub create: bool,
}

/// The DynamoDB table of berth's history.
#[derive(Clone, Debug, PartialEq)]
pub struct StateConfig {
    pub table: String,
    pub ttl: Duration,
    pub create: bool,
}

/// A notification sink.
#[derive(Clone, Debug, PartialEq)]
pub struct SinkConfig {
    pub name: String,
    pub kind: SinkKind,
    /// Empty: every event.
    pub events: Vec<String>,
    /// Empty: every environment.
    pub envs: Vec<String>,
    pub queue: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub enum SinkKind {
    Slack { url_env: String },
    Webhook { url: Option<String>, url_env: Option<String>, secret_env: Option<String> },
    GitHub { token_env: String, repo: String, api_url: String },
}

/// The events a sink may ask for.
pub const EVENTS: &[&str] =
    &["applied", "failed", "rollout_failed", "rolled_back", "drift_healed", "pinned", "paused", "pruned"];

#[derive(Clone, Debug, PartialEq)]
pub struct ApiConfig {
    pub token_env: String,
}

/// How many orphaned services one cycle may prune.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PruneLimit {
    Count(usize),
    Percent(f64),
}

impl PruneLimit {
    /// The most services that may go in one cycle, of an environment with `services`.
    pub fn of(self, services: usize) -> usize {
        match self {
            PruneLimit::Count(n) => n,
            PruneLimit::Percent(p) => ((services as f64) * p / 100.0).floor() as usize,
        }
        .max(1)
    }
}

/// The state table, the API, the sinks and leader election of a config.
pub(super) fn check(
    raw: &RawConfig,
    environments: &BTreeMap<String, EnvConfig>,
    diags: &mut Vec<Diagnostic>,
) -> (Option<StateConfig>, Option<ApiConfig>, Vec<SinkConfig>, Option<HaConfig>) {
    let state = raw.state.as_ref().and_then(|st| {
        let table = st.table.as_ref().map(|t| t.value.clone());
        match &table {
            None => diags.push(Diagnostic::new(st.pos.clone(), "missing required field `table`")),
            Some(t)
                if !(3..=255).contains(&t.len())
                    || !t.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)) =>
            {
                diags.push(Diagnostic::new(
                    st.table.as_ref().expect("present").pos.clone(),
                    format!("invalid DynamoDB table name `{t}`: 3 to 255 of [A-Za-z0-9_.-]"),
                ));
            }
            Some(_) => {}
        }
        Some(StateConfig {
            table: table?,
            ttl: duration(&st.ttl, Duration::from_secs(90 * 86400), diags),
            create: st.create.as_ref().is_none_or(|c| c.value),
        })
    });
    let api = raw.api.as_ref().map(|a| ApiConfig {
        token_env: a.token_env.as_ref().map_or("BERTH_API_TOKEN".to_string(), |t| t.value.clone()),
    });
    let notifications = raw.notifications.as_ref().map_or_else(Vec::new, |list| {
        list.value.iter().enumerate().filter_map(|(i, s)| sink(i, s, environments, diags)).collect()
    });
    let ha = raw.ha.as_ref().and_then(|h| {
        let table = h.table.as_ref().map(|t| t.value.clone());
        if table.is_none() {
            diags.push(Diagnostic::new(h.pos.clone(), "missing required field `table`"));
        }
        let lease = duration(&h.lease, Duration::from_secs(15), diags);
        if let Some(l) = &h.lease
            && lease < Duration::from_secs(3)
        {
            diags.push(Diagnostic::new(l.pos.clone(), "a lease shorter than 3s cannot be renewed reliably"));
        }
        Some(HaConfig { table: table?, lease, create: h.create.as_ref().is_none_or(|c| c.value) })
    });
    (state, api, notifications, ha)
}

fn sink(
    i: usize,
    s: &At<RawSink>,
    envs: &BTreeMap<String, EnvConfig>,
    diags: &mut Vec<Diagnostic>,
) -> Option<SinkConfig> {
    let text = |f: &Option<At<String>>| f.as_ref().map(|v| v.value.clone());
    let required = |f: &Option<At<String>>, name: &str, diags: &mut Vec<Diagnostic>| {
        let v = text(f);
        if v.is_none() {
            diags.push(Diagnostic::new(s.pos.clone(), format!("missing required field `{name}`")));
        }
        v
    };
    let kind = match s.kind.as_ref().map(|k| k.value.as_str()) {
        Some("slack") => SinkKind::Slack { url_env: required(&s.url_env, "url_env", diags)? },
        Some("webhook") => {
            if s.url.is_none() == s.url_env.is_none() {
                diags.push(Diagnostic::new(s.pos.clone(), "set exactly one of `url` or `url_env`"));
            }
            SinkKind::Webhook { url: text(&s.url), url_env: text(&s.url_env), secret_env: text(&s.secret_env) }
        }
        Some("github") => SinkKind::GitHub {
            token_env: required(&s.token_env, "token_env", diags)?,
            repo: required(&s.repo, "repo", diags)?,
            api_url: text(&s.api_url)
                .map_or("https://api.github.com".to_string(), |u| u.trim_end_matches('/').to_string()),
        },
        Some(other) => {
            let at = s.kind.as_ref().expect("present").pos.clone();
            diags.push(Diagnostic::new(at, format!("unknown notification type `{other}`: slack, webhook or github")));
            return None;
        }
        None => {
            diags.push(Diagnostic::new(s.pos.clone(), "missing required field `type` (slack, webhook or github)"));
            return None;
        }
    };
    for u in [&s.url, &s.api_url].into_iter().flatten() {
        if !(u.starts_with("http://") || u.starts_with("https://")) {
            diags
                .push(Diagnostic::new(u.pos.clone(), format!("invalid URL `{}`: an http:// or https:// URL", u.value)));
        }
    }
    let list = |f: &Option<At<Vec<At<String>>>>| f.as_ref().map(|l| l.value.clone()).unwrap_or_default();
    let events = list(&s.events);
    for e in &events {
        if !EVENTS.contains(&e.value.as_str()) {
            diags.push(Diagnostic::new(
                e.pos.clone(),
                format!("unknown event `{}`: one of {}", e.value, EVENTS.join(", ")),
            ));
        }
    }
    let sink_envs = list(&s.envs);
    for e in &sink_envs {
        if !envs.contains_key(&e.value) {
            diags.push(Diagnostic::new(e.pos.clone(), format!("no environment `{}` in this config", e.value)));
        }
    }
    let default_name = match &kind {
        SinkKind::Slack { .. } => "slack",
        SinkKind::Webhook { .. } => "webhook",
        SinkKind::GitHub { .. } => "github",
    };
    Some(SinkConfig {
        name: text(&s.name).unwrap_or_else(|| format!("{default_name}-{}", i + 1)),
        kind,
        events: events.into_iter().map(|e| e.value).collect(),
        envs: sink_envs.into_iter().map(|e| e.value).collect(),
        queue: s.queue.as_ref().map_or(1000, |q| q.value.clamp(1, 100_000) as usize),
    })
}

pub(super) fn prune_limit(field: Option<&At<Text>>, diags: &mut Vec<Diagnostic>) -> PruneLimit {
    let Some(f) = field else { return PruneLimit::Percent(10.0) };
    let text = f.value.0.trim();
    let parsed = match text.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().ok().filter(|p| *p > 0.0 && *p <= 100.0).map(PruneLimit::Percent),
        None => text.parse::<usize>().ok().filter(|n| *n > 0).map(PruneLimit::Count),
    };
    parsed.unwrap_or_else(|| {
        diags.push(Diagnostic::new(
            f.pos.clone(),
            format!("invalid prune_limit `{text}`: a number of services (3) or a share (10%)"),
        ));
        PruneLimit::Percent(10.0)
    })
}
