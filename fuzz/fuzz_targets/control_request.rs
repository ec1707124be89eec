//! Arbitrary bytes as what a client writes on the control socket, through
//! `control::server::serve_lines` (the server's loop over request lines),
//! with a handler that answers each request with the request itself.
//! Nothing may panic, and:
//!
//! - every line (the last one also without its newline) gets exactly one
//!   reply line, in order, each a JSON `Reply`;
//! - a line that is not UTF-8 gets an error saying so; one that is not a
//!   request gets a "bad request" error; a request reaches the handler
//!   unchanged (its reply is the request, as it re-serializes) and
//!   survives a round trip through its JSON form.
//!
//! Input: the bytes of the connection.

#![no_main]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use switchd::conns::{Guard, Limits, Source, Table};
use switchd::control::api::{Reply, Request};
use switchd::control::server::serve_lines;

struct Harness {
    runtime: tokio::runtime::Runtime,
    guard: Guard,
    _table: Table,
}

thread_local! {
    static HARNESS: Harness = {
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("a runtime");
        let table = Table::new("fuzz", Limits { max: 1, per_source: 1, idle_timeout: None });
        let guard = table.admit(Instant::now(), Source::Local).expect("room for one").guard;
        Harness { runtime, guard, _table: table }
    };
}

fn echo(request: &Request) -> Value {
    serde_json::to_value(request).expect("requests serialize")
}

fuzz_target!(|data: &[u8]| fuzz_one(data));

// A function rather than the macro's closure, so that coverage reports
// (`cargo fuzz coverage`) show its lines.
fn fuzz_one(data: &[u8]) {
    let mut out: Vec<u8> = Vec::new();
    HARNESS.with(|h| {
        let serving = serve_lines(data, &mut out, &h.guard, |r| async move { Reply::Result(echo(&r)) });
        h.runtime.block_on(serving);
    });

    let lines: Vec<&[u8]> = data.split_inclusive(|b| *b == b'\n').collect();
    assert!(out.is_empty() || out.ends_with(b"\n"), "a reply without its newline");
    let replies: Vec<&[u8]> = out.split_inclusive(|b| *b == b'\n').collect();
    assert_eq!(replies.len(), lines.len(), "{} lines, {} replies", lines.len(), replies.len());

    for (line, reply) in lines.iter().zip(&replies) {
        let reply: Reply = serde_json::from_slice(reply).expect("a reply line is a Reply");
        let text = line.strip_suffix(b"\n").unwrap_or(line);
        match (std::str::from_utf8(text), reply) {
            (Err(_), Reply::Error(e)) => assert!(e.starts_with("bad request: not UTF-8"), "{e}"),
            (Err(_), Reply::Result(r)) => panic!("a line that is not UTF-8 was answered {r}"),
            (Ok(text), reply) => match (serde_json::from_str::<Request>(text), reply) {
                (Ok(request), Reply::Result(r)) => {
                    assert_eq!(r, echo(&request), "the handler got another request");
                    let again: Request = serde_json::from_value(r.clone()).expect("a request re-reads");
                    assert_eq!(echo(&again), r, "a request's round trip");
                }
                (Ok(request), Reply::Error(e)) => panic!("{request:?} was refused: {e}"),
                (Err(_), Reply::Error(e)) => assert!(e.starts_with("bad request: "), "{e}"),
                (Err(e), Reply::Result(r)) => panic!("not a request ({e}), answered {r}"),
            },
        }
    }
}
