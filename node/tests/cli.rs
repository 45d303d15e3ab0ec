//! The `tapmesh-node` binary's command line: key commands and config errors.
//! (These also make `cargo test` build the binary that the namespace tests run.)
use std::io::Write;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_tapmesh-node");

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
        std::fs::write(d.join("node.key"), k).unwrap();
    }
    let p = d.join("node.toml");
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
    let ok = "name = \"h1\"\nprivate-key-file = \"node.key\"\nswitch-public-key = \"yBcXrjS7wQhtB0bKQGqlY9uDoTm3EXo9TeJwMSRmZ3g=\"\n";
    let cases = [
        (
            format!("{ok}switch = \"198.18.0.3:7777\"\n"),
            Some(key),
            "tap",
        ),
        (
            format!("{ok}switch = \"nowhere\"\n[tap]\n"),
            Some(key),
            "switch",
        ),
        (
            format!("{ok}switch = \"198.18.0.3:7777\"\n[tap]\nmtu = 70000\n"),
            Some(key),
            "tap.mtu",
        ),
        (
            format!("{ok}switch = \"198.18.0.3:7777\"\n[tap]\naddress = [\"198.19.0.1\"]\n"),
            Some(key),
            "tap.address[0]",
        ),
        (
            format!("{ok}switch = \"198.18.0.3:7777\"\n[tap]\n"),
            None,
            "private-key-file",
        ),
        (
            format!("{ok}switch = \"198.18.0.3:7777\"\nextra = 1\n[tap]\n"),
            Some(key),
            "extra",
        ),
    ];
    for (cfg, k, want_key) in cases {
        let (code, err) = run_with(&cfg, k);
        assert_eq!(code, Some(2), "config {cfg:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "not one line: {err}");
        assert!(err.contains("node.toml"), "no file name: {err}");
        assert!(err.contains(want_key), "key {want_key} not named: {err}");
    }
}
