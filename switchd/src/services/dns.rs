//! The embedded DNS server on every network's gateway address: container
//! names to addresses (A, AAAA) and back (PTR), for the networks the asking
//! container is on, as Docker's embedded DNS answers them.
//!
//! Sans-IO: [`answer`] takes the bytes of one query and the directories the
//! asker may see and returns the bytes of the answer (or why there is
//! none). Messages are read and written by hickory-proto; this module only
//! decides. Everything it does not know gets NXDOMAIN at once: there is no
//! upstream to forward to, so a container never waits on a timeout.

use std::net::IpAddr;

use hashbrown::HashMap;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, PTR};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

/// How long an answer may be cached. Short: containers come and go, and
/// their addresses with them.
pub const TTL: u32 = 60;
/// The largest UDP answer without EDNS (RFC 1035).
pub const UDP_MAX: usize = 512;
/// The largest UDP answer with EDNS, whatever the client offers: it fits
/// any network's MTU, so no answer is fragmented (DNS flag day 2020).
pub const EDNS_MAX: usize = 1232;

/// The names of one network: container names, and `name.network`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Directory {
    forward: HashMap<String, Vec<IpAddr>>,
    reverse: HashMap<IpAddr, String>,
    /// Names whose answers rotate (a service's backends).
    rotating: hashbrown::HashSet<String>,
}

impl Directory {
    /// Adds a container on network `network`: it answers to `name` and
    /// `name.network` (case-insensitively), and `ip` points back to
    /// `name.network`.
    pub fn add(&mut self, name: &str, network: &str, ip: IpAddr) {
        let mut long = format!("{name}.{network}");
        long.make_ascii_lowercase();
        let short = long[..name.len()].to_owned();
        for key in [short, long.clone()] {
            let ips = self.forward.entry(key).or_default();
            if !ips.contains(&ip) {
                ips.push(ip);
            }
        }
        self.reverse.insert(ip, long);
    }

    /// Adds a service's name on `network`: `name` and `name.network`
    /// answer `ips` (rotated from one answer to the next if `rotate`),
    /// in place of any container of that name. No reverse entry: an
    /// address's name is its container's (a VIP's, its service's).
    pub fn add_service(&mut self, name: &str, network: &str, ips: Vec<IpAddr>, rotate: bool) {
        let (short, long) = (name.to_ascii_lowercase(), format!("{name}.{network}").to_ascii_lowercase());
        if let ([vip], false) = (&ips[..], rotate) {
            self.reverse.entry(*vip).or_insert_with(|| long.clone());
        }
        for key in [short, long] {
            if rotate {
                self.rotating.insert(key.clone());
            }
            self.forward.insert(key, ips.clone());
        }
    }

    pub fn len(&self) -> usize {
        self.reverse.len()
    }

    pub fn is_empty(&self) -> bool {
        self.reverse.is_empty()
    }
}

/// Why a query got no answer, or which error answer it got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Names found (or a name with no records of the asked type: NODATA).
    Answered,
    /// NXDOMAIN: no container of that name on the asker's networks.
    NxDomain,
    /// FORMERR, NOTIMP or REFUSED: a malformed or unsupported question
    /// (several questions, another class, another opcode).
    Refused,
    /// Not answered at all: not a DNS message, or a response.
    Dropped,
}

/// How the query came, which bounds the answer's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// 512 bytes, or what the query's EDNS offers; larger answers are sent
    /// truncated (TC set) so the client retries over TCP.
    Udp,
    Tcp,
}

