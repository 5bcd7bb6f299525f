#!/usr/bin/env bash
# Runs Dapr's placement (actors, workflows) and scheduler (jobs, reminders, workflow timers)
# in the foreground, on loopback only, until stopped; dapr.yaml starts it with the apps.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${DAPR_RUNTIME_PATH:-$root/.runtime}/.dapr/bin"
data="$root/.data/scheduler"
mkdir -p "$data"

"$bin/placement" --port 30005 --listen-address 127.0.0.1 \
  --healthz-port 30080 --healthz-listen-address 127.0.0.1 \
  --metrics-port 30090 --metrics-listen-address 127.0.0.1 \
  --initial-cluster dapr-placement-0=127.0.0.1:30201 &
placement=$!

"$bin/scheduler" --port 30006 --listen-address 127.0.0.1 \
  --healthz-port 30081 --healthz-listen-address 127.0.0.1 \
  --metrics-port 30091 --metrics-listen-address 127.0.0.1 \
  --etcd-data-dir "$data" --etcd-client-listen-address 127.0.0.1 --etcd-client-port 30379 \
  --etcd-initial-cluster dapr-scheduler-server-0=http://127.0.0.1:30380 &
scheduler=$!

trap 'kill $placement $scheduler 2>/dev/null; wait' INT TERM EXIT
wait -n $placement $scheduler
