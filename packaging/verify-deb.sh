#!/usr/bin/env bash
# Installs the tapmesh .deb on this machine and checks it, as CI does:
#   packaging/verify-deb.sh [target/debian/tapmesh_VERSION_ARCH.deb]
# - dpkg -i, the `tapmesh` user, /etc/tapmesh, every installed file;
# - `--version` of both binaries names the version and this checkout's commit;
# - systemd-analyze verify on the units (any complaint fails) and their
#   exposure score (systemd-analyze security, at most 2.5);
# - the installed daemons really run as `tapmesh` the way the units run them:
#   the switch with no capability, two nodes with CAP_NET_ADMIN only (TAP
#   through /dev/net/tun, admin sockets in /run/tapmesh, keys readable only by
#   tapmesh), in network namespaces of their own, and ping each other over
#   the overlay.
# Needs root, ip (iproute2), ping (iputils-ping), setpriv (util-linux) and
# systemd-analyze (systemd). Leaves the package installed.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() {
    echo "verify-deb: $*" >&2
    exit 1
}

deb=${1:-$(ls -t target/debian/tapmesh_*.deb 2>/dev/null | head -n 1)}
[ -n "$deb" ] && [ -f "$deb" ] || fail "no .deb: build it with \`cargo deb -p tapmesh-switch\`"
[ "$(id -u)" = 0 ] || fail "needs root (dpkg -i, namespaces)"
for tool in ip:iproute2 ping:iputils-ping setpriv:util-linux systemd-analyze:systemd; do
    command -v "${tool%%:*}" >/dev/null ||
        fail "${tool%%:*} not found: apt-get install ${tool#*:}"
done

echo "== dpkg -i $deb"
dpkg -i "$deb" >/dev/null

echo "== installed files"
for f in /usr/bin/tapmesh-switch /usr/bin/tapmesh-node \
    /usr/lib/systemd/system/tapmesh-switch.service \
    /usr/lib/systemd/system/tapmesh-node@.service \
    /usr/lib/sysusers.d/tapmesh.conf \
    /etc/tapmesh/switch.toml.example /etc/tapmesh/node.toml.example \
    /usr/share/tapmesh/grafana/dashboards/tapmesh.json \
    /usr/share/tapmesh/grafana/provisioning/dashboards/tapmesh.yml \
    /usr/share/tapmesh/grafana/provisioning/datasources/prometheus.yml \
    /usr/share/tapmesh/grafana/prometheus.yml \
    /usr/share/doc/tapmesh/README.md; do
    [ -e "$f" ] || fail "$f is missing"
    dpkg -S "$f" >/dev/null 2>&1 || fail "$f does not belong to the package"
done
for f in /etc/tapmesh/switch.toml.example /etc/tapmesh/node.toml.example; do
    grep -qx "$f" /var/lib/dpkg/info/tapmesh.conffiles || fail "$f is not a conffile"
done
getent passwd tapmesh >/dev/null || fail "no user tapmesh"
[ "$(stat -c '%U:%G %a' /etc/tapmesh)" = "root:tapmesh 750" ] ||
    fail "/etc/tapmesh is $(stat -c '%U:%G %a' /etc/tapmesh), want root:tapmesh 750"
dpkg -L tapmesh | grep -q '\.key$' && fail "the package ships a key"

echo "== --version"
commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
for bin in tapmesh-switch tapmesh-node; do
    got=$("$bin" --version)
    want="$bin $version (commit $commit)"
    [ "$got" = "$want" ] || fail "\`$bin --version\` says \"$got\", want \"$want\""
    echo "$got"
done

echo "== systemd-analyze verify"
# Exit status 0 also on unknown keys and bad values: any output fails.
out=$(cd / && systemd-analyze verify --man=no \
    /usr/lib/systemd/system/tapmesh-switch.service \
    /usr/lib/systemd/system/tapmesh-node@.service 2>&1) || fail "systemd-analyze verify: $out"
[ -z "$out" ] || fail "systemd-analyze verify: $out"
# The hardening, as systemd scores it (0 best, 10 worst); above 2.5 fails, so
# a unit that loses a protection is noticed.
for unit in tapmesh-switch.service tapmesh-node@.service; do
    score=$(cd / && systemd-analyze security --offline=yes --threshold=25 \
        "/usr/lib/systemd/system/$unit" 2>&1) ||
        fail "$unit is exposed: $(echo "$score" | tail -n 1)"
    echo "$score" | tail -n 1
done

echo "== the daemons as user tapmesh, the nodes with CAP_NET_ADMIN only"
# Names as the integration crate makes them (tmi{pid}x…), so its tests sweep
# them if this script is killed before it cleans up.
prefix="tmi$$x0"
dir=$(mktemp -d /tmp/tapmesh-verify.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    for ns in sw h1 h2; do ip netns del "$prefix-$ns" 2>/dev/null || true; done
    rm -rf "$dir"
    rm -f "/run/tapmesh/$prefix-"*.sock
    [ -z "${tun_mode:-}" ] || chmod "$tun_mode" /dev/net/tun
}
trap cleanup EXIT

# What the units' RuntimeDirectory= would make.
install -d -o tapmesh -g tapmesh -m 0750 /run/tapmesh
# Debian's udev makes /dev/net/tun 0666 (50-udev-default.rules); a machine
# without udev (a container) may have it 0600, which no capability short of
# CAP_DAC_OVERRIDE opens: give it udev's mode for the check, restore it after.
tun_mode=$(stat -c %a /dev/net/tun)
if [ "$tun_mode" != 666 ]; then
    echo "/dev/net/tun is $tun_mode here; 666 as udev makes it, for the check"
    chmod 0666 /dev/net/tun
