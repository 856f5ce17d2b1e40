#!/usr/bin/env bash
# End-to-end test of NFS over RDMA (RPC-over-RDMA v1, port 20049) with the real Linux kernel
# client. The host kernel has no RDMA, so everything runs inside one QEMU VM
# (/work/shared/kclient): soft-RoCE (rdma_rxe) on the VM's eth0, Sluice started inside the VM
# with `--rdma-listen 0.0.0.0:20049`, and the kernel client mounting it with
# `proto=rdma,port=20049` over rxe loopback (v3 MOUNT still goes over TCP).
#
#   tests/e2e/kclient-rdma.sh [--vers "3 4.1"] [--size-mb N] [--tier-mb N] [--bin PATH] [--keep]
#
# Per version (one VM boot each): write SIZE MiB (default 128) of random data with dd, sha256 it,
# drop the client's caches, read it back and compare (READ payloads arrive by RDMA Write into
# the client's write chunk, WRITE payloads are pulled by RDMA Read from its read chunks); then
# 50 small files and a directory listing large enough to need a reply chunk. Under TCG
# emulation rxe moves tens of MB/s, so sizes stay small. The server's per-connection summary
# must show that WRITE data came by RDMA Read, READ data went by RDMA Write straight from the
# store's registered buffers (zero_copy_bytes), some reply used a
# reply chunk, and no RDMA_ERROR was sent. Then (--tier-mb, default 10; 0 skips) a v4.1 run
# through a mount target with that tier on the VM's address: RDMA connections are paced like
# TCP ones. The tier sits well under what the emulated VM moves unpaced (12-25 MB/s measured),
# so the pacing, not the emulation, sets the rate: at 20 MB/s the VM alone fell under the
# check's 70 % floor (13.8 MB/s on 2026-12-07, with 22.8 MiB/s unpaced in the same run). Exits 1 if anything failed, 2 on setup errors.
set -uo pipefail
. "$(dirname "$0")/lib.sh"

main() {
KCLIENT=${KCLIENT:-/work/shared/kclient/kclient.sh}
VERS="3 4.1" SIZE_MB=128 BIN="" KEEP=() TIER_MB=10
while [ $# -gt 0 ]; do
  case "$1" in
    --vers) VERS=$2; shift 2;;
    --size-mb) SIZE_MB=$2; shift 2;;
    --bin) BIN=$2; shift 2;;
    --keep) KEEP=(--keep); shift;;
    --tier-mb) TIER_MB=$2; shift 2;;
    -h|--help) sed -n '2,15p' "$0"; exit 0;;
    *) die "unknown option $1";;
  esac
done
[ "$(id -u)" = 0 ] || die "must run as root (network namespace, QEMU)"
[ -x "$KCLIENT" ] || die "kclient not found at $KCLIENT (set KCLIENT=)"
exec 9>/tmp/sluice-e2e-kc.lock
if ! flock -n 9; then
  log "another e2e run holds /tmp/sluice-e2e-kc.lock; waiting (max 30 min)"
  flock -w 1800 9 || die "lock not acquired"
fi
"$KCLIENT" setup >&2 || die "kclient setup failed"
[ -n "$BIN" ] || BIN=$(build_sluice)
BIN=$(readlink -f "$BIN")
[ -x "$BIN" ] || die "no binary at $BIN"

# The client side, run in /mnt. Prints "rdma-e2e: ..." lines; exits non-zero on a mismatch.
# shellcheck disable=SC2016
CMD='set -e
grep -q "proto=rdma" /proc/mounts || { echo "rdma-e2e: not an RDMA mount"; cat /proc/mounts; exit 1; }
dd if=/dev/urandom of=/tmp/src bs=1M count='"$SIZE_MB"' 2>/dev/null
want=$(sha256sum /tmp/src | cut -d" " -f1)
up() { cut -d" " -f1 /proc/uptime; }
t0=$(up)
dd if=/tmp/src of=big bs=1M conv=fsync 2>/dev/null
t1=$(up)
echo 3 > /proc/sys/vm/drop_caches
got=$(sha256sum big | cut -d" " -f1)
t2=$(up)
awk -v s='"$SIZE_MB"' -v a="$t0" -v b="$t1" -v c="$t2" "BEGIN { printf \"rdma-e2e: write %.1f MiB/s, read %.1f MiB/s\\n\", s / (b - a + 0.001), s / (c - b + 0.001) }"
[ "$want" = "$got" ] || { echo "rdma-e2e: sha256 mismatch: $want != $got"; exit 1; }
echo "rdma-e2e: sha256 ok"
# a 5 KiB unaligned write and read (inline + read chunk, short reply)
head -c 5001 /tmp/src > /tmp/small; cp /tmp/small small; echo 3 > /proc/sys/vm/drop_caches
cmp /tmp/small small
mkdir d
i=0; while [ $i -lt 50 ]; do echo "file $i" > d/file-with-a-longish-name-$i; i=$((i+1)); done
echo 3 > /proc/sys/vm/drop_caches
n=$(ls -l d | grep -c file-with)
[ "$n" = 50 ] || { echo "rdma-e2e: listed $n of 50 files"; exit 1; }
[ "$(cat d/file-with-a-longish-name-49)" = "file 49" ]
rm -r d big small
echo "rdma-e2e: small files and listing ok"
grep -A3 "xprt:.*rdma" /proc/self/mountstats | head -4 || true'

