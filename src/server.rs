//! HTTP: `/metrics`, `/healthz`, `/readyz`, `/status` on the metrics listener, and
//! `POST /webhook/github` on the webhook listener.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio_util::sync::CancellationToken;

use crate::core::config::Source;
use crate::engine::daemon::Shared;
use crate::engine::metrics::CONTENT_TYPE;

/// Webhook bodies larger than this are refused (GitHub caps payloads at 25 MB; pushes are
/// far smaller).
pub const WEBHOOK_BODY_LIMIT: usize = 1024 * 1024;

pub fn status_router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/status", get(status))
        .with_state(shared)
}

#[derive(Clone)]
struct WebhookState {
    shared: Arc<Shared>,
    secret: Arc<Vec<u8>>,
}

pub fn webhook_router(shared: Arc<Shared>, secret: Vec<u8>) -> Router {
    Router::new()
        .route("/webhook/github", post(github))
        .layer(DefaultBodyLimit::max(WEBHOOK_BODY_LIMIT))
        .with_state(WebhookState { shared, secret: Arc::new(secret) })
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], shared.metrics_text()).into_response()
}

async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    if shared.ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready: the first sync of every environment is not done\n")
            .into_response()
    }
}

async fn status(State(shared): State<Arc<Shared>>) -> Response {
    let status = shared.status();
    Json(status).into_response()
}

/// Checks `X-Hub-Signature-256: sha256=<hex>` over the raw body, in constant time.
pub fn verify_signature(secret: &[u8], body: &[u8], header: Option<&str>) -> bool {
    let Some(hex_sig) = header.and_then(|h| h.strip_prefix("sha256=")) else { return false };
    let Ok(sig) = hex::decode(hex_sig.trim()) else { return false };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else { return false };
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

async fn github(State(state): State<WebhookState>, headers: HeaderMap, body: Bytes) -> Response {
    let sig = headers.get("x-hub-signature-256").and_then(|v| v.to_str().ok());
    if !verify_signature(&state.secret, &body, sig) {
        tracing::warn!("webhook with a missing or bad signature refused");
        return (StatusCode::UNAUTHORIZED, "bad signature\n").into_response();
    }
    let event = headers.get("x-github-event").and_then(|v| v.to_str().ok()).unwrap_or("push");
    if event == "ping" {
        return (StatusCode::OK, "pong\n").into_response();
    }
    if event != "push" {
        return (StatusCode::ACCEPTED, Json(serde_json::json!({"ignored": event}))).into_response();
    }
    let Ok(payload) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "the body is not JSON\n").into_response();
    };
    let Some(pushed) = payload.get("ref").and_then(|r| r.as_str()) else {
        return (StatusCode::BAD_REQUEST, "no `ref` in the push\n").into_response();
    };
    let config = state.shared.config();
    let envs: Vec<String> = config
        .environments
        .values()
        .filter(|e| match &e.source {
            Source::Branch(b) => pushed == format!("refs/heads/{b}"),
            Source::SemverTags { .. } => pushed.starts_with("refs/tags/v"),
        })
        .map(|e| e.name.clone())
        .collect();
    tracing::info!(r#ref = pushed, envs = ?envs, "webhook push");
    if !envs.is_empty() {
        state.shared.trigger(envs.clone());
    }
    (StatusCode::ACCEPTED, Json(serde_json::json!({"triggered": envs}))).into_response()
}

/// Serves `router` on `addr` until `cancel`.
pub async fn serve(
    addr: SocketAddr,
    router: Router,
    cancel: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener =
        tokio::net::TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    tracing::info!(%addr, "listening");
    Ok(tokio::spawn(async move {
        let _ = axum::serve(listener, router).with_graceful_shutdown(async move { cancel.cancelled().await }).await;
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures() {
        let secret = b"It's a Secret to Everybody";
        let body = b"Hello, World!";
        // GitHub's documented example.
        let good = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert!(verify_signature(secret, body, Some(good)));
        assert!(!verify_signature(secret, b"Hello, World?", Some(good)));
        assert!(!verify_signature(secret, body, None));
        assert!(!verify_signature(secret, body, Some("sha1=abc")));
        assert!(!verify_signature(secret, body, Some("sha256=zz")));
    }
}
