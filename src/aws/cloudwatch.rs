//! CloudWatch: berth's own per-service gauges, for teams that alarm in CloudWatch.

use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};

use std::collections::BTreeMap;

use super::{Aws, AwsError, classify};
use crate::core::dashboard::LiveDashboard;

/// The bodies of the dashboards read, by name, with the (last modified, size) they were
/// read at: a listing that shows both unchanged needs no GetDashboard.
#[derive(Default)]
pub struct DashboardCache(BTreeMap<String, ((i64, i64), serde_json::Value)>);

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

    /// The dashboards whose names start with `prefix` (ListDashboards, all pages), with
    /// their bodies: GetDashboard only for one that is new or changed since it was read.
    pub async fn list_dashboards(&self, prefix: &str) -> Result<Vec<LiveDashboard>, AwsError> {
        let mut entries = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let page = (self.cloudwatch().list_dashboards())
                .dashboard_name_prefix(prefix)
                .set_next_token(next.take())
                .send()
                .await
                .map_err(|e| classify("ListDashboards", e))?;
            for e in page.dashboard_entries() {
                let stamp = (e.last_modified().map_or(0, |t| t.to_millis().unwrap_or(0)), e.size().unwrap_or(0));
                entries.push((e.dashboard_name().unwrap_or_default().to_string(), stamp));
            }
            match page.next_token() {
                Some(t) if !t.is_empty() => next = Some(t.to_string()),
                _ => break,
            }
        }
        let mut out = Vec::with_capacity(entries.len());
        for (name, stamp) in entries {
            let cached = self.dashboard_cache.lock().expect("dashboard cache").0.get(&name).cloned();
            let body = match cached {
                Some((at, body)) if at == stamp => body,
                _ => {
                    let got = (self.cloudwatch().get_dashboard())
                        .dashboard_name(&name)
                        .send()
                        .await
                        .map_err(|e| classify("GetDashboard", e))?;
                    // A body that is not JSON (edited by hand) is drift like any other.
                    let body: serde_json::Value =
                        serde_json::from_str(got.dashboard_body().unwrap_or("{}")).unwrap_or_default();
                    self.dashboard_cache.lock().expect("dashboard cache").0.insert(name.clone(), (stamp, body.clone()));
                    body
                }
            };
            out.push(LiveDashboard { name, body });
        }
        Ok(out)
    }

    /// PutDashboard. CloudWatch answers a body it cannot use with DashboardInvalidInputError.
    pub async fn put_dashboard(&self, name: &str, body: &serde_json::Value) -> Result<(), AwsError> {
        (self.cloudwatch().put_dashboard())
            .dashboard_name(name)
            .dashboard_body(body.to_string())
            .send()
            .await
            .map_err(|e| classify("PutDashboard", e))?;
        // Read again at the next listing (its stamp changed).
        self.dashboard_cache.lock().expect("dashboard cache").0.remove(name);
        Ok(())
    }
}
