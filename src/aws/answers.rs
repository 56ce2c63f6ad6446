//! Answers known already: a read whose answer is byte for byte the one berth planned
//! against last time is not decoded again.
//!
//! A steady poll asks DescribeServices about every service and almost always gets the
//! same bytes back. Decoding them (the SDK's structures, berth's conversion, the memo's
//! fingerprint) was most of the daemon's CPU per poll. The ECS client's answers are
//! buffered whole ([`Buffered`], as the SDK does itself before decoding), so that a
//! per-request [`Since`] can digest the body: when the digest is the one the caller
//! names, the body is replaced by an empty object before the SDK decodes it, and the
//! caller is told [`Answer::Same`]. The request is still made, and any difference in
//! the answer (a console edit, a deployment's progress, a new event) is decoded as
//! before.

use std::sync::{Arc, Mutex};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeDeserializationInterceptorContextMut;
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::byte_stream::ByteStream;
use aws_smithy_types::config_bag::ConfigBag;

/// 128 bits of SHA-256 over an answer's body.
pub type Digest = [u8; 16];

/// What a read answered, given the digest of the answer the caller already knows.
#[derive(Debug)]
pub enum Answer<T> {
    /// The very answer of `known`: not decoded.
    Same,
    /// A different answer (or no digest was known), decoded; `digest` is `None` when the
    /// body could not be digested (an adapter without [`Buffered`]).
    New { value: T, digest: Option<Digest> },
}

pub fn digest(bytes: &[u8]) -> Digest {
    use sha2::Digest as _;
    let full = sha2::Sha256::digest(bytes);
    let mut out = [0; 16];
    out.copy_from_slice(&full[..16]);
    out
}

/// An HTTP client whose responses arrive with their bodies read whole.
#[derive(Debug, Clone)]
pub struct Buffered(SharedHttpClient);

impl Buffered {
    /// The SDK's default HTTPS client, as `aws-smithy-runtime` makes it for the current
    /// behaviour version (rustls with aws-lc, the proxy from the environment), buffered.
    pub fn https() -> SharedHttpClient {
        use aws_smithy_http_client::proxy::ProxyConfig;
        use aws_smithy_http_client::{Builder, ConnectorBuilder, tls};
        let inner = Builder::new().build_with_connector_fn(|settings, components| {
            let mut conn = ConnectorBuilder::default()
                .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::AwsLc));
            conn.set_connector_settings(settings.cloned());
            if let Some(components) = components {
                conn.set_sleep_impl(components.sleep_impl());
            }
            conn.set_proxy_config(Some(ProxyConfig::from_env()));
            conn.build()
        });
        SharedHttpClient::new(Buffered(inner))
    }
}

#[derive(Debug)]
struct BufferedConnector(SharedHttpConnector);

impl HttpClient for Buffered {
    fn http_connector(&self, settings: &HttpConnectorSettings, components: &RuntimeComponents) -> SharedHttpConnector {
        SharedHttpConnector::new(BufferedConnector(self.0.http_connector(settings, components)))
    }
}

impl HttpConnector for BufferedConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let inner = self.0.call(request);
        HttpConnectorFuture::new(async move {
            let mut response = inner.await?;
            let body =
                ByteStream::new(response.take_body()).collect().await.map_err(|e| ConnectorError::io(e.into()))?;
            *response.body_mut() = SdkBody::from(body.into_bytes());
            Ok(response)
        })
    }
}

/// One request's check of its answer against `known`; [`Since::answer`] after it.
#[derive(Debug, Clone)]
pub struct Since {
    known: Option<Digest>,
    seen: Arc<Mutex<Seen>>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Seen {
    digest: Option<Digest>,
    same: bool,
}

impl Since {
    pub fn new(known: Option<Digest>) -> Since {
        Since { known, seen: Arc::default() }
    }

    /// The answer of a request this checked (its last attempt's): `Same`, or `value`
    /// decoded from a new one.
    pub fn answer<T>(&self, value: T) -> Answer<T> {
        match *self.seen.lock().expect("answer lock") {
            Seen { same: true, .. } => Answer::Same,
            Seen { digest, .. } => Answer::New { value, digest },
        }
    }
}

impl Intercept for Since {
    fn name(&self) -> &'static str {
        "berth-answer-since"
    }

    fn modify_before_deserialization(
        &self,
        context: &mut BeforeDeserializationInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let response = context.response_mut();
        let mut seen = self.seen.lock().expect("answer lock");
        *seen = Seen::default();
        if !response.status().is_success() {
            return Ok(());
        }
        let Some(d) = response.body().bytes().map(digest) else { return Ok(()) };
        seen.digest = Some(d);
        if self.known == Some(d) {
            seen.same = true;
            // An empty object decodes as an answer with nothing in it; the caller knows
            // what it said from last time.
            *response.body_mut() = SdkBody::from("{}");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_tell_bodies_apart() {
        assert_eq!(digest(b"{\"services\":[]}"), digest(b"{\"services\":[]}"));
        assert_ne!(digest(b"{\"services\":[]}"), digest(b"{\"services\":[ ]}"));
    }
}
