#!/usr/bin/env bash
# Coverage-guided fuzzing on stable Rust with AFL++ (cargo-afl), one target at a time.
#   bash scripts/fuzz.sh TARGET [SECONDS]   # default 60 s; TARGET is a [[bin]] of fuzz/Cargo.toml
#   bash scripts/fuzz.sh all [SECONDS]      # every target in turn, SECONDS each
#   FRESH=1 bash scripts/fuzz.sh ...        # start again from the seeds (default: resume the corpus)
# Seeds: fuzz/seeds/TARGET/ (written by fuzz/seeds/make_seeds.py). Output, ignored by git:
# fuzz/afl/TARGET/default/{queue,crashes,hangs,fuzzer_stats}, log in fuzz/afl/TARGET.log.
# Ends with execs, corpus size and crashes per target; exits 1 if any target has a crash.
# Replay an input with a readable panic (plain build, no AFL):
#   cargo run --manifest-path fuzz/Cargo.toml --bin TARGET -- fuzz/afl/TARGET/default/crashes
# Needs: a C compiler and make (cargo-afl builds the AFL++ runtime locally on install).
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { echo "usage: $0 TARGET|all [SECONDS]" >&2; exit 2; }
[[ $# -ge 1 && $# -le 2 ]] || usage
seconds=${2:-60}
[[ $seconds =~ ^[1-9][0-9]*$ ]] || usage
mapfile -t all < <(sed -n '/^\[\[bin\]\]/{n;s/^name = "\(.*\)"$/\1/p}' fuzz/Cargo.toml)
if [[ $1 == all ]]; then
  targets=("${all[@]}")
else
  [[ " ${all[*]} " == *" $1 "* ]] || { echo "unknown target $1 (one of: ${all[*]})" >&2; exit 2; }
  targets=("$1")
fi

# cargo-afl, and the AFL++ runtime for this rustc (cargo-afl builds it from its bundled sources).
if ! cargo afl --version >/dev/null 2>&1; then
  echo "fuzz.sh: installing cargo-afl" >&2
  cargo install cargo-afl --version '^0.18' --locked
fi
if ! out=$(cargo afl config --build 2>&1); then
  grep -q 'already built' <<<"$out" || { echo "$out" >&2; exit 1; }
fi

# A separate target dir: instrumented and plain builds use different RUSTFLAGS.
export CARGO_TARGET_DIR=$PWD/fuzz/target/afl
bins=()
for t in "${targets[@]}"; do bins+=(--bin "$t"); done
echo "fuzz.sh: building ${targets[*]} with AFL++ instrumentation" >&2
cargo afl build --release --manifest-path fuzz/Cargo.toml --features afl "${bins[@]}"

export AFL_NO_UI=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1
# Don't pin a core: this machine is shared (override with AFL_NO_AFFINITY= to pin).
export AFL_NO_AFFINITY=${AFL_NO_AFFINITY-1}
field() { sed -n "s/^$1 *: *//p" "$2"; }
summary=()
crashed=0
for t in "${targets[@]}"; do
  out=fuzz/afl/$t
  if [[ -n ${FRESH:-} ]]; then rm -rf "$out"; fi
  mkdir -p fuzz/afl
  echo "fuzz.sh: $t for ${seconds}s (log: $out.log)" >&2
  if ! AFL_AUTORESUME=1 cargo afl fuzz -i "fuzz/seeds/$t" -o "$out" -V "$seconds" \
    "$CARGO_TARGET_DIR/release/$t" >"$out.log" 2>&1; then
    tail -n 30 "$out.log" >&2
    echo "fuzz.sh: afl-fuzz failed for $t" >&2
    exit 1
  fi
  s=$out/default/fuzzer_stats
  crashes=$(field saved_crashes "$s")
  summary+=("$(printf '%-20s execs %12s  (%s/s)  corpus %5s  edges %s  crashes %s  hangs %s' \
    "$t" "$(field execs_done "$s")" "$(field execs_per_sec "$s")" "$(field corpus_count "$s")" \
    "$(field edges_found "$s")" "$crashes" "$(field saved_hangs "$s")")")
  if [[ $crashes != 0 ]]; then
    crashed=1
    for f in "$out"/default/crashes/id*; do
      if [[ -f $f ]]; then echo "crash $f: $(od -An -v -tx1 "$f" | tr -d ' \n')" >&2; fi
    done
  fi
done
echo "== AFL++ $(cargo afl --version 2>/dev/null | sed 's/.*AFL++ version \([^)]*\)).*/\1/'), $(nproc) cores, $(date -u +%Y-%m-%d)"
printf '%s\n' "${summary[@]}"
exit "$crashed"
