#!/usr/bin/env bash
# End-to-end test of a three-node Sluice cluster (deploy/local/cluster.sh: each node in its own
# network namespace on one bridge), with userspace libnfs clients in the bridge's namespace.
#
#   tests/e2e/cluster.sh [--bin PATH] [--size-mb N] [--files N] [--clients N] [--keep]
#
# 1. A file of SIZE MiB and FILES small files written through node 1 read back byte-identical
#    through nodes 3 and 2.
# 2. kill -9 of the metadata leader while CLIENTS clients create empty files through the other
#    two nodes: every create a client was told succeeded exists on every survivor, and no
#    client sees an error (a create the dying leader ran but could not answer is retried under
#    its request id and answered from the log, never EEXIST); the longest create (the stall)
#    and the retries answered from the log are reported.
#    With node L down, the SIZE MiB file (three copies) reads back through both survivors.
# 3. The killed node restarts on its data and catches up from a snapshot (snapshots every 16
#    entries, 40 creates while it is down, and the leader compacts its log past every entry the
#    node has): it lists every file.
# 4. A follower isolated from the other nodes (nft drops in its namespace; clients still reach
#    it) completes no create; the majority goes on; after it rejoins it lists what the majority
#    made, and the refused create does not exist anywhere.
# 5. Membership through etcd: `sluice cluster status` shows 3 voters up; one etcd member is
#    killed; a fourth node (`cluster.sh add 4`) joins as a voter (from a snapshot: the log is
#    compacted by then) and serves every file and the cluster's export; `sluice cluster leave`
#    on it takes it out of the log and stops it; the three go on.
# 6. Rebuild: a fifth node joins, three files are written through it, it is killed with
#    kill -9 and removed (`sluice cluster remove 5`): the leader makes the copies it held
#    again on the other nodes (copies_restored, files_degraded 0) and the files read back.
# Between 1 and 2, settings made through one node's admin API are every node's: a target
# created through node 1 is listed by node 3, retiered through node 3 and seen so by node 1,
# deleted through node 2 and gone on node 1; an export added through node 2 mounts on node 1.
# Exits non-zero if any check fails. Prints a PASS/FAIL summary.
set -uo pipefail
. "$(dirname "$0")/lib.sh"

main() {

BIN="" SIZE_MB=20 NFILES=100 CLIENTS=8 KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) BIN=$2; shift 2;;
    --size-mb) SIZE_MB=$2; shift 2;;
    --files) NFILES=$2; shift 2;;
    --clients) CLIENTS=$2; shift 2;;
    --keep) KEEP=1; shift;;
    -h|--help) sed -n '2,27p' "$0"; exit 0;;
    *) die "unknown option $1";;
  esac
done
[ "$(id -u)" = 0 ] || die "needs root (network namespaces)"
command -v nfs-cp >/dev/null || die "libnfs-utils missing (Debian: libnfs-utils)"
command -v nft >/dev/null || die "nft missing (Debian: nftables)"
[ -n "$BIN" ] || BIN=$(build_sluice)
[ -x "$BIN" ] || die "no binary at $BIN"

WORK=$(mktemp -d /tmp/sluice-cluster-e2e.XXXXXX)
CL="$REPO_ROOT/deploy/local/cluster.sh"
CDIR=$WORK/cluster
FAILED=0 RESULTS=()
trap cluster_cleanup EXIT
trap 'exit 130' INT TERM

in_ns() { ip netns exec slc "$@"; }
url() { echo "nfs://10.78.0.10$1//$2?version=3"; }   # url NODE PATH
listing() { in_ns nfs-ls "$(url "$1" "$2")" 2>/dev/null | awk '{print $NF}' | sort; }
leader() { "$CL" status --dir "$CDIR" | awk '$NF=="leader" {print $2; exit}'; }
log_metric() {  # log_metric NODE NAME: a sluice_metadata_log figure of NODE
  ip netns exec "slc-n$1" curl -s --max-time 2 http://127.0.0.1:9049/metrics \
    | awk -v m="$2" -F'[="}]' '$1=="sluice_metadata_log{metric" && $3==m {print $NF}' | tr -d ' '
}
wait_leader() {  # wait_leader: prints the leader's id once there is one (20 s)
  local l
  for _ in $(seq 200); do l=$(leader); [ -n "$l" ] && { echo "$l"; return 0; }; sleep 0.1; done
  return 1
}

