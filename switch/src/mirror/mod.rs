//! Port mirroring (SPAN): copies of one node's frames on another node's TAP.
//!
//! A mirror session names a *source* node, a *destination* node, a direction
//! and optionally one VLAN. Directions are the switch's view of the source
//! port: `received` are the frames the source sent to the switch, `sent`
//! the frames the switch sent to the source (forwarded from others, or the
//! querier's), `both` is both. The destination gets each copy as the source
//! saw it, in the form the destination's port takes it:
//! - on a VLAN-unaware switch, as it is;
//! - an access destination (no `trunk`) gets every copy untagged;
//! - a trunk destination gets copies of its native VLAN untagged and every
//!   other VLAN's copies tagged with their VLAN, so an analyzer sees which
//!   VLAN each frame was in.
//!
//! Copies are sealed under the destination's session like any frame, and go
//! through its link's impairment. A frame the destination gets anyway (a
//! flood) still gets its copy, as on a hardware SPAN port. Mirroring never
//! loops: copies are not themselves mirrored (they do not pass the hooks),
//! and a frame that came from the destination is not mirrored back to it.
//!
//! Each session has a rate cap in frames per second (a GCRA bucket with one
//! second of burst, [`crate::storm`]'s); copies over it are dropped and
//! counted. An offloaded super-frame is one frame here.
//!
//! The sessions of a network live in its core ([`Mirrors`]); `switch.toml`
//! (`[[mirror]]`, `[[network.mirror]]`) and the admin socket ([`Request`])
//! add and remove them.
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::NodeId;
use crate::storm::{Bucket, Rate};
use crate::vlan::{EgressForm, PortVlan, Vid};

mod request;
pub use request::{Request, admin_request};

/// Frames per second a session copies unless it says otherwise.
pub const DEFAULT_RATE: u32 = 10_000;
/// Sessions one network may have (their names are metric labels).
pub const MAX_SESSIONS: usize = 64;
/// The longest session name.
pub const MAX_NAME_LEN: usize = 64;

/// Which of the source port's frames a session copies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MirrorDirection {
    /// Received and sent.
    #[default]
    Both,
    /// Frames the source sent to the switch.
    Received,
    /// Frames the switch sent to the source.
    Sent,
}

impl MirrorDirection {
    /// Its name in the config and on the admin socket.
    pub fn name(self) -> &'static str {
        match self {
            MirrorDirection::Both => "both",
            MirrorDirection::Received => "received",
            MirrorDirection::Sent => "sent",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<MirrorDirection> {
        [
            MirrorDirection::Both,
            MirrorDirection::Received,
            MirrorDirection::Sent,
        ]
        .into_iter()
        .find(|d| d.name() == s)
    }

    fn takes(self, seen: Seen) -> bool {
        match self {
            MirrorDirection::Both => true,
            MirrorDirection::Received => seen == Seen::Received,
            MirrorDirection::Sent => seen == Seen::Sent,
        }
    }
}

/// How a frame passed a port, from the switch's view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// The node sent it to the switch.
    Received,
    /// The switch sent it to the node.
    Sent,
}

/// A frame passing a port: the hooks' question to [`Mirrors::select`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Passage {
    /// The port.
    pub port: NodeId,
    /// Which way.
    pub seen: Seen,
    /// The frame's VLAN.
    pub vid: Vid,
    /// The node the frame came from (`None`: the switch made it).
    pub origin: Option<NodeId>,
}

/// One mirror session, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorSpec {
    /// Its name (unique on the switch; a metric label).
    pub name: String,
    /// The node whose frames are copied.
    pub source: String,
    /// The node whose TAP gets the copies.
    pub destination: String,
    /// Which frames.
    pub direction: MirrorDirection,
    /// Only frames of this VLAN, if set.
    pub vlan: Option<Vid>,
    /// Copies per second at most.
    pub rate: u32,
}

