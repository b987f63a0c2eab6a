# A Corosync cluster on one machine, for the tests and the demo (issue 12;
# ../shared/cluster-notes.md): two nodes (a, b) and a witness (w), each in
# its own network, mount and UTS namespace, on a bridge in a "switch"
# namespace. Each node's mount namespace has private /run, /etc/corosync,
# /var/lib/corosync, /var/lib/pacemaker, /var/log and /dev/shm (corosync's
# pid lock and sockets, libqb's ring buffers), so the daemons of one node
# never see another's. Source it; every function takes the lab's PREFIX
# (namespace names) and DIR (its files).
#
#   cluster_lab_create PREFIX DIR       the namespaces and the network
#   cluster_lab_run PREFIX DIR NODE CMD...   CMD inside NODE (a, b or w)
#   cluster_lab_start_corosync PREFIX DIR    corosync on a and b, then the
#                                       witness's qnetd and the nodes' qdevice
#   cluster_lab_quorate PREFIX DIR NODE  true when NODE's votequorum says so
#   cluster_lab_add_vm_networks PREFIX DIR [CLIENT_CIDR]   the networks of a protected
#                                       VM: replication, and a client LAN
#   cluster_lab_spawn PREFIX DIR NODE PIDFILE LOG CMD...   CMD in the
#                                       background, its own pid in PIDFILE
#   cluster_lab_destroy PREFIX DIR      kills every daemon, removes it all
#
# Addresses: a 10.93.0.1, b 10.93.0.2, w 10.93.0.3 (/24). The timers are
# the notes' tuned ones: token 200 ms, knet pings every 200 ms with a 1 s
# timeout, qdevice timeout 600 ms with qdevice's and qnetd's heartbeat
# minimums lowered to 200 ms (a dead host's peer quorate alone in about
# 0.5 s; ../shared/cluster-notes.md). 600, not the notes' 800: a hung
# host's connection to the witness stays open, and qnetd gives the other
# partition its vote only when the hung node's qdevice heartbeat (0.8 x
# the timeout) has failed; at 800 one hung-host takeover in 50 took 1.02 s
# (docs/benchmarks.md).

cluster_lab_nodes="a b w"

# Exits the calling test with a FAIL line when a Corosync tool is missing.
cluster_lab_require_tools() {
    local tool
    for tool in corosync corosync-qnetd corosync-qdevice corosync-quorumtool; do
        command -v "$tool" >/dev/null || { echo "FAIL: $tool is not installed (scripts/setup.sh)"; exit 1; }
    done
}

cluster_lab_address() { # NODE
    case "$1" in a) echo 10.93.0.1 ;; b) echo 10.93.0.2 ;; w) echo 10.93.0.3 ;; esac
}

cluster_lab_run() { # PREFIX DIR NODE COMMAND...
    local prefix=$1 dir=$2 node=$3
    shift 3
    nsenter --net="/run/netns/$prefix-$node" --mount="$dir/ns/$node.mnt" --uts="$dir/ns/$node.uts" -- "$@"
}

# Starts COMMAND inside NODE in the background, its output appended to
# LOG, and writes its pid (the command's own, so kill -9 reaches it) to
# PIDFILE.
cluster_lab_spawn() { # PREFIX DIR NODE PIDFILE LOG COMMAND...
    local prefix=$1 dir=$2 node=$3 pidfile=$4 log=$5
    shift 5
    nsenter --net="/run/netns/$prefix-$node" --mount="$dir/ns/$node.mnt" --uts="$dir/ns/$node.uts" -- "$@" \
        >>"$log" 2>&1 &
    echo $! >"$pidfile"
}

# `ip netns add`, then checks the namespace can be entered: once in CI the
# demo's first `ip -n NAME` right after a successful add found no
# namespace file ("Cannot open network namespace"); a fresh add cures it.
cluster_lab_netns_add() { # NAME
    local attempt
    for attempt in 1 2 3; do
        ip netns add "$1" || true
        ip netns exec "$1" true 2>/dev/null && return 0
        echo "cluster lab: namespace $1 cannot be entered after its creation (attempt $attempt); again" >&2
        ip netns del "$1" 2>/dev/null || true
        sleep 0.2
    done
    return 1
}

