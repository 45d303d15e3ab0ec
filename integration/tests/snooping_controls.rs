//! Snooping controls for labs (issue 17 item 4) with the real binaries: a
//! static router port (`multicast-router = true`, set and unset by reload),
//! the querier turned off and on at runtime (`tapmesh-switch querier`), seen
//! in `tapmesh-switch groups` and in the queries on a TAP, and the group
//! table with members and sources after an IGMPv3 source-specific join.
use std::net::{IpAddr, Ipv4Addr};
use std::process::{Command, Output};
use std::time::Duration;

use integration::multicast::{group_frames, igmp_general_queries, join_v4, send, sender};
use integration::topology::{TAP, overlay_v4};
use integration::{Capture, Topology, bins, reload, wait_until};
use serde_json::Value;

const UP: Duration = Duration::from_secs(20);
/// How long the switch gets to learn a join.
const LEARN: Duration = Duration::from_secs(10);
/// Joined by h2 (any source).
const JOINED: Ipv4Addr = Ipv4Addr::new(239, 1, 2, 3);
/// Joined by h3, from h1 only (IGMPv3 INCLUDE).
const SSM: Ipv4Addr = Ipv4Addr::new(239, 1, 2, 4);
/// Joined by nobody.
const UNJOINED: Ipv4Addr = Ipv4Addr::new(239, 1, 2, 5);

