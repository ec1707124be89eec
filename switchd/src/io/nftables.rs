//! The routing mesh's DNAT rules, through nf_tables' netlink API (no
//! shelling out to `nft`, no C library).
//!
//! switchd owns one table, `inet switchd` (IPv4 and IPv6), created with the owner flag
//! (`NFT_TABLE_F_OWNER`, Linux 5.12): the kernel removes it when the
//! socket that made it closes, so a switchd that dies, even by kill -9,
//! leaves no rule sending traffic into a switch that is gone, and the
//! next one starts from nothing. Every change replaces the whole table
//! in one batch, which the kernel applies atomically or not at all.
//!
//! For each mesh port the table holds what `nft` would make of
//!
//! ```text
//! table inet switchd {
//!   chain mesh_prerouting { type nat hook prerouting priority dstnat; }
//!   chain mesh_output { type nat hook output priority -100; }
//! }
//! add rule inet switchd mesh_prerouting meta nfproto ipv4 fib daddr type local tcp dport 8080 dnat ip to 10.10.0.200:80
//! add rule inet switchd mesh_output meta nfproto ipv4 fib daddr type local tcp dport 8080 dnat ip to 10.10.0.200:80
//! ```
//!
//! and for a VIP6 the same with `meta nfproto ipv6` and `dnat ip6 to [fd00:10::c8]:80`.
//!
//! (`nft --debug=netlink` prints the same expressions): connections to any
//! of the host's own addresses, from outside (prerouting) or from the host
//! itself (output), go to the service's VIP, which the host routes into
//! the network through its host-access interface. The client's address is
//! kept; the host's conntrack turns the replies back.

use std::io;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use netlink_sys::{Socket, protocols::NETLINK_NETFILTER};

/// The table's name, in family `inet`.
pub const TABLE: &str = "switchd";
const CHAINS: [(&str, u32); 2] = [("mesh_prerouting", NF_INET_PRE_ROUTING), ("mesh_output", NF_INET_LOCAL_OUT)];

/// One published port of the mesh: `protocol` `host_port` on any local
/// address to `vip`:`port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Dnat {
    /// 6 (TCP) or 17 (UDP).
    pub protocol: u8,
    pub host_port: u16,
    pub vip: IpAddr,
    pub port: u16,
}

// From linux/netfilter/nfnetlink.h, nf_tables.h, netfilter.h.
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 16;
const NFNL_MSG_BATCH_END: u16 = 17;
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_NEWRULE: u16 = 6;
const NFPROTO_INET: u8 = 1;
const NFPROTO_IPV4: u8 = 2;
const NFPROTO_IPV6: u8 = 10;
const NF_INET_PRE_ROUTING: u32 = 0;
const NF_INET_LOCAL_OUT: u32 = 3;
const NF_IP_PRI_NAT_DST: i32 = -100;
const NFT_TABLE_F_OWNER: u32 = 2;

const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_APPEND: u16 = 0x800;
const NLM_F_CREATE: u16 = 0x400;
const NLMSG_ERROR: u16 = 2;
const NLA_F_NESTED: u16 = 0x8000;

const NFTA_TABLE_NAME: u16 = 1;
const NFTA_TABLE_FLAGS: u16 = 2;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_TYPE: u16 = 7;
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;

const NFT_REG_1: u32 = 1;
const NFT_REG_2: u32 = 2;
const RTN_LOCAL: u32 = 2;

/// One message of a batch: its type (in the nf_tables subsystem), flags
/// beyond `NLM_F_REQUEST | NLM_F_ACK`, and attributes.
struct Message {
    kind: u16,
    flags: u16,
    attrs: Vec<u8>,
}

/// Netlink attributes, each padded to 4 bytes.
#[derive(Default)]
struct Attrs(Vec<u8>);

impl Attrs {
    fn bytes(mut self, kind: u16, value: &[u8]) -> Self {
        let len = 4 + value.len();
        self.0.extend_from_slice(&(len as u16).to_ne_bytes());
        self.0.extend_from_slice(&kind.to_ne_bytes());
        self.0.extend_from_slice(value);
        self.0.resize(self.0.len().next_multiple_of(4), 0);
        self
    }

