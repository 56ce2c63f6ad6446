//! AWS adapters: ECS, Application Auto Scaling, SSM Parameter Store, Secrets Manager, ECR,
//! STS, CloudWatch, DynamoDB, ELBv2, Route53 and EC2 (security groups). SDK types stay inside this module; callers
//! see berth's own types.
//!
//! Every HTTP request (each retry attempt too) is counted by api, operation and result.

pub mod answers;
mod autoscaling;
mod cloudwatch;
mod convert;
mod ec2;
mod ecs;
mod elbv2;
mod lookups;
mod route53;
mod state;
mod stats;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

pub use cloudwatch::Datum;
pub use ecs::TaskState;
pub use lookups::{EcrImage, Item, Verified, VerifyRequest};

/// The ECR image an image reference names, when it is in this region's ECR.
pub fn lookups_image(image: &str, region: &str) -> Option<EcrImage> {
    EcrImage::parse(image, region)
}
pub use state::StateItem;
pub use stats::{RequestKey, RequestStats};

use crate::core::config::AwsConfig;

/// An AWS failure, classified: the scheduler's retry decision and the metrics' `result`
/// label come from the class.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AwsError {
    #[error("{operation}: throttled: {message}")]
    Throttled { operation: String, message: String },
    #[error("{operation}: not found: {message}")]
    NotFound { operation: String, message: String },
    #[error("{operation}: access denied: {message}")]
    AccessDenied { operation: String, message: String },
    /// No answer, a timeout or a 5xx: AWS (or the way to it) is not available.
    #[error("{operation}: unavailable: {message}")]
    Unavailable { operation: String, message: String },
    #[error("{operation}: {message}")]
    Other { operation: String, message: String },
}

impl AwsError {
    pub fn is_throttled(&self) -> bool {
        matches!(self, AwsError::Throttled { .. })
    }

    /// The error of a call made with an environment's assumed role: when the role could
    /// not be assumed, STS's answer under `AssumeRole <arn>`, classed by its code.
    pub fn with_role(self, arn: &str) -> AwsError {
        let text = self.to_string();
        if !(text.contains("credentials") || text.contains("AssumeRole")) {
            return self;
        }
        let operation = format!("AssumeRole {arn}");
        let message = text;
        if message.contains("AccessDenied") || message.contains("not authorized") {
            AwsError::AccessDenied { operation, message }
        } else if message.contains("Throttl") {
            AwsError::Throttled { operation, message }
        } else {
            AwsError::Other { operation, message }
        }
    }

    pub(crate) fn other(operation: &str, message: impl Into<String>) -> AwsError {
        AwsError::Other { operation: operation.into(), message: message.into() }
    }
}

pub(crate) fn classify<E>(
    operation: &str,
    err: SdkError<E, aws_smithy_runtime_api::client::orchestrator::HttpResponse>,
) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let code = err.code().unwrap_or_default().to_string();
    let message = match err.message() {
        Some(m) => format!("{code}: {m}"),
        // Without a code and message the SDK's text carries the raw answer (its headers
        // and body): keep the cause, not the dump.
        None => {
            let full = aws_smithy_types::error::display::DisplayErrorContext(&err).to_string();
            match err.raw_response().map(|r| r.status()) {
                // A service answered something the SDK cannot read: its status and the cause.
                Some(status) => {
                    let cause: String =
                        full.split(" (ServiceError").next().unwrap_or(&full).chars().take(300).collect();
                    format!("HTTP {}: {cause}", status.as_u16())
                }
                // No answer (a refused connection, the credential chain): the whole chain of causes.
                None => full,
            }
        }
    };
    let operation = operation.to_string();
    let server_error = err.raw_response().is_some_and(|r| r.status().is_server_error());
    let unanswered =
        matches!(err, SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_));
    if stats::is_throttling_code(&code) {
        AwsError::Throttled { operation, message }
    } else if stats::is_not_found_code(&code) {
        AwsError::NotFound { operation, message }
    } else if code.contains("AccessDenied") || code == "UnauthorizedOperation" || code == "UnrecognizedClientException"
    {
        AwsError::AccessDenied { operation, message }
    } else if unanswered || server_error {
        AwsError::Unavailable { operation, message }
    } else {
        AwsError::Other { operation, message }
    }
}

/// Lookups (DescribeSecret, BatchGetImage, DescribeTaskDefinition, parameter chunks) in
/// flight at once.
pub const CONCURRENT_LOOKUPS: usize = 8;

/// Runs `lookups` with at most [`CONCURRENT_LOOKUPS`] in flight; answers come in the order
/// they finish.
pub async fn concurrently<F: std::future::Future>(lookups: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    use futures::StreamExt as _;
    futures::stream::iter(lookups).buffer_unordered(CONCURRENT_LOOKUPS).collect().await
}

