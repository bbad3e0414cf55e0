#!/usr/bin/env bash
# Where a training step's time goes: samples `scalelab bench` (one shape, given by the bench
# flags) with perf and sums the samples by kind of work. The table in BENCHMARKS.md comes
# from this script.
#
#   scripts/profile-step.sh --d-model 256 --layers 4 --heads 4 --threads 2
#   scripts/profile-step.sh --d-model 64 --layers 2 --heads 4 --threads 1
#   scripts/profile-step.sh --family cnn --preset cnn --threads 1 --inference-batch 128 [--unfused]
#
# Needs perf (Debian: apt-get install linux-perf). SCALELAB names the program to profile
# (default: the debug build in CARGO_TARGET_DIR or target/).
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${SCALELAB:-${CARGO_TARGET_DIR:-target}/debug/scalelab}"
if ! command -v perf >/dev/null; then
    echo "error: perf is not installed; hint: apt-get install linux-perf" >&2
    exit 1
fi
if [ ! -x "$bin" ]; then
    echo "error: no program at $bin; hint: cargo build -p scalelab, or set SCALELAB" >&2
    exit 1
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

perf record -q -F 1999 -o "$tmp/perf.data" "$bin" bench --steps 20 --warmup 3 "$@" \
    >"$tmp/bench.txt" 2>"$tmp/perf.log"
tail -n 1 "$tmp/bench.txt"
perf report -i "$tmp/perf.data" --no-children --sort symbol --percent-limit 0 2>/dev/null |
    awk '
    /^ *[0-9.]+%/ {
        pct = $1; sub("%", "", pct)
        sym = $0; sub(/^ *[0-9.]+% +/, "", sym)
        if (sym ~ /gemm/) kind = "GEMM (the gemm crate: micro-kernels and packing)"
        else if (sym ~ /pulp::|scalelab_kernels/) kind = "fused kernels (scalelab: attention, GELU, LayerNorm, cross-entropy, AdamW, convolution, pooling, batch norm, recurrent steps)"
        else if (sym ~ /memmove|memcpy|memset|clear_page|page_fault|_mi_|mi_|malloc|free|mmap|munmap|\[k\]/) kind = "memory: buffer zeroing and copies, allocation, page faults, kernel"
        else if (sym ~ /burn_flex|macerator|erff|expf|logf|libm|zip_/) kind = "other tensor operations (Burn flex: element-wise, reductions, layout copies)"
        else if (sym ~ /burn_autodiff|burn_dispatch|burn_backend|burn_tensor|burn_optim|burn_core|burn_nn/) kind = "autodiff graph, dispatch and optimiser bookkeeping"
        else kind = "other"
        share[kind] += pct
    }
    END {
        print ""
        print "| kind of work | share of samples |"
        print "|---|---|"
        n = 0
        for (k in share) order[++n] = k
        # Largest first.
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++)
            if (share[order[j]] > share[order[i]]) { t = order[i]; order[i] = order[j]; order[j] = t }
        for (i = 1; i <= n; i++) printf "| %s | %.1f%% |\n", order[i], share[order[i]]
    }'
