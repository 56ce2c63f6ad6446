//! One HTTP client for berth's own requests: `berth status` and `berth sync` to the daemon,
//! and the notification sinks (http or https with the system's roots, answers chunked or
//! not). Each step is bounded by 10 s.

use anyhow::Context as _;
use axum::body::Bytes;
use http_body_util::{BodyExt as _, Full};

const LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Sends one request: its status and body. `headers` are added as given.
pub async fn request(
    method: hyper::Method,
    url: &str,
    headers: &[(&str, String)],
    body: Option<Vec<u8>>,
) -> anyhow::Result<(hyper::StatusCode, String)> {
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()
        .context("cannot load the system's TLS roots")?
        .https_or_http()
        .enable_http1()
        .build();
    let client: hyper_util::client::legacy::Client<_, Full<Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(https);
    let mut builder = hyper::Request::builder().method(method).uri(url).header("accept", "application/json");
    for (k, v) in headers {
        builder = builder.header(*k, v);
    }
    let request = builder.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
    let response = tokio::time::timeout(LIMIT, client.request(request)).await.context("no answer within 10 s")??;
    let status = response.status();
    let body =
        tokio::time::timeout(LIMIT, response.into_body().collect()).await.context("the answer took over 10 s")??;
    Ok((status, String::from_utf8_lossy(&body.to_bytes()).into_owned()))
}
