//! ICMPv6 (RFC 4443) and neighbour discovery (RFC 4861).
//!
//! ```text
//! +-------+-------+---------------+---------------------------------+
//! | type  | code  |   checksum    | message body ...                |
//! +-------+-------+---------------+---------------------------------+
//! ```
//!
//! Neighbour discovery bodies: router solicitation (4 reserved bytes),
//! router advertisement (12 bytes), neighbour solicitation and
//! advertisement (4 bytes of flags/reserved, then the 16-byte target),
//! redirect (target and destination); then options, each `type, length
//! in 8-byte units, data`.

use std::net::Ipv6Addr;

use crate::ethernet::MacAddr;
use crate::{Malformed, Result, be16, checksum, set_be16};

pub const HEADER_LEN: usize = 4;

enum_with_unknown! {
    pub enum Message(u8) {
        DstUnreachable = 1,
        PacketTooBig = 2,
        TimeExceeded = 3,
        ParamProblem = 4,
        EchoRequest = 128,
        EchoReply = 129,
        RouterSolicit = 133,
        RouterAdvert = 134,
        NeighborSolicit = 135,
        NeighborAdvert = 136,
        Redirect = 137,
    }
}

enum_with_unknown! {
    /// A neighbour discovery option's type.
    pub enum NdOptionType(u8) {
        SourceLinkLayerAddr = 1,
        TargetLinkLayerAddr = 2,
        PrefixInformation = 3,
        RedirectedHeader = 4,
        Mtu = 5,
        Rdnss = 25,
    }
}

/// Neighbour advertisement flags (the first byte after the header).
pub mod na_flags {
    pub const ROUTER: u8 = 0x80;
    pub const SOLICITED: u8 = 0x40;
    pub const OVERRIDE: u8 = 0x20;
}

view! {
    /// A view of an ICMPv6 message.
    pub struct Packet, error Malformed;
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// What [`Packet::new_checked`] checks.
    fn check(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN { Err(Malformed) } else { Ok(()) }
    }

    pub fn msg_type(&self) -> Message {
        Message::from(self.buffer.as_ref()[0])
    }

    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[1]
    }

    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), 2)
    }

    /// The message after the 4-byte header.
    pub fn body(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }

    /// Whether the checksum is right, given the pseudo-header sum (see
    /// `ipv6::Packet::pseudo_header`).
    pub fn verify_checksum(&self, pseudo_header: u64) -> bool {
        checksum::fold(checksum::add(pseudo_header, self.buffer.as_ref())) == 0xffff
    }

    /// The neighbour discovery message inside: `None` if it is not one,
    /// `Err` if it is one cut short.
    pub fn nd(&self) -> Option<Result<Nd<'_>>> {
        let body = self.body();
        let target = |at: usize| -> Result<Ipv6Addr> {
            body.get(at..at + 16).map(|t| <[u8; 16]>::try_from(t).expect("16 bytes").into()).ok_or(Malformed)
        };
        let options = |at: usize| body.get(at..).map(NdOptions).ok_or(Malformed);
        let flags = || body.first().copied().ok_or(Malformed);
        Some(match self.msg_type() {
            Message::RouterSolicit => options(4).map(|options| Nd::RouterSolicit { options }),
            Message::RouterAdvert => options(12).map(|options| Nd::RouterAdvert { options }),
            Message::NeighborSolicit => {
                target(4).and_then(|target| Ok(Nd::NeighborSolicit { target, options: options(20)? }))
            }
            Message::NeighborAdvert => {
                target(4).and_then(|target| Ok(Nd::NeighborAdvert { flags: flags()?, target, options: options(20)? }))
            }
            Message::Redirect => target(4).and_then(|target| Ok(Nd::Redirect { target, options: options(36)? })),
            _ => return None,
        })
    }
}

/// A neighbour discovery message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nd<'a> {
    RouterSolicit { options: NdOptions<'a> },
    RouterAdvert { options: NdOptions<'a> },
    NeighborSolicit { target: Ipv6Addr, options: NdOptions<'a> },
    NeighborAdvert { flags: u8, target: Ipv6Addr, options: NdOptions<'a> },
    Redirect { target: Ipv6Addr, options: NdOptions<'a> },
}

impl<'a> Nd<'a> {
    pub fn options(&self) -> NdOptions<'a> {
        match *self {
            Nd::RouterSolicit { options }
            | Nd::RouterAdvert { options }
            | Nd::NeighborSolicit { options, .. }
            | Nd::NeighborAdvert { options, .. }
            | Nd::Redirect { options, .. } => options,
        }
    }
}

/// The options of a neighbour discovery message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NdOptions<'a>(&'a [u8]);

/// One option: its type and its data (after type and length).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NdOption<'a> {
    pub kind: NdOptionType,
    pub data: &'a [u8],
}

impl NdOption<'_> {
    /// The link-layer address of a source or target link-layer option.
    pub fn link_layer_addr(&self) -> Option<MacAddr> {
        match self.kind {
            NdOptionType::SourceLinkLayerAddr | NdOptionType::TargetLinkLayerAddr => {
                Some(MacAddr(self.data.get(..6)?.try_into().ok()?))
            }
            _ => None,
        }
    }
}

impl<'a> NdOptions<'a> {
    /// Every option, in order; `Err` at the first malformed one (a length
    /// of zero, or beyond the message), which RFC 4861 says to drop the
    /// message for.
    pub fn iter(&self) -> impl Iterator<Item = Result<NdOption<'a>>> + 'a {
        let mut rest = self.0;
        std::iter::from_fn(move || {
            if rest.is_empty() {
                return None;
            }
            let len = usize::from(*rest.get(1)?) * 8;
            if rest.len() < 2 || len == 0 || len > rest.len() {
                rest = &[];
                return Some(Err(Malformed));
            }
            let option = NdOption { kind: NdOptionType::from(rest[0]), data: &rest[2..len] };
            rest = &rest[len..];
            Some(Ok(option))
        })
    }
}

/// A neighbour advertisement switchd sends on an address owner's behalf:
/// solicited and override, with the owner's link-layer address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighborAdvertRepr {
    pub flags: u8,
    pub target: Ipv6Addr,
    pub target_mac: MacAddr,
}

