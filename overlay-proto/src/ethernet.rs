//! Ethernet: the MAC address type and a zero-copy view of a frame's header
//! with its 802.1Q tag.
//!
//! Every part of tapmesh that reads a frame's addresses or tag goes through
//! [`Frame::new_checked`], the only door for untrusted bytes: after it no
//! accessor can panic. It refuses a frame shorter than its header, and one
//! that says it is 802.1Q-tagged (TPID `0x8100` where the ethertype goes)
//! but is too short to hold the tag and the ethertype after it: forwarded as
//! untagged, such a frame would reach the other side as a tag cut short.
//! Modelled on smoltcp's `wire::ethernet::Frame`.
use std::fmt;
use std::str::FromStr;

use crate::Error;

/// Ethernet header length without a tag (dst, src, ethertype).
pub const HEADER_LEN: usize = 14;
/// Bytes of one 802.1Q tag (TPID and TCI).
pub const VLAN_TAG_LEN: usize = 4;
/// The 802.1Q TPID.
pub const TPID_8021Q: u16 = 0x8100;

mod field {
    use std::ops::Range;
    pub const DST: Range<usize> = 0..6;
    pub const SRC: Range<usize> = 6..12;
    pub const ETHERTYPE: Range<usize> = 12..14;
    pub const TCI: Range<usize> = 14..16;
    pub const INNER_ETHERTYPE: Range<usize> = 16..18;
}

/// A MAC address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// ff:ff:ff:ff:ff:ff.
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    /// 00:00:00:00:00:00, never a valid source.
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    /// The address from its first six bytes (`bytes` is at least 6 long).
    fn from_slice(bytes: &[u8]) -> MacAddr {
        let mut m = [0u8; 6];
        m.copy_from_slice(&bytes[..6]);
        MacAddr(m)
    }

    /// Group (multicast or broadcast) addresses have the I/G bit set.
    pub fn is_group(&self) -> bool {
        self.0[0] & 1 == 1
    }

    /// All zeros.
    pub fn is_zero(&self) -> bool {
        *self == MacAddr::ZERO
    }

    /// ff:ff:ff:ff:ff:ff.
    pub fn is_broadcast(&self) -> bool {
        *self == MacAddr::BROADCAST
    }

    /// Whether a frame may come from this address: never a group address
    /// (a frame has one sender) nor all zeros. Only such addresses are
    /// learned, and only such addresses may be configured for a port.
    pub fn is_valid_source(&self) -> bool {
        !self.is_group() && !self.is_zero()
    }

    /// Parse a MAC a port may use as its own ([`is_valid_source`](Self::is_valid_source)):
    /// the rules of [`FromStr`], and neither group nor all zeros.
    pub fn parse_unicast(s: &str) -> Result<MacAddr, MacParseError> {
        let m: MacAddr = s.parse()?;
        if m.is_group() {
            Err(MacParseError::Group)
        } else if m.is_zero() {
            Err(MacParseError::Zero)
        } else {
            Ok(m)
        }
    }
}

impl From<[u8; 6]> for MacAddr {
    fn from(m: [u8; 6]) -> MacAddr {
        MacAddr(m)
    }
}

/// `aa:bb:cc:dd:ee:ff`, lowercase (logs and status, never on the hot path).
impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = &self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a MAC in a config file was refused; the message follows the quoted
/// value (`"01:00:5e:00:00:01" is a group (multicast) MAC, ...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MacParseError {
    /// Not six colon-separated pairs of hex digits.
    #[error("is not a MAC like 02:00:00:00:00:01")]
    Syntax,
    /// A group address where a unicast one is needed.
    #[error("is a group (multicast) MAC, not a unicast one like 02:00:00:00:00:01")]
    Group,
    /// All zeros where a unicast address is needed.
    #[error("is the all-zero MAC, not a unicast one like 02:00:00:00:00:01")]
    Zero,
}

/// Six pairs of hex digits (either case) separated by colons, nothing else:
/// `02:00:5E:10:00:01`. No other separators, no single digits, no signs.
impl FromStr for MacAddr {
    type Err = MacParseError;

    fn from_str(s: &str) -> Result<MacAddr, MacParseError> {
        let mut m = [0u8; 6];
        let mut parts = s.split(':');
        for b in &mut m {
            let p = parts.next().ok_or(MacParseError::Syntax)?;
            if p.len() != 2 || !p.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Err(MacParseError::Syntax);
            }
            *b = u8::from_str_radix(p, 16).map_err(|_| MacParseError::Syntax)?;
        }
        match parts.next() {
            None => Ok(MacAddr(m)),
            Some(_) => Err(MacParseError::Syntax),
        }
    }
}

