#!/usr/bin/env bash
# A Sluice cluster on this machine: N nodes of the built binary, each in its own network
# namespace, attached by a veth pair to one bridge that lives in namespace NS.
#
#   deploy/local/cluster.sh up [--nodes N] [--netns NS] [--bin PATH] [--dir DIR]
#                              [--store local|nvme] [--membership etcd|static]
#                              [--snapshot-every N]   (cluster.log_snapshot_every)
#                              [--replicas N]   (cluster.replicas: copies of new files, 1-3)
#                              [--floating ADDR]  a floating mount target "float" at ADDR (on
#                                 the bridge's subnet, e.g. 10.78.0.200): one node at a time
#                                 owns it (etcd lease) and holds ADDR on its eth0
#   deploy/local/cluster.sh down [--dir DIR]
#   deploy/local/cluster.sh status [--dir DIR]        one line per node, with its role
#   deploy/local/cluster.sh kill ID [--dir DIR]       kill -9 node ID
#   deploy/local/cluster.sh start ID [--dir DIR]      start node ID again on its data
#   deploy/local/cluster.sh add ID [--dir DIR]        a new node ID joins (etcd membership)
#   deploy/local/cluster.sh kill-etcd I [--dir DIR]   kill -9 etcd member I (1-3)
#   deploy/local/cluster.sh cut ID | heal ID          take node ID's link down / up
#   deploy/local/cluster.sh isolate ID | rejoin ID    drop (nft, in the node's namespace) all
#                                                      traffic between node ID and the other
#                                                      nodes; clients still reach it
#   deploy/local/cluster.sh sluice ID ARGS...         run `sluice ARGS` against node ID's
#                                                      admin API (e.g. `cluster status`)
#
# `up` prints one line per node, `node <id> netns <name> addr <ip> pid <pid>`, and returns
# once the cluster is formed (every node answers NFS, which it does only once a leader
# serves the metadata, and every node is a voter). Clients run inside NS
# (`ip netns exec NS nfs-cp ...`) and reach every node's address on the standard ports
# (portmap 111, NFS 2049, MOUNT 20048); nodes talk to each other on port 2050.
#
# Membership (default etcd): 3 etcd members (Debian's etcd-server), each in its own
# namespace at .91, .92, .93 on the bridge (the kclient VMs take .10 + slot), client port
# 2379. Node 1 starts first and founds the cluster; the others register in etcd and node 1
# (the leader) makes them voters.
# `--membership static` gives every node the same [cluster.members] table and starts no etcd.
#
# Without --netns the script makes namespace `slc` with bridge `slcbr0` on 10.78.0.0/24 (the
# namespace holds 10.78.0.1). With --netns kc it joins the bridge `kcbr0` of the kernel-client
# VMs (../shared/kclient; 10.77.0.0/24), so a VM mounts any node. Nodes are .101, .102, ...
# Only namespaces, links and addresses this script creates are touched, and `down` removes
# them all.
# Env: NLM_GRACE=S at `up` sets every node's nlm.grace_seconds (also the lock window after a
# floating target's takeover).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DIR=/tmp/sluice-cluster NODES=3 NS="" BIN="" STORE=local MEMBERSHIP=etcd SNAPSHOT_EVERY=50000
REPLICAS=3 FLOATING=""
cmd=${1:-}; shift || true
ARG=""
case "$cmd" in kill|kill-etcd|start|add|cut|heal|isolate|rejoin) ARG=${1:?"$cmd needs a node id"}; shift;; esac
SLUICE_ARGS=()
if [ "$cmd" = sluice ]; then
  ARG=${1:?"sluice needs a node id"}; shift
  while [ $# -gt 0 ] && [ "$1" != --dir ]; do SLUICE_ARGS+=("$1"); shift; done
fi
while [ $# -gt 0 ]; do
  case "$1" in
    --nodes) NODES=$2; shift 2;;
    --netns) NS=$2; shift 2;;
    --bin) BIN=$2; shift 2;;
    --dir) DIR=$2; shift 2;;
    --store) STORE=$2; shift 2;;
    --membership) MEMBERSHIP=$2; shift 2;;
    --snapshot-every) SNAPSHOT_EVERY=$2; shift 2;;
    --replicas) REPLICAS=$2; shift 2;;
    --floating) FLOATING=$2; shift 2;;
    -h|--help) sed -n "2,42p" "$0"; exit 0;;
    *) echo "cluster.sh: unknown option $1" >&2; exit 2;;
  esac
