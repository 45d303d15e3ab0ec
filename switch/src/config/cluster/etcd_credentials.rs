//! `[cluster]`'s keys for trusting etcd: `etcd-ca-file`, `etcd-cert-file`,
//! `etcd-key-file`, `etcd-username`, `etcd-password-file`.
//!
//! The rules: every endpoint is `http://` or every one `https://`;
//! `https://` needs the CA file; TLS files need `https://`; the client
//! certificate and key come together, and so do user and password; the
//! password goes only over `https://` (over `http://` it would cross the
//! network in clear). Files are read here, relative to the config file; the
//! key and the password like the switch's private key (a warning on stderr
//! if group or others may read them).
use std::path::{Path, PathBuf};

use tapmesh_shell::config::{read_secret, relative_to_config};

use super::{ClusterSection, Problem};
use crate::etcd::credentials::{self, ClientIdentity, Credentials, Tls, User};

/// Validate and read the credentials of `s`, a section of the config file
/// `config`.
pub(super) fn credentials(config: &Path, s: &ClusterSection) -> Result<Credentials, Problem> {
    let p = |k: &str, problem: String| (k.to_string(), problem);
    let https = scheme(&s.etcd_endpoints)?;
    if !https {
        let why = if s.etcd_endpoints.is_empty() {
            "is set, but there are no etcd-endpoints"
        } else {
            "needs https:// etcd-endpoints (TLS is not spoken to http://)"
        };
        for (key, v) in [
            ("etcd-ca-file", &s.etcd_ca_file),
            ("etcd-cert-file", &s.etcd_cert_file),
            ("etcd-key-file", &s.etcd_key_file),
        ] {
            if v.is_some() {
                return Err(p(key, why.into()));
            }
        }
        if s.etcd_username.is_some() {
            let why = if s.etcd_endpoints.is_empty() {
                why
            } else {
                "needs https:// etcd-endpoints (the password would cross the network in clear)"
            };
            return Err(p("etcd-username", why.into()));
        }
    }
    both(
        ("etcd-cert-file", s.etcd_cert_file.is_some()),
        ("etcd-key-file", s.etcd_key_file.is_some()),
    )?;
    both(
        ("etcd-username", s.etcd_username.is_some()),
        ("etcd-password-file", s.etcd_password_file.is_some()),
    )?;
    let tls = match &s.etcd_ca_file {
        None if https => {
            return Err(p(
                "etcd-ca-file",
                "is required with https:// etcd-endpoints (the CA that signed etcd's server certificates)"
                    .into(),
            ));
        }
        None => None,
        Some(ca) => Some(tls(config, ca, s)?),
    };
    let user = match (&s.etcd_username, &s.etcd_password_file) {
        (Some(name), Some(file)) => Some(user(config, name, file)?),
        _ => None,
    };
    Ok(Credentials { tls, user })
}

/// Whether the endpoints are `https://`; all must agree.
fn scheme(endpoints: &[String]) -> Result<bool, Problem> {
    let https = |u: &String| u.starts_with("https://");
    let Some(first) = endpoints.first() else {
        return Ok(false);
    };
    match endpoints.iter().position(|u| https(u) != https(first)) {
        None => Ok(https(first)),
        Some(i) => Err((
            format!("etcd-endpoints[{i}]"),
            format!(
                "{:?} mixes http:// and https:// with etcd-endpoints[0] (use one scheme for all)",
                endpoints[i]
            ),
        )),
    }
}

/// Two keys that come together: the missing one named.
fn both((a, has_a): (&str, bool), (b, has_b): (&str, bool)) -> Result<(), Problem> {
    match (has_a, has_b) {
        (true, false) => Err((b.into(), format!("is required with {a} (both or neither)"))),
        (false, true) => Err((a.into(), format!("is required with {b} (both or neither)"))),
        _ => Ok(()),
    }
}

fn tls(config: &Path, ca: &Path, s: &ClusterSection) -> Result<Tls, Problem> {
    let ca_pem = read_pem(config, "etcd-ca-file", ca)?;
    credentials::check_ca(&ca_pem).map_err(|e| named("etcd-ca-file", config, ca, e))?;
    let identity = match (&s.etcd_cert_file, &s.etcd_key_file) {
        (Some(cert), Some(key)) => {
            let cert_pem = read_pem(config, "etcd-cert-file", cert)?;
            let key_pem = read_secret(config, key).map_err(|e| ("etcd-key-file".to_string(), e))?;
            credentials::check_identity(&cert_pem, &key_pem).map_err(|(of_key, e)| {
                if of_key {
                    named("etcd-key-file", config, key, e)
                } else {
                    named("etcd-cert-file", config, cert, e)
                }
            })?;
            Some(ClientIdentity { cert_pem, key_pem })
        }
        _ => None,
    };
    Ok(Tls { ca_pem, identity })
}

fn user(config: &Path, name: &str, file: &Path) -> Result<User, Problem> {
    if name.is_empty() || name.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err((
            "etcd-username".into(),
            format!("{name:?} must not be empty or hold blanks"),
        ));
    }
    let password = read_secret(config, file).map_err(|e| ("etcd-password-file".to_string(), e))?;
    if password.is_empty() {
        return Err((
            "etcd-password-file".into(),
            format!("{} is empty", relative_to_config(config, file).display()),
        ));
    }
    Ok(User {
        name: name.to_string(),
        password,
    })
}

/// A certificate file's text.
fn read_pem(config: &Path, key: &str, p: &Path) -> Result<String, Problem> {
    let full: PathBuf = relative_to_config(config, p);
    std::fs::read_to_string(&full)
        .map_err(|e| (key.into(), format!("cannot read {}: {e}", full.display())))
}

/// A problem with the contents of file `p`, named by its path.
fn named(key: &str, config: &Path, p: &Path, problem: String) -> Problem {
    (
        key.into(),
        format!("{}: {problem}", relative_to_config(config, p).display()),
    )
}
