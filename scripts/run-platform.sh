#!/usr/bin/env bash
# Starts the servers a profile needs and the monitoring stack (Prometheus, Alertmanager,
# VictoriaLogs, vlagent), then every app with its sidecar (`dapr run -f`), with the Dapr API and
# app tokens taken from the git-ignored secrets file.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
profile="${1:-default}"
cd "$root"
export DAPR_RUNTIME_PATH="${DAPR_RUNTIME_PATH:-$root/.runtime}"

# The dapr CLI (1.16.5) moves itself into a process group of its own (setpgid), so a Ctrl-C in
# the terminal never reaches it, and on SIGINT/SIGTERM it SIGKILLs each app's `uv run` wrapper,
# which orphans `python -m <app>` with its port held. So the CLI runs as our child, its group id
# (its own pid) is kept in this file, and we stop that group ourselves (stop_group).
pid_file=.data/platform/dapr-run.pgid

# The command line of pid $1, empty when it is gone: the braces make 2>/dev/null cover the failed
# redirection too (a bare `tr <file 2>/dev/null` prints "No such file or directory", as redirections
# apply left to right), which a process that exits while we look at it would cause.
cmdline() { { tr '\0' ' ' <"/proc/$1/cmdline"; } 2>/dev/null || true; }

# Pids in process group $1 but $2 (the CLI): the apps, their `uv run` wrappers, the sidecars,
# the control plane. A process keeps its group when orphaned, so none escapes this. Zombies are
# left out: they are dead already, and one whose parent is the CLI stays until the CLI exits,
# which it does only after this wait (pgrep lists zombies, so a stop waited on them).
members() { ps -e -o pid=,pgid=,stat= | awk -v g="$1" -v but="${2:-}" '$2 == g && $1 != but && $3 !~ /^Z/ { print $1 }'; }

# Stops process group $1 led by the CLI: SIGTERM to every member but the CLI (daprd shuts down
# gracefully, uvicorn finishes open requests), SIGKILL after PLATFORM_STOP_TIMEOUT seconds (default
# 30), then SIGINT to the CLI, which closes its log files and exits.
stop_group() {
  local pgid="$1" timeout="${PLATFORM_STOP_TIMEOUT:-30}" deadline left
  left="$(members "$pgid" "$pgid")"
  # shellcheck disable=SC2086 # one pid per word
  [[ -z "$left" ]] || kill -TERM $left 2>/dev/null || true
  deadline=$((SECONDS + timeout))
  local said=""
  while left="$(members "$pgid" "$pgid")" && [[ -n "$left" ]]; do
    if ((SECONDS >= deadline)); then
      [[ -n "$said" ]] || echo "platform: still running after ${timeout}s, sending SIGKILL to: $(tr '\n' ' ' <<<"$left")" >&2
      said=1
      # shellcheck disable=SC2086
      kill -KILL $left 2>/dev/null || true
    fi
    sleep 0.2
  done
  kill -INT "$pgid" 2>/dev/null || true
  deadline=$((SECONDS + 10))
  while kill -0 "$pgid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
  pkill -KILL -g "$pgid" 2>/dev/null || true
}

# True when process group $1 is a platform of this checkout: a member runs from under $root (the
# CLI and daprd from .runtime, the apps from .venv), so a recycled pid is never taken for it.
is_platform() {
  local pid
  for pid in $(pgrep -g "$1"); do
    [[ "$(cmdline "$pid")" == *"$root/"* ]] && return 0
  done
  return 1
}

# Dapr's sentry runs beside the CLI, not under it (scripts/control-plane.sh sentry): its pid is kept here.
sentry_pid_file=.data/platform/sentry.pid

# Stops sentry $1 (a pid) when it is ours: SIGTERM, then SIGKILL after 10 s.
stop_sentry() {
  local pid="$1" deadline
  [[ -n "$pid" ]] && [[ "$(cmdline "$pid")" == *"$root/.data/sentry"* ]] || {
    rm -f "$sentry_pid_file"
    return 0
  }
  kill -TERM "$pid" 2>/dev/null || true
  deadline=$((SECONDS + 10))
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$sentry_pid_file"
}

# The servers (brokers, stores, Zipkin, the monitoring stack) a start brought up, one name per
# line, so `make down` stops those and leaves the ones that ran before (a `make test`'s, one
# started by hand).
servers_file=.data/platform/servers
running_servers() { bash scripts/infra.sh status | awk '$2 == "running" { print $1 }'; }

