#!/usr/bin/env bash
# Bandwidth tiers measured with a real NFS client: fio with the libnfs engine
# (../shared/peers/fio-nfs.sh, a native NFSv3 client; one TCP connection per fio job) on two
# client hosts. Three network namespaces made here: sluice-tfs (the server, bridge 10.98.0.1),
# sluice-tfa (host A, 10.98.0.2) and sluice-tfb (host B, 10.98.0.3). The mount target "t" is
# 10.98.0.1:2049 with a read tier of RATE MB/s. Rates are the server's own
# sluice_target_bytes_total, sampled after the first seconds.
#
#   cap      host A, 4 jobs: the read rate over a 10 s window, after 2 s of warm-up
#   fair     host A with 16 jobs and host B with 1 at once: per-host rates (fio, after ramp-up)
#            and Jain's fairness index
#   change   host A, 4 jobs; the tier goes RATE -> 2*RATE by SIGHUP mid-run: the rate in the
#            first whole second after the change
#   and from /metrics: no JUKEBOX was ever sent.
#
# Asserted with CI tolerances (cap within 5 %, Jain >= 0.95, the change reaching 85 % of the new
# rate within 1 s); the exact figures are printed for bench/RESULTS.md.
#
#   tests/e2e/tiers-fio.sh [--bin PATH] [--rate-mb 40] [--keep]
set -uo pipefail
. "$(dirname "$0")/lib.sh"

main() {
BIN="" RATE=40 KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) BIN=$2; shift 2;;
    --rate-mb) RATE=$2; shift 2;;
    --keep) KEEP=1; shift;;
    -h|--help) sed -n '2,20p' "$0"; exit 0;;
    *) die "unknown option $1";;
  esac
done
[ "$(id -u)" = 0 ] || die "must run as root (network namespaces)"
FIONFS=${FIONFS:-/work/shared/peers/fio-nfs.sh}
"$FIONFS" --build-only >&2 || die "cannot build fio with the libnfs engine ($FIONFS)"
FIO=${FIO_NFS_HOME:-$HOME/.cache/fio-nfs}/fio
[ -n "$BIN" ] || BIN=$(build_sluice)
BIN=$(readlink -f "$BIN")

