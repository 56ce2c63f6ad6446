//! Counting AWS requests by api, operation and result, with an SDK interceptor that sees
//! every attempt (so throttled attempts that a retry later hides are counted too).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::FinalizerInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestKey {
    /// The AWS target's region and account (the account of its role, or `aws.account_id`;
    /// empty when berth asks STS for it).
    pub region: String,
    pub account: String,
    /// `ecs`, `application-autoscaling`, `ssm`, `secretsmanager`, `ecr`, `sts`, `cloudwatch`,
    /// `dynamodb`, `elasticloadbalancing`, `route53`, `ec2` (the services' IAM prefixes).
    pub api: String,
    pub operation: String,
    /// `ok`, `throttled` or `error`.
    pub result: &'static str,
}

#[derive(Debug, Default)]
pub struct RequestStats {
    counts: Mutex<BTreeMap<RequestKey, u64>>,
}

impl RequestStats {
    pub fn new() -> Arc<RequestStats> {
        Arc::new(RequestStats::default())
    }

    pub fn record(&self, target: &Target, api: &str, operation: &str, result: &'static str) {
        let key = RequestKey {
            region: target.region.clone(),
            account: target.account.clone(),
            api: api.to_string(),
            operation: operation.to_string(),
            result,
        };
        *self.counts.lock().expect("stats lock").entry(key).or_default() += 1;
    }

    pub fn snapshot(&self) -> BTreeMap<RequestKey, u64> {
        self.counts.lock().expect("stats lock").clone()
    }

    /// Requests that change something (every operation but Describe*/List*/Get*).
    pub fn writes(&self) -> u64 {
        self.snapshot().iter().filter(|(k, _)| !is_read(&k.operation)).map(|(_, n)| n).sum()
    }
}

pub fn is_read(operation: &str) -> bool {
    ["Describe", "List", "Get", "BatchGet"].iter().any(|p| operation.starts_with(p))
}

pub fn is_throttling_code(code: &str) -> bool {
    matches!(
        code,
        "Throttling"
            | "ThrottlingException"
            | "ThrottledException"
            | "TooManyRequestsException"
            | "RequestLimitExceeded"
            | "RequestThrottled"
            | "RequestThrottledException"
            | "ProvisionedThroughputExceededException"
            | "SlowDown"
            | "PriorRequestNotComplete"
    )
}

/// An answer saying the thing asked about does not exist: berth expects these (a secret
/// not created yet, a service not there yet) and counts them apart from errors.
pub fn is_not_found_code(code: &str) -> bool {
    code.contains("NotFound") || code == "ParameterNotFound"
}

/// The error code of a failed answer, before the SDK parses it: the `X-Amzn-ErrorType`
/// header or the JSON `__type` (`ns#Code` or `Code:url`), or the Query/XML `<Code>`.
fn error_code(header: Option<&str>, body: &[u8]) -> Option<String> {
    let trim = |c: &str| {
        let c = c.split(':').next().unwrap_or(c);
        c.rsplit('#').next().unwrap_or(c).trim().to_string()
    };
    if let Some(h) = header.filter(|h| !h.is_empty()) {
        return Some(trim(h));
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(1024)]);
    if let Some(rest) = text.split("\"__type\"").nth(1) {
        return rest.split('"').nth(1).map(trim);
    }
    let code = text.split("<Code>").nth(1)?.split("</Code>").next()?;
    Some(trim(code))
}

fn api_label(service: &str) -> String {
    match service {
        "ECS" => "ecs".into(),
        "Application Auto Scaling" => "application-autoscaling".into(),
        "SSM" => "ssm".into(),
        "Secrets Manager" => "secretsmanager".into(),
        "ECR" => "ecr".into(),
        "STS" => "sts".into(),
        "CloudWatch" => "cloudwatch".into(),
        "Elastic Load Balancing v2" => "elasticloadbalancing".into(),
        "Route 53" => "route53".into(),
        "EC2" => "ec2".into(),
        other => other.to_ascii_lowercase().replace(' ', "-"),
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Counter(pub Arc<RequestStats>, pub Arc<Target>);

/// The labels of one set of clients' requests.
#[derive(Clone, Debug, Default)]
pub struct Target {
    pub region: String,
    pub account: String,
}

impl Intercept for Counter {
    fn name(&self) -> &'static str {
        "berth-request-counter"
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(meta) = cfg.load::<Metadata>() else { return Ok(()) };
        let result = match context.response() {
            Some(resp) if resp.status().is_success() => "ok",
            Some(resp) => {
                let body = resp.body().bytes().unwrap_or_default();
                let code = error_code(resp.headers().get("x-amzn-errortype"), body);
                if resp.status().as_u16() == 429 || code.as_deref().is_some_and(is_throttling_code) {
                    "throttled"
                } else if code.as_deref().is_some_and(is_not_found_code) {
                    "not_found"
                } else {
                    "error"
                }
            }
            None => "error",
        };
        self.0.record(&self.1, &api_label(meta.service()), meta.name(), result);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_come_from_the_header_json_or_xml() {
        assert_eq!(
            error_code(Some("ThrottlingException:http://internal"), b"").as_deref(),
            Some("ThrottlingException")
        );
        let json = br#"{"__type":"com.amazonaws.ecs#ThrottlingException","message":"Rate exceeded"}"#;
        assert_eq!(error_code(None, json).as_deref(), Some("ThrottlingException"));
        let xml = b"<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code></Error></ErrorResponse>";
        assert_eq!(error_code(None, xml).as_deref(), Some("Throttling"));
        assert_eq!(error_code(None, b"oops"), None);
        assert!(is_throttling_code("Throttling") && !is_throttling_code("AccessDeniedException"));
    }
}
