//! The long-running agent: poll git, reconcile every environment, heal drift, serve
//! status and metrics, take webhooks and config reloads, and shut down cleanly.
//!
//! One loop drives everything. Each wake-up polls the repository once (one ref
//! negotiation for all environments), then reconciles the environments that are due in
//! parallel; applies across environments share one concurrency bound. A webhook marks the
//! environments its push touched as due at once.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::metrics::{Metrics, labels};
use super::reconcile::{self, EnvInput, Mode, Outcome, ServiceReport};
use super::scheduler::Scheduler;
use super::status::{EnvStatus, ServiceStatus, Status, service_status};
use crate::aws::{Aws, ClientOptions, RequestStats};
use crate::core::config::{Config, SyncMode};
use crate::core::memo::Memo;
use crate::source::checkout::{Checkout, Poller};
use crate::source::git;

/// How long in-flight work may take after SIGTERM.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// What the HTTP handlers share with the loop.
pub struct Shared {
    pub status: RwLock<Status>,
    pub metrics: Metrics,
    pub stats: Arc<RequestStats>,
    pub config: RwLock<Arc<Config>>,
    /// Environments a webhook asked to poll now.
    pending: Mutex<BTreeSet<String>>,
    wake: Notify,
}

impl Shared {
    pub fn new(config: Arc<Config>) -> Arc<Shared> {
        Arc::new(Shared {
            status: RwLock::new(Status::default()),
            metrics: Metrics::default(),
            stats: RequestStats::new(),
            config: RwLock::new(config),
            pending: Mutex::new(BTreeSet::new()),
            wake: Notify::new(),
        })
    }

    /// Marks environments as due now and wakes the loop.
    pub fn trigger(&self, envs: impl IntoIterator<Item = String>) {
        self.pending.lock().expect("pending lock").extend(envs);
        self.wake.notify_one();
    }

    pub fn config(&self) -> Arc<Config> {
        self.config.read().expect("config lock").clone()
    }

    /// Every configured environment has finished its first full sync.
    pub fn ready(&self) -> bool {
        let status = self.status.read().expect("status lock");
        let config = self.config();
        config.environments.keys().all(|e| status.environments.iter().any(|s| &s.name == e && s.ready))
    }

    pub fn metrics_text(&self) -> String {
        let status = self.status.read().expect("status lock").clone();
        self.metrics.encode(&status, &self.stats)
    }
}

fn now_secs() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

fn result_label(r: &ServiceReport) -> &'static str {
    match &r.outcome {
        Outcome::Synced => "synced",
        Outcome::Applied => "applied",
        Outcome::Progressing if r.applied.is_empty() => "synced",
        Outcome::Progressing => "applied",
        Outcome::Failed(_) | Outcome::Unmanaged(_) => "failed",
        Outcome::OutOfSync | Outcome::WaitingForImage(_) | Outcome::Skipped(_) | Outcome::Held(_) => "skipped",
    }
}

/// Reads the git credentials named by the config from the environment (the edge).
pub fn git_auth(config: &Config) -> git::Auth {
    git::Auth {
        token: config.repo.token_env.as_ref().and_then(|v| std::env::var(v).ok()),
        ssh_key: config.repo.ssh_key.as_ref().map(Into::into),
    }
}

pub struct Daemon {
    pub shared: Arc<Shared>,
    pub cancel: CancellationToken,
    pub reloads: mpsc::Receiver<Arc<Config>>,
}

struct LoopState {
    aws: Arc<Aws>,
    poller: Arc<Mutex<Poller>>,
    scheduler: Arc<Mutex<Scheduler>>,
    semaphore: Arc<Semaphore>,
    last_poll: Option<Instant>,
    errors_logged: BTreeMap<(String, String), String>,
    /// Per environment, the services (name → spec hash) last seen in sync: a cycle a
    /// push started reconciles only the services whose spec hash moved away from these.
    settled: BTreeMap<String, BTreeMap<String, String>>,
    /// Per environment, the resolves, renders and plans of its last reconcile, reused for
    /// the services whose inputs and live state did not change.
    memos: BTreeMap<String, Arc<tokio::sync::Mutex<Memo>>>,
    /// Rollouts being watched beside the cycles, by (env, service).
    watches: BTreeMap<(String, String), Watch>,
    watch_ids: u64,
    rollouts_done: mpsc::UnboundedSender<RolloutDone>,
}

