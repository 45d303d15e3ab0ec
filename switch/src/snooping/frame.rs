//! Classifying a multicast frame: where it goes, and what snooping learns from it.

use std::net::IpAddr;
use std::time::Instant;

use super::wire::{self, Parsed, RecordType};
use super::{Classified, FLOOD, FLOOD_CONTROL, ROUTERS_ONLY, Snooping, Verdict};
use crate::NodeId;
use crate::vlan::Vid;

impl Snooping {
    /// Decide where a multicast frame from `from` in VLAN `vid` goes, and
    /// learn from it if it is IGMP/MLD. `typed` is the frame from its (inner)
    /// ethertype on; `frame_len` its whole length, for the group's byte
    /// counter. For [`Verdict::Only`], the receivers are put in `targets`
    /// (cleared first, no duplicates, maybe including `from`).
    pub fn handle_frame(
        &mut self,
        now: Instant,
        vid: Vid,
        from: NodeId,
        typed: &[u8],
        frame_len: usize,
        targets: &mut Vec<NodeId>,
    ) -> Classified {
        // HOT PATH (multicast frames only)
        targets.clear();
        let parsed = match typed {
            [a, b, l3 @ ..] => wire::parse(u16::from_be_bytes([*a, *b]), l3),
            _ => Parsed::NotIp,
        };
        if !self.cfg.enabled {
            return match parsed {
                Parsed::NotIp => FLOOD,
                Parsed::Data { dst, .. } => Classified {
                    verdict: Verdict::Flood,
                    link_local: wire::is_link_local_group(&dst),
                },
                _ => FLOOD_CONTROL,
            };
        }
        match parsed {
            Parsed::NotIp => FLOOD,
            Parsed::Data { dst, source } => {
                if !dst.is_multicast() {
                    return FLOOD;
                }
                if wire::is_link_local_group(&dst) {
                    self.counters.link_local_frames += 1;
                    return FLOOD_CONTROL;
                }
                let registered = match self.groups.get_mut(&(vid, dst)) {
                    Some(g) if g.members.iter().any(|m| m.is_live(now)) => {
                        g.frames += 1;
                        g.bytes += frame_len as u64;
                        for m in &g.members {
                            if m.wants(now, &source) {
                                targets.push(m.node);
                            }
                        }
                        true
                    }
                    _ => false,
                };
                if registered {
                    self.counters.registered_frames += 1;
                } else {
                    self.counters.unregistered_frames += 1;
                    if self.cfg.flood_unregistered {
                        return FLOOD;
                    }
                }
                self.add_routers(now, vid, targets);
                Classified {
                    verdict: Verdict::Only,
                    link_local: false,
                }
            }
            Parsed::Query(q) => {
                self.counters.queries_received += 1;
                self.heard_query(now, vid, from, q);
                FLOOD_CONTROL
            }
            Parsed::RouterHello => {
                self.mark_router(now, vid, from);
                FLOOD_CONTROL
            }
            Parsed::Join { group } => {
                self.counters.reports += 1;
                if is_snoopable(&group) {
                    let until = now + self.cfg.membership;
                    if let Some(m) = self.member(vid, group, from) {
                        m.any_source_until = Some(until);
                    }
                }
                self.add_routers(now, vid, targets);
                ROUTERS_ONLY
            }
            Parsed::Leave { group } => {
                self.counters.leaves += 1;
                self.leave(now, vid, group, from, None);
                self.add_routers(now, vid, targets);
                ROUTERS_ONLY
            }
            Parsed::Report(records) => {
                self.counters.reports += 1;
                for r in records {
                    let Ok(r) = r else {
                        self.counters.malformed += 1;
                        break;
                    };
                    if !is_snoopable(&r.group) {
                        continue;
                    }
                    let until = now + self.cfg.membership;
                    match r.kind {
                        RecordType::IsInclude | RecordType::Allow => {
                            if r.source_count() > 0 {
                                self.include(vid, &r, from, until);
                            }
                        }
                        RecordType::IsExclude | RecordType::ToExclude => {
                            if let Some(m) = self.member(vid, r.group, from) {
                                m.any_source_until = Some(until);
                            }
                        }
                        RecordType::ToInclude => {
                            if r.source_count() > 0 {
                                self.include(vid, &r, from, until);
                            } else {
                                self.counters.leaves += 1;
                            }
                            // Leaving "any source" mode: a leave for that part.
                            self.leave(now, vid, r.group, from, None);
                        }
                        RecordType::Block => {
                            self.leave(now, vid, r.group, from, Some(&r));
                        }
                        RecordType::Unknown(_) => self.counters.unknown_records += 1,
                    }
                }
                self.add_routers(now, vid, targets);
                ROUTERS_ONLY
            }
            Parsed::UnknownType(_) => {
                // RFC 4541 2.1.2: unrecognised IGMP is flooded, not dropped.
                self.counters.unknown_types += 1;
                FLOOD_CONTROL
            }
            Parsed::Malformed => {
                self.counters.malformed += 1;
                FLOOD_CONTROL
            }
        }
    }
}

/// Groups whose membership is tracked: multicast, not link-local (those are
/// always flooded, so their reports, e.g. solicited-node MLD, leave no state).
fn is_snoopable(g: &IpAddr) -> bool {
    g.is_multicast() && !wire::is_link_local_group(g)
}
