//! The plugin socket: HTTP/1.1 on a Unix socket, as dockerd's plugin client
//! speaks it (POST, a JSON body of `Content-Length` bytes, keep-alive).
//! Requests are parsed with httparse; every reply to a request is `200 OK`
//! with a JSON body, errors as `{"Err": "..."}` (what libnetwork reads).
//!
//! Framing is strict, as RFC 9112 asks of a server that cannot tell where
//! a request ends otherwise: a body is exactly one `Content-Length` of
//! digits. Two `Content-Length`s, or any `Transfer-Encoding` (chunked
//! bodies are not read here, so their chunks would be taken for another
//! request), are answered `400 Bad Request` and the connection is closed,
//! as are malformed requests; one too large, `413`.
//!
//! At most [`MAX_CONNECTIONS`] connections are held; past that the one
//! idle longest (between requests) is closed (see `crate::conns`).

use std::io;
use std::path::Path;
use std::time::Instant;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

use crate::conns::{AcceptErrors, Guard, Limits, Source, Table};
use crate::daemon::{self, Shared};

/// The largest request accepted (headers and body).
const MAX_REQUEST: usize = 1 << 20;
const MAX_HEADERS: usize = 32;
/// Connections held at once (dockerd keeps a few alive).
pub const MAX_CONNECTIONS: usize = 128;

/// Binds the plugin socket, replacing a stale one.
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    crate::conns::bind_unix(path, "another network driver")
}

/// Serves dockerd until the task is dropped.
pub async fn serve(listener: UnixListener, daemon: Shared) {
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
pub async fn name_endpoints(api_socket: std::path::PathBuf, daemon: Shared) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        every.tick().await;
        // Looking inside containers takes namespace threads: done with
        // the daemon free, which is taken only to note what was found.
        let asker = daemon.clone();
        let unfound = tokio::task::spawn_blocking(move || {
            let (unfound, system) = {
                let d = daemon::read(&asker);
                (d.docker_unfound(), d.system())
            };
            let found = if unfound.is_empty() { Vec::new() } else { daemon::find_interfaces(&*system, unfound) };
            if !found.is_empty() {
                daemon::write(&asker).docker_found(found);
            }
            daemon::read(&asker).docker_unnamed()
        });
        let unnamed = unfound.await.unwrap_or_default();
        for (network_id, endpoints) in unnamed {
            let Ok(network) = get_json(&api_socket, &format!("/networks/{network_id}")).await else { continue };
            let found: Vec<(String, String, String)> = network["Containers"]
                .as_object()
                .into_iter()
                .flatten()
                .filter_map(|(id, c)| {
                    Some((c["EndpointID"].as_str()?.to_owned(), c["Name"].as_str()?.to_owned(), id.clone()))
                })
                .filter(|(endpoint, ..)| endpoints.contains(endpoint))
                .collect();
            // Its `--network-alias`es on this network make it a backend of
            // those services (Docker lists the container's short id too).
            let mut names = Vec::new();
            for (endpoint, name, id) in found {
                let container = get_json(&api_socket, &format!("/containers/{id}/json")).await.unwrap_or_default();
                let aliases: Vec<String> = container["NetworkSettings"]["Networks"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .filter(|(_, n)| n["NetworkID"].as_str() == Some(network_id.as_str()))
                    .flat_map(|(_, n)| n["Aliases"].as_array().cloned().unwrap_or_default())
                    .filter_map(|a| a.as_str().map(str::to_owned))
                    .filter(|a| !id.starts_with(a.as_str()) && *a != name.trim_start_matches('/'))
                    .collect();
                names.push((endpoint, name, aliases));
            }
            if !names.is_empty() {
                let namer = daemon.clone();
                let _ = tokio::task::spawn_blocking(move || daemon::write(&namer).docker_name_endpoints(&names)).await;
            }
        }
    }
}

pub use crate::http::HttpError;

