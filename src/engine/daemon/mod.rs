//! The long-running agent: poll git, reconcile every environment, heal drift, serve
//! status and metrics, take webhooks and config reloads, and shut down cleanly.
//!
//! One loop drives everything. It wakes on the poll timer, a due retry, a webhook, a
//! config reload or the end of a watched rollout, and nothing else. Each cycle polls the
//! repository once (one ref negotiation for all environments), then reconciles the due
//! environments in parallel, each in its [`Scope`]: a timer poll looks at everything (drift
//! included), a push at what it changed, a retry at the services that are due. Applies
//! across environments share one concurrency bound; rollouts are watched beside the
//! cycles ([`watch`]).

mod cycle;
pub mod lease;
mod process;
mod watch;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::time::Instant;

use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

pub use process::{limit_malloc_arenas, watch_config};

use super::cloud::{Cloud, Connect};
use super::metrics::Metrics;
use super::scheduler::Services;
use super::status::Status;
use crate::aws::RequestStats;
use crate::core::config::Config;
use crate::core::memo::Memo;
use crate::source::checkout::Poller;
use crate::source::git;

/// Applies kept for the service page (a few hundred bytes each).
pub const RECENT: usize = 100;

/// How long in-flight work may take after SIGTERM.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// What the HTTP handlers share with the loop.
pub struct Shared {
    /// The one map of per-service state; the status and the metrics are derived from it.
    pub services: Mutex<Services>,
    pub metrics: Metrics,
    pub stats: Arc<RequestStats>,
    pub config: RwLock<Arc<Config>>,
    /// The notification sinks (from the config at start).
    pub notifier: crate::engine::notify::Notifier,
    /// The environments' leases this replica holds (`ha:`).
    pub leases: lease::Leases,
    /// The last applies this process made ([`RECENT`] of them, all services together),
    /// newest first: the service page's (`berth history` has the durable record).
    pub recent: Mutex<std::collections::VecDeque<crate::engine::history::Entry>>,
    /// Environments a webhook (or the end of a rollout) asked to reconcile now.
    pending: Mutex<BTreeSet<String>>,
    wake: Notify,
}

