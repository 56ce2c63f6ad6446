//! Notifications: what berth did, told to Slack, a signed webhook, or GitHub (commit
//! statuses and deployments). Delivery runs beside the reconcile and never blocks or fails
//! it: each sink has its own bounded queue (the oldest notice is dropped when it is full)
//! and its own task, which retries a failed delivery with backoff.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde::Serialize;
use tokio::sync::Notify;

use super::metrics::labels;
use crate::core::config::{SinkConfig, SinkKind};

/// Attempts per notice, and the pause before each retry.
const BACKOFF: [Duration; 3] = [Duration::from_secs(1), Duration::from_secs(2), Duration::from_secs(4)];

/// One thing berth did. No secret value is ever part of it: references only.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Notice {
    /// One of [`crate::core::config::EVENTS`].
    pub event: &'static str,
    pub env: String,
    pub service: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// The fields an apply changed (or a heal put back).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
    /// One line for people.
    pub message: String,
    /// Unix seconds.
    pub time: f64,
}

struct Sink {
    config: SinkConfig,
    queue: Mutex<VecDeque<Notice>>,
    wake: Notify,
}

/// The sinks of a config and their queues; [`Notifier::start`] spawns their tasks.
#[derive(Clone)]
pub struct Notifier {
    sinks: Vec<Arc<Sink>>,
    /// `berth_notifications_total{sink,result}`: `sent`, `failed` (after the retries), `dropped`.
    pub counts: Family<Vec<(String, String)>, Counter>,
}

impl Notifier {
    pub fn new(sinks: &[SinkConfig]) -> Notifier {
        let sinks = sinks
            .iter()
            .map(|c| Arc::new(Sink { config: c.clone(), queue: Mutex::new(VecDeque::new()), wake: Notify::new() }))
            .collect();
        Notifier { sinks, counts: Family::default() }
    }

    /// Spawns one delivery task per sink; each ends with the process.
    pub fn start(&self) {
        for sink in &self.sinks {
            let (sink, counts) = (sink.clone(), self.counts.clone());
            tokio::spawn(async move { deliver_forever(sink, counts).await });
        }
    }

    /// Whether any sink is configured (no notice is built otherwise).
    pub fn has_sinks(&self) -> bool {
        !self.sinks.is_empty()
    }

    /// Queues `notice` for every sink that wants its event and environment. Never waits.
    pub fn send(&self, notice: &Notice) {
        for sink in &self.sinks {
            let c = &sink.config;
            let wanted = (c.events.is_empty() || c.events.iter().any(|e| e == notice.event))
                && (c.envs.is_empty() || c.envs.contains(&notice.env));
            if !wanted {
                continue;
            }
            let dropped = {
                let mut q = sink.queue.lock().expect("queue lock");
                let dropped = if q.len() >= c.queue { q.pop_front().is_some() } else { false };
                q.push_back(notice.clone());
                dropped
            };
            if dropped {
                self.counts.get_or_create(&labels(&[("sink", &c.name), ("result", "dropped")])).inc();
            }
            sink.wake.notify_one();
        }
    }

    /// The notices waiting for each sink (for the tests and `/status`).
    pub fn queued(&self) -> Vec<(String, usize)> {
        self.sinks.iter().map(|s| (s.config.name.clone(), s.queue.lock().expect("queue lock").len())).collect()
    }
}

async fn deliver_forever(sink: Arc<Sink>, counts: Family<Vec<(String, String)>, Counter>) {
    loop {
        let next = sink.queue.lock().expect("queue lock").pop_front();
        let Some(notice) = next else {
            sink.wake.notified().await;
            continue;
        };
        let name = &sink.config.name;
        let mut result = deliver(&sink.config, &notice).await;
        for pause in BACKOFF {
            if result.is_ok() {
                break;
            }
            tokio::time::sleep(pause).await;
            result = deliver(&sink.config, &notice).await;
        }
        let outcome = match &result {
            Ok(()) => "sent",
            Err(e) => {
                tracing::warn!(sink = %name, event = notice.event, service = %notice.service, error = %e, "cannot deliver a notification");
                "failed"
            }
        };
        counts.get_or_create(&labels(&[("sink", name), ("result", outcome)])).inc();
    }
}

fn env_var(name: &str) -> anyhow::Result<String> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| anyhow::anyhow!("the environment variable {name} is not set"))
}

/// `sha256=<hex HMAC-SHA256 of body>`, the webhook sink's `X-Berth-Signature-256`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    use hmac::{KeyInit as _, Mac as _};
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

