# Pacemaker on the Corosync lab (scripts/lib/cluster_lab.sh; issue 12,
# ../shared/cluster-notes.md): pacemakerd on nodes a and b, the colo OCF
# agent and a fencing agent installed inside each node's mount namespace
# only, and a CIB written before the daemons start. Source it after
# cluster_lab.sh; every function takes the lab's PREFIX and DIR.
#
#   pacemaker_lab_write_cib PREFIX DIR FENCE_AGENT_NAME RESOURCES CONSTRAINTS
#       DIR/cib.xml: the cluster options (fencing on, dc-deadtime 2 s),
#       a stonith resource "lab-fence" of FENCE_AGENT_NAME with
#       lab_dir=DIR, and the resources and constraints given as XML text
#   pacemaker_lab_install PREFIX DIR OCF_AGENT PROVIDER FENCE_AGENT
#       OCF_AGENT as ocf:PROVIDER:NAME and FENCE_AGENT in /usr/sbin, in
#       a and b only (read-only overlays: /usr is the host's); writes
#       DIR/fence/node-X.netns for the fencing agent
#   pacemaker_lab_start PREFIX DIR   DIR/cib.xml on both nodes, pacemakerd
#       on both (after cluster_lab_start_corosync), waits until both are
#       online with a DC
#   pacemaker_lab_crm_mon PREFIX DIR NODE   crm_mon's XML on NODE
#
# Cold start: pacemakerd's first election waits dc-deadtime (20 s by
# default) for a DC to show up. The daemons read the cluster options from
# the CIB on disk before that election, so a CIB written beforehand with
# dc-deadtime 2 s brings both nodes online in a few seconds (measured in
# docs/cluster.md). The same file on both nodes: neither node's copy wins
# over the other's by a newer epoch.

pacemaker_lab_write_cib() { # PREFIX DIR FENCE_AGENT_NAME RESOURCES_XML CONSTRAINTS_XML
    local dir=$2 fence_agent=$3 resources=$4 constraints=$5 file=$2/cib.xml
    cibadmin --empty >"$file" || return 1
    CIB_file=$file cibadmin --replace -o crm_config --xml-text "<crm_config>
  <cluster_property_set id=\"lab-options\">
    <nvpair id=\"lab-stonith-enabled\" name=\"stonith-enabled\" value=\"true\"/>
    <nvpair id=\"lab-stonith-timeout\" name=\"stonith-timeout\" value=\"30s\"/>
    <nvpair id=\"lab-dc-deadtime\" name=\"dc-deadtime\" value=\"2s\"/>
    <nvpair id=\"lab-no-quorum-policy\" name=\"no-quorum-policy\" value=\"stop\"/>
    <nvpair id=\"lab-recheck\" name=\"cluster-recheck-interval\" value=\"1min\"/>
  </cluster_property_set>
</crm_config>" || return 1
    CIB_file=$file cibadmin --replace -o resources --xml-text "<resources>
  <primitive id=\"lab-fence\" class=\"stonith\" type=\"$fence_agent\">
    <instance_attributes id=\"lab-fence-params\">
      <nvpair id=\"lab-fence-lab-dir\" name=\"lab_dir\" value=\"$dir\"/>
      <nvpair id=\"lab-fence-host-list\" name=\"pcmk_host_list\" value=\"node-a node-b\"/>
      <nvpair id=\"lab-fence-host-check\" name=\"pcmk_host_check\" value=\"static-list\"/>
    </instance_attributes>
    <operations>
      <op id=\"lab-fence-monitor\" name=\"monitor\" interval=\"60s\" timeout=\"20s\"/>
    </operations>
  </primitive>
  $resources
</resources>" || return 1
    CIB_file=$file cibadmin --replace -o constraints --xml-text "<constraints>$constraints</constraints>" || return 1
    crm_verify --xml-file "$file" || { echo "pacemaker lab: crm_verify rejects $file" >&2; return 1; }
}

# Read-only overlays: the lab's directory in front of the host's, inside
# the node's mount namespace (private propagation: the host never sees it).
pacemaker_lab_overlay() { # PREFIX DIR NODE FRONT_DIR TARGET_DIR
    cluster_lab_run "$1" "$2" "$3" mount -t overlay "colo-lab-$3" -o "lowerdir=$4:$5" "$5"
}

pacemaker_lab_install() { # PREFIX DIR OCF_AGENT PROVIDER FENCE_AGENT
    local prefix=$1 dir=$2 ocf_agent=$3 provider=$4 fence_agent=$5 node
    mkdir -p "$dir/ocf/$provider" "$dir/sbin" "$dir/fence" || return 1
    cp "$ocf_agent" "$dir/ocf/$provider/" && cp "$fence_agent" "$dir/sbin/" || return 1
    chmod 0755 "$dir/ocf/$provider/$(basename "$ocf_agent")" "$dir/sbin/$(basename "$fence_agent")"
    for node in a b; do
        # fenced runs fencing agents only from /usr/sbin.
        pacemaker_lab_overlay "$prefix" "$dir" "$node" "$dir/ocf" /usr/lib/ocf/resource.d || return 1
        pacemaker_lab_overlay "$prefix" "$dir" "$node" "$dir/sbin" /usr/sbin || return 1
        ip netns exec "$prefix-$node" readlink /proc/self/ns/net >"$dir/fence/node-$node.netns" || return 1
    done
}

pacemaker_lab_crm_mon() { # PREFIX DIR NODE
    cluster_lab_run "$1" "$2" "$3" crm_mon -1 --output-as=xml 2>/dev/null
}

# Both nodes online and a DC elected, as NODE's crm_mon sees it.
pacemaker_lab_online() { # PREFIX DIR NODE
    pacemaker_lab_crm_mon "$1" "$2" "$3" | python3 -c '
import sys, xml.etree.ElementTree as tree
root = tree.parse(sys.stdin).getroot()
online = [n.get("name") for n in root.iter("node") if n.get("online") == "true"]
dc = root.find("summary/current_dc")
sys.exit(0 if len(online) == 2 and dc is not None and dc.get("present") == "true" else 1)' 2>/dev/null
}

pacemaker_lab_start() { # PREFIX DIR
    local prefix=$1 dir=$2 node started=$SECONDS
    for node in a b; do
        mkdir -p "$dir/$node/lib-pacemaker"/{cib,pengine,blackbox,cores} "$dir/$node/log/pacemaker" || return 1
        cp "$dir/cib.xml" "$dir/$node/lib-pacemaker/cib/cib.xml" || return 1
        chown -R hacluster:haclient "$dir/$node/lib-pacemaker" "$dir/$node/log/pacemaker" || return 1
        chmod 0750 "$dir/$node/lib-pacemaker"/{cib,pengine,blackbox,cores}
        chmod 0600 "$dir/$node/lib-pacemaker/cib/cib.xml"
        cluster_lab_spawn "$prefix" "$dir" "$node" "$dir/$node/pacemakerd.pid" "$dir/$node/pacemakerd.out" \
            env PCMK_logfile=/var/log/pacemaker/pacemaker.log pacemakerd
    done
    for node in a b; do
        until pacemaker_lab_online "$prefix" "$dir" "$node"; do
            ((SECONDS - started >= 90)) && {
                echo "pacemaker lab: node $node does not see both nodes online with a DC within 90 s" >&2
                return 1
            }
            sleep 0.2
        done
    done
}
