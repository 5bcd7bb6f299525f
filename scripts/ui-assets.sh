#!/usr/bin/env bash
# The browser libraries the apps serve themselves, installed from the npm registry at the versions
# their lock files pin and copied into the folders the apps serve them from:
#   - the web UI's htmx and uPlot (apps/ui/frontend/package-lock.json) into the ui's static folder;
#   - Swagger UI for every app's /docs (libs/platform/frontend/package-lock.json) into the platform
#     library's static folder (genai_platform.api_docs).
# Nothing is fetched from a CDN at run time. Install scripts are not run (swagger-ui-dist's
# dependency @scarf/scarf has one that reports installs). Idempotent: skips npm when a lock is
# already installed.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
command -v npm >/dev/null || { echo "ui-assets: npm not found; run: scripts/infra.sh install" >&2; exit 1; }

# npm ci in a folder with a package-lock.json, unless that very lock is installed (a copy of it is the stamp).
install_lock() {
  local folder="$1"
  local stamp="$folder/node_modules/.installed-package-lock.json"
  if ! cmp -s "$folder/package-lock.json" "$stamp"; then
    echo "ui-assets: npm ci ($(realpath --relative-to="$root" "$folder")/package-lock.json)"
    npm ci --prefix "$folder" --no-audit --no-fund --ignore-scripts --loglevel=error
    cp "$folder/package-lock.json" "$stamp"
  fi
}

# copy_files <node_modules folder> <destination> <file under node_modules>...
copy_files() {
  local modules="$1" destination="$2"
  shift 2
  mkdir -p "$destination"
  for file in "$@"; do
    cp -u "$modules/$file" "$destination/"
  done
}

version() { node -p "require('$1/package.json').version"; }

frontend="$root/apps/ui/frontend"
vendor="$root/apps/ui/src/ui/static/vendor"
install_lock "$frontend"
copy_files "$frontend/node_modules" "$vendor" htmx.org/dist/htmx.min.js uplot/dist/uPlot.esm.js uplot/dist/uPlot.min.css
echo "ui-assets: htmx $(version "$frontend/node_modules/htmx.org"), uPlot $(version "$frontend/node_modules/uplot") in $(realpath --relative-to="$root" "$vendor")"

docs="$root/libs/platform/frontend"
docs_vendor="$root/libs/platform/src/genai_platform/static/vendor"
install_lock "$docs"
copy_files "$docs/node_modules/swagger-ui-dist" "$docs_vendor" swagger-ui-bundle.js swagger-ui.css favicon-32x32.png
echo "ui-assets: Swagger UI $(version "$docs/node_modules/swagger-ui-dist") in $(realpath --relative-to="$root" "$docs_vendor")"
