#!/usr/bin/env bash
# Fuzzes the admin API against docs/openapi.json with Schemathesis (property-based, from the
# schema): a `sluice serve --memory` on free loopback ports (portmap off, admin API on a free
# port, one config-file target), every operation called with the bearer token, a bounded number
# of examples per operation. Fails on any 5xx, on a status code the document does not list,
# and on a response (body, content type, headers) that does not conform to the document.
#
# Usage: tests/e2e/schemathesis.sh [extra schemathesis run options...]
# Environment:
#   SLUICE_BIN            sluice binary to test (default: build release into E2E_TARGET_DIR)
#   SCHEMATHESIS_VENV     venv holding schemathesis (default /tmp/sluice-schemathesis-venv;
#                         created with `pip install schemathesis` if missing)
#   SCHEMATHESIS_EXAMPLES examples per operation (default 30)
#   SCHEMATHESIS_SEED     random seed (default: random; printed for reproduction)
#   SCHEMATHESIS_CHECKS   checks (default not_a_server_error,status_code_conformance,
#                         content_type_conformance,response_headers_conformance,
#                         response_schema_conformance,ignored_auth; add unsupported_method
#                         to also require an Allow header on 405)
#   KEEP_TMP=1            keep the scratch dir (server log, reports) after the run
# Exit: 0 if every check passed, 1 if Schemathesis found failures, 2 on setup errors.
set -euo pipefail

# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

VENV=${SCHEMATHESIS_VENV:-/tmp/sluice-schemathesis-venv}
EXAMPLES=${SCHEMATHESIS_EXAMPLES:-30}
SEED=${SCHEMATHESIS_SEED:-$(( (RANDOM << 15) | RANDOM ))}
CHECKS=${SCHEMATHESIS_CHECKS:-not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,ignored_auth}
SCHEMA="$REPO_ROOT/docs/openapi.json"

[ -f "$SCHEMA" ] || die "$SCHEMA missing"

# -- schemathesis --------------------------------------------------------------------------------
if [ ! -x "$VENV/bin/schemathesis" ]; then
  log "installing schemathesis into $VENV"
  python3 -m venv "$VENV" || die "python3 -m venv $VENV failed"
  "$VENV/bin/pip" install --quiet --upgrade pip >&2 || die "pip upgrade failed"
  "$VENV/bin/pip" install --quiet schemathesis >&2 || die "pip install schemathesis failed"
fi
ST="$VENV/bin/schemathesis"
log "$("$ST" --version)"

# -- the server ----------------------------------------------------------------------------------
BIN=${SLUICE_BIN:-}
[ -n "$BIN" ] || BIN=$(build_sluice)
[ -x "$BIN" ] || die "no sluice binary at $BIN"

TMP=$(mktemp -d /tmp/sluice-schemathesis.XXXXXX)
SERVER_PID=
cleanup() {
  local rc=$?
  stop_pid "$SERVER_PID" sluice
  if [ "${KEEP_TMP:-0}" = 1 ] || [ "$rc" -ne 0 ]; then
    log "scratch dir kept: $TMP (server log: $TMP/sluice.log)"
  else
    rm -rf "$TMP"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

NFS_PORT=$(free_port)
MOUNT_PORT=$(free_port)
ADMIN_PORT=$(free_port)
METRICS_PORT=$(free_port)
TARGET_PORT=$(free_port)
cat >"$TMP/sluice.toml" <<EOF
[server]
admin_listen = "127.0.0.1:$ADMIN_PORT"
metrics_listen = "127.0.0.1:$METRICS_PORT"

[[target]]
name = "cfg"
listen = ["127.0.0.1:$TARGET_PORT"]
tier = "1g"
EOF

log "starting $BIN serve --memory (admin API on 127.0.0.1:$ADMIN_PORT)"
SLUICE_LOG=info NO_COLOR=1 "$BIN" serve --memory \
  --data-dir "$TMP/data" \
  --listen "127.0.0.1:$NFS_PORT" \
  --mount-listen "127.0.0.1:$MOUNT_PORT" \
  --portmap off \
  --config "$TMP/sluice.toml" \
  </dev/null >"$TMP/sluice.log" 2>&1 &
SERVER_PID=$!

for _ in $(seq 150); do
  grep -q "sluice ready" "$TMP/sluice.log" && break
  alive "$SERVER_PID" || { cat "$TMP/sluice.log" >&2; die "sluice exited before ready"; }
  sleep 0.1
done
grep -q "sluice ready" "$TMP/sluice.log" || { cat "$TMP/sluice.log" >&2; die "sluice not ready in 15 s"; }
[ -s "$TMP/data/admin.token" ] || die "no $TMP/data/admin.token"
TOKEN=$(tr -d '[:space:]' <"$TMP/data/admin.token")

# -- the run -------------------------------------------------------------------------------------
log "schemathesis: $EXAMPLES examples per operation, seed $SEED, checks $CHECKS"
set +e
"$ST" run "$SCHEMA" \
  --url "http://127.0.0.1:$ADMIN_PORT" \
  --header "Authorization: Bearer $TOKEN" \
  --checks "$CHECKS" \
  --max-examples "$EXAMPLES" \
  --seed "$SEED" \
  --workers 1 \
  --request-timeout 15 \
  --no-color \
  --report junit,ndjson \
  --report-dir "$TMP/report" \
  "$@"
RC=$?
set -e

if ! alive "$SERVER_PID"; then
  log "sluice died during the run:"
  tail -50 "$TMP/sluice.log" >&2
  [ "$RC" -ne 0 ] || RC=1
fi
if grep -qi "panicked" "$TMP/sluice.log"; then
  log "sluice panicked during the run:"
  grep -i -A5 "panicked" "$TMP/sluice.log" >&2
  [ "$RC" -ne 0 ] || RC=1
fi

if [ "$RC" -eq 0 ]; then
  log "SUMMARY: schemathesis passed (seed $SEED, $EXAMPLES examples per operation)"
else
  log "SUMMARY: schemathesis FAILED with exit $RC (seed $SEED; reproduce with SCHEMATHESIS_SEED=$SEED)"
  RC=1
fi
exit "$RC"
