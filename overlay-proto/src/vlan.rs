//! 802.1Q VLANs: which VLAN a frame from a node belongs to, which nodes are
//! members of a VLAN, and the frame's tagged or untagged form for each
//! receiving node.
//!
//! Why at the switch: nodes stay dumb (a TAP is one port); the switch is the
//! only place that sees every frame, so it is where VLAN membership is
//! enforced. In mesh mode the switch tells each node its own membership and
//! that of every peer it shares a VLAN with, and the receiving node applies
//! these same rules to frames that arrive on a direct path. A node is
//! - an **access** port (`vlan = 10`): untagged frames on its TAP, all in VLAN 10;
//! - a **trunk** (`trunk = [10, 20]`): frames tagged with their VLAN on its TAP;
//! - both (`vlan = 1` and `trunk = [10, 20]`): untagged frames are VLAN 1
//!   (the native VLAN), tagged ones carry 10 or 20.
//!
//! If no node in the config says `vlan` or `trunk`, the switch is
//! VLAN-unaware ([`PortVlan::Transparent`]): tags are payload, passed through
//! untouched, and every frame is in one domain ([`NO_VLAN`]), as before VLANs
//! existed. Once any node is VLAN-aware, nodes that say nothing are access
//! ports of [`DEFAULT_VLAN`] (a hardware switch's default).
//!
//! Ingress rules (counted as `vlan_filtered` drops): a tagged frame whose VLAN
//! the node is not a trunk member of, and an untagged frame from a node
//! without a native VLAN, are dropped. Tags carrying VLAN 0 (priority tags)
//! are treated as a VLAN the node is not a member of, which keeps the rules
//! simple and closes double-tagging tricks.
use crate::ethernet::Frame;
pub use crate::ethernet::{TPID_8021Q, VLAN_TAG_LEN};
use crate::vnet::VnetHdr;

/// A VLAN id (1..=4094), or [`NO_VLAN`] on a VLAN-unaware switch.
pub type Vid = u16;

/// The single domain of a VLAN-unaware switch.
pub const NO_VLAN: Vid = 0;
/// The access VLAN of nodes that do not say, on a VLAN-aware switch.
pub const DEFAULT_VLAN: Vid = 1;

/// A node's VLAN membership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortVlan {
    /// VLAN-unaware switch: frames pass as they are, all in [`NO_VLAN`].
    Transparent,
    /// VLAN-aware switch.
    Member {
        /// Untagged frames belong to this VLAN (access or native VLAN).
        native: Option<Vid>,
        /// VLANs carried tagged (trunk), sorted, without duplicates.
        tagged: Vec<Vid>,
    },
}

/// How a frame arrived: its VLAN and whether it carried a tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ingress {
    /// The VLAN it belongs to.
    pub vid: Vid,
    /// It carries an 802.1Q tag (bytes 12..16).
    pub tagged: bool,
}

impl Ingress {
    /// Offset of the frame's ethertype (the inner one if tagged).
    pub fn ethertype_offset(&self) -> usize {
        if self.tagged { 16 } else { 12 }
    }
}

/// The form a frame must have on a node's TAP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EgressForm {
    /// The node is not a member of the frame's VLAN.
    NotMember,
    /// Without a tag.
    Untagged,
    /// With a tag carrying the VLAN.
    Tagged,
    /// As it arrived (VLAN-unaware switch).
    AsIs,
}

impl EgressForm {
    /// Whether a frame that arrived as `ing` leaves in the form it arrived
    /// in (`Some(true)`), in the other form (`Some(false)`), or not at all.
    pub fn keeps_form(self, ing: Ingress) -> Option<bool> {
        // HOT PATH
        match self {
            EgressForm::NotMember => None,
            EgressForm::AsIs => Some(true),
            EgressForm::Untagged => Some(!ing.tagged),
            EgressForm::Tagged => Some(ing.tagged),
        }
    }
}

impl PortVlan {
    /// Is the switch VLAN-aware for this port?
    pub fn is_aware(&self) -> bool {
        matches!(self, PortVlan::Member { .. })
    }

    /// Classify a frame received from this node; `None` means drop it.
    /// `frame` is at least an Ethernet header long.
    pub fn ingress(&self, frame: &[u8]) -> Option<Ingress> {
        // HOT PATH
        let PortVlan::Member { native, tagged } = self else {
            return Some(Ingress {
                vid: NO_VLAN,
                tagged: false,
            });
        };
        match tag_vid(frame) {
            None => native.map(|vid| Ingress { vid, tagged: false }),
            Some(vid) if tagged.binary_search(&vid).is_ok() => Some(Ingress { vid, tagged: true }),
            Some(_) => None,
        }
    }

