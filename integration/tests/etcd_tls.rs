//! Switches against an etcd that speaks only TLS and wants client
//! certificates and a password (one member, started by the test with
//! certificates from a test CA, auth on): the switch with the cluster's CA,
//! a client certificate of that CA and the password connects and writes its
//! keys; one with a client certificate of another CA, and one with none,
//! never connect, count their failures and write nothing. The password is in
//! no log, status or /metrics output.
use std::time::Instant;

use integration::etcd::{EtcdCluster, HEALTHY_TIMEOUT};
use integration::monitoring::{scrape, switch_metrics_addr};
use integration::pki::{CertFiles, TestCa};
use integration::status::counter;
use integration::{Topology, wait_until};
use serde_json::Value;

/// The etcd user the switches log in as, and its password.
const USER: &str = "tapmesh-sw";
const PASSWORD: &str = "etcd-pw-7f3a9c1e5b";
/// Failed attempts each refused switch must have made (one a second).
const FAILURES: u64 = 3;

/// A topology (one admitted node, never started) whose switch namespace is
/// attached to `etcd`.
fn attached(etcd: &mut EtcdCluster) -> Topology {
    let t = Topology::central(1);
    etcd.attach(t.switch_ns(), "etcd0");
    t
}

/// Starts `t`'s switch as `name`, trusting etcd's CA, presenting `client`
/// if any, and logging in with the password.
fn start(t: &mut Topology, etcd: &EtcdCluster, name: &str, client: Option<&CertFiles>) {
    let tls = etcd.tls().expect("a TLS cluster");
    let pw = t.dir().join("etcd.password");
    std::fs::write(&pw, format!("{PASSWORD}\n")).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let identity = client.map_or(String::new(), |c| {
        format!(
            ", etcd-cert-file = \"{}\", etcd-key-file = \"{}\"",
            c.cert.display(),
            c.key.display()
        )
    });
    let endpoints: Vec<String> = (etcd.endpoint_list().iter())
        .map(|e| format!("\"{e}\""))
        .collect();
    t.set_switch_config_extra(&format!(
        "metrics-listen = \"{}\"\n\
         cluster = {{ name = \"{name}\", etcd-endpoints = [{}], lease-ttl-secs = 3, \
         etcd-ca-file = \"{}\"{identity}, etcd-username = \"{USER}\", etcd-password-file = \"{}\" }}\n",
        switch_metrics_addr(),
        endpoints.join(", "),
        tls.ca.cert.display(),
        pw.display()
    ));
    t.start_switch();
}

fn etcd_status(t: &Topology) -> Value {
    t.switch_status()
        .get("etcd")
        .cloned()
        .unwrap_or(Value::Null)
}

#[test]
fn only_the_switch_with_the_clusters_client_certificate_reaches_tls_etcd() {
    let started = Instant::now();
    let mut etcd = EtcdCluster::start_tls(1);
    etcd.wait_healthy(HEALTHY_TIMEOUT)
        .expect("the TLS etcd member healthy");
    etcd.enable_auth(USER, PASSWORD, "/tapmesh/");

    let mut good = attached(&mut etcd);
    let good_cert = etcd.tls().expect("TLS").ca.issue("sw-good", &[]);
    start(&mut good, &etcd, "sw-good", Some(&good_cert));
    // A client certificate of a CA etcd does not trust.
    let mut foreign = attached(&mut etcd);
    let foreign_cert = TestCa::new(foreign.dir(), "other-ca").issue("sw-foreign", &[]);
    start(&mut foreign, &etcd, "sw-foreign", Some(&foreign_cert));
    // No client certificate at all (the right CA, the right password).
    let mut none = attached(&mut etcd);
    start(&mut none, &etcd, "sw-none", None);

    // The good switch connects and writes its key; etcdctl (with the
    // cluster's client certificate) reads it back.
    let good_key = "/tapmesh/default/switch/sw-good".to_string();
    assert!(
        wait_until(HEALTHY_TIMEOUT, || etcd_status(&good)["connection"]
            == "connected"
            && etcd.keys("/tapmesh/").contains(&good_key)),
        "the switch with the cluster's certificate did not connect and write: {} keys {:?}",
        etcd_status(&good),
        etcd.keys("/tapmesh/")
    );
    let value = etcd.etcdctl(&["get", "--print-value-only", &good_key]);
    assert!(value.contains("\"endpoint\""), "{value}");

    // The two others keep failing, never connect, write nothing. (Which
    // error the client sees first varies: with TLS 1.3 etcd refuses a
    // client certificate after the client has sent its first request.)
    for (t, name) in [(&foreign, "sw-foreign"), (&none, "sw-none")] {
        assert!(
            wait_until(HEALTHY_TIMEOUT, || counter(
                &etcd_status(t),
                &["connect_failures"]
            ) >= FAILURES),
            "{name}: fewer than {FAILURES} failed attempts: {}",
            etcd_status(t)
        );
        let s = etcd_status(t);
        assert_ne!(s["connection"], "connected", "{name}: {s}");
        assert_eq!(counter(&s, &["connects"]), 0, "{name}: {s}");
        assert_eq!(counter(&s, &["lease_id"]), 0, "{name}: {s}");
        let log = std::fs::read_to_string(t.dir().join("switch.1.log")).unwrap();
        assert!(
            log.contains("etcd unreachable"),
            "{name}: no reason logged:\n{log}"
        );
        let m = scrape(t.switch_ns(), switch_metrics_addr());
        assert!(
            m.lines().any(
                |l| l.starts_with("tapmesh_switch_etcd_connect_failures_total ")
                    && l != "tapmesh_switch_etcd_connect_failures_total 0"
            ),
            "{name}: no failures in /metrics:\n{m}"
        );
        assert!(
            m.lines()
                .any(|l| l == "tapmesh_switch_etcd_connection{state=\"connected\"} 0"),
            "{name}: /metrics:\n{m}"
        );
    }
    assert_eq!(
        etcd.keys("/tapmesh/"),
        vec![good_key],
        "only the admitted switch's key is in etcd"
    );

    // The password is in no log, status or /metrics output.
    for (t, name) in [
        (&good, "sw-good"),
        (&foreign, "sw-foreign"),
        (&none, "sw-none"),
    ] {
        let log = std::fs::read_to_string(t.dir().join("switch.1.log")).unwrap();
        let outputs = [
            ("log", log),
            ("status --json", t.switch_status().to_string()),
            ("/metrics", scrape(t.switch_ns(), switch_metrics_addr())),
        ];
        for (what, text) in outputs {
            assert!(!text.is_empty(), "{name}: {what} is empty");
            assert!(
                !text.contains(PASSWORD),
                "{name}: the password is in its {what}"
            );
        }
    }
    eprintln!("etcd TLS test: {:.1}s", started.elapsed().as_secs_f64());
}
