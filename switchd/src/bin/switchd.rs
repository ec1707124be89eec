//! `switchd --config host.toml`: the daemon, one per host.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, RwLock};

use clap::Parser;
use switchd::cluster::Cluster;
use switchd::control::server;
use switchd::daemon::{self, Daemon, Shared};
use switchd_config::{Config, LoadError};
use tokio::signal::unix::{SignalKind, signal};

/// Userspace virtual switch and overlay router for containers.
#[derive(Debug, Parser)]
#[command(version = switchd::VERSION)]
struct Args {
    /// The host's configuration file.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Validate the configuration and exit: 0 if valid, 2 if not.
    #[arg(long)]
    check: bool,
    /// How log lines are written to stderr (the journal, under systemd):
    /// for people, or one JSON object per line for log shippers.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }

    let config = match Config::load(&args.config) {
        Ok(config) => config,
        Err(e @ (LoadError::Invalid(_) | LoadError::Read { .. })) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if args.check {
        println!("{}: valid", args.config.display());
        return ExitCode::SUCCESS;
    }
    match run(config, args.config.clone()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// With systemd's watchdog on (`WatchdogSec=`), tells it twice per period
/// that switchd is alive, as long as every data-plane worker runs: a
/// stopped worker (a bug, logged) gets the service restarted.
async fn watchdog(daemon: Shared) {
    // As sd_watchdog_enabled(3): WATCHDOG_USEC, for this process unless
    // WATCHDOG_PID names another.
    let var = |name| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    let Some(usec) = var("WATCHDOG_USEC").filter(|u| *u > 0) else { return };
    if var("WATCHDOG_PID").is_some_and(|pid| pid != u64::from(std::process::id())) {
        return;
    }
    let mut every = tokio::time::interval(std::time::Duration::from_micros(usec / 2));
    loop {
        every.tick().await;
        let stopped = daemon::run_reading(&daemon, |d| d.stopped_workers()).await.unwrap_or_default();
        if stopped.is_empty() {
            let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
        } else {
            tracing::error!("data-plane workers {stopped:?} stopped: not telling systemd's watchdog switchd is alive");
        }
    }
}

/// Every 2 s, detaches endpoints whose container went away and gives back
/// address blocks whose time is up; the daemon is taken for a change only
/// when there is one to make.
async fn housekeeping(daemon: Shared) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(2));
    loop {
        every.tick().await;
        let daemon = daemon.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let (gone, tending) = {
                let d = daemon::read(&daemon);
                (d.gone_endpoints(), d.has_claims_to_tend())
            };
            if !gone.is_empty() || tending {
                let mut d = daemon::write(&daemon);
                d.reap(&gone);
                d.tend_claims();
            }
        })
        .await;
    }
}

/// Starts the services' health checks as they fall due (each on a task of
/// its own, bounded by its timeout) and hands their results to the daemon;
/// and sends the gateways' unsolicited router advertisements as they fall due.
async fn health_checks(daemon: Shared) {
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    let mut every = tokio::time::interval(std::time::Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = every.tick() => {
                let d = daemon.clone();
                let now = std::time::Instant::now();
                let due = tokio::task::spawn_blocking(move || daemon::write(&d).due_health_checks(now))
                    .await
                    .unwrap_or_default();
                for check in due {
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        let _ = tx.send(daemon::service::check(check).await).await;
                    });
                }
                // And the gateways' unsolicited router advertisements.
                let d = daemon.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    let due = daemon::write(&d).due_advertisements(now);
                    for (netns, frame) in due {
                        if let Err(e) = switchd::io::gateway::send_frame(&netns, &frame) {
                            tracing::warn!("router advertisement: {e}");
                        }
                    }
                })
                .await;
            }
            Some((key, result)) = rx.recv() => {
                let d = daemon.clone();
                let _ = tokio::task::spawn_blocking(move || daemon::write(&d).health_result(&key, result)).await;
            }
        }
    }
}

