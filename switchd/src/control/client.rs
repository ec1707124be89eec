//! `switchctl`'s end of the control socket.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use super::api::{Reply, Request};

/// Sends one request and returns the reply's result, or its error as a line
/// for the user.
pub fn call(socket: &Path, request: &Request) -> Result<serde_json::Value, String> {
    open(socket, request).map(|(_, value)| value)
}

/// Connects, sends `request`, and reads switchd's first reply: the
/// connection (for what a stream sends next) and the reply's result.
fn open(socket: &Path, request: &Request) -> Result<(BufReader<UnixStream>, serde_json::Value), String> {
    let mut stream =
        UnixStream::connect(socket).map_err(|e| format!("cannot reach switchd at {}: {e}", socket.display()))?;
    let mut line = serde_json::to_vec(request).map_err(|e| e.to_string())?;
    line.push(b'\n');
    stream.write_all(&line).map_err(|e| format!("sending to switchd: {e}"))?;
    let mut reader = BufReader::new(stream);
    let value = reply(&mut reader)?;
    Ok((reader, value))
}

/// Reads one reply line: its result, or switchd's error as a line for the user.
fn reply(reader: &mut impl BufRead) -> Result<serde_json::Value, String> {
    let mut line = String::new();
    reader.read_line(&mut line).map_err(|e| format!("reading from switchd: {e}"))?;
    if line.is_empty() {
        return Err("switchd closed the connection without answering".into());
    }
    match serde_json::from_str::<Reply>(&line).map_err(|e| format!("bad reply from switchd: {e}"))? {
        Reply::Result(value) => Ok(value),
        Reply::Error(e) => Err(e),
    }
}

/// A reply's result as `T`.
fn typed<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T, String> {
    serde_json::from_value(value).map_err(|e| format!("bad reply from switchd: {e}"))
}

/// Runs a capture (`request` is a [`Request::Capture`]): writes the file
/// switchd streams (its header, then each record as it comes) to `out`,
/// flushed as it goes, until switchd ends it; how it ended. `out` failing (a reader
/// that went away) ends it too, as a success.
pub fn capture(socket: &Path, request: &Request, out: &mut dyn Write) -> Result<super::api::CaptureEnd, String> {
    use std::io::Read;
    let (mut reader, _) = open(socket, request)?;
    let written = |r: std::io::Result<()>| r.is_ok();
    let mut writing = true;
    // The first record is the file's header.
    let mut frames: i64 = -1;
    let mut record = Vec::new();
    loop {
        let mut len = [0u8; 4];
        reader.read_exact(&mut len).map_err(|e| format!("reading the capture: {e}"))?;
        let len = u32::from_be_bytes(len) as usize;
        if len == 0 {
            break;
        }
        if len > crate::dataplane::capture::SNAPLEN + crate::dataplane::capture::RECORD_OVERHEAD {
            return Err(format!("bad capture stream: a record of {len} bytes"));
        }
        record.resize(len, 0);
        reader.read_exact(&mut record).map_err(|e| format!("reading the capture: {e}"))?;
        if writing {
            writing = written(out.write_all(&record).and_then(|()| out.flush()));
            frames += 1;
            if !writing {
                // The reader is gone: closing tells switchd to stop.
                return Ok(super::api::CaptureEnd { frames: frames.max(0) as u64, lost: 0 });
            }
        }
    }
    typed(reply(&mut reader)?)
}

/// Runs a live trace (`request` is a [`Request::TraceLive`]): hands each
/// line switchd streams to `line` as it comes, until switchd ends it (the
/// [`LiveLine::End`](super::api::LiveLine) line, returned) or `line` says
/// stop (false: the reader is gone).
pub fn trace_live(
    socket: &Path,
    request: &Request,
    mut line: impl FnMut(&super::api::LiveLine) -> bool,
) -> Result<super::api::LiveLine, String> {
    use super::api::LiveLine;
    let (mut reader, _) = open(socket, request)?;
    loop {
        let got: LiveLine = typed(reply(&mut reader)?)?;
        if matches!(got, LiveLine::End { .. }) || !line(&got) {
            return Ok(got);
        }
    }
}
