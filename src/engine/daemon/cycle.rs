//! One cycle of the daemon: poll git once, reconcile the due environments in parallel,
//! and fold each environment's reports into the services' state, the status and the
//! metrics.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use super::{Daemon, Due, LoopState};
use crate::core::config::{Config, EnvConfig, SyncMode};
use crate::engine::cloud::{Cloud, Connect};
use crate::engine::history::Trigger;
use crate::engine::metrics::labels;
use crate::engine::notify::Notice;
use crate::engine::outcome::{Failure, FailureClass, cloudwatch_values};
use crate::engine::reconcile::{self, EnvInput, Mode, Outcome, Scope, ServiceReport};
use crate::engine::scheduler::{EnvState, Services};
use crate::engine::status::service_status;
use crate::source::checkout::Checkout;

fn now_secs() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// What a cycle looked at: some services only (`partial`: the others keep their status),
/// and whether the cluster, for orphans.
struct Looked {
    partial: bool,
    orphans: bool,
}

/// One environment's part of a cycle.
struct Work {
    env: EnvConfig,
    checkout: Arc<Checkout>,
    fetch_error: Option<String>,
    due: Due,
    settled: BTreeMap<String, String>,
    watching: BTreeMap<String, String>,
    /// The release this environment deployed before, when its new one is older (the newest
    /// release tag was removed).
    release_removed: Option<String>,
    /// The commit is new to the orphan scan.
    scan_orphans: bool,
    /// Set by the reconcile when its look for orphans was complete.
    orphans_scanned: std::sync::atomic::AtomicBool,
}

impl<K: Connect> Daemon<K> {
    /// One pass: poll git once, then reconcile the due environments in parallel.
    pub(super) async fn cycle(&self, st: &mut LoopState<K::Cloud>, config: &Arc<Config>, due: &BTreeMap<String, Due>) {
        let envs: Vec<EnvConfig> =
            config.environments.values().filter(|e| due.contains_key(&e.name)).cloned().collect();
        let work = self.poll(st, config, &envs, due).await;
        let mut clouds = Vec::new();
        for w in &work {
            st.memos.entry(w.env.name.clone()).or_default();
            clouds.push(self.env_cloud(st, &w.env.aws).await);
        }
        let futures = work.into_iter().zip(clouds).map(|(w, cloud)| {
            let memo = st.memos.get(&w.env.name).cloned();
            let (shared, semaphore) = (self.shared.clone(), st.semaphore.clone());
            let fence_shared = self.shared.clone();
            let (config, cancel) = (config.clone(), self.cancel.clone());
            async move {
                let started = Instant::now();
                let env_name = w.env.name.clone();
                let gate =
                    move |service: &str, hash: &str| shared.services().gate(&env_name, service, hash, Instant::now());
                // A replica that does not hold the environment's lease only reports on it.
                let leads = fence_shared.leads(&w.env.name);
                let mode = if w.env.sync == SyncMode::Auto && leads { Mode::Apply } else { Mode::Diff };
                let fence_env = w.env.name.clone();
                let fence = move || fence_shared.leads(&fence_env);
                let scope = match &w.due {
                    Due::All => Scope::All,
                    Due::Changed => Scope::Changed(&w.settled),
                    Due::Retry(names) => Scope::Only(names),
                };
                let trigger = match (&w.release_removed, &w.due) {
                    (Some(from), _) => Some(Trigger::ReleaseTagRemoved { from: from.clone() }),
                    (None, Due::Retry(_)) => Some(Trigger::Retry),
                    _ => None,
                };
                let input = EnvInput {
                    gate: Some(&gate),
                    semaphore: Some(semaphore),
                    cancel,
                    scope,
                    memo: memo.as_deref(),
                    detach_rollouts: true,
                    watching: Some(&w.watching),
                    trigger,
                    scan_orphans: w.scan_orphans,
                    orphans_scanned: Some(&w.orphans_scanned),
                    fence: Some(&fence),
                    ..EnvInput::new(&config, &w.env, &w.checkout, mode)
                };
                let reports = reconcile::reconcile_env(&*cloud, &input).await;
                let account = cloud.account_id().await.ok();
                (w, reports, started.elapsed(), account, cloud)
            }
        });
        // CloudWatch data go to each environment's own account and region: one batch per
        // target.
        let mut data: Vec<(Arc<K::Cloud>, crate::core::config::AwsConfig, Vec<crate::aws::Datum>)> = Vec::new();
        for (w, reports, took, account, cloud) in futures::future::join_all(futures).await {
            let key = labels(&[("env", &w.env.name)]);
            self.shared.metrics.reconcile_duration.get_or_create(&key).observe(took.as_secs_f64());
            // A look for orphans counts when it was complete and made by the replica that
            // prunes (a follower's, or a failed one, is made again).
            let scanned =
                w.orphans_scanned.load(std::sync::atomic::Ordering::Relaxed) && self.shared.leads(&w.env.name);
            let looked = Looked { partial: w.due != Due::All, orphans: w.scan_orphans && scanned };
            self.record(st, &w.env, &w.checkout, w.fetch_error, &reports, looked);
            self.shared.services().env_mut(&w.env.name).account = account;
            // Only the replica that converges an environment publishes its figures.
            let datums = if self.shared.leads(&w.env.name) { self.cloudwatch_data(&w.env.name) } else { Vec::new() };
            match data.iter_mut().find(|(_, aws, _)| *aws == w.env.aws) {
                Some((_, _, d)) => d.extend(datums),
                None => data.push((cloud, w.env.aws.clone(), datums)),
            }
        }
        if let Some(namespace) = &config.cloudwatch_namespace {
            for (cloud, aws, d) in data.into_iter().filter(|(_, _, d)| !d.is_empty()) {
                if let Err(e) = cloud.put_metric_data(namespace, &d).await {
                    tracing::warn!(region = %aws.region, error = %e, "cannot publish to CloudWatch");
                }
            }
        }
    }

