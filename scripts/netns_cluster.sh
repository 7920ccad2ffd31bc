#!/usr/bin/env bash
# A cluster of hosts in network namespaces on this machine, for distributed runs over real
# ssh and real links (issue 44): each host has its own address, its own sshd (Debian's
# openssh-server, with keys made for the run) and its own processes; the file system is this
# machine's, so the project's .venv is at the same path on every host.
#
#   scripts/netns_cluster.sh up [N] [DIR]   N hosts (default 3); DIR: keys, configs, logs
#   scripts/netns_cluster.sh down [DIR]     every host, sshd and process of the cluster gone
#
# and the faults the multi-host tests put in a cluster that is up:
#   scripts/netns_cluster.sh link I down|up          host I's link (both ways) down or up
#   scripts/netns_cluster.sh shape NETEM...|off      every link, both ways: tc netem NETEM...
#                                                    (e.g. shape delay 50ms loss 1%); on a
#                                                    kernel without sch_netem, delay and loss
#                                                    by scripts/link_emulator.py (it says so)
#   scripts/netns_cluster.sh refuse|accept I [DIR]   host I's sshd refuses the run's user, or
#                                                    again accepts it (restarting that sshd
#                                                    undoes a hide on host I)
#   scripts/netns_cluster.sh hide|unhide I PATH [DIR]  PATH empty on host I (a missing venv),
#                                                    or back
#
# DIR defaults to /tmp/xception-mx-cluster.  After `up` it holds:
#   hosts        one address per line (xception-launch --hosts FILE)
#   ssh_config   for ssh -F (xception-launch --ssh "ssh -F DIR/ssh_config")
# The hosts are namespaces xmx-h1..xmx-hN with addresses 198.18.0.11.. on the bridge xmx-br0,
# which this machine joins as 198.18.0.1: 198.18.0.0/15 is the range set aside for network
# tests (RFC 2544), never routed.  Needs root, iproute2 and openssh-server.  A failed `up`
# takes down what it made.  Links can then be shaped with tc netem on xmx-vI (this side of
# host I's link) or set down with `ip link set xmx-vI down`.  The emulator takes xmx-vI off
# the bridge and relays its frames to xmx-wI, whose peer xmx-uI is on the bridge; `shape off`
# and `down` stop it (its pid in /run/xmx-link-emulator.pid, its output beside it).
#
# Fault point for the tests: NETNS_CLUSTER_FAULT=after-host-I makes `up` fail once host I is
# up (the cluster half made).
set -Eeuo pipefail

NS=xmx-h BRIDGE=xmx-br0 VETH=xmx-v RELAY=xmx-w PORT=xmx-u NET=198.18.0 GATEWAY=198.18.0.1
DEFAULT_DIR=/tmp/xception-mx-cluster
EMULATOR_PID=/run/xmx-link-emulator.pid EMULATOR_LOG=/run/xmx-link-emulator.log
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

die() { echo "netns_cluster.sh: $*" >&2; exit 2; }
address() { echo "$NET.$((10 + $1))"; }

namespaces() { ip netns list 2>/dev/null | awk '{print $1}' | grep "^$NS[0-9][0-9]*$" || true; }

down() {
    local dir=$1 ns pids link
    stop_emulator
    for ns in $(namespaces); do
        pids=$(ip netns pids "$ns" 2>/dev/null || true)
        [ -z "$pids" ] || kill -TERM $pids 2>/dev/null || true
        for _ in 1 2 3 4 5 6 7 8 9 10; do
            [ -n "$(ip netns pids "$ns" 2>/dev/null)" ] || break
            sleep 0.2
        done
        pids=$(ip netns pids "$ns" 2>/dev/null || true)
        [ -z "$pids" ] || kill -KILL $pids 2>/dev/null || true
        ip netns del "$ns"
        rm -rf "/etc/netns/$ns"
    done
    # a namespace's veth outlives it for a moment (the kernel frees it later): deleted here
    for link in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 |
                  grep -E "^($VETH|$RELAY|$PORT)[0-9]+$" || true); do
        ip link del "$link" 2>/dev/null || true
    done
    ! ip link show "$BRIDGE" >/dev/null 2>&1 || ip link del "$BRIDGE"
    rm -f "$dir"/sshd-*.pid
}

