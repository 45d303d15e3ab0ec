//! Trunk announcements (the wire format is [`overlay_proto::announce`]):
//! each switch tells every other switch of the cluster, over their trunk
//! and per network, which VLANs it serves (those of its connected nodes'
//! ports) and which multicast groups are wanted behind it (groups with
//! members per VLAN, router ports; every group with snooping off). The
//! other switch then floods a VLAN's frames only to the switches serving
//! it, and sends a group's traffic only to those that want it. Works with
//! and without etcd.
//!
//! Sending ([`Announcer`]): the whole state with a generation number, sent
//! to every trunk that is up when it changed (noted by hooks: a node
//! connected or forgotten, IGMP/MLD or PIM from a node; and checked on
//! every sweep for what ages out), at most one generation per
//! [`ANNOUNCE_GAP`], so a burst of joins costs one announcement; resent
//! whole every [`ANNOUNCE_REFRESH`] (a lost part is made good then); and
//! sent to a trunk as soon as it comes up.
//!
//! Receiving ([`PeerAnnounced`], one per trunk): a generation is taken once
//! all its parts arrived; older generations are ignored. Safe defaults:
//! until a trunk's first complete announcement, and again after the trunk
//! went down, the other switch is sent everything (every flood, every
//! group), as without announcements. A malformed part, or one that would
//! take the held state past its bounds, is dropped and counted
//! (`trunk_announce`), and the generation it belonged to is forgotten.
//!
//! With the etcd view trusted too, the rule for multicast is the union:
//! each source that is fresh (the view: store connected and resynced; the
//! announcement: one complete generation held since the trunk came up)
//! says whether the other switch wants the group; a source that is not
//! fresh abstains; the switch is left out only if at least one source is
//! fresh and none of the fresh ones wants the group. Whichever source
//! learns of a join first resumes delivery; a stale source costs only
//! frames sent in vain, never frames lost. Floods are pruned by
//! announcements only (see `docs/ha.md`).
use std::collections::{BTreeSet, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use overlay_proto::announce::{self, Announce, MAX_GROUPS};

use super::Switch;
use crate::NodeId;
use crate::counters::DropReason;
use crate::vlan::Vid;

/// The least time between two generations: changes within it go out
/// together.
pub const ANNOUNCE_GAP: Duration = Duration::from_millis(100);
/// The whole state is sent again this often, changed or not.
pub const ANNOUNCE_REFRESH: Duration = Duration::from_secs(2);

/// VLANs 0..=4095 as bits.
type VlanBits = [u64; 64];

fn has(bits: &VlanBits, vid: Vid) -> bool {
    bits[(vid as usize / 64) & 63] & (1 << (vid % 64)) != 0
}

fn set(bits: &mut VlanBits, vid: Vid) {
    bits[(vid as usize / 64) & 63] |= 1 << (vid % 64);
}

/// The unspecified address of `group`'s family: a router wants it all.
fn any_of(group: &IpAddr) -> IpAddr {
    match group {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    }
}

/// What this network's engine announces to the other switches.
#[derive(Debug, Clone)]
pub(super) struct Announcer {
    epoch: u64,
    generation: u64,
    vlans: Vec<Vid>,
    groups: Vec<(Vid, IpAddr)>,
    all_groups: bool,
    /// The current generation, encoded.
    parts: Vec<Vec<u8>>,
    /// A change may have happened: look at this time.
    due: Option<Instant>,
    last_generation: Option<Instant>,
    last_sent: Option<Instant>,
    scratch: BTreeSet<(Vid, IpAddr)>,
}

impl Announcer {
    /// A new announcer; `epoch` must differ from any earlier run's.
    pub(super) fn new(epoch: u64) -> Announcer {
        Announcer {
            epoch,
            generation: 0,
            vlans: Vec::new(),
            groups: Vec::new(),
            all_groups: false,
            parts: Vec::new(),
            due: None,
            last_generation: None,
            last_sent: None,
            scratch: BTreeSet::new(),
        }
    }

    /// When the engine wants to look at a possible change.
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        self.due
    }
}

/// What the other switch on one trunk announced.
#[derive(Debug, Clone, Default)]
pub(crate) struct PeerAnnounced {
    held: Option<Box<State>>,
    assembling: Option<Box<State>>,
    /// Frames not sent to it because it does not want them.
    pub(super) pruned: u64,
}

/// One generation of a peer's state.
#[derive(Debug, Clone)]
struct State {
    epoch: u64,
    generation: u64,
    parts: u8,
    /// Parts received (assembling), by bit.
    got: u64,
    all_groups: bool,
    vlans: VlanBits,
    vlan_count: usize,
    groups: HashSet<(Vid, IpAddr)>,
}

