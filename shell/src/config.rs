//! Config-file errors that name the file, the key and the problem on one line,
//! e.g. `switch.toml: listen: invalid socket address "1.2.3.4"`.
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

/// A configuration problem: which file, which key, what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{}: {key}: {problem}", file.display())]
pub struct ConfigError {
    /// The config file.
    pub file: PathBuf,
    /// The offending key (dotted for nested tables, e.g. `node[1].public-key`).
    pub key: String,
    /// What is wrong with it.
    pub problem: String,
}

impl ConfigError {
    /// An error about `key` in `file`.
    pub fn new(file: &Path, key: &str, problem: impl Into<String>) -> ConfigError {
        ConfigError {
            file: file.to_owned(),
            key: key.to_owned(),
            problem: problem.into(),
        }
    }
}

/// Read and deserialize a TOML file, mapping every failure to a [`ConfigError`].
pub fn read_toml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(path, "(file)", e.to_string()))?;
    toml::from_str(&text).map_err(|e| {
        let (key, problem) = describe_toml_error(&text, &e);
        ConfigError::new(path, &key, problem)
    })
}

/// Read a secret file (a path relative to the config file's directory), trimmed.
///
/// A secret file that group or others may read or write is still used, but
/// warned about on stderr, one line naming the file and the fix (as
/// `wg-quick` does for a world-accessible config; ssh goes further and
/// refuses such a private key). The config is read before logging starts, so
/// the warning goes to stderr directly, where the daemons log.
///
/// The text comes back in a buffer that is wiped when dropped, and the
/// untrimmed copy read from the file is wiped at once.
pub fn read_secret(config: &Path, p: &Path) -> Result<Zeroizing<String>, String> {
    let full = relative_to_config(config, p);
    let text = std::fs::read_to_string(&full)
        .map(Zeroizing::new)
        .map(|s| Zeroizing::new(s.trim().to_owned()))
        .map_err(|e| format!("cannot read {}: {e}", full.display()))?;
    if let Some(w) = unprotected_secret(&full) {
        let program = std::env::args_os()
            .next()
            .and_then(|a| {
                Path::new(&a)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
            })
            .unwrap_or_else(|| "tapmesh".into());
        eprintln!("{program}: warning: {w}");
    }
    Ok(text)
}

/// `p` as a file named in the config file `config`: a relative path is
/// relative to the config file's directory.
pub fn relative_to_config(config: &Path, p: &Path) -> PathBuf {
    let base = config.parent().unwrap_or(Path::new("."));
    if p.is_absolute() {
        p.to_owned()
    } else {
        base.join(p)
    }
}

/// Permission bits for anyone but the file's owner.
const GROUP_AND_OTHERS: u32 = 0o077;

/// What is wrong with a secret file's permissions, if group or others have
/// any: the warning [`read_secret`] prints.
pub fn unprotected_secret(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & GROUP_AND_OTHERS != 0).then(|| {
        format!(
            "{}: secret file is accessible by group or others (mode {mode:04o}); \
             only its owner should read it: chmod 600 {}",
            path.display(),
            path.display()
        )
    })
}

/// Parse an optional `IP:PORT` listen address (e.g. `metrics-listen`); the
/// error is the problem half of a [`ConfigError`].
pub fn parse_listen(v: Option<&str>) -> Result<Option<std::net::SocketAddr>, String> {
    v.map(|s| {
        s.parse().map_err(|_| {
            format!("invalid socket address {s:?} (want IP:PORT, e.g. \"127.0.0.1:9101\")")
        })
    })
    .transpose()
}

/// Turn a toml/serde error into (key, problem) for a one-line message.
pub fn describe_toml_error(text: &str, e: &toml::de::Error) -> (String, String) {
    let msg = e.message().trim().replace('\n', " ");
    // serde names the field for unknown and missing keys.
    if (msg.starts_with("unknown field") || msg.starts_with("missing field"))
        && let Some(name) = msg.split('`').nth(1)
    {
        return (name.to_owned(), msg.clone());
    }
    // Otherwise name the key on the line the error points at.
    let key = e
        .span()
        .and_then(|s| {
            let start = s.start.min(text.len());
            let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
            let line = text[line_start..].lines().next()?;
            line.split_once('=').map(|(k, _)| k.trim().to_owned())
        })
        .unwrap_or_else(|| "(syntax)".to_owned());
    (key, msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn secret_files_others_can_access_are_named_with_the_fix() {
        let d = crate::testing::scratch_dir("secret-mode");
        let f = d.join("node.key");
        std::fs::write(&f, "secret\n").unwrap();
        for (mode, warned) in [(0o600, false), (0o400, false), (0o640, true), (0o644, true)] {
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)).unwrap();
            let w = unprotected_secret(&f);
            assert_eq!(w.is_some(), warned, "mode {mode:o}: {w:?}");
            if let Some(w) = w {
                assert!(w.contains(&format!("mode {mode:04o}")), "{w}");
                assert!(w.contains(&format!("chmod 600 {}", f.display())), "{w}");
            }
            // Read either way.
            assert_eq!(
                *read_secret(&d.join("x.toml"), Path::new("node.key")).unwrap(),
                "secret"
            );
        }
        std::fs::remove_dir_all(&d).unwrap();
    }
}
