#!/usr/bin/env bash
# Local secrets for the platform: one flat JSON object of strings in .data/secrets.json.
#
#   scripts/secrets.sh [ensure]    create .data/secrets.json when it is missing (never overwrites)
#   scripts/secrets.sh get KEY     print one value (for make targets and test harnesses)
#   scripts/secrets.sh path        print the absolute path of the file
#
# Dapr reads the file through the local-file secret store (components/secretstore.yaml);
# scripts/infra.sh reads it to give each server its password. Values are lowercase hex (plus a
# fixed prefix or DSN words), so they never need JSON or shell escaping: the reader below relies
# on that and stays free of jq/python.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA_DIR="$ROOT/.data"
SECRETS_FILE="$DATA_DIR/secrets.json"

# Every key the components and servers expect; `ensure` refuses a file that lacks one.
REQUIRED_KEYS=(
  redis-password postgres-password postgres-connection-string rabbitmq-password
  mosquitto-password nats-password dapr-api-token app-api-token gateway-api-keys inference-api-key
)
# Keys a newer version of the platform added: put into an existing file with fresh values.
ADDABLE_KEYS=(inference-api-key)

# 2*N hex characters from the kernel's CSPRNG; coreutils only, so it works on a bare machine.
random_hex() {
  head -c "$1" /dev/urandom | od -An -tx1 | tr -d ' \n'
}

secrets_create() {
  local pg_password
  pg_password="$(random_hex 24)"
  mkdir -p "$DATA_DIR"
  # umask first: the file must never exist world-readable, not even for a moment.
  (
    umask 077
    local tmp="$SECRETS_FILE.tmp.$$"
    cat >"$tmp" <<EOF
{
  "redis-password": "$(random_hex 24)",
  "postgres-password": "$pg_password",
  "postgres-connection-string": "host=127.0.0.1 port=5432 user=genai password=$pg_password dbname=genai sslmode=disable",
  "rabbitmq-password": "$(random_hex 24)",
  "mosquitto-password": "$(random_hex 24)",
  "nats-password": "$(random_hex 24)",
  "dapr-api-token": "$(random_hex 24)",
  "app-api-token": "$(random_hex 24)",
  "gateway-api-keys": "gk-$(random_hex 24)",
  "inference-api-key": "$(random_hex 24)"
}
EOF
    # rename is atomic: a concurrent reader sees either no file or a whole one.
    mv "$tmp" "$SECRETS_FILE"
  )
  chmod 600 "$SECRETS_FILE"
}

# Value of KEY, or empty when absent. Matches `"key": "value"` wherever it sits in the file,
# so a hand-reformatted file still reads, as long as values stay free of quotes.
secrets_get() {
  local key="$1"
  [[ -f "$SECRETS_FILE" ]] || return 0
  { grep -o "\"$key\"[[:space:]]*:[[:space:]]*\"[^\"]*\"" "$SECRETS_FILE" || true; } \
    | head -n 1 | sed 's/.*:[[:space:]]*"\(.*\)"$/\1/'
}

# Add KEY=VALUE to the existing file, atomically and still mode 600.
secrets_add() {
  (
    umask 077
    python3 - "$SECRETS_FILE" "$1" "$2" <<'PY'
import json, os, sys
path, key, value = sys.argv[1:]
with open(path) as f:
    secrets = json.load(f)
secrets[key] = value
tmp = f"{path}.tmp.{os.getpid()}"
with open(tmp, "w") as f:
    json.dump(secrets, f, indent=2)
os.replace(tmp, path)
PY
  )
  echo "secrets: added $1 to $SECRETS_FILE"
}

secrets_ensure() {
  if [[ ! -f "$SECRETS_FILE" ]]; then
    secrets_create
    echo "secrets: created $SECRETS_FILE (mode 600)"
    return 0
  fi
  local key missing=()
  for key in "${ADDABLE_KEYS[@]}"; do
    [[ -n "$(secrets_get "$key")" ]] || secrets_add "$key" "$(random_hex 24)"
  done
  for key in "${REQUIRED_KEYS[@]}"; do
    [[ -n "$(secrets_get "$key")" ]] || missing+=("$key")
  done
  if ((${#missing[@]})); then
    # Not merged automatically: the file is the user's; a fresh one is safe because
    # infra.sh start pushes every password into its server again.
    echo "secrets: $SECRETS_FILE lacks: ${missing[*]}" >&2
    echo "secrets: move it away and rerun to generate a complete one" >&2
    return 1
  fi
  chmod 600 "$SECRETS_FILE"
}

main() {
  case "${1:-ensure}" in
    ensure) secrets_ensure ;;
    get)
      [[ $# -eq 2 ]] || { echo "usage: $0 get KEY" >&2; exit 2; }
      local value
      value="$(secrets_get "$2")"
      [[ -n "$value" ]] || { echo "secrets: no key '$2' in $SECRETS_FILE" >&2; exit 1; }
      printf '%s\n' "$value"
      ;;
    path) printf '%s\n' "$SECRETS_FILE" ;;
    *) echo "usage: $0 [ensure | get KEY | path]" >&2; exit 2 ;;
  esac
}

# Sourced by infra.sh for secrets_ensure/secrets_get; run directly as a command.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