/// One parsed request: its path and body, and how many bytes it took;
/// `None` while `buf` holds only part of one ([`crate::http::parse_request`]
/// with this socket's limit). Public for the `plugin_http` fuzz target only.
#[doc(hidden)]
pub fn parse_request(buf: &[u8]) -> Result<Option<(String, Vec<u8>, usize)>, HttpError> {
    Ok(crate::http::parse_request(buf, MAX_REQUEST)?.map(|r| (r.path, r.body, r.len)))
}

async fn serve_connection(mut stream: UnixStream, daemon: Shared, guard: Guard) {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        let (path, body, used) = loop {
            if buf.len() > MAX_REQUEST {
                let _ = respond(&mut stream, 413, &super::error_reply("request too large")).await;
                return;
            }
            match parse_request(&buf) {
                Ok(Some(request)) => break request,
                Ok(None) => {}
                Err(e) => {
                    // Where this request ends is unknown: nothing after it
                    // can be read as a request, so the connection closes.
                    let _ = respond(&mut stream, e.status, &super::error_reply(&e.message)).await;
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
            responded = respond(&mut stream, 200, &reply) => responded,
            _ = guard.closed() => return,
        };
        if let Err(e) = responded {
            tracing::debug!("docker plugin socket: {e}");
            return;
        }
    }
}

async fn run(daemon: &Shared, request: super::Request) -> Value {
    daemon::run_waiting(daemon, move |d| d.docker(&request))
        .await
        .unwrap_or_else(|e| super::error_reply(&e.to_string()))
}

/// Writes a reply with `status` (200, or an error after which the
/// connection closes).
async fn respond(stream: &mut UnixStream, status: u16, reply: &Value) -> io::Result<()> {
    let body = serde_json::to_vec(reply).unwrap_or_default();
    let (reason, close) = match status {
        200 => ("OK", ""),
        413 => ("Content Too Large", "Connection: close\r\n"),
        _ => ("Bad Request", "Connection: close\r\n"),
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/vnd.docker.plugins.v1.2+json\r\n{close}Content-Length: {}\r\n\r\n",
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
        assert_eq!(parse_request(b"\x00\x01 nonsense\r\n\r\n").unwrap_err().status, 400);
        let huge = b"POST / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n";
        let e = parse_request(huge).unwrap_err();
        assert!(e.status == 413 && e.message.contains("at most"), "{e:?}");
        for bad in ["x", "+2", "-1", "", "2, 2", "0x2"] {
            let req = format!("POST / HTTP/1.1\r\nContent-Length: {bad}\r\n\r\n{{}}");
            assert_eq!(parse_request(req.as_bytes()).unwrap_err(), HttpError::bad("bad Content-Length"), "{bad:?}");
        }
    }

    /// Two Content-Lengths (the first won) and chunked bodies (read as a
    /// second request) are ambiguous framing: refused, never guessed.
    #[test]
    fn ambiguous_framing_is_refused() {
        let twice = b"POST /Plugin.Activate HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 40\r\n\r\n{}";
        assert_eq!(parse_request(twice).unwrap_err(), HttpError::bad("more than one Content-Length"));
        let same = b"POST /Plugin.Activate HTTP/1.1\r\nContent-Length: 2\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(parse_request(same).unwrap_err().status, 400, "even when they agree");
        let chunked =
            b"POST /NetworkDriver.GetCapabilities HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n";
        let e = parse_request(chunked).unwrap_err();
        assert!(e.status == 400 && e.message.starts_with("Transfer-Encoding is not supported"), "{e:?}");
        let both = b"POST / HTTP/1.1\r\nContent-Length: 2\r\nTransfer-Encoding: identity\r\n\r\n{}";
        assert_eq!(parse_request(both).unwrap_err().status, 400);
        let fine = b"POST /Plugin.Activate HTTP/1.1\r\nContent-Length:  2 \r\n\r\n{}";
        assert_eq!(parse_request(fine).unwrap().unwrap().2, fine.len());
    }
}
