//! The DHCPv6 server (RFC 8415) on a dual-stack network's gateway, for
//! containers configured by a DHCPv6 client (`dhclient -6`) rather than,
//! or besides, SLAAC: the router advertisement's managed flag says it is
//! there.
//!
//! As with IPv4 there is no pool: the address belongs to the endpoint. It
//! is the one SLAAC gives the same interface (the network's /64 and the
//! endpoint's MAC, modified EUI-64), so a container has one IPv6 address
//! however it is configured, unique wherever its MAC is (switchd gives
//! every endpoint its own), and already known to the guard, to neighbour
//! discovery, to DNS and to policy on every host. A client whose MAC is not
//! the endpoint's gets nothing. Sans-IO: [`respond`] takes the UDP payload
//! and returns the reply's; messages are read and written by dhcproto.

use std::net::Ipv6Addr;

use dhcproto::v6::{self, DhcpOption, IAAddr, IANA, MessageType, Status, StatusCode};
use dhcproto::{Decodable, Encodable};
use switchd_config::MacAddr;

pub const SERVER_PORT: u16 = 547;
pub const CLIENT_PORT: u16 = 546;
/// All DHCP relay agents and servers (RFC 8415 7.1), where clients send.
pub const ALL_SERVERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 1, 2);
/// Preferred and valid lifetime of an address. It never changes while the
/// endpoint exists; renewals only confirm it.
pub const LEASE_SECS: u32 = 3600;
/// Identity associations answered in one message (a client asks for one
/// per interface; more is a client lying to make replies large).
const MAX_IAS: usize = 4;

/// What the server says, whoever asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Server {
    /// The gateway's MAC: the server's DUID (DUID-LL, RFC 8415 11.4).
    pub mac: MacAddr,
    /// The DNS server to give (the gateway's IPv6 address), if it serves DNS.
    pub dns: Option<Ipv6Addr>,
}

impl Server {
    fn duid(&self) -> Vec<u8> {
        let mut duid = vec![0, 3, 0, 1];
        duid.extend_from_slice(&self.mac.0);
        duid
    }
}

/// The address of the endpoint that asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// The endpoint's MAC: the only client answered.
    pub mac: MacAddr,
    pub addr: Ipv6Addr,
}

/// What became of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Answered: the reply's UDP payload, to the client's address and port.
    Reply { payload: Vec<u8>, kind: MessageType },
    /// Not for us to answer: another server's, or a kind servers ignore.
    Ignored,
    /// A client with no lease here (its MAC is not the endpoint's).
    UnknownClient,
    /// Not a DHCPv6 client message we can read.
    Malformed,
}

/// Option codes this server reads, and the lengths each may have.
const CLIENT_ID: u16 = 1;
const SERVER_ID: u16 = 2;
const IA_NA: u16 = 3;
const IA_ADDR: u16 = 5;
const RAPID_COMMIT: u16 = 14;
/// A DUID: at most 128 bytes of identifier after its 2-byte type (RFC 8415 11.1).
const DUID_LENS: std::ops::RangeInclusive<usize> = 3..=130;

/// The message with only the options this server reads, each of a length
/// it may have (an IA_NA keeps only its addresses, without their own
/// options); `None` if the options do not even parse as TLVs. dhcproto's
/// decoder then never meets a length it could underflow on (fuzzing
/// found `len - 2` in its status code, and the like elsewhere).
fn sanitize(payload: &[u8]) -> Option<Vec<u8>> {
    let mut out = payload.get(..4)?.to_vec();
    for (code, body) in tlvs(&payload[4..])? {
        match code {
            CLIENT_ID | SERVER_ID if DUID_LENS.contains(&body.len()) => push(&mut out, code, body),
            RAPID_COMMIT if body.is_empty() => push(&mut out, code, body),
            IA_NA if body.len() >= 12 => {
                let mut ia = body[..12].to_vec();
                for (inner, addr) in tlvs(&body[12..])? {
                    if inner == IA_ADDR && addr.len() >= 24 {
                        push(&mut ia, IA_ADDR, &addr[..24]);
                    }
                }
                push(&mut out, IA_NA, &ia);
            }
            _ => {}
        }
    }
    Some(out)
}

