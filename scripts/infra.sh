#!/usr/bin/env bash
# Local infrastructure for the platform, each server run as our own process (no systemd, no
# containers), bound to 127.0.0.1 only, with data, logs and pid files under .data/<name>/.
#
#   scripts/infra.sh install              apt packages (Chromium included), Java check, Zipkin jar (root; once per machine)
#   scripts/infra.sh start [names...]     start and wait until ready (idempotent)
#   scripts/infra.sh stop [names...]      stop and wait until gone (idempotent)
#   scripts/infra.sh status               one line per server
#   scripts/infra.sh secrets              create .data/secrets.json when missing
#
#   scripts/infra.sh profile-dir PROFILE  the components folder of a profile (see "profiles" below)
#
# names: redis rabbitmq postgres mosquitto nats zipkin prometheus alertmanager victorialogs vlagent;
# `default` = redis zipkin; `monitoring` = prometheus alertmanager victorialogs vlagent; none = all;
# `profile:PROFILE` = the servers a profile's profile.yaml declares; `profiles` = every profile's.
# VictoriaLogs and vlagent are built by scripts/build-victorialogs.sh (make setup).
# Passwords come from .data/secrets.json (scripts/secrets.sh) and are pushed into every server
# on each start, so a regenerated secrets file never leaves a server on an old password.
#
# Environment knobs:
#   INFRA_TIMEOUT   seconds to wait for readiness (default: per server, 20-120)
#   ZIPKIN_VERSION  io.zipkin:zipkin-server version to fetch (default below)
#   MAVEN_REPO_URL  Maven repository base URL (default: Maven Central)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA="$ROOT/.data"
RUNTIME="$ROOT/.runtime"
# Debian installs several daemons under sbin, which a non-root PATH lacks.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

# shellcheck source=scripts/secrets.sh
source "$ROOT/scripts/secrets.sh"

MONITORING_SERVERS=(prometheus alertmanager victorialogs vlagent)
ALL_SERVERS=(redis rabbitmq postgres mosquitto nats zipkin "${MONITORING_SERVERS[@]}")
DEFAULT_SERVERS=(redis zipkin)

declare -A PORT=([redis]=6379 [rabbitmq]=5672 [postgres]=5432 [mosquitto]=1883 [nats]=4222 [zipkin]=9411
  [prometheus]=9090 [alertmanager]=9093 [victorialogs]=9428 [vlagent]=9429)
# Seconds to wait for readiness; RabbitMQ and Zipkin boot a VM, slow on a 2-core machine.
declare -A READY_TIMEOUT=([redis]=30 [rabbitmq]=120 [postgres]=60 [mosquitto]=20 [nats]=30 [zipkin]=120
  [prometheus]=60 [alertmanager]=30 [victorialogs]=30 [vlagent]=30)
# Word that must appear in /proc/<pid>/cmdline, so a recycled pid is never taken for our server.
declare -A PROC_MATCH=([redis]=redis-server [rabbitmq]=rabbitmq [postgres]=postgres
  [mosquitto]=mosquitto [nats]=nats-server [zipkin]=zipkin [prometheus]="prometheus --config.file"
  [alertmanager]=prometheus-alertmanager [victorialogs]=victoria-logs [vlagent]=vlagent)
# PostgreSQL treats SIGTERM as "smart" shutdown, which waits for every client to leave;
# SIGINT is its "fast" shutdown (still clean). The others shut down cleanly on SIGTERM.
declare -A STOP_SIGNAL=([postgres]=INT)

ZIPKIN_VERSION="${ZIPKIN_VERSION:-3.6.1}" # 3.x runs on Java 17 (its manifest says Java-Version: 17)
MAVEN_REPO_URL="${MAVEN_REPO_URL:-https://repo1.maven.org/maven2}"
ZIPKIN_JAR="$RUNTIME/zipkin/zipkin-server-$ZIPKIN_VERSION-exec.jar"

# RabbitMQ's own scripts: /usr/sbin/rabbitmq* are wrappers that `su` to the rabbitmq user and
# drop our environment (HOME, node name, paths), so call the real scripts.
RABBITMQ_BIN=/usr/lib/rabbitmq/bin

log() { printf 'infra: %s\n' "$*"; }
die() {
  printf 'infra: error: %s\n' "$*" >&2
  exit 1
}

is_root() { [[ "$(id -u)" -eq 0 ]]; }
dir_of() { printf '%s\n' "$DATA/$1"; }
pid_file() { printf '%s\n' "$DATA/$1/$1.pid"; }
log_file() { printf '%s\n' "$DATA/$1/$1.log"; }
rel() { printf '%s\n' "${1#"$ROOT"/}"; }
now_us() { printf '%s\n' "${EPOCHREALTIME/./}"; }
seconds_since() { awk -v us="$(($(now_us) - $1))" 'BEGIN { printf "%.1f", us / 1e6 }'; }