WORK=$(mktemp -d /tmp/sluice-e2e-tiers-fio.XXXXXX)
SPID="" FAILED=0 RESULTS=()
cleanup() {
  [ -n "$SPID" ] && stop_pid "$SPID" sluice
  for n in tfs tfa tfb; do ip netns del "sluice-$n" 2>/dev/null; done
  if [ "$KEEP" = 1 ] || [ "$FAILED" != 0 ]; then log "logs kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# --- network: a bridge in the server's namespace, one veth per client host ----------------
for n in tfs tfa tfb; do
  ip netns del "sluice-$n" 2>/dev/null
  ip netns add "sluice-$n" && ip -n "sluice-$n" link set lo up || die "ip netns add sluice-$n"
done
ip -n sluice-tfs link add br0 type bridge
ip -n sluice-tfs addr add 10.98.0.1/24 dev br0
ip -n sluice-tfs link set br0 up
i=2
for h in a b; do
  ip link add "tf$h" type veth peer name "tf${h}p" || die "veth"
  ip link set "tf$h" netns "sluice-tf$h"
  ip link set "tf${h}p" netns sluice-tfs
  ip -n sluice-tfs link set "tf${h}p" master br0 up
  ip -n "sluice-tf$h" addr add "10.98.0.$i/24" dev "tf$h"
  ip -n "sluice-tf$h" link set "tf$h" up
  i=$((i + 1))
done

config() {
  cat >"$WORK/sluice.toml" <<EOF
data_dir = "$WORK/data"
[server]
portmap = "serve"
[[target]]
name = "t"
listen = ["10.98.0.1:2049"]
tier = { read = "$1MB/s" }
[[export]]
path = "/"
[[export.clients]]
match = "*"
squash = "none"
EOF
}
config "$RATE"
ip netns exec sluice-tfs env SLUICE_LOG=info NO_COLOR=1 "$BIN" serve --config "$WORK/sluice.toml" \
  >"$WORK/server.log" 2>&1 &
SPID=$!
for _ in $(seq 100); do
  ip netns exec sluice-tfs ss -Hltn 'sport = :2049' | grep -q . && break
  alive "$SPID" || { tail -20 "$WORK/server.log" >&2; die "sluice exited at startup"; }
  sleep 0.1
done

URL="nfs://10.98.0.1/?version=3"
metrics() { ip netns exec sluice-tfs curl -s --max-time 5 http://127.0.0.1:9049/metrics; }
read_bytes() {
  metrics | awk '/^sluice_target_bytes_total\{/ && /target="t"/ && /direction="read"/ { print $2 }'
}
fio_on() {   # fio_on HOST NAME JOBS SECONDS [more fio args]
  local h=$1 name=$2 jobs=$3 secs=$4; shift 4
  ip netns exec "sluice-tf$h" "$FIO" --ioengine=nfs --nfs_url="$URL" --name="$name" --filename=data \
    --rw=read --bs=1M --size=256M --numjobs="$jobs" --time_based --runtime="$secs" --group_reporting \
    --output-format=json "$@" >"$WORK/$name.json" 2>"$WORK/$name.err"
}
record() {   # record NAME OK DETAIL
  local st=PASS; [ "$2" = 0 ] || { st=FAIL; FAILED=$((FAILED + 1)); }
  RESULTS+=("$(printf '%-4s %-7s %s' "$st" "$1" "$3")"); log "$st $1: $3"
}
rate_of() { python3 -c "print(f'{($2 - $1) / $3 / 1e6:.2f}')"; }

log "writing the 256 MiB file (writes are not limited by this tier)"
ip netns exec sluice-tfa "$FIO" --ioengine=nfs --nfs_url="$URL" --name=prep --filename=data \
  --rw=write --bs=1M --size=256M >"$WORK/prep.out" 2>&1 || { cat "$WORK/prep.out" >&2; die "prep write failed"; }

# --- cap ---------------------------------------------------------------------------------
fio_on a cap 4 13 &
FP=$!
sleep 2.5; b0=$(read_bytes); t0=$(now_ns)
sleep 10; b1=$(read_bytes); t1=$(now_ns)
wait $FP
CAP=$(rate_of "$b0" "$b1" "$(python3 -c "print(($t1 - $t0) / 1e9)")")
ok=$(python3 -c "print(0 if abs($CAP / $RATE - 1) <= 0.05 else 1)")
record cap "$ok" "4 jobs, read tier $RATE MB/s: $CAP MB/s over 10 s ($(python3 -c "print(f'{($CAP / $RATE - 1) * 100:+.2f}')") %)"

# --- fairness: 16 connections on host A against 1 on host B ------------------------------
fio_on a fairA 16 14 --ramp_time=3 &
PA=$!
fio_on b fairB 1 14 --ramp_time=3 &
PB=$!
wait $PA; wait $PB
bw() { python3 -c "import json; d=json.load(open('$WORK/$1.json')); print(d['jobs'][0]['read']['bw_bytes'] / 1e6)"; }
A=$(bw fairA) B=$(bw fairB)
JAIN=$(python3 -c "a,b=$A,$B; print(f'{(a+b)**2/(2*(a*a+b*b)):.3f}')")
ok=$(python3 -c "print(0 if $JAIN >= 0.95 else 1)")
record fair "$ok" "A (16 jobs) $(printf '%.2f' "$A") MB/s, B (1 job) $(printf '%.2f' "$B") MB/s: Jain $JAIN (sum $(python3 -c "print(f'{$A + $B:.2f}')") of $RATE)"

# --- live change --------------------------------------------------------------------------
fio_on a change 4 12 &
FP=$!
sleep 3
config $((RATE * 2))
kill -HUP "$SPID"
c0=$(read_bytes); ct0=$(now_ns)
sleep 1; c1=$(read_bytes); ct1=$(now_ns)
sleep 4; c2=$(read_bytes); ct2=$(now_ns)
wait $FP
FIRST=$(rate_of "$c0" "$c1" "$(python3 -c "print(($ct1 - $ct0) / 1e9)")")
AFTER=$(rate_of "$c1" "$c2" "$(python3 -c "print(($ct2 - $ct1) / 1e9)")")
ok=$(python3 -c "print(0 if $FIRST >= 0.85 * $RATE * 2 else 1)")
record change "$ok" "$RATE -> $((RATE * 2)) MB/s by SIGHUP: first second $FIRST MB/s, next 4 s $AFTER MB/s"

# --- never an error -----------------------------------------------------------------------
JUKE=$(metrics | awk '/^sluice_rpc_calls_total\{/ && /status="JUKEBOX"/ { s += $2 } END { print s + 0 }')
errs=$(cat "$WORK"/*.err 2>/dev/null | grep -ci "error\|fail" || true)
record errors "$([ "$JUKE" = 0 ] && [ "$errs" = 0 ] && echo 0 || echo 1)" \
  "JUKEBOX sent: $JUKE (server metrics); fio error lines: $errs"

echo
echo "=== tiers with fio-nfs (libnfs, NFSv3), read tier $RATE MB/s ==="
printf '%s\n' "${RESULTS[@]}"
if [ "$FAILED" = 0 ]; then echo "tiers-fio: ALL PASS"; return 0; fi
echo "tiers-fio: $FAILED FAILED (logs in $WORK)"; return 1
}

main "$@"; exit $?
