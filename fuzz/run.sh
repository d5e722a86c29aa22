#!/usr/bin/env bash
# Builds the fuzz targets and runs each for SECONDS (default 20), on the stable toolchain.
#
#   fuzz/run.sh [SECONDS] [TARGET...]      (every target when none is named)
#
# Needs cargo-fuzz (installed from crates.io when missing) and a C++ compiler for libFuzzer.
# `--sanitizer none` keeps to stable Rust: the sanitizers need nightly's -Zsanitizer, while the
# coverage instrumentation cargo-fuzz adds (-Cpasses=sancov-module, -Cllvm-args=...) is stable.
# Each target starts from the seeds in seeds/TARGET and keeps what it finds in corpus/TARGET;
# a crash is saved under artifacts/TARGET and makes the script exit 1 after the other targets.
set -euo pipefail

cd "$(dirname "$0")"
seconds="${1:-20}"
shift || true

if ! command -v cargo-fuzz >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

start=$SECONDS
cargo fuzz build --sanitizer none
echo "fuzz: built ${#targets[@]} targets in $((SECONDS - start)) s"

failed=()
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target" "seeds/$target"
    echo "fuzz: running $target for $seconds s"
    if ! cargo fuzz run "$target" "corpus/$target" "seeds/$target" --sanitizer none -- \
        -max_total_time="$seconds" -timeout=10 -print_final_stats=1; then
        failed+=("$target")
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz: FAILED: ${failed[*]} (inputs under fuzz/artifacts/)" >&2
    exit 1
fi
echo "fuzz: ${#targets[@]} targets ran $seconds s each without a crash"
