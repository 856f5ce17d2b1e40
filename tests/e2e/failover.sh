#!/usr/bin/env bash
# Floating mount target failover (issue 19): a 3-node cluster (deploy/local/cluster.sh) with a
# floating target at 10.78.0.200; an NFSv3 client (libnfs, in the bridge's namespace) writes
# a stream of files through the target's address while its owner is
#   1. killed (kill -9), then
#   2. cut off (its link down), healed afterwards,
#   3. stopped cleanly (SIGTERM): it hands the target over at once,
#   4. asked to move it (`sluice target move float N`, a planned move): it hands the target
#      over to node N at its next read of etcd,
#   5. drained (`sluice node drain N`): the target goes to another node,
#   6. killed while it is the target's preferred node: the node that takes over drops the
#      preference, and the target does not move back when the killed node returns.
# Between 4 and 5, a REMOVE answered by the owner is retransmitted (same xid and source port,
# tests/e2e/drc-retransmit.py) after the target moved: the new owner must answer OK, not NOENT.
# Each time: another node takes the address over, the client carries on, every file it was
# told was written reads back whole, the old owner's address is gone, and the target's epoch
# grew. The stall (the longest gap between two completed writes) is printed per phase.
#
#   tests/e2e/failover.sh [--bin PATH] [--rounds N]
#
# Needs root, etcd-server, libnfs-utils, iputils-arping. Bounded: at most 400 writes per
# phase, each within 30 s.
set -euo pipefail
# Everything runs inside main() (called on the last line): bash reads a script while it runs.
main() {
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN="" ROUNDS=1
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) BIN=$2; shift 2;;
    --rounds) ROUNDS=$2; shift 2;;
    *) echo "failover.sh: unknown option $1" >&2; exit 2;;
  esac
