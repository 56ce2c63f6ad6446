//! HTTP: `/metrics`, `/healthz`, `/readyz`, `/status` on the metrics listener, and
//! `POST /webhook/github` on the webhook listener.
//!
//! Neither listener can be held open: a request's headers must arrive within
//! [`HEADER_TIMEOUT`] and the whole request within [`REQUEST_TIMEOUT`], each listener
//! serves at most [`MAX_CONNECTIONS`] at once (more are closed at once), and a webhook
//! delivery seen lately (`X-GitHub-Delivery`) is not acted on again.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use tokio_util::sync::CancellationToken;

use crate::core::config::Source;
use crate::engine::daemon::Shared;
use crate::engine::metrics::CONTENT_TYPE;

/// Webhook bodies larger than this are refused (GitHub caps payloads at 25 MB; pushes are
/// far smaller).
pub const WEBHOOK_BODY_LIMIT: usize = 1024 * 1024;
/// A client has this long to send a request's headers (a slow-loris connection is closed).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// A request, body included, must be read and answered within this (a trickled body is cut).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections served at once per listener; the ones beyond are closed when accepted.
pub const MAX_CONNECTIONS: usize = 256;
/// Webhook deliveries remembered for replay detection: this many, for this long.
const DELIVERIES_KEPT: usize = 1024;
const DELIVERY_MEMORY: Duration = Duration::from_secs(3600);

pub fn status_router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/status", get(status))
        .route("/", get(index))
        .route("/services/{env}/{name}", get(service_page))
        .route("/api/v1/sync", post(sync))
        .layer(DefaultBodyLimit::max(WEBHOOK_BODY_LIMIT))
        .with_state(shared)
}

/// `Authorization: Bearer <token>` equal to the token in the environment variable
/// `api.token_env` names, compared in constant time. No token configured: nothing passes.
fn authorized(shared: &Shared, headers: &HeaderMap) -> Result<(), Box<Response>> {
    use subtle::ConstantTimeEq as _;
    let config = shared.config();
    let Some(api) = &config.api else {
        return Err(Box::new(
            (StatusCode::NOT_FOUND, "the API is off: set `api: {token_env: NAME}` in the agent config\n")
                .into_response(),
        ));
    };
    let expected = std::env::var(&api.token_env).unwrap_or_default();
    let given = (headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()))
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if expected.is_empty() || !bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
        tracing::warn!(token_env = %api.token_env, "API request with a missing or wrong bearer token refused");
        let refused =
            (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")], "missing or wrong bearer token\n");
        return Err(Box::new(refused.into_response()));
    }
    Ok(())
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SyncRequest {
    env: String,
    #[serde(default)]
    services: Vec<String>,
}

/// `POST /api/v1/sync {"env": E, "services": [..]}`: reconcile `env` now, with the named
/// services' backoff (or every service's) ended.
async fn sync(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(refused) = authorized(&shared, &headers) {
        return *refused;
    }
    let req: SyncRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return (StatusCode::BAD_REQUEST, format!("expected {{\"env\": NAME, \"services\": [NAME, …]}}: {e}\n"))
                .into_response();
        }
    };
    if shared.config().env(&req.env).is_none() {
        return (StatusCode::NOT_FOUND, format!("no environment `{}`\n", req.env)).into_response();
    }
    if !shared.leads(&req.env) {
        let body = format!(
            "this replica does not lead `{}` (it only reports on it): send the request to the leader, whose /readyz says `leader of {}`\n",
            req.env, req.env
        );
        return (StatusCode::CONFLICT, body).into_response();
    }
    let cleared = shared.services().clear_backoff(&req.env, &req.services);
    tracing::info!(env = %req.env, services = ?req.services, cleared = ?cleared, "sync requested through the API");
    shared.trigger([req.env.clone()]);
    (
        StatusCode::ACCEPTED,
        Json(serde_json::json!({"env": req.env, "services": req.services, "backoff_cleared": cleared})),
    )
        .into_response()
}

#[derive(Clone)]
struct WebhookState {
    shared: Arc<Shared>,
    secret: Arc<Vec<u8>>,
    /// Delivery ids lately acted on, oldest first.
    deliveries: Arc<Mutex<VecDeque<(String, Instant)>>>,
}

