#!/usr/bin/env bash
# Starts the servers a profile needs and the monitoring stack (Prometheus, Alertmanager,
# VictoriaLogs, vlagent), then every app with its sidecar (`dapr run -f`), with the Dapr API and
# app tokens taken from the git-ignored secrets file.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
profile="${1:-default}"
cd "$root"

case "$profile" in
  default) servers=(redis zipkin monitoring); run_file=dapr.yaml ;;
  rabbitmq-postgres) servers=(rabbitmq postgres zipkin monitoring) ;;
  *) echo "unknown profile '$profile': use default or a folder of components/profiles/" >&2; exit 2 ;;
esac
bash scripts/infra.sh start "${servers[@]}"

if [[ "$profile" != default ]]; then
  # The run file names its resources folder; a profile gets a copy that names the profile's
  # folder instead, beside dapr.yaml so its relative paths still hold (git-ignored).
  run_file=".dapr.$profile.yaml"
  sed "s#\"./components\"#\"./components/profiles/$profile\"#" dapr.yaml > "$run_file"
fi

secret() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' .data/secrets.json "$1"; }
export DAPR_API_TOKEN="$(secret dapr-api-token)" APP_API_TOKEN="$(secret app-api-token)"
export DAPR_RUNTIME_PATH="${DAPR_RUNTIME_PATH:-$root/.runtime}"

echo "platform: starting every app with its sidecar ($profile profile); gateway on http://127.0.0.1:8080"
echo "platform: metrics on http://127.0.0.1:9090 (Prometheus), logs on http://127.0.0.1:9428/select/vmui (VictoriaLogs)"
# --log-as-json: daprd writes JSON lines too (the CLI passes it on), which the log store keeps as fields.
exec "$DAPR_RUNTIME_PATH/bin/dapr" --log-as-json run -f "$run_file"
