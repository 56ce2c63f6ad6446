//! Leader election per environment (`ha: {table, lease}`), on DynamoDB conditional writes:
//! a replica takes an environment's lease when it is free or expired, renews it every
//! third of the lease with a condition on its holder id and version, and gives it up on a
//! clean shutdown. The version is a fencing token: a takeover raises it, so the old
//! holder's renewals fail. A holder trusts its lease for two thirds of the lease after
//! the last renewal it sent; past that (DynamoDB unreachable, say) it stops writing, a
//! third of the lease before another replica may take over. Replicas that do not lead an
//! environment reconcile it in report mode (`diff`): their status and metrics stay warm.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Shared;
use crate::aws::AwsError;
use crate::engine::cloud::Cloud;
use crate::engine::metrics::labels;

/// A lease this replica holds.
#[derive(Clone, Copy, Debug)]
struct Held {
    version: u64,
    /// Writes stop after this (two thirds of the lease after the last renewal was sent).
    trusted_until: Instant,
}

/// The leases this replica holds, by environment.
pub struct Leases {
    /// This replica's holder id: host, process and a random part.
    pub holder: String,
    held: Mutex<BTreeMap<String, Held>>,
    /// `berth_lease_renew_failures_total{env}`.
    pub renew_failures: Family<Vec<(String, String)>, Counter>,
}

impl Default for Leases {
    fn default() -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let host = host.trim();
        let host = if host.is_empty() { "berth" } else { host };
        Leases {
            holder: format!("{host}/{}/{:08x}", std::process::id(), rand::random::<u32>()),
            held: Mutex::new(BTreeMap::new()),
            renew_failures: Family::default(),
        }
    }
}

impl Leases {
    /// Whether this replica may write to `env` now.
    pub fn holds(&self, env: &str) -> bool {
        self.held.lock().expect("lease lock").get(env).is_some_and(|h| h.trusted_until > Instant::now())
    }

    /// The fencing token of the lease held for `env`.
    pub fn version(&self, env: &str) -> Option<u64> {
        self.held.lock().expect("lease lock").get(env).map(|h| h.version)
    }
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64
}

fn key(env: &str) -> String {
    format!("lease#{env}")
}

/// Takes and renews the leases of every environment until `cancel` (which the daemon
/// sends once its last apply has ended), then gives them up. One DynamoDB request per
/// environment per third of the lease, all environments at once, each bounded by a third
/// of the lease (a slow answer must not let every lease lapse).
pub async fn run<C: Cloud>(
    shared: Arc<Shared>,
    cloud: Arc<C>,
    ha: crate::core::config::HaConfig,
    cancel: CancellationToken,
) {
    if ha.lease / 3 < shared.config().aws.attempt_timeout {
        tracing::warn!(
            lease = %humantime::format_duration(ha.lease),
            "a third of ha.lease is shorter than aws.attempt_timeout: a write in flight may outlast the lease's trust; make the lease at least three attempt timeouts"
        );
    }
    loop {
        let config = shared.config();
        let (shared, cloud, ha) = (&shared, &cloud, &ha);
        let steps = config.environments.keys().map(|env| async move {
            let bounded = tokio::time::timeout(ha.lease / 3, step(shared, &**cloud, ha, env)).await;
            if bounded.is_err() {
                shared.leases.renew_failures.get_or_create(&labels(&[("env", env)])).inc();
                tracing::warn!(env = %env, "no answer to the lease write within a third of the lease");
            }
        });
        futures::future::join_all(steps).await;
        tokio::select! {
            () = cancel.cancelled() => break,
            () = tokio::time::sleep(ha.lease / 3) => {}
        }
    }
    let held: Vec<(String, Held)> =
        std::mem::take(&mut *shared.leases.held.lock().expect("lease lock")).into_iter().collect();
    for (env, h) in held {
        match cloud.release_lease(&ha.table, &key(&env), &shared.leases.holder, h.version).await {
            Ok(()) => tracing::info!(env = %env, "gave up the lease"),
            Err(e) => tracing::warn!(env = %env, error = %e, "cannot give up the lease; it expires by itself"),
        }
    }
}

async fn step<C: Cloud>(shared: &Shared, cloud: &C, ha: &crate::core::config::HaConfig, env: &str) {
    let leases = &shared.leases;
    let before = leases.held.lock().expect("lease lock").get(env).copied();
    let sent = Instant::now();
    let now = unix_ms();
    let expires = now + ha.lease.as_millis() as u64;
    let pk = key(env);
    let write = || cloud.write_lease(&ha.table, &pk, &leases.holder, before.map(|h| h.version), now, expires);
    let mut answer = write().await;
    if matches!(answer, Err(AwsError::NotFound { .. })) && ha.create {
        answer = match cloud.ensure_state_table(&ha.table).await {
            Ok(()) => write().await,
            Err(e) => Err(e),
        };
    }
    match answer {
        Ok(Some(version)) => {
            let trusted_until = sent + ha.lease * 2 / 3;
            leases.held.lock().expect("lease lock").insert(env.to_string(), Held { version, trusted_until });
            if before.is_none() {
                tracing::info!(env, version, holder = %leases.holder, "took the lease: this replica converges the environment");
                // Look at the cluster afresh: a follower's look for orphans prunes nothing.
                shared.services().env_mut(env).orphan_scan = None;
                shared.trigger([env.to_string()]);
            }
        }
        Ok(None) => {
            if before.is_some() {
                tracing::warn!(env, "lost the lease to another replica: reporting only");
                leases.held.lock().expect("lease lock").remove(env);
            }
        }
        Err(e) => {
            leases.renew_failures.get_or_create(&labels(&[("env", env)])).inc();
            tracing::warn!(env, error = %e, held = before.is_some(), "cannot take or renew the lease");
            // A held lease stays trusted until its own deadline; nothing is extended.
        }
    }
}

/// How long a partitioned leader keeps writing at most, and how long until another
/// replica may take over: for docs and tests.
pub fn windows(lease: Duration) -> (Duration, Duration) {
    (lease * 2 / 3, lease)
}
