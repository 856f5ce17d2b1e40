#!/usr/bin/env bash
# The test suite: what README.md tells a new user to run, and what CI runs (.ci/run).
#
#   ./tests/run.sh           everything: lint, cargo tests, fuzz smoke, libnfs and kernel-client e2e
#   ./tests/run.sh --quick   lint and cargo tests only
#
# Installs what it needs on first run (Debian packages, cargo-fuzz). Network traffic stays on
# loopback or inside the network namespaces the e2e scripts create.
set -euo pipefail
cd "$(dirname "$0")/.."
quick=0
[ "${1:-}" = "--quick" ] && quick=1

step() { printf '\n=== %s (%s)\n' "$1" "$(date +%T)"; }
need_pkg() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    step "installing ${missing[*]}"
    local sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -qq || true
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
  fi
}

# The RDMA layout test compiles a C program against the rdma-core headers. The etcd client's
# build runs protoc; the membership tests start etcd.
need_pkg gcc libibverbs-dev librdmacm-dev protobuf-compiler libprotobuf-dev etcd-server

step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
step "cargo test --workspace"
cargo test --workspace
[ $quick = 1 ] && { echo "quick run: OK"; exit 0; }

step "deterministic simulation of the metadata log and its membership: 500 seeds (release build)"
cargo run --release -q -p ha --example sim -- --first 1000 --seeds 500

step "fuzz smoke (${FUZZ_SECONDS:-15} s per target)"
fuzz/run.sh "${FUZZ_SECONDS:-15}"

# nfs-common: rpc.statd and sm-notify, which nlm-kclient.sh copies into the kernel-client VMs.
need_pkg libnfs-utils rpcbind nftables iputils-arping nfs-common
step "rpcbind registration (Debian's rpcbind in a private netns)"
tests/e2e/rpcbind-register.sh

step "admin API against its OpenAPI document (schemathesis)"
tests/e2e/schemathesis.sh

step "Terraform provider, offline: Terraform 1.0.3 and 1.15.5 against a sluice serve on loopback"
tests/e2e/terraform.sh

step "libnfs userspace clients (one node, a three-node cluster, a floating target's failover), kernel client (../shared/kclient) v3 default and nconnect=16"
tests/e2e/run-all.sh

step "a three-node cluster with the kernel client: VM 1 writes 1000 files and 256 MiB through node 1, VM 2 reads them through node 3 (vers=3 and 4.1), and the big file again after node 1 is killed"
tests/e2e/kclient-cluster.sh

step "bandwidth tiers: the kernel client (a 20 MB/s mount target), then fio-nfs from two hosts (cap, fairness, live change)"
tests/e2e/tiers-kclient.sh
tests/e2e/tiers-kclient.sh --vers 4.1
tests/e2e/tiers-fio.sh

step "NFSv3 locking with the kernel client: default mount options, two VMs, restart + reclaim; a lock kept across a floating target's takeover (kill -9, planned move) and a 512 MiB checkpoint written across one, in a three-node cluster"
tests/e2e/nlm-kclient.sh
tests/e2e/nlm-kclient.sh --cluster --scenarios "f m w v"

step "NFSv4.1 with the kernel client: round trip, small files, kill -9 + reclaim; nconnect=4; locks across two VMs; a checkpoint under a lock across a floating target's takeover (kill -9, planned move)"
tests/e2e/kclient-v41.sh
tests/e2e/kclient-v41.sh --nconnect 4 --size-mb 1024 --scenarios a
tests/e2e/nlm-kclient.sh --vers 4.1 --scenarios "a b"
tests/e2e/nlm-kclient.sh --cluster --vers 4.1 --scenarios "w v"

step "NFS over RDMA (soft-RoCE in a VM, server inside it): v3 and v4.1 round trips"
tests/e2e/kclient-rdma.sh

echo "all tests: OK"