# True when something accepts TCP connections on 127.0.0.1:PORT (bash's /dev/tcp, no tools).
port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Names the process listening on 127.0.0.1:PORT ("pid N: command line"), for an error message.
port_owner() {
  local pid
  pid="$(ss -ltnpH "sport = :$1" 2>/dev/null | grep -oE 'pid=[0-9]+' | head -n 1 | cut -d= -f2)"
  if [[ -n "$pid" ]]; then
    printf 'pid %s: %s\n' "$pid" "$({ tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | cut -c1-160)"
  else
    printf 'see: ss -ltnp\n'
  fi
}

# Prints the pid of our running server NAME and succeeds; fails when it is not running.
running_pid() {
  local name="$1" file pid
  file="$(pid_file "$name")"
  [[ -f "$file" ]] || return 1
  pid="$(<"$file")"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  # Braces: 2>/dev/null then covers the redirection of a pid that exits meanwhile.
  [[ "$({ tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null)" == *"${PROC_MATCH[$name]}"* ]] || return 1
  printf '%s\n' "$pid"
}

# The OS user a server runs as. PostgreSQL refuses to run as root and Mosquitto would switch
# users itself, so under root both run as their Debian package's user; everything else (and
# everything for a non-root developer) runs as the caller.
server_user() {
  case "$1" in
    postgres | mosquitto)
      if is_root && id -u "$1" >/dev/null 2>&1; then printf '%s\n' "$1"; fi
      ;;
  esac
}

# Runs a command as USER (empty: as ourselves). setpriv execs in place, so the pid we record
# is the server's own pid, not a wrapper's (runuser/su fork and stay as parent).
as_user() {
  local user="$1"
  shift
  if [[ -n "$user" ]]; then
    # From /: our working directory may be one that USER cannot enter.
    (cd / && setpriv --reuid="$user" --regid="$user" --init-groups -- "$@")
  else
    "$@"
  fi
}

# Data directory of a server that runs as another OS user (postgres, mosquitto under root).
# That user must be able to walk down to it. When the repo sits below a private directory
# (/root is 0700 on Debian) the data goes to /var/lib/genai-infra/<repo hash>/<name> instead,
# with .data/<name> a symlink to it; prints the real path, which is what the server is given.
foreign_dir() {
  local name="$1" user="$2" link target
  link="$DATA/$name"
  # Traverse-only for others: each entry below guards itself (secrets.json 0600, dirs 0700).
  chmod 711 "$DATA"
  if [[ ! -L "$link" ]] && ! as_user "$user" test -x "$DATA"; then
    target="/var/lib/genai-infra/$(printf '%s' "$ROOT" | sha256sum | cut -c1-12)/$name"
    if [[ -d "$link" ]]; then
      rmdir "$link" 2>/dev/null ||
        die "$name: user $user cannot reach $(rel "$link") (a parent directory is private) and it holds data; move it to $target and link it"
    fi
    mkdir -p "$target"
    ln -s "$target" "$link"
    log "$name: user $user cannot reach the repo; data kept in $target (linked from $(rel "$link"))" >&2
  fi
  chown -R "$user:" "$link/"
  chmod 700 "$link/"
  readlink -f "$link"
}

# Starts a server in its own session (so Ctrl-C in this terminal does not reach it and it
# outlives this script), appending its output to .data/<name>/<name>.log. fd 9 is our lock
# (take_lock): a server that inherited it would hold the lock for as long as it runs.
launch() {
  local name="$1"
  shift
  local user
  user="$(server_user "$name")"
  # A marker, so the tail shown on failure is told apart from earlier runs' lines.
  printf -- '--- %s: started by scripts/infra.sh ---\n' "$(date -Is)" >>"$(log_file "$name")"
  if [[ -n "$user" ]]; then
    setsid setpriv --reuid="$user" --regid="$user" --init-groups -- "$@" \
      </dev/null >>"$(log_file "$name")" 2>&1 9>&- &
  else
    setsid "$@" </dev/null >>"$(log_file "$name")" 2>&1 9>&- &
  fi
  printf '%s\n' "$!" >"$(pid_file "$name")"
}

# Prints the tail of NAME's logs to stderr, for an error message that explains itself.
show_logs() {
  local name="$1" file
  for file in "$(log_file "$name")" "${@:2}"; do
    [[ -s "$file" ]] || continue
    printf 'infra: --- last lines of %s ---\n' "$(rel "$file")" >&2
    tail -n 20 "$file" >&2
  done
}

# Polls CHECK... every 0.2 s until it succeeds; fails fast if the server dies, and gives up
# (stopping the half-started server) after the timeout. Extra log files: INFRA_EXTRA_LOGS.
wait_ready() {
  local name="$1"
  shift
  local timeout="${INFRA_TIMEOUT:-${READY_TIMEOUT[$name]}}" pid started
  pid="$(<"$(pid_file "$name")")"
  started="$(now_us)"
  until "$@" >/dev/null 2>&1; do
    if ! kill -0 "$pid" 2>/dev/null; then
      show_logs "$name" "${INFRA_EXTRA_LOGS:-}"
      rm -f "$(pid_file "$name")"
      die "$name exited during startup; see $(rel "$(log_file "$name")")"
    fi
    if (($(now_us) - started > timeout * 1000000)); then
      show_logs "$name" "${INFRA_EXTRA_LOGS:-}"
      stop_one "$name" >/dev/null 2>&1 || true
      die "$name not ready after ${timeout}s; see $(rel "$(log_file "$name")")"
    fi
    sleep 0.2
  done
}

