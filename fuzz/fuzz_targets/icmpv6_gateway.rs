//! Arbitrary Ethernet frames through the gateway's IPv6
//! (`services::icmpv6::answer`), as the switch hands them over: router
//! solicitations (to all routers) and frames to the gateway's MAC. Never a
//! panic; an answer is a well-formed Ethernet + IPv6 + ICMPv6 frame back
//! to the sender's MAC whose checksum verifies: a router advertisement
//! only for a solicitation with hop limit 255, from the gateway's
//! link-local address with hop limit 255 (RFC 4861 6.1.2), carrying the
//! network's prefix; an echo reply only to a ping of one of the gateway's
//! addresses, from that address.

#![no_main]

use std::net::Ipv6Addr;

use etherparse::{Icmpv6Type, NetSlice, SlicedPacket, TransportSlice};
use libfuzzer_sys::fuzz_target;
use switchd::services::icmpv6::{Advertised, answer};
use switchd::switch::guard::link_local;
use switchd_config::MacAddr;

fuzz_target!(|data: &[u8]| fuzz_one(data));

fn fuzz_one(data: &[u8]) {
    let adv = Advertised {
        mac: MacAddr([2, 0x5d, 0x67, 0, 1, 0x5e]),
        prefix: "fd00:35::".parse().unwrap(),
        gateway: "fd00:35::1".parse().unwrap(),
        mtu: 1450,
        router: data.first().is_some_and(|b| b & 1 == 1),
        dns: true,
        managed: data.first().is_some_and(|b| b & 2 == 2),
    };
    let mut out = Vec::new();
    if !answer(data, &adv, &mut out) {
        return;
    }
    let asked = SlicedPacket::from_ethernet(data).expect("answered, so it parsed");
    let Some(NetSlice::Ipv6(asked_ip)) = &asked.net else { panic!("answered what is not IPv6") };
    let reply = SlicedPacket::from_ethernet(&out).expect("a well-formed answer");
    let to = etherparse::Ethernet2HeaderSlice::from_slice(&out).unwrap().destination();
    let asker = etherparse::Ethernet2HeaderSlice::from_slice(data).unwrap().source();
    assert_eq!(to, asker, "back to the sender's MAC");
    let Some(NetSlice::Ipv6(ip)) = &reply.net else { panic!("not IPv6") };
    let Some(TransportSlice::Icmpv6(icmp)) = &reply.transport else { panic!("not ICMPv6") };
    let (src, dst) = (ip.header().source_addr(), ip.header().destination_addr());
    let sum = icmp.icmp_type().calc_checksum(src.octets(), dst.octets(), icmp.payload()).unwrap();
    assert_eq!(sum, icmp.checksum(), "the checksum verifies");
    match icmp.icmp_type() {
        Icmpv6Type::RouterAdvertisement(_) => {
            assert_eq!(asked_ip.header().hop_limit(), 255, "a solicitation that crossed a router");
            assert_eq!((src, ip.header().hop_limit()), (link_local(adv.mac), 255));
            assert!(icmp.payload().windows(16).any(|w| w == adv.prefix.octets()), "the prefix");
        }
        Icmpv6Type::EchoReply(_) => {
            let to: Ipv6Addr = asked_ip.header().destination_addr();
            assert!(to == adv.gateway || to == link_local(adv.mac), "an echo reply for another address");
            assert_eq!(src, to, "from the address pinged");
        }
        other => panic!("answered with {other:?}"),
    }
}