check_tools() {
    [ "$(id -u)" = 0 ] || die "needs root (network namespaces and a bridge)"
    command -v ip >/dev/null || die "needs iproute2 (ip): apt-get install iproute2"
    [ -x /usr/sbin/sshd ] || die "needs openssh-server (/usr/sbin/sshd): apt-get install openssh-server"
    command -v ssh-keygen >/dev/null || die "needs ssh-keygen (openssh-client)"
}

write_keys() {
    local dir=$1
    rm -f "$dir/host_key" "$dir/host_key.pub" "$dir/id_ed25519" "$dir/id_ed25519.pub"
    ssh-keygen -q -t ed25519 -N "" -C "xception-mx cluster host" -f "$dir/host_key"
    ssh-keygen -q -t ed25519 -N "" -C "xception-mx cluster client" -f "$dir/id_ed25519"
    cp "$dir/id_ed25519.pub" "$dir/authorized_keys"
    chmod 600 "$dir/authorized_keys"
}

write_host() {       # sshd's config of host $2, its known_hosts line
    local dir=$1 i=$2
    cat >"$dir/sshd-h$i.conf" <<EOF
ListenAddress $(address "$i")
Port 22
HostKey $dir/host_key
PidFile $dir/sshd-h$i.pid
AuthorizedKeysFile $dir/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AcceptEnv LANG LC_*
EOF
    echo "$(address "$i") $(cut -d' ' -f1,2 "$dir/host_key.pub")" >>"$dir/known_hosts"
}

write_client() {
    local dir=$1 n=$2 i
    cat >"$dir/ssh_config" <<EOF
Host $NET.*
    User root
    IdentityFile $dir/id_ed25519
    IdentitiesOnly yes
    UserKnownHostsFile $dir/known_hosts
    StrictHostKeyChecking yes
    BatchMode yes
    ConnectTimeout 5
    LogLevel ERROR
EOF
    : >"$dir/hosts"
    for i in $(seq "$n"); do address "$i" >>"$dir/hosts"; done
}

add_host() {
    local dir=$1 i=$2 ns=$NS$2
    ip netns add "$ns"
    ip link add "$VETH$i" type veth peer name eth0 netns "$ns"
    ip link set "$VETH$i" master "$BRIDGE" up
    ip -n "$ns" link set lo up
    ip -n "$ns" addr add "$(address "$i")/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" route add default via "$GATEWAY"
    # this machine's name resolves to the host's own address there (Gloo advertises the
    # address of its name): ip netns exec puts /etc/netns/NS/hosts over /etc/hosts
    mkdir -p "/etc/netns/$ns"
    { echo "$(address "$i") $(hostname)"; awk -v name="$(hostname)" '/^[[:space:]]*(#|$)/ {
        print; next } { line = $1; n = 0; for (k = 2; k <= NF; k++) if ($k != name) {
        line = line " " $k; n++ } if (n) print line }' /etc/hosts; } >"/etc/netns/$ns/hosts"
    write_host "$dir" "$i"
    ip netns exec "$ns" /usr/sbin/sshd -f "$dir/sshd-h$i.conf" -E "$dir/sshd-h$i.log"
}

wait_for_ssh() {
    local dir=$1 n=$2 i tries
    for i in $(seq "$n"); do
        tries=0
        until ssh -F "$dir/ssh_config" "$(address "$i")" true 2>/dev/null; do
            tries=$((tries + 1))
            [ $tries -lt 50 ] || die "host $i ($(address "$i")): its sshd does not answer" \
                "(see $dir/sshd-h$i.log)"
            sleep 0.2
        done
    done
}