done
log() { printf '[failover %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (network namespaces)"
for c in nfs-cp etcd arping; do
  command -v "$c" >/dev/null || die "$c missing (Debian: libnfs-utils, etcd-server, iputils-arping)"
done
if [ -z "$BIN" ]; then
  (cd "$ROOT" && cargo build --release -q -p nfs-server --bin sluice) || die "build failed"
  BIN=$ROOT/target/release/sluice
fi
DIR=$(mktemp -d /tmp/sluice-failover.XXXXXX)
WORK=$DIR/work
mkdir -p "$WORK"
FLOAT=10.78.0.200
CL() { "$ROOT/deploy/local/cluster.sh" "$@" --dir "$DIR/cluster"; }
cleanup() {
  [ -n "${WRITER:-}" ] && kill "$WRITER" 2>/dev/null || true
  [ -n "${KEEP:-}" ] || CL down >/dev/null 2>&1 || true
  [ -n "${KEEP:-}" ] && log "kept $DIR" || rm -rf "$DIR"
}
trap cleanup EXIT

CL up --bin "$BIN" --floating "$FLOAT" >/dev/null
holder() {  # the node whose eth0 holds the floating address (empty: none)
  local id
  for id in 1 2 3; do
    ip -n "slc-n$id" -4 -o addr show dev eth0 2>/dev/null | grep -q " $FLOAT/" && { echo "$id"; return; }
  done
  true
}
owner_epoch() {  # OWNER column of `sluice target list` through node $1: "node N, epoch R"
  CL sluice "$1" target list 2>/dev/null | awk '$1=="float" {s=""; for (i=9;i<=NF;i++) s=s (i>9?" ":"") $i; print s}'
}
for _ in $(seq 100); do [ -n "$(holder)" ] && break; sleep 0.1; done
[ -n "$(holder)" ] || die "no node put up the floating address within 10 s"

url() { echo "nfs://$FLOAT//$1?version=3"; }
head -c 65536 /dev/urandom > "$WORK/payload"

# writer PHASE N: writes files PHASE-1..N through the floating address; logs "i start end"
# per acknowledged file. A failed one (its mount or a write refused while no node serves the
# address) is not retried under its name (nfs-cp creates exclusively): the next one is tried
# after 0.2 s, as a client that retries would.
writer() {
  local phase=$1 n=$2 i start
  for i in $(seq "$n"); do
    start=$(date +%s.%N)
    if timeout 30 ip netns exec slc nfs-cp "$WORK/payload" "$(url "$phase-$i")" >/dev/null 2>&1; then
      echo "$i $start $(date +%s.%N)" >> "$WORK/$phase.log"
    else
      sleep 0.2
    fi
  done
}

# check_phase PHASE T: every acknowledged file reads back whole; prints the stall. A file whose
# copy was under way at time T (the failure) is exempt: libnfs ignores the write verifier, so
# it cannot resend an UNSTABLE write that the old owner acknowledged and its COMMIT, answered
# by the new writer, did not cover (the kernel client resends it, RFC 1813 §3.3.21). Its
# outcome goes to $WORK/PHASE.inflight.
check_phase() {
  local phase=$1 t=$2 i start end bad=0
  while read -r i start end; do
    rm -f "$WORK/back"
    if timeout 30 ip netns exec slc nfs-cp "$(url "$phase-$i")" "$WORK/back" >/dev/null 2>&1 \
      && cmp -s "$WORK/payload" "$WORK/back"; then
      continue
    fi
    if [ "$(echo "$start < $t && $t < $end" | bc)" = 1 ]; then
      echo "$phase-$i (in flight at the failure) came back with $(stat -c %s "$WORK/back" 2>/dev/null || echo no) bytes" >> "$WORK/$phase.inflight"
      continue
    fi
    bad=$((bad + 1)); log "$phase-$i did not read back"
  done < "$WORK/$phase.log"
  [ "$bad" = 0 ] || die "$phase: $bad acknowledged files lost or changed"
  awk 'NR>1 {g=$3-prev; if (g>max) max=g} {prev=$3} END {printf "%.2f\n", max}' "$WORK/$phase.log"
}

fail_owner() {  # fail_owner PHASE HOW: HOW = kill | cut | stop | move | drain
  local phase=$1 how=$2 old new before after stall t dest=""
  old=$(holder)
  before=$(owner_epoch "$old")
  log "$phase: the target is on node $old ($before); writing, then: $how node $old"
  writer "$phase" 400 &
  WRITER=$!
  sleep 3
  case "$how" in
    kill) CL kill "$old" >/dev/null 2>&1;;
    cut) CL cut "$old" >/dev/null 2>&1;;
    stop) kill -TERM "$(cat "$DIR/cluster/n$old/pid")";;
    move)
      dest=$(( old % 3 + 1 ))
      CL sluice "$old" target move float "$dest" >/dev/null || die "$phase: sluice target move failed";;
    drain)
      CL sluice "$(( old % 3 + 1 ))" node drain "$old" | grep -q "target float: moving to node" \
        || die "$phase: sluice node drain did not move the target";;
  esac
  local failed_at
  failed_at=$(date +%s.%N)
  # The address must leave the old node by itself (its kernel lifetime or self-fencing)
  # and reach another node.
  for t in $(seq 150); do
    new=$(holder)
    [ -n "$new" ] && [ "$new" != "$old" ] && break
    sleep 0.1
  done
  [ -n "$new" ] && [ "$new" != "$old" ] || die "$phase: no other node took the address within 15 s"
  [ -z "$dest" ] || [ "$new" = "$dest" ] || die "$phase: node $new took the address, not node $dest"
  local took
  took=$(echo "$(date +%s.%N) - $failed_at" | bc | xargs printf '%.1f')
  log "$phase: node $new holds the address $took s after the $how"
  # Writes go on after the takeover (20 acknowledged after the failure, within 30 s).
  for t in $(seq 300); do
    [ "$(awk -v t="$failed_at" '$3 > t+0' "$WORK/$phase.log" | wc -l)" -ge 20 ] && break
    sleep 0.1
  done
  kill "$WRITER" 2>/dev/null || true
  wait "$WRITER" 2>/dev/null || true
  WRITER=""
  local n
  n=$(wc -l < "$WORK/$phase.log")
  awk -v t="$failed_at" '$3 > t+0 {after++} END {exit !(after > 0)}' "$WORK/$phase.log" \
    || die "$phase: no write completed after the $how"
  after=$(owner_epoch "$new")
  [ "${after#node $new, epoch }" -gt "${before#node $old, epoch }" ] \
    || die "$phase: the epoch did not grow ($before -> $after)"
  # The new owner counts the takeover and times its phases (sluice_target_takeover_seconds).
  local m phases
  m=$(ip netns exec "slc-n$new" curl -s --max-time 2 http://127.0.0.1:9049/metrics)
  echo "$m" | grep -q '^sluice_target_ownership_total{target="float",event="serving"} [1-9]' \
    || die "$phase: node $new's metrics show no serving event for the target"
  phases=$(echo "$m" | awk -F'[{}" ]+' '/^sluice_target_takeover_seconds/ {printf "%s%s %.2f s", sep, $5, $6; sep=", "}')
  stall=$(check_phase "$phase" "$failed_at")
  log "$phase: $n files acknowledged, all read back; owner $before-> $after; longest gap between two acknowledged writes: $stall s"
  echo "$phase: $how of the owner (node $old): node $new holds the address after $took s; longest gap between acknowledged writes $stall s; $n files acknowledged, all read back$([ -s "$WORK/$phase.inflight" ] && echo " but one: $(cat "$WORK/$phase.inflight")"); epoch ${before##* } -> ${after##* }; new owner's last takeover: ${phases:-none}" >> "$WORK/summary"
}

