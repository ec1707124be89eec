//! The DHCP server on every network's gateway: a container whose interface
//! is unconfigured gets the address IPAM gave its endpoint, with prefix,
//! router, DNS server, MTU and routes.
//!
//! There is no pool here: the address belongs to the endpoint from the
//! moment it is connected (and is saved with it), so DHCP only tells the
//! container what it already has, on every host alike. A request from a MAC
//! that is not the endpoint's is not answered. Sans-IO: [`respond`] takes
//! the UDP payload and returns the reply's; messages are read and written by
//! dhcproto.

use std::net::Ipv4Addr;

use dhcproto::v4::{self, DhcpOption, DhcpOptions, MessageType, Opcode};
use dhcproto::{Decodable, Encodable};
use ipnet::Ipv4Net;
use switchd_config::MacAddr;

pub const SERVER_PORT: u16 = 67;
pub const CLIENT_PORT: u16 = 68;
/// How long a lease lasts. The address never changes while the endpoint
/// exists; renewals only confirm it.
pub const LEASE_SECS: u32 = 3600;

/// What a container is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The endpoint's MAC: the only client answered.
    pub mac: MacAddr,
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    /// The server identifier: the network's gateway address.
    pub server: Ipv4Addr,
    /// The default router; `None` on an internal network.
    pub router: Option<Ipv4Addr>,
    pub dns: Option<Ipv4Addr>,
    pub mtu: u16,
    /// Routes to other networks through the gateway (option 121).
    pub routes: Vec<Ipv4Net>,
    /// The container's name (option 12).
    pub hostname: String,
}

/// What became of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Answered: the reply's UDP payload, and where it goes.
    Reply { payload: Vec<u8>, kind: MessageType, to: Destination },
    /// Not for us to answer: a release, a decline, a request for another
    /// server's offer. Counted, not an error.
    Ignored(MessageType),
    /// From a MAC that is not the endpoint's (or no lease at all).
    UnknownClient,
    /// Not a DHCP request we can read.
    Malformed,
}

/// Where a reply goes at the IP layer; at Ethernet it always goes to the
/// client's MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// 255.255.255.255: the client has no address yet, or asked for broadcast.
    Broadcast,
    Unicast(Ipv4Addr),
}

/// The fixed part of a message (RFC 2131: op to file), then the magic cookie.
const FIXED_LEN: usize = 236;
const MAGIC: [u8; 4] = [99, 130, 83, 99];
/// The options this server reads, and the lengths they may have: message
/// type, requested address, server identifier, client identifier,
/// parameter list, host name.
const OPTIONS_READ: &[(u8, std::ops::RangeInclusive<usize>)] =
    &[(53, 1..=1), (50, 4..=4), (54, 4..=4), (61, 2..=255), (55, 1..=255), (12, 1..=255)];

/// The message with only the options this server reads, each of a length
/// it may have; `None` if the options do not even parse as TLVs. The
/// decoder then never meets an option it could choke on (dhcproto asserts
/// on some lengths), and options cannot overload `sname`/`file` (option
/// 52 is dropped).
fn sanitize(payload: &[u8]) -> Option<Vec<u8>> {
    if payload.get(FIXED_LEN..FIXED_LEN + 4) != Some(&MAGIC[..]) {
        return None;
    }
    let mut out = payload[..FIXED_LEN + 4].to_vec();
    let mut rest = &payload[FIXED_LEN + 4..];
    loop {
        match rest {
            [] | [255, ..] => break,
            [0, tail @ ..] => rest = tail,
            [code, len, tail @ ..] if usize::from(*len) <= tail.len() => {
                let (body, tail) = tail.split_at(usize::from(*len));
                if OPTIONS_READ.iter().any(|(c, lens)| c == code && lens.contains(&body.len())) {
                    out.extend_from_slice(&[*code, *len]);
                    out.extend_from_slice(body);
                }
                rest = tail;
            }
            _ => return None,
        }
    }
    out.push(255);
    Some(out)
}