T0=$(now_ns)
# Snapshots every 16 entries (8 kept behind): a node that was down catches up from one.
"$CL" up --bin "$BIN" --dir "$CDIR" --snapshot-every 16 > "$WORK/up.txt" || die "the cluster did not come up"
cat "$WORK/up.txt" >&2
[ "$(grep -c '^node ' "$WORK/up.txt")" = 3 ] || die "cluster.sh up printed no three nodes"
cluster_record "cluster up (3 nodes)" 0 "$(ms_since "$T0") ms"

# 1. Write through node 1, read through nodes 3 and 2.
head -c $((SIZE_MB << 20)) /dev/urandom > "$WORK/big.bin"
want=$(sha256sum < "$WORK/big.bin" | cut -c1-16)
t=$(now_ns)
in_ns nfs-cp "$WORK/big.bin" "$(url 1 big.bin)" >/dev/null 2>&1
cluster_record "write ${SIZE_MB} MiB through node 1" $? "$(ms_since "$t") ms"
t=$(now_ns)
in_ns nfs-cp "$(url 3 big.bin)" "$WORK/back.bin" >/dev/null 2>&1
got=$(sha256sum < "$WORK/back.bin" | cut -c1-16)
[ "$got" = "$want" ]; cluster_record "read it back through node 3, sha256" $? "$(ms_since "$t") ms sha=$got want=$want"
mkdir -p "$WORK/small"
for i in $(seq "$NFILES"); do echo "small file $i" > "$WORK/small/f$i"; done
t=$(now_ns) rc=0
for i in $(seq "$NFILES"); do
  in_ns nfs-cp "$WORK/small/f$i" "$(url 1 "f$i")" >/dev/null 2>&1 || rc=1
done
cluster_record "$NFILES small files through node 1" $rc "$(ms_since "$t") ms"
n=$(listing 3 "" | grep -c '^f[0-9]')
[ "$n" = "$NFILES" ]; cluster_record "node 3 lists them" $? "got $n"
rc=0
for i in 1 $((NFILES / 2)) "$NFILES"; do
  [ "$(in_ns nfs-cat "$(url 2 "f$i")" 2>/dev/null)" = "small file $i" ] || rc=1
done
cluster_record "node 2 reads a sample of them" $rc ""


# 1b. Settings made through any node are the cluster's (the document cluster/admin in the log).
api() { "$CL" sluice "$1" "${@:2}" --json --dir "$CDIR" 2>"$WORK/api.err"; }
target_tier() {  # target_tier NODE NAME: the tier NODE shows for target NAME, "none" without it
  api "$1" target list | python3 -c 'import json,sys; n=sys.argv[1]; print(next((json.dumps(t["tier"]) for t in json.load(sys.stdin) if t["name"]==n), "none"))' "$2" 2>/dev/null || echo "unreadable"
}
until_shown() {  # until_shown NODE NAME WANT: waits (5 s) until target_tier NODE NAME is WANT
  local got
  for _ in $(seq 50); do got=$(target_tier "$1" "$2"); [ "$got" = "$3" ] && return 0; sleep 0.1; done
  echo "node $1 shows $got"; return 1
}
t=$(now_ns)
api 1 target create train --listen 10.78.0.201:2049 --tier 40g >/dev/null; rc=$?
why=$([ "$rc" = 0 ] || echo "create rc=$rc: $(tail -1 "$WORK/api.err" | cut -c1-300)")
seen=$(until_shown 3 train '"40g"'); [ "$rc" = 0 ] && [ -z "$seen" ]
cluster_record "a target created through node 1 is listed by node 3" $? "$(ms_since "$t") ms $why$seen"
t=$(now_ns)
api 3 target set-tier train 20g >/dev/null; rc=$?
why=$([ "$rc" = 0 ] || echo "set-tier rc=$rc: $(tail -1 "$WORK/api.err" | cut -c1-300)")
seen=$(until_shown 1 train '"20g"'); [ "$rc" = 0 ] && [ -z "$seen" ]
cluster_record "... retiered through node 3, node 1 applies the tier" $? "$(ms_since "$t") ms $why$seen"
t=$(now_ns)
api 2 target delete train >/dev/null; rc=$?
why=$([ "$rc" = 0 ] || echo "delete rc=$rc: $(tail -1 "$WORK/api.err" | cut -c1-300)")
seen=$(until_shown 1 train none); [ "$rc" = 0 ] && [ -z "$seen" ]
cluster_record "... deleted through node 2, gone on node 1" $? "$(ms_since "$t") ms $why$seen"
t=$(now_ns)
api 2 export add /shared --client '*:rw:none' --id 4242 >/dev/null; rc=$?
why=$([ "$rc" = 0 ] || echo "export add rc=$rc: $(tail -1 "$WORK/api.err" | cut -c1-300)")
if [ "$rc" = 0 ]; then
  rc=1
  for _ in $(seq 50); do
    in_ns nfs-cp "$WORK/small/f1" "nfs://10.78.0.101/shared/from-node-1?version=3" >/dev/null 2>"$WORK/export.err" && { rc=0; break; }
    sleep 0.1
  done