# ---------------------------------------------------------------------------- redis

redis_start() {
  local dir conf password
  dir="$(dir_of redis)"
  conf="$dir/redis.conf"
  password="$(secrets_get redis-password)"
  # Rewritten on every start: it carries the password, so it follows the secrets file.
  (
    umask 077
    cat >"$conf" <<EOF
# Generated by scripts/infra.sh on every start; edit the script, not this file.
bind 127.0.0.1
port ${PORT[redis]}
protected-mode yes
daemonize no
dir "$dir"
# AOF with fsync once a second: at most about a second of writes lost on a crash.
appendonly yes
appendfsync everysec
requirepass $password
EOF
  )
  launch redis redis-server "$conf"
  wait_ready redis redis_ping
}

redis_ping() {
  # REDISCLI_AUTH keeps the password out of the process list.
  [[ "$(REDISCLI_AUTH="$(secrets_get redis-password)" redis-cli -h 127.0.0.1 -p "${PORT[redis]}" ping)" == PONG ]]
}

# ---------------------------------------------------------------------------- rabbitmq

# Environment shared by the server and its CLI tools (they must agree on node name, cookie
# and dist settings). Called inside subshells so it never leaks into the other servers.
rabbitmq_env() {
  local dir
  dir="$(dir_of rabbitmq)"
  # The Erlang cookie lives in $HOME/.erlang.cookie: keep it under .data, not in root's home.
  export HOME="$dir/home"
  export RABBITMQ_NODENAME=genai@localhost
  export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
  export RABBITMQ_NODE_PORT="${PORT[rabbitmq]}"
  export RABBITMQ_DIST_PORT=25672
  # epmd (the Erlang port mapper) is started by the first node; this binds it to loopback.
  export ERL_EPMD_ADDRESS=127.0.0.1
  export ERL_EPMD_PORT=4369
  # Erlang distribution listens on all interfaces unless told otherwise, for the server
  # (port 25672) and for every CLI invocation (ports 35672-35682).
  export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
  export RABBITMQ_CTL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
  export RABBITMQ_MNESIA_BASE="$dir/mnesia"
  export RABBITMQ_LOG_BASE="$dir/log"
  export RABBITMQ_PID_FILE="$dir/beam.pid"
  # Our own files instead of /etc/rabbitmq/*, so a machine-wide config cannot widen the binding.
  export RABBITMQ_CONF_ENV_FILE="$dir/rabbitmq-env.conf"
  export RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf"
  export RABBITMQ_ADVANCED_CONFIG_FILE="$dir/advanced.config"
  # No plugins: the management UI would open another listener.
  export RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins"
}

rabbitmqctl_() {
  (
    rabbitmq_env
    "$RABBITMQ_BIN/rabbitmqctl" "$@"
  )
}

rabbitmq_start() {
  local dir password
  dir="$(dir_of rabbitmq)"
  password="$(secrets_get rabbitmq-password)"
  mkdir -p "$dir/home" "$dir/mnesia" "$dir/log"
  : >"$dir/rabbitmq-env.conf"
  printf '[].\n' >"$dir/enabled_plugins"
  (
    umask 077
    # default_user/default_pass apply on the first boot only: the node is then created with
    # our user and without `guest`. Later starts sync the password in rabbitmq_users.
    cat >"$dir/rabbitmq.conf" <<EOF
# Generated by scripts/infra.sh on every start; edit the script, not this file.
listeners.tcp.default = 127.0.0.1:${PORT[rabbitmq]}
loopback_users.guest = true
default_user = genai
default_pass = $password
default_permissions.configure = .*
default_permissions.read = .*
default_permissions.write = .*
default_user_tags.administrator = true
log.file.level = info
EOF
  )
  (
    rabbitmq_env
    launch rabbitmq "$RABBITMQ_BIN/rabbitmq-server"
  )
  INFRA_EXTRA_LOGS="$dir/log/genai@localhost.log" wait_ready rabbitmq port_open "${PORT[rabbitmq]}"
  rabbitmqctl_ --quiet await_startup --timeout 60 >/dev/null
  rabbitmq_users "$password"
}