up() {
    local n=$1 dir=$2 i
    case $n in ''|*[!0-9]*) die "up N: N must be a number of hosts, got '$n'" ;; esac
    [ "$n" -ge 1 ] && [ "$n" -le 200 ] || die "up N: N must be 1 to 200, got $n"
    check_tools
    [ -z "$(namespaces)" ] && ! ip link show "$BRIDGE" >/dev/null 2>&1 ||
        die "a cluster is up already: scripts/netns_cluster.sh down first"
    mkdir -p "$dir" /run/sshd
    dir=$(cd "$dir" && pwd)
    trap 'down "$dir"' ERR
    write_keys "$dir"
    : >"$dir/known_hosts"
    ip link add "$BRIDGE" type bridge
    ip addr add "$GATEWAY/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
    for i in $(seq "$n"); do
        add_host "$dir" "$i"
        [ "${NETNS_CLUSTER_FAULT:-}" != "after-host-$i" ] || { echo "netns_cluster.sh: fault" \
            "injected after host $i" >&2; false; }
    done
    write_client "$dir" "$n"
    wait_for_ssh "$dir" "$n"
    trap - ERR
    echo "netns_cluster.sh: $n hosts up ($(paste -sd' ' "$dir/hosts")): --hosts $dir/hosts" \
        "--ssh \"ssh -F $dir/ssh_config\""
}

host_number() {     # $1 names a host of the cluster that is up
    case $1 in ''|*[!0-9]*) die "expected a host number, got '$1'" ;; esac
    ip netns list 2>/dev/null | grep -q "^$NS$1\b" || die "no host $1 in the cluster"
}

link() {
    host_number "$1"
    case ${2:-} in up|down) ip link set "$VETH$1" "$2" ;;
        *) die "link I down|up: expected down or up, got '${2:-}'" ;; esac
}

emulator_running() {  # $1 is the emulator and runs (a zombie nobody reaps does not)
    grep -qs link_emulator.py "/proc/$1/cmdline" &&
        ! awk '{ sub(/.*\) /, ""); exit ($1 == "Z" || $1 == "X") ? 0 : 1 }' "/proc/$1/stat"
}

stop_emulator() {
    local pid
    [ -f "$EMULATOR_PID" ] || return 0
    pid=$(cat "$EMULATOR_PID")
    if emulator_running "$pid"; then
        kill "$pid"
        for _ in 1 2 3 4 5 6 7 8 9 10; do ! emulator_running "$pid" || sleep 0.2; done
        ! emulator_running "$pid" || kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$EMULATOR_PID"
    ! grep -q "stopped; frames" "$EMULATOR_LOG" 2>/dev/null || tail -1 "$EMULATOR_LOG"
}