fi
cluster_record "an export added through node 2 mounts on node 1" $rc "$(ms_since "$t") ms $why$([ $rc = 0 ] || head -c 300 "$WORK/export.err" | tr '\n' ' ')"

# 2. kill -9 the leader while clients create through the other two nodes.
L=$(wait_leader) || die "no leader"
mapfile -t others < <(for i in 1 2 3; do [ "$i" = "$L" ] || echo "$i"; done)
: > "$WORK/empty"
mkdir -p "$WORK/storm"
storm() {  # storm CLIENT NODE COUNT: creates c<CLIENT>-<i>, logs "name ms" or "FAIL name rc"
  local c=$1 node=$2 i t rc
  for i in $(seq "$3"); do
    t=$(now_ns)
    timeout 60 ip netns exec slc nfs-cp "$WORK/empty" "$(url "$node" "storm-c$c-$i")" >/dev/null 2>&1
    rc=$?
    if [ "$rc" = 0 ]; then echo "storm-c$c-$i $(ms_since "$t")"; else echo "FAIL storm-c$c-$i $rc"; fi
  done > "$WORK/storm/c$c"
}
pids=()
for c in $(seq "$CLIENTS"); do
  storm "$c" "${others[$((c % 2))]}" 40 & pids+=($!)
done
sleep 1.5
t=$(now_ns)
"$CL" kill "$L" --dir "$CDIR" 2>/dev/null
killed_at=$t
wait "${pids[@]}"
NL=$(wait_leader); rc=$?
cluster_record "a new leader after kill -9 of node $L" $rc "node ${NL:-none}"
grep -hv '^FAIL' "$WORK"/storm/c* | awk '{print $1}' | sort > "$WORK/acked"
grep -h '^FAIL' "$WORK"/storm/c* | awk '{print $2}' | sort > "$WORK/failed"
# A create the dying leader ran, whose answer was lost with it, is retried on the new leader
# under the same request id and answered from the log (at most once): no client sees an error,
# not even EEXIST for its own create. A failure is counted as one that ran (EEXIST) or not.
listing "${others[0]}" "" | grep '^storm-' > "$WORK/listed-now"
phantom=$(comm -23 "$WORK/failed" "$WORK/listed-now" | wc -l)
executed=$(comm -12 "$WORK/failed" "$WORK/listed-now" | wc -l)
nfailed=$(wc -l < "$WORK/failed")
[ "$nfailed" = 0 ]; cluster_record "no client saw an error across the kill ($CLIENTS clients)" $? "$nfailed of $(( $(wc -l < "$WORK/acked") + nfailed )) failed ($executed had run, $phantom had not)"
replayed=0
for s in "${others[@]}"; do
  r=$(log_metric "$s" calls_replayed); replayed=$((replayed + ${r:-0}))
done
cluster_record "... retries answered from the log (reported)" 0 "$replayed"
stall=$(grep -hv '^FAIL' "$WORK"/storm/c* | awk '$2>m {m=$2} END {print m+0}')
for s in "${others[@]}"; do
  listing "$s" "" | grep '^storm-' > "$WORK/listed$s"
  missing=$(comm -23 "$WORK/acked" "$WORK/listed$s" | wc -l)
  [ "$missing" = 0 ]; cluster_record "node $s has every acknowledged create" $? "$(wc -l < "$WORK/acked") acknowledged, $missing missing"
