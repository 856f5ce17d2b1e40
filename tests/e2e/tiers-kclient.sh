#!/usr/bin/env bash
# Bandwidth tiers with the real kernel client: sluice in netns kc with a mount target on the
# address the VM mounts (10.77.0.1) and a scaled tier; the VM writes and reads with dd and the
# measured rates must not exceed the tier (+10 % for measurement noise) and must reach at least
# 75 % of it (the client's own write-back bursts leave some credit unused under TCG; precise
# figures belong in bench/RESULTS.md). Also checks, from the server's own
# /metrics, that throttling sent no JUKEBOX.
#
# With --vers 4.1 the same over NFSv4.1: READs and WRITEs inside COMPOUNDs are paced alike, and
# NFS4ERR_DELAY is never sent either.
#
#   tests/e2e/tiers-kclient.sh [--bin PATH] [--rate-mb 20] [--size-mb 120] [--vers 3|4.1]
set -uo pipefail
. "$(dirname "$0")/lib.sh"

main() {
KCLIENT=${KCLIENT:-/work/shared/kclient/kclient.sh}
BIN="" RATE=20 SIZE=120 VERS=3
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) BIN=$2; shift 2;;
    --rate-mb) RATE=$2; shift 2;;
    --size-mb) SIZE=$2; shift 2;;
    --vers) VERS=$2; shift 2;;
    -h|--help) sed -n '2,10p' "$0"; exit 0;;
    *) die "unknown option $1";;
  esac
done
[ "$(id -u)" = 0 ] || die "must run as root (network namespace, QEMU)"
kc_prepare   # VM lock, kclient setup and network, the binary, free ports in netns kc

WORK=$(mktemp -d /tmp/sluice-e2e-tiers.XXXXXX)
trap 'stop_pid "$(cat "$WORK/pid" 2>/dev/null)" sluice; rm -rf "$WORK/data"' EXIT
cat >"$WORK/sluice.toml" <<EOF
[server]
metrics_listen = "127.0.0.1:9049"
admin_listen = "127.0.0.1:9050"

[[target]]
name = "vm"
listen = ["10.77.0.1:2049"]
tier = { read = "${RATE}MB/s", write = "${RATE}MB/s" }
EOF
ip netns exec kc "$BIN" serve --data-dir "$WORK/data" --portmap serve --config "$WORK/sluice.toml" \
  >"$WORK/server.log" 2>&1 </dev/null &
echo $! >"$WORK/pid"
for _ in $(seq 200); do
  ip netns exec kc ss -Hltn 'sport = :2049' | grep -q . && break
  sleep 0.05
done

# In the VM: timed write (with fsync) and cold read of SIZE MiB, printed as "write MBps" / "read MBps".
cmd='set -e
t0=$(/bin/date +%s%N); dd if=/dev/zero of=/mnt/f bs=1M count='"$SIZE"' conv=fsync 2>/dev/null; t1=$(/bin/date +%s%N)
echo "write $(( '"$SIZE"' * 1048576 * 1000 / ( (t1 - t0) / 1000000 ) / 1000000 ))"
echo 3 > /proc/sys/vm/drop_caches
t0=$(/bin/date +%s%N); dd if=/mnt/f of=/dev/null bs=1M 2>/dev/null; t1=$(/bin/date +%s%N)
echo "read $(( '"$SIZE"' * 1048576 * 1000 / ( (t1 - t0) / 1000000 ) / 1000000 ))"'
if [ "$VERS" = 3 ]; then
  out=$("$KCLIENT" --vers 3 --mountport 0 --mount-opts port=0 -- "$cmd" 2>&1)
else
  out=$("$KCLIENT" --vers "$VERS" -- "$cmd" 2>&1)
fi
echo "$out" | grep -E '^(write|read) ' >"$WORK/rates"
fail=0
for dir in write read; do
  got=$(awk -v d=$dir '$1==d {print $2}' "$WORK/rates")
  if [ -z "$got" ]; then
    echo "FAIL $dir: no measurement"; echo "$out" | tail -20; fail=1; continue
  fi
  lo=$(( RATE * 75 / 100 )) hi=$(( RATE * 110 / 100 ))
  if [ "$got" -ge "$lo" ] && [ "$got" -le "$hi" ]; then
    echo "PASS $dir: ${got} MB/s against a ${RATE} MB/s tier"
  else
    echo "FAIL $dir: ${got} MB/s against a ${RATE} MB/s tier (allowed ${lo}-${hi})"; fail=1
  fi
done
metrics=$(ip netns exec kc python3 -c 'import urllib.request;print(urllib.request.urlopen("http://127.0.0.1:9049/metrics").read().decode())' 2>/dev/null)
if [ -z "$metrics" ]; then
  echo "FAIL cannot read the server's /metrics"; fail=1
elif echo "$metrics" | grep -qE 'JUKEBOX|status="DELAY"'; then
  echo "FAIL the server answered JUKEBOX or NFS4ERR_DELAY"; fail=1
else
  echo "PASS no JUKEBOX or DELAY in the server's metrics; throttle delays recorded: $(echo "$metrics" | grep -c 'sluice_target_throttle_delay_seconds_count{target="vm"')"
fi
[ $fail = 0 ] && echo "tiers-kclient vers=$VERS: ALL PASS" || { tail -20 "$WORK/server.log"; echo "tiers-kclient vers=$VERS: FAILED"; }
exit $fail
}

main "$@"; exit $?
