#!/usr/bin/env bash
# End-to-end test of Sluice's NFSv3 locking (NLM v4 + NSM) with the real Linux kernel client
# (Debian 6.1 kernel in QEMU VMs, /work/shared/kclient). The VMs mount with DEFAULT options
# (`mount.nfs 10.77.0.1:/ /mnt -o vers=3`: no nolock, no port=, no mountport=), so the kernel's
# lockd and NSM are really used: rpcbind and rpc.statd run in each VM (see nlm-README.md).
#
#   tests/e2e/nlm-kclient.sh [--bin PATH] [--scenarios "a b c"] [--grace S] [--keep] [--pcap]
#                            [--vers 3|4.1] [--cluster]
#
# With --vers 4.1 the same lock scenarios a and b run over NFSv4.1 (LOCK/LOCKT/LOCKU with open
# and lock stateids, no NLM, no rpcbind or statd). Sluice sends no CB_NOTIFY_LOCK (no
# backchannel), so a blocked v4.1 waiter is granted when the client's own re-poll (1, 2, 4 ...
# up to 30 s apart) finds the lock free: the grant bound is 35 s there. Scenario c is NLM's
# SM_NOTIFY path; v4.1 reclaim after a restart is kclient-v41.sh's scenario r.
#
#   a  one VM: default-options mount, flock -x, fcntl range locks, two processes contend
#      (non-blocking DENIED, shared readers, blocking waiter granted after release)
#   b  two VMs: VM1 holds an fcntl lock and a flock; VM2's non-blocking attempts are DENIED; VM2's
#      blocking attempts are GRANTED only after VM1 releases, within a few seconds (GRANTED callback)
#   c  two VMs: VM1 holds a lock, the host kill -9s and restarts sluice (same data dir); sluice
#      SM_NOTIFYs VM1, VM1 reclaims during the grace period; VM2 is DENIED, then GRANTED after
#      VM1 releases
#   f  (with --cluster) the same against a 3-node cluster (deploy/local/cluster.sh on kcbr0)
#      through a floating target at 10.77.0.200: VM1 holds a lock, the host kill -9s the
#      target's owner; the node that takes the target over SM_NOTIFYs VM1 from the target's
#      address, VM1 reclaims there, VM2 is DENIED, then GRANTED after VM1 releases
#   m  (with --cluster) as f, but the target is moved (`sluice target move`) instead of killed:
#      the old owner drops the lock and keeps its client in its list for the new owner to tell
#   w  (with --cluster) a checkpoint through the floating target: VM1 takes an fcntl lock and
#      writes CKPT_MIB MiB (default 512) in 1 MiB writes with an fsync every 64 MiB; after
#      64 MiB the host kill -9s the target's owner. VM1 must see no error; its longest gap
#      between two completed writes is the stall; VM2 is DENIED the lock until VM1 releases it,
#      and both read the whole checkpoint back intact. The new owner must log that it took
#      the target's lock clients over (NLM monitors; with --vers 4.1, NFSv4.1 client records)
#   v  (with --cluster) as w, but the target is moved (`sluice target move`) instead of killed
#   p  (with --cluster) as w, but the owner's link is taken down instead (a partition): it
#      fences itself, another node takes over; after healing, only the new owner holds the
#      address
#
# Prints a PASS/FAIL summary with timings; exits 1 if anything failed, 2 on setup errors.
# Env: KCLIENT (default /work/shared/kclient/kclient.sh), E2E_TARGET_DIR (cargo target dir when
# building), SLUICE_LOG (default debug here: the GRANTED-callback lines are debug).
set -uo pipefail
. "$(dirname "$0")/lib.sh"

# Everything runs inside main(), called on the last line (bash reads scripts while running them).
main() {

KCLIENT=${KCLIENT:-/work/shared/kclient/kclient.sh}
BIN="" SCENARIOS="" KEEP=0 GRACE=15 PCAP=0 LOGLEVEL=${SLUICE_LOG:-debug} VERS=3 CLUSTER=0 CKPT_MIB=512
# how fast a blocked waiter must be granted after the holder's release (GRANTED callback path);
# without the callback the kernel client only re-polls its blocked LOCK every 30 s
GRANT_MAX_MS=${NLM_GRANT_MAX_MS:-5000}
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) BIN=$2; shift 2;;
    --scenarios) SCENARIOS=$2; shift 2;;
    --grace) GRACE=$2; shift 2;;
    --keep) KEEP=1; shift;;
    --pcap) PCAP=1; shift;;
    --vers) VERS=$2; shift 2;;
    --cluster) CLUSTER=1; shift;;
    --ckpt-mib) CKPT_MIB=$2; shift 2;;
    -h|--help) sed -n '2,30p' "$0"; exit 0;;
    *) die "unknown option $1";;
  esac
done
# The server the VMs mount: the single sluice in netns kc, or the cluster's floating target.
SRV=10.77.0.1 FLOAT=10.77.0.200
if [ "$CLUSTER" = 1 ]; then SRV=$FLOAT SCENARIOS=${SCENARIOS:-"f w"}; else SCENARIOS=${SCENARIOS:-"a b c"}; fi
case "$VERS" in 3) ;; 4.1) GRANT_MAX_MS=${NLM_GRANT_MAX_MS:-35000};; *) die "--vers: 3 or 4.1";; esac
[ "$(id -u)" = 0 ] || die "must run as root (network namespace, QEMU)"
[ -x "$KCLIENT" ] || die "kclient not found at $KCLIENT (set KCLIENT=)"
for f in /usr/sbin/rpc.statd /usr/sbin/sm-notify /usr/bin/flock; do
  [ -x "$f" ] || die "$f missing on the host (nfs-common / util-linux): it is copied into the VM"
done
if [ "$PCAP" = 1 ] && ! command -v tcpdump >/dev/null; then die "--pcap needs tcpdump (apt-get install tcpdump)"; fi

kc_prepare