# Makes sure user genai exists with the current password and full rights on vhost /, and that
# `guest` is gone (a data dir created before this script may still have it).
rabbitmq_users() {
  local password="$1" users
  users="$(rabbitmqctl_ --quiet list_users --no-table-headers | awk '{ print $1 }')"
  # With the password left off, rabbitmqctl reads it from stdin: it stays out of `ps`.
  if ! grep -qx genai <<<"$users"; then
    rabbitmqctl_ --quiet add_user genai <<<"$password" >/dev/null
  else
    rabbitmqctl_ --quiet change_password genai <<<"$password" >/dev/null
  fi
  rabbitmqctl_ --quiet set_user_tags genai administrator >/dev/null
  rabbitmqctl_ --quiet set_permissions -p / genai '.*' '.*' '.*' >/dev/null
  if grep -qx guest <<<"$users"; then
    rabbitmqctl_ --quiet delete_user guest >/dev/null
  fi
}

# epmd outlives the node that started it; stop it when no Erlang node is registered any more,
# so `stop` leaves no listener behind.
rabbitmq_stop_epmd() {
  command -v epmd >/dev/null || return 0
  local names
  names="$(ERL_EPMD_PORT=4369 epmd -names 2>/dev/null)" || return 0
  if ! grep -q '^name ' <<<"$names"; then
    ERL_EPMD_PORT=4369 epmd -kill >/dev/null 2>&1 || true
    log "rabbitmq: epmd stopped (no Erlang node left)"
  fi
}

# ---------------------------------------------------------------------------- postgres

pg_bindir() {
  local dir
  # Debian keeps the server binaries in a versioned directory, off PATH; take the newest.
  dir="$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -type d -name bin 2>/dev/null | sort -V | tail -n 1)"
  if [[ -n "$dir" ]]; then
    printf '%s\n' "$dir"
  elif command -v postgres >/dev/null; then
    dirname "$(command -v postgres)"
  else
    die "PostgreSQL binaries not found; run: scripts/infra.sh install"
  fi
}

postgres_start() {
  local dir bin user password
  dir="$(dir_of postgres)"
  bin="$(pg_bindir)"
  user="$(server_user postgres)"
  password="$(secrets_get postgres-password)"
  if [[ -n "$user" ]]; then
    dir="$(foreign_dir postgres "$user")"
  fi
  mkdir -p "$dir/run"
  [[ -z "$user" ]] || chown "$user:" "$dir/run"
  if [[ ! -f "$dir/pgdata/PG_VERSION" ]]; then
    log "postgres: initdb $(rel "$dir/pgdata")"
    # Unix socket: peer auth (the bootstrap below); TCP: passwords only.
    as_user "$user" "$bin/initdb" -D "$dir/pgdata" -E UTF8 --locale=C \
      --auth-local=peer --auth-host=scram-sha-256 >>"$(log_file postgres)" 2>&1 ||
      die "initdb failed; see $(rel "$(log_file postgres)")"
  fi
  # Settings on the command line rather than in postgresql.conf: they follow the repo if it
  # moves, and nothing secret is among them.
  launch postgres "$bin/postgres" -D "$dir/pgdata" \
    -c listen_addresses=127.0.0.1 -c port="${PORT[postgres]}" \
    -c unix_socket_directories="$dir/run"
  wait_ready postgres "$bin/pg_isready" -q -h 127.0.0.1 -p "${PORT[postgres]}"
  # Role and database genai; the password is set on every start to follow the secrets file.
  # SQL goes on stdin so the password never shows in the process list.
  as_user "$user" "$bin/psql" -X -q -v ON_ERROR_STOP=1 -h "$dir/run" -p "${PORT[postgres]}" -d postgres \
    >/dev/null <<EOF
SELECT 'CREATE ROLE genai LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'genai')\gexec
ALTER ROLE genai WITH LOGIN PASSWORD '$password';
SELECT 'CREATE DATABASE genai OWNER genai' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'genai')\gexec
EOF
}

# ---------------------------------------------------------------------------- mosquitto

mosquitto_start() {
  local dir user
  dir="$(dir_of mosquitto)"
  user="$(server_user mosquitto)"
  if [[ -n "$user" ]]; then
    dir="$(foreign_dir mosquitto "$user")"
  fi
  (
    umask 077
    cat >"$dir/mosquitto.conf" <<EOF
# Generated by scripts/infra.sh on every start; edit the script, not this file.
per_listener_settings false
listener ${PORT[mosquitto]} 127.0.0.1
allow_anonymous false
password_file $dir/passwd
persistence true
persistence_location $dir/
# stderr: mosquitto does not flush stdout when it is not a terminal.
log_dest stderr
EOF
    rm -f "$dir/passwd"
    # -b takes the password as an argument (visible to local process listings for a moment);
    # mosquitto_passwd has no stdin mode, and the file it writes holds only a salted hash.
    mosquitto_passwd -c -b "$dir/passwd" genai "$(secrets_get mosquitto-password)"
  )
  if [[ -n "$user" ]]; then
    chown -R "$user:" "$dir"
  fi
  launch mosquitto mosquitto -c "$dir/mosquitto.conf"
  wait_ready mosquitto port_open "${PORT[mosquitto]}"
}

# ---------------------------------------------------------------------------- nats