async fn post(url: &str, headers: &[(&str, String)], body: Vec<u8>) -> anyhow::Result<String> {
    let mut all = vec![
        ("content-type", "application/json".to_string()),
        ("user-agent", concat!("berth/", env!("CARGO_PKG_VERSION")).to_string()),
    ];
    all.extend(headers.iter().cloned());
    let (status, answer) = crate::http::request(hyper::Method::POST, url, &all, Some(body)).await?;
    if !status.is_success() {
        // Not the URL: a Slack (or signed) webhook's URL is its credential.
        anyhow::bail!("HTTP {status}");
    }
    Ok(answer)
}

async fn deliver(sink: &SinkConfig, n: &Notice) -> anyhow::Result<()> {
    match &sink.kind {
        SinkKind::Slack { url_env } => {
            let body = serde_json::json!({ "text": format!("berth {}/{}: {}", n.env, n.service, n.message) });
            post(&env_var(url_env)?, &[], body.to_string().into_bytes()).await.map(drop)
        }
        SinkKind::Webhook { url, url_env, secret_env } => {
            let url = match (url, url_env) {
                (Some(u), _) => u.clone(),
                (None, Some(e)) => env_var(e)?,
                (None, None) => anyhow::bail!("no url"),
            };
            let body = serde_json::to_vec(n)?;
            let mut headers = vec![("x-berth-event", n.event.to_string())];
            if let Some(e) = secret_env {
                headers.push(("x-berth-signature-256", signature(env_var(e)?.as_bytes(), &body)));
            }
            post(&url, &headers, body).await.map(drop)
        }
        SinkKind::GitHub { token_env, repo, api_url } => {
            let Some(commit) = n.commit.as_deref().filter(|c| c.len() == 40) else { return Ok(()) };
            let token = env_var(token_env)?;
            let auth = [("authorization", format!("Bearer {token}")), ("accept", "application/vnd.github+json".into())];
            let state = match n.event {
                "failed" | "rollout_failed" => "failure",
                _ => "success",
            };
            let context = format!("berth/{}/{}", n.env, n.service);
            let description: String = n.message.chars().take(140).collect();
            let status = serde_json::json!({"state": state, "context": context, "description": description});
            post(&format!("{api_url}/repos/{repo}/statuses/{commit}"), &auth, status.to_string().into_bytes()).await?;
            if !matches!(n.event, "applied" | "failed" | "rollout_failed" | "rolled_back") {
                return Ok(());
            }
            // A deployment of the commit to the environment, and how it ended.
            let deployment = serde_json::json!({
                "ref": commit, "environment": n.env, "auto_merge": false, "required_contexts": [],
                "task": format!("deploy:{}", n.service), "description": description,
            });
            let answer =
                post(&format!("{api_url}/repos/{repo}/deployments"), &auth, deployment.to_string().into_bytes())
                    .await?;
            let id = serde_json::from_str::<serde_json::Value>(&answer).ok().and_then(|v| v["id"].as_u64());
            if let Some(id) = id {
                let s = serde_json::json!({"state": if state == "success" { "success" } else { "failure" }, "environment": n.env, "description": description});
                post(&format!("{api_url}/repos/{repo}/deployments/{id}/statuses"), &auth, s.to_string().into_bytes())
                    .await?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::config::SinkKind;

    fn sink(events: &[&str], envs: &[&str], queue: usize) -> SinkConfig {
        SinkConfig {
            name: "hook".into(),
            kind: SinkKind::Webhook { url: Some("http://127.0.0.1:9/x".into()), url_env: None, secret_env: None },
            events: events.iter().map(|s| s.to_string()).collect(),
            envs: envs.iter().map(|s| s.to_string()).collect(),
            queue,
        }
    }

    fn notice(event: &'static str, env: &str) -> Notice {
        Notice {
            event,
            env: env.into(),
            service: "web".into(),
            commit: None,
            image: None,
            revision: None,
            fields: vec![],
            message: "m".into(),
            time: 0.0,
        }
    }

    #[test]
    fn sinks_filter_and_a_full_queue_drops_the_oldest() {
        let n = Notifier::new(&[sink(&["failed"], &["prod"], 2)]);
        n.send(&notice("applied", "prod"));
        n.send(&notice("failed", "pre"));
        assert_eq!(n.queued(), [("hook".to_string(), 0)]);
        for _ in 0..3 {
            n.send(&notice("failed", "prod"));
        }
        assert_eq!(n.queued(), [("hook".to_string(), 2)]);
        let dropped = n.counts.get_or_create(&labels(&[("sink", "hook"), ("result", "dropped")])).get();
        assert_eq!(dropped, 1);
    }

    #[test]
    fn the_signature_is_github_style_hmac_sha256() {
        // RFC 4231 test case 2.
        let sig = signature(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(sig, "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }
}