/// Answers one DNS message from a container that may see `dirs`.
pub fn answer(query: &[u8], dirs: &[&Directory], transport: Transport) -> (Outcome, Option<Vec<u8>>) {
    let request = match Message::from_vec(query) {
        Ok(m) => m,
        Err(_) => {
            // Unreadable. If the header at least is there and says
            // "query", say FORMERR so the client stops waiting.
            return match query {
                [a, b, flags, ..] if query.len() >= 12 && flags & 0x80 == 0 => {
                    let id = u16::from_be_bytes([*a, *b]);
                    let reply = Message::error_msg(id, OpCode::Query, ResponseCode::FormErr);
                    (Outcome::Refused, reply.to_vec().ok())
                }
                _ => (Outcome::Dropped, None),
            };
        }
    };
    if request.message_type() != MessageType::Query {
        return (Outcome::Dropped, None);
    }
    let refuse = |code| {
        let mut reply = Message::error_msg(request.id(), request.op_code(), code);
        reply.set_recursion_desired(request.recursion_desired());
        if let [q] = request.queries() {
            reply.add_query(q.clone());
        }
        (Outcome::Refused, reply.to_vec().ok())
    };
    if request.op_code() != OpCode::Query {
        return refuse(ResponseCode::NotImp);
    }
    // One question per message, as every resolver sends; RFC 9619.
    let [question] = request.queries() else { return refuse(ResponseCode::FormErr) };
    if question.query_class() != DNSClass::IN {
        return refuse(ResponseCode::Refused);
    }

    let (outcome, records) = resolve(question, dirs, request.id());
    let mut reply = Message::new();
    reply
        .set_id(request.id())
        .set_message_type(MessageType::Response)
        .set_op_code(OpCode::Query)
        .set_authoritative(true)
        .set_recursion_desired(request.recursion_desired())
        .set_response_code(if outcome == Outcome::NxDomain { ResponseCode::NXDomain } else { ResponseCode::NoError })
        .add_query(question.clone())
        .add_answers(records);
    let limit = match transport {
        Transport::Tcp => usize::from(u16::MAX),
        Transport::Udp => {
            request.extensions().as_ref().map_or(UDP_MAX, |e| usize::from(e.max_payload()).clamp(UDP_MAX, EDNS_MAX))
        }
    };
    let mut bytes = reply.to_vec().ok();
    if bytes.as_ref().is_some_and(|b| b.len() > limit) {
        bytes = reply.truncate().to_vec().ok();
    }
    (outcome, bytes)
}