/// `tapmesh-switch ARGS… --socket ADMIN`.
fn switch_cmd(topo: &Topology, args: &[&str]) -> Output {
    Command::new(bins::bin(bins::SWITCH))
        .args(args)
        .arg("--socket")
        .arg(topo.admin_socket())
        .output()
        .expect("run tapmesh-switch")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `tapmesh-switch groups --json`.
fn groups(topo: &Topology) -> Value {
    let out = switch_cmd(topo, &["groups", "--json"]);
    assert!(out.status.success(), "groups --json: {}", text(&out));
    serde_json::from_slice(&out.stdout).expect("groups --json is JSON")
}

fn group(g: &Value, group: Ipv4Addr) -> Option<&Value> {
    g["groups"]
        .as_array()?
        .iter()
        .find(|e| e["group"].as_str() == Some(&group.to_string()))
}

/// Who is the IPv4 querier (`us`, `other`, `none`) and its version.
fn v4_querier(g: &Value) -> (String, u64) {
    let q = g["queriers"]
        .as_array()
        .and_then(|a| a.iter().find(|q| q["family"] == "ipv4"))
        .unwrap_or_else(|| panic!("no ipv4 querier in {g}"));
    (
        q["querier"].as_str().unwrap_or("?").to_string(),
        q["version"].as_u64().unwrap_or(0),
    )
}

/// The IGMP general queries h`i`'s TAP receives while `during` runs and for
/// `window` after it starts.
fn queries_at(topo: &Topology, i: usize, window: Duration, during: impl FnOnce()) -> Vec<u8> {
    let cap = Capture::start(topo.ns(i), TAP);
    let started = std::time::Instant::now();
    during();
    std::thread::sleep(window.saturating_sub(started.elapsed()));
    igmp_general_queries(&cap.finish())
}

#[test]
fn a_static_router_port_gets_every_group_and_groups_shows_members_and_sources() {
    let mut topo = Topology::central(4);
    // Unregistered groups go to router ports only, so only the static port
    // makes h4 get them.
    topo.set_switch_config_extra("[multicast]\nflood-unregistered = false\n");
    topo.set_switch_node_entry_extra(4, "multicast-router = true");
    topo.start_all(UP);
    let _h2 = join_v4(&topo, 2, JOINED, None);
    let _h3 = join_v4(&topo, 3, SSM, Some(overlay_v4(1)));
    let learned = wait_until(LEARN, || {
        let g = groups(&topo);
        let h2 = group(&g, JOINED).map(|e| e["members"][0]["node"].clone());
        let h3 = group(&g, SSM).map(|e| e["members"][0]["sources"][0]["source"].clone());
        h2 == Some("h2".into()) && h3 == Some("198.19.0.1".into())
    });
    assert!(learned, "joins not in the group table: {}", groups(&topo));

    // `groups --json`: members with their filter mode, sources and timers,
    // and the static router port.
    let g = groups(&topo);
    let joined = group(&g, JOINED).expect("listed");
    assert_eq!(joined["members"][0]["mode"], "exclude", "{joined}");
    assert!(
        joined["expires_in_secs"].as_f64().unwrap_or(0.0) > 200.0,
        "{joined}"
    );
    let ssm = group(&g, SSM).expect("listed");
    let member = &ssm["members"][0];
    assert_eq!(
        (&member["node"], &member["mode"]),
        (&Value::from("h3"), &Value::from("include")),
        "{ssm}"
    );
    assert_eq!(member["sources"].as_array().map(Vec::len), Some(1), "{ssm}");
    assert!(
        member["sources"][0]["expires_in_secs"]
            .as_f64()
            .unwrap_or(0.0)
            > 200.0
    );
    assert!(member["any_source_expires_in_secs"].is_null(), "{ssm}");
    let statics: Vec<&Value> = g["router_ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["kind"] == "static")
        .collect();
    assert_eq!(statics.len(), 1, "{g}");
    assert_eq!(statics[0]["node"], "h4");
    let table = text(&switch_cmd(&topo, &["groups"]));
    assert!(table.contains("router ports: h4 (static)"), "{table}");
    assert!(table.contains("h3 include sources 198.19.0.1"), "{table}");
    // The same table is in `status --json`.
    let st = topo.switch_status();
    assert_eq!(
        st["multicast"]["router_ports"][0]["kind"], "static",
        "{}",
        st["multicast"]
    );

    // h1 sends to the joined group and to one nobody joined: the router
    // port gets both, the member its group, the non-member neither.
    let (cap2, cap3, cap4) = (
        Capture::start(topo.ns(2), TAP),
        Capture::start(topo.ns(3), TAP),
        Capture::start(topo.ns(4), TAP),
    );
    let tx = sender(&topo, 1, false);
    send(&tx, JOINED.into(), "joined", 20);
    send(&tx, UNJOINED.into(), "unjoined", 20);
    let (at2, at3, at4) = (cap2.finish(), cap3.finish(), cap4.finish());
    let count = |f: &[integration::Frame], g: Ipv4Addr| group_frames(f, IpAddr::V4(g));
    assert_eq!(count(&at2, JOINED), 20, "the member gets its group");
    assert_eq!(
        count(&at4, JOINED),
        20,
        "the router port gets a joined group"
    );
    assert_eq!(count(&at4, UNJOINED), 20, "and one nobody joined");
    assert_eq!(
        count(&at3, JOINED) + count(&at3, UNJOINED),
        0,
        "h3 joined neither"
    );
    assert_eq!(count(&at2, UNJOINED), 0);

    // Unset by a reload: h4 is an ordinary node again, its session kept.
    topo.set_switch_node_entry_extra(4, "");
    let r = reload::switch(&mut topo);
    assert_eq!(r.code, 0, "reload: {}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("changed h4"), "{}", r.stdout);
    let cap4 = Capture::start(topo.ns(4), TAP);
    let cap2 = Capture::start(topo.ns(2), TAP);
    send(&tx, UNJOINED.into(), "after", 20);
    send(&tx, JOINED.into(), "after", 20);
    let (at4, at2) = (cap4.finish(), cap2.finish());
    assert_eq!(count(&at2, JOINED), 20, "the member still gets its group");
    assert_eq!(
        count(&at4, UNJOINED) + count(&at4, JOINED),
        0,
        "h4 is no router port now"
    );
    topo.assert_all_running();
}

#[test]
fn the_querier_turned_off_and_on_at_runtime_shows_in_groups_and_on_the_wire() {
    let mut topo = Topology::central(2);
    topo.set_switch_config_extra(
        "[multicast]\nmembership-secs = 60\nquery-interval-secs = 2\nquery-response-secs = 1\nquerier-address = \"198.19.0.254\"\n",
    );
    topo.start_all(UP);
    let before = queries_at(&topo, 2, Duration::from_secs(5), || {});
    assert!(before.len() >= 2, "queries every 2 s: {before:?}");
    assert!(
        before.iter().all(|v| *v == 3),
        "IGMPv3 by default: {before:?}"
    );
    assert_eq!(v4_querier(&groups(&topo)), ("us".to_string(), 3));

    let off = switch_cmd(&topo, &["querier", "off"]);
    assert!(off.status.success(), "{}", text(&off));
    assert!(text(&off).contains("querier off"), "{}", text(&off));
    let g = groups(&topo);
    assert_eq!(v4_querier(&g).0, "none", "{g}");
    assert_eq!(g["querier_settings"][0]["enabled"], false);
    // A query already on its way may still land; then three intervals of silence.
    std::thread::sleep(Duration::from_millis(500));
    let silent = queries_at(&topo, 2, Duration::from_secs(6), || {});
    assert!(silent.is_empty(), "queries while off: {silent:?}");

    // On again, IGMPv2 every 3 s: a query at once, another after 0.75 s,
    // then one every 3 s (the default 125 s would give two in the window).
    let on = queries_at(&topo, 2, Duration::from_secs(8), || {
        let on = switch_cmd(
            &topo,
            &["querier", "on", "version=2", "interval=3s", "response=1s"],
        );
        assert!(on.status.success(), "{}", text(&on));
        assert!(
            text(&on).contains("IGMPv2/MLDv1, interval 3s"),
            "{}",
            text(&on)
        );
    });
    assert!(
        (3..=5).contains(&on.len()),
        "IGMPv2 every 3 s, startup: {on:?}"
    );
    assert!(on.iter().all(|v| *v == 2), "IGMPv2 now: {on:?}");
    let g = groups(&topo);
    assert_eq!(v4_querier(&g), ("us".to_string(), 2), "{g}");
    assert_eq!(g["querier_settings"][0]["query_interval_secs"], 3.0);

    // A bad word is a usage error; timers that do not fit are refused.
    let bad = switch_cmd(&topo, &["querier", "version=7"]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
    let refused = switch_cmd(&topo, &["querier", "response=5s"]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(text(&refused).contains("interval"), "{}", text(&refused));
    assert_eq!(
        groups(&topo)["querier_settings"][0]["query_response_secs"],
        1.0
    );
    topo.assert_all_running();
}
