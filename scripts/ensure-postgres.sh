#!/usr/bin/env bash
# Makes sure a PostgreSQL server answers for the tests and prints the URL to use.
# Uses $HOOKGUARD_POSTGRES_URL, or the server on 127.0.0.1:5432 when it accepts user postgres
# without a password (these machines run one); otherwise starts a private server in a temp
# directory on a free port (installing Debian's postgresql if it is missing).
set -euo pipefail
log() { echo "ensure-postgres: $*" >&2; }

ok() { # url
  command -v psql >/dev/null 2>&1 && psql "$1" -tAc 'select 1' >/dev/null 2>&1
}

if [[ -n "${HOOKGUARD_POSTGRES_URL:-}" ]]; then
  echo "$HOOKGUARD_POSTGRES_URL"; exit 0
fi
if ok "postgres://postgres@127.0.0.1:5432/postgres"; then
  echo "postgres://postgres@127.0.0.1:5432/postgres"; exit 0
fi
bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
if [[ -z "$bindir" || ! -x "$bindir/initdb" ]]; then
  log "PostgreSQL missing: installing Debian's postgresql"
  if [[ $(id -u) -eq 0 ]]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql postgresql-client >&2
  bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo 55432)
dir=$(mktemp -d)
# PostgreSQL refuses to run as root: run it as the postgres user when we are root.
run() { if [[ $(id -u) -eq 0 ]]; then chown -R postgres "$dir"; runuser -u postgres -- "$@"; else "$@"; fi; }
run "$bindir/initdb" -D "$dir/data" -U postgres --auth=trust >&2
# TLS offered, as a real server's is (the inbox's TLS test needs it): a throwaway certificate.
ssl=""
if command -v openssl >/dev/null 2>&1 &&
  openssl req -new -x509 -days 2 -nodes -subj /CN=127.0.0.1 \
    -keyout "$dir/server.key" -out "$dir/server.crt" >/dev/null 2>&1; then
  chmod 600 "$dir/server.key"
  ssl="-c ssl=on -c ssl_cert_file=$dir/server.crt -c ssl_key_file=$dir/server.key"
fi
run "$bindir/pg_ctl" -D "$dir/data" -l "$dir/log" -o "-p $port -k $dir -c listen_addresses=127.0.0.1 $ssl" -w start >&2
url="postgres://postgres@127.0.0.1:$port/postgres"
ok "$url" || { log "could not start PostgreSQL"; exit 1; }
log "started PostgreSQL on 127.0.0.1:$port (data $dir/data)"
echo "$url"
