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
# The inspector's browser test needs chromium + chromedriver (.ci/run installs them); without
# them it is skipped (loudly) unless CI is set.
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  echo "test.sh: chromium/chromedriver missing: the browser test will be skipped (CI unset) or fail (CI set);" \
    "apt-get install chromium chromium-driver" >&2
fi
cargo test --workspace --all-features "$@"
# The core alone with its default features (no `ed25519`: `whpk_`/`whsk_` refused, `v1a` cases of
# the corpus skipped): the build a user of the core gets, which the workspace run never makes.
# Skipped on a filtered run (arguments given).
if [[ $# -eq 0 ]]; then cargo test -p hookguard-core; fi
# The published conformance corpus (conformance/): the case files must be what their generator
# writes, and the CLI verifier must pass every case (a clear summary; non-zero on any mismatch).
# `cargo test` above built target/debug/hookguard for the CLI's tests; build it if a filtered
# run did not.
python3 conformance/generate.py --check
bin="${CARGO_TARGET_DIR:-target}/debug/hookguard"
[[ -x "$bin" ]] || cargo build -p hookguard-cli
python3 conformance/run.py -- "$bin" verify