done

log() { printf '[cluster %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "ERROR: $*"; exit 2; }
STATE=$DIR/cluster.state
# state lines: "bridge_ns NAME made|joined", "bridge NAME", "prefix P", "bin PATH",
# "membership etcd|static", "store KIND", "snapshot_every N", "replicas N", "floating ADDR",
# "etcd I NETNS ADDR", "node ID NETNS ADDR"
state() { awk -v k="$1" '$1==k {print $2; exit}' "$STATE"; }
# alive PID: some thread of the process has not exited yet (after kill -9 the main thread
# shows Z while the others still exit, holding the node's sockets and databases).
alive() {
  [ -n "$1" ] && kill -0 "$1" 2>/dev/null || return 1
  [ "$(sed 's/^.*) //' /proc/"$1"/stat 2>/dev/null | cut -c1)" != Z ] && return 0
  [ "$(ls /proc/"$1"/task 2>/dev/null | wc -l)" -gt 1 ]
}
node_pid() { cat "$DIR/n$1/pid" 2>/dev/null || true; }
node_ns() { echo "slc-n$1"; }
node_addr() { echo "$(state prefix).$((100 + $1))"; }

start_node() {  # start_node ID: starts the node on its config and data, records its pid
  local id=$1 ns addr
  ns=$(node_ns "$id"); addr=$(node_addr "$id")
  SLUICE_LOG=${SLUICE_LOG:-info} NO_COLOR=1 setsid ip netns exec "$ns" "$(state bin)" serve \
    --config "$DIR/n$id/sluice.toml" --data-dir "$DIR/n$id/data" \
    >>"$DIR/n$id/server.log" 2>&1 < /dev/null &
  echo $! > "$DIR/n$id/pid"
}

listening() {  # listening ID: node ID answers on its NFS port
  ip netns exec "$(node_ns "$1")" ss -Hltn "sport = :2049" | grep -q .
}

role() {  # role ID: leader / follower / down, from the node's metrics
  local id=$1 m
  alive "$(node_pid "$id")" || { echo down; return; }
  m=$(ip netns exec "$(node_ns "$id")" curl -s --max-time 2 http://127.0.0.1:9049/metrics 2>/dev/null \
      | awk -F' ' '/^sluice_metadata_log\{metric="is_leader"\}/ {print $2}')
  case "$m" in 1) echo leader;; 0) echo follower;; *) echo starting;; esac
}