/// The records answering `question`, looked up in `dirs`; a rotating
/// name's start where the query's id (random per query) says, so that
/// clients taking the first answer spread over all of them.
fn resolve(question: &Query, dirs: &[&Directory], id: u16) -> (Outcome, Vec<Record>) {
    let qname = question.name().clone();
    let mut text = qname.to_lowercase().to_ascii();
    if text.ends_with('.') {
        text.pop();
    }
    if question.query_type() == RecordType::PTR {
        let Some(ip) = qname.parse_arpa_name().ok().filter(|net| net.prefix_len() == net.max_prefix_len()) else {
            return (Outcome::NxDomain, Vec::new());
        };
        let Some(target) = dirs.iter().find_map(|d| d.reverse.get(&ip.addr())) else {
            return (Outcome::NxDomain, Vec::new());
        };
        let Ok(target) = Name::from_ascii(format!("{target}.")) else { return (Outcome::NxDomain, Vec::new()) };
        return (Outcome::Answered, vec![Record::from_rdata(qname, TTL, RData::PTR(PTR(target)))]);
    }
    let mut found = false;
    let mut records = Vec::new();
    for ip in dirs.iter().filter_map(|d| d.forward.get(&text)).flatten() {
        found = true;
        let rdata = match (ip, question.query_type()) {
            (IpAddr::V4(v4), RecordType::A | RecordType::ANY) => RData::A(A(*v4)),
            (IpAddr::V6(v6), RecordType::AAAA | RecordType::ANY) => RData::AAAA(AAAA(*v6)),
            _ => continue,
        };
        let record = Record::from_rdata(qname.clone(), TTL, rdata);
        if !records.contains(&record) {
            records.push(record);
        }
    }
    if dirs.iter().any(|d| d.rotating.contains(&text)) && !records.is_empty() {
        let by = usize::from(id) % records.len();
        records.rotate_left(by);
    }
    if found { (Outcome::Answered, records) } else { (Outcome::NxDomain, Vec::new()) }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    fn dirs() -> (Directory, Directory) {
        let mut public = Directory::default();
        public.add("flask-app", "public-net-1", "10.1.0.3".parse().unwrap());
        public.add("nginx", "public-net-1", "10.1.0.2".parse().unwrap());
        let mut private = Directory::default();
        private.add("flask-app", "private-net-1", "10.2.0.3".parse().unwrap());
        private.add("mongo", "private-net-1", "10.2.0.2".parse().unwrap());
        private.add("mongo", "private-net-1", "fd00::2".parse().unwrap());
        (public, private)
    }

    fn query(name: &str, rtype: RecordType) -> Vec<u8> {
        let mut m = Message::new();
        m.set_id(0x1234).set_recursion_desired(true).add_query(Query::query(Name::from_str(name).unwrap(), rtype));
        m.to_vec().unwrap()
    }

    fn parse(reply: Option<Vec<u8>>) -> Message {
        Message::from_vec(&reply.expect("an answer")).unwrap()
    }

    #[test]
    fn names_on_the_askers_networks_resolve() {
        let (public, private) = dirs();
        let (outcome, reply) = answer(&query("mongo.", RecordType::A), &[&public, &private], Transport::Udp);
        assert_eq!(outcome, Outcome::Answered);
        let m = parse(reply);
        assert_eq!(m.id(), 0x1234);
        assert_eq!(m.response_code(), ResponseCode::NoError);
        assert!(m.authoritative());
        let ips: Vec<String> = m.answers().iter().map(|r| r.data().to_string()).collect();
        assert_eq!(ips, ["10.2.0.2"]);

        let m = parse(answer(&query("MONGO.private-net-1", RecordType::AAAA), &[&private], Transport::Udp).1);
        assert_eq!(m.answers().iter().map(|r| r.data().to_string()).collect::<Vec<_>>(), ["fd00::2"]);
    }

    #[test]
    fn names_on_other_networks_and_unknown_names_are_nxdomain() {
        let (public, _) = dirs();
        for name in ["mongo", "mongo.private-net-1", "example.com"] {
            let (outcome, reply) = answer(&query(name, RecordType::A), &[&public], Transport::Udp);
            assert_eq!(outcome, Outcome::NxDomain, "{name}");
            assert_eq!(parse(reply).response_code(), ResponseCode::NXDomain);
        }
    }

    #[test]
    fn a_name_without_records_of_the_type_is_nodata() {
        let (public, _) = dirs();
        let (outcome, reply) = answer(&query("nginx", RecordType::AAAA), &[&public], Transport::Udp);
        assert_eq!(outcome, Outcome::Answered);
        let m = parse(reply);
        assert_eq!(m.response_code(), ResponseCode::NoError);
        assert!(m.answers().is_empty());
    }

    #[test]
    fn reverse_lookups() {
        let (public, private) = dirs();
        let m =
            parse(answer(&query("2.0.2.10.in-addr.arpa.", RecordType::PTR), &[&public, &private], Transport::Udp).1);
        assert_eq!(m.answers()[0].data().to_string(), "mongo.private-net-1.");
        let (outcome, _) = answer(&query("2.0.2.10.in-addr.arpa.", RecordType::PTR), &[&public], Transport::Udp);
        assert_eq!(outcome, Outcome::NxDomain, "not on the asker's networks");
    }

    #[test]
    fn bad_queries() {
        let (public, _) = dirs();
        // Garbage with a query header: FORMERR with its id.
        let mut junk = vec![0xab, 0xcd, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0];
        junk.extend_from_slice(&[0x3f; 40]);
        let (outcome, reply) = answer(&junk, &[&public], Transport::Udp);
        assert_eq!(outcome, Outcome::Refused);
        let m = parse(reply);
        assert_eq!((m.id(), m.response_code()), (0xabcd, ResponseCode::FormErr));
        // Too short for a header, or a response: never answered.
        assert_eq!(answer(&[1, 2, 3], &[&public], Transport::Udp), (Outcome::Dropped, None));
        let mut response = Message::from_vec(&query("nginx", RecordType::A)).unwrap();
        response.set_message_type(MessageType::Response);
        assert_eq!(answer(&response.to_vec().unwrap(), &[&public], Transport::Udp), (Outcome::Dropped, None));
        // Many questions: FORMERR.
        let mut many = Message::new();
        for i in 0..50 {
            many.add_query(Query::query(Name::from_str(&format!("n{i}")).unwrap(), RecordType::A));
        }
        let m = parse(answer(&many.to_vec().unwrap(), &[&public], Transport::Udp).1);
        assert_eq!(m.response_code(), ResponseCode::FormErr);
        // Another class: REFUSED.
        let mut chaos = Message::from_vec(&query("nginx", RecordType::A)).unwrap();
        chaos.queries_mut()[0].set_query_class(DNSClass::CH);
        assert_eq!(
            parse(answer(&chaos.to_vec().unwrap(), &[&public], Transport::Udp).1).response_code(),
            ResponseCode::Refused
        );
        // A huge name (255 bytes) parses and is simply unknown.
        let label = "a".repeat(63);
        let huge = format!("{label}.{label}.{label}.{}", "b".repeat(61));
        assert_eq!(answer(&query(&huge, RecordType::A), &[&public], Transport::Udp).0, Outcome::NxDomain);
    }

    #[test]
    fn large_answers_are_truncated() {
        let mut big = Directory::default();
        for i in 0..100u8 {
            big.add(&format!("c{i}"), "n", IpAddr::from([10, 0, 0, i]));
            big.add("many", "n", IpAddr::from([10, 0, 1, i]));
        }
        let m = parse(answer(&query("many", RecordType::A), &[&big], Transport::Udp).1);
        assert!(m.truncated());
        assert_eq!(m.answers().len(), 0);
        let m = parse(answer(&query("many", RecordType::A), &[&big], Transport::Tcp).1);
        assert!(!m.truncated());
        assert_eq!(m.answers().len(), 100, "TCP carries them all");
    }

    #[test]
    fn a_service_answers_in_place_of_a_container_and_dnsrr_rotates() {
        let mut d = Directory::default();
        d.add("web", "front", "10.0.0.9".parse().unwrap());
        let backends: Vec<IpAddr> =
            ["10.0.0.21", "10.0.0.22", "10.0.0.23"].iter().map(|a| a.parse().unwrap()).collect();
        d.add_service("web", "front", backends.clone(), true);
        d.add_service("tasks.web", "front", backends.clone(), true);
        d.add_service("api", "front", vec!["10.0.0.200".parse().unwrap()], false);
        let first = |name: &str, id: u16| {
            let mut m = Message::new();
            m.set_id(id).add_query(Query::query(Name::from_str(name).unwrap(), RecordType::A));
            let reply = parse(answer(&m.to_vec().unwrap(), &[&d], Transport::Udp).1);
            let ips: Vec<String> = reply.answers().iter().map(|r| r.data().to_string()).collect();
            assert_eq!(ips.len(), if name.starts_with("api") { 1 } else { 3 }, "{name}: {ips:?}");
            ips[0].clone()
        };
        let firsts: std::collections::BTreeSet<String> = (0..3).map(|id| first("web", id)).collect();
        assert_eq!(firsts.len(), 3, "each backend first in turn");
        assert_eq!(first("tasks.web.front", 1), "10.0.0.22");
        assert_eq!(first("api", 1), first("api.front", 2), "a VIP does not rotate");
        assert_eq!(first("api", 1), "10.0.0.200");
        // The VIP's name is its service's; a backend's stays its container's.
        assert_eq!(d.reverse[&"10.0.0.200".parse::<IpAddr>().unwrap()], "api.front");
        assert!(!d.reverse.contains_key(&"10.0.0.21".parse::<IpAddr>().unwrap()));
    }
}
