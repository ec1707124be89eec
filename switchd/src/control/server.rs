//! The daemon's end of the control socket: a Unix socket, mode 0600, one
//! JSON request per line, answered in order. Requests run on a blocking
//! thread, one at a time (the daemon is behind a mutex), so `switchctl`
//! commands apply in the order they arrive.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use super::api::{Reply, Request};
use crate::daemon::Daemon;

/// The largest request accepted on one connection.
const MAX_REQUEST: u64 = 1 << 20;

/// Binds the control socket, refusing to steal it from a running daemon.
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("another switchd is listening on {}", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Serves connections until the task is dropped.
pub async fn serve(listener: UnixListener, daemon: Arc<Mutex<Daemon>>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve_connection(stream, daemon.clone()));
            }
            Err(e) => tracing::warn!("control socket accept: {e}"),
        }
    }
}

async fn handle(daemon: &Arc<Mutex<Daemon>>, request: Request) -> Reply {
    crate::daemon::run_waiting(daemon, move |d| d.handle(&request)).await.unwrap_or_else(Reply::Error)
}

async fn serve_connection(stream: UnixStream, daemon: Arc<Mutex<Daemon>>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read.take(MAX_REQUEST)).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let reply = match serde_json::from_str::<Request>(&line) {
            Ok(request) => handle(&daemon, request).await,
            Err(e) => Reply::Error(format!("bad request: {e}")),
        };
        let mut bytes = serde_json::to_vec(&reply).unwrap_or_default();
        bytes.push(b'\n');
        if write.write_all(&bytes).await.is_err() {
            return;
        }
    }
}
