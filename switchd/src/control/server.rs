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
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use super::api::{Reply, Request};
use crate::conns::{AcceptErrors, Guard, Limits, Source, Table};
use crate::daemon::{self, Shared};

/// The longest request line accepted.
const MAX_REQUEST: u64 = 1 << 20;
/// Connections held at once.
pub const MAX_CONNECTIONS: usize = 256;

/// Binds the control socket, refusing to steal it from a running daemon.
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    crate::conns::bind_unix(path, "another switchd")
}

/// Serves connections until the task is dropped.
pub async fn serve(listener: UnixListener, daemon: Shared) {
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

/// Answers a request: one that only reads with the daemon shared, one
/// that changes something with the daemon to itself.
async fn handle(daemon: &Shared, request: Request) -> Reply {
    let request = Arc::new(request);
    let asked = request.clone();
    let answered = match daemon::run_reading(daemon, move |d| d.query(&asked)).await {
        Ok(Some(reply)) => Ok(reply),
        Ok(None) => daemon::run_waiting(daemon, move |d| d.handle(&request)).await,
        Err(e) => Err(e),
    };
    answered.unwrap_or_else(|e| Reply::Error(e.to_string()))
}

async fn serve_connection(stream: UnixStream, daemon: Shared, guard: Guard) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    // A capture is asked as a connection's first line, and streams.
    let mut first = Vec::new();
    let mut limited = (&mut reader).take(MAX_REQUEST + 1);
    let read = tokio::select! {
        read = limited.read_until(b'\n', &mut first) => read,
        _ = guard.closed() => return,
    };
    if !matches!(read, Ok(1..)) {
        return;
    }
    match serde_json::from_slice(first.trim_ascii_end()) {
        Ok(Request::Capture { endpoint, network, vtep, decrypt, count, seconds }) => {
            let _busy = guard.busy();
            let ask = Capturing { endpoint, network, vtep, decrypt, count, seconds };
            let _ = stream_capture(&mut reader, &mut write, &daemon, &guard, ask).await;
            return;
        }
        Ok(Request::TraceLive { live }) => {
            let _busy = guard.busy();
            let _ = stream_live_trace(&mut reader, &mut write, &daemon, &guard, live).await;
            return;
        }
        _ => {}
    }
    let rest = std::io::Cursor::new(first).chain(reader);
    serve_lines(rest, write, &guard, |request| handle(&daemon, request)).await;
}

/// One reply as a line.
fn reply_line(reply: &Reply) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(reply).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

/// Frames a live trace explains with one hold of the daemon.
const LIVE_CHUNK: usize = 64;

/// Streams a live trace: the reply line (or an error line), then a
/// [`LiveLine::Frame`](super::api::LiveLine) per matched frame, until
/// `count` frames, `seconds`, or the client goes; then the
/// [`LiveLine::End`](super::api::LiveLine) line. The trace stops when this
/// returns, however it ends.
async fn stream_live_trace<R, W>(
    read: &mut R,
    write: &mut W,
    daemon: &Shared,
    guard: &Guard,
    ask: super::api::LiveRequest,
) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    use super::api::LiveLine;
    let (count, seconds) = (ask.count, ask.seconds);
    let asked = ask.clone();
    let mut trace = match daemon::run_reading(daemon, move |d| d.trace_live(&asked)).await {
        Ok(Ok(trace)) => trace,
        Ok(Err(e)) | Err(e) => return write.write_all(&reply_line(&Reply::Error(e.to_string()))).await,
    };
    tracing::info!(?ask, "live trace started");
    write.write_all(&reply_line(&Reply::Result(serde_json::json!({ "tracing": true })))).await?;
    let deadline = deadline_after(seconds);
    let mut frames = 0u64;
    while count.is_none_or(|c| frames < c) {
        let Some(first) = next_or_end(&mut trace.frames, deadline, guard, read).await else { break };
        let room = count.map_or(LIVE_CHUNK, |c| (c - frames).min(LIVE_CHUNK as u64) as usize);
        let mut chunk = vec![first];
        while chunk.len() < room
            && let Ok(seen) = trace.frames.try_recv()
        {
            chunk.push(seen);
        }
        let explained =
            daemon::run_reading(daemon, move |d| chunk.iter().map(|s| d.explain_seen(s)).collect::<Vec<_>>()).await;
        for frame in explained.unwrap_or_default() {
            let line = Reply::Result(serde_json::to_value(LiveLine::Frame(frame)).unwrap_or_default());
            unstalled(write, &reply_line(&line)).await?;
            frames += 1;
        }
    }
    let lost = trace.lost();
    drop(trace);
    tracing::info!("live trace ended: {frames} frames shown, {lost} lost");
    let end = LiveLine::End { frames, lost };
    write.write_all(&reply_line(&Reply::Result(serde_json::to_value(end).unwrap_or_default()))).await
}

