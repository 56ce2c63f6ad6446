//! Deployment history: one entry per apply berth makes (and per operator action: rollback,
//! pause, resume, unpin), kept in the state table (`state.table`, DynamoDB) outside any
//! berth process. Without a table, `berth history` shows what AWS keeps: the family's
//! revisions and their `berth:` tags.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::cloud::Cloud;
use crate::aws::{AwsError, StateItem};
use crate::core::config::{Config, StateConfig};
use crate::core::desired::tags;
use crate::core::live::LiveService;

/// What made berth (or an operator) change the service.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Trigger {
    /// git changed the service (a new spec hash).
    GitChange,
    /// Live drifted from git's spec (a console edit, say): these fields were put back.
    DriftHeal {
        fields: Vec<String>,
    },
    /// Another attempt after a failed one.
    Retry,
    /// The newest release tag was removed: the environment went back to an earlier release.
    ReleaseTagRemoved {
        from: String,
    },
    /// `berth rollback` (from this revision).
    Rollback {
        from: String,
    },
    Paused {
        reason: String,
    },
    Resumed,
    Unpinned,
    /// Deleted: its folder is gone from git and the environment prunes.
    Pruned,
    /// Not recorded (the history AWS keeps without a state table).
    Unknown,
}

impl std::fmt::Display for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Trigger::GitChange => f.write_str("git change"),
            Trigger::DriftHeal { fields } => write!(f, "drift heal ({})", fields.join(", ")),
            Trigger::Retry => f.write_str("retry"),
            Trigger::ReleaseTagRemoved { from } => write!(f, "release tag removed (was {from})"),
            Trigger::Rollback { from } => write!(f, "rollback (from {from})"),
            Trigger::Paused { reason } => write!(f, "paused: {reason}"),
            Trigger::Resumed => f.write_str("resumed"),
            Trigger::Unpinned => f.write_str("unpinned"),
            Trigger::Pruned => f.write_str("pruned"),
            Trigger::Unknown => f.write_str("-"),
        }
    }
}

/// One apply or operator action.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Unix seconds.
    pub time: f64,
    pub env: String,
    pub service: String,
    pub commit: String,
    pub spec_hash: String,
    /// The task definition revision ARN the service runs after it.
    pub revision: String,
    pub image: String,
    pub trigger: Trigger,
    /// `applied`, `completed` (its rollout finished), `failed`, `rollout_failed`, or the
    /// operator action (`paused`, …).
    pub result: String,
    /// How long the apply and its rollout took, once known.
    #[serde(default)]
    pub duration_s: Option<f64>,
    /// `berth` (the daemon or `apply`) or the operator.
    pub by: String,
    #[serde(default)]
    pub error: Option<String>,
    /// The scalable target the apply set (a rollback to this revision restores it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling: Option<crate::core::desired::ScalableTarget>,
}

/// Who runs a command: `BERTH_ACTOR`, else the login name.
pub fn actor() -> String {
    ["BERTH_ACTOR", "USER", "LOGNAME"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "unknown".to_string())
}

pub fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64()
}

impl Entry {
    /// An operator's action on `live` (its revision, commit and spec as they are).
    pub fn operator(env: &str, service: &str, trigger: Trigger, live: &LiveService) -> Entry {
        let result = match &trigger {
            Trigger::Paused { .. } => "paused",
            Trigger::Resumed => "resumed",
            Trigger::Unpinned => "unpinned",
            Trigger::Pruned => "pruned",
            _ => "applied",
        };
        Entry {
            time: unix_now(),
            env: env.to_string(),
            service: service.to_string(),
            commit: live.tag(tags::COMMIT).unwrap_or_default().to_string(),
            spec_hash: live.tag(tags::SPEC_HASH).unwrap_or_default().to_string(),
            revision: live.settings.task_definition.clone(),
            image: String::new(),
            trigger,
            result: result.to_string(),
            duration_s: None,
            by: actor(),
            error: None,
            scaling: None,
        }
    }

    fn item(&self, ttl: Duration) -> StateItem {
        let ms = (self.time * 1000.0) as u64;
        StateItem {
            pk: format!("history#{}", self.env),
            sk: format!("{ms:015}#{}", self.service),
            service: self.service.clone(),
            body: serde_json::to_string(self).expect("an entry serializes"),
            ttl: self.time as u64 + ttl.as_secs(),
        }
    }
}

/// Writes (or, with the same time, env and service, overwrites) an entry. A missing table
/// is created when the config allows it. A failure is logged: history never fails an apply.
pub async fn put<C: Cloud>(cloud: &C, state: &StateConfig, entry: &Entry) {
    let item = entry.item(state.ttl);
    let mut result = cloud.put_state_item(&state.table, &item).await;
    if matches!(result, Err(AwsError::NotFound { .. })) && state.create {
        result = match cloud.ensure_state_table(&state.table).await {
            Ok(()) => cloud.put_state_item(&state.table, &item).await,
            Err(e) => Err(e),
        };
    }
    if let Err(e) = result {
        tracing::warn!(table = %state.table, service = %entry.service, error = %e, "cannot record the apply in the history table");
    }
}

/// [`put`], when the config names a state table.
pub async fn record_now<C: Cloud>(config: &Config, cloud: &C, entry: Entry) {
    if let Some(state) = &config.state {
        put(cloud, state, &entry).await;
    }
}

/// The newest entries of an environment (of one service), newest first.
pub async fn list<C: Cloud>(
    cloud: &C,
    state: &StateConfig,
    env: &str,
    service: Option<&str>,
    limit: usize,
) -> Result<Vec<Entry>, AwsError> {
    let items = cloud.query_state_items(&state.table, &format!("history#{env}"), service, limit).await?;
    Ok(items.iter().filter_map(|i| serde_json::from_str(&i.body).ok()).collect())
}

/// The scalable target recorded with the newest apply of `revision`, if any.
pub async fn scaling_of<C: Cloud>(
    config: &Config,
    cloud: &C,
    env: &str,
    service: &str,
    revision: &str,
) -> Option<crate::core::desired::ScalableTarget> {
    let state = config.state.as_ref()?;
    let entries = list(cloud, state, env, Some(service), 200).await.ok()?;
    entries.into_iter().filter(|e| e.revision == revision && e.by == "berth").find_map(|e| e.scaling)
}

/// The revision of the newest entry of `service` whose rollout completed and that is not
/// `current`: where a rollback returns by default.
pub async fn last_completed<C: Cloud>(
    config: &Config,
    cloud: &C,
    env: &str,
    service: &str,
    current: &str,
) -> Option<String> {
    let state = config.state.as_ref()?;
    match list(cloud, state, env, Some(service), 200).await {
        Ok(entries) => (entries.into_iter())
            .find(|e| e.result == "completed" && !e.revision.is_empty() && e.revision != current)
            .map(|e| e.revision),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the history table; falling back to the family's revisions");
            None
        }
    }
}
