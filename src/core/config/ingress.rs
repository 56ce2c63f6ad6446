//! `environments.E.ingress`: the load balancers, host names and hosted zones an
//! environment's services are routed through (see docs/routing.md).

use schemars::JsonSchema;
use serde::Deserialize;

use crate::core::at::At;
use crate::core::diag::Diagnostic;

#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawIngress {
    /// The VPC of the target groups (`vpc-…`).
    pub vpc: Option<At<String>>,
    /// The internal load balancer's listener ARN: every routed service gets a rule there.
    pub internal_listener: Option<At<String>>,
    /// The internet-facing load balancer's listener ARN, for services with `external: true`.
    pub external_listener: Option<At<String>>,
    /// The internal host name pattern (default `{service}.{env}.internal.<domain>`).
    pub internal_host: Option<At<String>>,
    /// The external host name pattern (default `{service}.{env}.<domain>`).
    pub external_host: Option<At<String>>,
    /// The domain the default host patterns end in.
    pub domain: Option<At<String>>,
    /// The private hosted zone of the internal names (Route53 id); none: no records.
    pub private_zone: Option<At<String>>,
    /// The public hosted zone of the external names (Route53 id); none: no records.
    pub public_zone: Option<At<String>>,
    /// A listener for test traffic (another port of the internal load balancer): services
    /// with `rollout.strategy` blue-green, canary or linear get a rule there that ECS points
    /// at the new revision before production traffic moves. Optional.
    pub test_listener: Option<At<String>>,
    /// The IAM role ECS changes the listener rules with during a blue-green, canary or
    /// linear deployment (AWS's `AmazonECSInfrastructureRolePolicyForLoadBalancers`);
    /// needed by services with those strategies.
    #[schemars(transform = crate::core::schema::role_arn)]
    pub traffic_role: Option<At<String>>,
}

crate::core::at::stamp_fields! {
    RawIngress { vpc, internal_listener, external_listener, internal_host, external_host, domain, private_zone, public_zone, test_listener, traffic_role }
}

/// An environment's routing, checked.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IngressConfig {
    pub vpc: String,
    pub internal_listener: String,
    pub external_listener: Option<String>,
    /// Patterns with `{service}` and `{env}`.
    pub internal_host: String,
    pub external_host: Option<String>,
    pub private_zone: Option<String>,
    pub public_zone: Option<String>,
    pub test_listener: Option<String>,
    pub traffic_role: Option<String>,
}

impl IngressConfig {
    /// A host pattern filled in for one service.
    pub fn host(pattern: &str, service: &str, env: &str) -> String {
        pattern.replace("{service}", service).replace("{env}", env)
    }
}

pub(super) fn check(raw: &At<RawIngress>, diags: &mut Vec<Diagnostic>) -> Option<IngressConfig> {
    let start = diags.len();
    let text = |f: &Option<At<String>>| f.as_ref().map(|v| v.value.clone());
    let vpc = match &raw.vpc {
        Some(v) if v.starts_with("vpc-") => Some(v.value.clone()),
        Some(v) => {
            diags.push(Diagnostic::new(v.pos.clone(), format!("`{}` is not a VPC id (`vpc-…`)", v.value)));
            None
        }
        None => {
            diags.push(Diagnostic::new(raw.pos.clone(), "missing required field `vpc`"));
            None
        }
    };
    for l in [&raw.internal_listener, &raw.external_listener, &raw.test_listener].into_iter().flatten() {
        if !(l.starts_with("arn:") && l.contains(":listener/app/")) {
            diags.push(Diagnostic::new(
                l.pos.clone(),
                format!("`{}` is not an application load balancer listener ARN", l.value),
            ));
        }
    }
    if raw.internal_listener.is_none() {
        diags.push(Diagnostic::new(raw.pos.clone(), "missing required field `internal_listener`"));
    }
    let domain = text(&raw.domain).map(|d| d.trim_matches('.').to_string());
    let pattern = |f: &Option<At<String>>, key: &str, default: Option<String>, diags: &mut Vec<Diagnostic>| match f {
        Some(p) => {
            let filled = IngressConfig::host(&p.value, "svc", "env");
            if !p.value.contains("{service}") {
                diags.push(Diagnostic::new(
                    p.pos.clone(),
                    format!("`{key}` must contain `{{service}}`: each service needs a host name of its own"),
                ));
            } else if !crate::core::spec::valid_host(&filled) {
                diags.push(Diagnostic::new(p.pos.clone(), format!("`{}` is not a host name pattern", p.value)));
            }
            Some(p.value.clone())
        }
        None => default,
    };
    let internal_host = pattern(
        &raw.internal_host,
        "internal_host",
        domain.as_ref().map(|d| format!("{{service}}.{{env}}.internal.{d}")),
        diags,
    );
    let external_host = pattern(
        &raw.external_host,
        "external_host",
        domain.as_ref().map(|d| format!("{{service}}.{{env}}.{d}")),
        diags,
    );
    if internal_host.is_none() {
        diags.push(Diagnostic::new(raw.pos.clone(), "set `internal_host` (a pattern with `{service}`) or `domain`"));
    }
    if raw.external_listener.is_some() && external_host.is_none() {
        diags.push(Diagnostic::new(raw.pos.clone(), "set `external_host` (a pattern with `{service}`) or `domain`"));
    }
    if let Some(z) = &raw.public_zone
        && raw.external_listener.is_none()
    {
        diags.push(Diagnostic::new(z.pos.clone(), "`public_zone` holds external names: it needs `external_listener`"));
    }
    if let Some(t) = &raw.test_listener
        && [&raw.internal_listener, &raw.external_listener].into_iter().flatten().any(|l| l.value == t.value)
    {
        diags.push(Diagnostic::new(
            t.pos.clone(),
            "`test_listener` must be a listener of its own (another port of the internal load balancer)",
        ));
    }
    if let Some(r) = &raw.traffic_role
        && !(r.starts_with("arn:") && r.contains(":role/"))
    {
        diags.push(Diagnostic::new(r.pos.clone(), format!("`{}` is not an IAM role ARN", r.value)));
    }
    if diags.len() > start {
        return None;
    }
    let zone = |f: &Option<At<String>>| text(f).map(|z| z.trim_start_matches("/hostedzone/").to_string());
    Some(IngressConfig {
        vpc: vpc?,
        internal_listener: text(&raw.internal_listener)?,
        external_listener: text(&raw.external_listener),
        internal_host: internal_host?,
        external_host: external_host.filter(|_| raw.external_listener.is_some()),
        private_zone: zone(&raw.private_zone),
        public_zone: zone(&raw.public_zone),
        test_listener: text(&raw.test_listener),
        traffic_role: text(&raw.traffic_role),
    })
}
