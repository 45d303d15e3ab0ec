//! What snooping tells the other switches of a cluster: the groups wanted
//! behind this switch.
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use super::Snooping;
use crate::vlan::Vid;

impl Snooping {
    /// Put in `out` every (VLAN, group) with a live member here and, for
    /// each VLAN with a live router port, (VLAN, `0.0.0.0`) and (VLAN, `::`):
    /// a router wants every group of both families. Empty with snooping off
    /// (the other switches then send this one every group).
    pub fn wanted_groups(&self, now: Instant, out: &mut BTreeSet<(Vid, IpAddr)>) {
        out.clear();
        if !self.cfg.enabled {
            return;
        }
        for (&key, g) in &self.groups {
            if g.members.iter().any(|m| m.is_live(now)) {
                out.insert(key);
            }
        }
        for r in self.routers.iter().filter(|r| r.until > now) {
            out.insert((r.vid, IpAddr::V4(Ipv4Addr::UNSPECIFIED)));
            out.insert((r.vid, IpAddr::V6(Ipv6Addr::UNSPECIFIED)));
        }
    }

    /// Snooping is on.
    pub fn is_enabled(&self) -> bool {
        self.cfg.enabled
    }
}