/// A setting's key and what is wrong with it.
pub type KeyProblem = (&'static str, String);

impl MirrorSpec {
    /// Both directions, any VLAN, the default rate.
    pub fn new(name: &str, source: &str, destination: &str) -> MirrorSpec {
        MirrorSpec {
            name: name.into(),
            source: source.into(),
            destination: destination.into(),
            direction: MirrorDirection::Both,
            vlan: None,
            rate: DEFAULT_RATE,
        }
    }

    /// What can be checked without the nodes: the name, two different
    /// nodes, a VLAN in range, a rate above 0.
    pub fn check(&self) -> Result<(), KeyProblem> {
        let n = &self.name;
        if n.is_empty() || n.len() > MAX_NAME_LEN {
            return Err(("name", format!("must be 1 to {MAX_NAME_LEN} characters")));
        }
        if !n
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err((
                "name",
                format!("{n:?} may hold only letters, digits, '-', '_' and '.'"),
            ));
        }
        if self.source.is_empty() {
            return Err(("source", "must name a node".into()));
        }
        if self.destination.is_empty() {
            return Err(("destination", "must name a node".into()));
        }
        if self.source == self.destination {
            return Err((
                "destination",
                format!("{:?} is also the source", self.destination),
            ));
        }
        if let Some(v) = self.vlan
            && !(1..=4094).contains(&v)
        {
            return Err(("vlan", format!("VLAN {v} is out of range 1..=4094")));
        }
        if self.rate == 0 {
            return Err(("rate", "must be greater than 0".into()));
        }
        Ok(())
    }

    /// Checks against the source's port: a VLAN filter needs a VLAN-aware
    /// switch and a source that is a member of the VLAN.
    pub fn check_vlan(&self, source: &PortVlan) -> Result<(), KeyProblem> {
        let Some(v) = self.vlan else {
            return Ok(());
        };
        if !source.is_aware() {
            return Err((
                "vlan",
                "the network is VLAN-unaware (no node has vlan or trunk)".into(),
            ));
        }
        if source.egress(v) == EgressForm::NotMember {
            return Err((
                "vlan",
                format!("node {:?} is not a member of VLAN {v}", self.source),
            ));
        }
        Ok(())
    }
}

impl std::fmt::Display for MirrorSpec {
    /// `h1 -> h3, both, vlan any, rate 10000/s`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} -> {}, {}, vlan ",
            self.source,
            self.destination,
            self.direction.name()
        )?;
        match self.vlan {
            Some(v) => write!(f, "{v}")?,
            None => write!(f, "any")?,
        }
        write!(f, ", rate {}/s", self.rate)
    }
}

/// What a session did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MirrorCounters {
    /// Copies sent to the destination.
    pub mirrored: u64,
    /// Copies dropped over the session's rate.
    pub dropped_rate: u64,
}

/// One session, for status and command replies.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct MirrorStatus {
    /// The network it belongs to.
    pub network: String,
    /// Its name.
    pub name: String,
    /// The node whose frames are copied.
    pub source: String,
    /// The node that gets the copies.
    pub destination: String,
    /// `both`, `received` or `sent`.
    pub direction: String,
    /// The VLAN it copies, if only one.
    pub vlan: Option<Vid>,
    /// Copies per second at most.
    pub rate: u32,
    /// From `switch.toml` (a reload may change it), else added at runtime.
    pub configured: bool,
    /// What it did.
    #[serde(flatten)]
    pub counters: MirrorCounters,
}

impl std::fmt::Display for MirrorStatus {
    /// `m1 (network default): h1 -> h3, both, vlan any, rate 10000/s;
    /// mirrored 12, dropped by rate 0`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let vlan = self.vlan.map_or_else(|| "any".into(), |v| v.to_string());
        write!(
            f,
            "{} (network {}): {} -> {}, {}, vlan {vlan}, rate {}/s; mirrored {}, dropped by rate {}",
            self.name,
            self.network,
            self.source,
            self.destination,
            self.direction,
            self.rate,
            self.counters.mirrored,
            self.counters.dropped_rate
        )
    }
}

#[derive(Debug, Clone)]
struct Session {
    spec: MirrorSpec,
    source: NodeId,
    destination: NodeId,
    configured: bool,
    bucket: Bucket,
    counters: MirrorCounters,
}

