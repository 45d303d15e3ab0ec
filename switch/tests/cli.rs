//! The `tapmesh-switch` binary's command line: key commands, config errors,
//! `check` and `--version`.
//! (These also make `cargo test` build the binary the namespace tests run.)
use std::path::Path;

use tapmesh_shell::testing::{
    check_check_command, check_config_errors, check_key_commands, check_key_file_mode_warning,
    check_version,
};

const BIN: &str = env!("CARGO_BIN_EXE_tapmesh-switch");
const KEY: &str = "yBcXrjS7wQhtB0bKQGqlY9uDoTm3EXo9TeJwMSRmZ3g=";

#[test]
fn keygen_and_pubkey() {
    check_key_commands(Path::new(BIN));
}

#[test]
fn bad_configs_exit_2_with_one_line_naming_file_and_key() {
    let base = "listen = \"198.18.0.3:7777\"\nprivate-key-file = \"switch.key\"\n";
    let cases = [
        (base.to_owned(), None, "private-key-file"),
        (base.replace(":7777", ""), Some(KEY), "listen"),
        (format!("{base}colour = 1\n"), Some(KEY), "colour"),
        (base.to_owned(), Some("short"), "private-key-file"),
        (
            format!("{base}[[node]]\nname = \"h1\"\npublic-key = \"abc\"\n"),
            Some(KEY),
            "node[0].public-key",
        ),
        (
            format!("{base}mac-aging-secs = -1\n"),
            Some(KEY),
            "mac-aging-secs",
        ),
        (
            "private-key-file = \"switch.key\"\n".to_owned(),
            Some(KEY),
            "listen",
        ),
        (
            format!("{base}[multicast]\nigmp-version = 4\n"),
            Some(KEY),
            "multicast.igmp-version",
        ),
        (
            format!("{base}busy-poll-us = 2000\n"),
            Some(KEY),
            "busy-poll-us",
        ),
        (format!("{base}workers = 0\n"), Some(KEY), "workers"),
    ];
    check_config_errors(Path::new(BIN), "switch.toml", "switch.key", &cases);
}

#[test]
fn a_key_file_others_can_read_is_warned_about() {
    let cfg =
        "listen = \"198.18.0.3:7777\"\nprivate-key-file = \"switch.key\"\nmac-aging-secs = 0\n";
    check_key_file_mode_warning(Path::new(BIN), "switch.toml", cfg, "switch.key");
}

#[test]
fn version_names_the_commit() {
    check_version(Path::new(BIN), "tapmesh-switch");
}

#[test]
fn check_validates_without_running() {
    const H1: &str = "0Qf7C8H1I2J3K4L5M6N7O8P9Q0R1S2T3U4V5W6X7Y8Y=";
    const H2: &str = "1Qf7C8H1I2J3K4L5M6N7O8P9Q0R1S2T3U4V5W6X7Y8Y=";
    let base = "listen = \"198.18.0.3:7777\"\nprivate-key-file = \"switch.key\"\n";
    let node =
        |name: &str, key: &str| format!("[[node]]\nname = \"{name}\"\npublic-key = \"{key}\"\n");
    let good = format!("{base}{}{}", node("h1", H1), node("h2", H2));
    let cases = [
        (good.clone(), None, "private-key-file"),
        (good.replace(":7777", ""), Some(KEY), "listen"),
        (
            format!("{base}{}{}", node("h1", H1), node("h1", H2)),
            Some(KEY),
            "node[1].name",
        ),
        (
            format!("{base}{}{}", node("h1", H1), node("h2", H1)),
            Some(KEY),
            "node[1].public-key",
        ),
        (
            format!(
                "{base}{}[[network]]\nname = \"b\"\nid = 2\n[[network.node]]\nname = \"h1\"\npublic-key = \"{H2}\"\n",
                node("h1", H1)
            ),
            Some(KEY),
            "network[0].node[0].name",
        ),
    ];
    check_check_command(Path::new(BIN), "switch.toml", "switch.key", &good, &cases);
}