impl PeerAnnounced {
    /// Whether the other switch gets floods of VLAN `vid`: it serves it, or
    /// it announced nothing yet.
    pub(super) fn serves(&self, vid: Vid) -> bool {
        self.held.as_ref().is_none_or(|h| has(&h.vlans, vid))
    }

    /// Whether it wants `group` in VLAN `vid`, per its announcement (`None`:
    /// none held).
    pub(super) fn wants(&self, vid: Vid, group: &IpAddr) -> Option<bool> {
        let h = self.held.as_ref()?;
        Some(
            (h.all_groups && has(&h.vlans, vid))
                || h.groups.contains(&(vid, *group))
                || h.groups.contains(&(vid, any_of(group))),
        )
    }

    /// The trunk went down: back to the safe default.
    pub(super) fn forget(&mut self) {
        self.held = None;
        self.assembling = None;
    }

    /// For status: (generation, VLANs, groups, every group) held.
    pub(super) fn summary(&self) -> Option<(u64, usize, usize, bool)> {
        let h = self.held.as_ref()?;
        Some((h.generation, h.vlan_count, h.groups.len(), h.all_groups))
    }

    /// Take one part.
    fn take(&mut self, a: &Announce<'_>) -> Result<(), DropReason> {
        let same = |s: &State| s.epoch == a.epoch;
        if self
            .held
            .as_ref()
            .is_some_and(|h| same(h) && a.generation <= h.generation)
        {
            return Ok(());
        }
        match self.assembling.as_deref() {
            Some(s) if same(s) && s.generation == a.generation => {
                if s.parts != a.parts || s.all_groups != a.all_groups {
                    self.assembling = None;
                    return Err(DropReason::TrunkAnnounce);
                }
            }
            Some(s) if same(s) && a.generation < s.generation => return Ok(()),
            _ => {
                self.assembling = Some(Box::new(State {
                    epoch: a.epoch,
                    generation: a.generation,
                    parts: a.parts,
                    got: 0,
                    all_groups: a.all_groups,
                    vlans: [0; 64],
                    vlan_count: 0,
                    groups: HashSet::new(),
                }))
            }
        }
        let Some(s) = self.assembling.as_deref_mut() else {
            return Ok(());
        };
        let bit = 1u64 << a.part;
        if s.got & bit != 0 {
            return Ok(());
        }
        s.got |= bit;
        for v in a.vlans() {
            if !has(&s.vlans, v) {
                set(&mut s.vlans, v);
                s.vlan_count += 1;
            }
        }
        for g in a.groups() {
            if s.groups.len() >= MAX_GROUPS && !s.groups.contains(&g) {
                self.assembling = None;
                return Err(DropReason::TrunkAnnounce);
            }
            s.groups.insert(g);
        }
        if s.got.count_ones() == u32::from(s.parts) {
            self.held = self.assembling.take();
        }
        Ok(())
    }
}

impl Switch {
    /// A control message on trunk `id`: only announcements.
    pub(super) fn handle_trunk_control(
        &mut self,
        id: NodeId,
        payload: &[u8],
    ) -> Result<(), DropReason> {
        if payload.first() != Some(&announce::TRUNK_ANNOUNCE) {
            return Err(DropReason::UnexpectedMessage);
        }
        let a = Announce::parse(payload).map_err(|_| DropReason::TrunkAnnounce)?;
        let t = self.ports[id.0 as usize]
            .trunk
            .as_mut()
            .ok_or(DropReason::UnexpectedMessage)?;
        t.peer.take(&a)
    }

    /// Something this switch announces may have changed (a node came or
    /// went, IGMP/MLD or PIM from a node): look soon.
    pub(super) fn note_announce_change(&mut self, now: Instant) {
        if let Some(a) = self.cluster.as_mut().map(|c| &mut c.announcer)
            && a.due.is_none()
        {
            let earliest = a.last_generation.map_or(now, |t| t + ANNOUNCE_GAP);
            a.due = Some(earliest.max(now));
        }
    }

    /// From `handle_timeout`: a noted change is due.
    pub(super) fn announce_due(&mut self, now: Instant) {
        let due = self.cluster.as_ref().and_then(|c| c.announcer.due);
        if due.is_some_and(|t| t <= now) {
            self.announce(now);
        }
    }

