//! The simulated network: cores at addresses, a queue of datagrams between
//! them, and a clock that jumps.
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use overlay_proto::transmit::Transmit;
use overlay_proto::wire::{DATA_HEADER_LEN, DATA_OVERHEAD};
use tapmesh_node::engine::Node;
use tapmesh_switch::fabric::Switch;
use tapmesh_switch::networks::Networks;

use crate::faults::{Fate, Faults};

/// The outer API of a switch core, as the daemon's shell drives it.
pub trait SwitchCore {
    /// A datagram from `from` arrived.
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, buf: &mut [u8]);
    /// Time passed: run due timers.
    fn handle_timeout(&mut self, now: Instant);
    /// When [`handle_timeout`](Self::handle_timeout) next has work.
    fn poll_timeout(&self) -> Option<Instant>;
    /// The next datagram (or batch) to send.
    fn poll_transmit(&mut self) -> Option<Transmit<'_>>;
}

macro_rules! switch_core {
    ($t:ty) => {
        impl SwitchCore for $t {
            fn handle_datagram(&mut self, now: Instant, from: SocketAddr, buf: &mut [u8]) {
                <$t>::handle_datagram(self, now, from, buf)
            }
            fn handle_timeout(&mut self, now: Instant) {
                <$t>::handle_timeout(self, now)
            }
            fn poll_timeout(&self) -> Option<Instant> {
                <$t>::poll_timeout(self)
            }
            fn poll_transmit(&mut self) -> Option<Transmit<'_>> {
                <$t>::poll_transmit(self)
            }
        }
    };
}
switch_core!(Switch);
switch_core!(Networks);

/// The sender index [`Net::take_strays`] gives a datagram that no node sent.
pub const FROM_SWITCH: usize = usize::MAX;

/// One datagram on the simulated underlay.
#[derive(Debug, Clone)]
pub struct Datagram {
    /// Sender.
    pub from: SocketAddr,
    /// Destination.
    pub to: SocketAddr,
    /// The UDP payload.
    pub bytes: Vec<u8>,
    /// Datagrams handled before this one in its chain of answers.
    hops: usize,
    /// Already held back, or a copy (neither happens to it again).
    faulted: bool,
}

/// A switch core and node cores on a simulated underlay, in synthetic time.
#[derive(Debug)]
#[cfg_attr(fuzzing, derive(Clone))]
pub struct Net<S = Switch> {
    /// Now, in the simulation.
    pub now: Instant,
    /// The switch (`None` while it is down: datagrams to it are lost).
    pub switch: Option<S>,
    /// The switch's underlay address.
    pub switch_addr: SocketAddr,
    /// More switches (a cluster), each at its address (`None` while down).
    pub others: Vec<(SocketAddr, Option<S>)>,
    /// The node cores.
    pub nodes: Vec<Node>,
    /// Each node's underlay address.
    pub addrs: Vec<SocketAddr>,
    /// Frames each node wrote to its TAP, in order.
    pub tap: Vec<Vec<Vec<u8>>>,
    /// What the underlay does to datagrams.
    pub faults: Faults,
    /// Time [`advance`](Self::advance) moves per step (10 ms).
    pub step: Duration,
    /// A chain of answers to answers longer than this is cut short by
    /// [`deliver`](Self::deliver): the rest waits for the next call.
    pub max_hops: usize,
    /// Datagrams delivered to a core that this predicate accepts are counted
    /// per (sender, destination): [`observed`](Self::observed).
    pub observe: Option<fn(&[u8]) -> bool>,
    observed: HashMap<(SocketAddr, SocketAddr), u64>,
    wire: VecDeque<Datagram>,
    strays: Vec<Datagram>,
}

impl<S: SwitchCore> Net<S> {
    /// A network with `switch` (if up) at `switch_addr` and no nodes yet.
    pub fn new(now: Instant, switch_addr: SocketAddr, switch: Option<S>) -> Net<S> {
        Net {
            now,
            switch,
            switch_addr,
            others: Vec::new(),
            nodes: Vec::new(),
            addrs: Vec::new(),
            tap: Vec::new(),
            faults: Faults::default(),
            step: Duration::from_millis(10),
            max_hops: usize::MAX,
            observe: None,
            observed: HashMap::new(),
            wire: VecDeque::new(),
            strays: Vec::new(),
        }
    }

    /// Add `node` at `addr`; returns its index.
    pub fn add_node(&mut self, node: Node, addr: SocketAddr) -> usize {
        self.nodes.push(node);
        self.addrs.push(addr);
        self.tap.push(Vec::new());
        self.nodes.len() - 1
    }

