#!/usr/bin/env bash
# just fuzz [SECONDS]: every fuzz target for a bounded time (SECONDS in all, split evenly),
# corpora seeded from the project's own encoders and kept in fuzz/corpus/ between runs.
# Needs a nightly toolchain (libFuzzer instrumentation); cargo-fuzz is installed from crates.io
# into ~/.cargo/bin when missing. Without nightly it says so and exits 0 (nothing to run).
set -euo pipefail
cd "$(dirname "$0")"
total=${1:-60}
case "$total" in ''|*[!0-9]*) echo "fuzz: SECONDS must be a whole number, got '$total'" >&2; exit 2;; esac
targets=(list_walk trace_reader regfile vfio_user_stream report_line submit_json)
if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz: no nightly toolchain (rustup toolchain install nightly): fuzzing skipped, nothing ran"
    exit 0
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz from crates.io (cargo install cargo-fuzz --locked)"
    cargo +nightly install cargo-fuzz --locked
fi
echo "fuzz: building ${#targets[@]} targets (cargo +nightly fuzz build) ..."
cargo +nightly fuzz build
echo "fuzz: writing seed corpora into fuzz/corpus/ ..."
cargo run -q --release -p phyr-fuzz-seeds -- corpus
each=$(( total / ${#targets[@]} ))
[ "$each" -ge 1 ] || each=1
failed=()
for t in "${targets[@]}"; do
    log="artifacts/$t.log"
    mkdir -p "artifacts/$t"
    cargo +nightly fuzz run "$t" "corpus/$t" -- -max_total_time="$each" -print_final_stats=1 >"$log" 2>&1 || true
    runs=$(grep -o 'Done [0-9]* runs' "$log" | grep -o '[0-9]*' || true)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || true)
    if grep -qE 'panicked|ERROR: (libFuzzer|AddressSanitizer)|SUMMARY: ' "$log"; then
        crash=$(grep -o "artifacts/$t/[a-z]*-[0-9a-f]*" "$log" | head -1 || true)
        echo "fuzz: $t FAILED after ${runs:-?} runs: ${crash:-see fuzz/$log}"
        grep -m3 -E 'panicked|ERROR:|SUMMARY:' "$log" | sed 's/^/    /'
        echo "    reproduce: cd fuzz && cargo +nightly fuzz run $t ${crash:-artifacts/$t/<file>}"
        failed+=("$t")
    elif [ -z "$runs" ]; then
        echo "fuzz: $t did not run (see fuzz/$log)"
        failed+=("$t")
    else
        echo "fuzz: $t ok: $runs runs in ${each}s, coverage $cov, corpus $(ls "corpus/$t" | wc -l) inputs"
    fi
done
if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz: ${#failed[@]} of ${#targets[@]} targets failed: ${failed[*]} (each crash becomes a regression test named after its input)"
    exit 1
fi
echo "fuzz: ${#targets[@]} targets, ${each}s each, no crash"