impl Shared {
    pub fn new(config: Arc<Config>) -> Arc<Shared> {
        let metrics = Metrics::default();
        let mut notifier = crate::engine::notify::Notifier::new(&config.notifications);
        notifier.counts = metrics.notifications.clone();
        let mut leases = lease::Leases::default();
        leases.renew_failures = metrics.lease_renew_failures.clone();
        Arc::new(Shared {
            services: Mutex::new(Services::default()),
            notifier,
            leases,
            recent: Mutex::new(std::collections::VecDeque::new()),
            metrics,
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

    /// Whether this replica converges `env`: always without `ha:`; with it, while it holds
    /// the environment's lease.
    pub fn leads(&self, env: &str) -> bool {
        self.config().ha.is_none() || self.leases.holds(env)
    }

    pub fn config(&self) -> Arc<Config> {
        self.config.read().expect("config lock").clone()
    }

    /// Every configured environment has finished its first full sync, and AWS answers.
    pub fn ready(&self) -> bool {
        self.not_ready().is_none()
    }

    /// Why the daemon is not ready, if it is not.
    pub fn not_ready(&self) -> Option<String> {
        let config = self.config();
        let services = self.services();
        let envs: Vec<_> = config.environments.keys().map(|e| (e, services.env(e))).collect();
        let waiting: Vec<&str> =
            envs.iter().filter(|(_, s)| !s.is_some_and(|s| s.ready)).map(|(e, _)| e.as_str()).collect();
        if !waiting.is_empty() {
            return Some(format!("the first sync is not done: {}", waiting.join(", ")));
        }
        let down: Vec<&str> = envs
            .iter()
            .filter(|(_, s)| s.is_some_and(|s| s.aws_unavailable.is_some()))
            .map(|(e, _)| e.as_str())
            .collect();
        (!down.is_empty()).then(|| format!("AWS does not answer: {}", down.join(", ")))
    }

    pub fn services(&self) -> std::sync::MutexGuard<'_, Services> {
        self.services.lock().expect("services lock")
    }

    /// What `/status` shows.
    pub fn status(&self) -> Status {
        let mut status = self.services().status();
        if self.config().ha.is_some() {
            for e in &mut status.environments {
                e.role = Some(if self.leases.holds(&e.name) { "leader" } else { "follower" }.to_string());
            }
        }
        status
    }

    /// This replica's role per environment, for `/readyz` (`None` without `ha:`).
    pub fn roles(&self) -> Option<String> {
        let config = self.config();
        config.ha.as_ref()?;
        let roles: Vec<String> = (config.environments.keys())
            .map(|e| format!("{} of {e}", if self.leases.holds(e) { "leader" } else { "follower" }))
            .collect();
        Some(roles.join(", "))
    }

    pub fn metrics_text(&self) -> String {
        let status = self.status();
        self.metrics.encode(&status, &self.stats)
    }
}

/// The daemon; `K` makes its AWS clients (and makes them again when the config's AWS
/// settings change).
pub struct Daemon<K: Connect> {
    pub shared: Arc<Shared>,
    pub cancel: CancellationToken,
    pub reloads: mpsc::Receiver<Arc<Config>>,
    pub connect: K,
}

/// How much of an environment a cycle reconciles.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Due {
    /// Everything, drift included (the poll timer, a reload, the first cycle).
    All,
    /// What a push changed.
    Changed,
    /// The services whose retry is due (and their dependents).
    Retry(BTreeSet<String>),
}

struct LoopState<C> {
    cloud: Arc<C>,
    poller: Arc<Mutex<Poller>>,
    semaphore: Arc<Semaphore>,
    last_poll: Option<Instant>,
    /// Per environment, the resolves, renders and plans of its last reconcile, reused for
    /// the services whose inputs and live state did not change.
    memos: BTreeMap<String, Arc<tokio::sync::Mutex<Memo>>>,
    watch_ids: u64,
    rollouts_done: mpsc::UnboundedSender<watch::RolloutDone>,
    /// The clients of each environment's AWS target (its account and region), made when
    /// first needed, with the batched reader of its rollout watches.
    env_clouds: Vec<EnvCloud<C>>,
    /// The lease task (with `ha:`) and what stops it.
    leases: Option<(tokio::task::JoinHandle<()>, CancellationToken)>,
}

/// The clients of one AWS target (the top-level `aws:` with an environment's keys over it).
struct EnvCloud<C> {
    aws: crate::core::config::AwsConfig,
    cloud: Arc<C>,
    reads: watch::RolloutReads,
}

impl<C: Cloud> LoopState<C> {
    /// The clients of `aws`, when made.
    fn target(&self, aws: &crate::core::config::AwsConfig) -> Option<(Arc<C>, watch::RolloutReads)> {
        self.env_clouds.iter().find(|e| e.aws == *aws).map(|e| (e.cloud.clone(), e.reads.clone()))
    }
}

impl<K: Connect> Daemon<K> {
    /// Runs until cancelled; then lets the cycle in flight finish within the grace period.
    pub async fn run(mut self) -> anyhow::Result<()> {
        let config = self.shared.config();
        let poller = Poller::open(&config, git::Auth::from_env(&config.repo))?;
        let (done_tx, mut done_rx) = mpsc::unbounded_channel();
        let cloud = self.connect.connect(&config.aws, self.shared.stats.clone()).await;
        let mut st = LoopState {
            leases: None,
            env_clouds: Vec::new(),
            cloud,
            poller: Arc::new(Mutex::new(poller)),
            semaphore: Arc::new(Semaphore::new(config.concurrency)),
            last_poll: None,
            memos: BTreeMap::new(),
            watch_ids: 0,
            rollouts_done: done_tx,
        };
        let mut code_pages = process::CodePages::default();
        self.shared.notifier.start();
        self.start_leases(&mut st, &config);
        tracing::info!(repo = %config.repo.url, envs = ?config.environments.keys().collect::<Vec<_>>(), "berth daemon started");
        loop {
            let config = self.shared.config();
            let now = Instant::now();
            let next_poll = st.last_poll.map_or(now, |t| t + config.repo.poll_interval);
            let retry = self.shared.services().next_retry();
            let wake_at = retry.map_or(next_poll, |r| r.min(next_poll)).max(now);
            tokio::select! {
                () = self.cancel.cancelled() => break,
                () = tokio::time::sleep_until(wake_at) => {}
                () = self.shared.wake.notified() => {}
                Some(new) = self.reloads.recv() => {
                    self.apply_reload(&mut st, &config, new).await;
                    continue;
                }
                Some(done) = done_rx.recv() => {
                    self.rollout_done(done);
                    continue;
                }
            }
            let config = self.shared.config();
            let due = self.due(&mut st, &config, Instant::now());
            if due.is_empty() {
                continue;
            }
            let cycle = self.cycle(&mut st, &config, &due);
            tokio::select! {
                () = cycle => {}
                () = async { self.cancel.cancelled().await; tokio::time::sleep(SHUTDOWN_GRACE).await } => {
                    tracing::warn!("in-flight work did not finish within the shutdown grace period; abandoning it");
                    break;
                }
            }
            // Revisions unused for three poll intervals are ones no service runs now.
            for e in &st.env_clouds {
                e.cloud.forget_unused(config.repo.poll_interval * 3 + Duration::from_secs(60));
            }
            process::release_freed_memory();
            code_pages.after_cycle();
            if self.cancel.is_cancelled() {
                break;
            }
        }
        // The leases go last: the applies of the last cycle are over (or abandoned).
        self.stop_leases(&mut st).await;
        tracing::info!("berth daemon stopped");
        Ok(())
    }

