//! `switchctl`'s end of the control socket.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use super::api::{Reply, Request};

/// Sends one request and returns the reply's result, or its error as a line
/// for the user.
pub fn call(socket: &Path, request: &Request) -> Result<serde_json::Value, String> {
    let mut stream =
        UnixStream::connect(socket).map_err(|e| format!("cannot reach switchd at {}: {e}", socket.display()))?;
    let mut line = serde_json::to_vec(request).map_err(|e| e.to_string())?;
    line.push(b'\n');
    stream.write_all(&line).map_err(|e| format!("sending to switchd: {e}"))?;
    let mut reply = String::new();
    BufReader::new(stream).read_line(&mut reply).map_err(|e| format!("reading from switchd: {e}"))?;
    if reply.is_empty() {
        return Err("switchd closed the connection without answering".into());
    }
    match serde_json::from_str::<Reply>(&reply).map_err(|e| format!("bad reply from switchd: {e}"))? {
        Reply::Result(value) => Ok(value),
        Reply::Error(e) => Err(e),
    }
}
