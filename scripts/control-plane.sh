#!/usr/bin/env bash
# Runs Dapr's placement (actors, workflows) and scheduler (jobs, reminders, workflow timers)
# in the foreground, on loopback only, until stopped; dapr.yaml starts it with the apps.
# `control-plane.sh sentry` runs Dapr's sentry instead (the CA of the sidecars' mTLS identities):
# scripts/run-platform.sh starts it before any sidecar, since daprd exits when it cannot get its
# first certificate. Port 50001 is the one the dapr CLI gives daprd (--sentry-address localhost:50001).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${DAPR_RUNTIME_PATH:-$root/.runtime}/.dapr/bin"
data="$root/.data/scheduler"
# Sentry makes its root and issuer here on first start and keeps them for the next.
credentials="$root/.data/sentry"
mkdir -p "$data" "$credentials"

if [[ "${1:-}" == sentry ]]; then
  # Its healthz port binds every interface whatever the flag says (Dapr 1.18.2); metrics are off.
  exec "$bin/sentry" --issuer-credentials "$credentials" --config "$root/dapr-config/sentry/config.yaml" \
    --port 50001 --listen-address 127.0.0.1 \
    --healthz-port 30082 --healthz-listen-address 127.0.0.1 --enable-metrics=false
fi

# With the sidecars on mTLS (run-platform.sh exports their trust anchors), daprd speaks TLS to
# placement and scheduler too, so both serve TLS with certificates from the same sentry.
tls=()
if [[ -n "${DAPR_TRUST_ANCHORS:-}" ]]; then
  tls=(--tls-enabled --sentry-address 127.0.0.1:50001 --trust-anchors-file "$credentials/ca.crt")
fi

"$bin/placement" --port 30005 --listen-address 127.0.0.1 \
  --healthz-port 30080 --healthz-listen-address 127.0.0.1 \
  --metrics-port 30090 --metrics-listen-address 127.0.0.1 \
  --initial-cluster dapr-placement-0=127.0.0.1:30201 "${tls[@]}" &
placement=$!

"$bin/scheduler" --port 30006 --listen-address 127.0.0.1 \
  --healthz-port 30081 --healthz-listen-address 127.0.0.1 \
  --metrics-port 30091 --metrics-listen-address 127.0.0.1 \
  --etcd-data-dir "$data" --etcd-client-listen-address 127.0.0.1 --etcd-client-port 30379 \
  --etcd-initial-cluster dapr-scheduler-server-0=http://127.0.0.1:30380 "${tls[@]}" &
scheduler=$!

trap 'kill $placement $scheduler 2>/dev/null; wait' INT TERM EXIT
wait -n $placement $scheduler
