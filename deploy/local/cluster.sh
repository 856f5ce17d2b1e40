#!/usr/bin/env bash
# A Sluice cluster on this machine: N nodes of the built binary, each in its own network
# namespace, attached by a veth pair to one bridge that lives in namespace NS.
#
#   deploy/local/cluster.sh up [--nodes N] [--netns NS] [--bin PATH] [--dir DIR]
#                              [--store local|nvme]
#   deploy/local/cluster.sh down [--dir DIR]
#   deploy/local/cluster.sh status [--dir DIR]        one line per node, with its role
#   deploy/local/cluster.sh kill ID [--dir DIR]       kill -9 node ID
#   deploy/local/cluster.sh start ID [--dir DIR]      start node ID again on its data
#   deploy/local/cluster.sh cut ID | heal ID          take node ID's link down / up
#   deploy/local/cluster.sh isolate ID | rejoin ID    drop (nft, in the node's namespace) all
#                                                      traffic between node ID and the other
#                                                      nodes; clients still reach it
#
# `up` prints one line per node, `node <id> netns <name> addr <ip> pid <pid>`, and returns
# once the cluster is formed (every node answers NFS, which it does only once a leader
# serves the metadata). Clients run inside NS (`ip netns exec NS nfs-cp ...`) and reach
# every node's address on the standard ports (portmap 111, NFS 2049, MOUNT 20048); nodes talk
# to each other on port 2050.
#
# Without --netns the script makes namespace `slc` with bridge `slcbr0` on 10.78.0.0/24 (the
# namespace holds 10.78.0.1). With --netns kc it joins the bridge `kcbr0` of the kernel-client
# VMs (../shared/kclient; 10.77.0.0/24), so a VM mounts any node. Nodes are .101, .102, ...
# Membership is static for now ([cluster.members] in each node's config); etcd membership
# comes with `sluice cluster`. Only namespaces, links and addresses this script creates are
# touched, and `down` removes them all.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DIR=/tmp/sluice-cluster NODES=3 NS="" BIN="" STORE=local
cmd=${1:-}; shift || true
ARG=""
case "$cmd" in kill|start|cut|heal|isolate|rejoin) ARG=${1:?"$cmd needs a node id"}; shift;; esac
while [ $# -gt 0 ]; do
  case "$1" in
    --nodes) NODES=$2; shift 2;;
    --netns) NS=$2; shift 2;;
    --bin) BIN=$2; shift 2;;
    --dir) DIR=$2; shift 2;;
    --store) STORE=$2; shift 2;;
    -h|--help) sed -n "2,27p" "$0"; exit 0;;
    *) echo "cluster.sh: unknown option $1" >&2; exit 2;;
  esac
done

log() { printf '[cluster %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "ERROR: $*"; exit 2; }
STATE=$DIR/cluster.state
# state lines: "bridge_ns NAME made|joined", "bridge NAME", "prefix P", "bin PATH", "node ID NETNS ADDR"
state() { awk -v k="$1" '$1==k {print $2; exit}' "$STATE"; }
alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null && [ "$(sed 's/^.*) //' /proc/"$1"/stat 2>/dev/null | cut -c1)" != Z ]; }
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
  printf 'bridge_ns %s %s\nbridge %s\nprefix %s\nbin %s\n' "$NS" "$made" "$bridge" "$prefix" "$BIN" > "$STATE"
  # One key for the cluster: it signs file handles and the nodes' frames.
  head -c 16 /dev/urandom > "$DIR/cluster.key"
  local members="" id
  for id in $(seq "$NODES"); do members+="$id = \"$prefix.$((100 + id)):2050\""$'\n'; done
  for id in $(seq "$NODES"); do
    local ns addr
    ns=$(node_ns "$id"); addr=$prefix.$((100 + id))
    ip netns list | grep -qw "^$ns" && die "netns $ns exists already"
    ip netns add "$ns"
    echo "node $id $ns $addr" >> "$STATE"
    ip -n "$ns" link set lo up
    ip -n "$NS" link add "slcv$id" type veth peer name eth0 netns "$ns"
    ip -n "$NS" link set "slcv$id" master "$bridge"
    ip -n "$NS" link set "slcv$id" up
    ip -n "$ns" addr add "$addr/24" dev eth0
    ip -n "$ns" link set eth0 up
    mkdir -p "$DIR/n$id/data"
    cp "$DIR/cluster.key" "$DIR/n$id/data/cluster.key"
    cat > "$DIR/n$id/sluice.toml" <<EOF
store = "$STORE"

[server]
listen = ["$addr:2049"]
mount_listen = ["$addr:20048"]

[cluster]
id = "local-cluster"
node_id = $id
metadata = "log"

[cluster.members]
$members
[[export]]
path = "/"
[[export.clients]]
match = "$prefix.0/24"
access = "rw"
squash = "none"
EOF
    "$BIN" check-config "$DIR/n$id/sluice.toml" >/dev/null || die "node $id: config rejected"
  done
  for id in $(seq "$NODES"); do start_node "$id"; done
  local t
  for t in $(seq 600); do
    local ready=0
    for id in $(seq "$NODES"); do
      alive "$(node_pid "$id")" || { tail -20 "$DIR/n$id/server.log" >&2; die "node $id exited at startup"; }
      listening "$id" && ready=$((ready + 1))
    done
    [ "$ready" = "$NODES" ] && break
    [ "$t" = 600 ] && die "the cluster did not form within 60 s (logs in $DIR/n*/server.log)"
    sleep 0.1
  done
  for id in $(seq "$NODES"); do
    echo "node $id netns $(node_ns "$id") addr $(node_addr "$id") pid $(node_pid "$id")"
  done
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
  start) [ -e "$STATE" ] || die "no cluster in $DIR"
         alive "$(node_pid "$ARG")" && die "node $ARG is running"
         start_node "$ARG"
         for _ in $(seq 600); do listening "$ARG" && break; sleep 0.1; done
         listening "$ARG" || die "node $ARG did not come back within 60 s"
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
  *) sed -n "2,27p" "$0"; exit 2;;
esac