/// A rollout the daemon watches: its spec, and how to stop watching it when a newer apply
/// of the service supersedes it.
struct Watch {
    id: u64,
    spec_hash: String,
    stop: CancellationToken,
}

/// What a rollout watch found.
struct RolloutDone {
    env: String,
    service: String,
    id: u64,
    spec_hash: String,
    result: Result<(), String>,
}

async fn connect(config: &Config, stats: Arc<RequestStats>) -> Arc<Aws> {
    let options = ClientOptions { max_attempts: config.aws.max_attempts, ..ClientOptions::default() };
    Arc::new(Aws::connect(&config.aws, &options, stats).await)
}

impl Daemon {
    /// Runs until cancelled; then lets the cycle in flight finish within the grace period.
    pub async fn run(mut self) -> anyhow::Result<()> {
        let config = self.shared.config();
        let poller = Poller::open(&config, git_auth(&config))?;
        let (done_tx, mut done_rx) = mpsc::unbounded_channel();
        let mut st = LoopState {
            aws: connect(&config, self.shared.stats.clone()).await,
            poller: Arc::new(Mutex::new(poller)),
            scheduler: Arc::new(Mutex::new(Scheduler::new(Duration::from_secs(5), Duration::from_secs(300)))),
            semaphore: Arc::new(Semaphore::new(config.concurrency)),
            last_poll: None,
            errors_logged: BTreeMap::new(),
            settled: BTreeMap::new(),
            memos: BTreeMap::new(),
            watches: BTreeMap::new(),
            watch_ids: 0,
            rollouts_done: done_tx,
        };
        tracing::info!(repo = %config.repo.url, envs = ?config.environments.keys().collect::<Vec<_>>(), "berth daemon started");
        loop {
            let config = self.shared.config();
            let now = Instant::now();
            let next_poll = st.last_poll.map_or(now, |t| t + config.repo.poll_interval);
            let retry = st.scheduler.lock().expect("scheduler lock").next_retry();
            let wake_at = retry.map_or(next_poll, |r| r.min(next_poll)).max(now);
            tokio::select! {
                () = self.cancel.cancelled() => break,
                () = tokio::time::sleep_until(wake_at.into()) => {}
                () = self.shared.wake.notified() => {}
                Some(new) = self.reloads.recv() => {
                    self.apply_reload(&mut st, &config, new).await;
                    continue;
                }
                Some(done) = done_rx.recv() => {
                    self.rollout_done(&mut st, done);
                    continue;
                }
            }
            let config = self.shared.config();
            let now = Instant::now();
            let pushed: BTreeSet<String> = std::mem::take(&mut *self.shared.pending.lock().expect("pending lock"));
            let poll_due = st.last_poll.is_none_or(|t| now >= t + config.repo.poll_interval);
            let retry_due = st.scheduler.lock().expect("scheduler lock").next_retry().is_some_and(|r| r <= now);
            let mut due = pushed.clone();
            // A timer poll or a retry reconciles everything (drift included); a push alone
            // only what it changed.
            let focused = if poll_due || retry_due {
                due.extend(config.environments.keys().cloned());
                BTreeSet::new()
            } else {
                pushed
            };
            due.retain(|e| config.environments.contains_key(e));
            if due.is_empty() {
                continue;
            }
            if poll_due {
                st.last_poll = Some(now);
            }
            let cycle = self.cycle(&mut st, &config, &due, &focused);
            tokio::select! {
                () = cycle => {}
                () = async { self.cancel.cancelled().await; tokio::time::sleep(SHUTDOWN_GRACE).await } => {
                    tracing::warn!("in-flight work did not finish within the shutdown grace period; abandoning it");
                    break;
                }
            }
            // Revisions unused for three poll intervals are ones no service runs now.
            st.aws.forget_task_definitions_unused_for(config.repo.poll_interval * 3 + Duration::from_secs(60));
            release_freed_memory();
            if self.cancel.is_cancelled() {
                break;
            }
        }
        tracing::info!("berth daemon stopped");
        Ok(())
    }