    /// The form a frame of VLAN `vid` takes towards this node.
    pub fn egress(&self, vid: Vid) -> EgressForm {
        // HOT PATH
        match self {
            PortVlan::Transparent => EgressForm::AsIs,
            PortVlan::Member { native, .. } if *native == Some(vid) => EgressForm::Untagged,
            PortVlan::Member { tagged, .. } if tagged.binary_search(&vid).is_ok() => {
                EgressForm::Tagged
            }
            PortVlan::Member { .. } => EgressForm::NotMember,
        }
    }

    /// This port as a node on `viewer` may see it in mesh mode: only the
    /// VLANs both are members of (its native VLAN kept only if `viewer` is a
    /// member of it). `None` if they share no VLAN, or if one is VLAN-aware
    /// and the other not (a mixed view never admits a frame).
    pub fn shared_with(&self, viewer: &PortVlan) -> Option<PortVlan> {
        match (self, viewer) {
            (PortVlan::Transparent, PortVlan::Transparent) => Some(PortVlan::Transparent),
            (PortVlan::Member { native, tagged }, PortVlan::Member { .. }) => {
                let member = |v: &Vid| viewer.egress(*v) != EgressForm::NotMember;
                let native = native.filter(member);
                let tagged: Vec<Vid> = tagged.iter().copied().filter(member).collect();
                (native.is_some() || !tagged.is_empty())
                    .then_some(PortVlan::Member { native, tagged })
            }
            _ => None,
        }
    }

    /// The VLAN of this port's untagged frames, if it takes any.
    pub fn native(&self) -> Option<Vid> {
        match self {
            PortVlan::Transparent => Some(NO_VLAN),
            PortVlan::Member { native, .. } => *native,
        }
    }

    /// Every VLAN this port is a member of.
    pub fn vlans(&self) -> impl Iterator<Item = Vid> + '_ {
        let (native, tagged): (Option<Vid>, &[Vid]) = match self {
            PortVlan::Transparent => (Some(NO_VLAN), &[]),
            PortVlan::Member { native, tagged } => (*native, tagged),
        };
        native.into_iter().chain(tagged.iter().copied())
    }
}

/// The VLAN id of an 802.1Q-tagged frame (12 bits of the TCI), or `None` if
/// the frame is untagged or too short to hold a tag and an ethertype.
pub fn tag_vid(frame: &[u8]) -> Option<Vid> {
    Some(Frame::new_checked(frame).ok()?.vlan()?.vid())
}

/// Whether `frame` says it is 802.1Q-tagged (once, or again inside its tag)
/// but is too short to hold a tag and the ethertype after it. Such a frame is
/// dropped as a runt: forwarded as untagged, or with its outer tag removed,
/// it would reach the other side as a tag cut short (found by the
/// `forwarding` fuzz target).
pub fn is_truncated_tag(frame: &[u8]) -> bool {
    let mut at = 12;
    while frame.get(at..at + 2) == Some(&TPID_8021Q.to_be_bytes()[..]) {
        if frame.len() < at + VLAN_TAG_LEN + 2 {
            return true;
        }
        at += VLAN_TAG_LEN;
    }
    false
}

/// Write into `out` the other form of `frame`: with `ingress.tagged`, the
/// frame without its tag; else the frame with a tag for `ingress.vid`
/// inserted. Returns the virtio header adjusted for the 4 bytes that moved.
pub fn other_form(
    frame: &[u8],
    ingress: Ingress,
    vnet: Option<VnetHdr>,
    out: &mut Vec<u8>,
) -> Option<VnetHdr> {
    out.clear();
    append_other_form(frame, ingress, vnet, out)
}

