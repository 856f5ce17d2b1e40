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

# alive PID: some thread of the process has not exited yet. kill -0 succeeds on zombies; and
# after a kill -9 the main thread shows Z while the other threads are still exiting (an
# io_uring or disk wait can hold them), with the process's sockets and files still open, so
# a restart in that window finds its ports and databases busy.
alive() {
  local st
  [ -n "$1" ] || return 1
  st=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1) || return 1
  [ -n "$st" ] || return 1
  [ "$st" != Z ] && [ "$st" != X ] && return 0
  [ "$(ls "/proc/$1/task" 2>/dev/null | wc -l)" -gt 1 ]
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

# ---------------------------------------------------------------------------------------------
# Kernel-client scripts (kclient-v3.sh, kclient-v41.sh, nlm-kclient.sh): one server at a time in
# the shared netns "kc" of ../shared/kclient. The caller sets KCLIENT and BIN (empty: build),
# then after kc_prepare sets WORK, DATA, SLOG and LOGLEVEL.
# ---------------------------------------------------------------------------------------------

# kc_prepare: take the lock that keeps kernel-client runs apart (the server needs ports
# 111/2049/20048 in netns kc), set up kclient and its network, resolve BIN (building it if
# empty), and refuse to start if those ports are taken.
kc_prepare() {
  local p busy
  exec 9>/tmp/sluice-e2e-kc.lock
  if ! flock -n 9; then
    log "another e2e run holds /tmp/sluice-e2e-kc.lock; waiting (max 30 min)"
    flock -w 1800 9 || die "lock not acquired"
  fi
  "$KCLIENT" setup >&2 || die "kclient setup failed"
  "$KCLIENT" net up >/dev/null 2>&1 || die "kclient net up failed"
  [ -n "$BIN" ] || BIN=$(build_sluice)
  [ -x "$BIN" ] || die "no binary at $BIN"
  BIN=$(readlink -f "$BIN")
  for p in 111 2049 20048; do
    if busy=$(ip netns exec kc ss -Hltnp "sport = :$p" | grep .); then
      die "port $p in netns kc is already in use: $busy (ganesha? try: $KCLIENT ganesha stop)"
    fi
  done
}

kc_server_pid() { cat "$WORK/server.pid" 2>/dev/null; }

# kc_start_server [SERVE ARGS...]: start sluice in netns kc (same data dir every time) and wait
# until it listens on every port of KC_WAIT_PORTS (default: 2049 20048 111).
kc_start_server() {
  local pid i p up
  echo "=== $(date +%T.%N) start ===" >>"$SLOG"   # nlm-kclient.sh splits the log at this exact line
  rm -f "$WORK/server.pid"
  # A wrapper subshell owns the server process, so that bash's "Killed" job report after a
  # kill -9 lands in the server log rather than on the terminal.
  ( ip netns exec kc env SLUICE_LOG="$LOGLEVEL" NO_COLOR=1 "$BIN" serve --data-dir "$DATA" --portmap serve \
      "$@" >>"$SLOG" 2>&1 </dev/null &
    echo $! >"$WORK/server.pid.tmp"; mv "$WORK/server.pid.tmp" "$WORK/server.pid"; wait $! ) 2>>"$SLOG" &
  for i in $(seq 100); do [ -s "$WORK/server.pid" ] && break; sleep 0.02; done
  pid=$(kc_server_pid)
  for i in $(seq 200); do
    alive "$pid" || { tail -20 "$SLOG" >&2; log "sluice exited at startup"; return 1; }
    up=1
    for p in ${KC_WAIT_PORTS:-2049 20048 111}; do
      ip netns exec kc ss -Hltn "sport = :$p" | grep -q . || { up=0; break; }
    done
    [ $up = 1 ] && return 0
    sleep 0.05
  done
  log "sluice did not listen on ${KC_WAIT_PORTS:-2049 20048 111} within 10 s"; return 1
}

# kc_stop_server [TERM|KILL]: signal the server and wait until it is gone (SIGKILL after 15 s).
kc_stop_server() {
  local pid sig=${1:-TERM} i
  pid=$(kc_server_pid); [ -n "$pid" ] || return 0
  if alive "$pid"; then
    echo "=== $(date +%T.%N) stop SIG$sig pid $pid ===" >>"$SLOG"
    kill -"$sig" "$pid" 2>/dev/null
    for i in $(seq 150); do alive "$pid" || break; sleep 0.1; done
    if alive "$pid"; then log "sluice ignored SIG$sig for 15 s; SIGKILL"; kill -KILL "$pid"; sleep 0.5; fi
  fi
  { wait "$pid"; } 2>/dev/null
  rm -f "$WORK/server.pid"
}

