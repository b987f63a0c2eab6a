# Network namespace topology shared by the tests, benchmarks and the demo
# (source this file). A "host" namespace holds a bridge br0 with the TAP
# devices the VMs attach to; a "client" namespace reaches the bridge through
# a veth pair:
#
#   client ns: veth0 CLIENT_CIDR ---- veth1 -- br0 -- TAP... (host ns)
#
# Everything stays inside the two namespaces; destroying them removes it all.

# netns_create_topology HOST_NS CLIENT_NS CLIENT_CIDR TAP [TAP...]
netns_create_topology() {
    local host_ns=$1 client_ns=$2 client_cidr=$3 tap
    shift 3
    ip netns add "$host_ns" || return 1
    ip netns add "$client_ns" || return 1
    ip -n "$host_ns" link set lo up || return 1
    ip -n "$host_ns" link add br0 type bridge || return 1
    ip -n "$host_ns" link set br0 up || return 1
    for tap in "$@"; do
        ip -n "$host_ns" tuntap add dev "$tap" mode tap || return 1
        ip -n "$host_ns" link set "$tap" master br0 up || return 1
    done
    ip -n "$client_ns" link add veth0 type veth peer name veth1 netns "$host_ns" || return 1
    ip -n "$host_ns" link set veth1 master br0 up || return 1
    ip -n "$client_ns" link set lo up || return 1
    ip -n "$client_ns" addr add "$client_cidr" dev veth0 || return 1
    ip -n "$client_ns" link set veth0 up || return 1
}

# netns_destroy_topology HOST_NS CLIENT_NS: never fails (for traps).
netns_destroy_topology() {
    ip netns del "$1" 2>/dev/null || true
    ip netns del "$2" 2>/dev/null || true
    return 0
}

# Two "hosts" with a client between them on one LAN, each host a namespace
# of its own with the TAP of its VM bridged to its uplink (the demo):
#
#   PREFIX-lan:    br0 (the LAN switch)
#   PREFIX-a:      br0 = uplink + tap0 (host A's VM), HOST_A_CIDR on br0
#   PREFIX-b:      br0 = uplink + tap0 (host B's VM), HOST_B_CIDR on br0
#   PREFIX-client: veth0 CLIENT_CIDR, on the LAN
#
# A VM's MAC moves from host A's port to host B's when B announces it.
# netns_create_two_hosts PREFIX CLIENT_CIDR HOST_A_CIDR HOST_B_CIDR
netns_create_two_hosts() {
    local prefix=$1 client_cidr=$2 host_a_cidr=$3 host_b_cidr=$4 lan=$1-lan side cidr
    ip netns add "$lan" || return 1
    ip -n "$lan" link set lo up || return 1
    ip -n "$lan" link add br0 type bridge || return 1
    ip -n "$lan" link set br0 up || return 1
    for side in a b; do
        [ "$side" = a ] && cidr=$host_a_cidr || cidr=$host_b_cidr
        ip netns add "$prefix-$side" || return 1
        ip -n "$prefix-$side" link set lo up || return 1
        ip -n "$prefix-$side" link add br0 type bridge || return 1
        ip -n "$prefix-$side" link set br0 up || return 1
        ip -n "$prefix-$side" link add uplink type veth peer name port-$side netns "$lan" || return 1
        ip -n "$prefix-$side" link set uplink master br0 up || return 1
        ip -n "$lan" link set "port-$side" master br0 up || return 1
        ip -n "$prefix-$side" tuntap add dev tap0 mode tap || return 1
        ip -n "$prefix-$side" link set tap0 master br0 up || return 1
        ip -n "$prefix-$side" addr add "$cidr" dev br0 || return 1
    done
    ip netns add "$prefix-client" || return 1
    ip -n "$prefix-client" link set lo up || return 1
    ip -n "$prefix-client" link add veth0 type veth peer name port-client netns "$lan" || return 1
    ip -n "$lan" link set port-client master br0 up || return 1
    ip -n "$prefix-client" addr add "$client_cidr" dev veth0 || return 1
    ip -n "$prefix-client" link set veth0 up || return 1
}

# netns_destroy_two_hosts PREFIX: ends every process still running in the
# four namespaces (kill -9), then removes them. Never fails (for traps).
netns_destroy_two_hosts() {
    local name pids
    for name in "$1-client" "$1-a" "$1-b" "$1-lan"; do
        pids=$(ip netns pids "$name" 2>/dev/null) && [ -n "$pids" ] && kill -9 $pids 2>/dev/null
        ip netns del "$name" 2>/dev/null || true
    done
    return 0
}
