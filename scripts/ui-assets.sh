#!/usr/bin/env bash
# The web UI's browser libraries (htmx, uPlot), pinned by apps/ui/frontend/package-lock.json,
# installed from the npm registry and copied into the ui app's static folder, which serves them.
# Nothing is fetched from a CDN at run time. Idempotent: skips npm when the lock is already installed.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
frontend="$root/apps/ui/frontend"
vendor="$root/apps/ui/src/ui/static/vendor"

command -v npm >/dev/null || { echo "ui-assets: npm not found; run: scripts/infra.sh install" >&2; exit 1; }
# A copy of the lock that was installed: the same lock means the same packages.
stamp="$frontend/node_modules/.installed-package-lock.json"
if ! cmp -s "$frontend/package-lock.json" "$stamp"; then
  echo "ui-assets: npm ci (apps/ui/frontend/package-lock.json)"
  npm ci --prefix "$frontend" --no-audit --no-fund --ignore-scripts --loglevel=error
  cp "$frontend/package-lock.json" "$stamp"
fi
mkdir -p "$vendor"
for file in htmx.org/dist/htmx.min.js uplot/dist/uPlot.esm.js uplot/dist/uPlot.min.css; do
  cp -u "$frontend/node_modules/$file" "$vendor/"
done
echo "ui-assets: htmx $(node -p "require('$frontend/node_modules/htmx.org/package.json').version"), uPlot $(node -p "require('$frontend/node_modules/uplot/package.json').version") in $(realpath --relative-to="$root" "$vendor")"