WORK=$(mktemp -d /tmp/sluice-e2e-nlm.XXXXXX)
DATA=$WORK/data CHAN=$WORK/chan SLOG=$WORK/server.log TOOLS=$WORK/tools CFG=$WORK/nlm.toml
mkdir -p "$DATA" "$CHAN" "$TOOLS"
chmod 755 "$WORK"   # the VM sees the tool at the same path (kclient --add)
SPID="" WPIDS=() VPIDS=() TCPDUMP="" FAILED=0 RESULTS=()

# locktool (fcntl byte-range locks): static if this host has a static glibc
LT=$TOOLS/locktool
gcc -static -O2 -Wall -o "$LT" "$E2E_DIR/nlm-tools/locktool.c" 2>"$WORK/gcc.err" ||
  gcc -O2 -Wall -o "$LT" "$E2E_DIR/nlm-tools/locktool.c" 2>>"$WORK/gcc.err" ||
  { cat "$WORK/gcc.err" >&2; die "cannot build locktool"; }
CK=$TOOLS/ckpt
gcc -static -O2 -Wall -o "$CK" "$E2E_DIR/nlm-tools/ckpt.c" 2>"$WORK/gcc.err" ||
  gcc -O2 -Wall -o "$CK" "$E2E_DIR/nlm-tools/ckpt.c" 2>>"$WORK/gcc.err" ||
  { cat "$WORK/gcc.err" >&2; die "cannot build ckpt"; }

cat >"$CFG" <<EOF
[nlm]
grace_seconds = $GRACE

[[export]]
path = "/"
[[export.clients]]
match = "*"
access = "rw"
squash = "none"
EOF

server_pid() { kc_server_pid; }
# start_server: sluice with the NLM config (same data dir every time); wait until it listens.
# With --cluster: three nodes on kcbr0 with the floating target, its address up on one of them.
CDIR=$WORK/cluster
CL() { "$REPO_ROOT/deploy/local/cluster.sh" "$@" --dir "$CDIR"; }
float_holder() {  # the node whose eth0 holds the floating address (empty: none)
  local id
  for id in 1 2 3; do
    ip -n "slc-n$id" -4 -o addr show dev eth0 2>/dev/null | grep -q " $FLOAT/" && { echo "$id"; return; }
  done
  true
}
start_server() {
  if [ "$CLUSTER" = 0 ]; then kc_start_server --config "$CFG"; return; fi
  NLM_GRACE=$GRACE CL up --netns kc --bin "$BIN" --floating "$FLOAT" >"$WORK/up.txt" || return 1
  local _
  for _ in $(seq 100); do [ -n "$(float_holder)" ] && return 0; sleep 0.1; done
  log "no node put up $FLOAT within 10 s"; return 1
}
stop_server() {
  if [ "$CLUSTER" = 0 ]; then kc_stop_server "$@"; return; fi
  [ -e "$CDIR" ] || return 0
  # `down` removes the cluster's directory: the nodes' logs go to the server log first.
  local id
  for id in 1 2 3; do [ -e "$CDIR/n$id/server.log" ] && sed "s/^/n$id: /" "$CDIR/n$id/server.log" >>"$SLOG"; done
  CL down >/dev/null 2>&1
}

cleanup() {
  local p
  for p in "${WPIDS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${VPIDS[@]}"; do kill -0 "$p" 2>/dev/null && kill "$p" 2>/dev/null; done   # kclient kills its qemu
  for p in "${VPIDS[@]}"; do wait "$p" 2>/dev/null; done
  stop_server
  # the server restarted by scenario c's watcher subshell: its pid file is the same
  [ -n "$TCPDUMP" ] && { kill "$TCPDUMP" 2>/dev/null; wait "$TCPDUMP" 2>/dev/null; }
  if [ "$KEEP" = 1 ] || [ "$FAILED" != 0 ]; then
    rm -rf "$DATA"
    log "logs kept in $WORK (server.log, *.out, stamps$([ "$PCAP" = 1 ] && echo ", nlm.pcap"))"
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
trap 'log interrupted; FAILED=interrupted; exit 130' INT TERM

# --- guest side (busybox sh; /bin/date is GNU date) ---------------------------------------------
# nlm_up: what a real client node has running before `mount`: rpcbind (the kernel's lockd
# registers with it at mount time, and the server finds lockd and statd through it) and rpc.statd
# (the kernel's lockd asks it to SM_MON the server). Then the default-options mount.
PRELUDE="LT=$LT CK=$CK CKPT_MIB=$CKPT_MIB VERS=$VERS SRV=$SRV
"'
ns() { /bin/date +%s%N; }
fail() { echo "CHECK_FAIL: $*"; echo "$(hostname): $*" >>/host/abort; exit 1; }
ok() { echo "ok: $*"; }
sig() { echo "$(ns) $(hostname)" >"$1.tmp" && mv "$1.tmp" "$1"; }
# wait_for FILE SECONDS: fails at once if the other VM gave up (/host/abort)
wait_for() { i=0; while [ ! -e "$1" ]; do [ ! -e /host/abort ] || { echo "other VM failed: $(cat /host/abort)"; return 1; }; sleep 0.1; i=$((i+1)); [ $i -lt $(($2 * 10)) ] || return 1; done; }
diag() {
  echo "--- diag $(hostname): rpcinfo"; rpcinfo -p 127.0.0.1 2>&1 | grep -v portmapper
  echo "--- statd log (last 25)"; tail -25 /tmp/statd.log 2>/dev/null
  echo "--- dmesg (lockd/nfs/rpc, last 40)"; dmesg | grep -iE "lockd|nlm|nfs|rpc|statd" | tail -40
}
trap diag EXIT
nlm_up() {
  if [ "$VERS" != 3 ]; then
    mount.nfs $SRV:/ /mnt -v -o vers=$VERS >/tmp/mount.log 2>&1 || { cat /tmp/mount.log; fail "vers=$VERS mount failed"; }
    m=$(grep " /mnt nfs" /proc/mounts) || fail "not mounted"
    case "$m" in *local_lock=all*|*local_lock=posix*|*local_lock=flock*) fail "locks are local: $m";; esac
    ok "mounted: $m"
    return
  fi
  mkdir -p /run/rpcbind /var/lib/nfs/sm /var/lib/nfs/sm.bak && chown _rpc /run/rpcbind || fail "dirs"
  rpcbind -w || fail "rpcbind did not start"
  i=0; until rpcinfo -p 127.0.0.1 >/dev/null 2>&1; do sleep 0.1; i=$((i+1)); [ $i -lt 100 ] || fail "rpcbind does not answer"; done
  rpc.statd -F -d --no-notify >/tmp/statd.log 2>&1 &
  STATD=$!
  i=0; until rpcinfo -p 127.0.0.1 2>/dev/null | grep -q " status"; do
    sleep 0.1; i=$((i+1)); [ $i -lt 100 ] || { cat /tmp/statd.log; fail "rpc.statd did not register"; }
  done
  t0=$(ns)
  # exactly what `mount -t nfs -o vers=3 $SRV:/ /mnt` runs: no nolock, no port options
  mount.nfs $SRV:/ /mnt -v -o vers=3 >/tmp/mount.log 2>&1 || { cat /tmp/mount.log; fail "default-options mount failed"; }
  echo MOUNT_MS=$(( ($(ns) - t0) / 1000000 ))
  sed "s/^/mount.nfs: /" /tmp/mount.log
  m=$(grep " /mnt nfs" /proc/mounts) || fail "not mounted"
  echo "mounted: $m"
  case "$m" in *nolock*|*local_lock=all*|*local_lock=posix*|*local_lock=flock*) fail "locks are local: $m";; esac
  rpcinfo -p 127.0.0.1 | grep -q nlockmgr || fail "kernel lockd did not register with rpcbind"
  ok "default-options mount, lockd registered: $(rpcinfo -p 127.0.0.1 | grep -E "nlockmgr|status" | awk "{print \$5\"/\"\$3\"/\"\$4}" | sort -u | tr "\n" " ")"
}
nlm_down() {
  if dmesg | grep -qE "VFS is out of sync|spurious grace"; then fail "lockd: $(dmesg | grep -E "VFS is out of sync|spurious grace" | head -1)"; fi
  cd /; umount /mnt || echo "umount failed"; [ -z "${STATD:-}" ] || kill $STATD 2>/dev/null
}
'

