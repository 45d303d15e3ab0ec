//! `--switches 2`: two real switch processes peered with a static
//! `[cluster]` (`[[cluster.switch]]`, no etcd) on the namespace's loopback,
//! half the nodes homed on each; and the `[cluster]` section the MAC churn
//! phase gives its switch (with etcd).
use std::fmt::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use integration::{Netns, wait_until};
use overlay_proto::keys::StaticSecret;
use serde_json::{Value, json};

use crate::{SWITCH_PORT, SwitchConfig, SwitchUnderTest};

/// How long two fresh switches get to bring their trunk up.
const TRUNK_UP: Duration = Duration::from_secs(20);

/// Switch `i`'s name in the cluster.
pub fn name(i: usize) -> String {
    format!("sw{i}")
}

/// The `[cluster]` section of switch `own`: its etcd endpoints (none: static
/// peering only) and the other switches, `(index, key, endpoint)`.
pub fn section(
    own: usize,
    etcd: &[String],
    peers: &[(usize, &StaticSecret, SocketAddr)],
) -> String {
    let mut s = format!("\n[cluster]\nname = \"{}\"\n", name(own));
    if !etcd.is_empty() {
        let endpoints: Vec<String> = etcd.iter().map(|e| format!("\"{e}\"")).collect();
        let _ = writeln!(s, "etcd-endpoints = [{}]", endpoints.join(", "));
    }
    for (i, key, endpoint) in peers {
        let _ = write!(
            s,
            "\n[[cluster.switch]]\nname = \"{}\"\npublic-key = \"{}\"\nendpoint = \"{endpoint}\"\n",
            name(*i),
            key.public_key().to_base64()
        );
    }
    s
}

/// Starts two switches, each admitting every node in `nodes` and listing the
/// other as a peer, and waits until both see their trunk up.
pub fn start_peered(
    ns: &Netns,
    dir: &Path,
    switch_keys: &[StaticSecret],
    nodes: &[StaticSecret],
    mac_limit_per_node: usize,
) -> Result<Vec<SwitchUnderTest>, String> {
    let tags = ["tput2-0", "tput2-1"];
    let mut configs: Vec<SwitchConfig> = (0..2)
        .map(|i| SwitchConfig {
            port: SWITCH_PORT + i as u16,
            ..SwitchConfig::new(tags[i], &switch_keys[i], nodes, mac_limit_per_node)
        })
        .collect();
    for i in 0..2 {
        let other = &configs[1 - i];
        let peer = (1 - i, other.key, other.addr());
        configs[i].tail = section(i, &[], &[peer]);
    }
    let switches = configs
        .iter()
        .map(|c| SwitchUnderTest::start(ns, dir, c))
        .collect::<Result<Vec<_>, String>>()?;
    let up = |sw: &SwitchUnderTest| {
        sw.status().is_ok_and(|s| {
            s["switches"]
                .as_array()
                .is_some_and(|a| !a.is_empty() && a.iter().all(|t| t["up"] == true))
        })
    };
    if !wait_until(TRUNK_UP, || switches.iter().all(up)) {
        let st: Vec<Value> = switches
            .iter()
            .map(|sw| sw.status().map_or(Value::Null, |s| s["switches"].clone()))
            .collect();
        return Err(format!(
            "the trunk did not come up within {TRUNK_UP:?}: {st:?}"
        ));
    }
    Ok(switches)
}

/// Frames the switches sent and received on their trunks so far (all of
/// them summed).
pub fn trunk_frames(switches: &[SwitchUnderTest]) -> Result<(u64, u64), String> {
    let (mut tx, mut rx) = (0, 0);
    for sw in switches {
        let st = sw.status()?;
        for t in st["switches"].as_array().into_iter().flatten() {
            tx += t["tx_frames"].as_u64().unwrap_or(0);
            rx += t["rx_frames"].as_u64().unwrap_or(0);
        }
    }
    Ok((tx, rx))
}

/// Two switches against one, run by run (same frame size): the ratio of
/// frames/s end to end and of frames/s per switch core.
pub fn compare(one: &Value, two: &Value) -> Value {
    let runs = |d: &Value| d["runs"].as_array().cloned().unwrap_or_default();
    let ones = runs(one);
    let out: Vec<Value> = runs(two)
        .iter()
        .filter_map(|r2| {
            let r1 = ones
                .iter()
                .find(|r| r["frame_bytes"] == r2["frame_bytes"])?;
            let ratio = |k: &str| {
                let (a, b) = (r2[k].as_f64()?, r1[k].as_f64()?);
                (b > 0.0).then(|| a / b)
            };
            Some(json!({
                "frame_bytes": r2["frame_bytes"],
                "frames_per_sec_ratio": ratio("frames_per_sec"),
                "frames_per_sec_per_switch_core_ratio": ratio("frames_per_sec_per_switch_core"),
            }))
        })
        .collect();
    Value::Array(out)
}
