//! Arbitrary bytes as what dockerd writes on one connection to the plugin
//! socket, read as the server reads them: requests framed by
//! `docker::http::parse_request`, one after another (keep-alive), each
//! dispatched by `docker::parse` and answered by `fixed_reply` where no
//! daemon is needed. Nothing may panic, and:
//!
//! - a request accepted has no `Transfer-Encoding`, at most one
//!   `Content-Length` (exactly one when it has a body), and a body of
//!   exactly that length, the last bytes of what it took; this is checked
//!   against a scan of the header lines of its own, not httparse's view;
//! - framing is incremental: any prefix of the buffer is either "not yet"
//!   or the very outcome of the whole (so the bytes arriving in two reads
//!   give what they give in one), and nothing is "not yet" once the whole
//!   request is there;
//! - a refusal is 400 or 413 and ends the connection;
//! - a dispatch error names the operation's path (or says what switchd's
//!   IPAM needs), and becomes `{"Err": ...}`.
//!
//! Input: the bytes of the connection. The first byte also picks where the
//! buffer is cut in two for the incremental check.

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchd::docker::http::{HttpError, parse_request};
use switchd::docker::{self, Request};

type Parsed = Result<Option<(String, Vec<u8>, usize)>, HttpError>;

/// The header lines of `head` (the request line and the blank line left
/// out), read without httparse: `(name, value)` split at the first ':'.
fn header_lines(head: &[u8]) -> Vec<(&[u8], &[u8])> {
    head.split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .skip_while(|l| l.is_empty()) // httparse skips empty lines before the request line
        .skip(1)
        .take_while(|l| !l.is_empty())
        .map(|l| match l.iter().position(|b| *b == b':') {
            Some(i) => (&l[..i], &l[i + 1..]),
            None => (l, &b""[..]),
        })
        .collect()
}

fn check_accepted(buf: &[u8], path: &str, body: &[u8], used: usize) {
    assert!(used > 0 && used <= buf.len(), "took {used} of {} bytes", buf.len());
    assert!(buf[..used].ends_with(body), "the body is the request's last bytes");
    let head = &buf[..used - body.len()];
    assert!(head.ends_with(b"\n"), "the head ends in a blank line");
    let headers = header_lines(head);
    assert!(
        !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(b"transfer-encoding")),
        "accepted with a Transfer-Encoding"
    );
    let lengths: Vec<&[u8]> =
        headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(b"content-length")).map(|(_, v)| *v).collect();
    match lengths[..] {
        [] => assert!(body.is_empty(), "a body of {} bytes without a Content-Length", body.len()),
        [value] => {
            let value = std::str::from_utf8(value).expect("an accepted Content-Length is text");
            let n: usize = value.trim_matches([' ', '\t']).parse().expect("an accepted Content-Length is a number");
            assert_eq!(n, body.len(), "Content-Length {value:?}");
        }
        _ => panic!("accepted with {} Content-Lengths", lengths.len()),
    }
    assert!(!path.is_empty());
}

fn same(a: &Parsed, b: &Parsed) -> bool {
    match (a, b) {
        (Ok(a), Ok(b)) => a == b,
        (Err(a), Err(b)) => a == b,
        _ => false,
    }
}

fn check_incremental(buf: &[u8], whole: &Parsed, cut: usize) {
    let cut = cut.min(buf.len());
    let first = parse_request(&buf[..cut]);
    if !matches!(first, Ok(None)) {
        assert!(same(&first, whole), "{cut} of {} bytes gave {first:?}, all of them {whole:?}", buf.len());
    }
    if let Ok(Some((_, _, used))) = whole {
        let exact = parse_request(&buf[..*used]);
        assert!(same(&exact, whole), "the request alone gave {exact:?}, with what follows {whole:?}");
        if *used > 0 {
            assert!(matches!(parse_request(&buf[..used - 1]), Ok(None)), "complete before its last byte");
        }
    }
}

fn dispatch(path: &str, body: &[u8]) {
    match docker::parse(path, body) {
        Ok(request) => {
            let reply = docker::fixed_reply(&request);
            let needs_daemon = matches!(
                request,
                Request::CreateNetwork(_)
                    | Request::DeleteNetwork { .. }
                    | Request::CreateEndpoint(_)
                    | Request::DeleteEndpoint { .. }
                    | Request::Join(_)
                    | Request::Leave { .. }
                    | Request::RequestAddress(_)
                    | Request::ReleaseAddress { .. }
            );
            assert_eq!(reply.is_none(), needs_daemon, "{request:?}");
            if let Some(reply) = reply {
                assert!(reply.is_object() && reply.get("Err").is_none(), "{reply}");
            }
        }
        Err(e) => {
            assert!(e.starts_with(path) || e.starts_with("switchd's IPAM"), "{e:?} does not name {path:?}");
            assert_eq!(docker::error_reply(&e)["Err"], e.as_str());
        }
    }
}

fuzz_target!(|data: &[u8]| fuzz_one(data));

// A function rather than the macro's closure, so that coverage reports
// (`cargo fuzz coverage`) show its lines.
fn fuzz_one(data: &[u8]) {
    let cut_at = data.first().map_or(0, |b| usize::from(*b));
    let mut rest = data;
    let mut first = true;
    loop {
        let whole = parse_request(rest);
        // Cut the first request where the first byte says, later ones in the middle.
        let cut = if first { cut_at * rest.len() / 255 } else { rest.len() / 2 };
        check_incremental(rest, &whole, cut);
        first = false;
        match whole {
            Ok(None) => break,
            Err(e) => {
                assert!(e.status == 400 || e.status == 413, "{e:?}");
                assert!(!e.message.is_empty());
                break;
            }
            Ok(Some((path, body, used))) => {
                check_accepted(rest, &path, &body, used);
                dispatch(&path, &body);
                rest = &rest[used..];
            }
        }
    }
}
