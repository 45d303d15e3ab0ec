//! The other switches of a cluster in the human table: one line per trunk.
use std::fmt::Write;

use super::PeerSwitchStatus;
use super::table::human_bytes;

/// The trunks to the other switches, if any.
pub(super) fn render_switches(out: &mut String, switches: &[PeerSwitchStatus]) {
    if switches.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\n{:<16} {:<10} {:<4} {:<28} {:>9} {:>7} {:>5} {:>11} {:>9} {:>11} {:>9} {:>6} {:>6} {:>6} {:>8}",
        "SWITCH",
        "NETWORK",
        "UP",
        "ENDPOINT",
        "HANDSHAKE",
        "HEARD",
        "DOWNS",
        "RX FRAMES",
        "RX BYTES",
        "TX FRAMES",
        "TX BYTES",
        "MACS",
        "VLANS",
        "GROUPS",
        "PRUNED"
    );
    let ago = |s: Option<f64>| s.map_or_else(|| "-".into(), |s| format!("{s:.0}s ago"));
    for t in switches {
        // "-": nothing announced yet, it gets everything.
        let announced = match &t.announced {
            None => ("-".to_string(), "-".to_string()),
            Some(a) if a.all_groups => (a.vlans.to_string(), "all".to_string()),
            Some(a) => (a.vlans.to_string(), a.groups.to_string()),
        };
        let _ = writeln!(
            out,
            "{:<16} {:<10} {:<4} {:<28} {:>9} {:>7} {:>5} {:>11} {:>9} {:>11} {:>9} {:>6} {:>6} {:>6} {:>8}",
            t.name,
            t.network,
            if t.up { "yes" } else { "no" },
            t.endpoint.as_deref().unwrap_or("-"),
            ago(t.last_handshake_secs_ago),
            ago(t.last_heard_secs_ago),
            t.downs,
            t.rx_frames,
            human_bytes(t.rx_bytes),
            t.tx_frames,
            human_bytes(t.tx_bytes),
            t.macs,
            announced.0,
            announced.1,
            t.pruned_frames
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::table::render_table;

    #[test]
    fn table_lists_the_other_switches() {
        let t = render_table(
            r#"{"nodes":[],"switches":[{"network":"default","name":"sw2","up":true,"endpoint":"198.18.0.4:7777","last_heard_secs_ago":0.3,"downs":1,"rx_frames":7,"rx_bytes":3000,"tx_frames":9,"tx_bytes":100,"macs":2}]}"#,
        );
        let line = t.lines().find(|l| l.starts_with("sw2")).expect(&t);
        for want in ["default", "yes", "198.18.0.4:7777", "0s ago", "2.9K", "100"] {
            assert!(line.contains(want), "{want:?} in {line:?}");
        }
        assert!(t.contains("SWITCH"), "{t}");
        // Without a cluster: no such section.
        assert!(!render_table(r#"{"nodes":[]}"#).contains("SWITCH"));
    }

    #[test]
    fn table_shows_what_each_switch_announced() {
        let t = render_table(
            r#"{"nodes":[],"switches":[{"network":"default","name":"sw2","up":true,"announced":{"generation":4,"vlans":3,"groups":7},"pruned_frames":12},{"network":"default","name":"sw3","announced":{"vlans":1,"all_groups":true}},{"network":"default","name":"sw4"}]}"#,
        );
        let cols = |name: &str| -> Vec<String> {
            let line = t.lines().find(|l| l.starts_with(name)).expect(&t);
            line.split_whitespace()
                .rev()
                .take(3)
                .map(String::from)
                .collect()
        };
        assert!(
            t.contains("VLANS") && t.contains("GROUPS") && t.contains("PRUNED"),
            "{t}"
        );
        assert_eq!(cols("sw2"), ["12", "7", "3"]);
        assert_eq!(cols("sw3"), ["0", "all", "1"]);
        assert_eq!(cols("sw4"), ["0", "-", "-"], "nothing announced yet");
    }
}