    /// Starts taking and renewing the environments' leases (with `ha:`).
    fn start_leases(&self, st: &mut LoopState<K::Cloud>, config: &Config) {
        if let Some(ha) = config.ha.clone() {
            let stop = CancellationToken::new();
            let task = tokio::spawn(lease::run(self.shared.clone(), st.cloud.clone(), ha, stop.clone()));
            st.leases = Some((task, stop));
        }
    }

    /// Stops the lease task and gives its leases up.
    async fn stop_leases(&self, st: &mut LoopState<K::Cloud>) {
        if let Some((task, stop)) = st.leases.take() {
            stop.cancel();
            let _ = task.await;
        }
    }

    /// The clients of an environment's AWS target, made on first use.
    async fn env_cloud(&self, st: &mut LoopState<K::Cloud>, aws: &crate::core::config::AwsConfig) -> Arc<K::Cloud> {
        if let Some((cloud, _)) = st.target(aws) {
            return cloud;
        }
        // An environment on the top-level target shares its clients (one HTTP client, one
        // set of TLS roots, one revision cache).
        let cloud = if *aws == self.shared.config().aws {
            st.cloud.clone()
        } else {
            self.connect.connect(aws, self.shared.stats.clone()).await
        };
        let reads = watch::RolloutReads::start(cloud.clone());
        st.env_clouds.push(EnvCloud { aws: aws.clone(), cloud: cloud.clone(), reads });
        cloud
    }

    /// What is due now, per environment.
    fn due(&self, st: &mut LoopState<K::Cloud>, config: &Config, now: Instant) -> BTreeMap<String, Due> {
        let pushed: BTreeSet<String> = std::mem::take(&mut *self.shared.pending.lock().expect("pending lock"));
        let mut due: BTreeMap<String, Due> = BTreeMap::new();
        if st.last_poll.is_none_or(|t| now >= t + config.repo.poll_interval) {
            st.last_poll = Some(now);
            due.extend(config.environments.keys().map(|e| (e.clone(), Due::All)));
            return due;
        }
        let services = self.shared.services();
        for env in pushed.into_iter().filter(|e| config.environments.contains_key(e)) {
            // A push-scoped cycle needs a full one before it (what is settled).
            let scope = if services.knows(&env) { Due::Changed } else { Due::All };
            due.insert(env, scope);
        }
        for (env, names) in services.due(now) {
            if !config.environments.contains_key(&env) {
                continue;
            }
            match due.get(&env) {
                None => {
                    due.insert(env, Due::Retry(names));
                }
                Some(Due::Changed) => {
                    due.insert(env, Due::All);
                }
                Some(_) => {}
            }
        }
        due
    }

    async fn apply_reload(&self, st: &mut LoopState<K::Cloud>, old: &Config, new: Arc<Config>) {
        if new.metrics_listen != old.metrics_listen || new.webhook != old.webhook {
            tracing::warn!("listener addresses changed in the config: restart berth to apply them");
        }
        let leases_change = new.ha != old.ha || new.aws != old.aws;
        if leases_change {
            // Give up the leases where they were taken before anything moves.
            self.stop_leases(st).await;
        }
        if new.aws != old.aws {
            st.cloud = self.connect.connect(&new.aws, self.shared.stats.clone()).await;
        }
        if leases_change {
            self.start_leases(st, &new);
        }
        // Targets no environment uses any more are dropped (watches in flight keep theirs).
        st.env_clouds.retain(|c| new.environments.values().any(|e| e.aws == c.aws));
        if new.repo != old.repo {
            match Poller::open(&new, git::Auth::from_env(&new.repo)) {
                Ok(p) => st.poller = Arc::new(Mutex::new(p)),
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "cannot open the repository of the new config; keeping the old one")
                }
            }
        }
        if new.concurrency != old.concurrency {
            st.semaphore = Arc::new(Semaphore::new(new.concurrency));
        }
        for gone in old.environments.keys().filter(|e| !new.environments.contains_key(*e)) {
            st.poller.lock().expect("poller lock").forget(gone);
        }
        self.shared.services().retain_envs(|e| new.environments.contains_key(e));
        st.memos.retain(|e, _| new.environments.contains_key(e));
        *self.shared.config.write().expect("config lock") = new.clone();
        tracing::info!(
            poll_interval = %humantime::format_duration(new.repo.poll_interval),
            envs = ?new.environments.keys().collect::<Vec<_>>(),
            "configuration reloaded"
        );
        // New environments, and every one if the AWS settings changed, reconcile in full at
        // once under the new config: the new settings may change any service.
        let changed = |k: &String| new.aws != old.aws || old.environments.get(k) != new.environments.get(k);
        let now_due: Vec<String> = new.environments.keys().filter(|k| changed(k)).cloned().collect();
        if !now_due.is_empty() {
            st.last_poll = None;
            self.shared.wake.notify_one();
        }
    }
}