impl NeighborAdvertRepr {
    /// Header, flags, target, and one 8-byte link-layer option.
    pub const LEN: usize = HEADER_LEN + 4 + 16 + 8;

    /// Writes the message into the first [`Self::LEN`] bytes of `buf`,
    /// its checksum over `pseudo_header` (from the IPv6 header it goes in).
    pub fn emit(&self, buf: &mut [u8], pseudo_header: u64) {
        let b = &mut buf[..Self::LEN];
        b.fill(0);
        b[0] = Message::NeighborAdvert.into();
        b[4] = self.flags;
        b[8..24].copy_from_slice(&self.target.octets());
        b[24] = NdOptionType::TargetLinkLayerAddr.into();
        b[25] = 1;
        b[26..32].copy_from_slice(&self.target_mac.0);
        let sum = checksum::finish(checksum::add(pseudo_header, b));
        set_be16(b, 2, sum);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);

    fn solicitation(target: Ipv6Addr, option: &[u8]) -> Vec<u8> {
        let mut m = vec![135, 0, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(&target.octets());
        m.extend_from_slice(option);
        m
    }

    #[test]
    fn neighbour_solicitation_and_its_options() {
        let target: Ipv6Addr = "fd00::2".parse().unwrap();
        let bytes = solicitation(target, &[1, 1, 2, 0, 0, 0, 0, 1]);
        let p = Packet::new_checked(&bytes[..]).unwrap();
        let Some(Ok(Nd::NeighborSolicit { target: t, options })) = p.nd() else { panic!("{:?}", p.nd()) };
        assert_eq!(t, target);
        let opts: Vec<_> = options.iter().collect();
        assert_eq!(opts.len(), 1);
        let o = opts[0].unwrap();
        assert_eq!(o.kind, NdOptionType::SourceLinkLayerAddr);
        assert_eq!(o.link_layer_addr(), Some(MAC));
    }

    #[test]
    fn malformed_options_and_messages() {
        let target: Ipv6Addr = "fd00::2".parse().unwrap();
        let zero_len = solicitation(target, &[1, 0, 2, 0, 0, 0, 0, 1]);
        let p = Packet::new_checked(&zero_len[..]).unwrap();
        assert_eq!(p.nd().unwrap().unwrap().options().iter().next(), Some(Err(Malformed)));
        let too_long = solicitation(target, &[1, 2, 2, 0, 0, 0, 0, 1]);
        let p = Packet::new_checked(&too_long[..]).unwrap();
        assert_eq!(p.nd().unwrap().unwrap().options().iter().collect::<Vec<_>>(), vec![Err(Malformed)]);
        let short = &solicitation(target, &[])[..20];
        assert_eq!(Packet::new_checked(short).unwrap().nd(), Some(Err(Malformed)));
        let echo = [128, 0, 0, 0, 0, 1, 0, 1];
        assert_eq!(Packet::new_checked(&echo[..]).unwrap().nd(), None, "not neighbour discovery");
        assert_eq!(Packet::new_checked(&echo[..]).unwrap().msg_type(), Message::EchoRequest);
    }

    #[test]
    fn advertisement_emit_and_parse() {
        let target: Ipv6Addr = "fd00::2".parse().unwrap();
        let na = NeighborAdvertRepr { flags: na_flags::SOLICITED | na_flags::OVERRIDE, target, target_mac: MAC };
        let pseudo = checksum::pseudo_v6(target, "fd00::1".parse().unwrap(), 58, NeighborAdvertRepr::LEN as u32);
        let mut out = [0u8; NeighborAdvertRepr::LEN];
        na.emit(&mut out, pseudo);
        let p = Packet::new_checked(&out[..]).unwrap();
        assert!(p.verify_checksum(pseudo));
        let Some(Ok(Nd::NeighborAdvert { flags, target: t, options })) = p.nd() else { panic!() };
        assert_eq!((flags, t), (0x60, target));
        assert_eq!(options.iter().next().unwrap().unwrap().link_layer_addr(), Some(MAC));
    }
}
