#!/usr/bin/env bash
# End-to-end test of Sluice's NFSv4.1 server with the real Linux kernel client (Debian 6.1
# kernel in a QEMU VM, /work/shared/kclient). The server runs in network namespace "kc" (host
# side 10.77.0.1); the VM mounts it with `vers=4.1` on port 2049 (no MOUNT protocol, no rpcbind).
#
#   tests/e2e/kclient-v41.sh [--nconnect N] [--bin PATH] [--size-mb N] [--scenarios "a b"]
#                            [--files N] [--keep] [--debug]
#
# Scenarios (one VM boot each): a write + read of SIZE MiB (default 64) with sha256 and MB/s,
# b create/list/read/remove of FILES (--files, default 1000) small files plus mkdir/rename/
# symlink/rmdir and a rename over a file that is held open; r kill -9 and
# restart of the server while the client holds files open: the client must reclaim them in the
# grace period (checked in the server log), from client records persisted across the restart;
# t session trunking: a second address is added to the netns bridge, both addresses form one
# mount target, and a second mount through it with max_connect=2 must join the first mount's
# session (one superblock, two transports that both carry requests, server connections on both
# addresses). Prints a PASS/FAIL summary; exits 1 if anything failed, 2 on setup errors.
#
# Env: KCLIENT (default /work/shared/kclient/kclient.sh), E2E_TARGET_DIR (cargo target dir for
# the build), SLUICE_LOG (server log level, default info).
set -uo pipefail
. "$(dirname "$0")/lib.sh"

# Everything runs inside main(), called on the script's last line (bash reads a script while it
# runs it).
main() {

KCLIENT=${KCLIENT:-/work/shared/kclient/kclient.sh}
NC="" BIN="" SIZE_MB=64 FILES=1000 SCENARIOS="a b r t" KEEP=0 LOGLEVEL=${SLUICE_LOG:-info}
while [ $# -gt 0 ]; do
  case "$1" in
    --nconnect) NC=$2; shift 2;;
    --bin) BIN=$2; shift 2;;
    --size-mb) SIZE_MB=$2; shift 2;;
    --files) FILES=$2; shift 2;;
    --scenarios) SCENARIOS=$2; shift 2;;
    --keep) KEEP=1; shift;;
    --debug) LOGLEVEL=debug; shift;;
    -h|--help) sed -n '2,14p' "$0"; exit 0;;
    *) die "unknown option $1";;
  esac
done
[ "$NC" = 1 ] && NC=""
[ "$(id -u)" = 0 ] || die "must run as root (network namespace, QEMU)"
[ -x "$KCLIENT" ] || die "kclient not found at $KCLIENT (set KCLIENT=)"
MODE="vers=4.1 nconnect=${NC:-1}"

kc_prepare

WORK=$(mktemp -d /tmp/sluice-e2e-kc41.XXXXXX)
DATA=$WORK/data CHAN=$WORK/chan SLOG=$WORK/server.log
mkdir -p "$DATA" "$CHAN"
KPID="" WPID="" FAILED=0 RESULTS=()

server_pid() { kc_server_pid; }
# start_server: sluice with $WORK/sluice.toml (its targets listen on more addresses); ready
# once 2049 listens
start_server() { KC_WAIT_PORTS=2049 kc_start_server --config "$WORK/sluice.toml"; }
# stop_server [KILL]: SIGTERM (or SIGKILL) the server and wait until it is gone
stop_server() { kc_stop_server "$@"; }