# `run-platform.sh stop-servers` (make down's second step): stop the servers starts brought up.
if [[ "$profile" == stop-servers ]]; then
  if [[ -s "$servers_file" ]]; then
    # shellcheck disable=SC2046 # one server name per word
    bash scripts/infra.sh stop $(sort -u "$servers_file")
  else
    echo "servers: none that \`make up\` started"
  fi
  rm -f "$servers_file"
  exit 0
fi

# `run-platform.sh stop` (make down): stop the platform a `make up` started, wherever it runs.
if [[ "$profile" == stop ]]; then
  if [[ -f "$pid_file" ]] && pgid="$(<"$pid_file")" && is_platform "$pgid"; then
    echo "platform: stopping every app, sidecar and the control plane (process group $pgid)"
    stop_group "$pgid"
    echo "platform: stopped"
  else
    echo "platform: not running"
  fi
  rm -f "$pid_file"
  # The `make up` script stops its sentry when the CLI goes; one it left (killed) goes here.
  stop_sentry "$(cat "$sentry_pid_file" 2>/dev/null)"
  exit 0
fi

# `run-platform.sh running`: exit 0 when a platform that `make up` started from this checkout runs.
if [[ "$profile" == running ]]; then
  [[ -f "$pid_file" ]] && is_platform "$(<"$pid_file")"
  exit
fi

# The ports of every app, sidecar and control-plane server (dapr.yaml, scripts/control-plane.sh):
# one already taken is named with the process holding it, instead of an app failing to bind.
check_ports() {
  local port what line pid owner
  while read -r port what; do
    line="$(ss -ltnpH "sport = :$port" 2>/dev/null | head -n 1)"
    [[ -n "$line" ]] || continue
    pid="$(grep -oE 'pid=[0-9]+' <<<"$line" | head -n 1 | cut -d= -f2)"
    owner="a process ss cannot name (ss -ltnp as root shows it)"
    [[ -n "$pid" ]] && owner="pid $pid: $(cmdline "$pid" | cut -c1-160)"
    echo "platform: error: 127.0.0.1:$port ($what) is already taken by $owner." >&2
    echo "platform: stop it first; \`make down\` stops a platform that \`make up\` started." >&2
    exit 1
  done < <(
    awk '/appID:/ { app = $NF } /(appPort|daprHTTPPort|daprGRPCPort|daprInternalGRPCPort|metricsPort):/ {
      key = $1; sub(":", "", key); print $2, app "\x27s " key }' dapr.yaml
    grep -oE -- '-port [0-9]+|127\.0\.0\.1:[0-9]+' scripts/control-plane.sh | grep -oE '[0-9]+$' |
      sed 's/$/ Dapr control plane/'
  )
}
if [[ -f "$pid_file" ]] && is_platform "$(<"$pid_file")"; then
  echo "platform: error: already running (process group $(<"$pid_file")); \`make down\` stops it" >&2
  exit 1
fi
check_ports

# The profile's folder (default, a folder of components/profiles/ or any folder with a
# profile.yaml) and the servers its profile.yaml declares: nothing here names a profile.
folder="$(bash scripts/infra.sh profile-dir "$profile")" || exit 2
servers_before="$(running_servers)"
bash scripts/infra.sh start "profile:$folder" zipkin monitoring
mkdir -p "$(dirname "$servers_file")"
for name in $(running_servers); do
  grep -qx "$name" <<<"$servers_before" || echo "$name"
done >>"$servers_file"

