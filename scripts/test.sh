#!/usr/bin/env bash
# The whole test suite: makes sure a Redis and a PostgreSQL server are there (starting them if
# needed), then
# runs every crate's unit, integration, conformance and doc tests.
set -euo pipefail
cd "$(dirname "$0")/.."
HOOKGUARD_REDIS_URL=$(bash scripts/ensure-redis.sh)
export HOOKGUARD_REDIS_URL
echo "test.sh: using Redis at $HOOKGUARD_REDIS_URL" >&2
HOOKGUARD_POSTGRES_URL=$(bash scripts/ensure-postgres.sh)
export HOOKGUARD_POSTGRES_URL
echo "test.sh: using PostgreSQL at $HOOKGUARD_POSTGRES_URL" >&2
cargo test --workspace --all-features "$@"