    /// The switch.
    ///
    /// # Panics
    /// If it is down.
    pub fn switch(&self) -> &S {
        self.switch.as_ref().expect("the switch is up")
    }

    /// The switch, to change.
    ///
    /// # Panics
    /// If it is down.
    pub fn switch_mut(&mut self) -> &mut S {
        self.switch.as_mut().expect("the switch is up")
    }

    /// Add another switch at `addr` (a cluster); returns its index in
    /// [`others`](Self::others).
    pub fn add_switch(&mut self, core: S, addr: SocketAddr) -> usize {
        self.others.push((addr, Some(core)));
        self.others.len() - 1
    }

    /// Other switch `k`.
    ///
    /// # Panics
    /// If it is down.
    pub fn other(&mut self, k: usize) -> &mut S {
        self.others[k].1.as_mut().expect("the switch is up")
    }

    /// Switch `k` of a cluster: 0 is [`switch_mut`](Self::switch_mut),
    /// the others [`other`](Self::other)`(k - 1)`.
    ///
    /// # Panics
    /// If it is down.
    pub fn nth_switch(&mut self, k: usize) -> &mut S {
        if k == 0 {
            self.switch_mut()
        } else {
            self.other(k - 1)
        }
    }

    /// The node at `addr`.
    pub fn node_of(&self, addr: &SocketAddr) -> Option<usize> {
        self.addrs.iter().position(|a| a == addr)
    }

    /// Node `i` reads `frame` from its TAP; what it sends is delivered.
    /// Returns where the frame's datagram went (`None`: dropped, or in
    /// fragments queued in the node).
    pub fn send(&mut self, i: usize, frame: &[u8]) -> Option<SocketAddr> {
        let to = self.read_tap(i, frame);
        self.deliver();
        to
    }

    /// Node `i` reads `frame` from its TAP; its datagram is queued, not yet
    /// delivered. Returns where it goes, as [`send`](Self::send) does.
    pub fn read_tap(&mut self, i: usize, frame: &[u8]) -> Option<SocketAddr> {
        let mut buf = vec![0u8; DATA_HEADER_LEN + frame.len() + DATA_OVERHEAD];
        buf[DATA_HEADER_LEN..DATA_HEADER_LEN + frame.len()].copy_from_slice(frame);
        let r = self.nodes[i]
            .handle_tap_frame(self.now, &mut buf, frame.len())
            .ok()??;
        let dest = self.nodes[i].destination();
        self.inject(self.addrs[i], dest, buf[r].to_vec());
        Some(dest)
    }

    /// Put datagram `bytes` from `from` to `to` on the wire (delivered by
    /// the next [`deliver`](Self::deliver)).
    pub fn inject(&mut self, from: SocketAddr, to: SocketAddr, bytes: Vec<u8>) {
        self.wire.push_back(Datagram {
            from,
            to,
            bytes,
            hops: 0,
            faulted: false,
        });
    }

    /// Move datagrams until the wire is empty (or only chains longer than
    /// [`max_hops`](Self::max_hops) are left), in order: what a core sends
    /// when it gets a datagram goes behind what is already queued.
    pub fn deliver(&mut self) {
        for i in 0..self.nodes.len() {
            self.drain_node(i, 0);
        }
        self.drain_switch(0);
        for k in 0..self.others.len() {
            self.drain_other(k, 0);
        }
        let mut held = VecDeque::new();
        while let Some(d) = self.wire.pop_front() {
            if d.hops > self.max_hops {
                held.push_back(d);
                continue;
            }
            if let Some(forged) = self.faults.forge.and_then(|f| f(&d.bytes)) {
                let forged = Datagram {
                    bytes: forged,
                    ..d.clone()
                };
                self.hand(forged);
            }
            self.hand(d);
        }
        for mut d in held {
            d.hops = 0;
            self.wire.push_back(d);
        }
    }

    /// Deliver one datagram, as the underlay's faults allow.
    fn hand(&mut self, mut d: Datagram) {
        if self.faults.lose.is_some_and(|f| f(&d.bytes)) {
            return;
        }
        match self.faults.judge(d.from, d.to) {
            Fate::Drop => return,
            // A held-back datagram or a copy is not held back or copied again.
            Fate::Reorder | Fate::Duplicate if d.faulted => {}
            Fate::Reorder => {
                d.faulted = true;
                self.wire.push_back(d);
                return;
            }
            Fate::Duplicate => self.wire.push_back(Datagram {
                faulted: true,
                ..d.clone()
            }),
            Fate::Deliver => {}
        }
        let now = self.now;
        if d.to == self.switch_addr {
            if self.switch.is_none() {
                return;
            }
            self.count(&d);
            let sw = self.switch.as_mut().expect("checked above");
            sw.handle_datagram(now, d.from, &mut d.bytes);
            self.drain_switch(d.hops + 1);
        } else if let Some(k) = self.others.iter().position(|(a, _)| *a == d.to) {
            self.count(&d);
            if let Some(sw) = self.others[k].1.as_mut() {
                sw.handle_datagram(now, d.from, &mut d.bytes);
                self.drain_other(k, d.hops + 1);
            }
        } else if let Some(i) = self.node_of(&d.to) {
            self.count(&d);
            if let Some(f) = crate::node_receive(&mut self.nodes[i], now, d.from, &mut d.bytes) {
                self.tap[i].push(f.to_vec());
            }
            self.drain_node(i, d.hops + 1);
        } else {
            self.strays.push(d);
        }
    }

