//! Config-file errors that name the file, the key and the problem on one line,
//! e.g. `switch.toml: listen: invalid socket address "1.2.3.4"`.
use std::path::{Path, PathBuf};

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
pub fn read_secret(config: &Path, p: &Path) -> Result<String, String> {
    let base = config.parent().unwrap_or(Path::new("."));
    let full = if p.is_absolute() {
        p.to_owned()
    } else {
        base.join(p)
    };
    std::fs::read_to_string(&full)
        .map(|s| s.trim().to_owned())
        .map_err(|e| format!("cannot read {}: {e}", full.display()))
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
