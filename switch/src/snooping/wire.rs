//! IGMP (v1, v2, v3) and MLD (v1, v2) as the snooping switch sees them:
//! zero-copy parsing of the IP packet inside a frame, and the queries the
//! built-in querier sends.
//!
//! Parsing never panics and never allocates: every length is checked before
//! it is used, checksums are verified (a bad one is [`Parsed::Malformed`]),
//! and unknown message or record types are reported as such, for counting,
//! never as errors. References: RFC 1112 (v1), RFC 2236 (IGMPv2), RFC 3376
//! (IGMPv3), RFC 2710 (MLDv1), RFC 3810 (MLDv2), RFC 4541 (snooping).
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use overlay_proto::ethernet::MacAddr;

/// IPv4 ethertype.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// IPv6 ethertype.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;

const PROTO_IGMP: u8 = 2;
const PROTO_PIM: u8 = 103;
const NH_HOP_BY_HOP: u8 = 0;
const NH_ROUTING: u8 = 43;
const NH_FRAGMENT: u8 = 44;
const NH_AH: u8 = 51;
const NH_ICMPV6: u8 = 58;
const NH_DEST_OPTS: u8 = 60;
/// Extension headers walked before giving up (treated as data).
const MAX_EXT_HEADERS: usize = 8;

/// IP version of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// IGMP.
    V4,
    /// MLD.
    V6,
}

impl Family {
    /// `"ipv4"` or `"ipv6"`.
    pub fn name(self) -> &'static str {
        match self {
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
        }
    }
}

/// What a frame's IP packet is, to the snooper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// Not IPv4 or IPv6 (ARP, LLDP, STP, ...).
    NotIp,
    /// An IP packet that is not IGMP/MLD/PIM: `source` sent it to `dst`.
    Data {
        /// Destination address (a group, for multicast frames).
        dst: IpAddr,
        /// Source address.
        source: IpAddr,
    },
    /// A membership query.
    Query(Query),
    /// A v1/v2 report (IGMPv1/v2 or MLDv1): the sender joins `group`.
    Join {
        /// The group.
        group: IpAddr,
    },
    /// A leave (IGMPv2) or done (MLDv1) for `group`.
    Leave {
        /// The group.
        group: IpAddr,
    },
    /// An IGMPv3 or MLDv2 report.
    Report(Records<'a>),
    /// A PIM packet: a multicast router lives behind the sender.
    RouterHello,
    /// IGMP or MLD of a type snooping does not know.
    UnknownType(u8),
    /// IGMP or MLD that is truncated or fails its checksum.
    Malformed,
}

/// A membership query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Query {
    /// IGMP or MLD.
    pub family: Family,
    /// The querier's address (the packet's source).
    pub source: IpAddr,
    /// The group asked about; `None` for a general query.
    pub group: Option<IpAddr>,
    /// How long members have to answer.
    pub max_response: Duration,
    /// The query's version, from its length: IGMP 1, 2 or 3; MLD 1 or 2.
    pub version: u8,
}

/// The group records of an IGMPv3 or MLDv2 report, iterated without copying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Records<'a> {
    family: Family,
    left: u16,
    bytes: &'a [u8],
}

/// IGMPv3/MLDv2 group record types (RFC 3376 4.2.12, RFC 3810 5.2.12).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordType {
    /// MODE_IS_INCLUDE (1).
    IsInclude,
    /// MODE_IS_EXCLUDE (2).
    IsExclude,
    /// CHANGE_TO_INCLUDE_MODE (3).
    ToInclude,
    /// CHANGE_TO_EXCLUDE_MODE (4).
    ToExclude,
    /// ALLOW_NEW_SOURCES (5).
    Allow,
    /// BLOCK_OLD_SOURCES (6).
    Block,
    /// Anything else: counted and skipped.
    Unknown(u8),
}

