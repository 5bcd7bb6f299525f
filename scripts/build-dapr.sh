#!/usr/bin/env bash
# Builds Dapr's binaries (daprd with every component, placement, scheduler, sentry) and the
# dapr CLI from Dapr's Go modules, at the versions pinned in tools/dapr-runtime/go.mod.
# They land in .runtime/ laid out the way the CLI expects under DAPR_RUNTIME_PATH, so
# `dapr run` uses them without `dapr init`. A second run with everything built is a no-op.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
module="$root/tools/dapr-runtime"
cli_module="$root/tools/dapr-cli"
runtime="${DAPR_RUNTIME_PATH:-$root/.runtime}"
# The CLI zip of every 1.17/1.18 release is refused by the Go module proxy reached here;
# v1.16.5 is the newest it serves. The CLI only launches daprd, so the skew is harmless.
cli_version="$(cd "$cli_module" && go list -m -f '{{.Version}}' github.com/dapr/cli)"
dapr_version="$(cd "$module" && go list -m -f '{{.Version}}' github.com/dapr/dapr)"
real="$runtime/dapr-${dapr_version#v}"   # the binaries themselves
bin="$runtime/.dapr/bin"                 # where the CLI looks for them
mkdir -p "$real" "$bin" "$runtime/bin"

# A stamp ties the binaries to the pinned versions: changing go.mod rebuilds them.
stamp="$runtime/.built-$(cat "$module"/go.{mod,sum} "$cli_module"/go.{mod,sum} "${BASH_SOURCE[0]}" | sha256sum | cut -c1-16)"
if [[ -f "$stamp" ]]; then
  echo "dapr: runtime ${dapr_version} and CLI ${cli_version} already built in $runtime"
  exit 0
fi

# Release builds: static, stripped, version stamped as Dapr's own Makefile does.
export CGO_ENABLED=0
ldflags="-s -w -X github.com/dapr/dapr/pkg/buildinfo.version=${dapr_version#v} -X github.com/dapr/kit/logger.DaprVersion=${dapr_version#v}"

echo "dapr: downloading modules for ${dapr_version} (about 2 GB the first time)..."
(cd "$module" && go mod download) && (cd "$cli_module" && go mod download)

for cmd in daprd placement scheduler sentry; do
  if [[ -x "$real/$cmd" && "$real/$cmd" -nt "$module/go.sum" ]]; then
    echo "dapr: $cmd is up to date"
    continue
  fi
  tags=""
  [[ "$cmd" == daprd ]] && tags="allcomponents"   # the component set official releases ship
  echo "dapr: building $cmd ${tags:+(-tags $tags, about 7 minutes the first time on 2 cores) }..."
  start=$SECONDS
  log="$runtime/build-$cmd.log"
  # -v names each package as it compiles: every 100th is shown as progress.
  if ! (cd "$module" && go build -v -trimpath -tags "$tags" -ldflags "$ldflags" \
      -o "$real/$cmd" "github.com/dapr/dapr/cmd/$cmd") 2>&1 | tee "$log" \
      | awk '{ n++; if (n % 100 == 0) { printf "dapr:   %d packages compiled (%s)\n", n, $0; fflush() } }'; then
    tail -n 30 "$log" >&2
    echo "dapr: building $cmd failed; full log in $log" >&2
    exit 1
  fi
  echo "dapr: $cmd built in $((SECONDS - start)) s"
done

# daprd binds its internal gRPC and metrics servers to 0.0.0.0 unless told otherwise, and
# `dapr run -f` has no run-file field for either; this launcher pins both to loopback
# (flags given later on the command line still win).
cat > "$bin/daprd" <<WRAPPER
#!/bin/sh
exec "$real/daprd" --dapr-internal-grpc-listen-address 127.0.0.1 --metrics-listen-address 127.0.0.1 "\$@"
WRAPPER
chmod +x "$bin/daprd"
for cmd in placement scheduler sentry; do ln -sf "$real/$cmd" "$bin/$cmd"; done

echo "dapr: building the dapr CLI ${cli_version}..."
(cd "$cli_module" && go build -trimpath -ldflags "-s -w -X main.version=${cli_version#v}" \
  -o "$runtime/bin/dapr" github.com/dapr/cli)

rm -f "$runtime"/.built-*
touch "$stamp"
echo "dapr: done - daprd $("$real/daprd" --version), CLI at $runtime/bin/dapr"