for r in $(seq "$ROUNDS"); do
  fail_owner "kill$r" kill
  gone=$(CL status | awk '$NF=="down" {print $2}')
  for id in $gone; do CL start "$id" >/dev/null; done
  sleep 3
  fail_owner "cut$r" cut
  cut=$(ip -n slc -o link show | awk -F'[ :@]+' '/slcv[0-9]/ && /state DOWN/ {sub("slcv","",$2); print $2}')
  for id in $cut; do
    CL heal "$id" >/dev/null 2>&1
    sleep 2
    ip -n "slc-n$id" -4 -o addr show dev eth0 | grep -q " $FLOAT/" \
      && die "cut$r: node $id still holds the floating address after healing"
  done
  [ "$(holder)" != "" ] || die "cut$r: nobody holds the address after healing"
  sleep 3
  fail_owner "stop$r" stop
  for _ in $(seq 100); do [ "$(CL status | awk '$NF=="down"' | wc -l)" = 1 ] && break; sleep 0.1; done
  gone=$(CL status | awk '$NF=="down" {print $2}')
  for id in $gone; do CL start "$id" >/dev/null; done
  sleep 3
  fail_owner "move$r" move
  # The node moved to keeps the preference (it claimed as the preferred node).
  CL sluice "$(holder)" target show float | grep -q "^preferred node *$(holder)\$" \
    || die "move$r: the preferred node $(holder) lost its preference when it claimed the target"
  # A REMOVE whose answer was lost reaches the target's next owner as a retransmission (same
  # xid, same bytes, same source port): it gets OK from what the first try left, not NOENT
  # (ha/PROTOCOL.md 7.6).
  ip netns exec slc timeout 60 python3 "$ROOT/tests/e2e/drc-retransmit.py" first "$FLOAT" \
    "drc$r" "$WORK/drc$r.json" >&2 || die "drc$r: the first REMOVE failed"
  from=$(holder)
  dest=$(( from % 3 + 1 ))
  CL sluice "$from" target move float "$dest" >/dev/null || die "drc$r: sluice target move failed"
  for _ in $(seq 100); do [ "$(holder)" = "$dest" ] && break; sleep 0.1; done
  [ "$(holder)" = "$dest" ] || die "drc$r: the target did not move to node $dest"
  ip netns exec slc timeout 60 python3 "$ROOT/tests/e2e/drc-retransmit.py" again "$FLOAT" \
    "$WORK/drc$r.json" >&2 || die "drc$r: a REMOVE retransmitted to the new owner ran twice"
  echo "drc$r: a REMOVE retransmitted after the target moved from node $from to node $dest got OK (its first try's answer); a new REMOVE got NOENT" >> "$WORK/summary"
  sleep 2
  drained=$(holder)
  fail_owner "drain$r" drain
  # The drain made the owner the preferred node. Kill it: the node that takes over drops the
  # preference, so the target stays put when the killed node returns.
  fail_owner "killpreferred$r" kill
  CL sluice "$(holder)" target show float | grep -q '^preferred node *-$' \
    || die "killpreferred$r: the preference survived a takeover from the preferred node"
  kept=$(holder)
  gone=$(CL status | awk '$NF=="down" {print $2}')
  for id in $gone; do CL start "$id" >/dev/null; done
  sleep 4
  [ "$(holder)" = "$kept" ] || die "killpreferred$r: the target moved back to node $(holder) on its return"
  [ "$(holder)" != "$drained" ] || die "killpreferred$r: the drained node $drained took the target"
  # A drained node takes targets again once it has restarted.
  CL sluice "$kept" target move float "$drained" >/dev/null 2>&1 \
    && die "drain$r: a target could be moved to the drained node $drained"
  kill -TERM "$(cat "$DIR/cluster/n$drained/pid")"
  for _ in $(seq 100); do [ "$(CL status | awk '$NF=="down"' | wc -l)" = 1 ] && break; sleep 0.1; done
  CL start "$drained" >/dev/null
  sleep 2
  CL sluice "$kept" target move float "$drained" >/dev/null \
    || die "drain$r: the restarted node $drained still counts as drained"
  for _ in $(seq 50); do [ "$(holder)" = "$drained" ] && break; sleep 0.1; done
  [ "$(holder)" = "$drained" ] || die "drain$r: the target did not move to the restarted node $drained"
  CL sluice "$drained" target move float any >/dev/null || die "dropping the preferred node failed"
  sleep 1
done
echo
echo "=== failover e2e summary (3 nodes, floating target at $FLOAT, lease TTL 3 s) ==="
cat "$WORK/summary"
echo "failover: ALL PASS"
}

main "$@"
