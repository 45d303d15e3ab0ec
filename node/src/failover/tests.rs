use std::path::Path;
use std::time::{Duration, Instant};

use overlay_proto::keys::StaticSecret;
use tapmesh_shell::config::ConfigError;

use super::*;
use crate::config::Config;

fn target(i: u8) -> SwitchTarget {
    SwitchTarget {
        name: format!("sw{i}"),
        key: StaticSecret::generate(&mut rand::rng()).public_key(),
        addr: SocketAddr::from(([198, 18, 0, i], 7777)),
    }
}

#[test]
fn one_switch_never_fails_over() {
    let t0 = Instant::now();
    let h = Homes::new(t0, vec![target(1)]);
    assert!(!h.is_several());
    assert_eq!(h.poll_timeout(), None);
    assert!(!h.is_unanswered(t0 + Duration::from_secs(3600)));
}

#[test]
fn gives_up_on_an_unanswering_switch_and_wraps_around_slower() {
    let t0 = Instant::now();
    let mut h = Homes::new(t0, vec![target(1), target(2)]);
    assert_eq!(h.poll_timeout(), Some(t0 + HANDSHAKE_TIMEOUT));
    assert!(!h.is_unanswered(t0 + HANDSHAKE_TIMEOUT - Duration::from_millis(1)));
    let t1 = t0 + HANDSHAKE_TIMEOUT;
    assert!(h.is_unanswered(t1));
    assert_eq!(h.next(t1, FailoverCause::NoAnswer).name, "sw2");
    assert_eq!(h.poll_timeout(), Some(t1 + HANDSHAKE_TIMEOUT));
    // A whole round without a session: each switch gets twice as long.
    let t2 = t1 + HANDSHAKE_TIMEOUT;
    assert_eq!(h.next(t2, FailoverCause::NoAnswer).name, "sw1");
    assert_eq!(h.poll_timeout(), Some(t2 + HANDSHAKE_TIMEOUT * 2));
    assert_eq!(h.failovers(), 2);
    // A session: no deadline, the dwell starts over after the next loss.
    h.established();
    assert_eq!(h.poll_timeout(), None);
    let t3 = t2 + Duration::from_secs(60);
    h.lost(t3);
    assert_eq!(h.poll_timeout(), Some(t3 + HANDSHAKE_TIMEOUT));
    let s = h.status(t3);
    assert_eq!((s.home, s.failovers, s.failovers_no_answer), (0, 2, 2));
    assert_eq!(s.last_failover_cause, Some(FailoverCause::NoAnswer));
    assert_eq!(s.last_failover_from.as_deref(), Some("sw2"));
}

#[test]
fn announces_once_per_failover() {
    let t0 = Instant::now();
    let mut h = Homes::new(t0, vec![target(1), target(2)]);
    h.established();
    assert!(
        !h.take_announce(),
        "nothing to announce on the first switch"
    );
    h.next(t0, FailoverCause::Lost);
    h.established();
    assert!(h.take_announce());
    assert!(!h.take_announce());
}

/// Load `node.toml` with `switch` (the switch part) and a `[tap]`.
fn load(switch: &str) -> Result<Config, ConfigError> {
    crate::config::tests::load_switches(&format!("{switch}\n[tap]\n"))
}

fn key() -> String {
    StaticSecret::generate(&mut rand::rng())
        .public_key()
        .to_string()
}

fn entry(endpoint: &str, extra: &str) -> String {
    format!(
        "[[switch]]\nendpoint = \"{endpoint}\"\npublic-key = \"{}\"\n{extra}\n",
        key()
    )
}

#[test]
fn config_lists_switches_in_order() {
    let c = load(&(entry("198.18.0.3:7777", "name = \"sw1\"") + &entry("198.18.0.4:7777", "")))
        .unwrap();
    let s = &c.core.switches;
    assert_eq!(s.len(), 2);
    assert_eq!(s[0].name, "sw1");
    assert_eq!(
        s[1].name, "198.18.0.4:7777",
        "the endpoint names an unnamed switch"
    );
    assert_eq!(c.core.switch_addr, s[0].addr);
    assert_eq!(c.core.switch_key, s[0].key);
    // The single form still works, as one unnamed switch.
    let c = load(&format!(
        "switch = \"198.18.0.3:7777\"\nswitch-public-key = \"{}\"",
        key()
    ))
    .unwrap();
    assert_eq!(c.core.switches.len(), 1);
}

#[test]
fn config_refuses_bad_switch_lists_on_one_line() {
    let cases = [
        (
            format!(
                "switch-public-key = \"{}\"\n{}",
                key(),
                entry("198.18.0.3:7777", "")
            ),
            "switch-public-key",
        ),
        (
            "switch = \"198.18.0.3:7777\"".to_owned(),
            "switch-public-key",
        ),
        (entry("nowhere", ""), "switch[0].endpoint"),
        (
            entry("198.18.0.3:7777", "")
                + "[[switch]]\nendpoint = \"198.18.0.4:1\"\npublic-key = \"x\"\n",
            "switch[1].public-key",
        ),
        (entry("198.18.0.3:7777", "port = 1"), "switch[0].port"),
        (
            entry("198.18.0.3:7777", "") + "[[switch]]\nendpoint = \"198.18.0.4:1\"\n",
            "switch[1].public-key",
        ),
        (
            entry("198.18.0.3:7777", "") + &entry("[fd00::4]:7777", ""),
            "switch[1].endpoint",
        ),
        (
            entry("198.18.0.3:7777", "name = \"a\"") + &entry("198.18.0.4:7777", "name = \"a\""),
            "switch[1].public-key",
        ),
        ("switch = 7".to_owned(), "switch"),
        ("switch = []".to_owned(), "switch"),
    ];
    for (text, want) in cases {
        let e = load(&text).expect_err(&text);
        assert_eq!(e.key, want, "{text}: {e}");
        let line = e.to_string();
        assert!(!line.contains('\n'), "{line}");
        assert!(Path::new(&e.file).ends_with("node.toml"), "{line}");
    }
}
