//! Checks of the command-line contract both binaries share, used by their
//! `tests/cli.rs` against the real executables.
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub(crate) fn scratch_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "tm-cli-{tag}-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&d).expect("creating a scratch dir");
    d
}

fn pipe(bin: &Path, arg: &str, input: &[u8]) -> std::process::Output {
    let mut child = Command::new(bin)
        .arg(arg)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the binary");
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

/// `keygen` prints a 44-character base64 key; `pubkey` turns it into a
/// different one; `pubkey` exits 2 on garbage.
pub fn check_key_commands(bin: &Path) {
    let out = Command::new(bin).arg("keygen").output().unwrap();
    assert!(out.status.success());
    let key = String::from_utf8(out.stdout).unwrap();
    assert_eq!(key.trim().len(), 44, "{key}");
    let out = pipe(bin, "pubkey", key.as_bytes());
    assert!(out.status.success());
    let public = String::from_utf8(out.stdout).unwrap();
    assert_eq!(public.trim().len(), 44);
    assert_ne!(public.trim(), key.trim());
    assert_eq!(pipe(bin, "pubkey", b"nope").status.code(), Some(2));
}

/// Run `bin run --config FILE` with `config` written to `file_name` (and
/// `key` to `key_file` beside it, mode 0600, if given). Returns the exit code
/// and stderr.
pub fn run_config(
    bin: &Path,
    file_name: &str,
    config: &str,
    key_file: &str,
    key: Option<&str>,
) -> (Option<i32>, String) {
    run_config_key_mode(bin, file_name, config, key_file, key, 0o600)
}

/// [`config_command`] for `run`, returning the exit code and stderr.
fn run_config_key_mode(
    bin: &Path,
    file_name: &str,
    config: &str,
    key_file: &str,
    key: Option<&str>,
    mode: u32,
) -> (Option<i32>, String) {
    let (code, _, err) = config_command(bin, "run", file_name, config, key_file, key, mode);
    (code, err)
}

/// Run `bin CMD --config FILE` (`run` or `check`) as [`run_config`] does,
/// with the key file's mode. Returns the exit code, stdout and stderr, with
/// the scratch directory's path in them replaced by `DIR`.
fn config_command(
    bin: &Path,
    cmd: &str,
    file_name: &str,
    config: &str,
    key_file: &str,
    key: Option<&str>,
    mode: u32,
) -> (Option<i32>, String, String) {
    use std::os::unix::fs::PermissionsExt;
    let d = scratch_dir("cfg");
    if let Some(k) = key {
        let f = d.join(key_file);
        std::fs::write(&f, k).unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let p = d.join(file_name);
    std::fs::write(&p, config).unwrap();
    let out = Command::new(bin)
        .args([cmd, "--config"])
        .arg(&p)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&d).unwrap();
    let dir = d.to_string_lossy();
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap().replace(dir.as_ref(), "DIR");
    (out.status.code(), text(out.stdout), text(out.stderr))
}

/// `check --config FILE` validates without running: `good` gives exit 0 and
/// `FILE: ok` on stdout at once (a daemon would not return); every bad case
/// gives exit 2 and exactly the line `run` prints for it.
pub fn check_check_command(
    bin: &Path,
    file_name: &str,
    key_file: &str,
    good: &str,
    bad: &[(String, Option<&str>, &str)],
) {
    let key = Command::new(bin).arg("keygen").output().unwrap().stdout;
    let key = String::from_utf8(key).unwrap();
    let (code, out, err) =
        config_command(bin, "check", file_name, good, key_file, Some(&key), 0o600);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, format!("DIR/{file_name}: ok\n"), "{err}");
    assert!(err.is_empty(), "{err}");
    for (cfg, key, want_key) in bad {
        let (code, out, err) = config_command(bin, "check", file_name, cfg, key_file, *key, 0o600);
        assert_eq!(code, Some(2), "config {cfg:?}: {out}{err}");
        assert!(out.is_empty(), "{out}");
        assert_eq!(err.trim().lines().count(), 1, "not one line: {err}");
        assert!(err.contains(want_key), "key {want_key} not named: {err}");
        let (run_code, _, run_err) =
            config_command(bin, "run", file_name, cfg, key_file, *key, 0o600);
        assert_eq!(run_code, Some(2), "{run_err}");
        assert_eq!(err, run_err, "check and run differ");
    }
}

/// `--version` names the program, the crate version and the commit: the
/// checkout's `HEAD` when built from a git checkout, else "unknown".
pub fn check_version(bin: &Path, program: &str) {
    let out = Command::new(bin).arg("--version").output().unwrap();
    assert!(out.status.success());
    let line = String::from_utf8(out.stdout).unwrap();
    let want_prefix = format!("{program} {} (commit ", env!("CARGO_PKG_VERSION"));
    assert!(line.starts_with(&want_prefix), "{line}");
    let commit = line[want_prefix.len()..].trim_end().trim_end_matches(')');
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let head = Command::new("git")
        .arg("-C")
        .arg(&root)
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8(o.stdout).unwrap());
    match head {
        Some(head) => assert!(
            commit.len() >= 7 && head.starts_with(commit),
            "commit {commit:?} is not HEAD {head}"
        ),
        None => assert_eq!(commit, "unknown"),
    }
}

/// Every case must exit 2 with one line naming the file and the expected key.
pub fn check_config_errors(
    bin: &Path,
    file_name: &str,
    key_file: &str,
    cases: &[(String, Option<&str>, &str)],
) {
    for (cfg, key, want_key) in cases {
        let (code, err) = run_config(bin, file_name, cfg, key_file, *key);
        assert_eq!(code, Some(2), "config {cfg:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "not one line: {err}");
        assert!(err.contains(file_name), "no file name: {err}");
        assert!(err.contains(want_key), "key {want_key} not named: {err}");
    }
}

/// A key file group or others can read is warned about: one more stderr
/// line, naming the file, its mode and `chmod 600`, never the key itself; an
/// owner-only one is not. `config` must read `key_file` and then fail
/// validation (exit 2), so the daemon does not start.
pub fn check_key_file_mode_warning(bin: &Path, file_name: &str, config: &str, key_file: &str) {
    let out = Command::new(bin).arg("keygen").output().unwrap();
    let key = String::from_utf8(out.stdout).unwrap();
    let (code, err) = run_config_key_mode(bin, file_name, config, key_file, Some(&key), 0o644);
    assert_eq!(code, Some(2), "{err}");
    let lines: Vec<&str> = err.trim().lines().collect();
    assert_eq!(lines.len(), 2, "a warning and the config error: {err}");
    let w = lines[0];
    assert!(w.contains("warning") && w.contains(key_file), "{err}");
    assert!(w.contains("mode 0644") && w.contains("chmod 600"), "{err}");
    assert!(!err.contains(key.trim()), "the key itself on stderr: {err}");
    let (code, err) = run_config(bin, file_name, config, key_file, Some(&key));
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(
        err.trim().lines().count(),
        1,
        "warned about a 0600 key: {err}"
    );
}
