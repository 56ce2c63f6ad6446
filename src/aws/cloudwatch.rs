//! CloudWatch: berth's own per-service gauges, for teams that alarm in CloudWatch.

use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};

use super::{Aws, AwsError, classify};

/// One value to publish.
#[derive(Clone, Debug, PartialEq)]
pub struct Datum {
    pub name: &'static str,
    pub env: String,
    pub service: String,
    pub value: f64,
}

/// PutMetricData takes at most 1,000 data points per request.
pub const BATCH: usize = 1000;

impl Aws {
    /// Publishes `data` under `namespace`, with dimensions Environment and Service, in
    /// batches.
    pub async fn put_metric_data(&self, namespace: &str, data: &[Datum]) -> Result<usize, AwsError> {
        let mut calls = 0;
        for chunk in data.chunks(BATCH) {
            let metrics: Vec<MetricDatum> = chunk
                .iter()
                .map(|d| {
                    MetricDatum::builder()
                        .metric_name(d.name)
                        .dimensions(Dimension::builder().name("Environment").value(&d.env).build())
                        .dimensions(Dimension::builder().name("Service").value(&d.service).build())
                        .value(d.value)
                        .unit(StandardUnit::Count)
                        .build()
                })
                .collect();
            self.cloudwatch()
                .put_metric_data()
                .namespace(namespace)
                .set_metric_data(Some(metrics))
                .send()
                .await
                .map_err(|e| classify("PutMetricData", e))?;
            calls += 1;
        }
        Ok(calls)
    }
}