nats_start() {
  local dir
  dir="$(dir_of nats)"
  (
    umask 077
    # No http/https monitor port, no cluster, gateway or leafnode listeners: client port only.
    cat >"$dir/nats.conf" <<EOF
# Generated by scripts/infra.sh on every start; edit the script, not this file.
server_name: genai
listen: 127.0.0.1:${PORT[nats]}
jetstream {
  # nats-server adds a "jetstream" directory below this one.
  store_dir: "$dir"
}
# A token rather than user/password: Dapr's pubsub.jetstream authenticates with a token, a JWT
# and seed, or a client certificate, never a password.
authorization {
  token: "$(secrets_get nats-password)"
}
EOF
  )
  launch nats nats-server -c "$dir/nats.conf"
  wait_ready nats nats_ready
  nats_ensure
}

# One JetStream stream per platform topic (scripts/nats_streams.py says why); run on every
# start, also when the server already runs, so a topic added since gets its stream.
nats_ensure() {
  (cd "$ROOT" && uv run --frozen --no-sync python scripts/nats_streams.py) >/dev/null ||
    die "nats: declaring the JetStream streams failed (scripts/nats_streams.py)"
}

# A NATS server greets every client with an INFO line; it lists JetStream once that is up.
# A subshell, so the socket (and a failed connect) stays out of this shell.
nats_ready() (
  exec 3<>"/dev/tcp/127.0.0.1/${PORT[nats]}" || exit 1
  IFS= read -r -t 2 line <&3 || true
  [[ "$line" == INFO* && "$line" == *'"jetstream":true'* ]]
)

# ---------------------------------------------------------------------------- zipkin

zipkin_fetch() {
  [[ -f "$ZIPKIN_JAR" ]] && return 0
  local path url expected actual tmp cached
  path="io/zipkin/zipkin-server/$ZIPKIN_VERSION/zipkin-server-$ZIPKIN_VERSION-exec.jar"
  url="$MAVEN_REPO_URL/$path"
  # The local Maven repository doubles as a cache across clones (CI clones afresh each run).
  cached="${HOME:-/root}/.m2/repository/$path"
  mkdir -p "$(dirname "$ZIPKIN_JAR")"
  if [[ -f "$cached" ]]; then
    cp "$cached" "$ZIPKIN_JAR.part" && mv "$ZIPKIN_JAR.part" "$ZIPKIN_JAR"
    log "zipkin: copied from $cached"
    return 0
  fi
  command -v curl >/dev/null || die "curl not found; run: scripts/infra.sh install"
  tmp="$ZIPKIN_JAR.part"
  log "zipkin: downloading $url"
  curl -fsSL --retry 3 -o "$tmp" "$url" || die "download failed: $url"
  # Maven Central publishes a .sha1 beside every artifact; refuse a truncated or altered jar.
  expected="$(curl -fsSL --retry 3 "$url.sha1" | cut -c1-40)"
  actual="$(sha1sum "$tmp" | cut -c1-40)"
  if [[ "$expected" != "$actual" ]]; then
    rm -f "$tmp"
    die "zipkin jar checksum mismatch (expected $expected, got $actual)"
  fi
  mv "$tmp" "$ZIPKIN_JAR"
  log "zipkin: saved $(rel "$ZIPKIN_JAR")"
  if mkdir -p "$(dirname "$cached")" 2>/dev/null && cp "$ZIPKIN_JAR" "$cached.part" 2>/dev/null; then
    mv "$cached.part" "$cached"
  fi
}

zipkin_start() {
  command -v java >/dev/null || die "java not found; run: scripts/infra.sh install"
  zipkin_fetch
  # A clean environment: Zipkin turns on Kafka/RabbitMQ/ActiveMQ collectors or other storage
  # when it sees their variables, and none of those belong here. Armeria (not Tomcat) serves
  # Zipkin 3, so the bind address is an Armeria port setting; Spring Boot replaces a list
  # wholesale, hence port and protocol are restated. Armeria's own DNS resolver keeps a UDP
  # socket bound to 0.0.0.0 for its whole life; the JDK resolver opens one only per lookup.
  launch zipkin env -i PATH="$PATH" HOME="$(dir_of zipkin)" ${JAVA_HOME:+JAVA_HOME="$JAVA_HOME"} \
    STORAGE_TYPE=mem MEM_MAX_SPANS=100000 \
    java -Xms64m -Xmx512m -Djava.net.preferIPv4Stack=true \
    -Dcom.linecorp.armeria.useJdkDnsResolver=true -jar "$ZIPKIN_JAR" \
    "--armeria.ports[0].ip=127.0.0.1" "--armeria.ports[0].port=${PORT[zipkin]}" \
    "--armeria.ports[0].protocols[0]=http"
  wait_ready zipkin curl -fsS -o /dev/null "http://127.0.0.1:${PORT[zipkin]}/health"
}

