#!/usr/bin/env bash
# Make sure Postgres and Redis answer on their configured addresses; start local ones where we can, else say how.
set -euo pipefail

pg_host=${ECG_PG_HOST:-127.0.0.1}
pg_port=${ECG_PG_PORT:-5432}
redis_host=${ECG_REDIS_HOST:-127.0.0.1}
redis_port=${ECG_REDIS_PORT:-6379}

listening() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

wait_for() {  # name host port
  for _ in $(seq 1 30); do listening "$2" "$3" && return 0; sleep 1; done
  echo "error: $1 did not come up on $2:$3" >&2; return 1
}

if ! listening "$pg_host" "$pg_port"; then
  if command -v pg_ctlcluster >/dev/null && ls /etc/postgresql >/dev/null 2>&1; then
    echo "starting PostgreSQL..."
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
    wait_for PostgreSQL "$pg_host" "$pg_port"
  else
    echo "error: PostgreSQL is not running on $pg_host:$pg_port. Start it (e.g. 'docker run -p 5432:5432 -e POSTGRES_HOST_AUTH_METHOD=trust postgres:16')" >&2
    exit 1
  fi
fi

if ! listening "$redis_host" "$redis_port"; then
  if command -v redis-server >/dev/null; then
    echo "starting Redis..."
    redis-server --daemonize yes --bind 127.0.0.1 --port "$redis_port" --save "" --appendonly no
    wait_for Redis "$redis_host" "$redis_port"
  else
    echo "error: Redis is not running on $redis_host:$redis_port. Start it (e.g. 'docker run -p 6379:6379 redis:7')" >&2
    exit 1
  fi
fi
echo "PostgreSQL $pg_host:$pg_port and Redis $redis_host:$redis_port are up"
