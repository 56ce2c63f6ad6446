//! Rollouts watched beside the cycles: a slow or stuck rollout delays no other service.
//! A watch ends with a verdict the loop folds in, or is stopped (a newer apply of the
//! service, shutdown) without one. The watches' reads are batched ([`RolloutReads`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::{Daemon, LoopState};
use crate::aws::AwsError;
use crate::core::live::LiveService;
use crate::engine::cloud::{Cloud, Connect};
use crate::engine::metrics::labels;
use crate::engine::reconcile::RolloutWatch;
use crate::engine::scheduler::Watch;

/// How long the reader gathers the asks of other watches before it reads: watches started
/// by one cycle poll at the same pace, so their asks arrive together.
const GATHER: Duration = Duration::from_millis(20);
/// Services per DescribeServices call (the API's limit).
const BATCH: usize = 10;

type Reply = oneshot::Sender<Result<Option<LiveService>, AwsError>>;

/// The reads of every rollout watch, through one task: the asks of one cluster that
/// arrive together share DescribeServices calls of ten services, read one call at a time.
/// A commit that changes a hundred services costs ten reads per `rollout.poll`, not a
/// hundred at once.
#[derive(Clone)]
pub(super) struct RolloutReads {
    asks: mpsc::UnboundedSender<(String, String, Reply)>,
}

impl RolloutReads {
    /// Starts the reader; it ends when the last handle to it is dropped.
    pub(super) fn start<C: Cloud>(cloud: Arc<C>) -> RolloutReads {
        let (tx, mut rx) = mpsc::unbounded_channel::<(String, String, Reply)>();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                tokio::time::sleep(GATHER).await;
                let mut asks: BTreeMap<String, BTreeMap<String, Vec<Reply>>> = BTreeMap::new();
                let mut add = |(cluster, service, reply): (String, String, Reply)| {
                    asks.entry(cluster).or_default().entry(service).or_default().push(reply);
                };
                add(first);
                while let Ok(ask) = rx.try_recv() {
                    add(ask);
                }
                for (cluster, mut services) in asks {
                    let names: Vec<String> = services.keys().cloned().collect();
                    for chunk in names.chunks(BATCH) {
                        let answer = cloud.describe_services(&cluster, chunk).await;
                        for name in chunk {
                            let found = answer.as_ref().map(|m| m.get(name).cloned()).map_err(Clone::clone);
                            for reply in services.remove(name).unwrap_or_default() {
                                let _ = reply.send(found.clone());
                            }
                        }
                    }
                }
            }
        });
        RolloutReads { asks: tx }
    }

    /// The service's live state, read in the next batch.
    pub(super) async fn read(&self, cluster: &str, service: &str) -> Result<Option<LiveService>, AwsError> {
        let gone =
            || AwsError::Unavailable { operation: "DescribeServices".into(), message: "the reader stopped".into() };
        let (reply, answer) = oneshot::channel();
        self.asks.send((cluster.to_string(), service.to_string(), reply)).map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

/// What a rollout watch found.
pub(super) struct RolloutDone {
    env: String,
    service: String,
    id: u64,
    spec_hash: String,
    result: Result<(), String>,
}

impl<K: Connect> Daemon<K> {
    /// Watches a rollout; a newer apply of the service stops the watch of an older one.
    pub(super) fn watch(
        &self,
        st: &mut LoopState<K::Cloud>,
        env_config: &crate::core::config::EnvConfig,
        service: &str,
        watch: RolloutWatch,
    ) {
        let env = env_config.name.as_str();
        let Some((cloud, reads)) = st.target(&env_config.aws) else { return };
        st.watch_ids += 1;
        let id = st.watch_ids;
        let stop = self.cancel.child_token();
        let spec_hash = watch.spec_hash.clone();
        let old = self.shared.services().entry(env, service).watch.replace(Watch {
            id,
            spec_hash: spec_hash.clone(),
            stop: stop.clone(),
        });
        if let Some(old) = old {
            old.stop.cancel();
        }
        let tx = st.rollouts_done.clone();
        let shared = self.shared.clone();
        let (env, service) = (env.to_string(), service.to_string());
        tokio::spawn(async move {
            let read = || reads.read(&watch.cluster, &watch.service);
            let lease_env = env.clone();
            let leads = move || shared.leads(&lease_env);
            tokio::select! {
                result = watch.wait_reading(&*cloud, read, &leads) => {
                    let _ = tx.send(RolloutDone { env, service, id, spec_hash, result });
                }
                () = stop.cancelled() => {}
            }
        });
    }

    /// A watched rollout ended. A failure was written on the service as its hold (the next
    /// cycle reads it back); either way the environment reconciles again at once: its
    /// dependents were waiting for this rollout.
    pub(super) fn rollout_done(&self, done: RolloutDone) {
        let (env, service) = (done.env.as_str(), done.service.as_str());
        let commit = {
            let mut services = self.shared.services();
            let s = services.entry(env, service);
            if s.watch.as_ref().is_none_or(|w| w.id != done.id) {
                return;
            }
            s.watch = None;
            s.settled = false;
            if done.result.is_err() {
                s.held = Some(done.spec_hash.clone());
            }
            if let Some(shown) = &mut s.shown {
                shown.rollout_finished(&done.result);
            }
            s.shown.as_ref().and_then(|x| x.commit.clone())
        };
        match &done.result {
            Ok(()) => tracing::info!(env, service, spec = %done.spec_hash, "rollout completed"),
            Err(reason) => {
                tracing::error!(env, service, spec = %done.spec_hash, reason = %reason, "rollout failed; holding this spec until git changes it");
                self.shared.notifier.send(&crate::engine::notify::Notice {
                    event: "rollout_failed",
                    env: env.to_string(),
                    service: service.to_string(),
                    commit: commit.clone(),
                    image: None,
                    revision: None,
                    fields: Vec::new(),
                    message: format!("rollout failed: {reason}; berth holds this spec until git changes the service"),
                    time: crate::engine::history::unix_now(),
                });
                let key = labels(&[("env", env), ("service", service), ("result", "failed")]);
                self.shared.metrics.reconcile.get_or_create(&key).inc();
            }
        }
        self.shared.trigger([done.env]);
    }
}
