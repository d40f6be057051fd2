//! The daemon: [`Daemon::start`] opens the store, builds the [`Context`],
//! recovers the watches and serves the API; [`run`] is `release-guardian
//! run` (signals, SIGHUP reload, systemd notifications, graceful shutdown).

use crate::config::Settings;
use crate::context::Context;
use std::sync::Arc;

/// A running daemon: store opened, watches recovered, API serving.
pub struct Daemon {
    /// Where the API listens (the real port when configured with port 0).
    pub addr: std::net::SocketAddr,
    pub guardian: Arc<crate::scheduler::Guardian>,
    pub ctx: Arc<Context>,
    /// The certificate in force when the API speaks TLS.
    tls: Option<Arc<crate::api::tls::ServerCert>>,
    server: tokio::task::JoinHandle<()>,
}

impl Daemon {
    /// Opens the store, recovers every watch and starts the API on
    /// `listener` (or on `[server] listen`).
    pub async fn start(
        settings: Settings,
        listener: Option<tokio::net::TcpListener>,
    ) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let listener = match listener {
            Some(l) => l,
            None => tokio::net::TcpListener::bind(settings.config.server.listen)
                .await
                .with_context(|| format!("cannot listen on {}", settings.config.server.listen))?,
        };
        let addr = listener.local_addr()?;
        let store_settings = settings.store.clone();
        let store = crate::store::open(&store_settings)
            .with_context(|| format!("cannot open the store {}", store_settings.describe()))?;
        let ctx = Context::new(settings, store, Arc::new(crate::clock::SystemClock));
        let guardian = match store_settings.owner() {
            Some(owner) => crate::scheduler::Guardian::with_owner(ctx.clone(), owner),
            None => crate::scheduler::Guardian::new(ctx.clone()),
        };
        guardian
            .start()
            .await
            .map_err(|e| anyhow::anyhow!("cannot resume watches: {e:?}"))?;
        let router = crate::api::router(crate::api::ApiState::new(guardian.clone(), ctx.clone()));
        let shutdown = ctx.shutdown.clone();
        // Connection limits are read once: like `listen`, they take effect
        // at the next start.
        let limits = crate::api::ServerLimits::from_config(&ctx.settings().config.server);
        // Whether the API speaks TLS is decided here; the certificate is
        // replaced on reload (`reload_tls`).
        let tls = ctx
            .settings()
            .tls
            .as_ref()
            .map(crate::api::tls::ServerCert::new);
        let cert = tls.clone();
        let server = tokio::spawn(async move {
            if let Err(e) = crate::api::serve_tls(listener, router, limits, cert, shutdown).await {
                tracing::error!(error = %e, "API server stopped");
            }
        });
        tracing::info!(%addr, store = %ctx.settings().store.describe(), watches = guardian.running_watches(), "release-guardian ready");
        Ok(Self {
            addr,
            guardian,
            ctx,
            tls,
            server,
        })
    }

    /// Serves the certificate of `new` (reloaded settings) to new TLS
    /// handshakes; see [`crate::api::tls::reload`].
    pub fn reload_tls(&self, new: &Settings) {
        crate::api::tls::reload(self.tls.as_deref(), new.tls.as_ref());
    }

    /// Stops everything: cancels every task and waits for them up to the
    /// configured grace period, logging what had to be abandoned. A running
    /// rollback hook is not abandoned: it gets up to its own timeout.
    pub async fn shutdown(self) {
        self.shutdown_notifying(&crate::systemd::Notifier::default())
            .await
    }

    /// [`Daemon::shutdown`], telling systemd (`EXTEND_TIMEOUT_USEC`) while a
    /// rollback hook is still finishing.
    pub async fn shutdown_notifying(self, sd: &crate::systemd::Notifier) {
        let settings = self.ctx.settings();
        let grace = settings.config.server.shutdown_grace;
        self.ctx.shutdown.cancel();
        self.ctx.tasks.close();
        let waited = tokio::time::timeout(grace, async {
            self.ctx.tasks.wait().await;
            let _ = self.server.await;
        })
        .await;
        if waited.is_err() {
            tracing::warn!(
                abandoned_tasks = self.ctx.tasks.len(),
                "shutdown deadline reached; abandoning tasks (their work is redone from the store at the next start)"
            );
        }
        let hooks = self.guardian.rollback_tasks();
        hooks.close();
        if hooks.is_empty() {
            return;
        }
        // A hook killed now would leave its outcome unknown (and it is never
        // re-run): let it finish, within the longest configured hook timeout.
        let limit = settings
            .services
            .iter()
            .filter_map(|s| s.rollback.as_ref().map(|r| r.timeout))
            .max()
            .unwrap_or_default()
            + std::time::Duration::from_secs(5);
        tracing::warn!(
            running = hooks.len(),
            ?limit,
            "waiting for running rollback hooks before exiting"
        );
        let extend = std::time::Duration::from_secs(10);
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            sd.notify(&format!("EXTEND_TIMEOUT_USEC={}", (extend * 3).as_micros()));
            tokio::select! {
                _ = hooks.wait() => return,
                _ = tokio::time::sleep(extend) => {}
            }
            if tokio::time::Instant::now() > deadline {
                tracing::error!(
                    running = hooks.len(),
                    "rollback hooks still running at exit; they will be reported as interrupted"
                );
                return;
            }
        }
    }
}