/// Answers one message (the payload of a UDP datagram to port 67) that
/// arrived from the port whose endpoint holds `lease`.
pub fn respond(payload: &[u8], lease: Option<&Lease>) -> Outcome {
    let Some(clean) = sanitize(payload) else { return Outcome::Malformed };
    let Ok(request) = v4::Message::from_bytes(&clean) else { return Outcome::Malformed };
    if request.opcode() != Opcode::BootRequest || request.hlen() != 6 {
        return Outcome::Malformed;
    }
    let Some(kind) = request.opts().msg_type() else { return Outcome::Malformed };
    let Some(lease) = lease.filter(|l| request.chaddr()[..6] == l.mac.0) else { return Outcome::UnknownClient };
    let server_id = request.opts().get(v4::OptionCode::ServerIdentifier);
    let for_another_server = matches!(server_id, Some(DhcpOption::ServerIdentifier(id)) if *id != lease.server);
    let requested = match request.opts().get(v4::OptionCode::RequestedIpAddress) {
        Some(DhcpOption::RequestedIpAddress(ip)) => Some(*ip),
        _ => None,
    };
    let reply_kind = match kind {
        MessageType::Discover => MessageType::Offer,
        MessageType::Request if for_another_server => return Outcome::Ignored(kind),
        MessageType::Request => {
            let asked = requested.unwrap_or(request.ciaddr());
            if asked == lease.ip { MessageType::Ack } else { MessageType::Nak }
        }
        MessageType::Inform => MessageType::Ack,
        other => return Outcome::Ignored(other),
    };

    let mut reply = v4::Message::new_with_id(
        request.xid(),
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        request.giaddr(),
        &request.chaddr()[..6],
    );
    reply.set_opcode(Opcode::BootReply).set_flags(request.flags()).set_secs(0);
    let mut opts = DhcpOptions::new();
    opts.insert(DhcpOption::MessageType(reply_kind));
    opts.insert(DhcpOption::ServerIdentifier(lease.server));
    if reply_kind != MessageType::Nak {
        if kind != MessageType::Inform {
            reply.set_yiaddr(lease.ip);
            opts.insert(DhcpOption::AddressLeaseTime(LEASE_SECS));
            opts.insert(DhcpOption::Renewal(LEASE_SECS / 2));
            opts.insert(DhcpOption::Rebinding(LEASE_SECS / 8 * 7));
        } else {
            reply.set_ciaddr(request.ciaddr());
        }
        let mask = Ipv4Net::new(lease.ip, lease.prefix_len).map(|n| n.netmask()).unwrap_or(Ipv4Addr::BROADCAST);
        opts.insert(DhcpOption::SubnetMask(mask));
        if let Some(router) = lease.router {
            opts.insert(DhcpOption::Router(vec![router]));
        }
        if let Some(dns) = lease.dns {
            opts.insert(DhcpOption::DomainNameServer(vec![dns]));
        }
        opts.insert(DhcpOption::InterfaceMtu(lease.mtu));
        if !lease.routes.is_empty() {
            // RFC 3442: a client that gets option 121 ignores option 3, so
            // the default route goes in here too.
            let mut routes: Vec<(Ipv4Net, Ipv4Addr)> = lease.routes.iter().map(|r| (*r, lease.server)).collect();
            if let Some(router) = lease.router {
                routes.push((Ipv4Net::default(), router));
            }
            opts.insert(DhcpOption::ClasslessStaticRoute(routes));
        }
        if !lease.hostname.is_empty() {
            opts.insert(DhcpOption::Hostname(lease.hostname.clone()));
        }
    }
    reply.set_opts(opts);
    let to = match (request.ciaddr(), request.flags().broadcast(), reply_kind) {
        (_, _, MessageType::Nak) => Destination::Broadcast,
        (ci, false, _) if !ci.is_unspecified() => Destination::Unicast(ci),
        _ => Destination::Broadcast,
    };
    match reply.to_vec() {
        Ok(payload) => Outcome::Reply { payload, kind: reply_kind, to },
        Err(_) => Outcome::Malformed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 9]);

    fn lease() -> Lease {
        Lease {
            mac: MAC,
            ip: "10.1.0.9".parse().unwrap(),
            prefix_len: 24,
            server: "10.1.0.1".parse().unwrap(),
            router: None,
            dns: Some("10.1.0.1".parse().unwrap()),
            mtu: 1450,
            routes: vec!["10.2.0.0/24".parse().unwrap()],
            hostname: "web".into(),
        }
    }

    fn request(kind: MessageType, mac: MacAddr, requested: Option<Ipv4Addr>) -> Vec<u8> {
        let un = Ipv4Addr::UNSPECIFIED;
        let mut m = v4::Message::new_with_id(0xdead_beef, un, un, un, un, &mac.0);
        m.opts_mut().insert(DhcpOption::MessageType(kind));
        if let Some(ip) = requested {
            m.opts_mut().insert(DhcpOption::RequestedIpAddress(ip));
        }
        m.to_vec().unwrap()
    }

    fn reply(outcome: Outcome) -> (v4::Message, MessageType, Destination) {
        let Outcome::Reply { payload, kind, to } = outcome else { panic!("no reply: {outcome:?}") };
        (v4::Message::from_bytes(&payload).unwrap(), kind, to)
    }

    #[test]
    fn discover_gets_an_offer_with_everything() {
        let (m, kind, to) = reply(respond(&request(MessageType::Discover, MAC, None), Some(&lease())));
        assert_eq!((kind, to), (MessageType::Offer, Destination::Broadcast));
        assert_eq!(m.xid(), 0xdead_beef);
        assert_eq!(m.opcode(), Opcode::BootReply);
        assert_eq!(m.yiaddr(), lease().ip);
        assert_eq!(&m.chaddr()[..6], &MAC.0);
        let o = m.opts();
        assert_eq!(o.get(v4::OptionCode::SubnetMask), Some(&DhcpOption::SubnetMask([255, 255, 255, 0].into())));
        assert_eq!(o.get(v4::OptionCode::ServerIdentifier), Some(&DhcpOption::ServerIdentifier(lease().server)));
        assert_eq!(o.get(v4::OptionCode::InterfaceMtu), Some(&DhcpOption::InterfaceMtu(1450)));
        assert_eq!(o.get(v4::OptionCode::Router), None, "internal network: no default router");
        assert_eq!(
            o.get(v4::OptionCode::ClasslessStaticRoute),
            Some(&DhcpOption::ClasslessStaticRoute(vec![("10.2.0.0/24".parse().unwrap(), lease().server)]))
        );
        assert_eq!(o.get(v4::OptionCode::Hostname), Some(&DhcpOption::Hostname("web".into())));
    }

    #[test]
    fn request_for_the_lease_is_acked_and_any_other_naked() {
        let (m, kind, _) = reply(respond(&request(MessageType::Request, MAC, Some(lease().ip)), Some(&lease())));
        assert_eq!(kind, MessageType::Ack);
        assert_eq!(m.yiaddr(), lease().ip);
        let (m, kind, to) =
            reply(respond(&request(MessageType::Request, MAC, Some("10.1.0.77".parse().unwrap())), Some(&lease())));
        assert_eq!((kind, to), (MessageType::Nak, Destination::Broadcast));
        assert_eq!(m.yiaddr(), Ipv4Addr::UNSPECIFIED);
    }

    #[test]
    fn renewal_goes_unicast() {
        let un = Ipv4Addr::UNSPECIFIED;
        let mut m = v4::Message::new_with_id(7, lease().ip, un, un, un, &MAC.0);
        m.opts_mut().insert(DhcpOption::MessageType(MessageType::Request));
        let (_, kind, to) = reply(respond(&m.to_vec().unwrap(), Some(&lease())));
        assert_eq!((kind, to), (MessageType::Ack, Destination::Unicast(lease().ip)));
    }

    #[test]
    fn options_it_does_not_read_are_dropped_before_decoding() {
        let mut req = request(MessageType::Discover, MAC, None);
        req.pop(); // the end option
        // A client FQDN (81) of length 1, on which dhcproto would assert,
        // and an option overload (52).
        req.extend_from_slice(&[81, 1, 0, 52, 1, 3, 255]);
        let (_, kind, _) = reply(respond(&req, Some(&lease())));
        assert_eq!(kind, MessageType::Offer);
        let mut cut = request(MessageType::Discover, MAC, None);
        cut.pop();
        cut.extend_from_slice(&[12, 200, b'x']); // longer than what is left
        assert_eq!(respond(&cut, Some(&lease())), Outcome::Malformed);
    }

    #[test]
    fn strangers_and_junk_get_nothing() {
        let other = MacAddr([2, 0, 0, 0, 0, 10]);
        assert_eq!(respond(&request(MessageType::Discover, other, None), Some(&lease())), Outcome::UnknownClient);
        assert_eq!(respond(&request(MessageType::Discover, MAC, None), None), Outcome::UnknownClient);
        assert_eq!(respond(&[1, 2, 3], Some(&lease())), Outcome::Malformed);
        let mut no_type = request(MessageType::Discover, MAC, None);
        no_type.truncate(240); // just the fixed part and the magic cookie
        assert_eq!(respond(&no_type, Some(&lease())), Outcome::Malformed);
        assert_eq!(
            respond(&request(MessageType::Release, MAC, None), Some(&lease())),
            Outcome::Ignored(MessageType::Release)
        );
    }
}
