#!/usr/bin/env bash
# End-to-end test of Sluice with userspace NFSv3 clients from libnfs (Debian's libnfs-utils:
# nfs-cp, nfs-cat, nfs-ls). Everything stays on 127.0.0.1: the server listens on two free
# loopback ports with portmap off, and every URL names both ports.
#
#   tests/e2e/libnfs.sh [--bin PATH] [--size-mb N] [--files N] [--metadata local|log]
#                       [--crash] [--keep]
#
# --metadata local runs the server on the direct path ([cluster] metadata; the default is log).
# Ends with a restart on the same data: every file must come back. --crash stops the server
# with kill -9 instead of SIGTERM before that restart.
# Exits non-zero if any check fails. Prints a PASS/FAIL summary.
set -uo pipefail
. "$(dirname "$0")/lib.sh"

# Everything runs inside main(), called on the script's last line: bash reads a script while it
# runs it, so editing this file during a run would otherwise execute whatever lands at the old
# byte offset.
main() {

BIN="" SIZE_MB=50 NFILES=300 KEEP=0 METADATA=log CRASH=0
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) BIN=$2; shift 2;;
    --size-mb) SIZE_MB=$2; shift 2;;
    --files) NFILES=$2; shift 2;;
    --metadata) METADATA=$2; shift 2;;
    --crash) CRASH=1; shift;;
    --keep) KEEP=1; shift;;
    -h|--help) sed -n '2,14p' "$0"; exit 0;;
    *) die "unknown option $1";;
  esac
done

if ! command -v nfs-cp >/dev/null || ! command -v nfs-ls >/dev/null || ! command -v nfs-cat >/dev/null; then
  log "libnfs-utils missing; installing"
  DEBIAN_FRONTEND=noninteractive apt-get install -y libnfs-utils >&2 || die "cannot install libnfs-utils"
fi
[ -n "$BIN" ] || BIN=$(build_sluice)
[ -x "$BIN" ] || die "no binary at $BIN"