# ---------------------------------------------------------------------------- monitoring
# Prometheus scrapes every app and sidecar of dapr.yaml and evaluates monitoring/rules/;
# Alertmanager posts alerts to the monitor app; VictoriaLogs keeps every log line that vlagent
# reads from .dapr/logs/, where `dapr run -f` writes each app's and each daprd's output.

VICTORIALOGS_BIN="$RUNTIME/victorialogs"

# Targets (from dapr.yaml), rules (monitoring/rules/) and Alertmanager's receiver, rewritten on
# every start. MONITORING_* variables shorten the intervals (apps/monitor/src/monitor/stack.py).
monitoring_config() {
  command -v uv >/dev/null || die "uv not found; run: make setup"
  (cd "$ROOT" && uv run --frozen --no-sync python -m monitor.stack --run-file dapr.yaml \
    --rules monitoring/rules --data "$DATA") || die "generating the monitoring configuration failed"
}

prometheus_start() {
  local dir
  dir="$(dir_of prometheus)"
  command -v prometheus >/dev/null || die "prometheus not found; run: scripts/infra.sh install"
  monitoring_config
  launch prometheus prometheus --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/tsdb" \
    --storage.tsdb.retention.time="${PROMETHEUS_RETENTION:-7d}" \
    --web.listen-address="127.0.0.1:${PORT[prometheus]}"
  wait_ready prometheus curl -fsS -o /dev/null "http://127.0.0.1:${PORT[prometheus]}/-/ready"
}

alertmanager_start() {
  local dir
  dir="$(dir_of alertmanager)"
  [[ -x /usr/bin/prometheus-alertmanager ]] || die "alertmanager not found; run: scripts/infra.sh install"
  monitoring_config
  # The monitor's webhook checks this bearer token (its app API token), as its sidecar would.
  (
    umask 077
    secrets_get app-api-token >"$dir/webhook-token"
  )
  # Start without the notification log (data/nflog; silences stay). It records which alerts of a
  # group were last sent as firing, and is saved at stop: an alert sent as firing whose resolution
  # had not gone out yet (resolutions go at the next group_interval) stayed "firing" in it, so the
  # same alert (same labels, same fingerprint) firing anew after the restart was taken for a repeat
  # and held back for repeat_interval, 4 h (tests/e2e/test_monitoring.py). Its one receiver, the
  # monitor, names each event by fingerprint, start and status (monitor/alerts.py): an alert sent
  # again after a start is the same event, seen once.
  rm -f "$dir/data/nflog"
  # An empty cluster address turns off the HA gossip listener (0.0.0.0:9094 by default).
  launch alertmanager /usr/bin/prometheus-alertmanager --config.file="$dir/alertmanager.yml" \
    --storage.path="$dir/data" --web.listen-address="127.0.0.1:${PORT[alertmanager]}" \
    --cluster.listen-address=
  wait_ready alertmanager curl -fsS -o /dev/null "http://127.0.0.1:${PORT[alertmanager]}/-/ready"
}

victorialogs_start() {
  local dir
  dir="$(dir_of victorialogs)"
  [[ -x "$VICTORIALOGS_BIN/victoria-logs" ]] || die "VictoriaLogs not built; run: scripts/build-victorialogs.sh"
  launch victorialogs "$VICTORIALOGS_BIN/victoria-logs" -storageDataPath="$dir/data" \
    -httpListenAddr="127.0.0.1:${PORT[victorialogs]}" -retentionPeriod="${VICTORIALOGS_RETENTION:-7d}"
  wait_ready victorialogs curl -fsS -o /dev/null "http://127.0.0.1:${PORT[victorialogs]}/health"
}

# vlagent's file collector: JSON lines keep their fields, other lines are kept as text (_msg);
# each line gets its file's path (field `file`), which names the app and app/daprd.
vlagent_start() {
  local dir
  dir="$(dir_of vlagent)"
  [[ -x "$VICTORIALOGS_BIN/vlagent" ]] || die "vlagent not built; run: scripts/build-victorialogs.sh"
  mkdir -p "$ROOT/.dapr/logs"
  launch vlagent "$VICTORIALOGS_BIN/vlagent" -httpListenAddr="127.0.0.1:${PORT[vlagent]}" \
    -tmpDataPath="$dir" -remoteWrite.url="http://127.0.0.1:${PORT[victorialogs]}/insert/native" \
    "-fileCollector.glob=$ROOT/.dapr/logs/*.log" -fileCollector.refreshInterval=1s
  wait_ready vlagent curl -fsS -o /dev/null "http://127.0.0.1:${PORT[vlagent]}/health"
}

# ---------------------------------------------------------------------------- commands

