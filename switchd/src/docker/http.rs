//! The plugin socket: HTTP/1.1 on a Unix socket, as dockerd's plugin client
//! speaks it (POST, a JSON body of `Content-Length` bytes, keep-alive).
//! Requests are parsed with httparse; every reply is `200 OK` with a JSON
//! body, errors as `{"Err": "..."}` (what libnetwork reads).
//!
//! At most [`MAX_CONNECTIONS`] connections are held; past that the one
//! idle longest (between requests) is closed (see `crate::conns`).

use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

use crate::conns::{AcceptErrors, Guard, Limits, Source, Table};
use crate::daemon::Daemon;

/// The largest request accepted (headers and body).
const MAX_REQUEST: usize = 1 << 20;
const MAX_HEADERS: usize = 32;
/// Connections held at once (dockerd keeps a few alive).
pub const MAX_CONNECTIONS: usize = 128;

/// Binds the plugin socket, replacing a stale one.
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(io::ErrorKind::AddrInUse, format!("{} is in use", path.display())));
        }
        std::fs::remove_file(path)?;
    }
    UnixListener::bind(path)
}

/// Serves dockerd until the task is dropped.
pub async fn serve(listener: UnixListener, daemon: Arc<Mutex<Daemon>>) {
    let limits = Limits { max: MAX_CONNECTIONS, per_source: MAX_CONNECTIONS, idle_timeout: None };
    let table = Table::new("docker plugin socket", limits);
    let mut errors = AcceptErrors::new("docker plugin socket: accept");
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                // Refused (every connection busy): closed at once.
                if let Ok(admitted) = table.admit(Instant::now(), Source::Local) {
                    tokio::spawn(serve_connection(stream, daemon.clone(), admitted.guard));
                }
            }
            Err(e) => {
                errors.pause(&e).await;
            }
        }
    }
}

/// `GET path` on dockerd's API socket; the JSON body of a 200 reply.
pub async fn get_json(socket: &Path, path: &str) -> Result<Value, String> {
    let mut stream = UnixStream::connect(socket).await.map_err(|e| format!("{}: {e}", socket.display()))?;
    // HTTP/1.0: the reply ends when the connection does.
    let request = format!("GET {path} HTTP/1.0\r\nHost: docker\r\n\r\n");
    stream.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
    let mut reply = Vec::new();
    let mut limited = stream.take(MAX_REQUEST as u64 * 8);
    let read = limited.read_to_end(&mut reply);
    tokio::time::timeout(std::time::Duration::from_secs(5), read)
        .await
        .map_err(|_| "dockerd did not answer in 5 s".to_owned())?
        .map_err(|e| e.to_string())?;
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let head = match response.parse(&reply) {
        Ok(httparse::Status::Complete(n)) => n,
        _ => return Err("bad HTTP reply from dockerd".into()),
    };
    if response.code != Some(200) {
        return Err(format!("dockerd answered {}", response.code.unwrap_or(0)));
    }
    serde_json::from_slice(&reply[head..]).map_err(|e| format!("bad JSON from dockerd: {e}"))
}

/// Every second, finds where dockerd put the TAPs of new Docker endpoints,
/// and gives the endpoints their containers' names (which dockerd passes no
/// driver): the names the embedded DNS answers and gossip spreads.
pub async fn name_endpoints(api_socket: std::path::PathBuf, daemon: Arc<Mutex<Daemon>>) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        every.tick().await;
        let finder = daemon.clone();
        let _ = tokio::task::spawn_blocking(move || {
            finder.lock().unwrap_or_else(|p| p.into_inner()).docker_find_interfaces()
        })
        .await;
        let asker = daemon.clone();
        let unnamed =
            tokio::task::spawn_blocking(move || asker.lock().unwrap_or_else(|p| p.into_inner()).docker_unnamed())
                .await
                .unwrap_or_default();
        for (network_id, endpoints) in unnamed {
            let Ok(network) = get_json(&api_socket, &format!("/networks/{network_id}")).await else { continue };
            let names: Vec<(String, String)> = network["Containers"]
                .as_object()
                .into_iter()
                .flatten()
                .filter_map(|(_, c)| Some((c["EndpointID"].as_str()?.to_owned(), c["Name"].as_str()?.to_owned())))
                .filter(|(endpoint, _)| endpoints.contains(endpoint))
                .collect();
            if !names.is_empty() {
                let namer = daemon.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    namer.lock().unwrap_or_else(|p| p.into_inner()).docker_name_endpoints(&names)
                })
                .await;
            }
        }
    }
}

