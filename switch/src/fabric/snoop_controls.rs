//! The snooping controls at the core: static router ports from the nodes'
//! specs, and the querier changed while running (see
//! `snooping::controls`).
use std::time::Instant;

use super::{Port, Switch};
use crate::NodeId;
use crate::snooping::controls::{QuerierChange, QuerierSettings};
use crate::vlan::Vid;

/// Per VLAN, the nodes configured `multicast-router = true` (retired ports
/// are none).
pub(super) fn static_router_ports(ports: &[Port]) -> Vec<(Vid, NodeId)> {
    ports
        .iter()
        .enumerate()
        .filter(|(_, p)| !p.retired && p.spec.multicast_router)
        .flat_map(|(i, p)| p.spec.vlan.vlans().map(move |v| (v, NodeId(i as u32))))
        .collect()
}

impl Switch {
    /// Change the built-in querier of this network now (see
    /// `snooping::controls`); returns its settings after the change, or
    /// why it was refused (nothing changed).
    pub fn set_querier(
        &mut self,
        now: Instant,
        c: &QuerierChange,
    ) -> Result<QuerierSettings, String> {
        self.snoop.set_querier(now, c)?;
        Ok(QuerierSettings::of(self.snoop.config()))
    }

    /// Whether [`set_querier`](Self::set_querier) would take `c`.
    pub fn check_querier(&self, c: &QuerierChange) -> Result<(), String> {
        self.snoop.config().with_querier_change(c).map(|_| ())
    }

    /// Tell the snooper which ports are static router ports now.
    pub(super) fn sync_static_routers(&mut self) {
        self.snoop
            .set_static_routers(static_router_ports(&self.ports));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use overlay_proto::keys::StaticSecret;

    use super::*;
    use crate::fabric::{NodeSpec, SwitchConfig};
    use crate::snooping::controls::QuerierRequest;

    fn config(routers: [bool; 2]) -> (SwitchConfig, StaticSecret) {
        let mut rng = rand::rng();
        let key = StaticSecret::generate(&mut rng);
        let nodes = ["h1", "h2"]
            .iter()
            .zip(routers)
            .map(|(name, multicast_router)| NodeSpec {
                multicast_router,
                ..NodeSpec::new(*name, StaticSecret::generate(&mut rng).public_key())
            })
            .collect();
        (SwitchConfig::new(key.clone(), nodes), key)
    }

    fn static_ports(s: &Switch, now: Instant) -> Vec<String> {
        s.status(now, false)
            .multicast
            .router_ports
            .into_iter()
            .filter(|r| r.kind == "static")
            .map(|r| r.node)
            .collect()
    }

    #[test]
    fn reload_moves_static_router_ports_and_keeps_the_querier_as_set_live() {
        let now = Instant::now();
        let (cfg, _) = config([false, true]);
        let mut s = Switch::new(cfg.clone(), now, 1);
        assert_eq!(static_ports(&s, now), ["h2"]);

        let change = QuerierRequest::parse("querier off version=2")
            .unwrap()
            .change;
        let set = s.set_querier(now, &change).unwrap();
        assert!(!set.enabled);
        assert_eq!((set.igmp_version, set.mld_version), (2, 1));

        // The same file, but h1 is the router port now: only that changes.
        let mut moved = cfg.clone();
        moved.nodes[0].multicast_router = true;
        moved.nodes[1].multicast_router = false;
        let changes = s.apply_config(now, moved.clone()).unwrap();
        assert_eq!(changes.changed, ["h1", "h2"]);
        assert!(changes.removed.is_empty() && changes.added.is_empty());
        assert!(!changes.settings);
        assert_eq!(static_ports(&s, now), ["h1"]);
        let q = &s.status(now, false).multicast.querier_settings[0];
        assert!(
            !q.enabled,
            "the live change holds while [multicast] is unchanged"
        );
        assert_eq!(q.igmp_version, 2);

        // [multicast] changed in the file: the file's querier applies.
        let mut file = moved;
        file.multicast.query_interval = Duration::from_secs(60);
        s.apply_config(now, file).unwrap();
        let q = &s.status(now, false).multicast.querier_settings[0];
        assert!(q.enabled);
        assert_eq!((q.igmp_version, q.query_interval_secs), (3, 60.0));
    }

    #[test]
    fn a_refused_querier_change_is_checked_before_anything_changes() {
        let now = Instant::now();
        let (cfg, _) = config([false, false]);
        let mut s = Switch::new(cfg, now, 1);
        let bad = QuerierRequest::parse("querier off response=300s")
            .unwrap()
            .change;
        assert!(s.check_querier(&bad).is_err());
        assert!(s.set_querier(now, &bad).is_err());
        assert!(s.status(now, false).multicast.querier_settings[0].enabled);
    }
}
