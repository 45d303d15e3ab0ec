#!/bin/sh
# The multicast lab's scripted check, run with the lab up:
#
#   tapmesh-lab run labs/multicast.toml -- labs/multicast-check.sh
#
# rx1 and rx2 (VLAN 10, rx2 behind 5 % loss) and rx3 (VLAN 20) join
# 239.1.2.3; once the switch's group table has the group, src (VLAN 10)
# sends 200 datagrams to it. rx1 must get them all, rx2 most of them but
# not all (its link loses 5 %), rx3 none: VLANs never share a group.
set -eu
: "${TAPMESH_LAB_NAME:?run me with: tapmesh-lab run labs/multicast.toml -- $0}"
group=239.1.2.3:5000
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

for h in rx1 rx2 rx3; do
    in_host "$h" tapmesh-lab mcast recv "$group" --seconds 30 >"$out/$h" &
done
joined() { for h in rx1 rx2 rx3; do grep -qs '^joined' "$out/$h" || return 1; done; }
within_20s joined || fail "the receivers did not join"
in_group_table() {
    tapmesh-switch status --json --socket "$TAPMESH_LAB_SOCKET" | grep -q '"239.1.2.3"'
}
within_20s in_group_table || fail "239.1.2.3 never reached the switch's group table"
echo "receivers joined; the switch has the group; src sends $count datagrams"
in_host src tapmesh-lab mcast send "$group" --count "$count" --interval-ms 20
wait

got() { sed -n 's/^received //p' "$out/$1"; }
rx1=$(got rx1) rx2=$(got rx2) rx3=$(got rx3)
echo "received: rx1 $rx1, rx2 $rx2 (lossy link), rx3 $rx3 (VLAN 20)"
[ "$rx1" -eq "$count" ] || fail "rx1 got $rx1 of $count"
[ "$rx2" -ge $((count * 80 / 100)) ] && [ "$rx2" -lt "$count" ] ||
    fail "rx2 got $rx2 of $count behind 5 % loss"
[ "$rx3" -eq 0 ] || fail "rx3, on VLAN 20, got $rx3 datagrams of VLAN 10's group"
echo "multicast check passed"