cleanup() {
  [ -n "$WPID" ] && kill "$WPID" 2>/dev/null
  [ -n "$KPID" ] && kill -0 "$KPID" 2>/dev/null && { kill "$KPID"; wait "$KPID" 2>/dev/null; }
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

PRELUDE='
ns() { /bin/date +%s%N; }
fail() { echo "CHECK_FAIL: $*"; exit 1; }
ok() { echo "ok: $*"; }
dropc() { sync; echo 3 > /proc/sys/vm/drop_caches; }
'

# kc NAME [kclient options] -- SCRIPT : run SCRIPT in a fresh VM with the share at /mnt.
kc() {
  local name=$1; shift
  local opts=() script
  while [ "$1" != "--" ]; do opts+=("$1"); shift; done; shift
  script=$1
  "$KCLIENT" run --vers 4.1 ${NC:+--nconnect "$NC"} "${opts[@]}" \
    -- "$PRELUDE$script" >"$WORK/$name.out" 2>&1 &
  KPID=$!
  wait "$KPID"; local rc=$?
  KPID=""
  return $rc
}

val() { kc_val "$@"; }
# record ID DESCRIPTION RC SECONDS DETAIL
record() { kc_record "$@"; }

scenario_a() {   # write + read, sha256, MB/s
  local t rc
  t=$(now_ns)
  kc a --mem $((SIZE_MB + 1536)) --timeout 1500 -- "SIZE=$SIZE_MB"'
grep -E " /mnt " /proc/mounts
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
    "write ${W:-?} MB/s ($(val WRITE_MS a) ms), read ${R:-?} MB/s ($(val READ_MS a) ms)"
}

scenario_b() {   # FILES small files, a few directory operations, rename over an open file
  local t rc
  t=$(now_ns)
  kc b -- "N=$FILES"'
mkdir -p /mnt/b && cd /mnt/b || fail "mkdir"
t0=$(ns); i=1; while [ $i -le $N ]; do echo "content $i" > f$i || fail "create f$i"; i=$((i+1)); done; t1=$(ns)
echo CREATE_MS=$(( (t1 - t0) / 1000000 ))
dropc
t0=$(ns); n=$(ls | wc -l); t1=$(ns)
[ "$n" = $N ] || fail "ls | wc -l = $n"
echo LIST_MS=$(( (t1 - t0) / 1000000 ))
n=$(ls -l | grep -c "^-"); [ "$n" = $N ] || fail "ls -l regular files = $n"
for i in 1 2 3 17 50 99 $N; do
  c=$(cat f$i); [ "$c" = "content $i" ] || fail "f$i contains [$c]"
done
ok "$N files listed, sample contents right"
# rename over a file another descriptor holds open: the open file keeps its data
echo old > victim; echo new > incoming
exec 3<victim
mv incoming victim || fail "rename over an open file"
[ "$(cat victim)" = new ] || fail "the renamed file reads [$(cat victim)]"
dropc
[ "$(cat <&3)" = old ] || fail "the open file lost its data when renamed over"
exec 3<&-
i=0; while ls -A | grep -q "^\.nfs" && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
! ls -A | grep -q "^\.nfs" || fail "silly-rename file left after close: $(ls -A | grep "^\.nfs")"
rm victim
ok "rename over an open file: old data readable through the open descriptor, nothing left after close"
mkdir d && mv f1 d/g && [ "$(cat d/g)" = "content 1" ] || fail "mkdir + rename into it"
ln -s d/g s && [ "$(cat s)" = "content 1" ] || fail "symlink"
ln f2 h && [ "$(stat -c %h f2)" = 2 ] || fail "hard link"
chmod 600 f3 && [ "$(stat -c %a f3)" = 600 ] || fail "chmod"
rm d/g s h && rmdir d || fail "rm/rmdir"
ok "mkdir, rename, symlink, link, chmod, rmdir"
t0=$(ns); i=2; while [ $i -le $N ]; do rm f$i || fail "rm f$i"; i=$((i+1)); done; t1=$(ns)
echo REMOVE_MS=$(( (t1 - t0) / 1000000 ))
dropc
[ -z "$(ls -A)" ] || fail "directory not empty: $(ls -A | head)"
cd /mnt && rmdir b || fail "rmdir b"
[ ! -e /mnt/b ] || fail "b still exists"
echo SCENARIO_OK'
  rc=$?
  grep -q SCENARIO_OK "$WORK/b.out" || rc=${rc/#0/1}
  record b "$FILES small files, rename over open file" $rc $(( ($(now_ns) - t) / 1000000000 )) \
    "create $(val CREATE_MS b) ms, ls $(val LIST_MS b) ms, rm $(val REMOVE_MS b) ms"
}

# watcher for r: wait for the VM's request, kill -9 the server, start it again, tell the VM
restart_watcher() {
  local i
  for i in $(seq 6000); do [ -e "$CHAN/restart-request" ] && break; sleep 0.1; done
  [ -e "$CHAN/restart-request" ] || { echo "watcher: no request" >"$CHAN/restart-done"; return; }
  kc_kill_restart start_server >"$CHAN/restart-done.tmp"
  mv "$CHAN/restart-done.tmp" "$CHAN/restart-done"   # the VM waits for this name
}

scenario_r() {   # kill -9 + restart with files open: reclaim in grace
  local t rc
  rm -f "$CHAN"/restart-*
  t=$(now_ns)
  restart_watcher 2>>"$SLOG" &
  WPID=$!
  kc r --hostdir "$CHAN" -- '
mkdir -p /mnt/r && cd /mnt/r || fail "mkdir"
echo before-restart > openfile
dd if=/dev/urandom of=/dev/shm/d bs=1M count=8 2>/dev/null
dsha=$(sha256sum /dev/shm/d | cut -d" " -f1)
dd if=/dev/shm/d of=durable bs=1M conv=fsync 2>/dev/null || fail "write durable"
exec 3< openfile
exec 4>> appendfile; echo line1 >&4
sync
touch /host/restart-request
i=0; while [ ! -e /host/restart-done ]; do sleep 0.2; i=$((i+1)); [ $i -lt 900 ] || fail "no restart-done after 180 s"; done
echo "host: $(cat /host/restart-done)"
grep -q "^restarted" /host/restart-done || fail "host could not restart the server"
t0=$(ns)
echo after-restart >&4; exec 4>&- || fail "close appendfile"
t1=$(ns)
echo RECOVER_MS=$(( (t1 - t0) / 1000000 ))
dropc
got=$(cat <&3) || fail "read through fd opened before the restart"
[ "$got" = before-restart ] || fail "read through old fd: [$got]"
exec 3<&-
ok "fds opened before the restart still work"
[ "$(cat appendfile | tr "\n" " ")" = "line1 after-restart " ] || fail "appendfile: $(cat appendfile)"
[ "$(sha256sum durable | cut -d" " -f1)" = "$dsha" ] || fail "durable file differs after restart"
echo new > post-restart && dropc && [ "$(cat post-restart)" = new ] || fail "create after restart"
cd /mnt && rm -rf r || fail "rm -rf r"
dmesg | grep -iE "nfs|reclaim" | tail -5
echo SCENARIO_OK'
  rc=$?
  kill "$WPID" 2>/dev/null; wait "$WPID" 2>/dev/null; WPID=""
  grep -q SCENARIO_OK "$WORK/r.out" || rc=${rc/#0/1}
  alive "$(server_pid)" || { log "no server after r; starting one"; start_server || return 1; }
  # The client must have reclaimed in grace, not fallen back to new opens after NO_GRACE.
  local reclaimed
  reclaimed=$(grep -o "grace period over reclaimed=[0-9]*" "$SLOG" | tail -1 | sed 's/.*=//')
  if [ "${reclaimed:-0}" -lt 1 ]; then
    log "r: no reclaim in the server log (grace line: $(grep -o 'grace period.*' "$SLOG" | tail -2 | tr '\n' ' '))"
    rc=1
  fi
  record r "kill -9 + restart with files open (reclaim)" $rc $(( ($(now_ns) - t) / 1000000000 )) \
    "$(sed "s/, new pid [0-9]*//" "$CHAN/restart-done" 2>/dev/null); first write after it took $(val RECOVER_MS r) ms; ${reclaimed:-0} reclaims"
}

# Scenario t's second address; both addresses form one mount target.
TRUNK_ADDR=10.77.0.3
cat >"$WORK/sluice.toml" <<EOF2
[[target]]
name = "trunked"
listen = ["10.77.0.1:2049", "$TRUNK_ADDR:2049"]
tier = "unlimited"
EOF2

# watcher for t: when the VM has traffic on both addresses, list the server's connections
trunk_watcher() {
  local i
  for i in $(seq 1800); do [ -e "$CHAN/trunk-ready" ] && break; sleep 0.1; done
  ip netns exec kc ss -Htn state established '( sport = :2049 )' >"$CHAN/trunk-conns.tmp" 2>&1
  mv "$CHAN/trunk-conns.tmp" "$CHAN/trunk-conns"
}

scenario_t() {   # session trunking: a second mount through another address of the target
  local t rc conns
  rm -f "$CHAN"/trunk-*
  t=$(now_ns)
  ip netns exec kc ip addr add "$TRUNK_ADDR/24" dev kcbr0 2>/dev/null
  trunk_watcher 2>>"$SLOG" &
  WPID=$!
  kc t --hostdir "$CHAN" --mount-opts max_connect=2 -- "TRUNK=$TRUNK_ADDR"'
mkdir -p /mnt2 /mnt/t
mount.nfs $TRUNK:/ /mnt2 -o vers=4.1,max_connect=2 || fail "mount through $TRUNK"
grep " /mnt2 " /proc/mounts
dd if=/dev/urandom of=/dev/shm/t bs=1M count=32 2>/dev/null
cp /dev/shm/t /mnt2/t/data || fail "write through the second mount"
dropc
cmp /dev/shm/t /mnt/t/data || fail "read through the first mount differs"
n=$(awk "/ mounted on \/mnt with/{m=1;next} /^device/{m=0} m && /xprt:/" /proc/self/mountstats | wc -l)
echo XPRTS=$n
awk "/ mounted on \/mnt with/{m=1;next} /^device/{m=0} m && /xprt:/" /proc/self/mountstats
[ "$n" -ge 2 ] || fail "the client did not add a transport for $TRUNK (xprts=$n)"
busy=$(awk "/ mounted on \/mnt with/{m=1;next} /^device/{m=0} m && /xprt:/ && \$8 > 0" /proc/self/mountstats | wc -l)
[ "$busy" -ge 2 ] || fail "only $busy transports carried requests"
touch /host/trunk-ready
i=0; while [ ! -e /host/trunk-conns ]; do sleep 0.1; i=$((i+1)); [ $i -lt 300 ] || fail "host never listed connections"; done
umount /mnt2 || fail "umount /mnt2"
rm -rf /mnt/t
ok "one client, two addresses, one session: both transports carried requests"
echo SCENARIO_OK'
  rc=$?
  kill "$WPID" 2>/dev/null; wait "$WPID" 2>/dev/null; WPID=""
  ip netns exec kc ip addr del "$TRUNK_ADDR/24" dev kcbr0 2>/dev/null
  grep -q SCENARIO_OK "$WORK/t.out" || rc=${rc/#0/1}
  conns=$(awk '{print $3}' "$CHAN/trunk-conns" 2>/dev/null | sort -u | tr '\n' ' ')
  case "$conns" in *"10.77.0.1:2049"*"$TRUNK_ADDR:2049"*|*"$TRUNK_ADDR:2049"*"10.77.0.1:2049"*) ;;
    *) log "t: server connections were on: ${conns:-none}"; rc=1;; esac
  record t "session trunking over 2 addresses of a target" $rc $(( ($(now_ns) - t) / 1000000000 )) \
    "client transports $(val XPRTS t); server local addresses: $conns"
}

T0=$(now_ns)
log "sluice $BIN ($("$BIN" --version)), $MODE, size ${SIZE_MB} MiB, scenarios: $SCENARIOS, work dir $WORK"
start_server || die "cannot start sluice"

has() { case " $SCENARIOS " in *" $1 "*) return 0;; esac; return 1; }
has a && scenario_a
has b && scenario_b
has r && scenario_r
has t && scenario_t
stop_server

sed -i 's/\x1b\[[0-9;]*m//g' "$SLOG"
touch "$WORK/health.out"
if grep -n 'panicked' "$SLOG" >"$WORK/health.out"; then
  record health "server log: no panics" 1 0 "$(wc -l <"$WORK/health.out") panic line(s)"
else
  record health "server log: no panics" 0 0 "$(grep -c ' WARN ' "$SLOG") WARN, $(grep -c ' ERROR ' "$SLOG") ERROR lines"
fi

TOTAL=$(( ($(now_ns) - T0) / 1000000000 ))
echo
echo "=== kclient NFSv4.1 e2e summary: $MODE, ${SIZE_MB} MiB, ${TOTAL}s total ==="
printf '%s\n' "${RESULTS[@]}"
[ -n "${W:-}" ] && echo "THROUGHPUT $MODE: write ${W} MB/s, read ${R} MB/s (${SIZE_MB} MiB, TCG VM, MB = 10^6 B)"
if [ "$FAILED" = 0 ]; then echo "kclient-v41 $MODE: ALL PASS"; exit 0
else echo "kclient-v41 $MODE: $FAILED FAILED (logs in $WORK)"; exit 1; fi
}

main "$@"; exit $?
