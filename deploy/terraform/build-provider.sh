#!/usr/bin/env bash
# Builds terraform-provider-sluice and lays it into a local provider mirror, with a Terraform
# CLI config that points at it. Nothing is downloaded: Terraform installs the provider from
# the mirror, offline.
#
#   deploy/terraform/build-provider.sh [--mirror DIR] [--debug]
#
#   --mirror DIR  where to lay the mirror (default: $XDG_DATA_HOME/sluice/terraform-mirror,
#                 i.e. ~/.local/share/sluice/terraform-mirror)
#   --debug       a debug build (faster to build, slower to run)
#   PROVIDER_BIN  lay this binary instead of building one
#
# Prints the line to run next: export TF_CLI_CONFIG_FILE=<DIR>/terraformrc
# The provider's address in `required_providers` is sluice.local/sluice/sluice.
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
MIRROR=${XDG_DATA_HOME:-$HOME/.local/share}/sluice/terraform-mirror
PROFILE=release
while [ $# -gt 0 ]; do
  case "$1" in
    --mirror) MIRROR=${2:?--mirror needs a directory}; shift 2 ;;
    --debug) PROFILE=debug; shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' "$REPO_ROOT/Cargo.toml" | head -1)
[ -n "$VERSION" ] || { echo "no workspace version in $REPO_ROOT/Cargo.toml" >&2; exit 2; }
case "$(uname -m)" in
  x86_64) ARCH=amd64 ;;
  aarch64) ARCH=arm64 ;;
  *) echo "unsupported machine $(uname -m)" >&2; exit 2 ;;
esac

BIN=${PROVIDER_BIN:-}
if [ -z "$BIN" ]; then
  TARGET_DIR=${CARGO_TARGET_DIR:-$REPO_ROOT/target}
  flag=(); [ "$PROFILE" = release ] && flag=(--release)
  echo "building terraform-provider-sluice ($PROFILE)" >&2
  (cd "$REPO_ROOT" && cargo build "${flag[@]}" -p terraform-provider-sluice >&2)
  BIN=$TARGET_DIR/$PROFILE/terraform-provider-sluice
fi
[ -x "$BIN" ] || { echo "no provider binary at $BIN" >&2; exit 2; }

MIRROR=$(mkdir -p "$MIRROR" && cd "$MIRROR" && pwd)
# The unpacked mirror layout: HOSTNAME/NAMESPACE/TYPE/VERSION/OS_ARCH/terraform-provider-TYPE_vVERSION
DEST=$MIRROR/sluice.local/sluice/sluice/$VERSION/linux_$ARCH
mkdir -p "$DEST"
install -m 0755 "$BIN" "$DEST/terraform-provider-sluice_v$VERSION"
sed "s#@MIRROR@#$MIRROR#" "$REPO_ROOT/deploy/terraform/terraformrc.template" >"$MIRROR/terraformrc"
echo "provider sluice.local/sluice/sluice $VERSION laid into $DEST" >&2
echo "export TF_CLI_CONFIG_FILE=$MIRROR/terraformrc CHECKPOINT_DISABLE=1"
