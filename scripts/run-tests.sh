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

# Beside a running `make up` platform, pytest itself refuses to start any test that would use its
# servers (the `refuse_beside_the_platform` fixture of tests/conftest.py says why), as a bare
# `uv run pytest` does: one rule, in one place.

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
