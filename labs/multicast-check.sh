#!/bin/sh
# The multicast lab's scripted check, run with the lab up:
#
#   tapmesh-lab run labs/multicast.toml -- labs/multicast-check.sh
#
# rx1 and rx2 (VLAN 10, rx2 behind 5 % loss) and rx3 (VLAN 20) join
# 239.1.2.3 (IGMP) and ff15::1234 (MLD); once the switch's group table has
# both groups, src (VLAN 10) sends 200 datagrams to each. rx1 must get them
# all, rx2 most of them but not all (its link loses 5 %), rx3 none: VLANs
# never share a group.
set -eu
: "${TAPMESH_LAB_NAME:?run me with: tapmesh-lab run labs/multicast.toml -- $0}"
groups="239.1.2.3:5000 [ff15::1234]:5000"
count=200
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

in_host() { h=$1; shift; ip netns exec "$TAPMESH_LAB_NAME-$h" "$@"; }
fail() { echo "multicast check FAILED: $*" >&2; exit 1; }
# Polls COMMAND for up to 20 s.
within_20s() {
    n=0
    until "$@"; do
        n=$((n + 1))
        [ "$n" -lt 100 ] || return 1
        sleep 0.2
    done
}
# The file a receiver writes: host and IP version.
file() { case "$2" in \[*) echo "$out/$1.v6" ;; *) echo "$out/$1.v4" ;; esac; }

# Receivers listen for at most 60 s; they are stopped (SIGTERM: each prints
# its count) as soon as the senders are done and late frames have landed.
receivers=""
for g in $groups; do
    for h in rx1 rx2 rx3; do
        # Not through in_host: $! must be the receiver itself, not a subshell.
        ip netns exec "$TAPMESH_LAB_NAME-$h" tapmesh-lab mcast recv "$g" --seconds 60 \
            >"$(file "$h" "$g")" &
        receivers="$receivers $!"
    done
done
joined() {
    for g in $groups; do
        for h in rx1 rx2 rx3; do grep -qs '^joined' "$(file "$h" "$g")" || return 1; done
    done
}
within_20s joined || fail "the receivers did not join"
in_group_table() {
    s=$(tapmesh-switch status --json --socket "$TAPMESH_LAB_SOCKET")
    echo "$s" | grep -q '"239.1.2.3"' && echo "$s" | grep -q '"ff15::1234"'
}
within_20s in_group_table || fail "the groups never reached the switch's group table"
echo "receivers joined; the switch has both groups; src sends $count datagrams to each"
for g in $groups; do
    in_host src tapmesh-lab mcast send "$g" --count "$count" --interval-ms 20
done
sleep 1
# shellcheck disable=SC2086 # one PID per word
kill -TERM $receivers
wait

got() { sed -n 's/^received //p' "$(file "$1" "$2")"; }
for g in $groups; do
    rx1=$(got rx1 "$g") rx2=$(got rx2 "$g") rx3=$(got rx3 "$g")
    echo "$g received: rx1 $rx1, rx2 $rx2 (lossy link), rx3 $rx3 (VLAN 20)"
    [ "$rx1" -eq "$count" ] || fail "rx1 got $rx1 of $count to $g"
    [ "$rx2" -ge $((count * 80 / 100)) ] && [ "$rx2" -lt "$count" ] ||
        fail "rx2 got $rx2 of $count to $g behind 5 % loss"
    [ "$rx3" -eq 0 ] || fail "rx3, on VLAN 20, got $rx3 datagrams of VLAN 10's group $g"
done
echo "multicast check passed"