cluster_lab_create() { # PREFIX DIR
    local prefix=$1 dir=$2 node
    mkdir -p "$dir/ns" || return 1
    # The namespace files must live on a private mount to be bind targets.
    mount --bind "$dir/ns" "$dir/ns" && mount --make-private "$dir/ns" || return 1
    cluster_lab_netns_add "$prefix-sw" || return 1
    ip -n "$prefix-sw" link add br0 type bridge && ip -n "$prefix-sw" link set br0 up || return 1
    for node in $cluster_lab_nodes; do
        cluster_lab_netns_add "$prefix-$node" || return 1
        ip link add "eth-$prefix-$node" type veth peer name "p-$node" || return 1
        ip link set "eth-$prefix-$node" netns "$prefix-$node" name eth0 || return 1
        ip link set "p-$node" netns "$prefix-sw" || return 1
        ip -n "$prefix-sw" link set "p-$node" master br0 up || return 1
        ip -n "$prefix-$node" addr add "$(cluster_lab_address "$node")/24" dev eth0 || return 1
        ip -n "$prefix-$node" link set eth0 up && ip -n "$prefix-$node" link set lo up || return 1
        mkdir -p "$dir/$node"/{run,etc,lib-corosync,lib-pacemaker,log/corosync,log/pacemaker,shm} || return 1
        touch "$dir/ns/$node.mnt" "$dir/ns/$node.uts"
        unshare --mount="$dir/ns/$node.mnt" --uts="$dir/ns/$node.uts" --propagation private sh -c "
            set -e
            mount --bind '$dir/$node/run' /run
            mkdir -p /run/netns
            mount --bind '$dir/$node/etc' /etc/corosync
            mount --bind '$dir/$node/lib-corosync' /var/lib/corosync
            mount --bind '$dir/$node/lib-pacemaker' /var/lib/pacemaker
            mount --bind '$dir/$node/log' /var/log
            mount -t tmpfs -o size=256m tmpfs /dev/shm
            hostname node-$node" || return 1
    done
}

cluster_lab_write_config() { # PREFIX DIR NODE
    local dir=$2 node=$3
    cat >"$dir/$node/etc/corosync.conf" <<CONF
totem {
    version: 2
    cluster_name: colo-lab
    transport: knet
    token: 200
    crypto_cipher: none
    crypto_hash: none
    # Per link, or they are ignored: without them knet pings every 50 ms
    # with a 100 ms timeout (from the token) and the link flaps every few
    # seconds, each flap a new ring (../shared/cluster-notes.md).
    interface {
        linknumber: 0
        knet_ping_interval: 200
        knet_ping_timeout: 1000
    }
}
nodelist {
    node {
        ring0_addr: 10.93.0.1
        nodeid: 1
        name: node-a
    }
    node {
        ring0_addr: 10.93.0.2
        nodeid: 2
        name: node-b
    }
}
quorum {
    provider: corosync_votequorum
    device {
        model: net
        votes: 1
        timeout: 600
        net {
            host: 10.93.0.3
            algorithm: ffsplit
            tls: off
        }
    }
}
logging {
    to_logfile: yes
    logfile: /var/log/corosync/corosync.log
    to_stderr: no
    to_syslog: no
    timestamp: hires
}
CONF
}

# Waits (bounded, SECONDS) until COMMAND succeeds inside NODE.
cluster_lab_wait() { # PREFIX DIR NODE SECONDS COMMAND...
    local prefix=$1 dir=$2 node=$3 limit=$4 started=$SECONDS
    shift 4
    until cluster_lab_run "$prefix" "$dir" "$node" "$@" >/dev/null 2>&1; do
        ((SECONDS - started >= limit)) && return 1
        sleep 0.1
    done
}

cluster_lab_members() { # PREFIX DIR NODE: how many nodes NODE's corosync has as members
    cluster_lab_run "$1" "$2" "$3" corosync-quorumtool -s 2>/dev/null | sed -n 's/^Nodes: *\([0-9]*\).*/\1/p'
}