/// The AWS clients of one region, with a request counter and the task-definition cache.
pub struct Aws {
    pub(crate) ecs: aws_sdk_ecs::Client,
    pub(crate) aas: aws_sdk_applicationautoscaling::Client,
    pub(crate) ssm: aws_sdk_ssm::Client,
    pub(crate) sm: aws_sdk_secretsmanager::Client,
    pub(crate) ecr: aws_sdk_ecr::Client,
    sts: std::sync::OnceLock<aws_sdk_sts::Client>,
    /// Made on first use: most configs never publish to CloudWatch or use a table, and an
    /// SDK client costs memory and touches code pages the idle daemon would keep.
    cloudwatch: std::sync::OnceLock<aws_sdk_cloudwatch::Client>,
    ddb: std::sync::OnceLock<aws_sdk_dynamodb::Client>,
    elb: std::sync::OnceLock<aws_sdk_elasticloadbalancingv2::Client>,
    route53: std::sync::OnceLock<aws_sdk_route53::Client>,
    ec2: std::sync::OnceLock<aws_sdk_ec2::Client>,
    sdk: aws_config::SdkConfig,
    counter: stats::Counter,
    pub stats: Arc<RequestStats>,
    td_cache: Mutex<ecs::TaskDefinitionCache>,
    verify_cache: Mutex<lookups::VerifyCache>,
    elb_cache: Mutex<elbv2::ElbCache>,
    dashboard_cache: Mutex<cloudwatch::DashboardCache>,
    account: tokio::sync::OnceCell<String>,
    pub config: AwsConfig,
    /// Attempts of a write berth retries itself (RegisterTaskDefinition).
    max_attempts: u32,
}

impl Aws {
    /// Clients from the SDK's default credential chain (env, profile, web identity, ECS task
    /// role, IMDS), with the standard retry mode (exponential backoff with jitter, per call)
    /// and the config's timeouts: a connection that does not open, or an attempt that does
    /// not answer, in time is abandoned and retried, so one slow request does not hold a
    /// whole batch. (The adaptive mode's client-wide rate limiter slowed every later call
    /// of an apply to under one per second after a single throttled one: 60 s instead of
    /// 4 s in `throttling_is_retried_and_makes_no_duplicate_revisions`.)
    pub async fn connect(config: &AwsConfig, stats: Arc<RequestStats>) -> Aws {
        Self::connect_from(config, stats, None).await
    }

    /// As [`Aws::connect`], with `credentials` in place of the default chain (the source of
    /// the role, if one is assumed): an in-process client of a test endpoint, which reads no
    /// environment.
    pub async fn connect_with_credentials(
        config: &AwsConfig,
        stats: Arc<RequestStats>,
        credentials: aws_credential_types::Credentials,
    ) -> Aws {
        Self::connect_from(config, stats, Some(credentials)).await
    }

