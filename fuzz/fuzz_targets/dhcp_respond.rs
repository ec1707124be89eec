//! Arbitrary bytes as the payload of a DHCP request from an attached port,
//! through the DHCP responder. Nothing may panic; a reply only ever hands
//! out the endpoint's own address, to the endpoint's own MAC.
//!
//! Input: the UDP payload. The lease's MAC is the first 6 bytes' xor with
//! the chaddr field so that both matching and strange clients are reached.

#![no_main]

use dhcproto::Decodable;
use libfuzzer_sys::fuzz_target;
use switchd::services::dhcp::{Lease, Outcome, respond};
use switchd_config::MacAddr;

fuzz_target!(|data: &[u8]| {
    // Often the client's own chaddr, sometimes another MAC.
    let mac = match data.get(28..34) {
        Some(c) if data.first().is_some_and(|b| b & 1 == 0) => MacAddr(c.try_into().unwrap()),
        _ => MacAddr([2, 0, 0, 0, 0, 9]),
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
    if let Outcome::Reply { payload, .. } = respond(data, Some(&lease)) {
        let reply = dhcproto::v4::Message::from_bytes(&payload).expect("our replies decode");
        assert_eq!(&reply.chaddr()[..6], &mac.0, "a reply to another client");
        let yiaddr = reply.yiaddr();
        assert!(yiaddr.is_unspecified() || yiaddr == lease.ip, "handed out {yiaddr}");
    }
});