/// As [`other_form`], but appending to `out` (after a virtio header the
/// caller left room for, say).
pub fn append_other_form(
    frame: &[u8],
    ingress: Ingress,
    vnet: Option<VnetHdr>,
    out: &mut Vec<u8>,
) -> Option<VnetHdr> {
    out.extend_from_slice(&frame[..12]);
    let grow = !ingress.tagged;
    if grow {
        out.extend_from_slice(&TPID_8021Q.to_be_bytes());
        out.extend_from_slice(&(ingress.vid & 0x0fff).to_be_bytes());
        out.extend_from_slice(&frame[12..]);
    } else {
        out.extend_from_slice(&frame[12 + VLAN_TAG_LEN..]);
    }
    vnet.map(|mut h| {
        let shift = |v: u16| {
            if v == 0 {
                0
            } else if grow {
                v.saturating_add(VLAN_TAG_LEN as u16)
            } else {
                v.saturating_sub(VLAN_TAG_LEN as u16)
            }
        };
        h.csum_start = shift(h.csum_start);
        h.hdr_len = shift(h.hdr_len);
        h
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tpid_without_room_for_the_tag_is_truncated() {
        let mut f = untagged();
        f[12..14].copy_from_slice(&TPID_8021Q.to_be_bytes());
        f.resize(18, 0);
        for n in 14..18 {
            assert!(is_truncated_tag(&f[..n]), "{n} bytes");
        }
        assert!(!is_truncated_tag(&f));
        assert!(!is_truncated_tag(&untagged()[..14]));
        // A second tag inside the first needs its own 4 bytes and an ethertype.
        f[16..18].copy_from_slice(&TPID_8021Q.to_be_bytes());
        f.resize(22, 0);
        for n in 18..22 {
            assert!(is_truncated_tag(&f[..n]), "double, {n} bytes");
        }
        assert!(!is_truncated_tag(&f));
    }

    fn untagged() -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x08, 0x00, 0x45, 0]);
        f
    }

    fn access(v: Vid) -> PortVlan {
        PortVlan::Member {
            native: Some(v),
            tagged: vec![],
        }
    }

    fn trunk(v: &[Vid]) -> PortVlan {
        PortVlan::Member {
            native: None,
            tagged: v.to_vec(),
        }
    }

    #[test]
    fn access_and_trunk_ingress() {
        let f = untagged();
        let ing = access(10).ingress(&f).unwrap();
        assert_eq!(
            ing,
            Ingress {
                vid: 10,
                tagged: false
            }
        );
        assert_eq!(
            trunk(&[10, 20]).ingress(&f),
            None,
            "untagged on a trunk without native VLAN"
        );
        let mut t = Vec::new();
        other_form(&f, ing, None, &mut t);
        assert_eq!(&t[12..16], &[0x81, 0x00, 0x00, 10]);
        assert_eq!(&t[16..], &f[12..]);
        assert_eq!(tag_vid(&t), Some(10));
        assert_eq!(
            trunk(&[10, 20]).ingress(&t),
            Some(Ingress {
                vid: 10,
                tagged: true
            })
        );
        assert_eq!(trunk(&[20]).ingress(&t), None);
        assert_eq!(
            access(10).ingress(&t),
            None,
            "tagged frames on an access port are dropped"
        );
        let mut back = Vec::new();
        other_form(
            &t,
            Ingress {
                vid: 10,
                tagged: true,
            },
            None,
            &mut back,
        );
        assert_eq!(back, f);
        assert_eq!(
            PortVlan::Transparent.ingress(&t),
            Some(Ingress {
                vid: NO_VLAN,
                tagged: false
            })
        );
    }

    #[test]
    fn egress_forms() {
        let hybrid = PortVlan::Member {
            native: Some(1),
            tagged: vec![10, 20],
        };
        assert_eq!(hybrid.egress(1), EgressForm::Untagged);
        assert_eq!(hybrid.egress(20), EgressForm::Tagged);
        assert_eq!(hybrid.egress(30), EgressForm::NotMember);
        assert_eq!(access(10).egress(20), EgressForm::NotMember);
        assert_eq!(PortVlan::Transparent.egress(NO_VLAN), EgressForm::AsIs);
        assert_eq!(hybrid.vlans().collect::<Vec<_>>(), vec![1, 10, 20]);
    }

    #[test]
    fn a_port_seen_by_another_keeps_only_shared_vlans() {
        let hybrid = PortVlan::Member {
            native: Some(1),
            tagged: vec![10, 20],
        };
        assert_eq!(access(10).shared_with(&hybrid), Some(access(10)));
        assert_eq!(hybrid.shared_with(&access(10)), Some(trunk(&[10])));
        assert_eq!(hybrid.shared_with(&access(1)), Some(access(1)));
        assert_eq!(access(10).shared_with(&access(20)), None);
        assert_eq!(trunk(&[30]).shared_with(&hybrid), None);
        assert_eq!(
            PortVlan::Transparent.shared_with(&PortVlan::Transparent),
            Some(PortVlan::Transparent)
        );
        assert_eq!(access(1).shared_with(&PortVlan::Transparent), None);
        assert_eq!(PortVlan::Transparent.shared_with(&access(1)), None);
    }

    #[test]
    fn vnet_offsets_follow_the_tag() {
        let f = untagged();
        let h = VnetHdr {
            csum_start: 34,
            hdr_len: 54,
            ..VnetHdr::default()
        };
        let mut t = Vec::new();
        let h2 = other_form(
            &f,
            Ingress {
                vid: 5,
                tagged: false,
            },
            Some(h),
            &mut t,
        )
        .unwrap();
        assert_eq!((h2.csum_start, h2.hdr_len), (38, 58));
    }

    #[test]
    fn short_frames_are_untagged() {
        assert_eq!(tag_vid(&[0; 14]), None);
        let mut f = vec![0; 17];
        f[12] = 0x81;
        assert_eq!(tag_vid(&f), None);
    }
}