    fn count(&mut self, d: &Datagram) {
        if self.observe.is_some_and(|f| f(&d.bytes)) {
            *self.observed.entry((d.from, d.to)).or_default() += 1;
        }
    }

    fn drain_node(&mut self, i: usize, hops: usize) {
        let from = self.addrs[i];
        while let Some(t) = self.nodes[i].poll_transmit() {
            queue(&mut self.wire, from, &t, hops);
        }
    }

    fn drain_switch(&mut self, hops: usize) {
        let Some(sw) = self.switch.as_mut() else {
            return;
        };
        while let Some(t) = sw.poll_transmit() {
            queue(&mut self.wire, self.switch_addr, &t, hops);
        }
    }

    fn drain_other(&mut self, k: usize, hops: usize) {
        let (addr, sw) = &mut self.others[k];
        let Some(sw) = sw.as_mut() else {
            return;
        };
        while let Some(t) = sw.poll_transmit() {
            queue(&mut self.wire, *addr, &t, hops);
        }
    }

    /// Run the timers that are due now and deliver what they send.
    pub fn fire_timers(&mut self) {
        let now = self.now;
        if let Some(sw) = self.switch.as_mut()
            && sw.poll_timeout().is_some_and(|t| t <= now)
        {
            sw.handle_timeout(now);
        }
        for sw in self.others.iter_mut().filter_map(|(_, s)| s.as_mut()) {
            if sw.poll_timeout().is_some_and(|t| t <= now) {
                sw.handle_timeout(now);
            }
        }
        for n in &mut self.nodes {
            if n.poll_timeout().is_some_and(|t| t <= now) {
                n.handle_timeout(now);
            }
        }
        self.deliver();
    }

    /// Let `dt` pass at once, then [`fire_timers`](Self::fire_timers).
    pub fn tick(&mut self, dt: Duration) {
        self.now += dt;
        self.fire_timers();
    }

    /// Let `d` pass in [`step`](Self::step)s, running every due timer.
    pub fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.tick(self.step);
        }
    }

    /// Datagrams addressed to no switch and no node since the last
    /// call, as (sender's node index or [`FROM_SWITCH`], destination, bytes).
    pub fn take_strays(&mut self) -> Vec<(usize, SocketAddr, Vec<u8>)> {
        let strays = std::mem::take(&mut self.strays);
        strays
            .into_iter()
            .map(|d| (self.node_of(&d.from).unwrap_or(FROM_SWITCH), d.to, d.bytes))
            .collect()
    }

    /// Datagrams from `from` to `to` delivered that [`observe`](Self::observe)
    /// accepted.
    pub fn observed(&self, from: SocketAddr, to: SocketAddr) -> u64 {
        self.observed.get(&(from, to)).copied().unwrap_or(0)
    }

    /// Frames node `i` wrote to its TAP that carry `tag` (see [`crate::frames`]).
    pub fn received(&self, i: usize, tag: u32) -> usize {
        crate::frames::count_tag(&self.tap[i], tag)
    }

    /// Forget every TAP write so far.
    pub fn clear_tap(&mut self) {
        for t in &mut self.tap {
            t.clear();
        }
    }

    /// Cut node `i` off the underlay, or reconnect it.
    pub fn set_cut(&mut self, i: usize, cut: bool) {
        self.faults.set_cut(self.addrs[i], cut);
    }

    /// Block direct datagrams between nodes `i` and `j`, or unblock them.
    pub fn set_blocked(&mut self, i: usize, j: usize, blocked: bool) {
        self.faults
            .set_blocked(self.addrs[i], self.addrs[j], blocked);
    }
}

fn queue(wire: &mut VecDeque<Datagram>, from: SocketAddr, t: &Transmit<'_>, hops: usize) {
    for d in t.datagrams() {
        wire.push_back(Datagram {
            from,
            to: t.destination,
            bytes: d.to_vec(),
            hops,
            faulted: false,
        });
    }
}