/// `run` refused to start on an invalid configuration (exit 64).
#[derive(Debug, thiserror::Error)]
#[error("Invalid configuration:\n{0}")]
pub struct InvalidConfig(pub crate::config::ConfigErrors);

/// `release-guardian run`: the daemon under systemd or in a terminal, until
/// SIGTERM / SIGINT; SIGHUP reloads config and rules.
pub async fn run(config_path: std::path::PathBuf) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let sd = crate::systemd::Notifier::from_env();
    let settings = crate::config::load(&config_path).map_err(InvalidConfig)?;
    for w in &settings.warnings {
        tracing::warn!(warning = %w, "config");
    }
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let daemon = Daemon::start(settings, None).await?;
    sd.ready(&format!(
        "watching {} releases; API on {}",
        daemon.guardian.running_watches(),
        daemon.addr
    ));
    if let Some(every) = sd.watchdog_interval() {
        spawn_watchdog(&daemon.ctx, sd.clone(), every);
    }
    loop {
        tokio::select! {
            _ = hup.recv() => {
                sd.reloading();
                match crate::config::load(&config_path) {
                    Ok(new) if new.tokens.is_empty() && !daemon.addr.ip().is_loopback() => {
                        tracing::error!(
                            listen = %daemon.addr,
                            "new configuration rejected: it has no [auth] tokens but the API is bound to a non-loopback address until the next restart; the old one keeps running"
                        );
                        sd.ready("reload rejected: no [auth] on a non-loopback listener; old configuration kept");
                    }
                    Ok(new) => {
                        if new.config.server.listen != daemon.ctx.settings().config.server.listen {
                            tracing::warn!("[server] listen changed; it takes effect at the next restart");
                        }
                        if new.store != daemon.ctx.settings().store {
                            tracing::warn!("[store] path changed; it takes effect at the next restart");
                        }
                        daemon.reload_tls(&new);
                        daemon.ctx.replace_settings(new);
                        tracing::info!(config = %config_path.display(), "configuration reloaded");
                        sd.ready("configuration reloaded");
                    }
                    Err(e) => {
                        tracing::error!(errors = %e, "new configuration rejected; the old one keeps running");
                        sd.ready("reload rejected: invalid configuration; old configuration kept");
                    }
                }
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    tracing::info!("shutting down");
    sd.stopping();
    daemon.shutdown_notifying(&sd).await;
    Ok(())
}

/// Pings the systemd watchdog only while the store answers, so a wedged
/// daemon stops pinging and gets restarted.
fn spawn_watchdog(ctx: &Arc<Context>, sd: crate::systemd::Notifier, every: std::time::Duration) {
    let ctx2 = ctx.clone();
    ctx.tasks.spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = ctx2.shutdown.cancelled() => return,
                _ = tick.tick() => {
                    let healthy = tokio::time::timeout(every, ctx2.store.count_by_status()).await;
                    if matches!(healthy, Ok(Ok(_))) {
                        sd.watchdog();
                    } else {
                        tracing::error!("store not answering; withholding the watchdog ping");
                    }
                }
            }
        }
    });
}