fn run(config: Config, config_path: PathBuf) -> std::io::Result<()> {
    // Every connection costs a descriptor: take all the system allows.
    match switchd::io::sys::raise_nofile_limit() {
        Ok((before, after)) if after > before => tracing::info!("open files limit raised from {before} to {after}"),
        Ok((_, after)) => tracing::info!("open files limit {after}"),
        Err(e) => tracing::warn!("cannot raise the open files limit: {e}"),
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let socket_path = config.host.control_socket.clone();
        let listener = server::bind(&socket_path)
            .map_err(|e| std::io::Error::new(e.kind(), format!("control socket {}: {e}", socket_path.display())))?;
        let host = config.host.clone();
        let gossip = config.gossip.clone();
        let docker = match &config.docker {
            Some(d) => Some((
                switchd::docker::http::bind(&d.socket).map_err(|e| {
                    std::io::Error::new(e.kind(), format!("docker plugin socket {}: {e}", d.socket.display()))
                })?,
                d.clone(),
            )),
            None => None,
        };
        // Served from the start: `/healthz` answers at once, `/readyz` and
        // `/metrics` once the daemon is up.
        let probe = Arc::new(switchd::metrics::Probe::default());
        let metrics = match &config.metrics {
            Some(m) => {
                let listener = switchd::metrics::bind(&m.listen)
                    .await
                    .map_err(|e| std::io::Error::new(e.kind(), format!("[metrics] listen {}: {e}", m.listen)))?;
                tracing::info!(listen = %m.listen, "metrics served at /metrics");
                Some((tokio::spawn(switchd::metrics::serve(listener, probe.clone())), m.listen.clone()))
            }
            None => None,
        };
        let mut daemon =
            tokio::task::spawn_blocking(move || Daemon::start(config)).await.map_err(std::io::Error::other)??;
        daemon.set_config_path(config_path);
        let daemon: Shared = Arc::new(RwLock::new(daemon));
        let _ = probe.daemon.set(daemon.clone());
        let mut cluster = match &gossip {
            Some(settings) => Some(
                Cluster::start(&host, settings, &daemon)
                    .await
                    .map_err(|e| std::io::Error::other(format!("gossip: {e:#}")))?,
            ),
            None => None,
        };
        tracing::info!(host = %host.name, socket = %socket_path.display(), version = switchd::VERSION, "switchd ready");
        // Under systemd (`Type=notify`): ready now, and alive while every
        // data-plane worker runs. Without NOTIFY_SOCKET these do nothing.
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
        let watchdog = tokio::spawn(watchdog(daemon.clone()));

        let mut term = signal(SignalKind::terminate())?;
        let mut hup = signal(SignalKind::hangup())?;
        let reloading = async {
            loop {
                hup.recv().await;
                tracing::info!("SIGHUP: reading the config again");
                match daemon::run_waiting(&daemon, |d| Ok(d.reload_from_signal())).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) | Err(e) => tracing::error!("{e}"),
                }
            }
        };
        let mut int = signal(SignalKind::interrupt())?;
        let gossiping = async {
            match cluster.as_mut() {
                Some(c) => c.run(daemon.clone()).await,
                None => std::future::pending().await,
            }
        };
        let docker_socket = docker.as_ref().map(|(_, d)| d.socket.clone());
        let serving_docker = async {
            match docker {
                Some((listener, d)) => {
                    tracing::info!(driver = %d.driver(), socket = %d.socket.display(), "docker network driver ready");
                    tokio::join!(
                        switchd::docker::http::serve(listener, daemon.clone()),
                        switchd::docker::http::name_endpoints(d.api_socket.clone(), daemon.clone())
                    );
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = server::serve(listener, daemon.clone()) => {}
            _ = serving_docker => {}
            _ = housekeeping(daemon.clone()) => {}
            _ = health_checks(daemon.clone()) => {}
            _ = gossiping => {}
            _ = reloading => {}
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        }
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
        watchdog.abort();
        if let Some(cluster) = cluster {
            cluster.leave().await;
        }
        tokio::task::spawn_blocking(move || daemon::write(&daemon).shutdown()).await.map_err(std::io::Error::other)?;
        let _ = std::fs::remove_file(&socket_path);
        if let Some(path) = docker_socket {
            let _ = std::fs::remove_file(path);
        }
        if let Some((task, listen)) = metrics {
            task.abort();
            if let switchd_config::MetricsListen::Unix(path) = listen {
                let _ = std::fs::remove_file(path);
            }
        }
        tracing::info!("stopped; containers keep their interfaces until the next start");
        Ok(())
    })
}
