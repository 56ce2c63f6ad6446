//! A CloudWatch dashboard per (service, env), with `dashboards: cloudwatch` in the
//! environment: running tasks, CPU and memory, and for a routed service its target group's
//! requests, 5xx answers and latency. Kept equal to what berth renders (a console edit is
//! drift, healed like any other).

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Placeholders of the load balancer dimensions, filled in once the ARNs are known.
const TARGET_GROUP: &str = "{target_group}";
const LOAD_BALANCER: &str = "{load_balancer}";

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Dashboard {
    pub dashboard_name: String,
    /// The dashboard body (CloudWatch's JSON), with the load balancer dimensions as
    /// placeholders until the plan knows them.
    pub dashboard_body: Value,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LiveDashboard {
    pub name: String,
    pub body: Value,
}

/// `berth-<env>-<service>` (CloudWatch takes 255 characters of `A-Za-z0-9-_`).
pub fn dashboard_name(service: &str, env: &str) -> String {
    format!("berth-{env}-{service}")
}

/// The prefix of an environment's dashboards.
pub fn prefix(env: &str) -> String {
    format!("berth-{env}-")
}

fn widget(title: &str, x: i32, y: i32, region: &str, metrics: Value, stat: &str) -> Value {
    json!({
        "type": "metric", "x": x, "y": y, "width": 12, "height": 6,
        "properties": {"title": title, "region": region, "stat": stat, "period": 60, "view": "timeSeries", "metrics": metrics}
    })
}

pub fn render(service: &str, env: &str, cluster: &str, region: &str, routed: bool) -> Dashboard {
    let ecs = ["ClusterName", cluster, "ServiceName", service];
    let mut widgets = vec![
        widget(
            "Running tasks",
            0,
            0,
            region,
            json!([["ECS/ContainerInsights", "RunningTaskCount", ecs[0], ecs[1], ecs[2], ecs[3]]]),
            "Average",
        ),
        widget(
            "CPU and memory (%)",
            12,
            0,
            region,
            json!([
                ["AWS/ECS", "CPUUtilization", ecs[0], ecs[1], ecs[2], ecs[3]],
                ["AWS/ECS", "MemoryUtilization", ecs[0], ecs[1], ecs[2], ecs[3]]
            ]),
            "Average",
        ),
    ];
    if routed {
        let lb = ["TargetGroup", TARGET_GROUP, "LoadBalancer", LOAD_BALANCER];
        widgets.push(widget(
            "Requests and 5xx",
            0,
            6,
            region,
            json!([
                ["AWS/ApplicationELB", "RequestCount", lb[0], lb[1], lb[2], lb[3]],
                ["AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", lb[0], lb[1], lb[2], lb[3]]
            ]),
            "Sum",
        ));
        widgets.push(widget(
            "Latency (s)",
            12,
            6,
            region,
            json!([["AWS/ApplicationELB", "TargetResponseTime", lb[0], lb[1], lb[2], lb[3], {"stat": "p99"}]]),
            "Average",
        ));
    }
    Dashboard { dashboard_name: dashboard_name(service, env), dashboard_body: json!({ "widgets": widgets }) }
}

/// The body with the load balancer dimensions filled in (`targetgroup/…` and `app/…`, the
/// ARN suffixes CloudWatch's ELB metrics use); `None` while the target group is unknown.
pub fn bind(body: &Value, target_group_arn: Option<&str>, load_balancer_arn: Option<&str>) -> Option<Value> {
    let text = body.to_string();
    if !text.contains(TARGET_GROUP) {
        return Some(body.clone());
    }
    let suffix = |arn: &str, marker: &str| arn.find(marker).map(|i| arn[i + 1..].to_string());
    let tg = suffix(target_group_arn?, ":targetgroup/")?;
    let lb = suffix(load_balancer_arn?, ":loadbalancer/")?;
    serde_json::from_str(&text.replace(TARGET_GROUP, &tg).replace(LOAD_BALANCER, &lb)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_routed_dashboard_names_its_target_group_and_load_balancer() {
        let d = render("web", "pre", "pre", "us-east-1", true);
        assert_eq!(d.dashboard_name, "berth-pre-web");
        assert_eq!(bind(&d.dashboard_body, None, None), None);
        let body = bind(
            &d.dashboard_body,
            Some("arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/web-pre/abc"),
            Some("arn:aws:elasticloadbalancing:us-east-1:1:loadbalancer/app/internal/def"),
        )
        .unwrap();
        let text = body.to_string();
        assert!(text.contains("targetgroup/web-pre/abc") && text.contains("app/internal/def"), "{text}");
        let plain = render("web", "pre", "pre", "us-east-1", false);
        assert_eq!(bind(&plain.dashboard_body, None, None), Some(plain.dashboard_body.clone()));
    }
}