# The run file the CLI gets: dapr.yaml with the profile's folder for ./components, per app one
# Configuration (dapr-config/config.yaml + dapr-config/access/<app>.yaml + mTLS on), and the
# gateway's key store (.data/dapr-resources/gateway-keys.yaml, which scripts/api_keys.py rewrites),
# beside dapr.yaml so its relative paths still hold (git-ignored).
[[ "$folder" == /* ]] || folder="./$folder"
run_file=".dapr.$(basename "$folder").yaml"
uv run --frozen --no-sync python scripts/sidecar_configs.py dapr.yaml "$folder" "$run_file" .data/dapr-config \
  .data/dapr-resources/gateway-keys.yaml

secret() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' .data/secrets.json "$1"; }
export DAPR_API_TOKEN="$(secret dapr-api-token)" APP_API_TOKEN="$(secret app-api-token)"

# mTLS between sidecars, with identities from Dapr's sentry: each callee's sidecar checks the
# caller's SPIFFE id against its access policy. Sentry must serve before the first daprd starts.
mkdir -p "$(dirname "$sentry_pid_file")"
bash scripts/control-plane.sh sentry >.data/platform/sentry.log 2>&1 &
sentry=$!
echo "$sentry" >"$sentry_pid_file"
deadline=$((SECONDS + 60))
until [[ -s .data/sentry/ca.crt ]] && (exec 3<>/dev/tcp/127.0.0.1/50001) 2>/dev/null; do
  if ! kill -0 "$sentry" 2>/dev/null || ((SECONDS >= deadline)); then
    echo "platform: error: Dapr's sentry did not start; its log (.data/platform/sentry.log) ends:" >&2
    tail -n 20 .data/platform/sentry.log >&2
    stop_sentry "$sentry"
    exit 1
  fi
  sleep 0.1
done
export DAPR_TRUST_ANCHORS="$(<.data/sentry/ca.crt)"
echo "platform: starting every app with its sidecar ($profile profile); gateway on http://127.0.0.1:8080"
echo "platform: metrics on http://127.0.0.1:9090 (Prometheus), logs on http://127.0.0.1:9428/select/vmui (VictoriaLogs)"
# --log-as-json: daprd writes JSON lines too (the CLI passes it on), which the log store keeps as fields.
# The apps' own logs (.dapr/logs/<app>_app_<time>.log, the CLI's) newer than this mark are this run's.
touch .data/platform/started
"$DAPR_RUNTIME_PATH/bin/dapr" --log-as-json run -f "$run_file" &
cli=$!
mkdir -p "$(dirname "$pid_file")"
echo "$cli" >"$pid_file"

# The ready line: once every app of the run file answers /readyz with 200 (its sidecar's components
# loaded and its own needs met, e.g. inference's model; no token needed there), polled every half
# second while the CLI runs. The time counts from this script's start (servers, sentry, apps).
app_port() { awk -v id="$1" '/appID:/ { app = $NF } /appPort:/ && app == id { print $2 }' "$run_file"; }
# An app that exits before the platform is ready (a wrong setting, a missing model) fails the
# start, naming the app, with the end of its log: the CLI runs the other apps on and says only
# "The App process exited with error code", without the app's name (a new-user trial waited
# minutes for a ready line that could not come).
dead_app() {
  local log
  for log in $(find .dapr/logs -name '*_app_*.log' -newer .data/platform/started 2>/dev/null); do
    if grep -q '"The App process exited with error code' "$log"; then
      echo "platform: error: $(basename "$log" | sed 's/_app_.*//') exited during start-up; its log ($log) ends:" >&2
      grep -v '"The App process exited\|"Error exiting App' "$log" | tail -n 25 >&2
      return 0
    fi
  done
  return 1
}
announce_ready() {
  local port ports ready
  ports="$(awk '/appPort:/ { print $2 }' "$run_file")"
  while kill -0 "$cli" 2>/dev/null; do
    if dead_app; then
      kill -USR1 $$
      return 1
    fi
    ready=1
    for port in $ports; do
      curl -fs -o /dev/null --max-time 2 "http://127.0.0.1:$port/readyz" || { ready=""; break; }
    done
    if [[ -n "$ready" ]]; then
      echo "platform: ready in ${SECONDS} s: ui http://127.0.0.1:$(app_port ui), gateway" \
        "http://127.0.0.1:$(app_port gateway) (API keys: \"gateway-api-keys\" in .data/secrets.json;" \
        "scripts/api_keys.py adds, rotates and removes them)"
      return 0
    fi
    sleep 0.5
  done
}
announce_ready &
ready_watch=$!

# Ctrl-C (make and this script get the terminal's SIGINT), SIGTERM to make or to this script.
on_signal() {
  trap '' INT TERM
  kill "$ready_watch" 2>/dev/null || true
  echo "platform: stopping every app, sidecar and the control plane..."
  # Before the CLI's setpgid its group is ours: then it has started nothing, and only it goes.
  if [[ "$(ps -o pgid= -p "$cli" | tr -d ' ')" == "$cli" ]]; then stop_group "$cli"; else kill -KILL "$cli"; fi
  rm -f "$pid_file"
  stop_sentry "$sentry"
  echo "platform: stopped"
  exit "$1"
}
trap 'on_signal 130' INT
trap 'on_signal 143' TERM
trap 'on_signal 1' USR1  # an app died during start-up (announce_ready)
status=0
wait "$cli" || status=$?
kill "$ready_watch" 2>/dev/null || true
# The CLI ended by itself (a signal sent to it alone, `make down`, a failed start): what it left
# behind in its group goes too.
stop_group "$cli"
rm -f "$pid_file"
stop_sentry "$sentry"
exit "$status"