    async fn apply_reload(&self, st: &mut LoopState, old: &Config, new: Arc<Config>) {
        if new.metrics_listen != old.metrics_listen || new.webhook != old.webhook {
            tracing::warn!("listener addresses changed in the config: restart berth to apply them");
        }
        if new.aws != old.aws {
            st.aws = connect(&new, self.shared.stats.clone()).await;
            st.settled.clear();
        }
        if new.repo != old.repo {
            match Poller::open(&new, git_auth(&new)) {
                Ok(p) => st.poller = Arc::new(Mutex::new(p)),
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "cannot open the repository of the new config; keeping the old one")
                }
            }
        }
        if new.concurrency != old.concurrency {
            st.semaphore = Arc::new(Semaphore::new(new.concurrency));
        }
        let added: Vec<String> =
            new.environments.keys().filter(|e| !old.environments.contains_key(*e)).cloned().collect();
        {
            let mut status = self.shared.status.write().expect("status lock");
            status.environments.retain(|e| new.environments.contains_key(&e.name));
        }
        for gone in old.environments.keys().filter(|e| !new.environments.contains_key(*e)) {
            st.poller.lock().expect("poller lock").forget(gone);
        }
        st.watches.retain(|(e, _), w| {
            let keep = new.environments.contains_key(e);
            if !keep {
                w.stop.cancel();
            }
            keep
        });
        st.scheduler.lock().expect("scheduler lock").retain(|e, _| new.environments.contains_key(e));
        *self.shared.config.write().expect("config lock") = new.clone();
        tracing::info!(
            poll_interval = %humantime::format_duration(new.repo.poll_interval),
            envs = ?new.environments.keys().collect::<Vec<_>>(),
            "configuration reloaded"
        );
        // Changed or new environments reconcile at once under the new config.
        let mut now_due: Vec<String> = added;
        now_due.extend(
            new.environments.iter().filter(|(k, v)| old.environments.get(*k) != Some(*v)).map(|(k, _)| k.clone()),
        );
        // They reconcile in full: the new settings may change any service.
        st.settled.retain(|e, _| new.environments.contains_key(e) && !now_due.contains(e));
        st.memos.retain(|e, _| new.environments.contains_key(e));
        if !now_due.is_empty() {
            self.shared.trigger(now_due);
        }
    }

    /// One pass: poll git once, then reconcile the due environments in parallel.
    ///
    /// An environment in `focused` (due only because of a push) reconciles only the
    /// services the push changed, when it has been reconciled in full before.
    async fn cycle(
        &self,
        st: &mut LoopState,
        config: &Arc<Config>,
        due: &BTreeSet<String>,
        focused: &BTreeSet<String>,
    ) {
        let envs: Vec<_> = config.environments.values().filter(|e| due.contains(&e.name)).cloned().collect();
        let poller = st.poller.clone();
        let cfg = config.clone();
        let envs_for_poll = envs.clone();
        let started = Instant::now();
        let polled = tokio::task::spawn_blocking(move || {
            let refs: Vec<&_> = envs_for_poll.iter().collect();
            poller.lock().expect("poller lock").poll(&cfg, &refs)
        })
        .await
        .unwrap_or_default();
        let fetch_secs = started.elapsed().as_secs_f64();
        let mut work: Vec<(crate::core::config::EnvConfig, Arc<Checkout>, Option<String>)> = Vec::new();
        for env in &envs {
            let key = labels(&[("env", &env.name)]);
            self.shared.metrics.git_fetch_duration.get_or_create(&key).observe(fetch_secs);
            let result = polled.get(&env.name);
            let (checkout, error) = match result {
                Some(Ok(p)) => {
                    self.shared.metrics.git_fetch.get_or_create(&labels(&[("env", &env.name), ("result", "ok")])).inc();
                    if p.changed {
                        tracing::info!(env = %env.name, r#ref = %p.checkout.ref_name, commit = %p.checkout.commit, read_ms = p.read.as_millis() as u64, "new commit");
                    }
                    (Some(p.checkout.clone()), None)
                }
                Some(Err(e)) => {
                    self.shared
                        .metrics
                        .git_fetch
                        .get_or_create(&labels(&[("env", &env.name), ("result", "error")]))
                        .inc();
                    tracing::warn!(env = %env.name, error = %e, "git poll failed; keeping the last good commit");
                    (st.poller.lock().expect("poller lock").last(&env.name), Some(e.clone()))
                }
                None => (None, Some("not polled".to_string())),
            };
            match checkout {
                Some(c) => work.push((env.clone(), c, error)),
                None => self.set_env_error(&env.name, error.unwrap_or_default()),
            }
        }
        let aws = st.aws.clone();
        for (env, _, _) in &work {
            st.memos.entry(env.name.clone()).or_default();
        }
        let settled = &st.settled;
        let memos = &st.memos;
        let mut watching: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for ((env, service), w) in &st.watches {
            watching.entry(env.clone()).or_default().insert(service.clone(), w.spec_hash.clone());
        }
        let watching = &watching;
        let futures = work.into_iter().map(|(env, checkout, fetch_error)| {
            let settled = settled.get(&env.name);
            let watching = watching.get(&env.name);
            let memo = memos.get(&env.name).cloned();
            let focused = settled.is_some() && focused.contains(&env.name);
            let aws = aws.clone();
            let scheduler = st.scheduler.clone();
            let semaphore = st.semaphore.clone();
            let config = config.clone();
            let cancel = self.cancel.clone();
            async move {
                let started = Instant::now();
                let gate_sched = scheduler.clone();
                let env_name = env.name.clone();
                let gate = move |service: &str, hash: &str| {
                    gate_sched.lock().expect("scheduler lock").may_apply(&env_name, service, hash, Instant::now())
                };
                let mode = if env.sync == SyncMode::Auto { Mode::Apply } else { Mode::Diff };
                let input = EnvInput {
                    gate: Some(&gate),
                    semaphore: Some(semaphore),
                    cancel,
                    settled,
                    focused,
                    memo: memo.as_deref(),
                    detach_rollouts: true,
                    watching,
                    ..EnvInput::new(&config, &env, &checkout, mode)
                };
                let reports = reconcile::reconcile_env(&aws, &input).await;
                (env, checkout, fetch_error, reports, started.elapsed(), focused)
            }
        });
        let mut data = Vec::new();
        for (env, checkout, fetch_error, reports, took, focused) in futures::future::join_all(futures).await {
            self.shared
                .metrics
                .reconcile_duration
                .get_or_create(&labels(&[("env", &env.name)]))
                .observe(took.as_secs_f64());
            self.record(st, &env.name, &checkout, fetch_error, &reports, focused);
            data.extend(cloudwatch_data(&self.shared, &env.name));
        }
        if let Some(namespace) = &config.cloudwatch_namespace
            && !data.is_empty()
            && let Err(e) = st.aws.put_metric_data(namespace, &data).await
        {
            tracing::warn!(error = %e, "cannot publish to CloudWatch");
        }
    }

    /// Watches a rollout beside the cycles; a newer apply of the service stops the watch of
    /// an older one. Shutdown stops every watch without a verdict.
    fn watch(
        &self,
        st: &mut LoopState,
        env: &str,
        service: &str,
        spec_hash: &str,
        watch: super::reconcile::RolloutWatch,
    ) {
        st.watch_ids += 1;
        let id = st.watch_ids;
        let stop = self.cancel.child_token();
        let old = st.watches.insert(
            (env.to_string(), service.to_string()),
            Watch { id, spec_hash: spec_hash.to_string(), stop: stop.clone() },
        );
        if let Some(old) = old {
            old.stop.cancel();
        }
        let (aws, tx) = (st.aws.clone(), st.rollouts_done.clone());
        let (env, service, spec_hash) = (env.to_string(), service.to_string(), spec_hash.to_string());
        tokio::spawn(async move {
            tokio::select! {
                result = watch.wait(&aws) => {
                    let _ = tx.send(RolloutDone { env, service, id, spec_hash, result });
                }
                () = stop.cancelled() => {}
            }
        });
    }

    /// A watched rollout ended: a success clears the service's backoff, a failure holds its
    /// spec until git changes it. Either way the environment reconciles again at once (its
    /// dependents were waiting for this rollout).
    fn rollout_done(&self, st: &mut LoopState, done: RolloutDone) {
        let key = (done.env.clone(), done.service.clone());
        if st.watches.get(&key).is_none_or(|w| w.id != done.id) {
            return;
        }
        st.watches.remove(&key);
        let (env, service) = (done.env.as_str(), done.service.as_str());
        {
            let mut sched = st.scheduler.lock().expect("scheduler lock");
            match &done.result {
                Ok(()) => {
                    sched.record_success(env, service);
                    tracing::info!(env, service, spec = %done.spec_hash, "rollout completed");
                }
                Err(reason) => {
                    sched.hold(env, service, &done.spec_hash);
                    tracing::error!(env, service, spec = %done.spec_hash, reason = %reason, "rollout failed; holding this spec until git changes it");
                    self.shared
                        .metrics
                        .reconcile
                        .get_or_create(&labels(&[("env", env), ("service", service), ("result", "failed")]))
                        .inc();
                }
            }
        }
        self.shared.status.write().expect("status lock").rollout_finished(env, service, &done.result);
        self.shared.trigger([done.env]);
    }

    fn set_env_error(&self, env: &str, error: String) {
        let mut status = self.shared.status.write().expect("status lock");
        match status.environments.iter_mut().find(|e| e.name == env) {
            Some(e) => e.last_fetch_error = Some(error),
            None => status.environments.push(EnvStatus {
                name: env.to_string(),
                ref_name: None,
                commit: None,
                services: Vec::new(),
                last_fetch_error: Some(error),
                ready: false,
            }),
        }
        status.environments.sort_by(|a, b| a.name.cmp(&b.name));
    }

    /// Folds an environment's reports into the scheduler, the status and the counters. A
    /// `focused` cycle reported only some services: the others keep their last status.
    fn record(
        &self,
        st: &mut LoopState,
        env: &str,
        checkout: &Checkout,
        fetch_error: Option<String>,
        reports: &[ServiceReport],
        focused: bool,
    ) {
        let now = Instant::now();
        // Entries are updated in place, not rebuilt each cycle: a poll that changes nothing
        // allocates nothing that outlives it.
        let settled = st.settled.entry(env.to_string()).or_default();
        if !focused {
            let reported: BTreeSet<&str> = reports.iter().map(|r| r.name.as_str()).collect();
            settled.retain(|name, _| reported.contains(name.as_str()));
        }
        for r in reports {
            match (&r.outcome, &r.spec_hash) {
                (Outcome::Synced | Outcome::Applied, Some(h)) => {
                    if settled.get(&r.name) != Some(h) {
                        settled.insert(r.name.clone(), h.clone());
                    }
                }
                _ => {
                    settled.remove(&r.name);
                }
            }
        }
        let mut sched = st.scheduler.lock().expect("scheduler lock");
        for r in reports {
            if let Some(h) = &r.spec_hash {
                sched.observe_spec(env, &r.name, h);
            }
            match &r.outcome {
                Outcome::Synced | Outcome::Applied | Outcome::Progressing => sched.record_success(env, &r.name),
                Outcome::Failed(reason) if r.rollout_failed => {
                    if let Some(h) = &r.spec_hash {
                        sched.hold(env, &r.name, h);
                    }
                    tracing::error!(env, service = %r.name, spec = ?r.spec_hash, reason = %reason, "rollout failed; holding this spec until git changes it");
                }
                Outcome::Failed(reason) => {
                    let delay = sched.record_failure(env, &r.name, now);
                    let key = (env.to_string(), r.name.clone());
                    if st.errors_logged.get(&key) != Some(reason) {
                        tracing::error!(env, service = %r.name, retry_in = ?delay, error = %reason, "service failed");
                        st.errors_logged.insert(key, reason.clone());
                    }
                }
                // Backoff or a hold: the retry time (if any) is still ahead.
                Outcome::Held(_) => {}
                Outcome::OutOfSync | Outcome::WaitingForImage(_) | Outcome::Skipped(_) | Outcome::Unmanaged(_) => {
                    sched.record_not_attempted(env, &r.name, now)
                }
            }
            if !matches!(r.outcome, Outcome::Failed(_)) {
                st.errors_logged.remove(&(env.to_string(), r.name.clone()));
            }
            for a in &r.applied {
                tracing::info!(env, service = %r.name, action = %a, "applied");
            }
            self.shared
                .metrics
                .reconcile
                .get_or_create(&labels(&[("env", env), ("service", &r.name), ("result", result_label(r))]))
                .inc();
        }
        drop(sched);
        for r in reports {
            if let (Some(watch), Some(hash)) = (&r.rollout, &r.spec_hash) {
                self.watch(st, env, &r.name, hash, watch.clone());
            }
        }
        let mut sched = st.scheduler.lock().expect("scheduler lock");
        let ts = now_secs();
        let mut status = self.shared.status.write().expect("status lock");
        // The previous entries are moved out (not copied), each found once, and kept where
        // nothing but the time of the last sync changed.
        let mut previous: BTreeMap<String, ServiceStatus> = match status.environments.iter().position(|e| e.name == env)
        {
            Some(i) => status.environments.remove(i).services.into_iter().map(|s| (s.name.clone(), s)).collect(),
            None => BTreeMap::new(),
        };
        let mut services: Vec<ServiceStatus> = reports
            .iter()
            .map(|r| {
                let prev = previous.remove(&r.name);
                let held = sched.is_held(env, &r.name, r.spec_hash.as_deref());
                let new = service_status(r, held, ts, prev.as_ref());
                match prev {
                    Some(mut p) => {
                        p.last_sync = new.last_sync;
                        if p == new { p } else { new }
                    }
                    None => new,
                }
            })
            .collect();
        if focused {
            let deployed: BTreeSet<&str> =
                checkout.repo.services.iter().filter(|d| d.envs.contains_key(env)).map(|d| d.name.as_str()).collect();
            services.extend(previous.into_values().filter(|s| deployed.contains(s.name.as_str())));
            services.sort_by(|a, b| a.name.cmp(&b.name));
        }
        let names: BTreeSet<&str> = services.iter().map(|s| s.name.as_str()).collect();
        sched.retain(|e, s| e != env || names.contains(s));
        let entry = EnvStatus {
            name: env.to_string(),
            ref_name: Some(checkout.ref_name.clone()),
            commit: Some(checkout.commit.clone()),
            services,
            last_fetch_error: fetch_error,
            ready: true,
        };
        status.environments.retain(|e| e.name != env);
        status.environments.push(entry);
        status.environments.sort_by(|a, b| a.name.cmp(&b.name));
    }
}