/// The options of `bytes` as (code, body); `None` if one overruns.
fn tlvs(mut bytes: &[u8]) -> Option<Vec<(u16, &[u8])>> {
    let mut all = Vec::new();
    while !bytes.is_empty() {
        let code = u16::from_be_bytes([*bytes.first()?, *bytes.get(1)?]);
        let len = usize::from(u16::from_be_bytes([*bytes.get(2)?, *bytes.get(3)?]));
        all.push((code, bytes.get(4..4 + len)?));
        bytes = &bytes[4 + len..];
    }
    Some(all)
}

fn push(out: &mut Vec<u8>, code: u16, body: &[u8]) {
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(body);
}

/// The reply to a client's message `payload` (a UDP payload) from MAC
/// `asker`, for the endpoint's `lease` (none when the port has no IPv6
/// address to give).
pub fn respond(payload: &[u8], asker: MacAddr, server: &Server, lease: Option<&Lease>) -> Outcome {
    let Some(clean) = sanitize(payload) else { return Outcome::Malformed };
    let Ok(request) = v6::Message::decode(&mut dhcproto::Decoder::new(&clean)) else { return Outcome::Malformed };
    let opts = request.opts();
    let Some(DhcpOption::ClientId(client)) = opts.get(v6::OptionCode::ClientId) else {
        // Every client message but an information request names its client.
        if request.msg_type() != MessageType::InformationRequest {
            return Outcome::Malformed;
        }
        return reply(&request, MessageType::Reply, server, None, Vec::new());
    };
    let client = client.clone();
    let to_us = match opts.get(v6::OptionCode::ServerId) {
        Some(DhcpOption::ServerId(id)) => *id == server.duid(),
        _ => false,
    };
    let named = matches!(opts.get(v6::OptionCode::ServerId), Some(DhcpOption::ServerId(_)));
    // RFC 8415 16: a solicit, confirm or rebind names no server; a request,
    // renew, release or decline names this one, or is another server's.
    let kind = request.msg_type();
    match kind {
        MessageType::Solicit | MessageType::Confirm | MessageType::Rebind if named => return Outcome::Malformed,
        MessageType::Request | MessageType::Renew | MessageType::Release | MessageType::Decline if !to_us => {
            return Outcome::Ignored;
        }
        MessageType::InformationRequest if named && !to_us => return Outcome::Ignored,
        _ => {}
    }
    let lease = lease.filter(|l| l.mac == asker);
    let ias: Vec<&IANA> = opts
        .iter()
        .filter_map(|o| match o {
            DhcpOption::IANA(ia) => Some(ia),
            _ => None,
        })
        .take(MAX_IAS)
        .collect();
    match kind {
        MessageType::InformationRequest => reply(&request, MessageType::Reply, server, Some(client), Vec::new()),
        MessageType::Solicit | MessageType::Request | MessageType::Renew | MessageType::Rebind => {
            let Some(lease) = lease else { return Outcome::UnknownClient };
            let given = ias.iter().map(|ia| DhcpOption::IANA(given(ia.id, lease.addr))).collect();
            // Rapid commit (RFC 8415 18.3.1): the reply at once.
            let rapid = opts.get(v6::OptionCode::RapidCommit).is_some();
            let kind = if kind == MessageType::Solicit && !rapid { MessageType::Advertise } else { MessageType::Reply };
            let mut extra: Vec<DhcpOption> = given;
            if kind == MessageType::Reply && request.msg_type() == MessageType::Solicit {
                extra.push(DhcpOption::RapidCommit);
            }
            reply(&request, kind, server, Some(client), extra)
        }
        // Whether the addresses it holds are still right here (RFC 8415 18.3.3).
        MessageType::Confirm => {
            let Some(lease) = lease else { return Outcome::UnknownClient };
            let held = ias.iter().flat_map(|ia| ia.opts.iter()).filter_map(|o| match o {
                DhcpOption::IAAddr(a) => Some(a.addr),
                _ => None,
            });
            let status = if held.into_iter().all(|a| a == lease.addr) { Status::Success } else { Status::NotOnLink };
            let code = DhcpOption::StatusCode(StatusCode { status, msg: String::new() });
            reply(&request, MessageType::Reply, server, Some(client), vec![code])
        }
        // The address stays the endpoint's: acknowledged, nothing changes.
        MessageType::Release | MessageType::Decline => {
            if lease.is_none() {
                return Outcome::UnknownClient;
            }
            let code = DhcpOption::StatusCode(StatusCode { status: Status::Success, msg: String::new() });
            reply(&request, MessageType::Reply, server, Some(client), vec![code])
        }
        _ => Outcome::Ignored,
    }
}