    /// On every sweep: build a new generation if the state changed, and
    /// send the whole state again if it is time.
    pub(super) fn announce_sweep(&mut self, now: Instant) {
        self.announce(now);
        let Some(a) = self.cluster.as_ref().map(|c| &c.announcer) else {
            return;
        };
        if a.last_sent.is_none_or(|t| now >= t + ANNOUNCE_REFRESH) {
            self.send_announcement(now, None);
        }
    }

    /// A flood copy not sent to trunk `id`: its switch does not want it.
    pub(super) fn note_pruned(&mut self, id: NodeId) {
        if let Some(t) = self.ports[id.0 as usize].trunk.as_mut() {
            t.peer.pruned += 1;
        }
    }

    /// Trunk `id` came up: it gets the state at once.
    pub(super) fn announce_to(&mut self, now: Instant, id: NodeId) {
        self.announce(now);
        self.send_announcement(now, Some(id));
    }

    /// Build a new generation (and send it to every trunk) if the state
    /// changed and the last generation is [`ANNOUNCE_GAP`] old.
    fn announce(&mut self, now: Instant) {
        let Some(mut c) = self.cluster.take() else {
            return;
        };
        let a = &mut c.announcer;
        let changed = match a.last_generation {
            Some(t) if now < t + ANNOUNCE_GAP => {
                a.due = Some(t + ANNOUNCE_GAP);
                false
            }
            _ => {
                a.due = None;
                self.rebuild(now, a)
            }
        };
        self.cluster = Some(c);
        if changed {
            self.send_announcement(now, None);
        }
    }

    /// Work out what to announce now; a new generation if it changed.
    fn rebuild(&self, now: Instant, a: &mut Announcer) -> bool {
        let nodes = (self.ports.iter()).filter(|p| !p.retired && !p.is_trunk() && p.is_connected());
        let vlans = super::member_vlans(nodes.map(|p| &p.spec));
        let all_groups = !self.snoop.is_enabled();
        let mut wanted = std::mem::take(&mut a.scratch);
        self.snoop.wanted_groups(now, &mut wanted);
        let same = vlans == a.vlans
            && all_groups == a.all_groups
            && wanted.len() == a.groups.len()
            && wanted.iter().eq(a.groups.iter());
        let build = !same || a.generation == 0;
        if build {
            a.vlans = vlans;
            a.all_groups = all_groups;
            a.groups.clear();
            a.groups.extend(wanted.iter().copied());
            a.generation += 1;
            a.last_generation = Some(now);
            announce::emit(
                a.epoch,
                a.generation,
                &a.vlans,
                &a.groups,
                a.all_groups,
                &mut a.parts,
            );
        }
        a.scratch = wanted;
        build
    }

