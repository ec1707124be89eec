//! ICMP (RFC 792): echo, and the errors a router sends (RFC 1812).
//!
//! ```text
//! +-------+-------+---------------+---------------------------------+
//! | type  | code  |   checksum    | rest of header (4)              |
//! +-------+-------+---------------+---------------------------------+
//! | data: echo payload, or the offending packet's header and start  |
//! ```

use crate::{Malformed, Result, be16, checksum, set_be16};

pub const HEADER_LEN: usize = 8;

enum_with_unknown! {
    pub enum Message(u8) {
        EchoReply = 0,
        DstUnreachable = 3,
        Redirect = 5,
        EchoRequest = 8,
        TimeExceeded = 11,
        ParamProblem = 12,
    }
}

impl Message {
    /// Errors are never answered with errors (RFC 1812 4.3.2.7).
    pub fn is_error(self) -> bool {
        !matches!(self, Message::EchoReply | Message::EchoRequest)
    }
}

/// Codes of [`Message::DstUnreachable`].
pub mod unreachable {
    pub const NET: u8 = 0;
    pub const HOST: u8 = 1;
    pub const PORT: u8 = 3;
    pub const FRAG_NEEDED: u8 = 4;
    /// RFC 1812 5.2.7.1: communication administratively prohibited.
    pub const ADMIN_PROHIBITED: u8 = 13;
}

view! {
    /// A view of an ICMP message.
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

    /// Echo request and reply: identifier and sequence number.
    pub fn echo_ident(&self) -> u16 {
        be16(self.buffer.as_ref(), 4)
    }

    pub fn echo_seq(&self) -> u16 {
        be16(self.buffer.as_ref(), 6)
    }

    /// What follows the 8-byte header.
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }

    pub fn verify_checksum(&self) -> bool {
        checksum::fold(checksum::add(0, self.buffer.as_ref())) == 0xffff
    }
}

/// An ICMP message switchd sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repr<'a> {
    EchoReply {
        ident: u16,
        seq: u16,
        data: &'a [u8],
    },
    /// An error, quoting the offending packet's header and first bytes.
    Error {
        msg_type: Message,
        code: u8,
        /// For "fragmentation needed": the next hop's MTU (RFC 1191), in
        /// the header's last two bytes; 0 otherwise.
        next_hop_mtu: u16,
        quote: &'a [u8],
    },
}

impl<'a> Repr<'a> {
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN
            + match self {
                Repr::EchoReply { data, .. } => data.len(),
                Repr::Error { quote, .. } => quote.len(),
            }
    }

    /// Writes the message, checksum filled, into the first
    /// [`Repr::buffer_len`] bytes of `buf`.
    pub fn emit(&self, buf: &mut [u8]) {
        let b = &mut buf[..self.buffer_len()];
        b[..HEADER_LEN].fill(0);
        match *self {
            Repr::EchoReply { ident, seq, data } => {
                b[0] = Message::EchoReply.into();
                set_be16(b, 4, ident);
                set_be16(b, 6, seq);
                b[HEADER_LEN..].copy_from_slice(data);
            }
            Repr::Error { msg_type, code, next_hop_mtu, quote } => {
                b[0] = msg_type.into();
                b[1] = code;
                b[6..8].copy_from_slice(&next_hop_mtu.to_be_bytes());
                b[HEADER_LEN..].copy_from_slice(quote);
            }
        }
        let sum = checksum::finish(checksum::add(0, b));
        set_be16(b, 2, sum);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ping -c 1 -p 61` payload start: type 8, id 7, seq 3, "abcdefgh".
    const REQUEST: [u8; 16] = [8, 0, 0xb6, 0x69, 0, 7, 0, 3, b'a', b'b', b'c', b'd', b'e', b'f', b'g', b'h'];

    #[test]
    fn echo_request_and_reply() {
        let p = Packet::new_checked(&REQUEST[..]).unwrap();
        assert_eq!(p.msg_type(), Message::EchoRequest);
        assert_eq!((p.echo_ident(), p.echo_seq()), (7, 3));
        assert_eq!(p.data(), b"abcdefgh");
        let reply = Repr::EchoReply { ident: 7, seq: 3, data: p.data() };
        let mut out = vec![0u8; reply.buffer_len()];
        reply.emit(&mut out);
        let back = Packet::new_checked(&out[..]).unwrap();
        assert_eq!(back.msg_type(), Message::EchoReply);
        assert!(back.verify_checksum());
        assert_eq!(&out[4..], &REQUEST[4..], "id, seq and data mirrored");
    }

    #[test]
    fn errors() {
        let quote = [0x45u8; 28];
        let e = Repr::Error {
            msg_type: Message::DstUnreachable,
            code: unreachable::ADMIN_PROHIBITED,
            next_hop_mtu: 0,
            quote: &quote,
        };
        let mut out = vec![0u8; e.buffer_len()];
        e.emit(&mut out);
        let p = Packet::new_checked(&out[..]).unwrap();
        assert_eq!((p.msg_type(), p.code()), (Message::DstUnreachable, 13));
        assert!(p.msg_type().is_error() && !Message::EchoRequest.is_error());
        assert!(p.verify_checksum());
        assert_eq!(p.data(), &quote[..]);
        assert!(Packet::new_checked(&out[..7]).is_err());
    }
}