impl From<u8> for RecordType {
    fn from(v: u8) -> Self {
        match v {
            1 => RecordType::IsInclude,
            2 => RecordType::IsExclude,
            3 => RecordType::ToInclude,
            4 => RecordType::ToExclude,
            5 => RecordType::Allow,
            6 => RecordType::Block,
            v => RecordType::Unknown(v),
        }
    }
}

/// One group record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// What the record says.
    pub kind: RecordType,
    /// The group.
    pub group: IpAddr,
    family: Family,
    sources: &'a [u8],
}

impl<'a> Record<'a> {
    /// Number of sources listed.
    pub fn source_count(&self) -> usize {
        self.sources.len() / addr_len(self.family)
    }

    /// The sources listed.
    pub fn sources(&self) -> impl Iterator<Item = IpAddr> + 'a {
        let family = self.family;
        self.sources
            .chunks_exact(addr_len(family))
            .map(move |c| read_addr(family, c))
    }
}

impl<'a> Iterator for Records<'a> {
    /// A record, or `Err(())` if the rest of the report is truncated.
    type Item = Result<Record<'a>, ()>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let alen = addr_len(self.family);
        let head = 4 + alen;
        let b = self.bytes;
        if b.len() < head {
            self.left = 0;
            return Some(Err(()));
        }
        let aux = usize::from(b[1]) * 4;
        let nsrc = usize::from(u16::from_be_bytes([b[2], b[3]]));
        let end = head + nsrc * alen + aux;
        if b.len() < end {
            self.left = 0;
            return Some(Err(()));
        }
        let rec = Record {
            kind: RecordType::from(b[0]),
            group: read_addr(self.family, &b[4..head]),
            family: self.family,
            sources: &b[head..head + nsrc * alen],
        };
        self.bytes = &b[end..];
        Some(Ok(rec))
    }
}

fn addr_len(f: Family) -> usize {
    match f {
        Family::V4 => 4,
        Family::V6 => 16,
    }
}

/// `b` is exactly 4 or 16 bytes long, matching `f`.
fn read_addr(f: Family, b: &[u8]) -> IpAddr {
    match f {
        Family::V4 => IpAddr::from([b[0], b[1], b[2], b[3]]),
        Family::V6 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(&b[..16]);
            IpAddr::from(a)
        }
    }
}

/// Link-local groups, always flooded: 224.0.0.0/24 and ff02::/16.
pub fn is_link_local_group(a: &IpAddr) -> bool {
    match a {
        IpAddr::V4(a) => a.octets()[..3] == [224, 0, 0],
        IpAddr::V6(a) => a.segments()[0] == 0xff02,
    }
}

/// Parse the IP packet of a frame. `ethertype` is the frame's (inner)
/// ethertype and `l3` everything after it.
pub fn parse(ethertype: u16, l3: &[u8]) -> Parsed<'_> {
    match ethertype {
        ETHERTYPE_IPV4 => parse_v4(l3),
        ETHERTYPE_IPV6 => parse_v6(l3),
        _ => Parsed::NotIp,
    }
}

fn parse_v4(p: &[u8]) -> Parsed<'_> {
    if p.len() < 20 || p[0] >> 4 != 4 {
        return Parsed::NotIp;
    }
    let ihl = usize::from(p[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([p[2], p[3]]));
    if ihl < 20 || total < ihl || total > p.len() {
        return Parsed::NotIp;
    }
    let source = IpAddr::from([p[12], p[13], p[14], p[15]]);
    let dst = IpAddr::from([p[16], p[17], p[18], p[19]]);
    let first_fragment = u16::from_be_bytes([p[6], p[7]]) & 0x1fff == 0;
    match p[9] {
        PROTO_IGMP if first_fragment => igmp(source, &p[ihl..total]),
        PROTO_PIM => Parsed::RouterHello,
        _ => Parsed::Data { dst, source },
    }
}