unshape() {         # every link as `up` made it: no netem, no emulator
    local ns i
    tc qdisc del dev "$BRIDGE" root 2>/dev/null || true
    stop_emulator
    for ns in $(namespaces); do
        i=${ns#$NS}
        tc qdisc del dev "$VETH$i" root 2>/dev/null || true
        tc -n "$ns" qdisc del dev eth0 root 2>/dev/null || true
        ! ip link show "$RELAY$i" >/dev/null 2>&1 || ip link del "$RELAY$i"
        ! ip link show "$VETH$i" >/dev/null 2>&1 || ip link set "$VETH$i" master "$BRIDGE"
    done
}

emulate() {         # the emulator between each host's link and the bridge
    local ns i said pairs=()
    trap 'unshape' ERR
    for ns in $(namespaces); do
        i=${ns#$NS}
        ip link add "$RELAY$i" type veth peer name "$PORT$i"
        ip link set "$PORT$i" master "$BRIDGE" up
        ip link set "$RELAY$i" up
        ip link set "$VETH$i" nomaster
        pairs+=(--pair "$VETH$i:$RELAY$i")
    done
    setsid python3 "$HERE/link_emulator.py" "$@" "${pairs[@]}" >"$EMULATOR_LOG" 2>&1 \
        </dev/null &
    echo $! >"$EMULATOR_PID"
    trap - ERR
    for _ in $(seq 50); do
        ! grep -q '^ready$' "$EMULATOR_LOG" || return 0
        emulator_running "$(cat "$EMULATOR_PID")" || break
        sleep 0.1
    done
    said=$(tail -1 "$EMULATOR_LOG")
    unshape
    case $said in *"packet sockets cannot relay"*)
        die "shape: cannot shape links on this machine: no sch_netem, and $said" ;; esac
    die "shape: the link emulator did not start: $said"
}

shape() {           # every link, both ways, as tc netem "$@" (or the emulator, without netem)
    local ns i said
    [ $# -gt 0 ] || die "shape NETEM...|off: e.g. shape delay 50ms loss 1%"
    unshape
    [ "$*" != off ] || return 0
    if ! said=$(tc qdisc replace dev "$BRIDGE" root netem "$@" 2>&1); then
        case $said in *"qdisc kind is unknown"*)
            emulate "$@"
            echo "netns_cluster.sh: no sch_netem in this kernel: every link shaped ($*) by" \
                 "scripts/link_emulator.py"
            return 0 ;;
        esac
        die "shape: tc netem $*: $said"
    fi
    tc qdisc del dev "$BRIDGE" root
    for ns in $(namespaces); do
        i=${ns#$NS}
        tc qdisc replace dev "$VETH$i" root netem "$@"
        tc -n "$ns" qdisc replace dev eth0 root netem "$@"
    done
    echo "netns_cluster.sh: every link shaped ($*) by tc netem"
}

restart_sshd() {    # host $1's sshd started again, with the config as it now is
    local i=$1 dir=$2 pid
    pid=$(cat "$dir/sshd-h$i.pid")
    kill "$pid"
    for _ in 1 2 3 4 5 6 7 8 9 10; do ! kill -0 "$pid" 2>/dev/null || sleep 0.2; done
    ! kill -0 "$pid" 2>/dev/null || die "host $i: its sshd (pid $pid) did not stop"
    ip netns exec "$NS$i" /usr/sbin/sshd -f "$dir/sshd-h$i.conf" -E "$dir/sshd-h$i.log"
}

refuse() {          # host $1's sshd refuses the run's user (accept: again not)
    local i=$1 dir=$2 how=$3
    host_number "$i"
    sed -i '/^DenyUsers /d' "$dir/sshd-h$i.conf"
    [ "$how" = accept ] || echo "DenyUsers *" >>"$dir/sshd-h$i.conf"
    restart_sshd "$i" "$dir"
}

hide() {            # an empty file system over $2 in the mounts host $1's sshd (and logins)
    local i=$1 path=$2 dir=$3 how=$4          # see (unhide: the folder back)
    host_number "$i"
    [ -d "$path" ] || die "$how I PATH: no folder $path"
    path=$(cd "$path" && pwd)
    if [ "$how" = hide ]; then
        nsenter -t "$(cat "$dir/sshd-h$i.pid")" -m mount -t tmpfs -o ro,size=4k xmx-hidden "$path"
    else
        nsenter -t "$(cat "$dir/sshd-h$i.pid")" -m umount "$path"
    fi
}

case ${1:-} in
    up) up "${2:-3}" "${3:-$DEFAULT_DIR}" ;;
    down) down "${2:-$DEFAULT_DIR}"; echo "netns_cluster.sh: down" ;;
    link) link "${2:-}" "${3:-}" ;;
    shape) shift; shape "$@" ;;
    refuse|accept) refuse "${2:-}" "${3:-$DEFAULT_DIR}" "$1" ;;
    hide|unhide) hide "${2:-}" "${3:-}" "${4:-$DEFAULT_DIR}" "$1" ;;
    *) die "usage: scripts/netns_cluster.sh up [N] [DIR] | down [DIR] | link I down|up |" \
           "shape NETEM...|off | refuse|accept I [DIR] | hide|unhide I PATH [DIR]" ;;
esac