    fn str(self, kind: u16, value: &str) -> Self {
        let mut s = value.as_bytes().to_vec();
        s.push(0);
        self.bytes(kind, &s)
    }

    /// nf_tables' integers are big-endian.
    fn be32(self, kind: u16, value: u32) -> Self {
        self.bytes(kind, &value.to_be_bytes())
    }

    fn nested(self, kind: u16, inner: Attrs) -> Self {
        self.bytes(kind | NLA_F_NESTED, &inner.0)
    }

    /// A register-sized value (`NFTA_DATA_VALUE` inside `kind`).
    fn data(self, kind: u16, value: &[u8]) -> Self {
        self.nested(kind, Attrs::default().bytes(NFTA_DATA_VALUE, value))
    }
}

/// One expression of a rule: its name and its attributes.
fn expr(name: &str, data: Attrs) -> Attrs {
    Attrs::default().str(NFTA_EXPR_NAME, name).nested(NFTA_EXPR_DATA, data)
}

/// `meta nfproto ipv4 fib daddr type local meta l4proto P th dport
/// HOST_PORT dnat ip to VIP:PORT` (`ipv6`, `ip6` for a VIP6).
fn dnat_expressions(d: &Dnat) -> Attrs {
    const NFTA_FIB_DREG: u16 = 1;
    const NFTA_FIB_RESULT: u16 = 2;
    const NFTA_FIB_FLAGS: u16 = 3;
    const NFT_FIB_RESULT_ADDRTYPE: u32 = 3;
    const NFTA_FIB_F_DADDR: u32 = 2;
    const NFTA_CMP_SREG: u16 = 1;
    const NFTA_CMP_OP: u16 = 2;
    const NFTA_CMP_DATA: u16 = 3;
    const NFT_CMP_EQ: u32 = 0;
    const NFTA_META_DREG: u16 = 1;
    const NFTA_META_KEY: u16 = 2;
    const NFT_META_NFPROTO: u32 = 15;
    const NFT_META_L4PROTO: u32 = 16;
    const NFTA_PAYLOAD_DREG: u16 = 1;
    const NFTA_PAYLOAD_BASE: u16 = 2;
    const NFTA_PAYLOAD_OFFSET: u16 = 3;
    const NFTA_PAYLOAD_LEN: u16 = 4;
    const NFT_PAYLOAD_TRANSPORT_HEADER: u32 = 2;
    const NFTA_IMMEDIATE_DREG: u16 = 1;
    const NFTA_IMMEDIATE_DATA: u16 = 2;
    const NFTA_NAT_TYPE: u16 = 1;
    const NFTA_NAT_FAMILY: u16 = 2;
    const NFTA_NAT_REG_ADDR_MIN: u16 = 3;
    const NFTA_NAT_REG_PROTO_MIN: u16 = 5;
    const NFTA_NAT_FLAGS: u16 = 7;
    const NFT_NAT_DNAT: u32 = 1;
    const NF_NAT_RANGE_PROTO_SPECIFIED: u32 = 2;

    let cmp = |value: &[u8]| {
        expr(
            "cmp",
            Attrs::default().be32(NFTA_CMP_SREG, NFT_REG_1).be32(NFTA_CMP_OP, NFT_CMP_EQ).data(NFTA_CMP_DATA, value),
        )
    };
    let immediate = |reg, value: &[u8]| {
        expr("immediate", Attrs::default().be32(NFTA_IMMEDIATE_DREG, reg).data(NFTA_IMMEDIATE_DATA, value))
    };
    let (family, vip) = match d.vip {
        IpAddr::V4(v4) => (NFPROTO_IPV4, v4.octets().to_vec()),
        IpAddr::V6(v6) => (NFPROTO_IPV6, v6.octets().to_vec()),
    };
    let meta = |key| expr("meta", Attrs::default().be32(NFTA_META_DREG, NFT_REG_1).be32(NFTA_META_KEY, key));
    let list = [
        // An inet table sees both families: each rule its VIP's.
        meta(NFT_META_NFPROTO),
        cmp(&[family]),
        expr(
            "fib",
            Attrs::default()
                .be32(NFTA_FIB_DREG, NFT_REG_1)
                .be32(NFTA_FIB_RESULT, NFT_FIB_RESULT_ADDRTYPE)
                .be32(NFTA_FIB_FLAGS, NFTA_FIB_F_DADDR),
        ),
        // The address type is a host-order u32 in the register.
        cmp(&RTN_LOCAL.to_ne_bytes()),
        meta(NFT_META_L4PROTO),
        cmp(&[d.protocol]),
        expr(
            "payload",
            Attrs::default()
                .be32(NFTA_PAYLOAD_DREG, NFT_REG_1)
                .be32(NFTA_PAYLOAD_BASE, NFT_PAYLOAD_TRANSPORT_HEADER)
                .be32(NFTA_PAYLOAD_OFFSET, 2)
                .be32(NFTA_PAYLOAD_LEN, 2),
        ),
        cmp(&d.host_port.to_be_bytes()),
        immediate(NFT_REG_1, &vip),
        immediate(NFT_REG_2, &d.port.to_be_bytes()),
        expr(
            "nat",
            Attrs::default()
                .be32(NFTA_NAT_TYPE, NFT_NAT_DNAT)
                .be32(NFTA_NAT_FAMILY, u32::from(family))
                .be32(NFTA_NAT_REG_ADDR_MIN, NFT_REG_1)
                .be32(NFTA_NAT_REG_PROTO_MIN, NFT_REG_2)
                .be32(NFTA_NAT_FLAGS, NF_NAT_RANGE_PROTO_SPECIFIED),
        ),
    ];
    list.into_iter().fold(Attrs::default(), |all, e| all.nested(NFTA_LIST_ELEM, e))
}

