//! What the daemon keeps per (environment, service), in one map: the backoff after failed
//! attempts, whether the service is settled at its spec, the rollout being watched, the
//! error last logged, and the service as `/status` shows it. `/status`, `/metrics`,
//! `/readyz` and the CloudWatch gauges are all derived from this map ([`Services::status`]).
//! Pure: time and jitter are passed in.
//!
//! The hold of a failed rollout is not here: it is written on the ECS service
//! (`berth:held`) and read back with the live state, so it survives a restart.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tokio::time::Instant;

use tokio_util::sync::CancellationToken;

use super::outcome::{Hold, Outcome, retry_delay};
use super::reconcile::ServiceReport;
use super::status::{EnvStatus, ServiceStatus, Status};

/// A rollout the daemon watches: its spec, and how to stop watching it when a newer apply
/// of the service supersedes it.
#[derive(Debug)]
pub struct Watch {
    pub id: u64,
    pub spec_hash: String,
    pub stop: CancellationToken,
}

#[derive(Debug, Default)]
pub struct ServiceState {
    /// Failed attempts since the last success (or since git last changed the spec).
    pub attempts: u32,
    pub retry_at: Option<Instant>,
    /// The spec hash of the last report.
    pub spec_hash: Option<String>,
    /// Last seen in sync (or applied) at `spec_hash`, with nothing attempted since.
    pub settled: bool,
    /// The error (or the awaited image) last logged, so that each is logged once.
    pub logged_error: Option<String>,
    pub watch: Option<Watch>,
    /// The spec hash of a rollout this process saw fail: a backstop for the `berth:held`
    /// tag (which is what survives), should writing it have failed.
    pub held: Option<String>,
    /// The service as `/status` shows it, from its last report (none before the first).
    pub shown: Option<ServiceStatus>,
}

/// What an environment shows besides its services.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EnvState {
    pub ref_name: Option<String>,
    pub commit: Option<String>,
    pub last_fetch_error: Option<String>,
    /// The first full sync of this environment is done.
    pub ready: bool,
    /// A tag environment with no release tag yet (nothing to deploy; not an error).
    pub no_release: bool,
    /// AWS answered none of the last cycle's calls: the first error.
    pub aws_unavailable: Option<String>,
    /// git's services of the environment when its cluster was last looked at for orphans
    /// (services berth manages whose folder is gone), and the orphans found: looked for
    /// again when a commit removes one of those services (only that makes a new orphan),
    /// shown until then.
    /// (As sorted 64-bit digests of the names: 8 bytes a service.)
    pub orphan_scan: Option<Vec<u64>>,
    pub orphans: std::collections::BTreeSet<String>,
    /// The AWS account and region the environment's services live in.
    pub account: Option<String>,
    pub region: Option<String>,
}

/// The daemon's services, by (env, service), and its environments.
#[derive(Debug, Default)]
pub struct Services {
    map: BTreeMap<(String, String), ServiceState>,
    envs: BTreeMap<String, EnvState>,
}

fn key(env: &str, service: &str) -> (String, String) {
    (env.to_string(), service.to_string())
}

impl Services {
    pub fn get(&self, env: &str, service: &str) -> Option<&ServiceState> {
        self.map.get(&key(env, service))
    }

    pub fn entry(&mut self, env: &str, service: &str) -> &mut ServiceState {
        self.map.entry(key(env, service)).or_default()
    }

    /// Ends the backoff of `names` in `env` (of every service of it when `names` is empty)
    /// and makes them unsettled, so the next cycle attempts them at once (`berth sync`).
    /// Returns the services whose backoff it ended. A failed rollout's hold stays: only git
    /// ends it.
    pub fn clear_backoff(&mut self, env: &str, names: &[String]) -> Vec<String> {
        let mut cleared = Vec::new();
        for ((e, name), s) in self.map.iter_mut() {
            if e != env || !(names.is_empty() || names.contains(name)) {
                continue;
            }
            s.settled = false;
            if s.retry_at.take().is_some() || s.attempts > 0 {
                s.attempts = 0;
                cleared.push(name.clone());
            }
        }
        cleared
    }

    /// Whether `service` may be attempted now with spec `hash`: a spec other than the one
    /// that failed always may (a fix in git is attempted at once).
    pub fn gate(&self, env: &str, service: &str, hash: &str, now: Instant) -> Result<(), Hold> {
        let Some(s) = self.get(env, service) else { return Ok(()) };
        if s.held.as_deref() == Some(hash) {
            return Err(Hold::RolloutFailed { spec_hash: hash.to_string(), in_sync: false });
        }
        match s.retry_at {
            Some(t) if t > now && s.spec_hash.as_deref() == Some(hash) => {
                Err(Hold::Backoff { attempts: s.attempts, retry_in: t - now })
            }
            _ => Ok(()),
        }
    }

