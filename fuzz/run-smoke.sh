#!/usr/bin/env bash
# Fuzz smoke test for CI: build every cargo-fuzz target and run each one for a
# short, fixed time from its seed corpus. Exits non-zero if any target fails
# to build or crashes (panic, failed assertion, sanitizer report, OOM, timeout).
#
# Usage: fuzz/run-smoke.sh [target...]        (default: all targets)
# Env:   FUZZ_SECONDS  time per target (default 20; a third of it for the
#                      cheap parser targets in $quick, which reach 10^5-10^6
#                      executions in that time)
#        FUZZ_SEED     libFuzzer -seed (default 1)
#        TOOLCHAIN     rustup toolchain (default nightly)
#
# New inputs found during the run go to a scratch directory, not into
# fuzz/corpus/, so the working tree stays clean. Crash inputs are written to
# fuzz/artifacts/<target>/ (git-ignored); reproduce one with
#   cargo +nightly fuzz run <target> fuzz/artifacts/<target>/crash-...
set -uo pipefail

cd "$(dirname "$0")/.." || exit 2
seconds="${FUZZ_SECONDS:-20}"
seed="${FUZZ_SEED:-1}"
tc="+${TOOLCHAIN:-nightly}"

# A fresh CI machine may have neither the nightly toolchain nor cargo-fuzz.
if ! cargo "$tc" --version >/dev/null 2>&1; then
    rustup toolchain install "${tc#+}" --profile minimal || exit 2
fi
if ! cargo "$tc" fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked || exit 2
fi

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo "$tc" fuzz list) || exit 2
fi
if [ "${#targets[@]}" -eq 0 ]; then
    echo "run-smoke: no fuzz targets found" >&2
    exit 2
fi

cargo "$tc" fuzz build || { echo "run-smoke: build failed" >&2; exit 2; }

scratch="$(mktemp -d "${TMPDIR:-/tmp}/tapmesh-fuzz-smoke.XXXXXX")" || exit 2
trap 'rm -rf "$scratch"' EXIT

quick=" header control snooping vm_stream "
failed=()
for t in "${targets[@]}"; do
    mkdir -p "$scratch/$t" "fuzz/corpus/$t"
    s="$seconds"
    if [[ "$quick" == *" $t "* ]]; then
        s=$(( (seconds + 2) / 3 ))
    fi
    echo "=== $t: ${s}s, seed $seed ==="
    if cargo "$tc" fuzz run "$t" "$scratch/$t" "fuzz/corpus/$t" -- \
        -max_total_time="$s" -seed="$seed" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1; then
        echo "=== $t: ok ==="
    else
        echo "=== $t: FAILED (see fuzz/artifacts/$t/) ===" >&2
        failed+=("$t")
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "run-smoke: failing targets: ${failed[*]}" >&2
    exit 1
fi
echo "run-smoke: all ${#targets[@]} targets ok"