# vm NAME [kclient options] -- SCRIPT : boot a VM (no automatic mount) in the background; its
# output goes to $WORK/NAME.out, its exit status to $WORK/NAME.rc. Sets VPID.
vm() {
  local name=$1; shift
  local opts=()
  while [ "$1" != "--" ]; do opts+=("$1"); shift; done; shift
  "$KCLIENT" run --no-mount --srv-bundle --add "$LT" --add "$CK" --add /usr/sbin/rpc.statd --add /usr/sbin/sm-notify \
      --add /usr/bin/flock --hostdir "$CHAN" --timeout 300 "${opts[@]}" -- "$PRELUDE$1" >"$WORK/$name.out" 2>&1 &
  VPID=$!
  VPIDS+=("$VPID")
}
# vm_wait NAME PID: wait for that kclient run, keep its exit status in $WORK/NAME.rc
vm_wait() { wait "$2" 2>/dev/null; echo $? >"$WORK/$1.rc"; }
vm_rc() { cat "$WORK/$1.rc" 2>/dev/null || echo 99; }

# stamp_watch NAMES...: host clock (ns) at which each file first appears in $CHAN (polled 50 ms)
stamp_watch() {
  local seen=" " n
  while :; do
    for n in "$@"; do
      case "$seen" in *" $n "*) continue;; esac
      if [ -e "$CHAN/$n" ]; then echo "$n $(now_ns)" >>"$WORK/stamps"; seen+="$n "; fi
    done
    sleep 0.05
  done
}
stamp() { awk -v n="$1" '$1 == n { print $2; exit }' "$WORK/stamps" 2>/dev/null; }
gap_ms() { local a b; a=$(stamp "$1"); b=$(stamp "$2"); [ -n "$a" ] && [ -n "$b" ] && echo $(( (b - a) / 1000000 )); }
val() { kc_val "$@"; }

# record ID DESCRIPTION OK(0/1) SECONDS DETAIL
record() {
  local st=PASS
  [ "$3" = 0 ] || { st=FAIL; FAILED=$((FAILED + 1)); }
  RESULTS+=("$(printf '%-4s %-3s %-52s %4ss  %s' "$st" "$1" "$2" "$4" "$5")")
  log "$st $1 $2 (${4}s) $5"
}
# show NAME: on failure, the VM's output (its diag section has statd log and dmesg)
show() { log "--- $1.out (rc=$(vm_rc "$1")), last 60 lines:"; tail -60 "$WORK/$1.out" >&2; }