/// One malloc arena for the whole process (glibc otherwise gives busy threads arenas of
/// their own, each keeping its freed pages): the daemon spends its time waiting on AWS,
/// not allocating, so the shared lock costs nothing measurable, and idle RSS at 1,000
/// services drops by ~4 MiB (docs/benchmarks.md). `MALLOC_ARENA_MAX` or `GLIBC_TUNABLES`
/// in the environment still win. Call before any thread starts.
pub fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() && std::env::var_os("GLIBC_TUNABLES").is_none() {
        // SAFETY: mallopt only sets a tunable of glibc's allocator; no thread is running yet.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    }
}

/// Hands the memory a cycle allocated and freed back to the system. glibc keeps freed heap
/// pages mapped for reuse; between cycles the daemon only waits, so an idle agent would
/// otherwise hold its busiest cycle's peak (measured in docs/benchmarks.md, footprint).
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes glibc's arena locks itself and only returns free pages; it
    // touches no memory Rust owns.
    unsafe {
        libc::malloc_trim(0);
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if tracing::enabled!(tracing::Level::DEBUG) {
        // mallinfo, not mallinfo2 (glibc 2.33+): berth still builds on older glibc. Its
        // `int` fields wrap past 2 GiB, far above what the daemon holds.
        // SAFETY: mallinfo only reads glibc's allocator statistics.
        let m = unsafe { libc::mallinfo() };
        tracing::debug!(
            heap_in_use = m.uordblks,
            heap_free = m.fordblks,
            heap_mapped = m.hblkhd,
            heap_total = m.arena,
            "heap after the cycle"
        );
    }
}