/// The messages that make the table hold exactly `rules` (none: no table):
/// "add table; delete table" first, so that the batch works whether or
/// not the table is there (what `nft` scripts do).
fn messages(rules: &[Dnat]) -> Vec<Message> {
    let table = || Attrs::default().str(NFTA_TABLE_NAME, TABLE).be32(NFTA_TABLE_FLAGS, NFT_TABLE_F_OWNER);
    let mut out = vec![
        Message { kind: NFT_MSG_NEWTABLE, flags: NLM_F_CREATE, attrs: table().0 },
        Message { kind: NFT_MSG_DELTABLE, flags: 0, attrs: Attrs::default().str(NFTA_TABLE_NAME, TABLE).0 },
    ];
    if rules.is_empty() {
        return out;
    }
    out.push(Message { kind: NFT_MSG_NEWTABLE, flags: NLM_F_CREATE, attrs: table().0 });
    for (chain, hook) in CHAINS {
        let hook = Attrs::default().be32(NFTA_HOOK_HOOKNUM, hook).be32(NFTA_HOOK_PRIORITY, NF_IP_PRI_NAT_DST as u32);
        let attrs = Attrs::default()
            .str(NFTA_CHAIN_TABLE, TABLE)
            .str(NFTA_CHAIN_NAME, chain)
            .nested(NFTA_CHAIN_HOOK, hook)
            .str(NFTA_CHAIN_TYPE, "nat");
        out.push(Message { kind: NFT_MSG_NEWCHAIN, flags: NLM_F_CREATE, attrs: attrs.0 });
        for rule in rules {
            let attrs = Attrs::default()
                .str(NFTA_RULE_TABLE, TABLE)
                .str(NFTA_RULE_CHAIN, chain)
                .nested(NFTA_RULE_EXPRESSIONS, dnat_expressions(rule));
            out.push(Message { kind: NFT_MSG_NEWRULE, flags: NLM_F_CREATE | NLM_F_APPEND, attrs: attrs.0 });
        }
    }
    out
}

