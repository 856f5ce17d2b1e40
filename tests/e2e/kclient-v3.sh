#!/usr/bin/env bash
# End-to-end test of Sluice with the real Linux kernel NFSv3 client (Debian 6.1 kernel in a QEMU
# VM, /work/shared/kclient). The server runs in network namespace "kc" (host side 10.77.0.1);
# the VM mounts it with `--vers 3 --mountport 0 --mount-opts port=0`, so mount.nfs discovers both
# ports through the portmap/rpcbind service that sluice answers on port 111.
#
#   tests/e2e/kclient-v3.sh [--nconnect N] [--bin PATH] [--size-mb N] [--scenarios "a b c d e f"]
#                           [--keep] [--debug]
#
# Scenarios (one VM boot each): a 1 GiB write/read + sha256 and MB/s, b 1000 small files,
# c directory-tree rename, d hard/symbolic links, e chown/chmod with root squash and then (after a
# restart with squash = "none") without, f server kill -9 + restart while the client stays
# mounted. Prints a PASS/FAIL summary; exits 1 if anything failed, 2 on setup errors.
#
# Env: KCLIENT (default /work/shared/kclient/kclient.sh), E2E_TARGET_DIR (cargo target dir for
# the build, default /work/target-e2e), SLUICE_LOG (server log level, default info).
set -uo pipefail
. "$(dirname "$0")/lib.sh"

# Everything runs inside main(), called on the script's last line: bash reads a script while it
# runs it, so editing this file during a run would otherwise execute whatever lands at the old
# byte offset.
main() {

KCLIENT=${KCLIENT:-/work/shared/kclient/kclient.sh}
NC="" BIN="" SIZE_MB=1024 SCENARIOS="a b c d e f" KEEP=0 LOGLEVEL=${SLUICE_LOG:-info}
while [ $# -gt 0 ]; do
  case "$1" in
    --nconnect) NC=$2; shift 2;;
    --bin) BIN=$2; shift 2;;
    --size-mb) SIZE_MB=$2; shift 2;;
    --scenarios) SCENARIOS=$2; shift 2;;
    --keep) KEEP=1; shift;;
    --debug) LOGLEVEL=debug; shift;;
    -h|--help) sed -n '2,16p' "$0"; exit 0;;
    *) die "unknown option $1";;
  esac
done
[ "$NC" = 1 ] && NC=""
[ "$(id -u)" = 0 ] || die "must run as root (network namespace, QEMU)"
[ -x "$KCLIENT" ] || die "kclient not found at $KCLIENT (set KCLIENT=)"
MODE="nconnect=${NC:-1}"

kc_prepare

WORK=$(mktemp -d /tmp/sluice-e2e-kc.XXXXXX)
DATA=$WORK/data CHAN=$WORK/chan SLOG=$WORK/server.log
mkdir -p "$DATA" "$CHAN"
KPID="" WPID="" FAILED=0 RESULTS=()

server_pid() { kc_server_pid; }
# start_server [CONFIG]: start sluice (same data dir every time), wait until it listens
start_server() { kc_start_server ${1:+--config "$1"}; }
# stop_server [KILL]: SIGTERM (or SIGKILL) the server and wait until it is gone
stop_server() { kc_stop_server "$@"; }