cluster_lab_quorate() { # PREFIX DIR NODE
    cluster_lab_run "$1" "$2" "$3" corosync-quorumtool -s 2>/dev/null | grep -q "^Quorate: *Yes"
}

cluster_lab_start_corosync() { # PREFIX DIR
    local prefix=$1 dir=$2 node
    for node in a b; do
        cluster_lab_write_config "$prefix" "$dir" "$node"
        cluster_lab_spawn "$prefix" "$dir" "$node" "$dir/$node/corosync.pid" "$dir/$node/corosync.out" corosync -f
    done
    # qdevice only once both are members (corosync 3.1.7 aborted once when
    # it came first: ../shared/cluster-notes.md).
    local started=$SECONDS
    until [ "$(cluster_lab_members "$prefix" "$dir" a)" = 2 ] && [ "$(cluster_lab_members "$prefix" "$dir" b)" = 2 ]; do
        ((SECONDS - started >= 30)) && { echo "cluster lab: the nodes did not see each other within 30 s" >&2; return 1; }
        sleep 0.1
    done
    mkdir -p "$dir/w/etc/qnetd"
    cluster_lab_spawn "$prefix" "$dir" w "$dir/w/qnetd.pid" "$dir/w/qnetd.out" corosync-qnetd -f -s off -S heartbeat_interval_min=200
    sleep 0.5
    for node in a b; do
        cluster_lab_start_qdevice "$prefix" "$dir" "$node"
    done
    for node in a b; do
        cluster_lab_wait "$prefix" "$dir" "$node" 30 sh -c 'corosync-quorumtool -s | grep -q "^Quorate: *Yes" &&
            corosync-quorumtool -s | grep -q "Qdevice"' ||
            { echo "cluster lab: node $node not quorate with its qdevice within 30 s" >&2; return 1; }
    done
}

# The networks of a VM protected across the lab's nodes a and b, besides
# the cluster network (10.93.0.0/24, Corosync and the witness):
#   replication: each node's rep0 on a bridge "rep" in the switch
#     namespace, 10.94.0.1 (a) and 10.94.0.2 (b); port p-rep-NODE
#   client LAN: each node has a bridge br0 with tap0 (its VM's TAP) and an
#     uplink to the bridge "lan" in the switch namespace (port p-lan-NODE);
#     PREFIX-client is on it with CLIENT_CIDR (default 10.97.0.1/24).
# Only the VMs' frames cross the LAN ports (the nodes have no address on
# it, IPv6 is off), so the packets each p-lan-NODE receives are the frames
# that node's copy of the VM released.
cluster_lab_add_vm_networks() { # PREFIX DIR [CLIENT_CIDR]
    local prefix=$1 node sw=$1-sw client_cidr=${3:-10.97.0.1/24}
    ip -n "$sw" link add rep type bridge && ip -n "$sw" link set rep up || return 1
    ip -n "$sw" link add lan type bridge && ip -n "$sw" link set lan up || return 1
    for node in a b; do
        ip netns exec "$prefix-$node" sysctl -q -w net.ipv6.conf.all.disable_ipv6=1 \
            net.ipv6.conf.default.disable_ipv6=1 || return 1
        ip -n "$prefix-$node" link add rep0 type veth peer name "p-rep-$node" netns "$sw" || return 1
        ip -n "$sw" link set "p-rep-$node" master rep up || return 1
        ip -n "$prefix-$node" addr add "10.94.0.$([ "$node" = a ] && echo 1 || echo 2)/24" dev rep0 || return 1
        ip -n "$prefix-$node" link set rep0 up || return 1
        ip -n "$prefix-$node" link add br0 type bridge && ip -n "$prefix-$node" link set br0 up || return 1
        ip -n "$prefix-$node" link add uplink type veth peer name "p-lan-$node" netns "$sw" || return 1
        ip -n "$prefix-$node" link set uplink master br0 up || return 1
        ip -n "$sw" link set "p-lan-$node" master lan up || return 1
        ip -n "$prefix-$node" tuntap add dev tap0 mode tap || return 1
        ip -n "$prefix-$node" link set tap0 master br0 up || return 1
    done
    cluster_lab_netns_add "$prefix-client" || return 1
    ip netns exec "$prefix-client" sysctl -q -w net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    ip -n "$prefix-client" link set lo up || return 1
    ip -n "$prefix-client" link add veth0 type veth peer name p-client netns "$sw" || return 1
    ip -n "$sw" link set p-client master lan up || return 1
    ip -n "$prefix-client" addr add "$client_cidr" dev veth0 && ip -n "$prefix-client" link set veth0 up || return 1
}