fn igmp(source: IpAddr, m: &[u8]) -> Parsed<'_> {
    if m.len() < 8 || checksum(0, m) != 0 {
        return Parsed::Malformed;
    }
    let group = IpAddr::from([m[4], m[5], m[6], m[7]]);
    match m[0] {
        0x11 => {
            // v1 queries have code 0 (10 s); v3 codes use a float format.
            let code = m[1];
            let (tenths, version) = if m.len() >= 12 {
                (decode_code(code), 3)
            } else if code == 0 {
                (100, 1)
            } else {
                (u32::from(code), 2)
            };
            Parsed::Query(Query {
                family: Family::V4,
                source,
                group: (!group.is_unspecified()).then_some(group),
                max_response: Duration::from_millis(u64::from(tenths) * 100),
                version,
            })
        }
        0x12 | 0x16 => Parsed::Join { group },
        0x17 => Parsed::Leave { group },
        0x22 => Parsed::Report(Records {
            family: Family::V4,
            left: u16::from_be_bytes([m[6], m[7]]),
            bytes: &m[8..],
        }),
        t => Parsed::UnknownType(t),
    }
}

fn parse_v6(p: &[u8]) -> Parsed<'_> {
    if p.len() < 40 || p[0] >> 4 != 6 {
        return Parsed::NotIp;
    }
    let payload = usize::from(u16::from_be_bytes([p[4], p[5]]));
    if 40 + payload > p.len() {
        return Parsed::NotIp;
    }
    let source = read_addr(Family::V6, &p[8..24]);
    let dst = read_addr(Family::V6, &p[24..40]);
    let data = Parsed::Data { dst, source };
    let end = 40 + payload;
    let mut next = p[6];
    let mut at = 40;
    for _ in 0..MAX_EXT_HEADERS {
        let rest = &p[at..end];
        match next {
            NH_HOP_BY_HOP | NH_ROUTING | NH_DEST_OPTS => {
                if rest.len() < 8 {
                    return data;
                }
                next = rest[0];
                at += (usize::from(rest[1]) + 1) * 8;
            }
            NH_AH => {
                if rest.len() < 8 {
                    return data;
                }
                next = rest[0];
                at += (usize::from(rest[1]) + 2) * 4;
            }
            NH_FRAGMENT => {
                if rest.len() < 8 || u16::from_be_bytes([rest[2], rest[3]]) & 0xfff8 != 0 {
                    return data;
                }
                next = rest[0];
                at += 8;
            }
            NH_ICMPV6 => return mld(p, &p[at..end], source, data),
            PROTO_PIM => return Parsed::RouterHello,
            _ => return data,
        }
        if at > end {
            return data;
        }
    }
    data
}

fn mld<'a>(ip: &[u8], m: &'a [u8], source: IpAddr, data: Parsed<'a>) -> Parsed<'a> {
    if m.is_empty() || !matches!(m[0], 130..=132 | 143) {
        // Other ICMPv6 (ND, echo, ...): plain traffic to its destination.
        return data;
    }
    if m.len() < 8 || icmpv6_checksum(&ip[8..40], m) != 0 {
        return Parsed::Malformed;
    }
    let group = || read_addr(Family::V6, &m[8..24]);
    match m[0] {
        130 if m.len() >= 24 => {
            let code = u16::from_be_bytes([m[4], m[5]]);
            let version = if m.len() >= 28 { 2 } else { 1 };
            let ms = if m.len() >= 28 && code >= 0x8000 {
                (u32::from(code & 0x0fff) | 0x1000) << (((code >> 12) & 0x7) + 3)
            } else {
                u32::from(code)
            };
            let g = group();
            Parsed::Query(Query {
                family: Family::V6,
                source,
                group: (!g.is_unspecified()).then_some(g),
                max_response: Duration::from_millis(u64::from(ms)),
                version,
            })
        }
        131 if m.len() >= 24 => Parsed::Join { group: group() },
        132 if m.len() >= 24 => Parsed::Leave { group: group() },
        143 => Parsed::Report(Records {
            family: Family::V6,
            left: u16::from_be_bytes([m[6], m[7]]),
            bytes: &m[8..],
        }),
        _ => Parsed::Malformed,
    }
}