fi
chown root:tapmesh "$dir"
chmod 0750 "$dir"
(umask 077
 tapmesh-switch keygen >"$dir/switch.key"
 tapmesh-node keygen >"$dir/h1.key"
 tapmesh-node keygen >"$dir/h2.key")
chown tapmesh:tapmesh "$dir"/*.key
switch_pub=$(tapmesh-switch pubkey <"$dir/switch.key")

ip netns add "$prefix-sw"
ip -n "$prefix-sw" link set lo up
cat >"$dir/switch.toml" <<EOF
listen = "0.0.0.0:7777"
private-key-file = "switch.key"
admin-socket = "/run/tapmesh/$prefix-switch.sock"
EOF
for i in 1 2; do
    ns="$prefix-h$i"
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    ip -n "$prefix-sw" link add "h$i" type veth peer name eth0 netns "$ns"
    ip -n "$prefix-sw" addr add "198.18.$i.1/24" dev "h$i"
    ip -n "$prefix-sw" link set "h$i" up
    ip -n "$ns" addr add "198.18.$i.2/24" dev eth0
    ip -n "$ns" link set eth0 up
    cat >>"$dir/switch.toml" <<EOF
[[node]]
name = "h$i"
public-key = "$(tapmesh-node pubkey <"$dir/h$i.key")"
EOF
    cat >"$dir/h$i.toml" <<EOF
name = "h$i"
private-key-file = "h$i.key"
switch = "198.18.$i.1:7777"
switch-public-key = "$switch_pub"
admin-socket = "/run/tapmesh/$prefix-h$i.sock"
[tap]
name = "tapmesh0"
address = ["198.19.0.$i/24"]
EOF
done
tapmesh-switch check --config "$dir/switch.toml" >/dev/null
tapmesh-node check --config "$dir/h1.toml" >/dev/null

# As the units run them: user tapmesh, no new privileges, the switch with an
# empty capability set, the nodes with CAP_NET_ADMIN in every set. `ip netns
# exec` and setpriv exec, so the PID of the background job is the daemon's.
as_tapmesh() {
    local ns=$1 caps=$2
    shift 2
    exec ip netns exec "$ns" setpriv --reuid=tapmesh --regid=tapmesh --init-groups \
        --no-new-privs --inh-caps="-all$caps" --ambient-caps="-all$caps" \
        --bounding-set="-all$caps" -- "$@"
}
as_tapmesh "$prefix-sw" "" tapmesh-switch run --config "$dir/switch.toml" \
    >"$dir/switch.log" 2>&1 &
pids+=($!)
for i in 1 2; do
    as_tapmesh "$prefix-h$i" ",+net_admin" tapmesh-node run --config "$dir/h$i.toml" \
        >"$dir/h$i.log" 2>&1 &
    pids+=($!)
done

logs() { tail -n 5 "$dir"/*.log >&2; }
up=""
for _ in $(seq 1 40); do
    if ip netns exec "$prefix-h1" ping -n -c 1 -W 1 198.19.0.2 >/dev/null 2>&1; then
        up=yes
        break
    fi
    sleep 0.5
done
[ -n "$up" ] || { logs; fail "h1 cannot ping h2 over the overlay"; }
ip netns exec "$prefix-h2" ping -n -c 3 -i 0.2 198.19.0.1 >/dev/null ||
    { logs; fail "h2 cannot ping h1 over the overlay"; }

uid=$(id -u tapmesh)
# CAP_NET_ADMIN is capability 12.
net_admin=0000000000001000
check_proc() {
    local pid=$1 name=$2 want_caps=$3
    kill -0 "$pid" 2>/dev/null || { logs; fail "$name exited"; }
    local st="/proc/$pid/status"
    [ "$(awk '/^Uid:/ {print $2 $3 $4 $5}' "$st")" = "$uid$uid$uid$uid" ] ||
        fail "$name does not run as tapmesh: $(grep ^Uid: "$st")"
    for set in CapEff CapPrm CapBnd CapAmb; do
        [ "$(awk -v s="$set:" '$1 == s {print $2}' "$st")" = "$want_caps" ] ||
            fail "$name: $(grep "^$set:" "$st"), want $want_caps"
    done
    [ "$(awk '/^NoNewPrivs:/ {print $2}' "$st")" = 1 ] || fail "$name may gain privileges"
}
check_proc "${pids[0]}" tapmesh-switch 0000000000000000
check_proc "${pids[1]}" "tapmesh-node h1" "$net_admin"
check_proc "${pids[2]}" "tapmesh-node h2" "$net_admin"
for s in switch h1 h2; do
    sock="/run/tapmesh/$prefix-$s.sock"
    [ "$(stat -c '%U %a' "$sock")" = "tapmesh 600" ] ||
        fail "$sock is $(stat -c '%U %a' "$sock"), want tapmesh 600"
done
tapmesh-switch status --socket "/run/tapmesh/$prefix-switch.sock" | grep -q '^h2 *yes' ||
    fail "the switch does not list h2 as up"
echo "switch (no capabilities) and two nodes (CAP_NET_ADMIN) as user tapmesh: h1 <-> h2 ping over the overlay"
echo "verify-deb: ok"