/// One parsed request: its path and body, and how many bytes it took.
fn parse_request(buf: &[u8]) -> Result<Option<(String, Vec<u8>, usize)>, String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let head = match request.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("bad HTTP request: {e}")),
    };
    let length = request
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .map(|h| std::str::from_utf8(h.value).ok().and_then(|v| v.trim().parse::<usize>().ok()))
        .unwrap_or(Some(0))
        .ok_or("bad Content-Length")?;
    let total = head.checked_add(length).filter(|t| *t <= MAX_REQUEST);
    let Some(total) = total else {
        return Err(format!("a body of {length} bytes; at most {MAX_REQUEST} in all"));
    };
    if buf.len() < total {
        return Ok(None);
    }
    let path = request.path.unwrap_or("/").to_owned();
    Ok(Some((path, buf[head..total].to_vec(), total)))
}

async fn serve_connection(mut stream: UnixStream, daemon: Arc<Mutex<Daemon>>, guard: Guard) {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        let (path, body, used) = loop {
            if buf.len() > MAX_REQUEST {
                let _ = respond(&mut stream, &super::error_reply("request too large")).await;
                return;
            }
            match parse_request(&buf) {
                Ok(Some(request)) => break request,
                Ok(None) => {}
                Err(e) => {
                    let _ = respond(&mut stream, &super::error_reply(&e)).await;
                    return;
                }
            }
            let read = tokio::select! {
                read = stream.read(&mut chunk) => read,
                _ = guard.closed() => return,
            };
            match read {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let busy = guard.busy();
        buf.drain(..used);
        tracing::debug!("docker plugin: {path} {}", String::from_utf8_lossy(&body));
        let reply = match super::parse(&path, &body) {
            Err(e) => super::error_reply(&e),
            Ok(request) => match super::fixed_reply(&request) {
                Some(reply) => reply,
                None => run(&daemon, request).await,
            },
        };
        drop(busy);
        let responded = tokio::select! {
            responded = respond(&mut stream, &reply) => responded,
            _ = guard.closed() => return,
        };
        if let Err(e) = responded {
            tracing::debug!("docker plugin socket: {e}");
            return;
        }
    }
}

async fn run(daemon: &Arc<Mutex<Daemon>>, request: super::Request) -> Value {
    crate::daemon::run_waiting(daemon, move |d| d.docker(&request)).await.unwrap_or_else(|e| super::error_reply(&e))
}

async fn respond(stream: &mut UnixStream, reply: &Value) -> io::Result<()> {
    let body = serde_json::to_vec(reply).unwrap_or_default();
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.plugins.v1.2+json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut message = head.into_bytes();
    message.extend_from_slice(&body);
    stream.write_all(&message).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_in_pieces_and_bad_ones() {
        let req = b"POST /NetworkDriver.Join HTTP/1.1\r\nHost: \r\nContent-Length: 2\r\n\r\n{}POST /x";
        assert_eq!(parse_request(&req[..20]).unwrap(), None, "headers not complete");
        assert_eq!(parse_request(&req[..65]).unwrap(), None, "body not complete");
        let (path, body, used) = parse_request(req).unwrap().unwrap();
        assert_eq!((path.as_str(), body.as_slice(), used), ("/NetworkDriver.Join", &b"{}"[..], 66));
        assert!(parse_request(b"\x00\x01 nonsense\r\n\r\n").is_err());
        let huge = b"POST / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n";
        assert!(parse_request(huge).unwrap_err().contains("at most"));
        let bad = b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n";
        assert_eq!(parse_request(bad).unwrap_err(), "bad Content-Length");
    }
}
