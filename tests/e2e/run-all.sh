#!/usr/bin/env bash
# CI entry point: builds sluice once (release), then runs
#   1. tests/e2e/libnfs.sh                      (userspace libnfs clients on 127.0.0.1), twice:
#      metadata straight to meta.redb, and through the metadata log (restarted after kill -9)
#   2. tests/e2e/cluster.sh                     (three nodes in network namespaces, libnfs clients:
#      any node serves any file, kill -9 of the leader, restart, an isolated minority)
#   2b. tests/e2e/failover.sh                   (a floating mount target: its owner killed, then
#      cut off; another node takes the address over, nothing acknowledged lost)
#   3. tests/e2e/kclient-v3.sh                  (kernel NFSv3 client, nconnect=1)
#   4. tests/e2e/kclient-v3.sh --nconnect 16    (kernel NFSv3 client, nconnect=16)
# and prints every summary at the end. Exits non-zero if any part failed.
#
#   tests/e2e/run-all.sh [--bin PATH] [--size-mb N] [--skip-libnfs] [--skip-kclient]
set -uo pipefail
. "$(dirname "$0")/lib.sh"

# Everything runs inside main(), called on the script's last line: bash reads a script while it
# runs it, so editing this file during a run would otherwise execute whatever lands at the old
# byte offset.
main() {

BIN="" SIZE=1024 DO_LIBNFS=1 DO_KC=1
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) BIN=$2; shift 2;;
    --size-mb) SIZE=$2; shift 2;;
    --skip-libnfs) DO_LIBNFS=0; shift;;
    --skip-kclient) DO_KC=0; shift;;
    -h|--help) sed -n '2,8p' "$0"; exit 0;;
    *) die "unknown option $1";;
  esac
done
[ -n "$BIN" ] || BIN=$(build_sluice)
[ -x "$BIN" ] || die "no binary at $BIN"

OUT=$(mktemp -d /tmp/sluice-e2e-all.XXXXXX)
# Every part adds its failures here (lib.sh e2e_digest); printed last, where CI's tail shows it.
export E2E_DIGEST=$OUT/digest.txt
: >"$E2E_DIGEST"
T0=$(now_ns) RC=0 PARTS=()
part() {   # part NAME CMD...: run, tee output, remember the status
  local name=$1 t rc; shift
  t=$(now_ns)
  log "=== $name: $* ==="
  "$@" 2>&1 | tee "$OUT/$name.log"; rc=${PIPESTATUS[0]}
  PARTS+=("$(printf '%-20s rc=%-3s %5ss' "$name" "$rc" $(( ($(now_ns) - t) / 1000000000 )))")
  [ "$rc" = 0 ] || { RC=1; e2e_digest "part $name failed (rc=$rc); its last lines:" "$(tail -5 "$OUT/$name.log")"; }
}

if [ "$DO_LIBNFS" = 1 ]; then
  part libnfs "$E2E_DIR/libnfs.sh" --bin "$BIN" --crash
  part libnfs-local "$E2E_DIR/libnfs.sh" --bin "$BIN" --metadata local --size-mb 20 --files 100 --crash
  part cluster "$E2E_DIR/cluster.sh" --bin "$BIN"
  part failover "$E2E_DIR/failover.sh" --bin "$BIN"
fi
if [ "$DO_KC" = 1 ]; then
  part kclient-nc1 "$E2E_DIR/kclient-v3.sh" --bin "$BIN" --size-mb "$SIZE"
  part kclient-nc16 "$E2E_DIR/kclient-v3.sh" --bin "$BIN" --size-mb "$SIZE" --nconnect 16
fi

echo
echo "################ e2e summaries ################"
for f in "$OUT"/*.log; do
  sed -n '/^=== .*summary/,$p' "$f"
  echo
done
echo "parts:"
printf '  %s\n' "${PARTS[@]}"
echo "total $(( ($(now_ns) - T0) / 1000000000 ))s; full logs in $OUT"
if [ -s "$E2E_DIGEST" ]; then
  echo "failures (each with the last lines of its output and of its server's WARN/ERROR lines):"
  head -60 "$E2E_DIGEST"
fi
[ "$RC" = 0 ] && echo "run-all: ALL PASS" || echo "run-all: FAILURES"
exit $RC
}

main "$@"; exit $?