/// How long a streaming client may leave what it was sent unread before
/// its stream ends (and its trace or capture with it, freeing the slot).
const STALLED: std::time::Duration = std::time::Duration::from_secs(10);

/// Writes `bytes`, unless the client has stopped reading for [`STALLED`].
async fn unstalled<W: AsyncWrite + Unpin>(write: &mut W, bytes: &[u8]) -> io::Result<()> {
    match tokio::time::timeout(STALLED, write.write_all(bytes)).await {
        Ok(written) => written,
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "the client stopped reading")),
    }
}

/// A stream's next item from `source`, or `None` once the stream ends:
/// `source` is done, `deadline` passed, the connection is being closed,
/// or the client went away (or said something: it may not).
async fn next_or_end<T, R: AsyncRead + Unpin>(
    source: &mut tokio::sync::mpsc::Receiver<T>,
    deadline: Option<tokio::time::Instant>,
    guard: &Guard,
    read: &mut R,
) -> Option<T> {
    let mut probe = [0u8; 1];
    tokio::select! {
        item = source.recv() => item,
        _ = until(deadline) => None,
        _ = guard.closed() => None,
        _ = read.read(&mut probe) => None,
    }
}

/// When `seconds` from now is (none: never).
fn deadline_after(seconds: Option<f64>) -> Option<tokio::time::Instant> {
    seconds.map(|s| tokio::time::Instant::now() + std::time::Duration::from_secs_f64(s.clamp(0.0, 86_400.0)))
}

/// Waits until `deadline` (for ever without one).
async fn until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// What a capture was asked for.
struct Capturing {
    endpoint: String,
    network: Option<String>,
    vtep: Option<String>,
    decrypt: bool,
    count: Option<u64>,
    seconds: Option<f64>,
}

/// Streams a capture: the reply line (or an error line, and the end);
/// then each pcap record behind its length (4 bytes, big-endian), until
/// `count` records, `seconds`, or the client goes; then a zero length and
/// a [`CaptureEnd`](super::api::CaptureEnd) line. The capture stops when
/// this returns, however it ends.
async fn stream_capture<R, W>(
    read: &mut R,
    write: &mut W,
    daemon: &Shared,
    guard: &Guard,
    ask: Capturing,
) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let line = reply_line;
    let Capturing { endpoint, network, vtep, decrypt, count, seconds } = ask;
    let (asked, what) = (endpoint.clone(), vtep.as_ref().map_or(endpoint.clone(), |v| format!("VTEP {v}")));
    let started = daemon::run_reading(daemon, move |d| match &vtep {
        Some(vtep) => d.capture_vtep(vtep, decrypt),
        None => d.capture(&asked, network.as_deref()),
    })
    .await;
    let mut capture = match started {
        Ok(Ok(capture)) => capture,
        Ok(Err(e)) => return write.write_all(&line(&Reply::Error(e.to_string()))).await,
        Err(e) => return write.write_all(&line(&Reply::Error(e.to_string()))).await,
    };
    tracing::info!("capture of {what} started");
    write.write_all(&line(&Reply::Result(serde_json::json!({ "capturing": what })))).await?;
    write.write_all(&(capture.header.len() as u32).to_be_bytes()).await?;
    write.write_all(&capture.header).await?;
    let deadline = deadline_after(seconds);
    let mut frames = 0u64;
    while count.is_none_or(|c| frames < c) {
        let Some(record) = next_or_end(&mut capture.records, deadline, guard, read).await else { break };
        unstalled(write, &(record.len() as u32).to_be_bytes()).await?;
        unstalled(write, &record).await?;
        frames += 1;
    }
    let (_, lost) = capture.counts();
    drop(capture);
    tracing::info!("capture of {what} ended: {frames} frames, {lost} lost");
    write.write_all(&0u32.to_be_bytes()).await?;
    let end = super::api::CaptureEnd { frames, lost };
    write.write_all(&line(&Reply::Result(serde_json::to_value(end).unwrap_or_default()))).await
}

