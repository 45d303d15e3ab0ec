//! The `tapmesh-switch` binary's command line: key commands and config errors.
//! (These also make `cargo test` build the binary that the namespace tests run.)
use std::io::Write;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_tapmesh-switch");

fn tmpdir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("tm-cli-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn keygen_and_pubkey() {
    let out = Command::new(BIN).arg("keygen").output().unwrap();
    assert!(out.status.success());
    let key = String::from_utf8(out.stdout).unwrap();
    assert_eq!(key.trim().len(), 44, "{key}");
    let mut child = Command::new(BIN)
        .arg("pubkey")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(key.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let public = String::from_utf8(out.stdout).unwrap();
    assert_eq!(public.trim().len(), 44);
    assert_ne!(public.trim(), key.trim());
    // A bad private key on stdin: exit 2.
    let mut child = Command::new(BIN)
        .arg("pubkey")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"nope").unwrap();
    assert_eq!(child.wait_with_output().unwrap().status.code(), Some(2));
}

fn run_with(config: &str, key: Option<&str>) -> (Option<i32>, String) {
    let d = tmpdir(&format!("{:x}", rand_tag(config)));
    if let Some(k) = key {
        std::fs::write(d.join("switch.key"), k).unwrap();
    }
    let p = d.join("switch.toml");
    std::fs::write(&p, config).unwrap();
    let out = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&p)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&d).unwrap();
    (out.status.code(), String::from_utf8(out.stderr).unwrap())
}

fn rand_tag(s: &str) -> u64 {
    s.bytes().fold(1469598103934665603u64, |h, b| {
        (h ^ b as u64).wrapping_mul(1099511628211)
    })
}

#[test]
fn bad_configs_exit_2_with_one_line_naming_file_and_key() {
    let key = "yBcXrjS7wQhtB0bKQGqlY9uDoTm3EXo9TeJwMSRmZ3g=";
    let cases = [
        (
            "listen = \"198.18.0.3:7777\"\nprivate-key-file = \"missing.key\"\n",
            None,
            "private-key-file",
        ),
        (
            "listen = \"198.18.0.3\"\nprivate-key-file = \"switch.key\"\n",
            Some(key),
            "listen",
        ),
        (
            "listen = \"198.18.0.3:1\"\nprivate-key-file = \"switch.key\"\ncolour = 1\n",
            Some(key),
            "colour",
        ),
        (
            "listen = \"198.18.0.3:1\"\nprivate-key-file = \"switch.key\"\n",
            Some("short"),
            "private-key-file",
        ),
        (
            "listen = \"198.18.0.3:1\"\nprivate-key-file = \"switch.key\"\n[[node]]\nname = \"h1\"\npublic-key = \"abc\"\n",
            Some(key),
            "node[0].public-key",
        ),
        ("private-key-file = \"switch.key\"\n", Some(key), "listen"),
    ];
    for (cfg, k, want_key) in cases {
        let (code, err) = run_with(cfg, k);
        assert_eq!(code, Some(2), "config {cfg:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "not one line: {err}");
        assert!(err.contains("switch.toml"), "no file name: {err}");
        assert!(err.contains(want_key), "key {want_key} not named: {err}");
    }
}
