//! Application Auto Scaling: targets and policies listed in pages of 50, and the writes.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_applicationautoscaling::types as aas;

use super::{Aws, AwsError, classify};
use crate::core::desired::{PredefinedMetric, ScalableTarget, ScalingPolicy, TargetTracking};
use crate::core::live::{LivePolicy, LiveScalableTarget};
use crate::core::render::SCALABLE_DIMENSION;

pub const PAGE: i32 = 50;

fn dimension() -> aas::ScalableDimension {
    aas::ScalableDimension::from(SCALABLE_DIMENSION)
}

impl Aws {
    /// The scalable targets of these resource ids (`service/<cluster>/<name>`).
    pub async fn describe_scalable_targets(
        &self,
        resource_ids: &[String],
    ) -> Result<BTreeMap<String, LiveScalableTarget>, AwsError> {
        let mut out = BTreeMap::new();
        for chunk in resource_ids.chunks(PAGE as usize) {
            let mut token = None;
            loop {
                let resp = self
                    .aas
                    .describe_scalable_targets()
                    .service_namespace(aas::ServiceNamespace::Ecs)
                    .set_resource_ids(Some(chunk.to_vec()))
                    .scalable_dimension(dimension())
                    .max_results(PAGE)
                    .set_next_token(token)
                    .send()
                    .await
                    .map_err(|e| classify("DescribeScalableTargets", e))?;
                for t in resp.scalable_targets() {
                    out.insert(
                        t.resource_id().to_string(),
                        LiveScalableTarget {
                            target: ScalableTarget {
                                service_namespace: "ecs".into(),
                                resource_id: t.resource_id().to_string(),
                                scalable_dimension: t.scalable_dimension().as_str().to_string(),
                                min_capacity: t.min_capacity(),
                                max_capacity: t.max_capacity(),
                            },
                            role_arn: Some(t.role_arn().to_string()),
                        },
                    );
                }
                token = resp.next_token().map(str::to_string);
                if token.is_none() {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Every ECS scaling policy of the account and region, in pages of 50, grouped by
    /// resource id and kept for `resource_ids` only.
    pub async fn describe_scaling_policies(
        &self,
        resource_ids: &BTreeSet<String>,
    ) -> Result<BTreeMap<String, Vec<LivePolicy>>, AwsError> {
        let mut out: BTreeMap<String, Vec<LivePolicy>> = BTreeMap::new();
        let mut token = None;
        loop {
            let resp = self
                .aas
                .describe_scaling_policies()
                .service_namespace(aas::ServiceNamespace::Ecs)
                .max_results(PAGE)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| classify("DescribeScalingPolicies", e))?;
            for p in resp.scaling_policies() {
                if !resource_ids.contains(p.resource_id()) {
                    continue;
                }
                let tt = p.target_tracking_scaling_policy_configuration();
                let policy = ScalingPolicy {
                    policy_name: p.policy_name().to_string(),
                    service_namespace: "ecs".into(),
                    resource_id: p.resource_id().to_string(),
                    scalable_dimension: p.scalable_dimension().as_str().to_string(),
                    policy_type: p.policy_type().as_str().to_string(),
                    target_tracking_scaling_policy_configuration: TargetTracking {
                        target_value: tt.map_or(0.0, |t| t.target_value()),
                        predefined_metric_specification: PredefinedMetric {
                            predefined_metric_type: tt
                                .and_then(|t| t.predefined_metric_specification())
                                .map(|m| m.predefined_metric_type().as_str().to_string())
                                .unwrap_or_default(),
                        },
                        scale_in_cooldown: tt.and_then(|t| t.scale_in_cooldown()),
                        scale_out_cooldown: tt.and_then(|t| t.scale_out_cooldown()),
                    },
                };
                out.entry(p.resource_id().to_string())
                    .or_default()
                    .push(LivePolicy { arn: p.policy_arn().to_string(), policy });
            }
            token = resp.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        Ok(out)
    }

    pub async fn register_scalable_target(&self, t: &ScalableTarget) -> Result<(), AwsError> {
        self.aas
            .register_scalable_target()
            .service_namespace(aas::ServiceNamespace::Ecs)
            .resource_id(&t.resource_id)
            .scalable_dimension(dimension())
            .min_capacity(t.min_capacity)
            .max_capacity(t.max_capacity)
            .send()
            .await
            .map_err(|e| classify("RegisterScalableTarget", e))?;
        Ok(())
    }

    pub async fn put_scaling_policy(&self, p: &ScalingPolicy) -> Result<(), AwsError> {
        let t = &p.target_tracking_scaling_policy_configuration;
        let metric = aas::PredefinedMetricSpecification::builder()
            .predefined_metric_type(aas::MetricType::from(
                t.predefined_metric_specification.predefined_metric_type.as_str(),
            ))
            .build()
            .map_err(|e| AwsError::other("PutScalingPolicy", e.to_string()))?;
        let config = aas::TargetTrackingScalingPolicyConfiguration::builder()
            .target_value(t.target_value)
            .predefined_metric_specification(metric)
            .set_scale_in_cooldown(t.scale_in_cooldown)
            .set_scale_out_cooldown(t.scale_out_cooldown)
            .build()
            .map_err(|e| AwsError::other("PutScalingPolicy", e.to_string()))?;
        self.aas
            .put_scaling_policy()
            .policy_name(&p.policy_name)
            .service_namespace(aas::ServiceNamespace::Ecs)
            .resource_id(&p.resource_id)
            .scalable_dimension(dimension())
            .policy_type(aas::PolicyType::TargetTrackingScaling)
            .target_tracking_scaling_policy_configuration(config)
            .send()
            .await
            .map_err(|e| classify("PutScalingPolicy", e))?;
        Ok(())
    }

    pub async fn delete_scaling_policy(&self, name: &str, resource_id: &str) -> Result<(), AwsError> {
        self.aas
            .delete_scaling_policy()
            .policy_name(name)
            .service_namespace(aas::ServiceNamespace::Ecs)
            .resource_id(resource_id)
            .scalable_dimension(dimension())
            .send()
            .await
            .map_err(|e| classify("DeleteScalingPolicy", e))?;
        Ok(())
    }

    pub async fn deregister_scalable_target(&self, resource_id: &str) -> Result<(), AwsError> {
        self.aas
            .deregister_scalable_target()
            .service_namespace(aas::ServiceNamespace::Ecs)
            .resource_id(resource_id)
            .scalable_dimension(dimension())
            .send()
            .await
            .map_err(|e| classify("DeregisterScalableTarget", e))?;
        Ok(())
    }
}