/// The mirror sessions of one network's core.
#[derive(Debug, Default)]
#[cfg_attr(fuzzing, derive(Clone))]
pub struct Mirrors {
    sessions: Vec<Session>,
    /// Destinations of the frame being mirrored (reused, never shrunk).
    pub(crate) targets: Vec<NodeId>,
    /// A copy in the other form (tag added or removed).
    pub(crate) scratch: Vec<u8>,
}

impl Mirrors {
    /// No sessions: the hooks return at once.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// The destinations that get a copy of the frame of `p`, put in `out`;
    /// counts each copy as mirrored or dropped by rate. A frame is never
    /// mirrored back to the node it came from; destinations that are not
    /// `connected` get nothing and count nothing.
    pub fn select(
        &mut self,
        now: Instant,
        p: Passage,
        connected: impl Fn(NodeId) -> bool,
        out: &mut Vec<NodeId>,
    ) {
        for s in &mut self.sessions {
            if s.source != p.port
                || !s.spec.direction.takes(p.seen)
                || s.spec.vlan.is_some_and(|v| v != p.vid)
                || p.origin == Some(s.destination)
                || !connected(s.destination)
            {
                continue;
            }
            let rate = Rate {
                per_sec: s.spec.rate,
                burst: s.spec.rate,
            };
            if s.bucket.allow(now, rate) {
                s.counters.mirrored += 1;
                out.push(s.destination);
            } else {
                s.counters.dropped_rate += 1;
            }
        }
    }

    /// Add a session between the ports `source` and `destination` (the
    /// nodes `spec` names), replacing one of the same name (its counters
    /// stay). `configured`: it comes from `switch.toml`.
    pub fn add(
        &mut self,
        spec: MirrorSpec,
        source: NodeId,
        destination: NodeId,
        configured: bool,
    ) -> Result<(), String> {
        let session = Session {
            spec,
            source,
            destination,
            configured,
            bucket: Bucket::default(),
            counters: MirrorCounters::default(),
        };
        match self.position(&session.spec.name) {
            Some(i) => {
                let counters = std::mem::take(&mut self.sessions[i].counters);
                self.sessions[i] = Session {
                    counters,
                    ..session
                };
            }
            None if self.sessions.len() >= MAX_SESSIONS => {
                return Err(format!(
                    "a network has at most {MAX_SESSIONS} mirror sessions"
                ));
            }
            None => self.sessions.push(session),
        }
        Ok(())
    }

    /// Remove session `name`; false if there is none.
    pub fn remove(&mut self, name: &str) -> bool {
        let before = self.sessions.len();
        self.sessions.retain(|s| s.spec.name != name);
        self.sessions.len() != before
    }

    fn position(&self, name: &str) -> Option<usize> {
        self.sessions.iter().position(|s| s.spec.name == name)
    }

    /// After a reload: the sessions of `file` (the new `switch.toml`)
    /// replace the configured ones, sessions added at runtime stay unless
    /// `file` names them; every session finds its nodes again by name
    /// (`resolve`: a node's port, if it is still admitted) and one whose
    /// node is gone ends. Returns whether any session changed.
    pub fn reload(
        &mut self,
        file: &[MirrorSpec],
        resolve: impl Fn(&str) -> Option<NodeId>,
    ) -> bool {
        let before: Vec<(MirrorSpec, NodeId, NodeId)> = self
            .sessions
            .iter()
            .map(|s| (s.spec.clone(), s.source, s.destination))
            .collect();
        self.sessions
            .retain(|s| !s.configured || file.iter().any(|f| f.name == s.spec.name));
        for spec in file {
            if self
                .position(&spec.name)
                .is_some_and(|i| self.sessions[i].spec == *spec && self.sessions[i].configured)
            {
                continue;
            }
            // Placeholder ports until they are resolved below; the count
            // cannot exceed the limit: the file was checked against it.
            let _ = self.add(spec.clone(), NodeId(u32::MAX), NodeId(u32::MAX), true);
        }
        self.sessions.retain_mut(|s| {
            match (resolve(&s.spec.source), resolve(&s.spec.destination)) {
                (Some(a), Some(b)) => {
                    s.source = a;
                    s.destination = b;
                    true
                }
                _ => false,
            }
        });
        let after: Vec<(MirrorSpec, NodeId, NodeId)> = self
            .sessions
            .iter()
            .map(|s| (s.spec.clone(), s.source, s.destination))
            .collect();
        before != after
    }

