//! Arbitrary bytes as the UDP payload of a DHCPv6 client message from an
//! attached port, through the DHCPv6 responder. Nothing may panic; a reply
//! decodes, carries the request's transaction id and this server's DUID,
//! and only ever hands out the endpoint's own address; without a lease, or
//! from another MAC, only an information request is answered, with no
//! address.
//!
//! Input: `[flags: u8][payload...]`. Bit 0: the asker is another MAC than
//! the endpoint's; bit 1: the port has no address to give.

#![no_main]

use dhcproto::Decodable;
use dhcproto::v6::{DhcpOption, Message, MessageType, OptionCode};
use libfuzzer_sys::fuzz_target;
use switchd::services::dhcp6::{Lease, Outcome, Server, respond};
use switchd_config::MacAddr;

fuzz_target!(|data: &[u8]| fuzz_one(data));

// A function rather than the macro's closure, so that coverage reports
// (`cargo fuzz coverage`) show its lines.
fn fuzz_one(data: &[u8]) {
    let Some((&flags, payload)) = data.split_first() else { return };
    let endpoint = MacAddr([2, 0x42, 10, 0, 0, 5]);
    let asker = if flags & 1 == 1 { MacAddr([2, 0x42, 10, 0, 0, 6]) } else { endpoint };
    let lease = Lease { mac: endpoint, addr: "fd00:10::42:aff:fe00:5".parse().unwrap() };
    let lease = (flags & 2 == 0).then_some(lease);
    let server = Server { mac: MacAddr([2, 0x5d, 0x67, 0, 1, 0x90]), dns: Some("fd00:10::1".parse().unwrap()) };
    let Outcome::Reply { payload: reply, kind } = respond(payload, asker, &server, lease.as_ref()) else { return };
    // The request is read from its bytes: dhcproto may not decode it
    // whole (that is why switchd sanitizes it first).
    let (request_type, request_xid) = (MessageType::from(payload[0]), &payload[1..4]);
    let reply = Message::from_bytes(&reply).expect("our replies decode");
    assert_eq!(&reply.xid()[..], request_xid, "the request's transaction id");
    assert_eq!(reply.msg_type(), kind);
    assert!(matches!(kind, MessageType::Advertise | MessageType::Reply), "{kind:?}");
    let duid = [0, 3, 0, 1, 2, 0x5d, 0x67, 0, 1, 0x90];
    assert!(
        matches!(reply.opts().get(OptionCode::ServerId), Some(DhcpOption::ServerId(id)) if id[..] == duid),
        "our DUID"
    );
    let known = lease.is_some() && asker == endpoint;
    if !known {
        assert_eq!(request_type, MessageType::InformationRequest, "answered a client with no lease");
    }
    for o in reply.opts().iter() {
        if let DhcpOption::IANA(ia) = o {
            assert!(known, "an address for a client with no lease");
            for a in ia.opts.iter() {
                if let DhcpOption::IAAddr(a) = a {
                    assert_eq!(Some(a.addr), lease.map(|l| l.addr), "handed out another address");
                }
            }
        }
    }
}