/// An 802.1Q tag's control information (TCI).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tci(pub u16);

impl Tci {
    /// The VLAN id (12 bits; 0 in a priority tag).
    pub fn vid(self) -> u16 {
        self.0 & 0x0fff
    }

    /// The priority code point (3 bits).
    pub fn pcp(self) -> u8 {
        (self.0 >> 13) as u8
    }
}

/// A read-only view of an Ethernet frame's header: addresses, the 802.1Q
/// tag if there is one, and the ethertype after it.
#[derive(Debug, Clone, Copy)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Wrap `buffer` without checks: accessors may panic on short buffers.
    pub fn new_unchecked(buffer: T) -> Frame<T> {
        Frame { buffer }
    }

    /// Wrap `buffer` after checking it holds the header, and the whole tag
    /// and the ethertype after it if it says it is tagged
    /// ([`Error::Truncated`] if not).
    pub fn new_checked(buffer: T) -> Result<Frame<T>, Error> {
        // HOT PATH
        let f = Frame::new_unchecked(buffer);
        let b = f.buffer.as_ref();
        if b.len() < HEADER_LEN || (f.is_tagged() && b.len() < HEADER_LEN + VLAN_TAG_LEN) {
            return Err(Error::Truncated);
        }
        Ok(f)
    }

    fn is_tagged(&self) -> bool {
        self.buffer.as_ref()[field::ETHERTYPE] == TPID_8021Q.to_be_bytes()
    }

    /// The destination address.
    pub fn dst(&self) -> MacAddr {
        MacAddr::from_slice(&self.buffer.as_ref()[field::DST])
    }

    /// The source address.
    pub fn src(&self) -> MacAddr {
        MacAddr::from_slice(&self.buffer.as_ref()[field::SRC])
    }

    /// The 802.1Q tag's TCI, if the frame is tagged.
    pub fn vlan(&self) -> Option<Tci> {
        let b = self.buffer.as_ref();
        self.is_tagged()
            .then(|| Tci(u16::from_be_bytes([b[field::TCI][0], b[field::TCI][1]])))
    }

    /// The ethertype: the one after the tag if the frame is tagged.
    pub fn ethertype(&self) -> u16 {
        let b = self.buffer.as_ref();
        let at = if self.is_tagged() {
            field::INNER_ETHERTYPE
        } else {
            field::ETHERTYPE
        };
        u16::from_be_bytes([b[at.start], b[at.start + 1]])
    }

    /// Where the payload starts: after the header and the tag, if any.
    pub fn payload_offset(&self) -> usize {
        if self.is_tagged() {
            HEADER_LEN + VLAN_TAG_LEN
        } else {
            HEADER_LEN
        }
    }

    /// The payload after the header (and the tag).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.payload_offset()..]
    }
}