impl WebhookState {
    /// Remembers `id`; false when it was seen within [`DELIVERY_MEMORY`] (a replay).
    fn first_delivery(&self, id: &str) -> bool {
        let mut seen = self.deliveries.lock().expect("deliveries lock");
        let now = Instant::now();
        while seen.front().is_some_and(|(_, t)| now.duration_since(*t) > DELIVERY_MEMORY)
            || seen.len() >= DELIVERIES_KEPT
        {
            seen.pop_front();
        }
        if seen.iter().any(|(d, _)| d == id) {
            return false;
        }
        seen.push_back((id.to_string(), now));
        true
    }
}

pub fn webhook_router(shared: Arc<Shared>, secret: Vec<u8>) -> Router {
    Router::new()
        .route("/webhook/github", post(github))
        .layer(DefaultBodyLimit::max(WEBHOOK_BODY_LIMIT))
        .with_state(WebhookState { shared, secret: Arc::new(secret), deliveries: Arc::default() })
}

/// OpenMetrics for a scraper that asks for it (Prometheus does, first); the Prometheus text
/// format 0.0.4 for one that does not.
async fn metrics(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let text = shared.metrics_text();
    if accept.contains("application/openmetrics-text") {
        ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response()
    } else {
        let plain = crate::engine::metrics::to_text_format(&text);
        ([(header::CONTENT_TYPE, crate::engine::metrics::CONTENT_TYPE_TEXT)], plain).into_response()
    }
}

async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    match shared.not_ready() {
        None => match shared.roles() {
            Some(roles) => (StatusCode::OK, format!("ready: {roles}\n")).into_response(),
            None => (StatusCode::OK, "ready\n").into_response(),
        },
        Some(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")).into_response(),
    }
}

async fn index(
    State(shared): State<Arc<Shared>>,
    axum::extract::Query(filter): axum::extract::Query<crate::page::Filter>,
) -> Response {
    axum::response::Html(crate::page::index(&shared.status(), &filter)).into_response()
}

async fn service_page(
    State(shared): State<Arc<Shared>>,
    axum::extract::Path((env, name)): axum::extract::Path<(String, String)>,
) -> Response {
    let recent: Vec<_> = (shared.recent.lock().expect("recent lock").iter())
        .filter(|e| e.env == env && e.service == name)
        .cloned()
        .collect();
    match crate::page::service(&shared.status(), &env, &name, &recent) {
        Some(page) => axum::response::Html(page).into_response(),
        None => (StatusCode::NOT_FOUND, format!("no service `{name}` in environment `{env}`\n")).into_response(),
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
    // Signed, so a replay is a genuine delivery sent again: answered, not acted on.
    if let Some(id) = headers.get("x-github-delivery").and_then(|v| v.to_str().ok())
        && !state.first_delivery(id)
    {
        tracing::info!(delivery = id, "replayed webhook delivery ignored");
        return (StatusCode::OK, Json(serde_json::json!({"duplicate": id}))).into_response();
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

/// Serves `router` on `addr` until `cancel`; then lets the requests in flight finish.
pub async fn serve(
    addr: SocketAddr,
    router: Router,
    cancel: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener =
        tokio::net::TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    tracing::info!(%addr, "listening");
    let router = router.layer(axum::middleware::from_fn(within_request_timeout));
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    Ok(tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let stream = tokio::select! {
                () = cancel.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of file descriptors and the like: pause instead of spinning.
                        tracing::warn!(%addr, error = %e, "cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                tracing::debug!(%addr, "connection limit reached; closing a new connection");
                continue;
            };
            let (router, cancel) = (router.clone(), cancel.clone());
            connections.spawn(async move {
                let _slot = slot;
                let service = hyper_util::service::TowerToHyperService::new(router);
                let mut http = hyper::server::conn::http1::Builder::new();
                http.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT);
                let conn = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                tokio::pin!(conn);
                tokio::select! {
                    _ = conn.as_mut() => {}
                    () = cancel.cancelled() => {
                        conn.as_mut().graceful_shutdown();
                        let _ = tokio::time::timeout(REQUEST_TIMEOUT, conn).await;
                    }
                }
            });
            while connections.try_join_next().is_some() {}
        }
        while connections.join_next().await.is_some() {}
    }))
}

/// Answers 408 to a request that is not read and handled within [`REQUEST_TIMEOUT`].
async fn within_request_timeout(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
        Ok(response) => response,
        Err(_) => (StatusCode::REQUEST_TIMEOUT, "the request took too long to arrive\n").into_response(),
    }
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