done
cluster_record "longest create across the kill (stall)" 0 "${stall} ms"

# 2b. Replicated data: the big file has a copy on every node (cluster.replicas = 3), so it
#     reads back whole through each survivor while node L is down (without copies it lived
#     only on the node that led when it was made).
for s in "${others[@]}"; do
  t=$(now_ns); rm -f "$WORK/back-$s.bin"
  timeout 120 ip netns exec slc nfs-cp "$(url "$s" big.bin)" "$WORK/back-$s.bin" >/dev/null 2>&1
  rc=$?
  got=$(sha256sum < "$WORK/back-$s.bin" 2>/dev/null | cut -c1-16)
  [ "$rc" = 0 ] && [ "$got" = "$want" ]; cluster_record "node $L down: the big file reads back through node $s, sha256" $? "$(ms_since "$t") ms rc=$rc sha=$got"
done

# 3. The old leader comes back and catches up; the log moves on by more than a snapshot's
#    worth of entries while it is down, and the leader compacts its log past every entry node L
#    could have, so node L needs a snapshot.
NL=$(wait_leader) || NL=""
past=$(log_metric "${NL:-${others[0]}}" last_log_index)
rc=0
for i in $(seq 40); do
  in_ns nfs-cp "$WORK/empty" "$(url "${others[0]}" "while-down-$i")" >/dev/null 2>&1 || rc=1
  echo "while-down-$i"
done | sort > "$WORK/while-down"
cluster_record "40 creates while node $L is down" $rc ""
t=$(now_ns) purged=0
for _ in $(seq 150); do
  NL=$(leader)
  purged=$( [ -n "$NL" ] && log_metric "$NL" purged_index)
  [ "${purged:-0}" -gt "${past:-0}" ] && break
  sleep 0.1
done
[ -n "$past" ] && [ "${purged:-0}" -gt "$past" ]
cluster_record "the leader compacts its log past node $L's last entry" $? "purged to ${purged:-none} > ${past:-none} in $(ms_since "$t") ms"
sort -u "$WORK/acked" "$WORK/while-down" -o "$WORK/acked-all"
t=$(now_ns)
"$CL" start "$L" --dir "$CDIR" >/dev/null 2>&1; rc=$?
# Caught up: node L applied what the leader had when it restarted. (Its listings alone prove
# nothing: a follower ships reads to the leader.)
NL=$(leader) target=$( [ -n "$NL" ] && log_metric "$NL" last_log_index)
caught=1
for _ in $(seq 300); do
  applied=$(log_metric "$L" applied_index)
  [ "${applied:-0}" -ge "${target:-1}" ] && { caught=0; break; }
  sleep 0.1
done
[ -n "$target" ] || caught=1
[ "$rc" = 0 ] && [ "$caught" = 0 ]; cluster_record "node $L restarts and catches up" $? "applied ${applied:-none} >= ${target:-none} in $(ms_since "$t") ms"
listing "$L" "" | grep -E '^(storm|while-down)-' > "$WORK/listedL"
missing=$(comm -23 "$WORK/acked-all" "$WORK/listedL" | wc -l)
[ "$missing" = 0 ]; cluster_record "... and lists every acknowledged create" $? "$missing missing"
installed=$(log_metric "$L" snapshots_installed)
[ "${installed:-0}" -ge 1 ]; cluster_record "... from a snapshot the leader sent" $? "${installed:-none} installed"

