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
