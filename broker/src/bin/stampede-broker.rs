//! `stampede-broker`: the production STOMP broker on real TCP.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Parser;
use stampede_broker::clock::Clock;
use stampede_broker::config::BrokerConfig;
use stampede_broker::net::TokioNet;
use stampede_broker::server::{Reloader, Server};

/// mimalloc gives memory back to the operating system once a flood has drained, where
/// glibc's malloc kept it (`scripts/flood-rss` measures both). The library leaves the
/// choice of allocator to binaries; the simulator and tests keep the system's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A STOMP 1.0–1.2 message broker (queues, topics, selectors, transactions) that real
/// MCollective, stomp.py and stomp-gem clients can use.
#[derive(Debug, Parser)]
#[command(name = "stampede-broker", version, about, long_about = None)]
struct Args {
    /// Address to listen on (repeatable); replaces the config file's `server.listen`.
    /// Use port 0 for an ephemeral port.
    #[arg(long, value_name = "HOST:PORT")]
    listen: Vec<String>,

    /// TOML configuration file (see broker/broker.example.toml). Without it, defaults apply:
    /// no authentication, 127.0.0.1:61613.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Once listening, write the bound addresses here (one `host:port` per line). A
    /// shared-store slave writes it when it has become the master.
    #[arg(long, value_name = "PATH")]
    ready_file: Option<PathBuf>,

    /// Broker name (overrides `core.broker_name`); appears in message ids.
    #[arg(long)]
    name: Option<String>,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let mut config = match &args.config {
        Some(path) => BrokerConfig::load(path).map_err(|e| anyhow::anyhow!("{e}"))?,
        None => BrokerConfig::default(),
    };
    if !args.listen.is_empty() {
        config.server.listen = args.listen.clone();
    }
    if let Some(name) = &args.name {
        config.core.broker_name = name.clone();
    }
    config
        .validate()
        .map_err(|e| anyhow::anyhow!("invalid settings: {e}"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    runtime.block_on(serve(config, args.config, args.ready_file))
}

async fn serve(
    config: BrokerConfig,
    config_path: Option<PathBuf>,
    ready_file: Option<PathBuf>,
) -> anyhow::Result<()> {
    let running = config.clone();
    // A shared-store slave waits inside `bind` until it becomes the master; SIGINT or
    // SIGTERM ends the wait.
    let server = tokio::select! {
        biased;
        () = shutdown_signal() => {
            tracing::info!("stopped before serving");
            return Ok(());
        }
        server = Server::bind(Arc::new(TokioNet), config) => server?,
    };
    if let Some(path) = config_path {
        tokio::spawn(reload_on_sighup(path, running, server.reloader()));
    }
    if let Some(path) = ready_file {
        let text: String = server
            .local_addrs()
            .iter()
            .map(|a| format!("{a}\n"))
            .collect();
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    }
    // The production broker anchors its clock on the system time once, here; everything
    // after reads the monotonic `Clock` built from it.
    #[allow(clippy::disallowed_methods)]
    let epoch_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("system clock is before 1970")?
        .as_millis() as u64;
    server
        .run(Clock::starting_at(epoch_ms), shutdown_signal())
        .await?;
    tracing::info!("stopped");
    Ok(())
}

/// On every SIGHUP, reads the configuration file again and applies its virtual hosts with
/// their exchanges and queues (sessions of a removed vhost are closed), its users, groups,
/// authorization and permissions (from each session's next frame; connections stay up), and its network
/// connectors and discovery settings (changed connectors restart, others keep running).
/// A file that does not load is refused whole, with its file:line:key error, and the old
/// rules stay. Other sections need a restart, and a warning says so when they changed.
async fn reload_on_sighup(path: PathBuf, mut running: BrokerConfig, reloader: Reloader) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hangups) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; configuration reload is off");
            return;
        };
        while hangups.recv().await.is_some() {
            let fresh = match BrokerConfig::load(&path) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!("configuration reload refused, the old rules stay: {e}");
                    continue;
                }
            };
            let vhosts_changed = fresh.core.vhosts != running.core.vhosts
                || fresh.core.default_vhost != running.core.default_vhost;
            if vhosts_changed {
                match reloader
                    .reload_vhosts(&fresh.core.vhosts, fresh.core.default_vhost.as_deref())
                    .await
                {
                    Ok(()) => {
                        tracing::info!(
                            "reloaded virtual hosts, exchanges and queues from {}",
                            path.display()
                        );
                        running.core.vhosts = fresh.core.vhosts.clone();
                        running.core.default_vhost = fresh.core.default_vhost.clone();
                    }
                    Err(e) => {
                        tracing::error!("configuration reload refused, the old rules stay: {e}");
                        continue;
                    }
                }
            }
            if let Err(e) = reloader.reload_security(&fresh.security).await {
                tracing::error!("configuration reload refused, the old rules stay: {e}");
                continue;
            }
            if fresh.connectors != running.connectors || fresh.discovery != running.discovery {
                match reloader
                    .reload_network(&fresh.connectors, &fresh.discovery)
                    .await
                {
                    Ok(_) => {
                        tracing::info!("reloaded network connectors from {}", path.display());
                        running.connectors = fresh.connectors.clone();
                        running.discovery = fresh.discovery.clone();
                    }
                    Err(e) => {
                        tracing::error!("network connector reload refused, the old ones run: {e}")
                    }
                }
            }
            let mut others = fresh.clone();
            others.security = running.security.clone();
            others.connectors = running.connectors.clone();
            others.discovery = running.discovery.clone();
            others.core.vhosts = running.core.vhosts.clone();
            others.core.default_vhost = running.core.default_vhost.clone();
            // Command-line overrides were applied to `running`, not to the file.
            others.server.listen = running.server.listen.clone();
            others.core.broker_name = running.core.broker_name.clone();
            if others != running {
                tracing::warn!(
                    "{}: only [security] (users, groups, authorization, permissions), \
                     [[core.vhosts]] with core.default_vhost, [[connectors]] and [discovery] \
                     are reloaded; restart the broker to apply the other changes",
                    path.display()
                );
            }
            running.security = fresh.security;
            tracing::info!(
                "reloaded users, groups and authorization from {}",
                path.display()
            );
        }
    }
    #[cfg(not(unix))]
    let _ = (path, running, reloader);
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        biased;
        () = ctrl_c => tracing::info!("SIGINT: shutting down"),
        () = term => tracing::info!("SIGTERM: shutting down"),
    }
}
