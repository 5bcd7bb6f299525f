#!/usr/bin/env bash
# Builds VictoriaLogs (the log store) and vlagent (its file collector, which ships every app's
# and every daprd's log files into it) from VictoriaLogs' Go module, at the version pinned in
# tools/victorialogs/go.mod. Binaries land in .runtime/victorialogs-<version>/; a stamp keyed on
# go.mod, go.sum and this script makes a second run a no-op.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
module="$root/tools/victorialogs"
runtime="${DAPR_RUNTIME_PATH:-$root/.runtime}"
version="$(cd "$module" && go list -m -f '{{.Version}}' github.com/VictoriaMetrics/VictoriaLogs)"
out="$runtime/victorialogs-${version#v}"
stamp="$out/.built-$(cat "$module"/go.{mod,sum} "${BASH_SOURCE[0]}" | sha256sum | cut -c1-16)"
if [[ -f "$stamp" ]]; then
  echo "victorialogs: ${version} already built in $out"
  exit 0
fi
mkdir -p "$out"

# Pure Go (no cgo zstd), static and stripped, version stamped as VictoriaLogs' Makefile does.
export CGO_ENABLED=0
ldflags="-s -w -X github.com/VictoriaMetrics/VictoriaMetrics/lib/buildinfo.Version=victoria-logs-${version}"
echo "victorialogs: downloading modules for ${version}..."
(cd "$module" && go mod download)
for cmd in victoria-logs vlagent; do
  echo "victorialogs: building $cmd (about 3 minutes the first time on 2 cores)..."
  start=$SECONDS
  log="$out/build-$cmd.log"
  # -v names each package as it compiles: every 50th is shown as progress.
  if ! (cd "$module" && go build -v -trimpath -ldflags "$ldflags" -o "$out/$cmd.part" \
      "github.com/VictoriaMetrics/VictoriaLogs/app/$cmd") 2>&1 | tee "$log" \
      | awk '{ n++; if (n % 50 == 0) { printf "victorialogs:   %d packages compiled (%s)\n", n, $0; fflush() } }'; then
    tail -n 30 "$log" >&2
    echo "victorialogs: building $cmd failed; full log in $log" >&2
    exit 1
  fi
  mv "$out/$cmd.part" "$out/$cmd"
  echo "victorialogs: $cmd built in $((SECONDS - start)) s"
done
rm -f "$out"/.built-*
touch "$stamp"
# A fixed path for scripts/infra.sh, whatever the version.
ln -sfn "$out" "$runtime/victorialogs"
echo "victorialogs: done - $("$out/victoria-logs" -version)"