WORK=$(mktemp -d /tmp/sluice-e2e-libnfs.XXXXXX)
SPID=""
RESULTS=()
FAILED=0
cleanup() {
  stop_pid "$SPID" sluice
  SPID=""
  if [ "$KEEP" = 1 ] || [ "$FAILED" != 0 ]; then
    rm -rf "$WORK/data" "$WORK/src" "$WORK/back"*
    log "logs kept in $WORK (server.log)"
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

NFSPORT=$(free_port); MNTPORT=$(free_port)
while [ "$MNTPORT" = "$NFSPORT" ]; do MNTPORT=$(free_port); done

# Two exports: "/" and "/many" (created at startup), no squashing: libnfs sends AUTH_UNIX with
# the caller's uid/gid (0 here), so files are created as root.
cat > "$WORK/sluice.toml" <<EOF
[cluster]
metadata = "$METADATA"

[[export]]
path = "/"
[[export.clients]]
match = "127.0.0.1"
access = "rw"
squash = "none"

[[export]]
path = "/many"
[[export.clients]]
match = "127.0.0.1"
access = "rw"
squash = "none"
EOF
"$BIN" check-config "$WORK/sluice.toml" >&2 || die "config rejected"

start_server() {
  log "starting sluice on 127.0.0.1:$NFSPORT (MOUNT $MNTPORT), data $WORK/data, metadata $METADATA"
  SLUICE_LOG=${SLUICE_LOG:-info} NO_COLOR=1 "$BIN" serve --config "$WORK/sluice.toml" --data-dir "$WORK/data" \
    --listen "127.0.0.1:$NFSPORT" --mount-listen "127.0.0.1:$MNTPORT" --portmap off \
    >>"$WORK/server.log" 2>&1 &
  SPID=$!
  for _ in $(seq 300); do
    if ss -Hltn "sport = :$NFSPORT" | grep -q . && ss -Hltn "sport = :$MNTPORT" | grep -q .; then return 0; fi
    alive "$SPID" || { cat "$WORK/server.log" >&2; die "sluice exited at startup"; }
    sleep 0.1
  done
  die "sluice did not listen within 30 s"
}
start_server

Q="nfsport=$NFSPORT&mountport=$MNTPORT&version=3"
# libnfs splits a file URL at its last '/': "nfs://H//f" mounts export "/" and opens "/f".
# ("nfs://H/f" would mount the empty export path "", which libnfs' own auto-traverse-mounts
# logic cannot handle, see README.)
url() { echo "nfs://127.0.0.1/$1?$Q"; }

T0=$(now_ns)
record() {  # record NAME RC DETAIL
  local st=PASS
  [ "$2" = 0 ] || { st=FAIL; FAILED=$((FAILED + 1)); }
  RESULTS+=("$(printf '%-4s %-34s %s' "$st" "$1" "$3")")
  log "$st $1 $3"
  [ "$st" = PASS ] || e2e_digest "libnfs $1: rc=$2 $3"
}

# 1. big file round trip
dd if=/dev/urandom of="$WORK/src" bs=1M count="$SIZE_MB" status=none
SRC_SHA=$(sha256sum "$WORK/src" | cut -d' ' -f1)
BYTES=$((SIZE_MB * 1048576))
t=$(now_ns); out=$(nfs-cp "$WORK/src" "$(url /big.bin)" 2>&1); rc=$?; ms=$(ms_since "$t")
echo "$out" >&2
record "nfs-cp local -> server (${SIZE_MB} MiB)" "$rc" "${ms} ms, $(( BYTES / (ms > 0 ? ms : 1) / 1000 )) MB/s"

t=$(now_ns); nfs-cp "$(url /big.bin)" "$WORK/back1" >&2; rc=$?; ms=$(ms_since "$t")
s=$(sha256sum "$WORK/back1" 2>/dev/null | cut -d' ' -f1)
[ "$rc" = 0 ] && [ "$s" = "$SRC_SHA" ] || rc=1
record "nfs-cp server -> local, sha256" "$rc" "${ms} ms, $(( BYTES / (ms > 0 ? ms : 1) / 1000 )) MB/s sha=${s:0:16}"

t=$(now_ns); s=$(nfs-cat "$(url /big.bin)" | sha256sum | cut -d' ' -f1); ms=$(ms_since "$t")
[ "$s" = "$SRC_SHA" ]; record "nfs-cat, sha256" $? "${ms} ms sha=${s:0:16} want=${SRC_SHA:0:16}"

# server -> server copy (read and write through the same client library)
nfs-cp "$(url /big.bin)" "$(url /big-copy.bin)" >&2; rc=$?
s=$(nfs-cat "$(url /big-copy.bin)" | sha256sum | cut -d' ' -f1)
[ "$rc" = 0 ] && [ "$s" = "$SRC_SHA" ] || rc=1
record "nfs-cp server -> server, sha256" "$rc" "sha=${s:0:16}"

# 2. nfs-ls shows the file with the right size
ls_out=$(nfs-ls "$(url /)" 2>&1); rc=$?
echo "$ls_out" | sed 's/^/  nfs-ls: /' >&2
line=$(echo "$ls_out" | awk '$NF == "big.bin"')
size=$(echo "$line" | awk '{print $5}')
[ "$rc" = 0 ] && [ "$size" = "$BYTES" ] || rc=1
record "nfs-ls: big.bin size" "$rc" "size=$size want=$BYTES"

# existing file: nfs-cp must refuse to overwrite (libnfs uses O_EXCL-like creat -> EXIST)
if nfs-cp "$WORK/src" "$(url /big.bin)" >/dev/null 2>&1; then rc=1; else rc=0; fi
record "nfs-cp onto existing file fails" "$rc" ""

# 3. a few hundred files in the second export, then list them
t=$(now_ns); rc=0
for i in $(seq "$NFILES"); do
  echo "file $i" > "$WORK/small"
  nfs-cp "$WORK/small" "nfs://127.0.0.1/many/f$i?$Q" >/dev/null 2>>"$WORK/errors" || { rc=1; echo "f$i failed" >>"$WORK/errors"; }
done
ms=$(ms_since "$t")
record "nfs-cp $NFILES small files (export /many)" "$rc" "${ms} ms ($(( ms / NFILES )) ms/file incl. process start + mount)"

t=$(now_ns); ls_out=$(nfs-ls "nfs://127.0.0.1/many?$Q" 2>&1); rc=$?; ms=$(ms_since "$t")
n=$(echo "$ls_out" | awk '$NF ~ /^f[0-9]+$/' | wc -l)
uniq_n=$(echo "$ls_out" | awk '$NF ~ /^f[0-9]+$/ {print $NF}' | sort -u | wc -l)
[ "$rc" = 0 ] && [ "$n" = "$NFILES" ] && [ "$uniq_n" = "$NFILES" ] || rc=1
record "nfs-ls export /many: $NFILES entries" "$rc" "got $n ($uniq_n distinct) in ${ms} ms"

bad=0
for i in 1 2 $((NFILES / 2)) "$NFILES"; do
  c=$(nfs-cat "nfs://127.0.0.1/many/f$i?$Q" 2>/dev/null)
  [ "$c" = "file $i" ] || { bad=$((bad + 1)); log "f$i: got '$c'"; }
done
record "nfs-cat sample of small files" "$bad" ""

# recursive listing from "/" sees both exports' content
rl=$(nfs-ls -R "$(url /)" 2>&1); rc=$?
nr=$(echo "$rl" | grep -c 'many/f[0-9]*$')
[ "$rc" = 0 ] && [ "$nr" -ge "$NFILES" ] || rc=1
record "nfs-ls -R from /" "$rc" "$nr entries under many/"

# nonexistent file: clean error
if nfs-cat "$(url /does-not-exist)" >/dev/null 2>&1; then rc=1; else rc=0; fi
record "nfs-cat of a missing file fails" "$rc" ""

# 5. restart on the same data: everything acknowledged comes back
if [ "$CRASH" = 1 ]; then
  kill -KILL "$SPID" 2>/dev/null; wait "$SPID" 2>/dev/null; how="kill -9"
else
  stop_pid "$SPID" sluice; how="SIGTERM"
fi
SPID=""
t=$(now_ns); start_server; ms=$(ms_since "$t")
s=$(nfs-cat "$(url /big.bin)" | sha256sum | cut -d' ' -f1)
n=$(nfs-ls "nfs://127.0.0.1/many?$Q" 2>&1 | awk '$NF ~ /^f[0-9]+$/' | wc -l)
c=$(nfs-cat "nfs://127.0.0.1/many/f$NFILES?$Q" 2>/dev/null)
[ "$s" = "$SRC_SHA" ] && [ "$n" = "$NFILES" ] && [ "$c" = "file $NFILES" ]
record "restart after $how: files and data come back" $? "listening again in ${ms} ms; big.bin sha=${s:0:16}, $n small files"

TOTAL_MS=$(ms_since "$T0")
if grep -E ' (ERROR|WARN) |panicked' "$WORK/server.log" >/dev/null; then
  log "server log has warnings/errors:"; grep -E ' (ERROR|WARN) |panicked' "$WORK/server.log" | head -20 >&2
fi
alive "$SPID"; record "server still running at the end" $? ""

echo
echo "=== libnfs e2e summary (sluice $("$BIN" --version 2>/dev/null | cut -d' ' -f2), metadata $METADATA, ${SIZE_MB} MiB, $NFILES files, ${TOTAL_MS} ms) ==="
printf '%s\n' "${RESULTS[@]}"
if [ "$FAILED" = 0 ]; then echo "libnfs: ALL PASS"; exit 0; else echo "libnfs: $FAILED FAILED (logs: $WORK)"; exit 1; fi
}

main "$@"; exit $?
