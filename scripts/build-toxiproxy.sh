#!/usr/bin/env bash
# Builds Toxiproxy's server (Shopify's TCP fault proxy; the fault tests cut the link between a
# daprd and the broker or the store through it) from its Go module, at the version pinned in
# tools/toxiproxy/go.mod. The binary lands in .runtime/toxiproxy-<version>/, linked from
# .runtime/toxiproxy; a stamp keyed on go.mod, go.sum and this script makes a second run a no-op.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
module="$root/tools/toxiproxy"
runtime="${DAPR_RUNTIME_PATH:-$root/.runtime}"
version="$(cd "$module" && go list -m -f '{{.Version}}' github.com/Shopify/toxiproxy/v2)"
out="$runtime/toxiproxy-${version#v}"
stamp="$out/.built-$(cat "$module"/go.{mod,sum} "${BASH_SOURCE[0]}" | sha256sum | cut -c1-16)"
if [[ -f "$stamp" ]]; then
  echo "toxiproxy: ${version} already built in $out"
  exit 0
fi
mkdir -p "$out"

export CGO_ENABLED=0
echo "toxiproxy: building the server ${version} (under a minute on 2 cores)..."
start=$SECONDS
log="$out/build.log"
if ! (cd "$module" && go build -trimpath -ldflags "-s -w -X github.com/Shopify/toxiproxy/v2.Version=${version}" \
    -o "$out/toxiproxy-server.part" github.com/Shopify/toxiproxy/v2/cmd/server) >"$log" 2>&1; then
  tail -n 30 "$log" >&2
  echo "toxiproxy: build failed; full log in $log" >&2
  exit 1
fi
mv "$out/toxiproxy-server.part" "$out/toxiproxy-server"
rm -f "$out"/.built-*
touch "$stamp"
# A fixed path for the tests, whatever the version.
ln -sfn "$out" "$runtime/toxiproxy"
echo "toxiproxy: built in $((SECONDS - start)) s - $("$out/toxiproxy-server" -version)"