# 4. An isolated follower completes no create; the majority goes on; it catches up on rejoin.
L=$(wait_leader) || die "no leader"
F=$(for i in 1 2 3; do [ "$i" = "$L" ] || echo "$i"; done | head -1)
"$CL" isolate "$F" --dir "$CDIR" 2>/dev/null
sleep 1
timeout 12 ip netns exec slc nfs-cp "$WORK/empty" "$(url "$F" refused-while-isolated)" >/dev/null 2>&1
rc=$?
[ "$rc" != 0 ]; cluster_record "a create through isolated node $F does not complete" $? "rc=$rc (124: the client stalled)"
ML=$(wait_leader) || ML=""
rc=1
[ -n "$ML" ] && in_ns nfs-cp "$WORK/empty" "$(url "$ML" made-during-isolation)" >/dev/null 2>&1 && rc=0
cluster_record "the majority takes creates meanwhile" $rc "through node ${ML:-none}"
"$CL" rejoin "$F" --dir "$CDIR" 2>/dev/null
t=$(now_ns) target=$(log_metric "${ML:-0}" last_log_index) seen=1
for _ in $(seq 300); do
  applied=$(log_metric "$F" applied_index)
  [ "${applied:-0}" -ge "${target:-1}" ] && { seen=0; break; }
  sleep 0.1
done
[ -n "$target" ] || seen=1
# A listing through F can get NFS3ERR_JUKEBOX while F's pooled connections to the leader,
# cut by the isolation, are replaced; the kernel client waits and retries JUKEBOX, libnfs
# fails. So up to 3 s of tries, and how many it took is reported.
tries=0 listed=1 first_err=""
while [ $tries -lt 30 ]; do
  tries=$((tries + 1))
  in_ns nfs-ls "$(url "$F" "")" >"$WORK/ls.out" 2>"$WORK/ls.err"
  awk '{print $NF}' "$WORK/ls.out" | grep -q '^made-during-isolation$' && { listed=0; break; }
  [ $tries = 1 ] && first_err="$(grep -c . "$WORK/ls.out") names; $(head -c 200 "$WORK/ls.err" | tr '\n' ' ')"
  sleep 0.1
done
[ "$listed" = 0 ] || seen=1
cluster_record "node $F catches up after rejoining and lists the majority's file" $seen "applied ${applied:-none} >= ${target:-none} in $(ms_since "$t") ms, listed on try $tries${first_err:+ (first try: $first_err)}"
rc=0
for i in 1 2 3; do listing "$i" "" | grep -q '^refused-while-isolated$' && rc=1; done
cluster_record "the refused create exists nowhere" $rc ""