/// The CloudWatch gauges of one environment, from its status: drift, sync failure and
/// degraded, per service.
fn cloudwatch_data(shared: &Shared, env: &str) -> Vec<crate::aws::Datum> {
    use super::status::{Health, Sync};
    let status = shared.status.read().expect("status lock");
    let Some(e) = status.environments.iter().find(|e| e.name == env) else { return Vec::new() };
    let mut out = Vec::new();
    for s in &e.services {
        let datum = |name, on: bool| crate::aws::Datum {
            name,
            env: env.to_string(),
            service: s.name.clone(),
            value: f64::from(u8::from(on)),
        };
        out.push(datum("Drift", s.sync == Sync::OutOfSync));
        out.push(datum("SyncFailed", s.sync == Sync::Unknown && s.last_error.is_some()));
        out.push(datum("Degraded", s.health == Health::Degraded));
    }
    out
}

/// Watches the config file and sends each valid new version; an invalid one is logged
/// and the running config kept.
pub fn watch_config(path: PathBuf, tx: mpsc::Sender<Arc<Config>>) -> anyhow::Result<notify::RecommendedWatcher> {
    use notify::{RecursiveMode, Watcher};
    let dir = path
        .parent()
        .map(|p| if p.as_os_str().is_empty() { std::path::Path::new(".") } else { p })
        .unwrap_or(std::path::Path::new("."))
        .to_path_buf();
    let file_name = path.file_name().map(|f| f.to_os_string());
    let (raw_tx, mut raw_rx) = mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(ev) = event
            && ev.paths.iter().any(|p| p.file_name().map(|f| f.to_os_string()) == file_name)
            && !matches!(ev.kind, notify::EventKind::Access(_))
        {
            let _ = raw_tx.send(());
        }
    })?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    tokio::spawn(async move {
        let mut last: Option<String> = None;
        while raw_rx.recv().await.is_some() {
            // Editors write in several steps: settle first.
            tokio::time::sleep(Duration::from_millis(200)).await;
            while raw_rx.try_recv().is_ok() {}
            let Ok(text) = std::fs::read_to_string(&path) else { continue };
            if last.as_deref() == Some(text.as_str()) {
                continue;
            }
            last = Some(text.clone());
            match Config::parse(&path.to_string_lossy(), &text) {
                Ok(c) => {
                    if tx.send(Arc::new(c)).await.is_err() {
                        break;
                    }
                }
                Err(d) => tracing::error!(errors = %d, "the changed config is invalid; keeping the running one"),
            }
        }
    });
    Ok(watcher)
}