start_one() {
  local name="$1" pid started
  if pid="$(running_pid "$name")"; then
    log "$name: already running (pid $pid, 127.0.0.1:${PORT[$name]})"
    # Setup a server needs on every start (nats: its streams) runs again, idempotently.
    if declare -F "${name}_ensure" >/dev/null; then "${name}_ensure"; fi
    return 0
  fi
  rm -f "$(pid_file "$name")"
  if port_open "${PORT[$name]}"; then
    die "$name: 127.0.0.1:${PORT[$name]} is taken by a process this script did not start ($(port_owner "${PORT[$name]}")); stop it first"
  fi
  mkdir -p "$(dir_of "$name")"
  chmod 700 "$(dir_of "$name")"
  log "$name: starting (log $(rel "$(log_file "$name")"))"
  started="$(now_us)"
  "${name}_start"
  log "$name: ready on 127.0.0.1:${PORT[$name]} (pid $(<"$(pid_file "$name")"), $(seconds_since "$started")s)"
}

stop_one() {
  local name="$1" pid started timeout=60
  if ! pid="$(running_pid "$name")"; then
    rm -f "$(pid_file "$name")"
    log "$name: not running"
    [[ "$name" == rabbitmq ]] && rabbitmq_stop_epmd
    return 0
  fi
  log "$name: stopping (pid $pid)"
  kill -s "${STOP_SIGNAL[$name]:-TERM}" "$pid" 2>/dev/null || true
  started="$(now_us)"
  while kill -0 "$pid" 2>/dev/null; do
    if (($(now_us) - started > timeout * 1000000)); then
      log "$name: still running after ${timeout}s, sending SIGKILL"
      kill -s KILL "$pid" 2>/dev/null || true
      timeout=$((timeout + 10))
    fi
    sleep 0.2
  done
  rm -f "$(pid_file "$name")"
  log "$name: stopped"
  [[ "$name" == rabbitmq ]] && rabbitmq_stop_epmd
  return 0
}

status_all() {
  local name pid
  for name in "${ALL_SERVERS[@]}"; do
    if pid="$(running_pid "$name")"; then
      printf '%-10s running  127.0.0.1:%-5s pid %s\n' "$name" "${PORT[$name]}" "$pid"
    elif port_open "${PORT[$name]}"; then
      printf '%-10s stopped  127.0.0.1:%-5s (port taken by another process)\n' "$name" "${PORT[$name]}"
    else
      printf '%-10s stopped  127.0.0.1:%-5s\n' "$name" "${PORT[$name]}"
    fi
  done
}

# ---------------------------------------------------------------------------- profiles
# A profile is a folder of Dapr components plus a profile.yaml naming the servers it needs
# (`servers: [nats, postgres]`): components/profile.yaml for the default, one per folder of
# components/profiles/. daprd skips the file (it has no apiVersion/kind). Nothing here names a
# profile, so adding one is a folder and no script change.

# Prints the folder of profile SPEC, relative to the repo root when inside it: `default`
# (components/), a folder name under components/profiles/, or a path to any folder that holds a
# profile.yaml.
profile_dir() {
  local spec="$1" dir
  if [[ "$spec" == default ]]; then
    dir="$ROOT/components"
  elif [[ -f "$spec/profile.yaml" ]]; then
    dir="$(cd "$spec" && pwd)"
  elif [[ -f "$ROOT/components/profiles/$spec/profile.yaml" ]]; then
    dir="$ROOT/components/profiles/$spec"
  else
    die "unknown profile '$spec': use default, a folder of components/profiles/ ($(profile_names)) or a folder with a profile.yaml"
  fi
  rel "$dir"
}