up() {
  [ "$(id -u)" = 0 ] || die "needs root (network namespaces)"
  [ ! -e "$STATE" ] || die "$STATE exists: a cluster is up (run: $0 down --dir $DIR)"
  [ "$NODES" -ge 1 ] && [ "$NODES" -le 9 ] || die "--nodes: 1 to 9"
  if [ -z "$BIN" ]; then
    log "building sluice (release)"
    (cd "$ROOT" && cargo build --release -q -p nfs-server --bin sluice) || die "build failed"
    BIN=$ROOT/target/release/sluice
  fi
  [ -x "$BIN" ] || die "no binary at $BIN"
  BIN=$(realpath "$BIN")
  mkdir -p "$DIR"
  local bridge prefix made=made
  if [ -z "$NS" ]; then
    NS=slc bridge=slcbr0 prefix=10.78.0
    ip netns list | grep -qw "^$NS" && die "netns $NS exists already; remove it or pass --netns"
    ip netns add "$NS"
    ip -n "$NS" link set lo up
    ip -n "$NS" link add "$bridge" type bridge
    ip -n "$NS" addr add "$prefix.1/24" dev "$bridge"
    ip -n "$NS" link set "$bridge" up
  else
    ip netns list | grep -qw "^$NS" || die "netns $NS does not exist"
    made=joined
    bridge=$(ip -n "$NS" -o link show type bridge | awk -F': ' '{print $2; exit}')
    [ -n "$bridge" ] || die "netns $NS has no bridge"
    prefix=$(ip -n "$NS" -o -4 addr show dev "$bridge" | awk '{print $4}' | cut -d/ -f1 | cut -d. -f1-3)
    [ -n "$prefix" ] || die "bridge $bridge in $NS has no IPv4 address"
  fi
  if [ -n "$FLOATING" ]; then
    [ "$MEMBERSHIP" = etcd ] || die "--floating needs etcd membership"
    [ "${FLOATING%.*}" = "$prefix" ] || die "--floating $FLOATING is not on the bridge's subnet $prefix.0/24"
  fi
  printf 'bridge_ns %s %s\nbridge %s\nprefix %s\nbin %s\nmembership %s\nstore %s\nsnapshot_every %s\nreplicas %s\nfloating %s\n' \
    "$NS" "$made" "$bridge" "$prefix" "$BIN" "$MEMBERSHIP" "$STORE" "$SNAPSHOT_EVERY" "$REPLICAS" "${FLOATING:--}" > "$STATE"
  # One key for the cluster: it signs file handles and the nodes' frames.
  head -c 16 /dev/urandom > "$DIR/cluster.key"
  local id
  [ "$MEMBERSHIP" = etcd ] && start_etcd
  for id in $(seq "$NODES"); do make_node "$id"; done
  if [ "$MEMBERSHIP" = etcd ]; then
    # Node 1 founds the cluster; the others join it.
    start_node 1
    wait_listening 1
    for id in $(seq 2 "$NODES"); do start_node "$id"; done
  else
    for id in $(seq "$NODES"); do start_node "$id"; done
  fi
  local t
  for t in $(seq 600); do
    local ready=0
    for id in $(seq "$NODES"); do
      alive "$(node_pid "$id")" || { tail -20 "$DIR/n$id/server.log" >&2; die "node $id exited at startup"; }
      listening "$id" && [ "$(voters "$id")" = "$NODES" ] && ready=$((ready + 1))
    done
    [ "$ready" = "$NODES" ] && break
    [ "$t" = 600 ] && die "the cluster did not form within 60 s (logs in $DIR/n*/server.log)"
    sleep 0.1
  done
  for id in $(seq "$NODES"); do
    echo "node $id netns $(node_ns "$id") addr $(node_addr "$id") pid $(node_pid "$id")"
  done
}

etcd_ns() { echo "slc-e$1"; }
etcd_addr() { echo "$(state prefix).$((90 + $1))"; }
etcd_endpoints() {  # the TOML list of the etcd client URLs
  local i out=""
  for i in 1 2 3; do out+="${out:+, }\"http://$(etcd_addr "$i"):2379\""; done
  echo "$out"
}

start_etcd() {  # three etcd members, each in its own namespace on the bridge
  command -v etcd >/dev/null || die "no etcd (Debian: apt-get install etcd-server), or use --membership static"
  local i ns addr initial=""
  for i in 1 2 3; do initial+="${initial:+,}e$i=http://$(etcd_addr "$i"):2380"; done
  for i in 1 2 3; do
    ns=$(etcd_ns "$i"); addr=$(etcd_addr "$i")
    ip netns list | grep -qw "^$ns" && die "netns $ns exists already"
    ip netns add "$ns"
    echo "etcd $i $ns $addr" >> "$STATE"
    attach "$ns" "slce$i" "$addr"
    mkdir -p "$DIR/e$i"
    setsid ip netns exec "$ns" etcd --name "e$i" --data-dir "$DIR/e$i/data" \
      --listen-client-urls "http://$addr:2379,http://127.0.0.1:2379" \
      --advertise-client-urls "http://$addr:2379" \
      --listen-peer-urls "http://$addr:2380" --initial-advertise-peer-urls "http://$addr:2380" \
      --initial-cluster "$initial" --initial-cluster-state new \
      --initial-cluster-token "sluice-local" \
      >>"$DIR/e$i/etcd.log" 2>&1 < /dev/null &
    echo $! > "$DIR/e$i/pid"
  done
  local t
  for t in $(seq 300); do
    ip netns exec "$(etcd_ns 1)" curl -s --max-time 1 http://127.0.0.1:2379/health 2>/dev/null \
      | grep -q '"health":"true"' && { log "etcd: 3 members up"; return 0; }
    sleep 0.1
  done
  tail -20 "$DIR/e1/etcd.log" >&2
  die "etcd did not become healthy within 30 s (logs in $DIR/e*/etcd.log)"
}