    /// Send the current generation to trunk `to`, or to every trunk that
    /// is up.
    fn send_announcement(&mut self, now: Instant, to: Option<NodeId>) {
        let Some(mut c) = self.cluster.take() else {
            return;
        };
        for &id in &c.trunks {
            let p = &self.ports[id.0 as usize];
            let up = p.is_connected() && p.trunk.as_ref().is_some_and(|t| t.up_since.is_some());
            if to.is_some_and(|t| t != id) || !up {
                continue;
            }
            for part in &c.announcer.parts {
                self.send_control(now, id, part);
            }
        }
        if to.is_none() {
            c.announcer.last_sent = Some(now);
        }
        self.cluster = Some(c);
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use overlay_proto::announce::{MAX_ANNOUNCE_LEN, emit};

    use super::*;

    fn parts(epoch: u64, generation: u64, vlans: &[Vid], groups: &[(Vid, IpAddr)]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        emit(epoch, generation, vlans, groups, false, &mut out);
        out
    }

    fn take(p: &mut PeerAnnounced, b: &[u8]) -> Result<(), DropReason> {
        p.take(&Announce::parse(b).map_err(|_| DropReason::TrunkAnnounce)?)
    }

    fn v4(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0xef00_0000 | n))
    }

    #[test]
    fn a_generation_counts_once_whole_and_older_ones_are_ignored() {
        let mut p = PeerAnnounced::default();
        assert!(
            p.serves(7) && p.wants(7, &v4(1)).is_none(),
            "nothing held: everything"
        );
        let groups: Vec<(Vid, IpAddr)> = (0..300).map(|i| (7, v4(i))).collect();
        let two = parts(5, 2, &[7], &groups);
        assert!(two.len() > 1);
        take(&mut p, &two[1]).unwrap();
        assert!(p.summary().is_none(), "half a generation is not taken");
        take(&mut p, &two[0]).unwrap();
        assert_eq!(p.summary(), Some((2, 1, 300, false)));
        assert!(p.serves(7) && !p.serves(8));
        assert_eq!(p.wants(7, &v4(299)), Some(true));
        assert_eq!(p.wants(7, &v4(300)), Some(false));
        assert_eq!(p.wants(8, &v4(1)), Some(false));
        // An older generation, late: ignored.
        take(&mut p, &parts(5, 1, &[9], &[])[0]).unwrap();
        assert_eq!(p.summary(), Some((2, 1, 300, false)));
        // A router port wants every group of its family.
        let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        take(&mut p, &parts(5, 3, &[7], &[(7, any)])[0]).unwrap();
        assert_eq!(p.wants(7, &v4(12345)), Some(true));
        assert_eq!(p.wants(7, &"ff0e::1".parse().unwrap()), Some(false));
        // A restarted sender (new epoch) starts again from 1.
        take(&mut p, &parts(6, 1, &[], &[])[0]).unwrap();
        assert_eq!(p.summary(), Some((1, 0, 0, false)));
        p.forget();
        assert!(p.serves(7) && p.summary().is_none());
    }

    #[test]
    fn bad_and_oversized_parts_are_refused() {
        let mut p = PeerAnnounced::default();
        let mut b = parts(1, 1, &[7], &[(7, v4(1))]).remove(0);
        b[19] = 0x80;
        assert_eq!(
            take(&mut p, &b),
            Err(DropReason::TrunkAnnounce),
            "reserved flag"
        );
        let big = vec![0u8; MAX_ANNOUNCE_LEN + 1];
        assert_eq!(
            take(&mut p, &big),
            Err(DropReason::TrunkAnnounce),
            "oversized"
        );
        // Parts of one generation that disagree on their count: the
        // generation is dropped.
        let groups: Vec<(Vid, IpAddr)> = (0..300).map(|i| (7, v4(i))).collect();
        let mut two = parts(1, 2, &[7], &groups);
        take(&mut p, &two[0]).unwrap();
        two[1][18] = 3;
        assert_eq!(take(&mut p, &two[1]), Err(DropReason::TrunkAnnounce));
        assert!(p.summary().is_none());
        // More groups than a held state may have, over many parts.
        let many: Vec<(Vid, IpAddr)> = (0..MAX_GROUPS as u32 + 200).map(|i| (7, v4(i))).collect();
        let mut out = Vec::new();
        super::announce::emit(1, 3, &[7], &many[..MAX_GROUPS], false, &mut out);
        let mut extra = Vec::new();
        super::announce::emit(1, 3, &[], &many[MAX_GROUPS..], false, &mut extra);
        let n = out.len() + 1;
        let mut r = Ok(());
        for (i, mut b) in out.into_iter().chain(extra.into_iter().take(1)).enumerate() {
            b[17] = i as u8;
            b[18] = n as u8;
            r = take(&mut p, &b);
        }
        assert_eq!(r, Err(DropReason::TrunkAnnounce), "over MAX_GROUPS");
        assert!(p.summary().is_none());
    }

    #[test]
    fn trunk_control_other_than_announcements_is_unexpected() {
        let key = overlay_proto::keys::StaticSecret::generate(&mut rand::rng());
        let peer = overlay_proto::keys::StaticSecret::generate(&mut rand::rng());
        let now = Instant::now();
        let mut s = Switch::new(super::super::SwitchConfig::new(key, vec![]), now, 1);
        let cfg = crate::cluster::ClusterConfig {
            name: "s0".into(),
            etcd_endpoints: vec![],
            lease_ttl: Duration::from_secs(5),
            prefix: "/tapmesh".into(),
            etcd_credentials: Default::default(),
            switches: vec![crate::cluster::PeerSwitch {
                name: "s1".into(),
                public_key: peer.public_key(),
                endpoint: "198.18.0.4:7777".parse().unwrap(),
            }],
        };
        s.join_cluster(now, Duration::from_secs(1), "default", &cfg);
        let id = NodeId(0);
        assert_eq!(
            s.handle_trunk_control(id, &[6, 0, 0, 0, 0, 0, 0, 0, 1]),
            Err(DropReason::UnexpectedMessage)
        );
        assert_eq!(
            s.handle_trunk_control(id, &[10, 1]),
            Err(DropReason::TrunkAnnounce)
        );
        let ok = parts(1, 1, &[3], &[]);
        assert_eq!(s.handle_trunk_control(id, &ok[0]), Ok(()));
        assert_eq!(
            s.trunk_status(now)[0].announced.as_ref().map(|a| a.vlans),
            Some(1)
        );
    }
}