# 5. Membership through etcd: a fourth node joins, serves what is there, and leaves.
members() {  # members NODE: "id:role:health" per member, from `sluice cluster status --json`
  "$CL" sluice "$1" cluster status --json --dir "$CDIR" 2>/dev/null \
    | python3 -c 'import json,sys; print(" ".join("%d:%s:%s" % (m["node"], m["role"], m["health"]) for m in json.load(sys.stdin)["members"]))'
}
wait_members() {  # wait_members NODE WANT: until `members NODE` is WANT (20 s); 0 if it came
  for _ in $(seq 100); do [ "$(members "$1")" = "$2" ] && return 0; sleep 0.2; done
  return 1
}
m=$(members 2)
[ "$m" = "1:voter:up 2:voter:up 3:voter:up" ]; cluster_record "cluster status through node 2: 3 voters up" $? "$m"
# One of the three etcd members dies first: the join goes through the other two.
"$CL" kill-etcd 1 --dir "$CDIR" 2>/dev/null
t=$(now_ns)
"$CL" add 4 --dir "$CDIR" >/dev/null 2>"$WORK/add4.err"; rc=$?
wait_members 3 "1:voter:up 2:voter:up 3:voter:up 4:voter:up"; voters4=$?
[ "$rc" = 0 ] && [ "$voters4" = 0 ]; cluster_record "node 4 joins (etcd member 1 killed) and is a voter" $? "$(ms_since "$t") ms: $(members 3)$([ "$rc" = 0 ] || echo "; add: rc=$rc $(tail -3 "$WORK/add4.err" | tr '\n' ' ' | cut -c1-600)")"
installed=$(log_metric 4 snapshots_installed)
[ "${installed:-0}" -ge 1 ]; cluster_record "... caught up from a snapshot (the log is compacted)" $? "${installed:-none} installed"
in_ns nfs-cp "$(url 4 big.bin)" "$WORK/back4.bin" >/dev/null 2>&1
got=$(sha256sum < "$WORK/back4.bin" | cut -c1-16)
listing 4 "" | grep '^storm-' > "$WORK/listed4"
missing=$(comm -23 "$WORK/acked" "$WORK/listed4" | wc -l)
[ "$got" = "$want" ] && [ "$missing" = 0 ]; cluster_record "node 4 serves the big file and every acknowledged create" $? "sha=$got, $missing missing"
[ "$(in_ns nfs-cat "nfs://10.78.0.104/shared/from-node-1?version=3" 2>/dev/null)" = "small file 1" ]
cluster_record "... and the cluster's export /shared" $? ""
t=$(now_ns)
"$CL" sluice 4 cluster leave --dir "$CDIR" >/dev/null 2>&1; rc=$?
pid4=$(cat "$CDIR/n4/pid")
gone=1
for _ in $(seq 100); do kill -0 "$pid4" 2>/dev/null || { gone=0; break; }; sleep 0.2; done
m=$(members 1)
[ "$rc" = 0 ] && [ "$gone" = 0 ] && [ "$m" = "1:voter:up 2:voter:up 3:voter:up" ]
cluster_record "node 4 leaves: out of the log, and it stops" $? "$(ms_since "$t") ms: $m"
in_ns nfs-cp "$WORK/empty" "$(url 2 after-node-4-left)" >/dev/null 2>&1
cluster_record "the three go on taking creates" $? ""

# 6. Rebuild: a node holding copies is killed and removed; its copies are made again on the
#    three others (replicas = 3), and the files read back whole.
t=$(now_ns)
"$CL" add 5 --dir "$CDIR" >/dev/null 2>"$WORK/add5.err"; rc=$?
wait_members 1 "1:voter:up 2:voter:up 3:voter:up 5:voter:up"; voters5=$?
[ "$rc" = 0 ] && [ "$voters5" = 0 ]; cluster_record "node 5 joins as a voter" $? "$(ms_since "$t") ms: $(members 1)"
rc=0
for i in 1 2 3; do
  head -c $((3 << 20)) /dev/urandom > "$WORK/r$i.bin"
  in_ns nfs-cp "$WORK/r$i.bin" "$(url 5 "r$i.bin")" >/dev/null 2>&1 || rc=1
done
cluster_record "three 3 MiB files written through node 5 (four voters: two have a copy on it)" $rc ""
NL=$(wait_leader) || NL=""
before=$(log_metric "${NL:-1}" copies_restored)
"$CL" kill 5 --dir "$CDIR" >/dev/null 2>&1
t=$(now_ns)
"$CL" sluice 1 cluster remove 5 --dir "$CDIR" >/dev/null 2>"$WORK/remove5.err"; rc=$?
restored="" degraded=""
for _ in $(seq 150); do
  NL=$(leader)
  if [ -n "$NL" ]; then
    restored=$(log_metric "$NL" copies_restored); degraded=$(log_metric "$NL" files_degraded)
    [ "$(members 1)" = "1:voter:up 2:voter:up 3:voter:up" ] && [ "${restored:-0}" -ge $(( ${before:-0} + 2 )) ] && [ "${degraded:-1}" = 0 ] && break
  fi
  sleep 0.2
done
[ "$rc" = 0 ] && [ "${restored:-0}" -ge $(( ${before:-0} + 2 )) ] && [ "${degraded:-1}" = 0 ]
cluster_record "node 5 killed and removed: its copies are made again" $? "$(ms_since "$t") ms: restored ${before:-0} -> ${restored:-none}, degraded ${degraded:-none}, on node ${NL:-none}$([ "$rc" = 0 ] || echo "; remove: $(tail -2 "$WORK/remove5.err" | tr '\n' ' ')")"
rc=0
for i in 1 2 3; do
  in_ns nfs-cp "$(url 2 "r$i.bin")" "$WORK/r$i.back" >/dev/null 2>&1 && cmp -s "$WORK/r$i.bin" "$WORK/r$i.back" || rc=1
done
cluster_record "... and the three files read back whole through node 2" $rc ""

echo
echo "=== cluster e2e summary (3 nodes, ${SIZE_MB} MiB, $NFILES files, $CLIENTS clients, $(ms_since "$T0") ms) ==="
printf '%s\n' "${RESULTS[@]}"
if [ "$FAILED" = 0 ]; then echo "cluster: ALL PASS"; else echo "cluster: $FAILED FAILED"; exit 1; fi
}

main "$@"
