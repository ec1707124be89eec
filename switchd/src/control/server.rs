//! The daemon's end of the control socket: a Unix socket, mode 0600, one
//! JSON request per line, answered in order. Requests run on a blocking
//! thread, one at a time (the daemon is behind a mutex), so `switchctl`
//! commands apply in the order they arrive.
//!
//! At most [`MAX_CONNECTIONS`] connections are held: past that, the one
//! idle longest (waiting for a request, not being answered) is closed, so
//! that clients which connect and say nothing can never lock `switchctl`
//! out (see `crate::conns`).

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use super::api::{Reply, Request};
use crate::conns::{AcceptErrors, Guard, Limits, Source, Table};
use crate::daemon::Daemon;

/// The largest request accepted on one connection.
const MAX_REQUEST: u64 = 1 << 20;
/// Connections held at once.
pub const MAX_CONNECTIONS: usize = 256;

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
    let limits = Limits { max: MAX_CONNECTIONS, per_source: MAX_CONNECTIONS, idle_timeout: None };
    let table = Table::new("control socket", limits);
    let mut errors = AcceptErrors::new("control socket: accept");
    loop {
        match listener.accept().await {
            Ok((stream, _)) => match table.admit(Instant::now(), Source::Local) {
                Ok(admitted) => {
                    tokio::spawn(serve_connection(stream, daemon.clone(), admitted.guard));
                }
                Err(refused) => {
                    // Best effort: the client learns why before the close.
                    let line = serde_json::to_vec(&Reply::Error(format!("switchd is busy: {refused}")));
                    let _ = stream.try_write(&[line.unwrap_or_default(), b"\n".to_vec()].concat());
                }
            },
            Err(e) => {
                errors.pause(&e).await;
            }
        }
    }
}

async fn handle(daemon: &Arc<Mutex<Daemon>>, request: Request) -> Reply {
    crate::daemon::run_waiting(daemon, move |d| d.handle(&request)).await.unwrap_or_else(Reply::Error)
}

async fn serve_connection(stream: UnixStream, daemon: Arc<Mutex<Daemon>>, guard: Guard) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read.take(MAX_REQUEST)).lines();
    loop {
        let line = tokio::select! {
            line = lines.next_line() => line,
            _ = guard.closed() => return,
        };
        let Ok(Some(line)) = line else { return };
        let reply = {
            let _busy = guard.busy();
            match serde_json::from_str::<Request>(&line) {
                Ok(request) => handle(&daemon, request).await,
                Err(e) => Reply::Error(format!("bad request: {e}")),
            }
        };
        let mut bytes = serde_json::to_vec(&reply).unwrap_or_default();
        bytes.push(b'\n');
        // A client that does not read its replies is idle, and may be closed.
        tokio::select! {
            written = write.write_all(&bytes) => if written.is_err() { return },
            _ = guard.closed() => return,
        }
    }
}