/// One netlink message: header, `nfgenmsg` (family, version 0, resource id), attributes.
fn encode(buf: &mut Vec<u8>, kind: u16, flags: u16, seq: u32, family: u8, res_id: u16, attrs: &[u8]) {
    let len = 16 + 4 + attrs.len();
    buf.extend_from_slice(&(len as u32).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(&flags.to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes());
    buf.extend_from_slice(&[family, 0]);
    buf.extend_from_slice(&res_id.to_be_bytes());
    buf.extend_from_slice(attrs);
}

/// The whole batch, sequence numbers from `first_seq`; and how many
/// messages in it ask for an acknowledgement.
fn batch(rules: &[Dnat], first_seq: u32) -> (Vec<u8>, u32) {
    let messages = messages(rules);
    let mut buf = Vec::new();
    let mut seq = first_seq;
    encode(&mut buf, NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, seq, 0, NFNL_SUBSYS_NFTABLES, &[]);
    for m in &messages {
        seq += 1;
        let kind = (NFNL_SUBSYS_NFTABLES << 8) | m.kind;
        encode(&mut buf, kind, NLM_F_REQUEST | NLM_F_ACK | m.flags, seq, NFPROTO_INET, 0, &m.attrs);
    }
    encode(&mut buf, NFNL_MSG_BATCH_END, NLM_F_REQUEST, seq + 1, 0, NFNL_SUBSYS_NFTABLES, &[]);
    (buf, messages.len() as u32)
}

/// The socket that owns switchd's table: the table lives as long as it.
pub struct MeshTable {
    socket: Socket,
    seq: u32,
}

impl std::fmt::Debug for MeshTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshTable").field("seq", &self.seq).finish_non_exhaustive()
    }
}

/// Turns on IPv4 (or IPv6) forwarding in this network namespace (as
/// Docker does for its published ports): the mesh's connections are
/// forwarded from the host's interfaces into the network's host-access
/// interface. (IPv6 forwarding makes the host a router: it then ignores
/// router advertisements on interfaces whose `accept_ra` is not 2, as
/// with Docker's IPv6.)
pub fn enable_forwarding(v6: bool) -> io::Result<()> {
    let (path, name) = match v6 {
        false => ("/proc/sys/net/ipv4/ip_forward", "net.ipv4.ip_forward"),
        true => ("/proc/sys/net/ipv6/conf/all/forwarding", "net.ipv6.conf.all.forwarding"),
    };
    if std::fs::read_to_string(path)?.trim() != "1" {
        std::fs::write(path, "1")?;
        tracing::info!("routing mesh: {name} set to 1");
    }
    Ok(())
}

impl MeshTable {
    /// A netfilter netlink socket in this thread's network namespace.
    pub fn open() -> io::Result<Self> {
        let mut socket = Socket::new(NETLINK_NETFILTER)?;
        socket.bind_auto()?;
        socket.set_non_blocking(true)?;
        Ok(MeshTable { socket, seq: 1 })
    }

    /// Makes the table hold exactly `rules`, atomically.
    pub fn replace(&mut self, rules: &[Dnat]) -> io::Result<()> {
        let first = self.seq;
        let (buf, acks) = batch(rules, first);
        self.seq = self.seq.wrapping_add(acks + 2);
        self.socket.send(&buf, 0)?;
        self.wait_for_acks(first, acks)
    }

    /// Reads the kernel's answers until every message is acknowledged or
    /// one failed (which aborts the whole batch: nothing changed).
    fn wait_for_acks(&self, first: u32, acks: u32) -> io::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut acked = 0;
        let mut buf = vec![0u8; 64 * 1024];
        while acked < acks {
            let n = match self.socket.recv(&mut &mut buf[..], 0) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if Instant::now() > deadline {
                        return Err(io::Error::new(io::ErrorKind::TimedOut, "nf_tables did not answer"));
                    }
                    std::thread::sleep(Duration::from_millis(2));
                    continue;
                }
                Err(e) => return Err(e),
            };
            for (kind, seq, payload) in answers(&buf[..n]) {
                if kind != NLMSG_ERROR || seq < first {
                    continue;
                }
                let errno = payload.get(..4).map_or(0, |b| i32::from_ne_bytes(b.try_into().expect("4 bytes")));
                if errno != 0 {
                    return Err(io::Error::from_raw_os_error(-errno));
                }
                acked += 1;
            }
        }
        Ok(())
    }
}

