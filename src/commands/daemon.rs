//! `berth daemon`: the long-running agent.

use std::sync::Arc;

use anyhow::Context as _;
use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

use crate::cli::DaemonArgs;
use crate::commands::{Exit, load_config};
use crate::engine::cloud::ConnectAws;
use crate::engine::daemon::{Daemon, Shared, watch_config};
use crate::server;

async fn signals(cancel: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: finishing in-flight work, starting nothing new"),
        _ = int.recv() => tracing::info!("SIGINT: finishing in-flight work, starting nothing new"),
    }
    let _ = sd_notify::notify(&[NotifyState::Stopping]);
    cancel.cancel();
}

pub fn run(args: &DaemonArgs) -> anyhow::Result<Exit> {
    let config = load_config(&args.config)?;
    crate::engine::daemon::limit_malloc_arenas();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let shared = Shared::new(Arc::new(config.clone()));
        let cancel = CancellationToken::new();
        tokio::spawn(signals(cancel.clone()));

        let mut status = server::status_router(shared.clone());
        let mut servers = Vec::new();
        if let Some(w) = &config.webhook {
            // Read at the edge: the secret's value goes straight into the HMAC key.
            let secret = std::env::var(&w.secret_env)
                .with_context(|| format!("webhook.secret_env: the environment variable {} is not set", w.secret_env))?;
            let hook = server::webhook_router(shared.clone(), secret.into_bytes());
            if w.listen == config.metrics_listen {
                status = status.merge(hook);
            } else {
                servers.push(server::serve(w.listen, hook, cancel.clone()).await?);
            }
        }
        servers.push(server::serve(config.metrics_listen, status, cancel.clone()).await?);

        let (tx, reloads) = tokio::sync::mpsc::channel(4);
        let _watcher = watch_config(args.config.clone(), tx).context("cannot watch the config file")?;

        let _ = sd_notify::notify(&[NotifyState::Ready]);
        if let Some(interval) = sd_notify::watchdog_enabled() {
            let cancel = cancel.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(interval / 2);
                while !cancel.is_cancelled() {
                    tick.tick().await;
                    let _ = sd_notify::notify(&[NotifyState::Watchdog]);
                }
            });
        }

        Daemon { shared, cancel: cancel.clone(), reloads, connect: ConnectAws }.run().await?;
        cancel.cancel();
        for s in servers {
            let _ = s.await;
        }
        Ok(Exit::Ok)
    })
}