/// Internet checksum of `b`, continuing from `sum` (RFC 1071).
pub(super) fn checksum(mut sum: u32, b: &[u8]) -> u16 {
    let mut chunks = b.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// ICMPv6 checksum over the pseudo-header (`addrs` = source and destination,
/// 32 bytes) and the message.
pub(super) fn icmpv6_checksum(addrs: &[u8], m: &[u8]) -> u16 {
    let mut sum = 0u32;
    for c in addrs.chunks_exact(2) {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    let len = m.len() as u32;
    sum += (len >> 16) + (len & 0xffff) + u32::from(NH_ICMPV6);
    checksum(sum, m)
}

/// IGMPv3 max-response/QQIC code to its value (RFC 3376 4.1.1).
fn decode_code(code: u8) -> u32 {
    if code < 128 {
        u32::from(code)
    } else {
        (u32::from(code & 0x0f) | 0x10) << (((code >> 4) & 0x7) + 3)
    }
}

/// A value to an IGMPv3 code (the largest code not above it).
fn encode_code(v: u32) -> u8 {
    if v < 128 {
        return v as u8;
    }
    for exp in (0..8u32).rev() {
        let mant = v >> (exp + 3);
        if mant >= 0x10 {
            return 0x80 | ((exp as u8) << 4) | ((mant.min(0x1f) & 0x0f) as u8);
        }
    }
    127
}

/// The Ethernet MAC of an IP group (RFC 1112 6.4, RFC 2464 7).
pub fn group_mac(g: &IpAddr) -> MacAddr {
    match g {
        IpAddr::V4(a) => {
            let o = a.octets();
            MacAddr([0x01, 0x00, 0x5e, o[1] & 0x7f, o[2], o[3]])
        }
        IpAddr::V6(a) => {
            let o = a.octets();
            MacAddr([0x33, 0x33, o[12], o[13], o[14], o[15]])
        }
    }
}

/// What a query the switch sends says.
#[derive(Debug, Clone, Copy)]
pub struct QuerySpec {
    /// Source MAC of the frame.
    pub mac: MacAddr,
    /// The group for a group-specific query; `None` for a general query.
    pub group: Option<IpAddr>,
    /// Max response time.
    pub max_response: Duration,
    /// The querier's query interval (QQIC), for hosts.
    pub interval: Duration,
}

/// Where IGMP starts in a query frame: after Ethernet (14) and IPv4 with
/// Router Alert (24).
const IGMP_AT: usize = 14 + 24;
/// Where ICMPv6 starts in a query frame: after Ethernet (14), IPv6 (40) and
/// the Hop-by-Hop header (8).
const MLD_AT: usize = 14 + 40 + 8;

/// The Ethernet and IPv4 headers of an IGMP query of `igmp_len` bytes from
/// `source`: Router Alert, TTL 1, to 224.0.0.1 or the group. The IGMP
/// message goes after them; [`seal_igmp`] fills in its checksum.
pub(super) fn igmp_headers(spec: &QuerySpec, source: Ipv4Addr, igmp_len: u8) -> Vec<u8> {
    let dst = match spec.group {
        Some(IpAddr::V4(g)) => g,
        _ => Ipv4Addr::new(224, 0, 0, 1),
    };
    let mut f = Vec::with_capacity(IGMP_AT + usize::from(igmp_len));
    f.extend_from_slice(&group_mac(&dst.into()).0);
    f.extend_from_slice(&spec.mac.0);
    f.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    let ip = 14;
    let total = 24 + igmp_len;
    f.extend_from_slice(&[0x46, 0xc0, 0, total, 0, 0, 0, 0, 1, PROTO_IGMP, 0, 0]);
    f.extend_from_slice(&source.octets());
    f.extend_from_slice(&dst.octets());
    f.extend_from_slice(&[0x94, 0x04, 0, 0]); // Router Alert
    let c = checksum(0, &f[ip..ip + 24]);
    f[ip + 10..ip + 12].copy_from_slice(&c.to_be_bytes());
    f
}

/// The group an IGMP query asks about (0.0.0.0 for a general query).
pub(super) fn igmp_group(spec: &QuerySpec) -> [u8; 4] {
    match spec.group {
        Some(IpAddr::V4(g)) => g.octets(),
        _ => [0; 4],
    }
}

/// Writes the IGMP checksum of a query frame made on [`igmp_headers`].
pub(super) fn seal_igmp(f: &mut [u8]) {
    let c = checksum(0, &f[IGMP_AT..]);
    f[IGMP_AT + 2..IGMP_AT + 4].copy_from_slice(&c.to_be_bytes());
}

/// The Ethernet, IPv6 and Hop-by-Hop (Router Alert) headers of an MLD
/// query of `mld_len` bytes from link-local `source`: hop limit 1, to
/// ff02::1 or the group. [`seal_mld`] fills in the checksum.
pub(super) fn mld_headers(spec: &QuerySpec, source: Ipv6Addr, mld_len: u8) -> Vec<u8> {
    let dst = match spec.group {
        Some(IpAddr::V6(g)) => g,
        _ => Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1),
    };
    let mut f = Vec::with_capacity(MLD_AT + usize::from(mld_len));
    f.extend_from_slice(&group_mac(&dst.into()).0);
    f.extend_from_slice(&spec.mac.0);
    f.extend_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
    f.extend_from_slice(&[0x60, 0, 0, 0, 0, 8 + mld_len, NH_HOP_BY_HOP, 1]);
    f.extend_from_slice(&source.octets());
    f.extend_from_slice(&dst.octets());
    // Hop-by-Hop: next ICMPv6, Router Alert (MLD), PadN.
    f.extend_from_slice(&[NH_ICMPV6, 0, 5, 2, 0, 0, 1, 0]);
    f
}

/// The group an MLD query asks about (:: for a general query).
pub(super) fn mld_group(spec: &QuerySpec) -> [u8; 16] {
    match spec.group {
        Some(IpAddr::V6(g)) => g.octets(),
        _ => [0; 16],
    }
}

/// Writes the ICMPv6 checksum of a query frame made on [`mld_headers`].
pub(super) fn seal_mld(f: &mut [u8]) {
    let c = icmpv6_checksum(&f[14 + 8..14 + 40], &f[MLD_AT..]);
    f[MLD_AT + 2..MLD_AT + 4].copy_from_slice(&c.to_be_bytes());
}

/// An IGMPv3 query frame from `source` (RFC 3376 4.1): Ethernet, IPv4 with
/// Router Alert, TTL 1, to 224.0.0.1 or the group. IGMPv3 queries keep
/// IGMPv3 hosts in v3 mode; v1/v2 hosts answer them as v2 queries.
pub fn igmp_query(spec: &QuerySpec, source: Ipv4Addr) -> Vec<u8> {
    let mut f = igmp_headers(spec, source, 12);
    let tenths = (spec.max_response.as_millis() / 100).min(31744) as u32;
    f.extend_from_slice(&[0x11, encode_code(tenths), 0, 0]);
    f.extend_from_slice(&igmp_group(spec));
    let qqic = encode_code(spec.interval.as_secs().min(31744) as u32);
    f.extend_from_slice(&[0x02, qqic, 0, 0]); // S=0, QRV=2, no sources
    seal_igmp(&mut f);
    f
}

/// An MLDv2 query frame from link-local `source` (RFC 3810 5.1): Ethernet,
/// IPv6 with a Hop-by-Hop Router Alert, hop limit 1, to ff02::1 or the group.
pub fn mld_query(spec: &QuerySpec, source: Ipv6Addr) -> Vec<u8> {
    let mut f = mld_headers(spec, source, 28);
    let ms = spec.max_response.as_millis().min(32767) as u16;
    f.extend_from_slice(&[130, 0, 0, 0]);
    f.extend_from_slice(&ms.to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(&mld_group(spec));
    let qqic = encode_code(spec.interval.as_secs().min(31744) as u32);
    f.extend_from_slice(&[0x02, qqic, 0, 0]);
    seal_mld(&mut f);
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An IGMPv3 report as Linux sends it when a socket joins 239.1.2.3
    /// (any source): CHANGE_TO_EXCLUDE {} from 198.19.0.2 to 224.0.0.22.
    const V3_JOIN: &[u8] = &[
        0x46, 0xc0, 0x00, 0x28, 0x00, 0x00, 0x40, 0x00, 0x01, 0x02, 0x00, 0x00, 198, 19, 0, 2, 224,
        0, 0, 22, 0x94, 0x04, 0x00, 0x00, // IPv4 + RA (checksum not checked here)
        0x22, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, // type, resv, csum, resv, 1 record
        0x04, 0x00, 0x00, 0x00, 239, 1, 2, 3, // TO_EX, aux 0, 0 sources, group
    ];

    fn fix_igmp_checksum(p: &mut [u8]) {
        let ihl = usize::from(p[0] & 0xf) * 4;
        p[ihl + 2] = 0;
        p[ihl + 3] = 0;
        let c = checksum(0, &p[ihl..]);
        p[ihl + 2..ihl + 4].copy_from_slice(&c.to_be_bytes());
    }

    #[test]
    fn igmpv3_report_records() {
        let mut p = V3_JOIN.to_vec();
        fix_igmp_checksum(&mut p);
        let Parsed::Report(mut r) = parse(ETHERTYPE_IPV4, &p) else {
            panic!("{:?}", parse(ETHERTYPE_IPV4, &p));
        };
        let rec = r.next().unwrap().unwrap();
        assert_eq!(rec.kind, RecordType::ToExclude);
        assert_eq!(rec.group, IpAddr::from([239, 1, 2, 3]));
        assert_eq!(rec.source_count(), 0);
        assert!(r.next().is_none());
        // A bad checksum is malformed; a truncated record is an error, not a panic.
        p[30] ^= 1;
        assert_eq!(parse(ETHERTYPE_IPV4, &p), Parsed::Malformed);
        let mut p = V3_JOIN.to_vec();
        p[31] = 3; // three records claimed, one present
        fix_igmp_checksum(&mut p);
        let Parsed::Report(r) = parse(ETHERTYPE_IPV4, &p) else {
            panic!()
        };
        let v: Vec<_> = r.collect();
        assert_eq!(v.len(), 2);
        assert!(v[1].is_err());
    }

    #[test]
    fn igmp_v1_v2_messages_and_unknown_types() {
        let mk = |t: u8, code: u8, g: [u8; 4]| {
            let mut p = vec![
                0x45, 0, 0, 28, 0, 0, 0, 0, 1, 2, 0, 0, 198, 19, 0, 9, 224, 0, 0, 1,
            ];
            p.extend_from_slice(&[t, code, 0, 0]);
            p.extend_from_slice(&g);
            fix_igmp_checksum(&mut p);
            p
        };
        let g = IpAddr::from([239, 1, 1, 1]);
        assert_eq!(
            parse(ETHERTYPE_IPV4, &mk(0x16, 0, [239, 1, 1, 1])),
            Parsed::Join { group: g }
        );
        assert_eq!(
            parse(ETHERTYPE_IPV4, &mk(0x12, 0, [239, 1, 1, 1])),
            Parsed::Join { group: g }
        );
        assert_eq!(
            parse(ETHERTYPE_IPV4, &mk(0x17, 0, [239, 1, 1, 1])),
            Parsed::Leave { group: g }
        );
        assert_eq!(
            parse(ETHERTYPE_IPV4, &mk(0x99, 0, [0; 4])),
            Parsed::UnknownType(0x99)
        );
        let Parsed::Query(q) = parse(ETHERTYPE_IPV4, &mk(0x11, 0, [0; 4])) else {
            panic!()
        };
        assert_eq!(
            (q.group, q.max_response),
            (None, Duration::from_secs(10)),
            "v1 query"
        );
        let Parsed::Query(q) = parse(ETHERTYPE_IPV4, &mk(0x11, 10, [239, 1, 1, 1])) else {
            panic!()
        };
        assert_eq!((q.group, q.max_response), (Some(g), Duration::from_secs(1)));
    }

    #[test]
    fn built_queries_parse_back() {
        let spec = QuerySpec {
            mac: MacAddr([2, 0, 0, 0, 0, 0xfe]),
            group: None,
            max_response: Duration::from_secs(10),
            interval: Duration::from_secs(125),
        };
        let f = igmp_query(&spec, Ipv4Addr::new(198, 19, 0, 254));
        assert_eq!(&f[..6], &[1, 0, 0x5e, 0, 0, 1]);
        assert_eq!(checksum(0, &f[14..38]), 0, "IPv4 header checksum");
        let Parsed::Query(q) = parse(ETHERTYPE_IPV4, &f[14..]) else {
            panic!()
        };
        assert_eq!(q.source, IpAddr::from([198, 19, 0, 254]));
        assert_eq!((q.group, q.max_response), (None, Duration::from_secs(10)));
        assert_eq!(q.version, 3);
        let g: IpAddr = "ff15::1234".parse().unwrap();
        let spec = QuerySpec {
            group: Some(g),
            max_response: Duration::from_secs(1),
            ..spec
        };
        let src: Ipv6Addr = "fe80::ff:fe00:fe".parse().unwrap();
        let f = mld_query(&spec, src);
        assert_eq!(&f[..6], &[0x33, 0x33, 0, 0, 0x12, 0x34]);
        let Parsed::Query(q) = parse(ETHERTYPE_IPV6, &f[14..]) else {
            panic!("{:?}", parse(ETHERTYPE_IPV6, &f[14..]))
        };
        assert_eq!((q.family, q.version), (Family::V6, 2));
        assert_eq!((q.group, q.max_response), (Some(g), Duration::from_secs(1)));
    }

    #[test]
    fn codes_round_trip() {
        for v in [0, 1, 100, 127, 128, 1000, 31744] {
            let d = decode_code(encode_code(v));
            assert!(d <= v && d * 17 / 16 + 8 >= v, "{v} -> {d}");
        }
    }

    #[test]
    fn garbage_never_panics() {
        let mut x = 0x1234_5678u32;
        for len in 0..200 {
            let mut b = vec![0u8; len];
            for byte in &mut b {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                *byte = x as u8;
            }
            for (i, first) in [0x45u8, 0x46, 0x60].into_iter().enumerate() {
                if let Some(b0) = b.first_mut() {
                    *b0 = first;
                }
                let et = if i < 2 {
                    ETHERTYPE_IPV4
                } else {
                    ETHERTYPE_IPV6
                };
                if let Parsed::Report(r) = parse(et, &b) {
                    for rec in r.flatten() {
                        let _ = rec.sources().count();
                    }
                }
            }
        }
    }

    #[test]
    fn link_local_groups() {
        assert!(is_link_local_group(&"224.0.0.251".parse().unwrap()));
        assert!(!is_link_local_group(&"239.1.2.3".parse().unwrap()));
        assert!(is_link_local_group(&"ff02::1:ff00:1".parse().unwrap()));
        assert!(!is_link_local_group(&"ff15::1234".parse().unwrap()));
    }
}