attach() {  # attach NETNS LINK ADDR: a veth from the bridge into NETNS, with ADDR
  local ns=$1 link=$2 addr=$3
  ip -n "$ns" link set lo up
  ip -n "$(state bridge_ns)" link add "$link" type veth peer name eth0 netns "$ns"
  ip -n "$(state bridge_ns)" link set "$link" master "$(state bridge)"
  ip -n "$(state bridge_ns)" link set "$link" up
  ip -n "$ns" addr add "$addr/24" dev eth0
  ip -n "$ns" link set eth0 up
}

make_node() {  # make_node ID: its namespace, link, data directory and config
  local id=$1 ns addr prefix membership i float target=""
  ns=$(node_ns "$id"); addr=$(node_addr "$id"); prefix=$(state prefix)
  ip netns list | grep -qw "^$ns" && die "netns $ns exists already"
  ip netns add "$ns"
  echo "node $id $ns $addr" >> "$STATE"
  attach "$ns" "slcv$id" "$addr"
  mkdir -p "$DIR/n$id/data"
  cp "$DIR/cluster.key" "$DIR/n$id/data/cluster.key"
  if [ "$(state membership)" = etcd ]; then
    membership="listen = \"$addr:2050\""$'\n'"etcd = [$(etcd_endpoints)]"
  else
    membership=$'\n[cluster.members]'
    for i in $(seq "$NODES"); do membership+=$'\n'"$i = \"$prefix.$((100 + i)):2050\""; done
  fi
  float=$(state floating)
  if [ -n "$float" ] && [ "$float" != - ]; then
    membership+=$'\n'"interface = \"eth0\""
    target=$'\n[[target]]\nname = "float"\n'"listen = [\"$float:2049\", \"$float:20048\"]"$'\ntier = "unlimited"\nfloating = true'
  fi
  local nlm=""
  [ -z "${NLM_GRACE:-}" ] || nlm=$'\n[nlm]\ngrace_seconds = '"$NLM_GRACE"
  cat > "$DIR/n$id/sluice.toml" <<EOF
store = "$(state store)"

[server]
listen = ["$addr:2049"]
mount_listen = ["$addr:20048"]

[cluster]
id = "local-cluster"
node_id = $id
metadata = "log"
log_snapshot_every = $(state snapshot_every)
replicas = $(r=$(state replicas); echo "${r:-3}")
$membership

[[export]]
path = "/"
[[export.clients]]
match = "$prefix.0/24"
access = "rw"
squash = "none"
$target
$nlm
EOF
  "$(state bin)" check-config "$DIR/n$id/sluice.toml" >/dev/null || die "node $id: config rejected"
}

wait_listening() {
  local _
  for _ in $(seq 600); do
    listening "$1" && return 0
    alive "$(node_pid "$1")" || { tail -20 "$DIR/n$1/server.log" >&2; die "node $1 exited at startup"; }
    sleep 0.1
  done
  die "node $1 did not answer NFS within 60 s (log: $DIR/n$1/server.log)"
}

voters() {  # voters ID: the log's voters as node ID sees them
  ip netns exec "$(node_ns "$1")" curl -s --max-time 2 http://127.0.0.1:9049/metrics 2>/dev/null \
    | awk '/^sluice_metadata_log\{metric="voters"\}/ {print $2}'
}

