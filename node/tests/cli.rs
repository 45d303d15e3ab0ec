//! The `tapmesh-node` binary's command line: key commands, config errors,
//! `check` and `--version`.
//! (These also make `cargo test` build the binary the namespace tests run.)
use std::path::Path;

use tapmesh_shell::testing::{
    check_check_command, check_config_errors, check_key_commands, check_key_file_mode_warning,
    check_version,
};

const BIN: &str = env!("CARGO_BIN_EXE_tapmesh-node");
const KEY: &str = "yBcXrjS7wQhtB0bKQGqlY9uDoTm3EXo9TeJwMSRmZ3g=";

#[test]
fn keygen_and_pubkey() {
    check_key_commands(Path::new(BIN));
}

#[test]
fn bad_configs_exit_2_with_one_line_naming_file_and_key() {
    let base = format!(
        "name = \"h1\"\nprivate-key-file = \"node.key\"\nswitch-public-key = \"{KEY}\"\nswitch = \"198.18.0.3:7777\"\n"
    );
    let cases = [
        (base.clone(), Some(KEY), "tap"),
        (
            format!("{base}[tap]\n").replace(":7777", ""),
            Some(KEY),
            "switch",
        ),
        (format!("{base}[tap]\nmtu = 70000\n"), Some(KEY), "tap.mtu"),
        (
            format!("{base}[tap]\naddress = [\"198.19.0.1\"]\n"),
            Some(KEY),
            "tap.address[0]",
        ),
        (format!("{base}[tap]\n"), None, "private-key-file"),
        (format!("{base}extra = 1\n[tap]\n"), Some(KEY), "extra"),
        (
            format!("{base}busy-poll-us = 2000\n[tap]\n"),
            Some(KEY),
            "busy-poll-us",
        ),
        (format!("{base}workers = 0\n[tap]\n"), Some(KEY), "workers"),
        (
            format!("{base}[tap]\n").replace(KEY, "AAAA"),
            Some(KEY),
            "switch-public-key",
        ),
        (
            format!(
                "{base}[[host]]\naddress = [\"198.19.0.50/24\"]\n[[host.forward]]\nport = 80\nto = \"localhost:80\"\n"
            ),
            Some(KEY),
            "host[0].forward[0].to",
        ),
        (
            format!(
                "{base}[[vm-port]]\npath = \"/run/vm1.sock\"\nsocket = \"dgram\"\nconnect = true\n"
            ),
            Some(KEY),
            "vm-port[0].connect",
        ),
        (
            format!("{base}[[vm-port]]\npath = \"/run/vm1.sock\"\nmtu = 70000\n"),
            Some(KEY),
            "vm-port[0].mtu",
        ),
        (
            format!("{base}[[vm-port]]\npath = \"/run/vm1.sock\"\nallow-uid = [-1]\n"),
            Some(KEY),
            "vm-port[0].allow-uid",
        ),
        (
            format!("{base}[[vm-port]]\npath = \"/run/vm1.sock\"\nallow-gid = [4294967295]\n"),
            Some(KEY),
            "vm-port[0].allow-gid",
        ),
        (
            format!("{base}[[vm-port]]\npath = \"/run/vm1.sock\"\nallow-uid = []\n"),
            Some(KEY),
            "vm-port[0].allow-uid",
        ),
    ];
    check_config_errors(Path::new(BIN), "node.toml", "node.key", &cases);
}

#[test]
fn a_key_file_others_can_read_is_warned_about() {
    let cfg = format!(
        "name = \"h1\"\nprivate-key-file = \"node.key\"\nswitch-public-key = \"{KEY}\"\n\
         switch = \"198.18.0.3:7777\"\n[tap]\nmtu = 70000\n"
    );
    check_key_file_mode_warning(Path::new(BIN), "node.toml", &cfg, "node.key");
}

#[test]
fn version_names_the_commit() {
    check_version(Path::new(BIN), "tapmesh-node");
}

#[test]
fn check_validates_without_running() {
    const SWITCH: &str = "0Qf7C8H1I2J3K4L5M6N7O8P9Q0R1S2T3U4V5W6X7Y8Y=";
    let base = format!(
        "name = \"h1\"\nprivate-key-file = \"node.key\"\nswitch-public-key = \"{SWITCH}\"\nswitch = \"198.18.0.3:7777\"\n"
    );
    // A TAP, a VM port and a userspace host: checked, none created.
    let good = format!(
        "{base}[tap]\nname = \"tmcheck0\"\naddress = [\"198.19.0.1/24\"]\n\
         [[vm-port]]\npath = \"vm1.sock\"\n\
         [[host]]\naddress = [\"198.19.0.50/24\"]\n[[host.forward]]\nport = 80\nto = \"127.0.0.1:8080\"\n"
    );
    let cases = [
        (good.clone(), None, "private-key-file"),
        (good.replace(":7777", ""), Some(KEY), "switch"),
        (
            format!("{base}[[vm-port]]\npath = \"vm1.sock\"\n[[vm-port]]\npath = \"vm1.sock\"\n"),
            Some(KEY),
            "vm-port[1].path",
        ),
        (
            format!("{base}[[host]]\naddress = [\"198.19.0.50/24\", \"198.19.0.50/24\"]\n"),
            Some(KEY),
            "host[0].address[1]",
        ),
    ];
    check_check_command(Path::new(BIN), "node.toml", "node.key", &good, &cases);
    assert!(
        !std::path::Path::new("/sys/class/net/tmcheck0").exists(),
        "check created the TAP"
    );
}