/// An identity association holding the endpoint's address.
fn given(id: u32, addr: Ipv6Addr) -> IANA {
    let mut opts = v6::DhcpOptions::new();
    opts.insert(DhcpOption::IAAddr(IAAddr {
        addr,
        preferred_life: LEASE_SECS,
        valid_life: LEASE_SECS,
        opts: v6::DhcpOptions::new(),
    }));
    IANA { id, t1: LEASE_SECS / 2, t2: LEASE_SECS / 5 * 4, opts }
}

fn reply(
    request: &v6::Message,
    kind: MessageType,
    server: &Server,
    client: Option<Vec<u8>>,
    extra: Vec<DhcpOption>,
) -> Outcome {
    let mut msg = v6::Message::new_with_id(kind, request.xid());
    let opts = msg.opts_mut();
    opts.insert(DhcpOption::ServerId(server.duid()));
    if let Some(client) = client {
        opts.insert(DhcpOption::ClientId(client));
    }
    if let Some(dns) = server.dns {
        opts.insert(DhcpOption::DomainNameServers(vec![dns]));
    }
    for o in extra {
        opts.insert(o);
    }
    match msg.to_vec() {
        Ok(payload) => Outcome::Reply { payload, kind },
        Err(_) => Outcome::Malformed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT: MacAddr = MacAddr([2, 0x42, 10, 0, 0, 5]);
    const GW: MacAddr = MacAddr([2, 0x5d, 0x67, 0, 1, 0x90]);

    fn server() -> Server {
        Server { mac: GW, dns: Some("fd00:10::1".parse().unwrap()) }
    }

    fn lease() -> Lease {
        Lease { mac: CLIENT, addr: "fd00:10::42:aff:fe00:5".parse().unwrap() }
    }

    /// A client message as dhclient -6 sends it: its DUID, one IA_NA.
    fn ask(kind: MessageType, server_id: Option<Vec<u8>>, extra: Vec<DhcpOption>) -> Vec<u8> {
        let mut msg = v6::Message::new_with_id(kind, [1, 2, 3]);
        let opts = msg.opts_mut();
        opts.insert(DhcpOption::ClientId(vec![0, 1, 0, 1, 9, 9, 9, 9, 2, 0x42, 10, 0, 0, 5]));
        if let Some(id) = server_id {
            opts.insert(DhcpOption::ServerId(id));
        }
        opts.insert(DhcpOption::IANA(IANA { id: 77, t1: 0, t2: 0, opts: v6::DhcpOptions::new() }));
        for o in extra {
            opts.insert(o);
        }
        msg.to_vec().unwrap()
    }

    fn answered(outcome: Outcome) -> (MessageType, v6::Message) {
        let Outcome::Reply { payload, kind } = outcome else { panic!("no reply: {outcome:?}") };
        (kind, v6::Message::decode(&mut dhcproto::Decoder::new(&payload)).unwrap())
    }

    fn address_in(msg: &v6::Message) -> Option<(u32, Ipv6Addr, u32)> {
        let Some(DhcpOption::IANA(ia)) = msg.opts().get(v6::OptionCode::IANA) else { return None };
        let Some(DhcpOption::IAAddr(a)) = ia.opts.get(v6::OptionCode::IAAddr) else { return None };
        Some((ia.id, a.addr, a.valid_life))
    }

    #[test]
    fn a_solicit_is_advertised_the_endpoints_address_and_a_request_gets_it() {
        let (kind, adv) =
            answered(respond(&ask(MessageType::Solicit, None, vec![]), CLIENT, &server(), Some(&lease())));
        assert_eq!((kind, adv.xid()), (MessageType::Advertise, [1, 2, 3]));
        assert_eq!(address_in(&adv), Some((77, lease().addr, LEASE_SECS)), "its IAID, the endpoint's address");
        let Some(DhcpOption::ServerId(id)) = adv.opts().get(v6::OptionCode::ServerId) else { panic!("no server id") };
        assert_eq!(id, &server().duid());
        assert!(matches!(adv.opts().get(v6::OptionCode::ClientId), Some(DhcpOption::ClientId(_))), "echoed");
        let Some(DhcpOption::DomainNameServers(dns)) = adv.opts().get(v6::OptionCode::DomainNameServers) else {
            panic!("no DNS")
        };
        assert_eq!(dns, &vec!["fd00:10::1".parse::<Ipv6Addr>().unwrap()]);

        let request = ask(MessageType::Request, Some(server().duid()), vec![]);
        let (kind, reply) = answered(respond(&request, CLIENT, &server(), Some(&lease())));
        assert_eq!(kind, MessageType::Reply);
        assert_eq!(address_in(&reply), Some((77, lease().addr, LEASE_SECS)));
        let renew = ask(MessageType::Renew, Some(server().duid()), vec![]);
        let (kind, renewed) = answered(respond(&renew, CLIENT, &server(), Some(&lease())));
        assert_eq!((kind, address_in(&renewed).map(|a| a.1)), (MessageType::Reply, Some(lease().addr)));
        let (_, rebound) =
            answered(respond(&ask(MessageType::Rebind, None, vec![]), CLIENT, &server(), Some(&lease())));
        assert_eq!(address_in(&rebound).map(|a| a.1), Some(lease().addr));
        // Rapid commit: the reply at once, saying so.
        let rapid = ask(MessageType::Solicit, None, vec![DhcpOption::RapidCommit]);
        let (kind, reply) = answered(respond(&rapid, CLIENT, &server(), Some(&lease())));
        assert_eq!(kind, MessageType::Reply);
        assert!(reply.opts().get(v6::OptionCode::RapidCommit).is_some());
    }

    #[test]
    fn strangers_other_servers_and_junk_get_nothing() {
        let s = server();
        let solicit = ask(MessageType::Solicit, None, vec![]);
        assert_eq!(respond(&solicit, MacAddr([2, 0, 0, 0, 0, 9]), &s, Some(&lease())), Outcome::UnknownClient);
        assert_eq!(respond(&solicit, CLIENT, &s, None), Outcome::UnknownClient, "no address to give");
        let release = ask(MessageType::Release, Some(s.duid()), vec![]);
        assert_eq!(respond(&release, MacAddr([2, 0, 0, 0, 0, 9]), &s, Some(&lease())), Outcome::UnknownClient);
        let theirs = ask(MessageType::Request, Some(vec![0, 3, 0, 1, 1, 2, 3, 4, 5, 6]), vec![]);
        assert_eq!(respond(&theirs, CLIENT, &s, Some(&lease())), Outcome::Ignored, "another server's");
        let named = ask(MessageType::Solicit, Some(s.duid()), vec![]);
        assert_eq!(respond(&named, CLIENT, &s, Some(&lease())), Outcome::Malformed, "a solicit names no server");
        let advertise = ask(MessageType::Advertise, None, vec![]);
        assert_eq!(respond(&advertise, CLIENT, &s, Some(&lease())), Outcome::Ignored, "a server's message");
        assert_eq!(respond(&[], CLIENT, &s, Some(&lease())), Outcome::Malformed);
        assert_eq!(respond(&[1, 0, 0, 0, 0, 1, 0xff, 0xff], CLIENT, &s, Some(&lease())), Outcome::Malformed);
        let mut nameless = v6::Message::new_with_id(MessageType::Request, [0; 3]);
        nameless.opts_mut().insert(DhcpOption::ServerId(s.duid()));
        assert_eq!(respond(&nameless.to_vec().unwrap(), CLIENT, &s, Some(&lease())), Outcome::Malformed);
        // Found by fuzzing: a status code shorter than its own status
        // (dhcproto subtracted past zero). Dropped before decoding, at the
        // top level and inside an address of an IA_NA: the request is
        // answered as if it were not there.
        let short_status = [0, 13, 0, 0];
        let mut held = vec![0, 0, 0, 77, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0, 28];
        held.extend_from_slice(&lease().addr.octets());
        held.extend_from_slice(&[0; 8]);
        held.extend_from_slice(&short_status);
        let mut request = ask(MessageType::Request, Some(s.duid()), vec![]);
        request.extend_from_slice(&short_status);
        request.extend_from_slice(&[0, 3, 0, held.len() as u8]);
        request.extend_from_slice(&held);
        let (kind, reply) = answered(respond(&request, CLIENT, &s, Some(&lease())));
        assert_eq!((kind, address_in(&reply).map(|a| a.1)), (MessageType::Reply, Some(lease().addr)));
        let mut overrun = ask(MessageType::Solicit, None, vec![]);
        overrun.extend_from_slice(&[0, 99, 0, 10, 1]);
        assert_eq!(respond(&overrun, CLIENT, &s, Some(&lease())), Outcome::Malformed, "an option past the end");
    }

    #[test]
    fn confirm_release_and_information_requests() {
        let s = server();
        let holding = |addr: Ipv6Addr| {
            let mut opts = v6::DhcpOptions::new();
            opts.insert(DhcpOption::IAAddr(IAAddr {
                addr,
                preferred_life: 0,
                valid_life: 0,
                opts: Default::default(),
            }));
            DhcpOption::IANA(IANA { id: 78, t1: 0, t2: 0, opts })
        };
        let status = |m: &v6::Message| match m.opts().get(v6::OptionCode::StatusCode) {
            Some(DhcpOption::StatusCode(c)) => Some(c.status),
            _ => None,
        };
        let mine = ask(MessageType::Confirm, None, vec![holding(lease().addr)]);
        assert_eq!(status(&answered(respond(&mine, CLIENT, &s, Some(&lease()))).1), Some(Status::Success));
        let elsewhere = ask(MessageType::Confirm, None, vec![holding("fd00:99::5".parse().unwrap())]);
        assert_eq!(status(&answered(respond(&elsewhere, CLIENT, &s, Some(&lease()))).1), Some(Status::NotOnLink));
        let release = ask(MessageType::Release, Some(s.duid()), vec![]);
        assert_eq!(status(&answered(respond(&release, CLIENT, &s, Some(&lease()))).1), Some(Status::Success));
        // An information request needs no address: DNS for anyone.
        let info = v6::Message::new_with_id(MessageType::InformationRequest, [4, 5, 6]).to_vec().unwrap();
        let (kind, reply) = answered(respond(&info, MacAddr([2, 0, 0, 0, 0, 9]), &s, None));
        assert_eq!(kind, MessageType::Reply);
        assert!(reply.opts().get(v6::OptionCode::DomainNameServers).is_some());
        assert_eq!(address_in(&reply), None);
    }
}