profile_names() {
  local file names=()
  for file in "$ROOT"/components/profiles/*/profile.yaml; do
    [[ -f "$file" ]] && names+=("$(basename "$(dirname "$file")")")
  done
  printf '%s' "${names[*]}"
}

# Prints the servers profile SPEC declares, one per line.
profile_servers() {
  local dir
  dir="$(profile_dir "$1")" || exit 1
  [[ "$dir" == /* ]] || dir="$ROOT/$dir"
  command -v uv >/dev/null || die "uv not found; run: make setup"
  (cd "$ROOT" && uv run --frozen --no-sync python -c '
import sys, yaml
servers = (yaml.safe_load(open(sys.argv[1])) or {}).get("servers")
if not isinstance(servers, list) or not all(isinstance(s, str) for s in servers):
    sys.exit(f"{sys.argv[1]}: servers must be a list of server names")
print(*servers, sep="\n")
' "$dir/profile.yaml") || die "reading $(rel "$dir")/profile.yaml failed"
}

# Expands the command-line names (none = all, `default` = redis zipkin, `profile:SPEC` = the
# servers profile SPEC declares, `profiles` = those of every profile) into SELECTED, each once.
select_servers() {
  SELECTED=()
  (($#)) || set -- "${ALL_SERVERS[@]}"
  local -a names=("$@") declared
  local name spec listed i=0
  while ((i < ${#names[@]})); do
    name="${names[i]}"
    i=$((i + 1))
    case "$name" in
      profiles)
        for spec in default $(profile_names); do names+=("profile:$spec"); done
        ;;
      profile:*)
        # A profile's names pass through this same check (an unknown one is refused).
        listed="$(profile_servers "${name#profile:}")" || exit 1
        mapfile -t declared <<<"$listed"
        names+=("${declared[@]}")
        ;;
      default) names+=("${DEFAULT_SERVERS[@]}") ;;
      monitoring) names+=("${MONITORING_SERVERS[@]}") ;;
      redis | rabbitmq | postgres | mosquitto | nats | zipkin | prometheus | alertmanager | victorialogs | vlagent)
        [[ " ${SELECTED[*]} " == *" $name "* ]] || SELECTED+=("$name")
        ;;
      *) die "unknown server '$name' (expected: ${ALL_SERVERS[*]} default monitoring profiles profile:<profile>)" ;;
    esac
  done
}

# Serialises start/stop: two concurrent `make up` must not launch a server twice.
take_lock() {
  mkdir -p "$DATA"
  if command -v flock >/dev/null; then
    exec 9>"$DATA/.infra.lock"
    flock 9
  fi
}

# ---------------------------------------------------------------------------- install

install_all() {
  is_root || die "install uses apt-get: run it as root (e.g. sudo scripts/infra.sh install)"
  local -a missing=()
  command -v redis-server >/dev/null || missing+=(redis-server)
  command -v redis-cli >/dev/null || missing+=(redis-tools)
  [[ -x "$RABBITMQ_BIN/rabbitmq-server" ]] || missing+=(rabbitmq-server)
  compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || missing+=(postgresql)
  command -v mosquitto >/dev/null || missing+=(mosquitto)
  command -v nats-server >/dev/null || missing+=(nats-server)
  command -v promtool >/dev/null || missing+=(prometheus)
  [[ -x /usr/bin/prometheus-alertmanager ]] || missing+=(prometheus-alertmanager)
  command -v curl >/dev/null || missing+=(curl ca-certificates)
  command -v setpriv >/dev/null || missing+=(util-linux)
  command -v setsid >/dev/null || missing+=(util-linux)
  java_major_ok || missing+=(default-jre-headless)
  # The web UI's browser tests drive Debian's Chromium (a browser download cannot work offline).
  command -v chromium >/dev/null || missing+=(chromium)
  # npm installs the pinned browser libraries the apps serve (scripts/ui-assets.sh).
  command -v npm >/dev/null || missing+=(npm)

  if ((${#missing[@]})); then
    log "install: apt-get install ${missing[*]}"
    # Without a policy-rc.d that says no, apt starts system-wide copies of these servers on
    # the very ports we need. Add one for the duration of the install if there is none.
    local policy=/usr/sbin/policy-rc.d added_policy=""
    if [[ ! -e "$policy" ]]; then
      printf '#!/bin/sh\nexit 101\n' >"$policy"
      chmod 755 "$policy"
      added_policy=1
      trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
    if [[ -n "$added_policy" ]]; then
      rm -f "$policy"
      trap - EXIT
    fi
    # On a systemd machine the units are still enabled for the next boot; turn them off so
    # they never hold our ports.
    if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null; then
      local unit
      for unit in redis-server rabbitmq-server postgresql mosquitto nats-server prometheus prometheus-alertmanager; do
        systemctl disable --now "$unit" >/dev/null 2>&1 || true
      done
      log "install: disabled the distribution's systemd units (this script runs the servers)"
    fi
  else
    log "install: all packages present"
  fi
  java_major_ok || die "Java 17 or newer is required for Zipkin ($(java -version 2>&1 | head -n 1))"
  log "install: $(java -version 2>&1 | head -n 1)"
  zipkin_fetch
  log "install: zipkin $ZIPKIN_VERSION at $(rel "$ZIPKIN_JAR")"
}

# True when `java` runs and is version 17 or newer (Zipkin 3 needs 17).
java_major_ok() {
  command -v java >/dev/null || return 1
  local version major
  version="$(java -version 2>&1 | sed -n 's/.*version "\([^"]*\)".*/\1/p' | head -n 1)"
  major="${version%%.*}"
  [[ "$major" == 1 ]] && major="$(cut -d. -f2 <<<"$version")" # "1.8.0" is Java 8
  [[ "$major" =~ ^[0-9]+$ ]] && ((major >= 17))
}

main() {
  local command="${1:-}"
  (($#)) && shift
  case "$command" in
    install) install_all ;;
    secrets) secrets_ensure ;;
    start)
      select_servers "$@"
      take_lock
      secrets_ensure
      local name
      for name in "${SELECTED[@]}"; do start_one "$name"; done
      ;;
    stop)
      select_servers "$@"
      take_lock
      local name
      for name in "${SELECTED[@]}"; do stop_one "$name"; done
      ;;
    status) status_all ;;
    profile-dir)
      (($# == 1)) || die "usage: $0 profile-dir <profile>"
      profile_dir "$1"
      ;;
    *)
      echo "usage: $0 install | start [names...] | stop [names...] | status | secrets | profile-dir <profile>" >&2
      echo "names: ${ALL_SERVERS[*]} default monitoring profiles profile:<profile>" >&2
      exit 2
      ;;
  esac
}

main "$@"
