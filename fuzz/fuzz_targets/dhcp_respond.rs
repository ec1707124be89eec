//! Arbitrary bytes as the payload of a DHCP request from an attached port,
//! through the DHCP responder. Nothing may panic; a reply only ever hands
//! out the endpoint's own address, to the endpoint's own MAC, with the
//! request's transaction id, of the kind that answers the request
//! (DISCOVER: OFFER; REQUEST: ACK or NAK; INFORM: ACK); a request from
//! another MAC, or from a port without a lease, gets no reply at all.
//!
//! Input: the UDP payload. The lease's MAC is the request's own client MAC
//! (`chaddr`), unless the low bit of the `secs` field (byte 9, which the
//! responder never reads) is set: then one bit of it differs, so that both
//! the endpoint itself and other clients are reached.

#![no_main]

use dhcproto::Decodable;
use dhcproto::v4::{DhcpOption, Message, MessageType, OptionCode};
use libfuzzer_sys::fuzz_target;
use switchd::services::dhcp::{Lease, Outcome, respond};
use switchd_config::MacAddr;

fuzz_target!(|data: &[u8]| fuzz_one(data));

// A function rather than the macro's closure, so that coverage reports
// (`cargo fuzz coverage`) show its lines.
fn fuzz_one(data: &[u8]) {
    let chaddr: Option<[u8; 6]> = data.get(28..34).map(|c| c.try_into().unwrap());
    let own = data.get(9).is_none_or(|secs| secs & 1 == 0);
    let mac = match chaddr {
        Some(c) if own => MacAddr(c),
        Some(mut c) => {
            c[5] ^= 1;
            MacAddr(c)
        }
        None => MacAddr([2, 0, 0, 0, 0, 9]),
    };
    let lease = Lease {
        mac,
        ip: [10, 1, 0, 9].into(),
        prefix_len: 24,
        server: [10, 1, 0, 1].into(),
        router: None,
        dns: Some([10, 1, 0, 1].into()),
        mtu: 1450,
        routes: vec!["10.2.0.0/24".parse().unwrap()],
        hostname: "c".into(),
    };
    assert!(!matches!(respond(data, None), Outcome::Reply { .. }), "a reply without a lease");
    let Outcome::Reply { payload, kind, .. } = respond(data, Some(&lease)) else { return };
    assert_eq!(chaddr, Some(mac.0), "a reply to another client");
    let reply = Message::from_bytes(&payload).expect("our replies decode");
    assert_eq!(&reply.chaddr()[..6], &mac.0, "a reply to another client");
    assert_eq!(reply.xid().to_be_bytes(), data[4..8], "the request's transaction id");
    assert_eq!(reply.opts().msg_type(), Some(kind));
    let yiaddr = reply.yiaddr();
    assert!(yiaddr.is_unspecified() || yiaddr == lease.ip, "handed out {yiaddr}");
    assert!(
        matches!(reply.opts().get(OptionCode::ServerIdentifier), Some(DhcpOption::ServerIdentifier(s)) if *s == lease.server),
        "the server identifier"
    );
    // What the request asked for (never decoded here with dhcproto, which
    // asserts on some option lengths: see `sanitize`).
    let asked = message_types(data);
    match kind {
        MessageType::Offer => {
            assert_eq!(yiaddr, lease.ip, "an offer of another address");
            assert!(asked.contains(&1), "offered for message types {asked:?}");
        }
        MessageType::Ack | MessageType::Nak => {
            assert!(asked.iter().any(|t| matches!(t, 3 | 8)), "{kind:?} for message types {asked:?}");
            if kind == MessageType::Nak {
                assert!(yiaddr.is_unspecified(), "a NAK with an address");
            }
        }
        other => panic!("replied {other:?}"),
    }
}

/// The values of every one-byte option 53 (message type) in the options.
fn message_types(payload: &[u8]) -> Vec<u8> {
    let mut types = Vec::new();
    let mut rest = payload.get(240..).unwrap_or_default();
    while let [code, tail @ ..] = rest {
        match (code, tail) {
            (255, _) => break,
            (0, _) => rest = tail,
            (_, [len, tail @ ..]) if usize::from(*len) <= tail.len() => {
                let (body, tail) = tail.split_at(usize::from(*len));
                if let (53, [t]) = (code, body) {
                    types.push(*t);
                }
                rest = tail;
            }
            _ => break,
        }
    }
    types
}