/// The longest frame a link of `mtu` takes: the MTU plus the Ethernet
/// header, plus 4 if `frame` carries an 802.1Q tag.
pub fn max_len(mtu: usize, frame: &[u8]) -> usize {
    let tagged = Frame::new_checked(frame).is_ok_and(|f| f.vlan().is_some());
    mtu + HEADER_LEN + if tagged { VLAN_TAG_LEN } else { 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn untagged() -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x08, 0x06, 0, 1]);
        f
    }

    fn tagged() -> Vec<u8> {
        let mut f = untagged();
        f.splice(12..12, [0x81, 0x00, 0xa0, 0x0a]);
        f
    }

    #[test]
    fn group_zero_broadcast() {
        let b = MacAddr::BROADCAST;
        assert!(b.is_broadcast() && b.is_group() && !b.is_zero() && !b.is_valid_source());
        let m = MacAddr([0x01, 0, 0x5e, 0, 0, 1]);
        assert!(m.is_group() && !m.is_broadcast() && !m.is_valid_source());
        assert!(MacAddr::ZERO.is_zero() && !MacAddr::ZERO.is_group());
        assert!(!MacAddr::ZERO.is_valid_source());
        let u = MacAddr([2, 0, 0, 0, 0, 1]);
        assert!(!u.is_group() && !u.is_zero() && u.is_valid_source());
        // Only bit 0 of the first byte marks a group; the U/L bit does not.
        assert!(!MacAddr([0xfe, 0xff, 0xff, 0xff, 0xff, 0xff]).is_group());
    }

    #[test]
    fn display_is_lowercase_colon_form() {
        let m = MacAddr([0x02, 0xab, 0x0c, 0xd0, 0xef, 0x01]);
        assert_eq!(m.to_string(), "02:ab:0c:d0:ef:01");
        assert_eq!(format!("{m:?}"), "02:ab:0c:d0:ef:01");
        assert_eq!(m.to_string().parse::<MacAddr>(), Ok(m));
    }

    #[test]
    fn parse_accepts_six_pairs_of_hex_in_either_case() {
        assert_eq!(
            "02:AB:0c:D0:eF:01".parse::<MacAddr>(),
            Ok(MacAddr([0x02, 0xab, 0x0c, 0xd0, 0xef, 0x01]))
        );
        assert_eq!("ff:ff:ff:ff:ff:ff".parse(), Ok(MacAddr::BROADCAST));
    }

    #[test]
    fn parse_refuses_anything_else() {
        for bad in [
            "",
            "02:00:00:00:01",
            "02:00:00:00:00:01:",
            "02:00:00:00:00:01:02",
            "2:00:00:00:00:01",
            "002:00:00:00:00:01",
            "+2:00:00:00:00:01",
            "02-00-00-00-00-01",
            "0200.0000.0001",
            "02:00:00:00:00:0g",
            " 02:00:00:00:00:01",
            "02:00:00:00:00:01 ",
            "02::00:00:00:00:01",
        ] {
            assert_eq!(
                bad.parse::<MacAddr>(),
                Err(MacParseError::Syntax),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn parse_unicast_refuses_group_and_zero() {
        assert_eq!(
            MacAddr::parse_unicast("02:00:00:00:00:01"),
            Ok(MacAddr([2, 0, 0, 0, 0, 1]))
        );
        assert_eq!(
            MacAddr::parse_unicast("01:00:5e:00:00:01"),
            Err(MacParseError::Group)
        );
        assert_eq!(
            MacAddr::parse_unicast("ff:ff:ff:ff:ff:ff"),
            Err(MacParseError::Group)
        );
        assert_eq!(
            MacAddr::parse_unicast("00:00:00:00:00:00"),
            Err(MacParseError::Zero)
        );
        assert_eq!(
            MacAddr::parse_unicast("02:00:00:00:01"),
            Err(MacParseError::Syntax)
        );
        // One line each, to follow the quoted value.
        for e in [
            MacParseError::Syntax,
            MacParseError::Group,
            MacParseError::Zero,
        ] {
            assert!(!e.to_string().contains('\n'));
        }
    }

    #[test]
    fn untagged_frame_fields() {
        let f = untagged();
        let v = Frame::new_checked(&f[..]).unwrap();
        assert!(v.dst().is_broadcast());
        assert_eq!(v.src(), MacAddr([2, 0, 0, 0, 0, 1]));
        assert_eq!(v.vlan(), None);
        assert_eq!(v.ethertype(), 0x0806);
        assert_eq!(v.payload_offset(), 14);
        assert_eq!(v.payload(), &[0, 1]);
    }

    #[test]
    fn tagged_frame_fields() {
        let f = tagged();
        let v = Frame::new_checked(&f[..]).unwrap();
        let tci = v.vlan().unwrap();
        assert_eq!((tci.vid(), tci.pcp()), (10, 5));
        assert_eq!(v.ethertype(), 0x0806, "the ethertype after the tag");
        assert_eq!(v.payload_offset(), 18);
        assert_eq!(v.payload(), &[0, 1]);
        assert_eq!(v.src(), MacAddr([2, 0, 0, 0, 0, 1]));
    }

    #[test]
    fn new_checked_refuses_short_headers_and_cut_tags() {
        let f = untagged();
        for n in 0..HEADER_LEN {
            assert_eq!(
                Frame::new_checked(&f[..n]).unwrap_err(),
                Error::Truncated,
                "{n}"
            );
        }
        assert!(Frame::new_checked(&f[..HEADER_LEN]).is_ok());
        let t = tagged();
        for n in 0..HEADER_LEN + VLAN_TAG_LEN {
            assert!(Frame::new_checked(&t[..n]).is_err(), "tagged, {n}");
        }
        // The whole tag and the ethertype, nothing after: a frame.
        let v = Frame::new_checked(&t[..18]).unwrap();
        assert_eq!(v.payload(), &[] as &[u8]);
    }

    #[test]
    fn max_len_counts_the_tag() {
        assert_eq!(max_len(1500, &untagged()), 1514);
        assert_eq!(max_len(1500, &tagged()), 1518);
        assert_eq!(max_len(1500, &[0; 4]), 1514);
    }
}
