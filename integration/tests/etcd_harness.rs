//! Tests of the etcd harness itself (no tapmesh binaries): a three-member
//! cluster comes up, has a leader, keeps quorum when the leader is killed,
//! loses it with a second member gone, gets it back after a restart, and
//! leaves nothing behind.
use std::time::Duration;

use integration::etcd::{self, EtcdCluster, HEALTHY_TIMEOUT};
use integration::{Netns, netns, wait_until};

#[test]
fn etcd_cluster_survives_leader_kill_and_cleans_up() {
    let prefix;
    {
        let mut c = EtcdCluster::three();
        prefix = c.hub().name().trim_end_matches("-etcd").to_string();
        assert_eq!(netns::list_with_prefix(&format!("{prefix}-")).len(), 4);

        let leader = c
            .wait_leader(Duration::from_secs(10))
            .expect("a leader among three healthy members");
        c.etcdctl(&["put", "/t/a", "1"]);
        assert_eq!(c.keys("/t/"), vec!["/t/a".to_string()]);

        // A client namespace attached to the etcd subnet reaches a member.
        let client = Netns::new(&format!("{prefix}-c"));
        let addr = c.attach(&client, "etcd0");
        assert_eq!(addr, etcd::client_v4(1));
        let ping = client.exec(
            "ping",
            &["-c", "1", "-W", "2", &etcd::member_v4(1).to_string()],
        );
        assert!(ping.status.success(), "client cannot reach e1");

        // kill -9 of the leader: the other two elect a new one and still
        // serve writes and reads.
        c.kill9(leader);
        let next = c
            .wait_leader(HEALTHY_TIMEOUT)
            .expect("a new leader after the leader's kill -9");
        assert_ne!(next, leader);
        assert!(
            wait_until(HEALTHY_TIMEOUT, || {
                c.etcdctl_at(&c.endpoints(), &["put", "/t/b", "2"])
                    .status
                    .success()
            }),
            "no write accepted with two of three members"
        );

        // A second member gone (partitioned): the one left has no quorum.
        let third = (1..=3)
            .find(|&i| i != leader && i != next)
            .expect("3 members");
        c.partition(third);
        assert!(
            wait_until(HEALTHY_TIMEOUT, || !c.member_healthy(next)),
            "e{next} still healthy without quorum"
        );
        c.heal(third);

        // The killed leader restarts with its data and catches up.
        c.restart(leader);
        c.wait_healthy(HEALTHY_TIMEOUT)
            .expect("all three healthy after restart");
        assert!(c.is_running(leader));
        let got = c.etcdctl_at(
            &c.client_url(leader),
            &["get", "/t/b", "--print-value-only"],
        );
        assert_eq!(String::from_utf8_lossy(&got.stdout).trim(), "2");

        // Compaction moves the compact revision up to the current one.
        let rev = c.compact();
        assert!(rev >= 3, "revision {rev} after three writes");
        let old = c.etcdctl_at(&c.endpoints(), &["get", "/t/a", "--rev", "1"]);
        assert!(
            !old.status.success(),
            "a read below the compact revision succeeded"
        );
    }
    assert!(
        netns::list_with_prefix(&format!("{prefix}-")).is_empty(),
        "namespaces left behind"
    );
    assert!(
        !std::env::temp_dir().join(format!("{prefix}-etcd")).exists(),
        "data directory left behind"
    );
}
