#!/usr/bin/env bash
# Builds Dapr's binaries (daprd with every component, placement, scheduler, sentry) and the
# dapr CLI from Dapr's Go modules, at the versions pinned in tools/dapr-runtime/go.mod.
# They land in .runtime/ laid out the way the CLI expects under DAPR_RUNTIME_PATH, so
# `dapr run` uses them without `dapr init`. A second run with everything built is a no-op.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
module="$root/tools/dapr-runtime"
runtime="${DAPR_RUNTIME_PATH:-$root/.runtime}"
bin="$runtime/.dapr/bin"
cli_version="v1.18.0"   # the newest dapr/cli the Go module proxy serves for the 1.18 line
dapr_version="$(cd "$module" && go list -m -f '{{.Version}}' github.com/dapr/dapr)"
mkdir -p "$bin" "$runtime/bin"

# A stamp ties the binaries to the pinned versions: changing go.mod rebuilds them.
stamp="$runtime/.built-$(cat "$module/go.mod" "$module/go.sum" | sha256sum | cut -c1-16)-cli-$cli_version"
if [[ -f "$stamp" ]]; then
  echo "dapr: $dapr_version runtime and CLI $cli_version already built in $runtime"
  exit 0
fi

# Release builds: static, stripped, version stamped as Dapr's own Makefile does.
export CGO_ENABLED=0
ldflags="-s -w -X github.com/dapr/dapr/pkg/buildinfo.version=${dapr_version#v} -X github.com/dapr/kit/logger.DaprVersion=${dapr_version#v}"

echo "dapr: downloading modules for $dapr_version (about 2 GB the first time)..."
(cd "$module" && go mod download -x 2>&1 | grep -c '^# get' | xargs -I{} echo "dapr: {} module downloads")

for cmd in daprd placement scheduler sentry; do
  tags=""
  [[ "$cmd" == daprd ]] && tags="allcomponents"   # the component set official releases ship
  echo "dapr: building $cmd ${tags:+(-tags $tags) }— the first daprd build takes a while; packages:"
  start=$SECONDS
  # -v names each package as it compiles: the progress of a long build.
  log="$runtime/build-$cmd.log"
  if ! (cd "$module" && go build -v -trimpath -tags "$tags" -ldflags "$ldflags" \
      -o "$bin/$cmd" "github.com/dapr/dapr/cmd/$cmd") 2>&1 | tee "$log" \
      | awk '{ n++; if (n % 100 == 0) { printf "dapr:   %d packages compiled (%s)\n", n, $0; fflush() } }'; then
    tail -n 30 "$log" >&2
    echo "dapr: building $cmd failed; full log in $log" >&2
    exit 1
  fi
  echo "dapr: $cmd built in $((SECONDS - start)) s"
done

echo "dapr: building the dapr CLI $cli_version..."
# dapr/cli has no replace lines, so go install works; its binary comes out named `cli`.
GOBIN="$runtime/bin" go install -trimpath -ldflags "-s -w -X main.version=${cli_version#v} -X main.apiVersion=1.0" \
  "github.com/dapr/cli@$cli_version"
mv -f "$runtime/bin/cli" "$runtime/bin/dapr"

rm -f "$runtime"/.built-*
touch "$stamp"
echo "dapr: done — $("$bin/daprd" --version) in $bin, CLI at $runtime/bin/dapr"