down() {
  [ -e "$STATE" ] || { log "no cluster in $DIR"; return 0; }
  local id ns pid
  while read -r _ id ns _; do
    pid=$(node_pid "$id")
    if alive "$pid"; then
      kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 50); do alive "$pid" || break; sleep 0.1; done
      alive "$pid" && kill -KILL -- "-$pid" 2>/dev/null || true
    fi
    # The link first: a namespace outlives its deletion while sockets in it wind down, and
    # its end of the pair (on a bridge we may not own) with it.
    ip -n "$(state bridge_ns)" link del "slcv$id" 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
  done < <(grep '^node ' "$STATE")
  while read -r _ id ns _; do
    pid=$(cat "$DIR/e$id/pid" 2>/dev/null || true)
    if alive "$pid"; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 50); do alive "$pid" || break; sleep 0.1; done
      alive "$pid" && kill -KILL "$pid" 2>/dev/null || true
    fi
    ip -n "$(state bridge_ns)" link del "slce$id" 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
  done < <(grep '^etcd ' "$STATE")
  local bns made
  bns=$(state bridge_ns); made=$(awk '$1=="bridge_ns" {print $3}' "$STATE")
  [ "$made" = made ] && ip netns del "$bns" 2>/dev/null || true
  rm -rf "$DIR"
  log "down"
}

status() {
  [ -e "$STATE" ] || die "no cluster in $DIR"
  local id
  while read -r _ id _; do
    echo "node $id netns $(node_ns "$id") addr $(node_addr "$id") pid $(node_pid "$id") $(role "$id")"
  done < <(grep '^node ' "$STATE")
}

case "$cmd" in
  up) up;;
  down) down;;
  status) status;;
  kill) [ -e "$STATE" ] || die "no cluster in $DIR"
        pid=$(node_pid "$ARG"); alive "$pid" || die "node $ARG is not running"
        kill -KILL "$pid"; log "node $ARG (pid $pid) killed";;
  add) [ -e "$STATE" ] || die "no cluster in $DIR"
       [ "$(state membership)" = etcd ] || die "add needs etcd membership (up --membership etcd)"
       grep -q "^node $ARG " "$STATE" && die "node $ARG exists"
       make_node "$ARG"
       start_node "$ARG"
       wait_listening "$ARG"
       echo "node $ARG netns $(node_ns "$ARG") addr $(node_addr "$ARG") pid $(node_pid "$ARG")";;
  kill-etcd) [ -e "$STATE" ] || die "no cluster in $DIR"
             pid=$(cat "$DIR/e$ARG/pid" 2>/dev/null || true); alive "$pid" || die "etcd member $ARG is not running"
             kill -KILL "$pid"; log "etcd member $ARG (pid $pid) killed";;
  sluice) [ -e "$STATE" ] || die "no cluster in $DIR"
          ip netns exec "$(node_ns "$ARG")" "$(state bin)" \
            --api http://127.0.0.1:9050 --token-file "$DIR/n$ARG/data/admin.token" "${SLUICE_ARGS[@]}";;
  start) [ -e "$STATE" ] || die "no cluster in $DIR"
         alive "$(node_pid "$ARG")" && die "node $ARG is running"
         start_node "$ARG"
         wait_listening "$ARG"
         echo "node $ARG netns $(node_ns "$ARG") addr $(node_addr "$ARG") pid $(node_pid "$ARG")";;
  cut) ip -n "$(state bridge_ns)" link set "slcv$ARG" down; log "node $ARG cut off";;
  isolate)
    command -v nft >/dev/null || die "isolate needs nft (Debian: nftables)"
    others=$(awk -v me="$ARG" '$1=="node" && $2!=me {print $4}' "$STATE" | paste -sd, -)
    [ -n "$others" ] || die "no other node to isolate node $ARG from"
    ip netns exec "$(node_ns "$ARG")" nft -f - <<EOF
table inet slc_isolate {
  chain input { type filter hook input priority 0; ip saddr { $others } drop; }
  chain output { type filter hook output priority 0; ip daddr { $others } drop; }
}
EOF
    log "node $ARG isolated from $others";;
  rejoin) ip netns exec "$(node_ns "$ARG")" nft delete table inet slc_isolate 2>/dev/null || true
          log "node $ARG rejoined";;
  heal) ip -n "$(state bridge_ns)" link set "slcv$ARG" up; log "node $ARG back on the bridge";;
  *) sed -n "2,42p" "$0"; exit 2;;
esac
