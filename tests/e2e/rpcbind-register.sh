#!/usr/bin/env bash
# Sluice registers NFS and MOUNT with a running rpcbind (portmap = "auto"), and removes the
# registrations when it stops. Debian's rpcbind runs in a private network namespace with a
# private /run (as ../shared/peers/ganesha.sh does), so nothing touches the host's rpcbind.
# Usage: tests/e2e/rpcbind-register.sh [--bin PATH]
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=""
[ "${1:-}" = "--bin" ] && bin=$2
if [ -z "$bin" ]; then cargo build -q -p nfs-server --bin sluice; bin=$(pwd)/target/debug/sluice; fi
command -v rpcbind >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rpcbind >/dev/null
NS=sluice-rpcb-$$
S=$(mktemp -d)
cleanup() {
  for f in "$S"/*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true; done
  sleep 0.2; ip netns del "$NS" 2>/dev/null || true; rm -rf "$S"
}
trap cleanup EXIT
ip netns add "$NS"
ip netns exec "$NS" ip link set lo up
mkdir -p "$S/run/rpcbind"; chown _rpc "$S/run/rpcbind" 2>/dev/null || true
# One mount namespace for rpcbind, sluice and rpcinfo, so they share the private /run.
setsid ip netns exec "$NS" bash -c '
  S="$1"; bin="$2"
  mount --bind "$S/run" /run
  rpcbind -f & echo $! > "$S/rpcbind.pid"
  for i in $(seq 50); do [ -S /run/rpcbind.sock ] && break; sleep 0.1; done
  "$bin" serve --memory --data-dir "$S/data" --listen 127.0.0.1:2049 --mount-listen 127.0.0.1:20048 \
      >"$S/sluice.log" 2>&1 & echo $! > "$S/sluice.pid"
  for i in $(seq 100); do rpcinfo -p 127.0.0.1 | grep -q "100003" && break; sleep 0.1; done
  rpcinfo -p 127.0.0.1 > "$S/registered.txt"
  kill -TERM "$(cat "$S/sluice.pid")"; wait "$(cat "$S/sluice.pid")" || true
  rpcinfo -p 127.0.0.1 > "$S/after-stop.txt"
' _ "$S" "$bin" </dev/null
fail=0
grep -Eq '100003 +3 +tcp +2049' "$S/registered.txt" || { echo "FAIL: NFS v3 not registered"; fail=1; }
grep -Eq '100005 +3 +tcp +20048' "$S/registered.txt" || { echo "FAIL: MOUNT v3 not registered"; fail=1; }
grep -q 'registered NFS and MOUNT with the host' "$S/sluice.log" || { echo "FAIL: no registration log line"; fail=1; }
grep -Eq '10000[35] ' "$S/after-stop.txt" && { echo "FAIL: registrations left after stop"; fail=1; }
cat "$S/registered.txt"
[ $fail = 0 ] || { cat "$S/sluice.log"; exit 1; }
echo "rpcbind-register: PASS (registered while running, unregistered at stop)"
