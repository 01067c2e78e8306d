#!/usr/bin/env bash
# Makes sure a Redis server answers for the tests and prints the URL to use.
# Uses $HOOKGUARD_REDIS_URL or 127.0.0.1:6379 when one answers there; otherwise starts a
# private redis-server on a free port (installing Debian's redis-server if it is missing).
set -euo pipefail
log() { echo "ensure-redis: $*" >&2; }

ping() { # host port
  if command -v redis-cli >/dev/null 2>&1; then
    redis-cli -h "$1" -p "$2" ping 2>/dev/null | grep -q PONG
  else
    exec 3<>"/dev/tcp/$1/$2" 2>/dev/null || return 1
    printf 'PING\r\n' >&3
    local reply; read -r -t 2 reply <&3 || true; exec 3>&-
    [[ "$reply" == +PONG* ]]
  fi
}

if [[ -n "${HOOKGUARD_REDIS_URL:-}" ]]; then
  echo "$HOOKGUARD_REDIS_URL"; exit 0
fi
if ping 127.0.0.1 6379; then
  echo "redis://127.0.0.1:6379"; exit 0
fi
if ! command -v redis-server >/dev/null 2>&1; then
  log "redis-server missing: installing Debian's redis-server"
  if [[ $(id -u) -eq 0 ]]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >&2
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo 6390)
dir=$(mktemp -d)
redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
  --dir "$dir" --logfile "$dir/redis.log" --pidfile "$dir/redis.pid" >&2
for _ in $(seq 1 50); do ping 127.0.0.1 "$port" && break; sleep 0.1; done
ping 127.0.0.1 "$port" || { log "could not start redis-server"; exit 1; }
log "started redis-server on 127.0.0.1:$port (pid file $dir/redis.pid)"
echo "redis://127.0.0.1:$port"