    /// Polls git once for the due environments: each gets its checkout (the last good one
    /// when the poll failed) or, without any, an error in its status.
    async fn poll(
        &self,
        st: &LoopState<K::Cloud>,
        config: &Arc<Config>,
        envs: &[EnvConfig],
        due: &BTreeMap<String, Due>,
    ) -> Vec<Work> {
        let (poller, cfg, envs_for_poll) = (st.poller.clone(), config.clone(), envs.to_vec());
        let started = Instant::now();
        let polled = tokio::task::spawn_blocking(move || {
            let refs: Vec<&_> = envs_for_poll.iter().collect();
            poller.lock().expect("poller lock").poll(&cfg, &refs)
        })
        .await
        .unwrap_or_default();
        let fetch_secs = started.elapsed().as_secs_f64();
        // One poll (one ref negotiation, at most one fetch) serves every environment: it is
        // recorded once, an error when any environment's part of it failed.
        let m = &self.shared.metrics;
        m.git_fetch_duration.observe(fetch_secs);
        let result = if polled.values().any(|r| r.is_err()) { "error" } else { "ok" };
        m.git_fetch.get_or_create(&labels(&[("result", result)])).inc();
        let mut services = self.shared.services();
        let mut work = Vec::new();
        for env in envs {
            let (checkout, error) = match polled.get(&env.name) {
                Some(Ok(None)) => {
                    set_no_release(&mut services, &env.name);
                    services.drop_due(&env.name, Instant::now());
                    continue;
                }
                Some(Ok(Some(p))) => {
                    if p.changed {
                        tracing::info!(env = %env.name, r#ref = %p.checkout.ref_name, commit = %p.checkout.commit, read_ms = p.read.as_millis() as u64, "new commit");
                    }
                    (Some(p.checkout.clone()), None)
                }
                Some(Err(e)) => {
                    tracing::warn!(env = %env.name, error = %e, "git poll failed; keeping the last good commit");
                    (st.poller.lock().expect("poller lock").last(&env.name), Some(e.clone()))
                }
                None => (None, Some("not polled".to_string())),
            };
            let before = services.env(&env.name).and_then(|e| e.ref_name.clone());
            let release_removed = checkout.as_ref().and_then(|c| older_release(before.as_deref(), &c.ref_name));
            if let (Some(from), Some(c)) = (&release_removed, &checkout) {
                tracing::warn!(env = %env.name, from = %from, to = %c.ref_name, "the newest release tag was removed: rolling the environment back to the newest remaining release");
            }
            let scanned = services.env(&env.name).and_then(|e| e.orphan_scan.as_ref());
            let scan_orphans = checkout.as_ref().is_some_and(|c| {
                let now = name_digests(c, &env.name);
                scanned.is_none_or(|before| before.iter().any(|d| now.binary_search(d).is_err()))
            });
            match checkout {
                Some(checkout) => work.push(Work {
                    release_removed,
                    scan_orphans,
                    orphans_scanned: std::sync::atomic::AtomicBool::new(false),
                    env: env.clone(),
                    checkout,
                    fetch_error: error,
                    due: due.get(&env.name).cloned().unwrap_or(Due::All),
                    settled: services.settled(&env.name),
                    watching: services.watching(&env.name),
                }),
                None => {
                    services.drop_due(&env.name, Instant::now());
                    services.env_mut(&env.name).last_fetch_error = Some(error.unwrap_or_default());
                }
            }
        }
        work
    }

    /// Folds an environment's reports into the services' state, the logs, the counters and
    /// the status. A `partial` cycle reported only some services: the others keep theirs.
    fn record(
        &self,
        st: &mut LoopState<K::Cloud>,
        env_config: &EnvConfig,
        checkout: &Checkout,
        fetch_error: Option<String>,
        reports: &[ServiceReport],
        looked: Looked,
    ) {
        let Looked { partial, orphans: scanned_orphans } = looked;
        let env = env_config.name.as_str();
        let outage = aws_outage(reports);
        self.record_services(env, reports, outage.is_some());
        for r in reports {
            if let Some(watch) = &r.rollout {
                self.watch(st, env_config, &r.name, watch.clone());
            }
        }
        let ts = now_secs();
        let leads = self.shared.leads(env);
        let mut services = self.shared.services();
        for r in reports {
            let s = services.entry(env, &r.name);
            let new = service_status(r, ts, s.shown.as_ref());
            // A pin or a pause this process sees appear (not every one it finds at start).
            let before = s.shown.as_ref();
            if leads {
                if let Some(pin) = new.pinned.as_ref().filter(|_| before.is_some_and(|b| b.pinned.is_none())) {
                    self.shared.notifier.send(&notice(env, r, "pinned", pin.to_string()));
                }
                if let Some(pause) = new.paused.as_ref().filter(|_| before.is_some_and(|b| b.paused.is_none())) {
                    self.shared.notifier.send(&notice(env, r, "paused", pause.to_string()));
                }
            }
            match &mut s.shown {
                // Kept where nothing but the time of the last sync changed.
                Some(p) => {
                    p.last_sync = new.last_sync;
                    if *p != new {
                        *p = new;
                    }
                }
                None => s.shown = Some(new),
            }
        }
        let reported: BTreeSet<&str> = reports.iter().map(|r| r.name.as_str()).collect();
        // A partial cycle keeps the services it did not look at, if they are still deployed.
        let deployed: BTreeSet<String> = if partial { git_services(checkout, env) } else { BTreeSet::new() };
        let orphans = if scanned_orphans {
            reports.iter().filter(|r| matches!(r.outcome, Outcome::Orphaned(_))).map(|r| r.name.clone()).collect()
        } else {
            services.env(env).map(|e| e.orphans.clone()).unwrap_or_default()
        };
        let orphan_scan =
            if scanned_orphans { Some(name_digests(checkout, env)) } else { services.env_mut(env).orphan_scan.take() };
        services.retain(|e, s| e != env || reported.contains(s) || deployed.contains(s) || orphans.contains(s));
        match (&services.env(env).and_then(|e| e.aws_unavailable.clone()), &outage) {
            (None, Some(error)) => tracing::warn!(
                env,
                error = %error,
                "AWS answers none of this environment's calls: an outage, not service failures; no backoff is charged, the next poll tries everything again"
            ),
            (Some(_), None) => tracing::info!(env, "AWS answers again"),
            _ => {}
        }
        *services.env_mut(env) = EnvState {
            ref_name: Some(checkout.ref_name.clone()),
            commit: Some(checkout.commit.clone()),
            last_fetch_error: fetch_error,
            ready: true,
            no_release: false,
            aws_unavailable: outage,
            orphan_scan,
            orphans,
            account: None,
            region: Some(env_config.aws.region.clone()),
        };
    }

    /// The services' state, the error log (once per new error; an outage is logged once
    /// for the environment, not per service) and the counters.
    fn record_services(&self, env: &str, reports: &[ServiceReport], outage: bool) {
        let now = Instant::now();
        // Only the replica that converges an environment tells people about it.
        let notify = |n: Notice| {
            if self.shared.leads(env) {
                self.shared.notifier.send(&n);
            }
        };
        let notify = |n: &dyn Fn() -> Notice| {
            if self.shared.notifier.has_sinks() {
                notify(n());
            }
        };
        let mut services = self.shared.services();
        let mut changed = BTreeSet::new();
        for r in reports {
            let before = services.get(env, &r.name).and_then(|s| s.spec_hash.clone());
            if r.spec_hash.is_some() && before.is_some() && before != r.spec_hash {
                changed.insert(r.name.clone());
            }
            let delay = services.record(env, r, now, rand::random::<f64>(), outage);
            let s = services.entry(env, &r.name);
            match (r.outcome.failure(), &r.outcome) {
                (Some(_), _) if outage => {}
                (Some(f), _) => {
                    let text = f.to_string();
                    if s.logged_error.as_deref() != Some(text.as_str()) {
                        tracing::error!(env, service = %r.name, class = ?f.class(), retry_in = ?delay, error = %text, "service failed");
                        let event = if f.class() == FailureClass::RolloutFailed { "rollout_failed" } else { "failed" };
                        let first = text.lines().take(2).collect::<Vec<_>>().join(" ");
                        notify(&|| notice(env, r, event, first.clone()));
                        s.logged_error = Some(text);
                    }
                }
                (None, Outcome::WaitingForImage(image)) => {
                    if s.logged_error.as_deref() != Some(image.as_str()) {
                        tracing::info!(env, service = %r.name, image = %image, "waiting for the image to be pushed");
                        s.logged_error = Some(image.clone());
                    }
                }
                (None, _) => s.logged_error = None,
            }
            if r.outcome == Outcome::Pruned {
                notify(&|| notice(env, r, "pruned", "deleted: its folder is gone from git".into()));
            }
            if !r.applied.is_empty() && r.outcome.failure().is_none() {
                let fields: Vec<&str> = r.drift.iter().map(|c| c.path.as_str()).collect();
                let (event, message) = match &r.trigger {
                    Some(Trigger::DriftHeal { fields }) => {
                        ("drift_healed", format!("healed drift of {}", fields.join(", ")))
                    }
                    Some(t @ Trigger::ReleaseTagRemoved { .. }) => {
                        ("rolled_back", format!("{t}: now at {}", revision_of(r)))
                    }
                    _ => (
                        "applied",
                        format!("applied {} ({}): {}", short(r.commit.as_deref()), revision_of(r), fields.join(", ")),
                    ),
                };
                notify(&|| notice(env, r, event, message.clone()));
            }
            if !r.applied.is_empty() {
                self.remember(env, r);
                // One line per applied service: what it now runs and which fields git changed
                // or a heal put back (docs/operations.md, "Logs").
                let fields: Vec<&str> = r.drift.iter().map(|c| c.path.as_str()).collect();
                tracing::info!(
                    env,
                    service = %r.name,
                    commit = %r.commit.as_deref().unwrap_or("-"),
                    image = %r.image.as_deref().unwrap_or("-"),
                    revision = %r.task_definition.as_deref().and_then(|t| t.rsplit('/').next()).unwrap_or("-"),
                    changed = %fields.join(","),
                    trigger = %r.trigger.as_ref().map_or("-".to_string(), ToString::to_string),
                    actions = %r.applied.join("; "),
                    "applied"
                );
            }
            let result = r.outcome.metric_result(!r.applied.is_empty());
            let key = labels(&[("env", env), ("service", &r.name), ("result", result)]);
            self.shared.metrics.reconcile.get_or_create(&key).inc();
        }
        if !changed.is_empty() && services.forgive_dependents(env, &changed, reports) {
            // Their backoff held them off in this cycle: the next one attempts them.
            self.shared.trigger([env.to_string()]);
        }
    }

    /// Keeps the apply for the service page (the last few per service).
    fn remember(&self, env: &str, r: &ServiceReport) {
        let entry = crate::engine::history::Entry {
            time: now_secs(),
            env: env.to_string(),
            service: r.name.clone(),
            commit: r.commit.clone().unwrap_or_default(),
            spec_hash: r.spec_hash.clone().unwrap_or_default(),
            revision: r.task_definition.clone().unwrap_or_default(),
            image: r.image.clone().unwrap_or_default(),
            trigger: r.trigger.clone().unwrap_or(Trigger::GitChange),
            result: if r.outcome.failure().is_some() { "failed" } else { "applied" }.to_string(),
            duration_s: None,
            by: "berth".to_string(),
            error: r.outcome.failure().map(|f| f.to_string().lines().next().unwrap_or_default().to_string()),
            scaling: None,
        };
        let mut recent = self.shared.recent.lock().expect("recent lock");
        recent.push_front(entry);
        recent.truncate(super::RECENT);
    }

    /// The CloudWatch gauges of one environment, from its services' status.
    fn cloudwatch_data(&self, env: &str) -> Vec<crate::aws::Datum> {
        let services = self.shared.services();
        let mut out = Vec::new();
        for s in services.shown(env) {
            for (name, on) in cloudwatch_values(s.sync, s.health, s.last_error.is_some()) {
                out.push(crate::aws::Datum {
                    name,
                    env: env.to_string(),
                    service: s.name.clone(),
                    value: f64::from(u8::from(on)),
                });
            }
        }
        out
    }
}

/// A notice of `event` about a service's report.
fn notice(env: &str, r: &ServiceReport, event: &'static str, message: String) -> Notice {
    Notice {
        event,
        env: env.to_string(),
        service: r.name.clone(),
        commit: r.commit.clone(),
        image: r.image.clone(),
        revision: r.task_definition.clone(),
        fields: r.drift.iter().map(|c| c.path.clone()).collect(),
        message,
        time: now_secs(),
    }
}

fn revision_of(r: &ServiceReport) -> &str {
    r.task_definition.as_deref().and_then(|t| t.rsplit('/').next()).unwrap_or("-")
}

fn short(commit: Option<&str>) -> &str {
    commit.map_or("-", |c| &c[..c.len().min(12)])
}

/// The sorted digests of the names of [`git_services`].
fn name_digests(checkout: &Checkout, env: &str) -> Vec<u64> {
    use std::hash::{BuildHasher as _, BuildHasherDefault, DefaultHasher};
    let hasher = BuildHasherDefault::<DefaultHasher>::default();
    let names = (checkout.repo.services.iter())
        .filter(|d| d.envs.contains_key(env))
        .map(|d| d.name.as_str())
        .chain(checkout.repo.broken.iter().filter(|b| b.envs.iter().any(|e| e == env)).map(|b| b.key.as_str()));
    let mut out: Vec<u64> = names.map(|n| hasher.hash_one(n)).collect();
    out.sort_unstable();
    out
}

/// The services git has for `env` at `checkout` (broken ones included).
fn git_services(checkout: &Checkout, env: &str) -> BTreeSet<String> {
    (checkout.repo.services.iter())
        .filter(|d| d.envs.contains_key(env))
        .map(|d| d.name.clone())
        .chain(checkout.repo.broken.iter().filter(|b| b.envs.iter().any(|e| e == env)).map(|b| b.key.clone()))
        .collect()
}

/// `before`, when `now` is an older release than it (`vX.Y.Z` refs): the newest release
/// tag was removed and the environment goes back to the newest one left.
fn older_release(before: Option<&str>, now: &str) -> Option<String> {
    let tag = |r: &'_ str| r.strip_prefix("refs/tags/").unwrap_or(r).to_string();
    let version = |r: &str| semver::Version::parse(tag(r).strip_prefix('v')?).ok();
    let (b, n) = (version(before?)?, version(now)?);
    (n < b).then(|| tag(before.unwrap_or_default()))
}

/// A tag environment with no release tag yet: nothing to deploy, and ready (its poll
/// worked). Said once, when it starts.
fn set_no_release(services: &mut Services, env: &str) {
    if services.env(env).is_some_and(|e| e.no_release) {
        return;
    }
    tracing::info!(env, "no release tag vX.Y.Z yet: nothing to deploy until the first release");
    *services.env_mut(env) = EnvState { ready: true, no_release: true, ..EnvState::default() };
    services.retain(|e, _| e != env);
}

/// The first error of a cycle in which AWS answered nothing: every service that got as far
/// as a call failed with no answer, a timeout or a 5xx. `None` when any call was answered
/// (or none was made).
fn aws_outage(reports: &[ServiceReport]) -> Option<String> {
    let mut first = None;
    for r in reports {
        match &r.outcome {
            Outcome::Failed(f) if f.class() == FailureClass::Unavailable => {
                first.get_or_insert_with(|| f.to_string());
            }
            // Decided before any call, or not attempted.
            Outcome::Failed(Failure::Invalid(_)) | Outcome::Skipped(_) | Outcome::Held(_) => {}
            _ => return None,
        }
    }
    first
}
