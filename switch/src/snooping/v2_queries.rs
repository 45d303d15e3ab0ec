//! IGMPv2 and MLDv1 queries, for labs whose hosts or routers expect the
//! older versions (RFC 2236 2, RFC 2710 3).
//!
//! Why: the built-in querier speaks IGMPv3/MLDv2 by default, which keeps
//! v3 hosts in v3 mode and is answered by v2 hosts too. A lab that tests
//! how hosts fall back (RFC 3376 7.2.1: a v3 host that hears a v2 query
//! answers in v2 for the older-version-querier interval), or a v2-only
//! router's view, needs the older queries on the wire. They are shorter:
//! no QRV/QQIC, no source list; the max response time is in tenths of a
//! second up to 25.5 s (IGMPv2) or milliseconds up to 65.5 s (MLDv1).
use std::net::{Ipv4Addr, Ipv6Addr};

use super::wire::{
    QuerySpec, igmp_group, igmp_headers, mld_group, mld_headers, seal_igmp, seal_mld,
};

/// An IGMPv2 query frame from `source`: Ethernet, IPv4 with Router Alert,
/// TTL 1, to 224.0.0.1 (general) or the group (group-specific).
pub fn igmp_v2_query(spec: &QuerySpec, source: Ipv4Addr) -> Vec<u8> {
    let mut f = igmp_headers(spec, source, 8);
    // Tenths of a second; 0 would read as an IGMPv1 query, so at least 1.
    let tenths = (spec.max_response.as_millis() / 100).clamp(1, 255) as u8;
    f.extend_from_slice(&[0x11, tenths, 0, 0]);
    f.extend_from_slice(&igmp_group(spec));
    seal_igmp(&mut f);
    f
}

/// An MLDv1 query frame from link-local `source`: Ethernet, IPv6 with a
/// Hop-by-Hop Router Alert, hop limit 1, to ff02::1 or the group.
pub fn mld_v1_query(spec: &QuerySpec, source: Ipv6Addr) -> Vec<u8> {
    let mut f = mld_headers(spec, source, 24);
    let ms = spec.max_response.as_millis().min(u128::from(u16::MAX)) as u16;
    f.extend_from_slice(&[130, 0, 0, 0]);
    f.extend_from_slice(&ms.to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(&mld_group(spec));
    seal_mld(&mut f);
    f
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use overlay_proto::ethernet::MacAddr;

    use std::net::IpAddr;

    use super::*;
    use crate::snooping::wire::{ETHERTYPE_IPV4, ETHERTYPE_IPV6, Family, Parsed, checksum, parse};

    const MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xfe]);

    fn spec(group: Option<IpAddr>, max_response: Duration) -> QuerySpec {
        QuerySpec {
            mac: MAC,
            group,
            max_response,
            interval: Duration::from_secs(125),
        }
    }

    /// The checksums here were computed apart from this code (RFC 1071 sum
    /// over the same bytes in a script), so a wrong checksum routine fails.
    #[test]
    fn igmpv2_general_query_bytes() {
        let f = igmp_v2_query(
            &spec(None, Duration::from_secs(10)),
            Ipv4Addr::new(198, 19, 0, 254),
        );
        #[rustfmt::skip]
        let want: &[u8] = &[
            1, 0, 0x5e, 0, 0, 1, 2, 0, 0, 0, 0, 0xfe, 0x08, 0x00,
            0x46, 0xc0, 0, 32, 0, 0, 0, 0, 1, 2, 0x7d, 0x05,
            198, 19, 0, 254, 224, 0, 0, 1, 0x94, 0x04, 0, 0,
            0x11, 100, 0xee, 0x9b, 0, 0, 0, 0,
        ];
        assert_eq!(f, want);
        let Parsed::Query(q) = parse(ETHERTYPE_IPV4, &f[14..]) else {
            panic!("{:?}", parse(ETHERTYPE_IPV4, &f[14..]))
        };
        assert_eq!((q.version, q.group), (2, None));
        assert_eq!(q.max_response, Duration::from_secs(10));
    }

    #[test]
    fn igmpv2_group_query_bytes_and_limits() {
        let g = IpAddr::from([239, 1, 2, 3]);
        let f = igmp_v2_query(
            &spec(Some(g), Duration::from_secs(1)),
            Ipv4Addr::new(198, 19, 0, 254),
        );
        assert_eq!(&f[..6], &[1, 0, 0x5e, 1, 2, 3]);
        assert_eq!(&f[24..26], &[0x6c, 0x02], "IPv4 header checksum");
        assert_eq!(&f[38..], &[0x11, 10, 0xfd, 0xf0, 239, 1, 2, 3]);
        // Codes stay in range: 25.5 s at most, never 0 (an IGMPv1 query).
        let long = igmp_v2_query(&spec(None, Duration::from_secs(60)), Ipv4Addr::UNSPECIFIED);
        assert_eq!(long[39], 255);
        let short = igmp_v2_query(
            &spec(None, Duration::from_millis(10)),
            Ipv4Addr::UNSPECIFIED,
        );
        assert_eq!(short[39], 1);
        assert_eq!(checksum(0, &short[38..]), 0);
        assert_eq!(checksum(0, &short[14..38]), 0);
    }

    #[test]
    fn mldv1_general_query_bytes() {
        let src: Ipv6Addr = "fe80::ff:fe00:fe".parse().unwrap();
        let f = mld_v1_query(&spec(None, Duration::from_secs(10)), src);
        assert_eq!(f.len(), 14 + 40 + 8 + 24);
        assert_eq!(&f[..6], &[0x33, 0x33, 0, 0, 0, 1]);
        assert_eq!(&f[14..22], &[0x60, 0, 0, 0, 0, 32, 0, 1]);
        #[rustfmt::skip]
        let mld: &[u8] = &[
            130, 0, 0x59, 0x1a, 0x27, 0x10, 0, 0,
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        assert_eq!(&f[62..], mld);
        let Parsed::Query(q) = parse(ETHERTYPE_IPV6, &f[14..]) else {
            panic!("{:?}", parse(ETHERTYPE_IPV6, &f[14..]))
        };
        assert_eq!((q.family, q.version, q.group), (Family::V6, 1, None));
        assert_eq!(q.max_response, Duration::from_secs(10));
        let g: IpAddr = "ff15::1234".parse().unwrap();
        let f = mld_v1_query(&spec(Some(g), Duration::from_secs(1)), src);
        assert_eq!(&f[..6], &[0x33, 0x33, 0, 0, 0x12, 0x34]);
        let Parsed::Query(q) = parse(ETHERTYPE_IPV6, &f[14..]) else {
            panic!()
        };
        assert_eq!((q.group, q.max_response), (Some(g), Duration::from_secs(1)));
    }
}
