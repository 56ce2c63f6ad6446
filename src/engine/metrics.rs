//! OpenMetrics for `/metrics` (prometheus-client, which writes OpenMetrics 1.0 text).
//!
//! Counters and histograms live for the process; gauges are rebuilt from the status at
//! each scrape, so a service that disappears from git disappears from the metrics and
//! label sets stay bounded by (env, service).

use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use super::status::Status;
use crate::aws::RequestStats;

type Labels = Vec<(String, String)>;
type HistogramFamily = Family<Labels, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    // 10 ms to ~5.5 min.
    Histogram::new(exponential_buckets(0.01, 2.0, 16))
}

pub fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// The long-lived metrics.
#[derive(Clone)]
pub struct Metrics {
    /// One observation per poll of the repository (shared by every environment).
    pub git_fetch_duration: Histogram,
    pub git_fetch: Family<Labels, Counter>,
    pub reconcile_duration: HistogramFamily,
    pub reconcile: Family<Labels, Counter>,
    /// `berth_notifications_total{sink,result}`, counted by the notifier.
    pub notifications: Family<Labels, Counter>,
    /// `berth_lease_renew_failures_total{env}`, counted by the lease loop.
    pub lease_renew_failures: Family<Labels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            git_fetch_duration: duration_histogram(),
            git_fetch: Family::default(),
            reconcile_duration: Family::new_with_constructor(duration_histogram as fn() -> Histogram),
            reconcile: Family::default(),
            notifications: Family::default(),
            lease_renew_failures: Family::default(),
        }
    }
}

pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The Prometheus text format, for scrapers that do not ask for OpenMetrics.
pub const CONTENT_TYPE_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The OpenMetrics text in the Prometheus text format 0.0.4: counter families are named by
/// their `_total` samples, and there are no `# UNIT` or `# EOF` lines. The samples are the
/// same.
pub fn to_text_format(openmetrics: &str) -> String {
    let counters: std::collections::BTreeSet<&str> =
        (openmetrics.lines()).filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter")).collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "].into_iter().find(|p| line.starts_with(p));
        match meta.and_then(|p| line[p.len()..].split_once(' ').map(|(name, rest)| (p, name, rest))) {
            Some((p, name, rest)) if counters.contains(name) => {
                out.push_str(&format!("{p}{name}_total {rest}"));
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

impl Metrics {
    /// The OpenMetrics text of everything, for one scrape.
    pub fn encode(&self, status: &Status, stats: &RequestStats) -> String {
        let mut reg = Registry::with_prefix("berth");
        let build: Family<Labels, Gauge> = Family::default();
        build.get_or_create(&labels(&[("version", env!("CARGO_PKG_VERSION"))])).set(1);
        reg.register("build_info", "berth's version", build);

        let source: Family<Labels, Gauge> = Family::default();
        let drift: Family<Labels, Gauge> = Family::default();
        let info: Family<Labels, Gauge> = Family::default();
        let held: Family<Labels, Gauge> = Family::default();
        let pinned: Family<Labels, Gauge> = Family::default();
        let paused: Family<Labels, Gauge> = Family::default();
        let orphaned: Family<Labels, Gauge> = Family::default();
        let last_change: Family<Labels, Gauge<f64, std::sync::atomic::AtomicU64>> = Family::default();
        let last_sync: Family<Labels, Gauge<f64, std::sync::atomic::AtomicU64>> = Family::default();
        let aws_unavailable: Family<Labels, Gauge> = Family::default();
        let leader: Family<Labels, Gauge> = Family::default();
        for env in &status.environments {
            if let Some(role) = &env.role {
                leader.get_or_create(&labels(&[("env", &env.name)])).set(i64::from(role == "leader"));
            }
            aws_unavailable.get_or_create(&labels(&[("env", &env.name)])).set(i64::from(env.aws_unavailable.is_some()));
            if let (Some(r), Some(c)) = (&env.ref_name, &env.commit) {
                source.get_or_create(&labels(&[("env", &env.name), ("ref", r), ("commit", c)])).set(1);
            }
            for s in &env.services {
                let key = labels(&[("env", &env.name), ("service", &s.name)]);
                drift
                    .get_or_create(&key)
                    .set(i64::from(!s.drift.is_empty() || s.sync == super::status::Sync::OutOfSync));
                held.get_or_create(&key).set(i64::from(s.held));
                pinned.get_or_create(&key).set(i64::from(s.pinned.is_some()));
                paused.get_or_create(&key).set(i64::from(s.paused.is_some()));
                if let Some(c) = &s.last_change {
                    let kind =
                        serde_json::to_value(&c.trigger).ok().and_then(|v| v["kind"].as_str().map(str::to_string));
                    let kind = kind.unwrap_or_default();
                    last_change
                        .get_or_create(&labels(&[("env", &env.name), ("service", &s.name), ("trigger", &kind)]))
                        .set(c.at);
                }
                if s.health == super::status::Health::Orphaned {
                    orphaned.get_or_create(&key).set(1);
                }
                if let Some(t) = s.last_sync {
                    last_sync.get_or_create(&key).set(t);
                }
                info.get_or_create(&labels(&[
                    ("env", &env.name),
                    ("service", &s.name),
                    ("commit", s.commit.as_deref().unwrap_or("")),
                    ("task_definition", s.task_definition.as_deref().unwrap_or("")),
                    ("sync", s.sync.as_str()),
                    ("health", s.health.as_str()),
                ]))
                .set(1);
            }
        }
        reg.register("source_info", "The commit each environment deploys", source);
        reg.register("leader", "1 while this replica holds the environment's lease (with ha:)", leader);
        reg.register(
            "lease_renew_failures",
            "Lease writes (takes and renewals) that failed, by environment",
            self.lease_renew_failures.clone(),
        );
        reg.register("aws_unavailable", "1 while AWS answers none of the environment's calls", aws_unavailable);
        reg.register_with_unit(
            "git_fetch_duration",
            "Time to poll (and fetch) the repository",
            Unit::Seconds,
            self.git_fetch_duration.clone(),
        );
        reg.register("git_fetch", "Repository polls by result", self.git_fetch.clone());
        reg.register_with_unit(
            "reconcile_duration",
            "Time of one reconcile cycle over an environment's services",
            Unit::Seconds,
            self.reconcile_duration.clone(),
        );
        reg.register(
            "reconcile",
            "Service reconciles by result (synced, applied, failed, skipped)",
            self.reconcile.clone(),
        );
        reg.register(
            "notifications",
            "Notifications by sink and result (sent, failed after retries, dropped from a full queue)",
            self.notifications.clone(),
        );
        reg.register("service_drift", "1 when live state differs from git", drift);
        reg.register("service_info", "The service's commit, task definition and status", info);
        reg.register_with_unit(
            "service_last_sync_timestamp",
            "When the service was last found or made equal to git",
            Unit::Seconds,
            last_sync,
        );
        reg.register("service_held", "1 while a failed rollout holds the service's spec", held);
        reg.register("service_pinned", "1 while a rollback pins the service to an earlier revision", pinned);
        reg.register("service_paused", "1 while an operator has paused the service", paused);
        reg.register_with_unit(
            "service_last_change_timestamp",
            "When berth last changed the service, by what triggered it (git_change, drift_heal, retry, …)",
            Unit::Seconds,
            last_change,
        );
        reg.register("service_orphaned", "1 for a berth-managed service whose folder is gone from git", orphaned);

        let aws: Family<Labels, Counter> = Family::default();
        for (k, n) in stats.snapshot() {
            let key = [
                ("region", k.region.as_str()),
                ("account", &k.account),
                ("api", &k.api),
                ("operation", &k.operation),
                ("result", k.result),
            ];
            aws.get_or_create(&labels(&key)).inc_by(n);
        }
        reg.register("aws_requests", "AWS API requests (each attempt) by result", aws);

        let mut out = String::new();
        encode_registry(&mut out, &reg).expect("writing to a String cannot fail");
        encode_registry(&mut out, &process_registry()).expect("writing to a String cannot fail");
        encode_eof(&mut out).expect("writing to a String cannot fail");
        out
    }
}

/// The standard `process_*` family (as the Prometheus client libraries name it), read from
/// `/proc/self` at each scrape. Elsewhere than Linux, and when `/proc` cannot be read, it is
/// left out.
fn process_registry() -> Registry {
    let mut reg = Registry::default();
    let Ok(me) = procfs::process::Process::myself() else { return reg };
    let gauge = |reg: &mut Registry, name: &str, help: &str, unit: Option<Unit>, value: f64| {
        let g: Gauge<f64, std::sync::atomic::AtomicU64> = Gauge::default();
        g.set(value);
        match unit {
            Some(u) => reg.register_with_unit(name, help, u, g),
            None => reg.register(name, help, g),
        }
    };
    if let Ok(stat) = me.stat() {
        let ticks = procfs::ticks_per_second() as f64;
        let cpu: Counter<f64, std::sync::atomic::AtomicU64> = Counter::default();
        cpu.inc_by((stat.utime + stat.stime) as f64 / ticks);
        reg.register_with_unit("process_cpu", "User and system CPU time spent", Unit::Seconds, cpu);
        let page = procfs::page_size() as f64;
        gauge(&mut reg, "process_resident_memory", "Resident memory size", Some(Unit::Bytes), stat.rss as f64 * page);
        gauge(&mut reg, "process_virtual_memory", "Virtual memory size", Some(Unit::Bytes), stat.vsize as f64);
        if let Ok(boot) = procfs::boot_time_secs() {
            let start = boot as f64 + stat.starttime as f64 / ticks;
            gauge(&mut reg, "process_start_time", "Start time since the Unix epoch", Some(Unit::Seconds), start);
        }
        gauge(&mut reg, "process_threads", "OS threads", None, stat.num_threads as f64);
    }
    if let Ok(n) = me.fd_count() {
        gauge(&mut reg, "process_open_fds", "Open file descriptors", None, n as f64);
    }
    if let Ok(procfs::process::LimitValue::Value(max)) = me.limits().map(|l| l.max_open_files.soft_limit) {
        gauge(&mut reg, "process_max_fds", "Maximum open file descriptors", None, max as f64);
    }
    reg
}

#[cfg(test)]
mod tests {
    #[test]
    fn openmetrics_becomes_the_prometheus_text_format() {
        let om = "# HELP berth_git_fetch Repository polls by result.\n# TYPE berth_git_fetch counter\nberth_git_fetch_total{env=\"pre\",result=\"ok\"} 3\n# HELP berth_x_seconds X.\n# TYPE berth_x_seconds histogram\n# UNIT berth_x_seconds seconds\nberth_x_seconds_sum 1.0\n# EOF\n";
        let text = super::to_text_format(om);
        assert_eq!(
            text,
            "# HELP berth_git_fetch_total Repository polls by result.\n# TYPE berth_git_fetch_total counter\nberth_git_fetch_total{env=\"pre\",result=\"ok\"} 3\n# HELP berth_x_seconds X.\n# TYPE berth_x_seconds histogram\nberth_x_seconds_sum 1.0\n"
        );
    }
}