    /// Every session, for status (the network is left empty).
    pub fn status(&self) -> Vec<MirrorStatus> {
        self.sessions
            .iter()
            .map(|s| MirrorStatus {
                network: String::new(),
                name: s.spec.name.clone(),
                source: s.spec.source.clone(),
                destination: s.spec.destination.clone(),
                direction: s.spec.direction.name().into(),
                vlan: s.spec.vlan,
                rate: s.spec.rate,
                configured: s.configured,
                counters: s.counters.clone(),
            })
            .collect()
    }
}

/// The form a copy of a frame of VLAN `vid` takes towards a mirror
/// destination with port `dest` (see the module doc); never
/// [`EgressForm::NotMember`]: a SPAN port gets every copy.
pub fn copy_form(dest: &PortVlan, vid: Vid) -> EgressForm {
    match dest {
        PortVlan::Transparent => EgressForm::AsIs,
        PortVlan::Member { native, tagged } if *native == Some(vid) || tagged.is_empty() => {
            EgressForm::Untagged
        }
        PortVlan::Member { .. } => EgressForm::Tagged,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const A: NodeId = NodeId(0);
    const B: NodeId = NodeId(1);
    const C: NodeId = NodeId(2);

    fn mirrors(specs: &[MirrorSpec]) -> Mirrors {
        let mut m = Mirrors::default();
        for s in specs {
            let id = |n: &str| NodeId(u32::from(n.as_bytes()[0] - b'a'));
            m.add(s.clone(), id(&s.source), id(&s.destination), false)
                .unwrap();
        }
        m
    }

    fn pass(port: NodeId, seen: Seen, vid: Vid, origin: Option<NodeId>) -> Passage {
        Passage {
            port,
            seen,
            vid,
            origin,
        }
    }

    fn select(m: &mut Mirrors, now: Instant, port: NodeId, seen: Seen, vid: Vid) -> Vec<NodeId> {
        let mut out = Vec::new();
        m.select(now, pass(port, seen, vid, Some(port)), |_| true, &mut out);
        out
    }

    #[test]
    fn direction_picks_received_sent_or_both() {
        let now = Instant::now();
        for (dir, rx, tx) in [
            (MirrorDirection::Both, true, true),
            (MirrorDirection::Received, true, false),
            (MirrorDirection::Sent, false, true),
        ] {
            let mut m = mirrors(&[MirrorSpec {
                direction: dir,
                ..MirrorSpec::new("m", "a", "c")
            }]);
            let mut out = Vec::new();
            m.select(now, pass(A, Seen::Received, 0, Some(A)), |_| true, &mut out);
            assert_eq!(out == [C], rx, "{dir:?} received");
            out.clear();
            // Sent to A, from B.
            m.select(now, pass(A, Seen::Sent, 0, Some(B)), |_| true, &mut out);
            assert_eq!(out == [C], tx, "{dir:?} sent");
            // Frames of other ports are not this session's.
            assert!(select(&mut m, now, B, Seen::Received, 0).is_empty());
        }
    }

    #[test]
    fn never_back_to_where_the_frame_came_from_nor_to_a_disconnected_port() {
        let now = Instant::now();
        let mut m = mirrors(&[MirrorSpec::new("m", "a", "c")]);
        let mut out = Vec::new();
        // C sent this frame to A: C does not get it again.
        m.select(now, pass(A, Seen::Sent, 0, Some(C)), |_| true, &mut out);
        assert!(out.is_empty());
        m.select(now, pass(A, Seen::Sent, 0, Some(B)), |id| id != C, &mut out);
        assert!(out.is_empty());
        assert_eq!(m.status()[0].counters, MirrorCounters::default());
        // The querier's frames (no origin) are mirrored.
        m.select(now, pass(A, Seen::Sent, 0, None), |_| true, &mut out);
        assert_eq!(out, [C]);
    }

    #[test]
    fn vlan_filter_copies_one_vlan_only() {
        let now = Instant::now();
        let mut m = mirrors(&[MirrorSpec {
            vlan: Some(10),
            ..MirrorSpec::new("m", "a", "c")
        }]);
        assert_eq!(select(&mut m, now, A, Seen::Received, 10), [C]);
        assert!(select(&mut m, now, A, Seen::Received, 20).is_empty());
        assert_eq!(m.status()[0].counters.mirrored, 1);
    }

    #[test]
    fn rate_bounds_copies_and_counts_the_rest() {
        let t0 = Instant::now();
        let mut m = mirrors(&[MirrorSpec {
            rate: 10,
            ..MirrorSpec::new("m", "a", "c")
        }]);
        // 100 frames at once: one second's worth pass.
        let sent = (0..100)
            .filter(|_| !select(&mut m, t0, A, Seen::Received, 0).is_empty())
            .count();
        assert_eq!(sent, 10);
        let c = &m.status()[0].counters;
        assert_eq!((c.mirrored, c.dropped_rate), (10, 90));
        // A second later, ten more.
        let t1 = t0 + Duration::from_secs(1);
        let sent = (0..100)
            .filter(|_| !select(&mut m, t1, A, Seen::Received, 0).is_empty())
            .count();
        assert_eq!(sent, 10);
    }

    #[test]
    fn copy_form_as_a_span_port_takes_it() {
        let access = PortVlan::Member {
            native: Some(1),
            tagged: vec![],
        };
        let trunk = PortVlan::Member {
            native: Some(1),
            tagged: vec![10],
        };
        assert_eq!(copy_form(&PortVlan::Transparent, 0), EgressForm::AsIs);
        assert_eq!(copy_form(&access, 1), EgressForm::Untagged);
        assert_eq!(copy_form(&access, 20), EgressForm::Untagged);
        assert_eq!(copy_form(&trunk, 1), EgressForm::Untagged);
        assert_eq!(copy_form(&trunk, 10), EgressForm::Tagged);
        // Not a member of 20 on its port, but a SPAN port gets it, tagged.
        assert_eq!(copy_form(&trunk, 20), EgressForm::Tagged);
    }

    #[test]
    fn reload_replaces_configured_sessions_and_keeps_runtime_ones() {
        let id = |n: &str| match n {
            "a" => Some(A),
            "b" => Some(B),
            "c" => Some(C),
            _ => None,
        };
        let mut m = Mirrors::default();
        let file = [
            MirrorSpec::new("f1", "a", "c"),
            MirrorSpec::new("f2", "b", "c"),
        ];
        assert!(m.reload(&file, id));
        m.add(MirrorSpec::new("rt", "a", "b"), A, B, false).unwrap();
        assert!(!m.reload(&file, id), "the same file changes nothing");
        let names =
            |m: &Mirrors| -> Vec<String> { m.status().into_iter().map(|s| s.name).collect() };
        let changed = MirrorSpec {
            direction: MirrorDirection::Sent,
            ..MirrorSpec::new("f1", "a", "c")
        };
        assert!(m.reload(std::slice::from_ref(&changed), id));
        assert_eq!(names(&m), ["f1", "rt"]);
        assert_eq!(m.status()[0].direction, "sent");
        // Node b is gone: the runtime session that named it ends.
        assert!(m.reload(std::slice::from_ref(&changed), |n| {
            id(n).filter(|x| *x != B)
        }));
        assert_eq!(names(&m), ["f1"]);
    }

    #[test]
    fn sessions_are_bounded() {
        let mut m = Mirrors::default();
        for i in 0..MAX_SESSIONS {
            m.add(MirrorSpec::new(&format!("m{i}"), "a", "c"), A, C, false)
                .unwrap();
        }
        assert!(
            m.add(MirrorSpec::new("one-more", "a", "c"), A, C, false)
                .is_err()
        );
        // Replacing one is not one more.
        m.add(MirrorSpec::new("m0", "b", "c"), B, C, false).unwrap();
    }
}