    /// Folds one report in; returns the retry delay when a failed attempt scheduled one.
    /// A report at a new spec hash starts the service's backoff afresh (git changed it).
    /// `outage`: AWS answered nothing in this cycle, so a failed attempt is not the
    /// service's failure and is not charged to its backoff.
    pub fn record(
        &mut self,
        env: &str,
        r: &ServiceReport,
        now: Instant,
        jitter: f64,
        outage: bool,
    ) -> Option<Duration> {
        let s = self.entry(env, &r.name);
        if r.spec_hash.is_some() && s.spec_hash != r.spec_hash {
            s.spec_hash = r.spec_hash.clone();
            s.attempts = 0;
            s.retry_at = None;
            s.held = None;
        }
        s.settled = matches!(r.outcome, Outcome::Synced | Outcome::Applied) && r.spec_hash.is_some();
        match &r.outcome {
            Outcome::Synced | Outcome::Applied | Outcome::Progressing => {
                s.attempts = 0;
                s.retry_at = None;
                None
            }
            Outcome::Failed(f) if f.attempted() && !outage => {
                s.attempts += 1;
                let delay = retry_delay(f.class(), s.attempts, jitter);
                s.retry_at = delay.map(|d| now + d);
                delay
            }
            // Backoff: the retry time is still ahead.
            Outcome::Held(Hold::Backoff { .. }) => None,
            // Nothing was attempted (a read failed, a dependency did not converge, the image
            // is missing, …): a retry that was due is used up, so the loop does not wake for
            // it again; the attempt count stays.
            _ => {
                if s.retry_at.is_some_and(|t| t <= now) {
                    s.retry_at = None;
                }
                None
            }
        }
    }

    /// Ends the backoff of the services that depend on `changed` (git changed a dependency:
    /// they are attempted with it). Returns whether one was backing off (and so waits for
    /// another cycle to be attempted).
    pub fn forgive_dependents(&mut self, env: &str, changed: &BTreeSet<String>, reports: &[ServiceReport]) -> bool {
        let mut forgiven = false;
        for r in reports.iter().filter(|r| r.depends_on.iter().any(|d| changed.contains(d))) {
            let s = self.entry(env, &r.name);
            forgiven |= s.retry_at.is_some();
            s.attempts = 0;
            s.retry_at = None;
        }
        forgiven
    }

    /// The earliest time a backed-off service may be attempted.
    pub fn next_retry(&self) -> Option<Instant> {
        self.map.values().filter_map(|s| s.retry_at).min()
    }

    /// The services whose retry is due, by environment.
    pub fn due(&self, now: Instant) -> BTreeMap<String, BTreeSet<String>> {
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for ((e, s), st) in &self.map {
            if st.retry_at.is_some_and(|t| t <= now) {
                out.entry(e.clone()).or_default().insert(s.clone());
            }
        }
        out
    }

    /// The services of `env` settled at their spec hash (name → hash).
    pub fn settled(&self, env: &str) -> BTreeMap<String, String> {
        self.of(env).filter(|(_, s)| s.settled).filter_map(|(n, s)| Some((n.clone(), s.spec_hash.clone()?))).collect()
    }

    /// The services of `env` whose rollout is watched (name → spec hash).
    pub fn watching(&self, env: &str) -> BTreeMap<String, String> {
        self.of(env).filter_map(|(n, s)| Some((n.clone(), s.watch.as_ref()?.spec_hash.clone()))).collect()
    }

    fn of<'a>(&'a self, env: &'a str) -> impl Iterator<Item = (&'a String, &'a ServiceState)> + 'a {
        self.map.range(key(env, "")..).take_while(move |((e, _), _)| e == env).map(|((_, n), s)| (n, s))
    }

    pub fn env(&self, env: &str) -> Option<&EnvState> {
        self.envs.get(env)
    }

    pub fn env_mut(&mut self, env: &str) -> &mut EnvState {
        self.envs.entry(env.to_string()).or_default()
    }

