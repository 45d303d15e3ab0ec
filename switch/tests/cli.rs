//! The `tapmesh-switch` binary's command line: key commands and config errors.
//! (These also make `cargo test` build the binary the namespace tests run.)
use std::path::Path;

use tapmesh_shell::testing::{
    check_config_errors, check_key_commands, check_key_file_mode_warning,
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
    ];
    check_config_errors(Path::new(BIN), "switch.toml", "switch.key", &cases);
}

#[test]
fn a_key_file_others_can_read_is_warned_about() {
    let cfg =
        "listen = \"198.18.0.3:7777\"\nprivate-key-file = \"switch.key\"\nmac-aging-secs = 0\n";
    check_key_file_mode_warning(Path::new(BIN), "switch.toml", cfg, "switch.key");
}