cleanup() {
  [ -n "$WPID" ] && kill "$WPID" 2>/dev/null
  [ -n "$KPID" ] && kill -0 "$KPID" 2>/dev/null && { kill "$KPID"; wait "$KPID" 2>/dev/null; }   # kclient kills its qemu
  stop_server
  if [ "$KEEP" = 1 ] || [ "$FAILED" != 0 ]; then
    rm -rf "$DATA"
    log "logs kept in $WORK (server.log, *.out)"
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
trap 'log interrupted; FAILED=interrupted; exit 130' INT TERM

# --- guest-side helpers (busybox sh in the VM; /bin/date is GNU date, for %N) -----------------
PRELUDE='
ns() { /bin/date +%s%N; }
fail() { echo "CHECK_FAIL: $*"; exit 1; }
ok() { echo "ok: $*"; }
dropc() { sync; echo 3 > /proc/sys/vm/drop_caches; }
'

# kc NAME [kclient options] -- SCRIPT : run SCRIPT in a fresh VM with the share at /mnt.
# Output goes to $WORK/NAME.out; returns kclient's status (the script's own, or 9x).
kc() {
  local name=$1; shift
  local opts=() script
  while [ "$1" != "--" ]; do opts+=("$1"); shift; done; shift
  script=$1
  "$KCLIENT" run --vers 3 --mountport 0 --mount-opts port=0 ${NC:+--nconnect "$NC"} "${opts[@]}" \
    -- "$PRELUDE$script" >"$WORK/$name.out" 2>&1 &
  KPID=$!
  wait "$KPID"; local rc=$?
  KPID=""
  return $rc
}

val() { kc_val "$@"; }
# record ID DESCRIPTION RC SECONDS DETAIL
record() { kc_record "$@"; }

scenario_a() {   # 1 GiB write + read, sha256, MB/s
  local t rc
  t=$(now_ns)
  kc a --mem $((SIZE_MB + 1536)) --timeout 1500 -- "SIZE=$SIZE_MB"'
mkdir -p /mnt/a && cd /mnt/a || fail "mkdir"
dd if=/dev/urandom of=/dev/shm/src bs=1M count=$SIZE 2>/dev/null || fail "generate source in /dev/shm"
src=$(sha256sum /dev/shm/src | cut -d" " -f1)
t0=$(ns); dd if=/dev/shm/src of=big bs=1M conv=fsync 2>/dev/null || fail "dd write"; t1=$(ns)
echo WRITE_MS=$(( (t1 - t0) / 1000000 )) WRITE_MBPS=$(( SIZE * 1048576 * 1000 / (t1 - t0) ))
rm -f /dev/shm/src
sz=$(stat -c %s big); [ "$sz" = $((SIZE * 1048576)) ] || fail "size $sz"
dropc
t0=$(ns); dd if=big of=/dev/null bs=1M 2>/dev/null || fail "dd read"; t1=$(ns)
echo READ_MS=$(( (t1 - t0) / 1000000 )) READ_MBPS=$(( SIZE * 1048576 * 1000 / (t1 - t0) ))
dropc
rd=$(sha256sum big | cut -d" " -f1)
[ "$src" = "$rd" ] || fail "sha256 mismatch: source $src, read back $rd"
ok "sha256 $rd"
rm big || fail "rm big"
cd /mnt && rmdir a || fail "rmdir"
grep -E "^device .* /mnt |xprt:" /proc/self/mountstats
echo SCENARIO_OK'
  rc=$?
  grep -q SCENARIO_OK "$WORK/a.out" || rc=${rc/#0/1}
  W=$(val WRITE_MBPS a) R=$(val READ_MBPS a)
  record a "write+read ${SIZE_MB} MiB, sha256" $rc $(( ($(now_ns) - t) / 1000000000 )) \
    "write ${W:-?} MB/s ($(val WRITE_MS a) ms), read ${R:-?} MB/s ($(val READ_MS a) ms), $(grep -c 'xprt:' "$WORK/a.out") TCP conns"
}

scenario_b() {   # 1000 small files
  local t rc
  t=$(now_ns)
  kc b --timeout 600 -- '
mkdir -p /mnt/b && cd /mnt/b || fail "mkdir"
t0=$(ns); i=1; while [ $i -le 1000 ]; do echo "content $i" > f$i || fail "create f$i"; i=$((i+1)); done; t1=$(ns)
echo CREATE_MS=$(( (t1 - t0) / 1000000 ))
dropc
t0=$(ns); n=$(ls | wc -l); t1=$(ns)
[ "$n" = 1000 ] || fail "ls | wc -l = $n"
echo LIST_MS=$(( (t1 - t0) / 1000000 ))
n=$(ls -l | grep -c "^-"); [ "$n" = 1000 ] || fail "ls -l regular files = $n"
n=$(ls | sort -u | wc -l); [ "$n" = 1000 ] || fail "distinct names = $n"
for i in 1 2 3 17 128 500 999 1000; do
  c=$(cat f$i); [ "$c" = "content $i" ] || fail "f$i contains [$c]"
done
ok "1000 files listed, sample contents right"
t0=$(ns); i=1; while [ $i -le 1000 ]; do rm f$i || fail "rm f$i"; i=$((i+1)); done; t1=$(ns)
echo REMOVE_MS=$(( (t1 - t0) / 1000000 ))
dropc
[ -z "$(ls -A)" ] || fail "directory not empty: $(ls -A | head)"
cd /mnt && rmdir b || fail "rmdir b"
[ ! -e /mnt/b ] || fail "b still exists"
echo SCENARIO_OK'
  rc=$?
  grep -q SCENARIO_OK "$WORK/b.out" || rc=${rc/#0/1}
  record b "1000 small files create/list/read/remove" $rc $(( ($(now_ns) - t) / 1000000000 )) \
    "create $(val CREATE_MS b) ms, ls $(val LIST_MS b) ms, rm $(val REMOVE_MS b) ms"
}

scenario_c() {   # directory tree rename
  local t rc
  t=$(now_ns)
  kc c --timeout 300 -- '
mkdir -p /mnt/c && cd /mnt/c || fail "mkdir"
mkdir -p a/b/c || fail "mkdir -p a/b/c"
echo 1 > a/f1; echo 2 > a/b/f2; echo 3 > a/b/c/f3; ln -s ../f1 a/b/l1
mv a z || fail "mv a z"
check_tree() {
  [ ! -e a ] || fail "a still exists"
  [ "$(cat z/f1)" = 1 ] && [ "$(cat z/b/f2)" = 2 ] && [ "$(cat z/b/c/f3)" = 3 ] || fail "contents under z"
  [ "$(cat z/b/l1)" = 1 ] || fail "symlink inside renamed tree"
  t=$(cd z && find . | sort | tr "\n" " ")
  [ "$t" = ". ./b ./b/c ./b/c/f3 ./b/f2 ./b/l1 ./f1 " ] || fail "tree under z: $t"
}
check_tree; dropc; check_tree
ok "mv a z (tree)"
[ "$(stat -c %h z)" = 3 ] || echo "note: nlink of z = $(stat -c %h z) (expected 3)"
mkdir d1 d2
echo x > d1/file; mv d1/file d2/moved || fail "mv across dirs"
[ ! -e d1/file ] && [ "$(cat d2/moved)" = x ] || fail "file rename across dirs"
mv z/b d2/bb || fail "mv dir across dirs"
[ ! -e z/b ] && [ "$(cat d2/bb/c/f3)" = 3 ] && [ "$(cat d2/bb/f2)" = 2 ] || fail "dir rename across dirs"
echo old > d2/t; echo new > d1/s; mv d1/s d2/t || fail "mv over existing"
[ ! -e d1/s ] && [ "$(cat d2/t)" = new ] || fail "rename over existing file"
mkdir d1/empty; mv d1/empty d2/bb/c/ || fail "mv dir into nested dir"
if mv d2 d2/bb/c/ 2>/dev/null; then fail "moved a dir into its own subtree"; fi
dropc
[ "$(ls d1 | wc -l)" = 0 ] || fail "d1 not empty: $(ls d1)"
t=$(cd d2 && find . | sort | tr "\n" " ")
[ "$t" = ". ./bb ./bb/c ./bb/c/empty ./bb/c/f3 ./bb/f2 ./bb/l1 ./moved ./t " ] || fail "tree under d2: $t"
[ -L d2/bb/l1 ] && [ "$(readlink d2/bb/l1)" = ../f1 ] || fail "symlink lost"   # now dangling: d2/f1 does not exist
ok "renames across directories"
cd /mnt && rm -rf c || fail "rm -rf c"
[ ! -e /mnt/c ] || fail "c still exists"
echo SCENARIO_OK'
  rc=$?
  grep -q SCENARIO_OK "$WORK/c.out" || rc=${rc/#0/1}
  record c "rename directory tree / across dirs" $rc $(( ($(now_ns) - t) / 1000000000 )) ""
}

scenario_d() {   # hard + symbolic links
  local t rc
  t=$(now_ns)
  kc d --timeout 300 -- '
mkdir -p /mnt/d && cd /mnt/d || fail "mkdir"
echo hello > orig
ln orig hard || fail "ln"
ln -s orig sym || fail "ln -s"
ln -s /does/not/exist abs || fail "ln -s abs"
check() {
  [ "$(stat -c %h orig)" = 2 ] && [ "$(stat -c %h hard)" = 2 ] || fail "link count $(stat -c %h orig)/$(stat -c %h hard)"
  [ "$(stat -c %i orig)" = "$(stat -c %i hard)" ] || fail "inode numbers differ"
  [ "$(readlink sym)" = orig ] || fail "readlink sym = $(readlink sym)"
  [ "$(readlink abs)" = /does/not/exist ] || fail "readlink abs"
  [ -L sym ] && [ -L abs ] && [ ! -L hard ] || fail "file types"
  [ "$(cat hard)" = hello ] && [ "$(cat sym)" = hello ] || fail "content through links"
}
check; dropc; check
ok "links"
echo more >> hard
dropc
[ "$(cat orig | wc -l)" = 2 ] && [ "$(tail -1 sym)" = more ] || fail "append through hard link not visible"
rm orig || fail "rm orig"
dropc
[ ! -e orig ] || fail "orig still there"
[ "$(stat -c %h hard)" = 1 ] || fail "link count after rm = $(stat -c %h hard)"
[ "$(head -1 hard)" = hello ] || fail "content after rm of other name"
[ -L sym ] && [ ! -e sym ] || fail "sym should dangle"
ln hard again && [ "$(stat -c %h hard)" = 2 ] || fail "re-link"
ok "rm of one name keeps the other"
if ln /mnt/d /mnt/dirlink 2>/dev/null; then fail "hard link to a directory succeeded"; fi
cd /mnt && rm -rf d || fail "rm -rf d"
echo SCENARIO_OK'
  rc=$?
  grep -q SCENARIO_OK "$WORK/d.out" || rc=${rc/#0/1}
  record d "hard and symbolic links" $rc $(( ($(now_ns) - t) / 1000000000 )) ""
}

scenario_e1() {  # root squash (default config)
  local t rc
  t=$(now_ns)
  kc e1 --timeout 300 -- '
mkdir -p /mnt/e && cd /mnt/e || fail "mkdir"
[ "$(stat -c %u:%g /mnt/e)" = 65534:65534 ] || fail "dir made by root is owned by $(stat -c %u:%g /mnt/e)"
echo data > own || fail "create"
ls -ln own
[ "$(stat -c %u:%g own)" = 65534:65534 ] || fail "file made by root is owned by $(stat -c %u:%g own), want 65534:65534"
ok "root squashed to 65534"
if chown 1234 own 2>/tmp/err; then fail "chown 1234 succeeded under root squash"; fi
grep -qi "not permitted" /tmp/err || fail "chown error is not EPERM: $(cat /tmp/err)"
if chown 0:0 own 2>/dev/null; then fail "chown 0:0 succeeded under root squash"; fi
[ "$(stat -c %u:%g own)" = 65534:65534 ] || fail "owner changed to $(stat -c %u:%g own)"
ok "chown refused: $(cat /tmp/err)"
chmod 600 own || fail "chmod on own (squashed) file"
dropc
[ "$(stat -c %a own)" = 600 ] || fail "mode after chmod = $(stat -c %a own)"
[ "$(cat own)" = data ] || fail "read own file"
ok "chmod 600 on own file"
echo SCENARIO_OK'
  rc=$?
  grep -q SCENARIO_OK "$WORK/e1.out" || rc=${rc/#0/1}
  record e1 "root squash: owner 65534, chown EPERM, chmod" $rc $(( ($(now_ns) - t) / 1000000000 )) ""
}

scenario_e2() {  # squash = "none" (server restarted with a config)
  local t rc
  t=$(now_ns)
  kc e2 --timeout 300 -- '
cd /mnt/e || fail "cd /mnt/e (made in e1, before the restart)"
[ "$(stat -c %a own)" = 600 ] && [ "$(cat own)" = data ] || fail "e1 state lost across restart"
echo r > rootfile || fail "create"
[ "$(stat -c %u:%g rootfile)" = 0:0 ] || fail "root file owned by $(stat -c %u:%g rootfile), want 0:0"
chown 1234:1234 own || fail "chown 1234:1234"
ls -ln own
dropc
[ "$(stat -c %u:%g own)" = 1234:1234 ] || fail "owner after chown = $(stat -c %u:%g own)"
chown 4321 rootfile && chgrp 77 rootfile || fail "chown/chgrp rootfile"
chmod 4755 rootfile || fail "chmod 4755"
dropc
[ "$(stat -c %u:%g:%a rootfile)" = 4321:77:4755 ] || fail "rootfile = $(stat -c %u:%g:%a rootfile)"
ls -ln
ok "no squash: chown works"
cd /mnt && rm -rf e || fail "rm -rf e"
echo SCENARIO_OK'
  rc=$?
  grep -q SCENARIO_OK "$WORK/e2.out" || rc=${rc/#0/1}
  record e2 "squash=none: chown 1234:1234 works" $rc $(( ($(now_ns) - t) / 1000000000 )) ""
}

# watcher for f: wait for the VM's request, kill -9 the server, start it again, tell the VM
restart_watcher() {
  local i
  for i in $(seq 6000); do [ -e "$CHAN/restart-request" ] && break; sleep 0.1; done
  [ -e "$CHAN/restart-request" ] || { echo "watcher: no request" >"$CHAN/restart-done"; return; }
  kc_kill_restart start_server >"$CHAN/restart-done.tmp"
  mv "$CHAN/restart-done.tmp" "$CHAN/restart-done"   # the VM waits for this name
}

scenario_f() {   # kill -9 + restart while mounted
  local t rc
  rm -f "$CHAN"/restart-*
  t=$(now_ns)
  restart_watcher 2>>"$SLOG" &   # (bash reports the SIGKILLed job on stderr)
  WPID=$!
  kc f --hostdir "$CHAN" -- '
mkdir -p /mnt/f && cd /mnt/f || fail "mkdir"
dd if=/dev/urandom of=/dev/shm/d bs=1M count=64 2>/dev/null
dd if=/dev/urandom of=/dev/shm/u bs=1M count=32 2>/dev/null
dd if=/dev/urandom of=/dev/shm/i bs=1M count=128 2>/dev/null
dsha=$(sha256sum /dev/shm/d | cut -d" " -f1); usha=$(sha256sum /dev/shm/u | cut -d" " -f1)
isha=$(sha256sum /dev/shm/i | cut -d" " -f1)
dd if=/dev/shm/d of=durable bs=1M conv=fsync 2>/dev/null || fail "write durable"
echo before-restart > openfile
exec 3< openfile
exec 4>> appendfile; echo line1 >&4
# written without fsync: start writeback early so the server holds UNSTABLE data when it dies
echo 1048576 > /proc/sys/vm/dirty_background_bytes
dd if=/dev/shm/u of=unstable bs=1M 2>/dev/null || fail "write unstable"
sleep 2
( dd if=/dev/shm/i of=inflight bs=1M conv=fsync 2>/dev/null; echo $? > /dev/shm/inflight.rc ) &
bg=$!
sleep 1
echo "requesting restart at $(/bin/date +%T.%N)"
touch /host/restart-request
i=0; while [ ! -e /host/restart-done ]; do sleep 0.2; i=$((i+1)); [ $i -lt 900 ] || fail "no restart-done after 180 s"; done
echo "host: $(cat /host/restart-done)"
grep -q "^restarted" /host/restart-done || fail "host could not restart the server"
t0=$(ns); wait $bg; t1=$(ns)
[ "$(cat /dev/shm/inflight.rc)" = 0 ] || fail "dd in flight during the restart failed"
echo INFLIGHT_WAIT_MS=$(( (t1 - t0) / 1000000 ))
echo after-restart >&4; exec 4>&- || fail "close appendfile"
sync
dropc
got=$(cat <&3) || fail "read through fd opened before the restart"
[ "$got" = before-restart ] || fail "read through old fd: [$got]"
exec 3<&-
ok "fd opened before the restart still works"
[ "$(sha256sum durable | cut -d" " -f1)" = "$dsha" ] || fail "durable (fsynced) file differs after restart"
ok "fsynced file intact"
[ "$(sha256sum unstable | cut -d" " -f1)" = "$usha" ] || fail "unstable (not fsynced) file differs after restart"
ok "unfsynced file intact (client resent after verifier change or had committed)"
[ "$(sha256sum inflight | cut -d" " -f1)" = "$isha" ] || fail "file written during the restart differs"
ok "file written during the kill intact"
[ "$(cat appendfile | tr "\n" " ")" = "line1 after-restart " ] || fail "appendfile: $(cat appendfile)"
echo new > post-restart && dropc && [ "$(cat post-restart)" = new ] || fail "create after restart"
n=$(ls | wc -l); [ "$n" = 6 ] || fail "ls shows $n entries: $(ls)"
grep -E "^device .* /mnt |xprt:" /proc/self/mountstats
cd /mnt && rm -rf f || fail "rm -rf f"
echo SCENARIO_OK'
  rc=$?
  kill "$WPID" 2>/dev/null; wait "$WPID" 2>/dev/null; WPID=""
  grep -q SCENARIO_OK "$WORK/f.out" || rc=${rc/#0/1}
  [ -e "$CHAN/restart-done" ] || rc=${rc/#0/1}
  # the watcher ran in a subshell: make sure a server is running for the next scenario
  alive "$(server_pid)" || { log "no server after f; starting one"; start_server || return 1; }
  record f "kill -9 + restart while mounted" $rc $(( ($(now_ns) - t) / 1000000000 )) \
    "$(cat "$CHAN/restart-done" 2>/dev/null | sed 's/, new pid.*//'); in-flight dd waited $(val INFLIGHT_WAIT_MS f) ms"
}

# -------------------------------------------------------------------------------------- main ---
T0=$(now_ns)
log "sluice $BIN ($("$BIN" --version)), $MODE, size ${SIZE_MB} MiB, scenarios: $SCENARIOS, work dir $WORK"
start_server || die "cannot start sluice"

has() { case " $SCENARIOS " in *" $1 "*) return 0;; esac; return 1; }
has a && scenario_a
has b && scenario_b
has c && scenario_c
has d && scenario_d
has e && scenario_e1
has f && scenario_f
if has e; then
  cat >"$WORK/squash-none.toml" <<'EOF'
[[export]]
path = "/"
[[export.clients]]
match = "*"
access = "rw"
squash = "none"
EOF
  stop_server TERM
  if start_server "$WORK/squash-none.toml"; then scenario_e2
  else echo "server did not start with squash-none.toml" >"$WORK/e2.out"; record e2 "squash=none" 1 0 "server start failed"; fi
fi
stop_server TERM

# server health: panics are failures; warnings and errors are shown
sed -i 's/\x1b\[[0-9;]*m//g' "$SLOG"
touch "$WORK/health.out"
if grep -n 'panicked' "$SLOG" >"$WORK/health.out"; then
  record health "server log: no panics" 1 0 "$(wc -l <"$WORK/health.out") panic line(s)"
else
  record health "server log: no panics" 0 0 "$(grep -c ' WARN ' "$SLOG") WARN, $(grep -c ' ERROR ' "$SLOG") ERROR lines"
fi
local notable
notable=$(notable_lines "$SLOG")
[ -z "$notable" ] || { log "server WARN/ERROR lines (first 15):"; echo "$notable" | head -15 >&2; }

TOTAL=$(( ($(now_ns) - T0) / 1000000000 ))
echo
echo "=== kclient NFSv3 e2e summary: $MODE, ${SIZE_MB} MiB, ${TOTAL}s total ==="
printf '%s\n' "${RESULTS[@]}"
[ -n "${W:-}" ] && echo "THROUGHPUT $MODE: write ${W} MB/s, read ${R} MB/s (${SIZE_MB} MiB, TCG VM, MB = 10^6 B)"
if [ "$FAILED" = 0 ]; then echo "kclient-v3 $MODE: ALL PASS"; exit 0
else echo "kclient-v3 $MODE: $FAILED FAILED (logs in $WORK)"; exit 1; fi
}

main "$@"; exit $?
