//! Arbitrary bytes as a DNS query over UDP and TCP, through the embedded
//! DNS responder. Nothing may panic; an answer is a response with the
//! query's id, within the transport's size.

#![no_main]

use hickory_proto::op::{Message, MessageType};
use libfuzzer_sys::fuzz_target;
use switchd::services::dns::{Directory, Transport, answer};

fuzz_target!(|data: &[u8]| fuzz_one(data));

// A function rather than the macro's closure, so that coverage reports
// (`cargo fuzz coverage`) show its lines.
fn fuzz_one(data: &[u8]) {
    let mut dir = Directory::default();
    dir.add("web", "front", "10.1.0.2".parse().unwrap());
    dir.add("db", "front", "fd00::2".parse().unwrap());
    for transport in [Transport::Udp, Transport::Tcp] {
        let (_, reply) = answer(data, &[&dir], transport);
        let Some(reply) = reply else { continue };
        if transport == Transport::Udp {
            assert!(reply.len() <= switchd::services::dns::EDNS_MAX, "UDP answer of {} bytes", reply.len());
        }
        let m = Message::from_vec(&reply).expect("our answers decode");
        assert_eq!(m.message_type(), MessageType::Response);
        assert_eq!(&reply[..2], &data[..2], "the query's id");
    }
}