    async fn connect_from(
        config: &AwsConfig,
        stats: Arc<RequestStats>,
        credentials: Option<aws_credential_types::Credentials>,
    ) -> Aws {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(config.region.clone()))
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(config.max_attempts)
                    .with_initial_backoff(Duration::from_millis(200)),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(config.connect_timeout)
                    .operation_attempt_timeout(config.attempt_timeout)
                    .operation_timeout(config.timeout)
                    .build(),
            );
        if let Some(endpoint) = &config.endpoint_url {
            loader = loader.endpoint_url(endpoint);
        }
        if let Some(credentials) = credentials {
            loader = loader.credentials_provider(credentials);
        }
        let mut sdk = loader.load().await;
        if let Some(role) = &config.role {
            // The environment's role, assumed with the default chain (or the given
            // credentials) as the source; the SDK's identity cache asks for new
            // credentials before these expire.
            let mut builder = aws_config::sts::AssumeRoleProvider::builder(&role.arn)
                .session_name(&role.session_name)
                .session_length(role.duration)
                .region(Region::new(config.region.clone()))
                .configure(&sdk);
            if let Some(id) = &role.external_id {
                builder = builder.external_id(id);
            }
            let provider = builder.build().await;
            sdk = sdk
                .into_builder()
                .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(provider))
                .build();
        }
        let account = (config.role.as_ref())
            .and_then(|r| r.arn.split(':').nth(4).map(str::to_string))
            .or_else(|| config.account_id.clone())
            .unwrap_or_default();
        let counter = stats::Counter(stats.clone(), Arc::new(stats::Target { region: config.region.clone(), account }));
        Aws {
            // Whole bodies, so that an answer known already is not decoded again.
            ecs: aws_sdk_ecs::Client::from_conf(
                aws_sdk_ecs::config::Builder::from(&sdk)
                    .interceptor(counter.clone())
                    .http_client(answers::Buffered::https())
                    .build(),
            ),
            aas: aws_sdk_applicationautoscaling::Client::from_conf(
                aws_sdk_applicationautoscaling::config::Builder::from(&sdk).interceptor(counter.clone()).build(),
            ),
            ssm: aws_sdk_ssm::Client::from_conf(
                aws_sdk_ssm::config::Builder::from(&sdk).interceptor(counter.clone()).build(),
            ),
            sm: aws_sdk_secretsmanager::Client::from_conf(
                aws_sdk_secretsmanager::config::Builder::from(&sdk).interceptor(counter.clone()).build(),
            ),
            ecr: aws_sdk_ecr::Client::from_conf(
                aws_sdk_ecr::config::Builder::from(&sdk).interceptor(counter.clone()).build(),
            ),
            sts: std::sync::OnceLock::new(),
            cloudwatch: std::sync::OnceLock::new(),
            ddb: std::sync::OnceLock::new(),
            elb: std::sync::OnceLock::new(),
            route53: std::sync::OnceLock::new(),
            ec2: std::sync::OnceLock::new(),
            sdk,
            counter,
            stats,
            td_cache: Mutex::new(ecs::TaskDefinitionCache::default()),
            verify_cache: Mutex::new(lookups::VerifyCache::default()),
            dashboard_cache: Mutex::new(cloudwatch::DashboardCache::default()),
            elb_cache: Mutex::new(elbv2::ElbCache::default()),
            account: tokio::sync::OnceCell::new(),
            config: config.clone(),
            max_attempts: config.max_attempts.max(1),
        }
    }

    pub(crate) fn cloudwatch(&self) -> &aws_sdk_cloudwatch::Client {
        self.cloudwatch.get_or_init(|| {
            let conf = aws_sdk_cloudwatch::config::Builder::from(&self.sdk).interceptor(self.counter.clone()).build();
            aws_sdk_cloudwatch::Client::from_conf(conf)
        })
    }

    pub(crate) fn ddb(&self) -> &aws_sdk_dynamodb::Client {
        self.ddb.get_or_init(|| {
            let conf = aws_sdk_dynamodb::config::Builder::from(&self.sdk).interceptor(self.counter.clone()).build();
            aws_sdk_dynamodb::Client::from_conf(conf)
        })
    }

    pub(crate) fn elb(&self) -> &aws_sdk_elasticloadbalancingv2::Client {
        self.elb.get_or_init(|| {
            let conf = aws_sdk_elasticloadbalancingv2::config::Builder::from(&self.sdk)
                .interceptor(self.counter.clone())
                .build();
            aws_sdk_elasticloadbalancingv2::Client::from_conf(conf)
        })
    }

    pub(crate) fn ec2(&self) -> &aws_sdk_ec2::Client {
        self.ec2.get_or_init(|| {
            let conf = aws_sdk_ec2::config::Builder::from(&self.sdk).interceptor(self.counter.clone()).build();
            aws_sdk_ec2::Client::from_conf(conf)
        })
    }

    /// Route53 is global: its API lives in one region of each partition, whatever the
    /// environment's region (a configured endpoint keeps the configured one).
    pub(crate) fn route53(&self) -> &aws_sdk_route53::Client {
        self.route53.get_or_init(|| {
            let mut conf = aws_sdk_route53::config::Builder::from(&self.sdk).interceptor(self.counter.clone());
            if self.config.endpoint_url.is_none() {
                let global = match self.config.partition() {
                    "aws-cn" => "cn-northwest-1",
                    "aws-us-gov" => "us-gov-west-1",
                    _ => "us-east-1",
                };
                conf = conf.region(Region::new(global));
            }
            aws_sdk_route53::Client::from_conf(conf.build())
        })
    }

    /// The account id: from the config, else asked of STS once.
    pub async fn account_id(&self) -> Result<String, AwsError> {
        if let Some(id) = &self.config.account_id {
            return Ok(id.clone());
        }
        self.account
            .get_or_try_init(|| async {
                let sts = self.sts.get_or_init(|| {
                    let conf = aws_sdk_sts::config::Builder::from(&self.sdk).interceptor(self.counter.clone()).build();
                    aws_sdk_sts::Client::from_conf(conf)
                });
                let out = sts.get_caller_identity().send().await.map_err(|e| classify("GetCallerIdentity", e))?;
                out.account()
                    .map(str::to_string)
                    .ok_or_else(|| AwsError::other("GetCallerIdentity", "no account in the answer"))
            })
            .await
            .cloned()
    }
}
