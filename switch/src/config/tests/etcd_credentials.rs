//! `[cluster]`'s etcd TLS and user keys: what a good section gives, and
//! that every bad value names its key. The certificates are test fixtures
//! (`testdata/`, made once with `openssl`): a CA, a client certificate it
//! signed with its key, and a key of no certificate.
use super::setup_files;
use crate::etcd::credentials::Credentials;
use tapmesh_shell::config::ConfigError;

const CA: &str = include_str!("../testdata/etcd-ca.crt");
const CERT: &str = include_str!("../testdata/etcd-client.crt");
const KEY: &str = include_str!("../testdata/etcd-client.key");
const OTHER_KEY: &str = include_str!("../testdata/etcd-other.key");
const PASSWORD: &str = "correct-horse-battery";

/// The files every case has beside the config: CA, client certificate and
/// key, another key, a password, an empty file.
const FILES: &[(&str, &str, u32)] = &[
    ("ca.crt", CA, 0o644),
    ("sw.crt", CERT, 0o644),
    ("sw.key", KEY, 0o600),
    ("other.key", OTHER_KEY, 0o600),
    ("pw", PASSWORD, 0o600),
    ("empty", "", 0o600),
];

const HTTPS: &str =
    "etcd-endpoints = [\"https://198.18.50.11:2379\", \"https://198.18.50.12:2379\"]";
const HTTP: &str = "etcd-endpoints = [\"http://198.18.50.11:2379\"]";

/// `[cluster]` with `lines`.
fn load(lines: &[&str]) -> Result<Credentials, ConfigError> {
    let section = format!("[cluster]\nname = \"sw1\"\n{}\n", lines.join("\n"));
    setup_files(FILES, |_| section.clone()).map(|c| c.cluster.unwrap().etcd_credentials)
}

#[test]
fn tls_and_user_are_read_and_the_password_not_shown() {
    let c = load(&[
        HTTPS,
        "etcd-ca-file = \"ca.crt\"",
        "etcd-cert-file = \"sw.crt\"",
        "etcd-key-file = \"sw.key\"",
        "etcd-username = \"sw1\"",
        "etcd-password-file = \"pw\"",
    ])
    .unwrap();
    let tls = c.tls.as_ref().expect("tls");
    assert_eq!(tls.ca_pem, CA);
    let id = tls.identity.as_ref().expect("client identity");
    assert_eq!(id.cert_pem, CERT);
    assert_eq!(*id.key_pem, KEY.trim());
    let user = c.user.as_ref().expect("user");
    assert_eq!(user.name, "sw1");
    assert_eq!(*user.password, PASSWORD);
    let shown = format!("{c:?}");
    assert!(!shown.contains(PASSWORD), "{shown}");
    assert!(!shown.contains("PRIVATE KEY"), "{shown}");

    // The CA alone (etcd does not ask for client certificates).
    let c = load(&[HTTPS, "etcd-ca-file = \"ca.crt\""]).unwrap();
    assert!(c.tls.unwrap().identity.is_none());
    assert!(c.user.is_none());
    // Plain http: nothing.
    assert_eq!(load(&[HTTP]).unwrap(), Credentials::default());
}

#[test]
fn every_bad_etcd_credential_names_its_key() {
    let ca = "etcd-ca-file = \"ca.crt\"";
    let cert = "etcd-cert-file = \"sw.crt\"";
    let key = "etcd-key-file = \"sw.key\"";
    let user = "etcd-username = \"sw1\"";
    let pw = "etcd-password-file = \"pw\"";
    let mixed = "etcd-endpoints = [\"https://198.18.50.11:2379\", \"http://198.18.50.12:2379\"]";
    for (lines, want_key, want_problem) in [
        (
            vec![mixed, ca],
            "cluster.etcd-endpoints[1]",
            "mixes http:// and https://",
        ),
        (
            vec![HTTPS],
            "cluster.etcd-ca-file",
            "is required with https://",
        ),
        (
            vec![HTTPS, cert, key],
            "cluster.etcd-ca-file",
            "is required",
        ),
        (vec![HTTP, ca], "cluster.etcd-ca-file", "needs https://"),
        (
            vec![HTTP, cert, key],
            "cluster.etcd-cert-file",
            "needs https://",
        ),
        (vec![HTTP, user, pw], "cluster.etcd-username", "in clear"),
        (vec![ca], "cluster.etcd-ca-file", "no etcd-endpoints"),
        (
            vec![HTTPS, ca, cert],
            "cluster.etcd-key-file",
            "both or neither",
        ),
        (
            vec![HTTPS, ca, key],
            "cluster.etcd-cert-file",
            "both or neither",
        ),
        (
            vec![HTTPS, ca, user],
            "cluster.etcd-password-file",
            "both or neither",
        ),
        (
            vec![HTTPS, ca, pw],
            "cluster.etcd-username",
            "both or neither",
        ),
        (
            vec![HTTPS, "etcd-ca-file = \"missing.crt\""],
            "cluster.etcd-ca-file",
            "cannot read",
        ),
        (
            vec![HTTPS, "etcd-ca-file = \"pw\""],
            "cluster.etcd-ca-file",
            "no PEM certificate",
        ),
        (
            vec![HTTPS, "etcd-ca-file = \"sw.key\""],
            "cluster.etcd-ca-file",
            "no PEM certificate",
        ),
        (
            vec![HTTPS, ca, "etcd-cert-file = \"sw.key\"", key],
            "cluster.etcd-cert-file",
            "no PEM certificate",
        ),
        (
            vec![HTTPS, ca, cert, "etcd-key-file = \"sw.crt\""],
            "cluster.etcd-key-file",
            "no PEM private key",
        ),
        (
            vec![HTTPS, ca, cert, "etcd-key-file = \"other.key\""],
            "cluster.etcd-key-file",
            "does not match the certificate",
        ),
        (
            vec![HTTPS, ca, cert, "etcd-key-file = \"missing.key\""],
            "cluster.etcd-key-file",
            "cannot read",
        ),
        (
            vec![HTTPS, ca, "etcd-username = \"a b\"", pw],
            "cluster.etcd-username",
            "blanks",
        ),
        (
            vec![HTTPS, ca, user, "etcd-password-file = \"empty\""],
            "cluster.etcd-password-file",
            "is empty",
        ),
        (
            vec![HTTPS, ca, user, "etcd-password-file = \"missing\""],
            "cluster.etcd-password-file",
            "cannot read",
        ),
    ] {
        let e = load(&lines).unwrap_err();
        assert_eq!(e.key, want_key, "{lines:?}: {e}");
        let line = e.to_string();
        assert!(line.contains(want_problem), "{lines:?}: {line}");
        assert!(line.starts_with(&e.file.display().to_string()), "{line}");
        assert!(!line.contains('\n'), "{line}");
        assert!(!line.contains(PASSWORD), "{line}");
    }
}