/// Answers one request per line, in order, until the client closes, sends
/// a line longer than [`MAX_REQUEST`], or is told to close (`guard`). A
/// line that is not a request (not even UTF-8) gets an error reply, and
/// the next line is read as usual. Public for the `control_request` fuzz
/// target only.
#[doc(hidden)]
pub async fn serve_lines<R, W, F, Fut>(read: R, mut write: W, guard: &Guard, mut answer: F)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
    F: FnMut(Request) -> Fut,
    Fut: std::future::Future<Output = Reply>,
{
    let mut reader = BufReader::new(read);
    let mut line = Vec::new();
    loop {
        line.clear();
        let mut limited = (&mut reader).take(MAX_REQUEST + 1);
        let read = tokio::select! {
            read = limited.read_until(b'\n', &mut line) => read,
            _ = guard.closed() => return,
        };
        match read {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let too_long = line.len() as u64 > MAX_REQUEST;
        let reply = if too_long {
            Reply::Error(format!("bad request: longer than {MAX_REQUEST} bytes"))
        } else {
            let _busy = guard.busy();
            let text = line.strip_suffix(b"\n").unwrap_or(&line);
            match std::str::from_utf8(text) {
                Err(e) => Reply::Error(format!("bad request: not UTF-8 ({e})")),
                Ok(text) => match serde_json::from_str::<Request>(text) {
                    Ok(request) => answer(request).await,
                    Err(e) => Reply::Error(format!("bad request: {e}")),
                },
            }
        };
        let mut bytes = serde_json::to_vec(&reply).unwrap_or_default();
        bytes.push(b'\n');
        // A client that does not read its replies is idle, and may be closed.
        tokio::select! {
            written = write.write_all(&bytes) => if written.is_err() { return },
            _ = guard.closed() => return,
        }
        if too_long {
            // The rest of that line cannot be told from the next request.
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncBufReadExt;

    use super::*;

    /// Sends `input` to `serve_lines` (answering every request with its
    /// command's name) and returns the reply lines.
    async fn exchange(input: &[u8]) -> Vec<String> {
        let table = Table::new("test", Limits { max: 1, per_source: 1, idle_timeout: None });
        let guard = table.admit(Instant::now(), Source::Local).unwrap().guard;
        let (client, server) = tokio::io::duplex(1 << 16);
        let (server_read, server_write) = tokio::io::split(server);
        let (client_read, mut client_write) = tokio::io::split(client);
        let input = input.to_vec();
        // Written alongside: a long input does not fit the pipe at once.
        tokio::spawn(async move {
            let _ = client_write.write_all(&input).await;
            let _ = client_write.shutdown().await;
        });
        let serving = serve_lines(server_read, server_write, &guard, |r| async move {
            Reply::Result(serde_json::to_value(&r).unwrap()["command"].clone())
        });
        tokio::time::timeout(std::time::Duration::from_secs(5), serving).await.expect("serve_lines ends at EOF");
        let mut lines = BufReader::new(client_read).lines();
        let mut replies = Vec::new();
        while let Some(line) = lines.next_line().await.unwrap() {
            replies.push(line);
        }
        replies
    }

    #[tokio::test]
    async fn a_line_that_is_not_utf8_is_answered_and_the_next_one_served() {
        let replies = exchange(b"\xff\xfe\n{\"command\":\"status\"}\n").await;
        assert_eq!(replies.len(), 2, "{replies:?}");
        assert!(replies[0].starts_with(r#"{"error":"bad request: not UTF-8"#), "{}", replies[0]);
        assert_eq!(replies[1], r#"{"result":"status"}"#);
    }

    #[tokio::test]
    async fn bad_json_empty_lines_and_a_last_line_without_newline() {
        let replies = exchange(b"nonsense\n\n{\"command\":\"peers\"}").await;
        assert_eq!(replies.len(), 3, "{replies:?}");
        assert!(replies[0].starts_with(r#"{"error":"bad request: expected"#), "{}", replies[0]);
        assert!(replies[1].starts_with(r#"{"error":"bad request: EOF"#), "{}", replies[1]);
        assert_eq!(replies[2], r#"{"result":"peers"}"#);
    }

    #[tokio::test]
    async fn a_line_too_long_is_refused_and_the_connection_closed() {
        let mut input = vec![b'x'; MAX_REQUEST as usize + 10];
        input.extend_from_slice(b"\n{\"command\":\"status\"}\n");
        let replies = exchange(&input).await;
        assert_eq!(replies, [format!(r#"{{"error":"bad request: longer than {MAX_REQUEST} bytes"}}"#)]);
    }
}
