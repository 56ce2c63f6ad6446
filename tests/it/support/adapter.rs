//! For tests of berth's AWS adapters in process (`routing_aws.rs`, `security_groups_aws.rs`):
//! a client as berth makes one, against a test endpoint, and small readers of boto3 output.

use std::sync::Arc;

use berth::aws::{Aws, RequestStats};
use berth::core::config::AwsConfig;
use berth::core::desired::Tag;
use serde_json::Value;

pub fn tag(key: &str, value: &str) -> Tag {
    Tag { key: key.into(), value: value.into() }
}

/// The string at `path` (a JSON pointer) of `v`.
pub fn s(v: &Value, path: &str) -> String {
    v.pointer(path).and_then(Value::as_str).unwrap_or_else(|| panic!("no {path} in {v}")).to_string()
}

/// A client of `endpoint` as berth makes one, with moto's dummy credentials.
pub async fn client(endpoint: &str, stats: Arc<RequestStats>) -> Aws {
    let mut config = AwsConfig::new("us-east-1");
    config.endpoint_url = Some(endpoint.to_string());
    config.max_attempts = 2;
    let credentials = aws_credential_types::Credentials::new("test", "test", None, None, "moto");
    Aws::connect_with_credentials(&config, stats, credentials).await
}
