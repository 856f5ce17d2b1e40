# Shared helpers for the Sluice end-to-end scripts (sourced, not run).
# shellcheck shell=bash

E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$E2E_DIR/../.." && pwd)
# Where the release binary is built: the workspace's own target dir unless told otherwise
# (E2E_TARGET_DIR, to keep parallel builds by other tools apart).
E2E_TARGET_DIR=${E2E_TARGET_DIR:-${CARGO_TARGET_DIR:-$REPO_ROOT/target}}

log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "ERROR: $*"; exit 2; }

# now in nanoseconds / milliseconds elapsed since $1 (ns)
now_ns() { date +%s%N; }
ms_since() { echo $(( ($(now_ns) - $1) / 1000000 )); }

# build_sluice: prints the path of a release sluice binary (builds it with cargo)
build_sluice() {
  log "building sluice (release) into $E2E_TARGET_DIR"
  (cd "$REPO_ROOT" && CARGO_TARGET_DIR="$E2E_TARGET_DIR" cargo build --release -p nfs-server --bin sluice >&2) \
    || die "cargo build failed"
  echo "$E2E_TARGET_DIR/release/sluice"
}

# free_port: an unused TCP port on 127.0.0.1 (asks the kernel)
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# alive PID: the process exists and is not a zombie (kill -0 succeeds on zombies)
alive() {
  local st
  st=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1) || return 1
  [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

# stop_pid PID [NAME]: SIGTERM, wait up to 10 s, then SIGKILL. Only the given pid.
stop_pid() {
  local pid=$1 name=${2:-process} i
  [ -n "$pid" ] || return 0
  alive "$pid" || { wait "$pid" 2>/dev/null; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 100); do alive "$pid" || break; sleep 0.1; done
  if alive "$pid"; then
    log "$name (pid $pid) ignored SIGTERM for 10 s; SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}
