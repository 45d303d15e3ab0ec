//! How the store and etcd trust each other: TLS (the CA that signed etcd's
//! server certificates, this switch's client certificate and key) and
//! etcd's own user and password.
//!
//! Whoever can write under the cluster's prefix in etcd steers forwarding
//! between the switches (see `docs/ha.md`, "Securing etcd"), so a real
//! deployment runs etcd with `https://` endpoints and client certificates.
//! The files are read and checked when the config is loaded (by
//! `tapmesh-switch check` too): the CA file must hold certificates, the
//! certificate file a chain whose first certificate matches the key. The
//! store hands them to etcd-client on every connection
//! ([`Credentials::connect_options`]).
//!
//! The client key and the password are secrets: they are kept in buffers
//! wiped when dropped, and `Debug` shows neither (the config is printed in
//! tests and may be in a log one day).
use std::fmt;
use std::sync::Arc;

use etcd_client::{Certificate, ConnectOptions, Identity, TlsOptions};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use zeroize::Zeroizing;

/// What the store presents to etcd and trusts of it. The default: plain
/// `http://`, no user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// TLS towards `https://` endpoints.
    pub tls: Option<Tls>,
    /// etcd's own authentication (`etcd-username`, `etcd-password-file`).
    pub user: Option<User>,
}

/// `etcd-ca-file`, and `etcd-cert-file` with `etcd-key-file`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    /// The CA certificates (PEM) etcd's server certificate must chain to.
    pub ca_pem: String,
    /// This switch's client certificate, if etcd asks for one.
    pub identity: Option<ClientIdentity>,
}

/// A client certificate chain and its private key (both PEM).
#[derive(Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    /// The certificate chain, the switch's own certificate first.
    pub cert_pem: String,
    /// The private key: a secret.
    pub key_pem: Zeroizing<String>,
}

/// An etcd user and its password.
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    /// The user name.
    pub name: String,
    /// The password: a secret.
    pub password: Zeroizing<String>,
}

impl fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("cert_pem", &format_args!("{} bytes", self.cert_pem.len()))
            .field("key_pem", &format_args!("(secret)"))
            .finish()
    }
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("password", &format_args!("(secret)"))
            .finish()
    }
}

impl Credentials {
    /// `opts` with TLS and the user added, as configured.
    pub fn connect_options(&self, mut opts: ConnectOptions) -> ConnectOptions {
        if let Some(tls) = &self.tls {
            let mut t = TlsOptions::new().ca_certificate(Certificate::from_pem(&tls.ca_pem));
            if let Some(id) = &tls.identity {
                t = t.identity(Identity::from_pem(&id.cert_pem, id.key_pem.as_bytes()));
            }
            opts = opts.with_tls(t);
        }
        if let Some(u) = &self.user {
            opts = opts.with_user(u.name.clone(), u.password.as_str());
        }
        opts
    }
}

/// The problem with a CA file's contents, if any: it must hold at least one
/// certificate, and each must be one a TLS client can trust.
pub fn check_ca(pem: &str) -> Result<(), String> {
    let certs = certificates(pem)?;
    let mut roots = rustls::RootCertStore::empty();
    for (i, c) in certs.into_iter().enumerate() {
        roots
            .add(c)
            .map_err(|e| format!("certificate {} is not a usable CA: {e}", i + 1))?;
    }
    Ok(())
}

/// The problem with a client certificate chain and key, if any: the key
/// must be one TLS can sign with, and match the chain's first certificate.
/// The problem names which of the two is wrong: `Err((true, _))` is the
/// key's.
pub fn check_identity(cert_pem: &str, key_pem: &str) -> Result<(), (bool, String)> {
    let certs = certificates(cert_pem).map_err(|e| (false, e))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| (true, format!("no PEM private key: {e}")))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| (false, e.to_string()))?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_client_auth_cert(certs, key)
        .map(|_| ())
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => (
                true,
                "does not match the certificate in etcd-cert-file".into(),
            ),
            e => (true, format!("not a usable private key: {e}")),
        })
}

/// The certificates of a PEM file; at least one.
fn certificates(pem: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not PEM certificates: {e}"))?;
    if certs.is_empty() {
        return Err("holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into());
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_no_secret() {
        let c = Credentials {
            tls: Some(Tls {
                ca_pem: "ca".into(),
                identity: Some(ClientIdentity {
                    cert_pem: "cert".into(),
                    key_pem: Zeroizing::new("KEY-SECRET-MATERIAL".into()),
                }),
            }),
            user: Some(User {
                name: "sw".into(),
                password: Zeroizing::new("PASSWORD-SECRET".into()),
            }),
        };
        let shown = format!("{c:?} {c:#?}");
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(shown.contains("\"sw\""), "{shown}");
    }

    #[test]
    fn pem_without_certificates_is_refused() {
        assert!(check_ca("").is_err());
        assert!(check_ca("hello").is_err());
        let e = check_identity("", "").unwrap_err();
        assert!(!e.0, "{e:?}");
    }
}