# The tiny guest's VM, as each node runs it ("guarded", 128 MiB, its own
# 16 MiB disk image DIR/disk-NODE.img, tap0 with one MAC): DIR/a.cfg and
# DIR/b.cfg, the guest at GUEST_IP/24 with its memory churner on; the pair
# authenticates with the pre-shared key DIR/pair.psk, made by COLO.
cluster_lab_write_vm_configs() { # DIR GUEST_DIR GUEST_IP COLO
    local dir=$1 guest_dir=$2 guest_ip=$3 colo=$4 node
    truncate -s 16M "$dir/disk-a.img" "$dir/disk-b.img" || return 1
    rm -f "$dir/pair.psk"
    "$colo" keygen psk "$dir/pair.psk" --identity guarded >/dev/null || return 1
    for node in a b; do
        cat >"$dir/$node.cfg" <<CFG
name = "guarded"
memory = 128
kernel = "$guest_dir/Image"
initrd = "$guest_dir/initramfs.cpio"
cmdline = "console=ttyS0 colo.ip=$guest_ip/24 colo.churn=2000"
disks = [ "path=$dir/disk-$node.img" ]
nics = [ "tap=tap0,mac=52:54:00:aa:bb:12" ]
console = "stdio"
replication_auth = "psk"
replication_psk = "$dir/pair.psk"
CFG
    done
}

# Starts NODE's qdevice (its corosync must be running), with the lab's
# heartbeat minimum.
cluster_lab_start_qdevice() { # PREFIX DIR NODE
    cluster_lab_spawn "$1" "$2" "$3" "$2/$3/qdevice.pid" "$2/$3/qdevice.out" \
        corosync-qdevice -f -S net_heartbeat_interval_min=200
}

# Kills NODE's corosync and qdevice if they run, starts them again.
cluster_lab_restart_corosync() { # PREFIX DIR NODE
    local prefix=$1 dir=$2 node=$3
    kill -9 "$(cat "$dir/$node/qdevice.pid")" "$(cat "$dir/$node/corosync.pid")" 2>/dev/null || true
    sleep 0.2
    # libqb's ring buffers of a killed corosync and its killed clients stay
    # in the node's /dev/shm and fill it after a few restarts.
    cluster_lab_run "$prefix" "$dir" "$node" sh -c 'rm -rf /dev/shm/qb-*' || true
    cluster_lab_spawn "$prefix" "$dir" "$node" "$dir/$node/corosync.pid" "$dir/$node/corosync.out" corosync -f
    # qdevice only once corosync answers (see cluster_lab_start_corosync).
    cluster_lab_wait "$prefix" "$dir" "$node" 30 corosync-quorumtool -s || return 1
    cluster_lab_start_qdevice "$prefix" "$dir" "$node"
}

# Never fails (safe in traps and under set -e).
cluster_lab_destroy() { # PREFIX DIR
    local prefix=$1 dir=$2 node pid
    for node in $cluster_lab_nodes; do
        # Everything that runs in the node's network namespace.
        for pid in $(ip netns pids "$prefix-$node" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    done
    sleep 0.2
    for node in $cluster_lab_nodes; do
        ip netns del "$prefix-$node" 2>/dev/null || true
        umount "$dir/ns/$node.mnt" "$dir/ns/$node.uts" 2>/dev/null || true
    done
    for pid in $(ip netns pids "$prefix-client" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    ip netns del "$prefix-client" 2>/dev/null || true
    ip netns del "$prefix-sw" 2>/dev/null || true
    umount "$dir/ns" 2>/dev/null || true
    return 0
}