# ------------------------------------------------------------------------------ scenarios ---
scenario_a() {
  local t rc=0 why=""
  t=$(now_ns)
  rm -f "$CHAN"/*
  vm a --cpus 2 -- '
nlm_up
mkdir -p /mnt/a && cd /mnt/a || fail "mkdir"
echo data > f; echo data > fl
# flock(2): the client turns it into a whole-file NLM lock
flock -x fl -c "echo inside-flock" | grep -q inside-flock || fail "flock -x"
ok "flock -x"
exec 7<fl; flock -s 7 || fail "flock -s"; flock -u 7; exec 7<&-
ok "flock -s"
$LT f w 0 100 try 0 | tee /tmp/o1; grep -q GRANTED /tmp/o1 || fail "fcntl write lock 0+100"
$LT f r 100 50 try 0 | tee /tmp/o2; grep -q GRANTED /tmp/o2 || fail "fcntl read lock 100+50"
ok "fcntl range locks"
# two processes in this VM (different NLM svids) contend on the server
$LT f w 0 100 try 60 --signal /tmp/held --until /tmp/release --release-signal /tmp/unlocking >/tmp/holder.out &
H=$!
wait_for /tmp/held 30 || fail "holder not granted: $(cat /tmp/holder.out)"
$LT f w 50 10 try 0 | tee /tmp/o3; grep -qE "DENIED errno=(EAGAIN|EACCES)" /tmp/o3 || fail "overlapping write try not denied"
$LT f r 0 1 try 0 | tee /tmp/o4; grep -qE "DENIED errno=(EAGAIN|EACCES)" /tmp/o4 || fail "read try under a write lock not denied"
$LT f w 100 10 try 0 | tee /tmp/o5; grep -q GRANTED /tmp/o5 || fail "non-overlapping range 100+10 not granted"
$LT f w 0 0 try 0 | tee /tmp/o6; grep -qE "DENIED" /tmp/o6 || fail "whole-file try not denied"
ok "second process denied while the first holds (and a disjoint range granted)"
# a blocking waiter is granted when the holder releases
$LT f w 50 10 wait 0 --require /tmp/unlocking >/tmp/waiter.out &
W=$!
sleep 2
t0=$(ns); touch /tmp/release
wait $H; cat /tmp/holder.out; grep -q RELEASED /tmp/holder.out || fail "holder did not release"
wait $W; cat /tmp/waiter.out
grep -q GRANTED /tmp/waiter.out || fail "blocking waiter not granted"
grep -q ORDER_OK /tmp/waiter.out || fail "blocking waiter granted before the release"
echo LOCAL_GRANT_MS=$(( ($(ns) - t0) / 1000000 ))
ok "blocking waiter granted after release"
# shared locks: two readers at once
$LT f r 0 100 try 20 --signal /tmp/rheld --until /tmp/rrelease >/tmp/r1.out &
R=$!
wait_for /tmp/rheld 30 || fail "reader 1 not granted"
$LT f r 0 100 try 0 | tee /tmp/o7; grep -q GRANTED /tmp/o7 || fail "second reader not granted"
$LT f w 0 100 try 0 | tee /tmp/o8; grep -q DENIED /tmp/o8 || fail "writer granted under a read lock"
touch /tmp/rrelease; wait $R
ok "shared read locks"
$LT f w 0 0 try 0 | tee /tmp/o9; grep -q GRANTED /tmp/o9 || fail "file still locked at the end"
nlm_down
echo SCENARIO_OK'
  vm_wait a "$VPID"
  grep -q SCENARIO_OK "$WORK/a.out" && [ "$(vm_rc a)" = 0 ] || { rc=1; why="$(grep -m1 CHECK_FAIL "$WORK/a.out")"; show a; }
  record a "v$VERS 1 VM: mount w/o nolock, flock, fcntl, 2 procs contend" $rc $(( ($(now_ns) - t) / 1000000000 )) \
    "${why:-mount $(val MOUNT_MS a) ms; local waiter granted $(val LOCAL_GRANT_MS a) ms after release (incl. 1 RTT)}"
}

scenario_b() {
  local t rc=0 why="" WP p1 p2 g_fcntl g_flock
  t=$(now_ns)
  rm -f "$CHAN"/* "$WORK/stamps"
  stamp_watch b1-granted b1-flock-granted b2-denied b2-waiting b1-unlocking b1-flock-unlocking b2-granted b2-flock-granted &
  WP=$!; WPIDS+=("$WP")
  vm b1 --cpus 1 --mem 1024 -- '
nlm_up
mkdir -p /mnt/b && cd /mnt/b || fail "mkdir"
echo x > fcntlf; echo x > flockf
exec 7>flockf; flock -x 7 || fail "flock -x"
sig /host/b1-flock-granted
$LT fcntlf w 0 0 try 240 --signal /host/b1-granted --until /host/b2-waiting --after-until 3 --release-signal /host/b1-unlocking >/tmp/lt.out &
L=$!
wait_for /host/b2-waiting 240 || fail "VM2 never started waiting"
sleep 3
sig /host/b1-flock-unlocking; flock -u 7 || fail "flock -u"; exec 7>&-
wait $L; r=$?; cat /tmp/lt.out; [ $r = 0 ] || fail "locktool rc=$r"
nlm_down
echo SCENARIO_OK'
  p1=$VPID
  sleep 1   # b1 takes slot 0, then b2
  vm b2 --cpus 1 --mem 1024 -- '
nlm_up
cd /mnt || fail "cd"
wait_for /host/b1-granted 240 && wait_for /host/b1-flock-granted 60 || fail "VM1 never got its locks"
cd /mnt/b || fail "cd /mnt/b"
$LT fcntlf w 0 0 try 0 | tee /tmp/o1; grep -qE "DENIED errno=(EAGAIN|EACCES)" /tmp/o1 || fail "fcntl try while VM1 holds: not denied"
$LT fcntlf r 10 10 try 0 | tee /tmp/o2; grep -qE "DENIED errno=(EAGAIN|EACCES)" /tmp/o2 || fail "read try while VM1 holds a write lock: not denied"
exec 7>flockf
if flock -n -x 7; then fail "flock -n -x granted while VM1 holds its flock"; fi
ok "non-blocking attempts denied while VM1 holds"
sig /host/b2-denied
# blocking flock in the background, blocking fcntl in the foreground
( t0=$(ns); flock -x 7 || { echo FLOCK_WAIT_FAILED; exit 1; }
  if [ -e /host/b1-flock-unlocking ]; then echo FLOCK_ORDER_OK; else echo FLOCK_ORDER_VIOLATION; fi
  sig /host/b2-flock-granted; echo FLOCK_WAITED_MS=$(( ($(ns) - t0) / 1000000 )); flock -u 7 ) >/tmp/fl.out 2>&1 &
F=$!
sleep 0.5
$LT fcntlf w 0 0 wait 0 --pre-signal /host/b2-waiting --require /host/b1-unlocking --signal /host/b2-granted | tee /tmp/o3
grep -q GRANTED /tmp/o3 || fail "blocking fcntl never granted"
grep -q ORDER_OK /tmp/o3 || fail "blocking fcntl granted while VM1 still held the lock"
echo FCNTL_WAITED_MS=$(grep -o "waited_ms=[0-9]*" /tmp/o3 | cut -d= -f2)
wait $F; cat /tmp/fl.out
grep -q FLOCK_ORDER_OK /tmp/fl.out || fail "blocking flock: $(cat /tmp/fl.out)"
exec 7>&-
ok "blocking fcntl and flock granted after VM1 released"
touch /host/b2-done
nlm_down
echo SCENARIO_OK'
  p2=$VPID
  vm_wait b1 "$p1"; vm_wait b2 "$p2"
  kill "$WP" 2>/dev/null; wait "$WP" 2>/dev/null
  grep -q SCENARIO_OK "$WORK/b1.out" && [ "$(vm_rc b1)" = 0 ] || { rc=1; why="VM1: $(grep -m1 CHECK_FAIL "$WORK/b1.out")"; show b1; }
  grep -q SCENARIO_OK "$WORK/b2.out" && [ "$(vm_rc b2)" = 0 ] || { rc=1; why+=" VM2: $(grep -m1 CHECK_FAIL "$WORK/b2.out")"; show b2; }
  g_fcntl=$(gap_ms b1-unlocking b2-granted); g_flock=$(gap_ms b1-flock-unlocking b2-flock-granted)
  B_FCNTL=$g_fcntl B_FLOCK=$g_flock
  if [ "$rc" = 0 ]; then
    if [ -z "$g_fcntl" ] || [ -z "$g_flock" ]; then rc=1; why="host stamps missing"
    elif [ "$g_fcntl" -gt "$GRANT_MAX_MS" ] || [ "$g_flock" -gt "$GRANT_MAX_MS" ]; then
      rc=1; why="waiter granted late (fcntl ${g_fcntl} ms, flock ${g_flock} ms after release; >25 s means the GRANTED callback failed and the client's 30 s re-poll found the lock)"
    fi
  fi
  local cb_ok cb_fail
  cb_ok=$(grep -c 'GRANTED callback delivered' "$SLOG"); cb_fail=$(grep -c 'GRANTED callback failed' "$SLOG")
  [ "$cb_fail" = 0 ] || { [ "$rc" = 0 ] && why="note: $cb_fail GRANTED callback(s) failed"; grep 'GRANTED callback failed' "$SLOG" | head -3 >&2; }
  record b "v$VERS 2 VMs: DENIED while held, blocking GRANTED on release" $rc $(( ($(now_ns) - t) / 1000000000 )) \
    "${why:+$why; }grant after release: fcntl ${g_fcntl:-?} ms, flock ${g_flock:-?} ms (host clock); VM2 blocked fcntl $(val FCNTL_WAITED_MS b2) ms; callbacks ok=$cb_ok failed=$cb_fail"
}

# Scenarios c and f: VM1 holds a lock across the server's restart (c) or the floating target's
# takeover (f) and must get it back by reclaim; VM2 must not get it until VM1 releases it.
VM_RECLAIMER='
nlm_up
echo 32767 > /proc/sys/sunrpc/nlm_debug   # lockd client debugging: shows the reclaim in dmesg
mkdir -p /mnt/c && cd /mnt/c || fail "mkdir"
echo x > f
$LT f w 0 0 try 280 --signal /host/c1-granted --until /host/c2-denied --after-until 3 --release-signal /host/c1-unlocking >/tmp/lt.out &
L=$!
wait_for /host/c-restarted 120 || fail "server was not restarted: $(cat /host/c-restart-failed 2>/dev/null)"
wait $L; r=$?; cat /tmp/lt.out; [ $r = 0 ] || fail "locktool rc=$r (unlock after the restart failed?)"
echo 0 > /proc/sys/sunrpc/nlm_debug
echo "--- lockd reclaim (dmesg, nlm_debug)"
dmesg | grep -E "lockd: (SM_NOTIFY|host .* rebooted|reclaiming|server returns)|NLM: done reclaiming|reclaim" | tail -20
dmesg | grep -q "lockd: reclaiming locks for host" || fail "kernel lockd never started reclaiming (no SM_NOTIFY reached it?)"
dmesg | grep -q "NLM: done reclaiming locks for host" || fail "kernel lockd did not finish reclaiming"
# the LOCK(reclaim) answers between the start and the end of the reclaim: all must be 0 (GRANTED)
rs=$(dmesg | sed -n "/lockd: reclaiming locks for host/,/NLM: done reclaiming/p" | grep -o "server returns status [0-9]*" | sort | uniq -c | tr "\n" " ")
echo "reclaim answers: $rs"
case "$rs" in *"status 0"*) ;; *) fail "no GRANTED answer to the reclaim: $rs";; esac
if echo "$rs" | grep -qE "status [1-9]"; then fail "a reclaim was refused: $rs"; fi
if dmesg | grep -qiE "failed to reclaim|spurious grace|VFS is out of sync"; then fail "client-side lockd error: $(dmesg | grep -iE "failed to reclaim|spurious grace|VFS is out of sync" | head -2)"; fi
ok "lock reclaimed after the server restart (SM_NOTIFY -> statd -> lockd -> LOCK reclaim GRANTED)"
grep -iE "notify|SM_NOTIFY|Received" /tmp/statd.log | tail -5
nlm_down
echo SCENARIO_OK'
VM_CONTENDER='
nlm_up
wait_for /host/c-notified 240 || fail "server restart / SM_NOTIFY not done: $(cat /host/c-restart-failed 2>/dev/null)"
cd /mnt/c || fail "cd /mnt/c"
echo "host: $(cat /host/c-restarted), SM_NOTIFY after $(cat /host/c-notified) ms"
# during the grace period the server answers DENIED_GRACE_PERIOD and the client retries every 5 s
$LT f w 0 0 try 0 | tee /tmp/o1
grep -qE "DENIED errno=(EAGAIN|EACCES)" /tmp/o1 || fail "non-blocking lock after the restart not denied: lock lost?"
echo TRY_WAITED_MS=$(grep -o "waited_ms=[0-9]*" /tmp/o1 | cut -d= -f2)
sig /host/c2-denied
$LT f w 0 0 wait 0 --require /host/c1-unlocking --signal /host/c2-granted | tee /tmp/o2
grep -q GRANTED /tmp/o2 || fail "blocking lock never granted"
grep -q ORDER_OK /tmp/o2 || fail "granted while VM1 still held the lock (duplicated)"
echo WAIT_WAITED_MS=$(grep -o "waited_ms=[0-9]*" /tmp/o2 | cut -d= -f2)
ok "VM2 denied while VM1 held its reclaimed lock, granted after VM1 released"
touch /host/c2-done
nlm_down
echo SCENARIO_OK'

# reclaim_pair WATCHER [ARGS...]: the two VMs of scenarios c, f and m, with WATCHER (the host
# side: a restart, a kill or a move once VM1 holds its lock) in the background. VM1 must get
# its lock back by reclaim, VM2 must not get it until VM1 releases it. Sets the caller's rc
# and why.
reclaim_pair() {
  local WP RW p1 p2
  rm -f "$CHAN"/* "$WORK/stamps"
  stamp_watch c1-granted c-restarted c-notified c2-denied c1-unlocking c2-granted &
  WP=$!; WPIDS+=("$WP")
  "$@" 2>>"$SLOG" &
  RW=$!; WPIDS+=("$RW")
  vm c1 --cpus 1 --mem 1024 -- "$VM_RECLAIMER"
  p1=$VPID
  sleep 1
  vm c2 --cpus 1 --mem 1024 -- "$VM_CONTENDER"
  p2=$VPID
  vm_wait c1 "$p1"; vm_wait c2 "$p2"
  kill "$WP" "$RW" 2>/dev/null; wait "$WP" "$RW" 2>/dev/null
  grep -q SCENARIO_OK "$WORK/c1.out" && [ "$(vm_rc c1)" = 0 ] || { rc=1; why="VM1: $(grep -m1 CHECK_FAIL "$WORK/c1.out")"; show c1; }
  grep -q SCENARIO_OK "$WORK/c2.out" && [ "$(vm_rc c2)" = 0 ] || { rc=1; why+=" VM2: $(grep -m1 CHECK_FAIL "$WORK/c2.out")"; show c2; }
}

# scenario c's host side: when VM1 holds its lock, kill -9 sluice, restart it, wait for SM_NOTIFY
restart_watcher() {
  local i t n
  for i in $(seq 3000); do [ -e "$CHAN/abort" ] && return; [ -e "$CHAN/c1-granted" ] && break; sleep 0.1; done
  [ -e "$CHAN/c1-granted" ] || { echo "watcher: VM1 never held its lock" >"$CHAN/c-restart-failed"; return; }
  sleep 1
  t=$(now_ns)
  n=$(wc -l <"$SLOG")
  stop_server KILL
  if ! start_server; then echo "restart failed" >"$CHAN/c-restart-failed"; return; fi
  echo "restarted in $(ms_since "$t") ms" >"$CHAN/c-restarted"
  for i in $(seq 300); do tail -n +"$((n + 1))" "$SLOG" | grep -q 'SM_NOTIFY \(sent\|failed\)' && break; sleep 0.1; done
  echo "$(ms_since "$t")" >"$CHAN/c-notified"
}

scenario_c() {
  local t rc=0 why="" lastrun notes
  t=$(now_ns)
  reclaim_pair restart_watcher
  # server side: the run after the restart logged a grace period and SM_NOTIFY to VM1
  lastrun=$(awk '/^=== .* start ===/ { buf = "" } { buf = buf $0 "\n" } END { printf "%s", buf }' "$SLOG" | sed 's/\x1b\[[0-9;]*m//g')
  grep -q 'NLM grace period' <<<"$lastrun" || { rc=1; why+=" no grace period after the restart"; }
  grep -q 'SM_NOTIFY sent' <<<"$lastrun" || { rc=1; why+=" no 'SM_NOTIFY sent' in the server log ($(grep -o 'SM_NOTIFY failed.*' <<<"$lastrun" | head -1))"; }
  notes=$(grep -o 'SM_NOTIFY sent.*' <<<"$lastrun" | tr '\n' ';')
  record c "kill -9 + restart: SM_NOTIFY, reclaim, no lock lost" $rc $(( ($(now_ns) - t) / 1000000000 )) \
    "${why:+$why; }$(cat "$CHAN/c-restarted" 2>/dev/null); SM_NOTIFY $(cat "$CHAN/c-notified" 2>/dev/null) ms after kill; VM2 try denied after $(val TRY_WAITED_MS c2) ms (grace); VM2 granted $(gap_ms c1-unlocking c2-granted) ms after release"
  log "server after restart: $notes"
}

# scenario f's host side: when VM1 holds its lock, kill -9 the floating target's owner; wait
# until another node holds the address and has sent SM_NOTIFY (same channel names as c)
# revive: start again the nodes an earlier scenario killed (a takeover needs a quorum of the
# metadata log after the kill: two live nodes of three).
revive() {
  local id
  if [ -e "$WORK/cut" ]; then
    for id in $(sort -u "$WORK/cut"); do CL heal "$id" >/dev/null || return 1; done
    rm -f "$WORK/cut"
  fi
  [ -e "$WORK/killed" ] || return 0
  for id in $(sort -u "$WORK/killed"); do
    CL start "$id" >/dev/null || { log "node $id did not start again"; return 1; }
  done
  rm -f "$WORK/killed"
}

# failover_watcher X PAUSE [kill|move|cut]: once $CHAN/X1-granted appears, sleep PAUSE, then
# kill -9 the owner, move the target to another node (`sluice target move`), or take the
# owner's link down (healed by the next revive).
failover_watcher() {
  local x=$1 pause=$2 how=${3:-kill} i t old new="" dest
  for i in $(seq 3000); do [ -e "$CHAN/abort" ] && return; [ -e "$CHAN/${x}1-granted" ] && break; sleep 0.1; done
  [ -e "$CHAN/${x}1-granted" ] || { echo "watcher: VM1 never got going" >"$CHAN/$x-restart-failed"; return; }
  sleep "$pause"
  old=$(float_holder)
  [ -n "$old" ] || { echo "no node holds $FLOAT" >"$CHAN/$x-restart-failed"; return; }
  local -A lines
  for i in 1 2 3; do lines[$i]=$(wc -l <"$CDIR/n$i/server.log" 2>/dev/null || echo 0); done
  t=$(now_ns)
  if [ "$how" = move ]; then
    dest=$(( old % 3 + 1 ))
    CL sluice "$old" target move float "$dest" >/dev/null 2>&1 ||
      { echo "sluice target move float $dest failed" >"$CHAN/$x-restart-failed"; return; }
  elif [ "$how" = cut ]; then
    CL cut "$old" >/dev/null 2>&1
    echo "$old" >>"$WORK/cut"
  else
    CL kill "$old" >/dev/null 2>&1
    echo "$old" >>"$WORK/killed"
  fi
  for i in $(seq 300); do new=$(float_holder); [ -n "$new" ] && [ "$new" != "$old" ] && break; sleep 0.1; done
  if [ -z "$new" ] || [ "$new" = "$old" ]; then echo "no node took $FLOAT over from node $old" >"$CHAN/$x-restart-failed"; return; fi
  echo "$new" >"$WORK/new-owner"
  echo "node $old $(case $how in move) echo "moved it";; cut) echo "cut off";; *) echo killed;; esac), node $new holds $FLOAT after $(ms_since "$t") ms" >"$CHAN/$x-restarted"
  [ "$VERS" = 3 ] || { echo "$(ms_since "$t")" >"$CHAN/$x-notified"; return; }
  for i in $(seq 300); do
    tail -n +"$((${lines[$new]:-0} + 1))" "$CDIR/n$new/server.log" | grep -q 'SM_NOTIFY \(sent\|failed\)' && break
    sleep 0.1
  done
  echo "$(ms_since "$t")" >"$CHAN/$x-notified"
}

# scenario_f [kill|move] (scenario m: move)
scenario_f() {
  local how=${1:-kill} id=f what="owner killed"
  [ "$how" = move ] && id=m what="target moved (planned)"
  local t rc=0 why="" new nlog notes
  revive || { record $id "floating target's $what: SM_NOTIFY, reclaim" 1 0 "a node killed before did not start again"; return; }
  t=$(now_ns)
  rm -f "$WORK/new-owner"
  reclaim_pair failover_watcher c 1 "$how"
  new=$(cat "$WORK/new-owner" 2>/dev/null)
  nlog=$(sed 's/\x1b\[[0-9;]*m//g' "$CDIR/n${new:-0}/server.log" 2>/dev/null)
  grep -q 'lock clients of a floating target that moved here' <<<"$nlog" || { rc=1; why+=" the new owner adopted no lock client"; }
  grep -q 'lock grace after a floating target' <<<"$nlog" || { rc=1; why+=" no lock grace on the new owner"; }
  grep -q 'SM_NOTIFY sent' <<<"$nlog" || { rc=1; why+=" no 'SM_NOTIFY sent' in the new owner's log ($(grep -o 'SM_NOTIFY failed.*' <<<"$nlog" | head -1))"; }
  # The blocked waiter is granted by the GRANTED callback (which Linux lockd takes only from
  # the floating address), not by its own re-poll 30 s later.
  local g; g=$(gap_ms c1-unlocking c2-granted)
  if [ "$rc" = 0 ] && { [ -z "$g" ] || [ "$g" -gt "$GRANT_MAX_MS" ]; }; then
    rc=1; why+=" VM2 granted ${g:-?} ms after the release (GRANTED callback refused? $(grep -o 'GRANTED callback failed.*' <<<"$nlog" | head -1))"
  fi
  notes=$(grep -o 'SM_NOTIFY sent.*' <<<"$nlog" | tr '\n' ';')
  record $id "floating target's $what: SM_NOTIFY, reclaim, no lock lost" $rc $(( ($(now_ns) - t) / 1000000000 )) \
    "${why:+$why; }$(cat "$CHAN/c-restarted" 2>/dev/null); SM_NOTIFY $(cat "$CHAN/c-notified" 2>/dev/null) ms after kill; VM2 try denied after $(val TRY_WAITED_MS c2) ms (grace); VM2 granted $(gap_ms c1-unlocking c2-granted) ms after release"
  log "new owner (node ${new:-?}): $notes"
}

# scenario_w [kill|move]: a checkpoint written under an fcntl lock while the target's owner is
# killed (w) or the target is moved to another node (v, planned).
scenario_w() {
  local how=${1:-kill} id=w what="owner killed"
  [ "$how" = move ] && id=v what="target moved (planned)"
  [ "$how" = cut ] && id=p what="owner's link cut"
  local t rc=0 why="" WP RW p1 p2 new stall
  revive || { record $id "v$VERS checkpoint, $what" 1 0 "a node killed before did not start again"; return; }
  t=$(now_ns)
  rm -f "$CHAN"/* "$WORK/stamps" "$WORK/new-owner"
  stamp_watch w1-granted w-restarted w2-denied w1-unlocking w2-granted &
  WP=$!; WPIDS+=("$WP")
  failover_watcher w 0 "$how" 2>>"$SLOG" &
  RW=$!; WPIDS+=("$RW")
  vm w1 --cpus 1 --mem 1024 -- '
nlm_up
cd /mnt || fail "cd /mnt"
$CK write ckpt $CKPT_MIB --fsync-every 64 --lock --signal-at 64 /host/w1-granted \
  --hold-until /host/w2-denied --release-signal /host/w1-unlocking >/tmp/ck.out 2>&1
r=$?; cat /tmp/ck.out
[ $r = 0 ] || fail "the checkpoint writer failed across the failover (rc=$r): $(grep ERROR /tmp/ck.out)"
echo STALL_MS=$(grep -o "max_gap_ms=[0-9]*" /tmp/ck.out | cut -d= -f2)
[ -e /host/w-restarted ] || fail "the owner was not killed during the write: $(cat /host/w-restart-failed 2>/dev/null)"
sync; echo 3 > /proc/sys/vm/drop_caches
$CK verify ckpt $CKPT_MIB || fail "the checkpoint read back differs"
ok "checkpoint of $CKPT_MIB MiB written across the failover with no error, read back intact"
nlm_down
echo SCENARIO_OK'
  p1=$VPID
  vm w2 --cpus 1 --mem 1024 -- '
nlm_up
wait_for /host/w-restarted 240 || fail "no takeover: $(cat /host/w-restart-failed 2>/dev/null)"
cd /mnt || fail "cd /mnt"
$LT ckpt w 0 0 try 0 | tee /tmp/o1
grep -qE "DENIED errno=(EAGAIN|EACCES)" /tmp/o1 || fail "VM2 got the lock VM1 held (lost in the takeover)"
sig /host/w2-denied
$LT ckpt w 0 0 wait 0 --require /host/w1-unlocking --signal /host/w2-granted | tee /tmp/o2
grep -q GRANTED /tmp/o2 || fail "blocking lock never granted"
grep -q ORDER_OK /tmp/o2 || fail "granted while VM1 still held the lock"
$CK verify ckpt $CKPT_MIB || fail "the checkpoint read by a second client differs"
ok "VM2 denied while VM1 held its lock across the takeover, granted after, checkpoint intact"
nlm_down
echo SCENARIO_OK'
  p2=$VPID
  vm_wait w1 "$p1"; vm_wait w2 "$p2"
  kill "$WP" "$RW" 2>/dev/null; wait "$WP" "$RW" 2>/dev/null
  grep -q SCENARIO_OK "$WORK/w1.out" && [ "$(vm_rc w1)" = 0 ] || { rc=1; why="VM1: $(grep -m1 CHECK_FAIL "$WORK/w1.out")"; show w1; }
  grep -q SCENARIO_OK "$WORK/w2.out" && [ "$(vm_rc w2)" = 0 ] || { rc=1; why+=" VM2: $(grep -m1 CHECK_FAIL "$WORK/w2.out")"; show w2; }
  # The new owner took the target's lock clients over (NLM monitors, or NFSv4.1 client
  # records), instead of the writer's lock surviving by luck.
  local adopted='lock clients of a floating target that moved here'
  [ "$VERS" = 3 ] || adopted='NFSv4 clients of a floating target adopted'
  new=$(cat "$WORK/new-owner" 2>/dev/null)
  # (no `sed | grep -q`: with pipefail, sed's SIGPIPE after an early match fails the check)
  grep -q "$adopted" <<<"$(sed 's/\x1b\[[0-9;]*m//g' "$CDIR/n${new:-0}/server.log" 2>/dev/null)" ||
    { rc=1; why+=" the new owner (node ${new:-?}) logged no '$adopted'"; }
  if [ "$how" = cut ]; then
    # Healed, the old owner (which fenced itself) must not answer for the target again.
    local old; old=$(sort -u "$WORK/cut" 2>/dev/null | head -1)
    revive || { rc=1; why+=" the cut node did not come back"; }
    sleep 3
    [ "$(float_holder)" = "$new" ] || { rc=1; why+=" after healing, node $(float_holder) holds $FLOAT, not the new owner $new"; }
    grep -q "$FLOAT" <<<"$(ip -n "slc-n${old:-0}" -4 -o addr show 2>/dev/null)" &&
      { rc=1; why+=" the healed node $old still has $FLOAT"; }
  fi
  stall=$(val STALL_MS w1)
  record $id "v$VERS checkpoint ${CKPT_MIB} MiB + fcntl lock, $what" $rc $(( ($(now_ns) - t) / 1000000000 )) \
    "${why:+$why; }$(cat "$CHAN/w-restarted" 2>/dev/null); longest gap between completed writes ${stall:-?} ms; $(grep -o 'total_ms=[0-9]*' "$WORK/w1.out" | head -1); VM2 granted $(gap_ms w1-unlocking w2-granted) ms after release"
}

# -------------------------------------------------------------------------------------- main ---
T0=$(now_ns)
log "sluice $BIN ($("$BIN" --version)), grace ${GRACE}s, scenarios: $SCENARIOS, work dir $WORK"
if [ "$PCAP" = 1 ]; then
  ip netns exec kc tcpdump -ni kcbr0 -s 512 -w "$WORK/nlm.pcap" 'not port 22' 2>"$WORK/tcpdump.err" &
  TCPDUMP=$!
fi
start_server || die "cannot start sluice"

has() { case " $SCENARIOS " in *" $1 "*) return 0;; esac; return 1; }
has a && scenario_a
has b && scenario_b
if has c && [ "$VERS" != 3 ]; then
  log "scenario c (SM_NOTIFY + NLM reclaim) is NFSv3 only; skipped for vers=$VERS"
else
  has c && scenario_c
fi
if has f && [ "$CLUSTER" = 0 ]; then
  log "scenario f needs --cluster; skipped"
elif has f && [ "$VERS" != 3 ]; then
  log "scenario f (SM_NOTIFY + NLM reclaim) is NFSv3 only; skipped for vers=$VERS"
elif has f; then
  scenario_f
fi
if has m && { [ "$CLUSTER" = 0 ] || [ "$VERS" != 3 ]; }; then
  log "scenario m needs --cluster and vers=3; skipped"
elif has m; then
  scenario_f move
fi
# the checkpoint scenarios: owner killed (w), target moved (v), owner cut off (p)
local sc
for sc in "w kill" "v move" "p cut"; do
  if has "${sc% *}" && [ "$CLUSTER" = 0 ]; then
    log "scenario ${sc% *} needs --cluster; skipped"
  elif has "${sc% *}"; then
    scenario_w "${sc#* }"
  fi
done
stop_server TERM

sed -i 's/\x1b\[[0-9;]*m//g' "$SLOG"
if grep -q 'panicked' "$SLOG"; then
  record health "server log: no panics" 1 0 "$(grep -c panicked "$SLOG") panic line(s)"
else
  record health "server log: no panics" 0 0 "$(grep -c ' WARN ' "$SLOG") WARN, $(grep -c ' ERROR ' "$SLOG") ERROR lines"
fi
local notable
notable=$(notable_lines "$SLOG")
[ -z "$notable" ] || { log "server WARN/ERROR lines (first 15):"; echo "$notable" | head -15 >&2; }

TOTAL=$(( ($(now_ns) - T0) / 1000000000 ))
echo
echo "=== kclient locking e2e summary (vers=$VERS): grace ${GRACE}s, ${TOTAL}s total ==="
printf '%s\n' "${RESULTS[@]}"
if [ "$FAILED" = 0 ]; then echo "nlm-kclient: ALL PASS"; exit 0
else echo "nlm-kclient: $FAILED FAILED (logs in $WORK)"; exit 1; fi
}

main "$@"; exit $?