/// The netlink messages in one datagram: (type, sequence number, payload).
fn answers(mut buf: &[u8]) -> impl Iterator<Item = (u16, u32, &[u8])> {
    std::iter::from_fn(move || {
        let len = u32::from_ne_bytes(buf.get(..4)?.try_into().ok()?) as usize;
        if len < 16 || len > buf.len() {
            return None;
        }
        let kind = u16::from_ne_bytes(buf[4..6].try_into().ok()?);
        let seq = u32::from_ne_bytes(buf[8..12].try_into().ok()?);
        let payload = &buf[16..len];
        buf = &buf[len.next_multiple_of(4).min(buf.len())..];
        Some((kind, seq, payload))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn web() -> Dnat {
        Dnat { protocol: 6, host_port: 8080, vip: IpAddr::from([10, 1, 0, 2]), port: 80 }
    }

    #[test]
    fn attributes_are_padded_and_nested() {
        let a = Attrs::default().str(NFTA_TABLE_NAME, "switchd").be32(NFTA_TABLE_FLAGS, 2);
        // "switchd\0" is 8 bytes: 12 with the header; then 8 for the flags.
        assert_eq!(a.0.len(), 20);
        assert_eq!(&a.0[..4], &[12, 0, 1, 0]);
        assert_eq!(&a.0[4..12], b"switchd\0");
        assert_eq!(&a.0[12..20], &[8, 0, 2, 0, 0, 0, 0, 2]);
        let n = Attrs::default().data(3, &[6]);
        // Outer header, inner header, one byte padded to four.
        assert_eq!(n.0, vec![12, 0, 3, 0x80, 5, 0, 1, 0, 6, 0, 0, 0]);
    }

    #[test]
    fn a_rule_holds_the_eleven_expressions_nft_makes() {
        let exprs = dnat_expressions(&web());
        let names: Vec<&str> =
            ["meta", "cmp", "fib", "cmp", "meta", "cmp", "payload", "cmp", "immediate", "immediate", "nat"].into();
        let mut found = Vec::new();
        let mut rest = &exprs.0[..];
        while rest.len() >= 4 {
            let len = u16::from_ne_bytes([rest[0], rest[1]]) as usize;
            // Inside each list element: the expression's name attribute first.
            let name = &rest[8..4 + u16::from_ne_bytes([rest[4], rest[5]]) as usize];
            found.push(std::str::from_utf8(name).unwrap().trim_end_matches('\0').to_owned());
            rest = &rest[len.next_multiple_of(4)..];
        }
        assert_eq!(found, names);
        // The port and the VIP, in network order, as nft shows them.
        let bytes = &exprs.0;
        assert!(bytes.windows(4).any(|w| w == [10, 1, 0, 2]));
        assert!(bytes.windows(2).any(|w| w == 8080u16.to_be_bytes()));
        // A VIP6: its 16 bytes, and family ipv6 (10) for nfproto and nat.
        let vip6: std::net::Ipv6Addr = "fd00:10::c8".parse().unwrap();
        let six = dnat_expressions(&Dnat { vip: vip6.into(), ..web() });
        assert!(six.0.windows(16).any(|w| w == vip6.octets()));
        let nat_family = |a: &Attrs| a.0.windows(8).any(|w| w == [8, 0, 2, 0, 0, 0, 0, 10]);
        assert!(nat_family(&six) && !nat_family(&exprs), "NFTA_NAT_FAMILY ipv6 for the VIP6 only");
    }

    #[test]
    fn a_batch_is_begin_table_work_end_each_acked() {
        let (buf, acks) = batch(&[web()], 7);
        // add, delete, add table; two chains with one rule each.
        assert_eq!(acks, 7);
        let got: Vec<(u16, u32)> = answers(&buf).map(|(kind, seq, _)| (kind, seq)).collect();
        let t = NFNL_SUBSYS_NFTABLES << 8;
        assert_eq!(
            got,
            vec![
                (NFNL_MSG_BATCH_BEGIN, 7),
                (t | NFT_MSG_NEWTABLE, 8),
                (t | NFT_MSG_DELTABLE, 9),
                (t | NFT_MSG_NEWTABLE, 10),
                (t | NFT_MSG_NEWCHAIN, 11),
                (t | NFT_MSG_NEWRULE, 12),
                (t | NFT_MSG_NEWCHAIN, 13),
                (t | NFT_MSG_NEWRULE, 14),
                (NFNL_MSG_BATCH_END, 15),
            ]
        );
        // No rules: the table is only removed.
        assert_eq!(batch(&[], 1).1, 2);
    }
}
