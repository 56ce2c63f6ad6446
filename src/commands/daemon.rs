//! `berth daemon`: the long-running agent.

use std::sync::Arc;

use anyhow::Context as _;
use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

use tokio::sync::mpsc::Sender;

use crate::cli::DaemonArgs;
use crate::commands::{Exit, load_config};
use crate::core::config::Config;
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

/// SIGHUP reloads the config file, as a change to it does (a closed terminal sends it
/// too; it must not stop the daemon). An invalid file is logged and the running config kept.
async fn reload_on_hangup(mut hup: tokio::signal::unix::Signal, path: std::path::PathBuf, tx: Sender<Arc<Config>>) {
    while hup.recv().await.is_some() {
        tracing::info!(path = %path.display(), "SIGHUP: reading the configuration again");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the config file; keeping the running config");
                continue;
            }
        };
        match Config::parse(&path.to_string_lossy(), &text) {
            Ok(c) => {
                if tx.send(Arc::new(c)).await.is_err() {
                    return;
                }
            }
            Err(d) => tracing::error!(errors = %d, "the config file is invalid; keeping the running one"),
        }
    }
}

pub fn run(args: &DaemonArgs) -> anyhow::Result<Exit> {
    let config = load_config(&args.config)?;
    crate::engine::daemon::limit_malloc_arenas();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        // First, so that a SIGHUP from now on reloads rather than kills.
        let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("cannot install the SIGHUP handler")?;
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
        tokio::spawn(reload_on_hangup(hup, args.config.clone(), tx.clone()));
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
