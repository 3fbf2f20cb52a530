#!/usr/bin/env bash
# `make dev`: the whole platform as local processes, with the very commands the Docker images run (the Procfile).
#   1. .env (created with fresh secrets if missing), Postgres and Redis (started where possible, else how to start);
#   2. Azurite from npm on var/azurite (the Procfile's `azurite` entry), then migrations and the bundled models;
#   3. inference, gateway (http://127.0.0.1:8000), ingestion and training workers under honcho.
# Ctrl-C stops everything this script started.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# Procfile entries under honcho, without honcho's own reading of .env: it would let .env override variables set in
# the environment (`ECG_API_KEY=... make dev` would silently use the .env key). The services read .env themselves
# (pydantic-settings), where the environment wins. tests/deploy/test_dev_env.py runs this very line.
run_procfile() { honcho start --env /dev/null "$@"; }

scripts/init-env.sh
scripts/ensure-services.sh

azurite_port=${AZURITE_PORT:-10000}
for port in "${INFERENCE_PORT:-8001}" "${GATEWAY_PORT:-8000}"; do
  if listening "$port"; then
    echo "error: port $port is taken (another 'make dev' or 'docker compose up'?): stop it, or set" \
         "GATEWAY_PORT / INFERENCE_PORT (and ECG_INFERENCE_URL) to other ports" >&2
    exit 1
  fi
done

azurite_pid=""
stop_azurite() {
  if [ -n "$azurite_pid" ] && kill -0 "$azurite_pid" 2>/dev/null; then
    kill -TERM "$azurite_pid" 2>/dev/null || true
    wait "$azurite_pid" 2>/dev/null || true
  fi
}
trap stop_azurite EXIT
trap 'exit 130' INT TERM

if listening "$azurite_port"; then
  echo "Azurite (or another blob service) already listens on 127.0.0.1:$azurite_port: using it"
else
  mkdir -p "${AZURITE_LOCATION:-var/azurite}"
  run_procfile azurite &
  azurite_pid=$!
  for _ in $(seq 1 60); do listening "$azurite_port" && break; sleep 0.5; done
  listening "$azurite_port" || { echo "error: Azurite did not start on port $azurite_port" >&2; exit 1; }
fi

echo "migrations and bundled models..."
ecg db upgrade
ecg models seed

echo "starting inference, gateway, workers; the gateway is http://127.0.0.1:${GATEWAY_PORT:-8000} (Ctrl-C stops all)"
run_procfile inference gateway ingestion-worker training-worker
