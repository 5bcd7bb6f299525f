#!/usr/bin/env bash
# `make test`: start the servers the suite needs, run pytest, then stop the servers this run
# started, and only those: a server already running before (a `make up` of this checkout, a
# server started by hand) is left running. Leaving ours running would hold fixed ports
# (127.0.0.1:6379, :5432, :4222, ...) that `make up` in another checkout then cannot bind.
#
#   scripts/run-tests.sh [pytest args...]
#
# TEST_SERVERS: the scripts/infra.sh names started before pytest (default: every profile's
# servers and zipkin). Servers the tests start themselves (the monitoring stack of the
# end-to-end platform) are stopped too. Exits with pytest's status.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

# A running `make up` platform would answer the tests' calls: the tests' sidecars register in the
# same name-resolution file (.data/nameresolution.db) and consume from the same Redis database, so
# a test's invoke can reach the platform's app (a mTLS failure: another sentry's certificates) and
# the platform's apps can take a test's events. Refuse rather than fail at random.
if bash scripts/run-platform.sh running; then
  echo "tests: error: the platform that \`make up\` started is running; the tests start their own apps" \
    "with the same name-resolution file and Redis database. Run \`make down\` first." >&2
  exit 1
fi

# The servers scripts/infra.sh sees running from this checkout, one name per line.
running() { bash scripts/infra.sh status | awk '$2 == "running" { print $1 }'; }

before="$(running)"
stop_started() {
  local name started=()
  for name in $(running); do
    grep -qx "$name" <<<"$before" || started+=("$name")
  done
  if ((${#started[@]})); then
    echo "tests: stopping the servers this run started: ${started[*]}"
    bash scripts/infra.sh stop "${started[@]}"
  fi
}
# EXIT covers a failed start and pytest's own exit; INT and TERM (Ctrl-C, a CI timeout) exit
# through it too.
trap stop_started EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# shellcheck disable=SC2086 # a list of server names
bash scripts/infra.sh start ${TEST_SERVERS:-profiles zipkin}
status=0
uv run --frozen pytest "$@" || status=$?
exit "$status"