    /// The services of `env` as shown, by name.
    pub fn shown<'a>(&'a self, env: &'a str) -> impl Iterator<Item = &'a ServiceStatus> + 'a {
        self.of(env).filter_map(|(_, s)| s.shown.as_ref())
    }

    /// What `/status` shows: every environment with its services, by name.
    pub fn status(&self) -> Status {
        let environments = (self.envs.iter())
            .map(|(name, e)| EnvStatus {
                name: name.clone(),
                ref_name: e.ref_name.clone(),
                commit: e.commit.clone(),
                services: self.shown(name).cloned().collect(),
                last_fetch_error: e.last_fetch_error.clone(),
                ready: e.ready,
                no_release: e.no_release,
                aws_unavailable: e.aws_unavailable.clone(),
                role: None,
                account: e.account.clone(),
                region: e.region.clone(),
            })
            .collect();
        Status { environments }
    }

    /// Uses up the due retries of `env` (a cycle that could not reconcile it, for want of a
    /// checkout, must not leave them in the past).
    pub fn drop_due(&mut self, env: &str, now: Instant) {
        for ((e, _), s) in self.map.iter_mut() {
            if e == env && s.retry_at.is_some_and(|t| t <= now) {
                s.retry_at = None;
            }
        }
    }

    /// Whether any environment has had a full reconcile recorded (a push-scoped cycle needs one).
    pub fn knows(&self, env: &str) -> bool {
        self.of(env).next().is_some()
    }

    /// Forgets environments that are no longer configured, with their services.
    pub fn retain_envs(&mut self, live: impl Fn(&str) -> bool) {
        self.envs.retain(|e, _| live(e));
        self.retain(|e, _| live(e));
    }

    /// Forgets services that no longer exist (stopping their watches).
    pub fn retain(&mut self, live: impl Fn(&str, &str) -> bool) {
        self.map.retain(|(e, s), st| {
            let keep = live(e, s);
            if let (false, Some(w)) = (keep, &st.watch) {
                w.stop.cancel();
            }
            keep
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::AwsError;
    use crate::engine::outcome::Failure;

    fn report(name: &str, hash: &str, outcome: Outcome) -> ServiceReport {
        let mut r = ServiceReport::new(name);
        r.spec_hash = Some(hash.into());
        r.outcome = outcome;
        r
    }

    fn failed_write() -> Outcome {
        let error = AwsError::Other { operation: "UpdateService".into(), message: "boom".into() };
        Outcome::Failed(Failure::Aws { context: "applying", error, applying: true })
    }

    #[test]
    fn backoff_counts_attempts_and_a_new_spec_ends_it() {
        let mut s = Services::default();
        let t0 = Instant::now();
        let d1 = s.record("pre", &report("web", "a", failed_write()), t0, 0.0, false).unwrap();
        assert_eq!(d1, Duration::from_secs(5));
        assert!(matches!(s.gate("pre", "web", "a", t0), Err(Hold::Backoff { attempts: 1, .. })));
        // A poll that attempts nothing (a read failed) does not grow the backoff.
        let read = Outcome::Failed(Failure::Aws {
            context: "reading live state",
            error: AwsError::Unavailable { operation: "DescribeServices".into(), message: "down".into() },
            applying: false,
        });
        s.record("pre", &report("web", "a", read), t0, 0.0, false);
        assert_eq!(s.get("pre", "web").unwrap().attempts, 1);
        let d2 = s.record("pre", &report("web", "a", failed_write()), t0 + d1, 0.0, false).unwrap();
        assert_eq!(d2, Duration::from_secs(10));
        // A fix in git (another spec hash) is attempted at once.
        assert!(s.gate("pre", "web", "b", t0).is_ok());
        s.record("pre", &report("web", "b", Outcome::Synced), t0, 0.0, false);
        assert_eq!((s.get("pre", "web").unwrap().attempts, s.next_retry()), (0, None));
        // Other services and environments are independent.
        assert!(s.gate("prod", "web", "a", t0).is_ok());
    }

    #[test]
    fn an_outage_charges_no_backoff_and_uses_up_a_due_retry() {
        let mut s = Services::default();
        let t0 = Instant::now();
        let d = s.record("pre", &report("web", "a", failed_write()), t0, 0.0, false).unwrap();
        // During an outage the failed attempt is not the service's: attempts stay at one,
        // and the retry that was due is used up (the next poll retries).
        assert_eq!(s.record("pre", &report("web", "a", failed_write()), t0 + d, 0.0, true), None);
        let st = s.get("pre", "web").unwrap();
        assert_eq!((st.attempts, st.retry_at), (1, None));
    }

    #[test]
    fn a_due_retry_that_is_not_attempted_is_used_up() {
        let mut s = Services::default();
        let t0 = Instant::now();
        let d = s.record("pre", &report("web", "a", failed_write()), t0, 0.0, false).unwrap();
        let due = t0 + d;
        assert_eq!(s.due(due).get("pre").map(|d| d.len()), Some(1));
        // Considered before the retry was due: the retry stays.
        s.record("pre", &report("web", "a", Outcome::Skipped("dependency".into())), t0, 0.0, false);
        assert_eq!(s.next_retry(), Some(due));
        // Considered once due, and not attempted (waiting for an image): no retry left in the past.
        s.record("pre", &report("web", "a", Outcome::WaitingForImage("i".into())), due, 0.0, false);
        assert_eq!(s.next_retry(), None);
        assert!(s.gate("pre", "web", "a", due).is_ok());
        assert_eq!(s.get("pre", "web").unwrap().attempts, 1, "the attempt count stays");
    }

    #[test]
    fn dependents_of_a_changed_service_are_forgiven_and_settled_services_listed() {
        let mut s = Services::default();
        let t0 = Instant::now();
        let mut api = report("api", "x", failed_write());
        api.depends_on = vec!["db".into()];
        s.record("pre", &api, t0, 0.0, false);
        s.record("pre", &report("db", "d", Outcome::Synced), t0, 0.0, false);
        assert!(s.gate("pre", "api", "x", t0).is_err());
        assert!(s.forgive_dependents("pre", &["db".to_string()].into(), &[api]));
        assert!(s.gate("pre", "api", "x", t0).is_ok());
        assert_eq!(s.settled("pre"), [("db".to_string(), "d".to_string())].into());
    }
}
