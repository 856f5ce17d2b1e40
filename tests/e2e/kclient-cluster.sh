#!/usr/bin/env bash
# The real Linux kernel client (../shared/kclient) against a three-node Sluice cluster that
# joins the kernel-client bridge (deploy/local/cluster.sh up --netns kc: nodes at
# 10.77.0.101-103). For each of vers=3 and vers=4.1, one VM mounts node 1 and writes FILES
# small files and a SIZE MiB file with their sha256 sums; a second VM mounts node 3 and checks
# every file against those sums. Then node 1 is killed with kill -9 and a VM reads the big
# file back through node 3 from the other copies.
#
#   tests/e2e/kclient-cluster.sh [--bin PATH] [--size-mb N] [--files N] [--vers "3 4.1"] [--keep]
#
# Env: KCLIENT (default /work/shared/kclient/kclient.sh). Exits non-zero if any check fails.
set -uo pipefail
. "$(dirname "$0")/lib.sh"

main() {

BIN="" SIZE_MB=256 NFILES=1000 VERSIONS="3 4.1" KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) BIN=$2; shift 2;;
    --size-mb) SIZE_MB=$2; shift 2;;
    --files) NFILES=$2; shift 2;;
    --vers) VERSIONS=$2; shift 2;;
    --keep) KEEP=1; shift;;
    -h|--help) sed -n '2,11p' "$0"; exit 0;;
    *) die "unknown option $1";;
  esac
done
KCLIENT=${KCLIENT:-/work/shared/kclient/kclient.sh}
[ -x "$KCLIENT" ] || die "kclient not found at $KCLIENT (set KCLIENT=)"
[ "$(id -u)" = 0 ] || die "needs root (network namespaces)"
kc_prepare
WORK=$(mktemp -d /tmp/sluice-kc-cluster.XXXXXX)
CL="$REPO_ROOT/deploy/local/cluster.sh"
CDIR=$WORK/cluster
FAILED=0 RESULTS=()
trap cluster_cleanup EXIT
trap 'exit 130' INT TERM


T0=$(now_ns)
"$CL" up --netns kc --bin "$BIN" --dir "$CDIR" > "$WORK/up.txt" || die "the cluster did not come up"
cat "$WORK/up.txt" >&2
grep -q ' addr 10.77.0.101 ' "$WORK/up.txt" || die "node 1 is not at 10.77.0.101"
cluster_record "cluster up on kcbr0 (3 nodes)" 0 "$(ms_since "$T0") ms"

# v3 asks the node's own portmapper for the ports; 4.1 needs only 2049.
opts_for() { [ "$1" = 3 ] && echo "--mountport 0 --mount-opts port=0"; }

for v in $VERSIONS; do
  d="v${v/./}"
  # shellcheck disable=SC2046
  t=$(now_ns)
  "$KCLIENT" run --vers "$v" --server 10.77.0.101 $(opts_for "$v") -- "
    set -e
    mkdir /mnt/$d && cd /mnt/$d
    i=0; while [ \$i -lt $NFILES ]; do echo \"small \$i\" > s\$i; i=\$((i+1)); done
    dd if=/dev/urandom of=big bs=1M count=$SIZE_MB conv=fsync status=none
    sha256sum big s* > /tmp/sums && cp /tmp/sums sums
    echo written=\$(ls | wc -l)
  " > "$WORK/write-$d.out" 2>&1
  rc=$?
  cluster_record "vers=$v: VM 1 writes through node 1" $rc "$(grep -o 'written=[0-9]*' "$WORK/write-$d.out" | tail -1), $(ms_since "$t") ms"
  t=$(now_ns)
  "$KCLIENT" run --vers "$v" --server 10.77.0.103 $(opts_for "$v") -- "
    set -e
    cd /mnt/$d
    echo files=\$(ls | grep -c "^s[0-9]")
    sha256sum -c -s sums && echo verified=yes
  " > "$WORK/read-$d.out" 2>&1
  rc=$?
  grep -q "files=$NFILES" "$WORK/read-$d.out" && grep -q 'verified=yes' "$WORK/read-$d.out" || rc=1
  cluster_record "vers=$v: VM 2 reads them back through node 3" $rc "$(grep -o 'files=[0-9]*' "$WORK/read-$d.out" | tail -1), sha256 of all $((NFILES + 1)), $(ms_since "$t") ms"
  [ "$rc" = 0 ] || tail -20 "$WORK/read-$d.out" >&2
done

# Node 1, through which VM 1 wrote (it made the files, so it holds their first copy, and it
# led the metadata log), is killed with kill -9: a VM reads the big file back whole through
# node 3, from the other copies (cluster.replicas = 3), once a new leader took over.
first=${VERSIONS%% *}
d="v${first/./}"
"$CL" kill 1 --dir "$CDIR" >/dev/null 2>&1
t=$(now_ns)
# shellcheck disable=SC2046
"$KCLIENT" run --vers "$first" --server 10.77.0.103 $(opts_for "$first") -- "
  set -e
  cd /mnt/$d
  grep ' big\$' sums | sha256sum -c -s && echo verified=yes
" > "$WORK/after-kill.out" 2>&1
rc=$?
grep -q 'verified=yes' "$WORK/after-kill.out" || rc=1
cluster_record "node 1 killed: VM 2 reads the big file back through node 3 (vers=$first)" $rc "sha256 of ${SIZE_MB} MiB, $(ms_since "$t") ms"
[ "$rc" = 0 ] || tail -20 "$WORK/after-kill.out" >&2

echo
echo "=== kernel client against a 3-node cluster ($SIZE_MB MiB, $NFILES files, vers $VERSIONS, $(ms_since "$T0") ms) ==="
printf '%s\n' "${RESULTS[@]}"
if [ "$FAILED" = 0 ]; then echo "kclient-cluster: ALL PASS"; else echo "kclient-cluster: $FAILED FAILED"; exit 1; fi
}

main "$@"