# kc_kill_restart START_FUNCTION: kill -9 the server, start it again with START_FUNCTION and
# print, for the VM waiting on it, "restarted after kill -9 in N ms, new pid P" or "restart
# failed ..." with the server log since the failed start. After a failure it starts the server
# once more, so that the client can unmount instead of hanging on a dead server until the VM's
# timeout; the scenario fails either way.
kc_kill_restart() {
  local t why again=failed
  t=$(now_ns)
  kc_stop_server KILL
  if "$1"; then
    echo "restarted after kill -9 in $(ms_since "$t") ms, new pid $(kc_server_pid)"
    return
  fi
  why=$(awk '/^=== .* start ===$/ { n = 0 } { last[n++] = $0 }
             END { for (i = (n > 8 ? n - 8 : 0); i < n; i++) print last[i] }' "$SLOG" | tr '\n' '|')
  kc_stop_server KILL
  "$1" && again=worked
  echo "restart failed after $(ms_since "$t") ms (a second start $again); server log since the start: $why"
}

# kc_val KEY NAME: the last KEY=value that VM run NAME printed.
kc_val() { grep -o "$1=[^ ]*" "$WORK/$2.out" | tail -1 | cut -d= -f2; }

# kc_record ID DESCRIPTION RC SECONDS DETAIL: a result line; FAIL when RC != 0 or the VM printed
# CHECK_FAIL, with the VM's output and the server log's tail. Appends to RESULTS, counts FAILED.
kc_record() {
  local st=PASS
  if [ "$3" != 0 ] || grep -q '^CHECK_FAIL' "$WORK/$1.out" 2>/dev/null; then
    st=FAIL; FAILED=$((FAILED + 1))
  fi
  RESULTS+=("$(printf '%-4s %-3s %-42s %4ss  %s' "$st" "$1" "$2" "$4" "$5")")
  log "$st $1 $2 (${4}s) $5"
  if [ "$st" = FAIL ]; then
    log "--- $1 output (rc=$3$(kc_rc_meaning "$3")), last 40 lines:"
    tail -40 "$WORK/$1.out" >&2
    log "--- server log, last 20 lines:"
    tail -20 "$SLOG" >&2
    e2e_digest "$(basename "$0") ${MODE:-} $1 $2: rc=$3$(kc_rc_meaning "$3") after ${4}s" \
      "$(tail -12 "$WORK/$1.out" 2>/dev/null)" \
      "$(notable_lines "$SLOG" | tail -6)"
  fi
}

# notable_lines LOG: a server log's WARN and ERROR lines, but for the warning every run with the
# default export gives (read-write to every client).
notable_lines() {
  grep -E ' (WARN|ERROR) ' "$1" 2>/dev/null | grep -v 'read-write to EVERY client' || true
}

# kc_rc_meaning RC: what kclient's exit status RC says, for failure reports.
kc_rc_meaning() {
  case "$1" in
    90) echo " (VM boot failed or timed out before the mount)";;
    91) echo " (mount failed)";;
    92) echo " (timeout while the command ran)";;
    93) echo " (unmount failed)";;
    94) echo " (the in-VM server died)";;
  esac
}

# e2e_digest HEADLINE [BLOCK...]: adds a failure to the digest that tests/e2e/run-all.sh prints
# as its last lines (CI shows only the end of a run's output). No-op unless E2E_DIGEST is set.
e2e_digest() {
  [ -n "${E2E_DIGEST:-}" ] || return 0
  {
    echo "* $1"
    shift
    local b
    for b in "$@"; do [ -n "$b" ] && printf '%s\n' "$b" | cut -c1-200 | sed 's/^/    /'; done
  } >>"$E2E_DIGEST"
  return 0
}

# ---------------------------------------------------------------------------------------------
# Cluster scripts (cluster.sh, kclient-cluster.sh): a cluster that deploy/local/cluster.sh ($CL)
# keeps in $CDIR, scratch in $WORK, results in RESULTS and FAILED, KEEP=1 to leave it up.
# ---------------------------------------------------------------------------------------------

# cluster_record NAME RC DETAIL: a result line (PASS when RC is 0); counts FAILED.
cluster_record() {
  local st=PASS
  [ "$2" = 0 ] || { st=FAIL; FAILED=$((FAILED + 1)); }
  RESULTS+=("$(printf '%-4s %-44s %s' "$st" "$1" "$3")")
  log "$st $1 $3"
  [ "$st" = PASS ] || e2e_digest "$(basename "$0") $1: rc=$2 $3"
}

# cluster_cleanup: the exit trap. Brings the cluster down (unless KEEP=1) and keeps the nodes'
# logs and the scratch directory when something failed.
cluster_cleanup() {
  if [ "${KEEP:-0}" = 1 ]; then
    log "cluster kept up (down: $CL down --dir $CDIR); logs in $CDIR/n*/server.log"
    return
  fi
  if [ "$FAILED" != 0 ]; then
    local d lines
    mkdir -p "$WORK/logs"
    for d in "$CDIR"/n*/; do cp "$d/server.log" "$WORK/logs/$(basename "$d").log" 2>/dev/null; done
    # CI keeps only what is printed: the last warnings and errors of every node.
    for d in "$CDIR"/n*/; do
      lines=$(grep -E ' (WARN|ERROR) ' "$d/server.log" 2>/dev/null | tail -15 | cut -c1-400)
      echo "--- $(basename "$d"): last WARN/ERROR lines of server.log"
      [ -z "$lines" ] || printf '%s\n' "$lines"
      e2e_digest "$(basename "$0") $(basename "$d"): last WARN/ERROR lines" \
        "$(printf '%s\n' "$lines" | tail -3)"
    done
  fi
  "$CL" down --dir "$CDIR" >/dev/null 2>&1 || true
  if [ "$FAILED" = 0 ]; then rm -rf "$WORK"; else log "logs kept in $WORK"; fi
}