FAILED=0
for v in $VERS; do
  log "NFS over RDMA, vers=$v, $SIZE_MB MiB"
  out=$("$KCLIENT" run --rdma --vers "$v" --timeout 900 --keep --add "$BIN" \
      --vm-server "mkdir -p /tmp/sluice && SLUICE_LOG=info NO_COLOR=1 exec $BIN serve --data-dir /tmp/sluice --portmap serve --rdma-listen 0.0.0.0:20049" \
      -- "$CMD" 2>&1)
  rc=$?
  echo "$out" | grep -E "rdma-e2e|vmserver|ERROR|error" | sed "s/^/  [v$v] /" >&2
  # The server's own account of the connection: the chunks must really have been used.
  runid=$(echo "$out" | sed -n 's/^kclient: run \([0-9-]*\) slot.*/\1/p' | tail -1)
  rundir=${KC_HOME:-$HOME/.cache/kclient}/runs/$runid
  stats=$(grep -ho "NFS over RDMA connection closed: .*" "$rundir/server.log" 2>/dev/null | tail -1)
  echo "  [v$v] server: ${stats:-no connection summary}" >&2
  num() { echo "$stats" | grep -o "$1=[0-9]*" | cut -d= -f2; }
  size=$((SIZE_MB << 20))
  chunks_ok=1
  [ "$(num read_chunk_bytes)" -ge "$size" ] 2>/dev/null || { log "WRITE data did not come by RDMA Read"; chunks_ok=0; }
  [ "$(num write_chunk_bytes)" -ge "$size" ] 2>/dev/null || { log "READ data did not go by RDMA Write"; chunks_ok=0; }
  [ "$(num zero_copy_bytes)" -ge "$size" ] 2>/dev/null || { log "READ data was copied, not written from the store's registered buffers"; chunks_ok=0; }
  [ "$(num reply_chunk_replies)" -gt 0 ] 2>/dev/null || { log "no reply went through a reply chunk"; chunks_ok=0; }
  [ "$(num rdma_errors)" = 0 ] || { log "the server sent RDMA_ERRORs"; chunks_ok=0; }
  if [ $rc = 0 ] && [ $chunks_ok = 1 ] && echo "$out" | grep -q "rdma-e2e: small files and listing ok"; then
    echo "PASS rdma vers=$v"
    [ ${#KEEP[@]} -gt 0 ] || rm -rf "$rundir"
  else
    echo "$out" | tail -40 >&2
    echo "FAIL rdma vers=$v (exit $rc)"
    FAILED=1
  fi
done
# A mount target with a tier on the VM's address paces RDMA connections too (matched by IP:
# RDMA has its own port). v4.1, dd of 48 MiB each way against a TIER_MB MB/s tier.
if [ "$TIER_MB" -gt 0 ]; then
  log "NFS over RDMA through a ${TIER_MB} MB/s mount target, vers=4.1"
  # shellcheck disable=SC2016
  TCMD='set -e
up() { cut -d" " -f1 /proc/uptime; }
t0=$(up); dd if=/dev/zero of=tiered bs=1M count=48 conv=fsync 2>/dev/null; t1=$(up)
echo 3 > /proc/sys/vm/drop_caches
dd if=tiered of=/dev/null bs=1M 2>/dev/null; t2=$(up)
rm tiered
awk -v a="$t0" -v b="$t1" -v c="$t2" "BEGIN { printf \"rdma-tier: write %.1f read %.1f\\n\", 48 * 1.048576 / (b - a), 48 * 1.048576 / (c - b) }"'
  SRV='mkdir -p /tmp/sluice && ip=$(ip -4 -o addr show eth0 | awk "{print \$4}" | cut -d/ -f1) && printf "[[target]]\nname = \"rdma\"\nlisten = [\"%s:2049\"]\ntier = { read = \"%sMB/s\", write = \"%sMB/s\" }\n" "$ip" '"$TIER_MB $TIER_MB"' > /tmp/tier.toml && SLUICE_LOG=info NO_COLOR=1 exec '"$BIN"' serve --config /tmp/tier.toml --data-dir /tmp/sluice --portmap serve --rdma-listen 0.0.0.0:20049'
  out=$("$KCLIENT" run --rdma --vers 4.1 --timeout 600 "${KEEP[@]}" --add "$BIN" --vm-server "$SRV" -- "$TCMD" 2>&1)
  rates=$(echo "$out" | grep -o "rdma-tier: .*")
  echo "  [tier] ${rates:-no measurement}" >&2
  w=$(echo "$rates" | awk '{print $3}') r=$(echo "$rates" | awk '{print $5}')
  if [ -n "$w" ] && python3 -c "import sys; w,r,t=$w,$r,$TIER_MB; sys.exit(0 if 0.7*t <= w <= 1.1*t and 0.7*t <= r <= 1.1*t else 1)"; then
    echo "PASS rdma tier ${TIER_MB} MB/s: write $w, read $r MB/s"
  else
    echo "$out" | tail -30 >&2
    echo "FAIL rdma tier ${TIER_MB} MB/s: write ${w:-?}, read ${r:-?} MB/s (allowed 70-110 %)"
    FAILED=1
  fi
fi
[ $FAILED = 0 ] && echo "ALL PASS" || echo "SOME FAILED"
return $FAILED
}
main "$@"; exit $?
