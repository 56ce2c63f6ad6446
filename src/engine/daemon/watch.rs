//! Rollouts watched beside the cycles: a slow or stuck rollout delays no other service.
//! A watch ends with a verdict the loop folds in, or is stopped (a newer apply of the
//! service, shutdown) without one.

use super::{Daemon, LoopState};
use crate::engine::cloud::Connect;
use crate::engine::metrics::labels;
use crate::engine::reconcile::RolloutWatch;
use crate::engine::scheduler::Watch;

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
    pub(super) fn watch(&self, st: &mut LoopState<K::Cloud>, env: &str, service: &str, watch: RolloutWatch) {
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
        let (cloud, tx) = (st.cloud.clone(), st.rollouts_done.clone());
        let (env, service) = (env.to_string(), service.to_string());
        tokio::spawn(async move {
            tokio::select! {
                result = watch.wait(&*cloud) => {
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
        {
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
        }
        match &done.result {
            Ok(()) => tracing::info!(env, service, spec = %done.spec_hash, "rollout completed"),
            Err(reason) => {
                tracing::error!(env, service, spec = %done.spec_hash, reason = %reason, "rollout failed; holding this spec until git changes it");
                let key = labels(&[("env", env), ("service", service), ("result", "failed")]);
                self.shared.metrics.reconcile.get_or_create(&key).inc();
            }
        }
        self.shared.trigger([done.env]);
    }
}
