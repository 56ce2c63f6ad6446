//! Per-(environment, service) scheduling state: exponential backoff with jitter after
//! failures (reset on success), and the failed-rollout hold. Pure: time is passed in.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use backon::BackoffBuilder;

#[derive(Clone, Debug, Default)]
struct KeyState {
    failures: u32,
    retry_at: Option<Instant>,
    /// The spec hash whose rollout failed: not applied again until git changes it.
    held_spec: Option<String>,
}

/// The scheduler of one daemon; keys are (env, service).
#[derive(Debug)]
pub struct Scheduler {
    keys: BTreeMap<(String, String), KeyState>,
    min_delay: Duration,
    max_delay: Duration,
}

impl Scheduler {
    pub fn new(min_delay: Duration, max_delay: Duration) -> Scheduler {
        Scheduler { keys: BTreeMap::new(), min_delay, max_delay }
    }

    fn key(env: &str, service: &str) -> (String, String) {
        (env.to_string(), service.to_string())
    }

    /// Whether `service` may be applied now with spec `hash`.
    pub fn may_apply(&self, env: &str, service: &str, hash: &str, now: Instant) -> Result<(), String> {
        let Some(k) = self.keys.get(&Self::key(env, service)) else { return Ok(()) };
        if k.held_spec.as_deref() == Some(hash) {
            return Err(format!(
                "the rollout of spec {hash} failed; berth will not retry it until git changes the service"
            ));
        }
        match k.retry_at {
            Some(t) if t > now => Err(format!(
                "backing off after {} failure(s); next attempt in {}s",
                k.failures,
                (t - now).as_secs().max(1)
            )),
            _ => Ok(()),
        }
    }

    pub fn is_held(&self, env: &str, service: &str, hash: Option<&str>) -> bool {
        let held = self.keys.get(&Self::key(env, service)).and_then(|k| k.held_spec.as_deref());
        held.is_some() && held == hash
    }

    /// The delay before attempt `failures + 1`: exponential from `min_delay`, capped at
    /// `max_delay`, with jitter.
    fn delay(&self, failures: u32) -> Duration {
        let mut backoff = backon::ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_jitter()
            .without_max_times()
            .build();
        let mut d = self.min_delay;
        for _ in 0..failures.max(1) {
            d = backoff.next().unwrap_or(self.max_delay);
        }
        d
    }

    pub fn record_success(&mut self, env: &str, service: &str) {
        let k = self.keys.entry(Self::key(env, service)).or_default();
        k.failures = 0;
        k.retry_at = None;
    }

    pub fn record_failure(&mut self, env: &str, service: &str, now: Instant) -> Duration {
        let failures = self.keys.get(&Self::key(env, service)).map_or(0, |k| k.failures) + 1;
        let delay = self.delay(failures);
        let k = self.keys.entry(Self::key(env, service)).or_default();
        k.failures = failures;
        k.retry_at = Some(now + delay);
        delay
    }

    pub fn hold(&mut self, env: &str, service: &str, hash: &str) {
        let k = self.keys.entry(Self::key(env, service)).or_default();
        k.held_spec = Some(hash.to_string());
        k.failures = 0;
        k.retry_at = None;
    }

    /// Releases a hold when git has moved the service to another spec.
    pub fn observe_spec(&mut self, env: &str, service: &str, hash: &str) {
        if let Some(k) = self.keys.get_mut(&Self::key(env, service))
            && k.held_spec.as_deref().is_some_and(|h| h != hash)
        {
            k.held_spec = None;
        }
    }

    /// A cycle looked at the service and did not attempt it (a dependency failed, its
    /// image is missing, it is out of sync in a manual environment, …): a retry that was
    /// due is used up, so the loop does not wake for it again. The failure count stays, so
    /// the next failed attempt backs off further.
    pub fn record_not_attempted(&mut self, env: &str, service: &str, now: Instant) {
        if let Some(k) = self.keys.get_mut(&Self::key(env, service))
            && k.retry_at.is_some_and(|t| t <= now)
        {
            k.retry_at = None;
        }
    }

    /// The earliest time a backed-off key may retry.
    pub fn next_retry(&self) -> Option<Instant> {
        self.keys.values().filter_map(|k| k.retry_at).min()
    }

    /// Forgets keys of services or environments that no longer exist.
    pub fn retain(&mut self, live: impl Fn(&str, &str) -> bool) {
        self.keys.retain(|(e, s), _| live(e, s));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_resets_on_success() {
        let mut s = Scheduler::new(Duration::from_secs(5), Duration::from_secs(300));
        let t0 = Instant::now();
        let d1 = s.record_failure("pre", "web", t0);
        assert!(d1 >= Duration::from_secs(5) && d1 <= Duration::from_secs(10), "{d1:?}");
        assert!(s.may_apply("pre", "web", "h", t0).is_err());
        assert!(s.may_apply("pre", "web", "h", t0 + d1 + Duration::from_millis(1)).is_ok());
        let mut last = d1;
        for _ in 0..3 {
            let d = s.record_failure("pre", "web", t0);
            assert!(d >= last.mul_f64(0.5), "{d:?} after {last:?}");
            last = d;
        }
        assert!(last >= Duration::from_secs(40), "{last:?}");
        for _ in 0..20 {
            s.record_failure("pre", "web", t0);
        }
        assert!(s.record_failure("pre", "web", t0) <= Duration::from_secs(600));
        s.record_success("pre", "web");
        assert!(s.may_apply("pre", "web", "h", t0).is_ok());
        // Other keys are independent.
        s.record_failure("pre", "api", t0);
        assert!(s.may_apply("prod", "api", "h", t0).is_ok());
    }

    #[test]
    fn a_due_retry_that_is_not_attempted_is_used_up() {
        let mut s = Scheduler::new(Duration::from_secs(5), Duration::from_secs(300));
        let t0 = Instant::now();
        let d = s.record_failure("pre", "web", t0);
        let due = t0 + d;
        // Not attempted before the retry is due: the retry stays.
        s.record_not_attempted("pre", "web", t0);
        assert_eq!(s.next_retry(), Some(due));
        // Considered once it was due (skipped, waiting for an image): no retry left in the past.
        s.record_not_attempted("pre", "web", due);
        assert_eq!(s.next_retry(), None);
        assert!(s.may_apply("pre", "web", "h", due).is_ok());
        // The failure count stays: the next failure backs off further.
        assert!(s.record_failure("pre", "web", due) >= Duration::from_secs(5));
        assert_eq!(s.keys[&Scheduler::key("pre", "web")].failures, 2);
    }

    #[test]
    fn a_failed_rollout_holds_its_spec_until_git_changes_it() {
        let mut s = Scheduler::new(Duration::from_secs(5), Duration::from_secs(300));
        let now = Instant::now();
        s.hold("pre", "web", "aaa");
        assert!(s.may_apply("pre", "web", "aaa", now + Duration::from_secs(3600)).is_err());
        assert!(s.is_held("pre", "web", Some("aaa")));
        s.observe_spec("pre", "web", "aaa");
        assert!(s.may_apply("pre", "web", "aaa", now).is_err());
        s.observe_spec("pre", "web", "bbb");
        assert!(s.may_apply("pre", "web", "bbb", now).is_ok());
        assert!(!s.is_held("pre", "web", Some("bbb")));
    }
}
