#!/usr/bin/env bash
# The classifier families against PyTorch eager: for each family's preset and thread count,
# one `scalelab bench --family` invocation with the repository's PyTorch peer
# (scripts/peers/torch_classifier.py) run right after it, and one with --unfused (Burn's own
# operations: the path before the fused kernels), as a Markdown table. The table in
# BENCHMARKS.md comes from this script.
#
#   scripts/bench-classifiers.sh PYTHON [THREADS...]      (default threads: 1 2)
#
# PYTHON is a Python with PyTorch (scripts/verify-venv.sh makes one). SCALELAB names the
# program (default: the debug build in CARGO_TARGET_DIR or target/). Inference batches are of
# 128 examples, the batch evaluation uses; training batches of 64.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${1:?usage: scripts/bench-classifiers.sh PYTHON [THREADS...]}"
shift
threads=("${@:-1 2}")
read -r -a threads <<<"${threads[*]}"
bin="${SCALELAB:-${CARGO_TARGET_DIR:-target}/debug/scalelab}"
if [ ! -x "$bin" ]; then
    echo "error: no program at $bin; hint: cargo build --workspace, or set SCALELAB" >&2
    exit 1
fi
cases=(
    "mlp mlp" "cnn cnn" "resnet resnet-small" "resnet resnet"
    "lstm lstm" "gru gru" "encoder encoder-small"
)
echo "| model | threads | train ms: before / now / PyTorch | train ratio | inference ms (128): before / now / PyTorch | inference ratio |"
echo "|---|---:|---|---:|---|---:|"
for t in "${threads[@]}"; do
    for c in "${cases[@]}"; do
        read -r family preset <<<"$c"
        flags=(bench --family "$family" --preset "$preset" --threads "$t" --inference-batch 128 --json)
        now=$("$bin" "${flags[@]}" --peer-python "$python")
        before=$("$bin" "${flags[@]}" --unfused)
        python3 - "$preset" "$t" "$now" "$before" <<'EOF'
import json, sys
preset, t, now, before = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
s, p, b = now["scalelab"], now["peer"], before["scalelab"]
print(f"| `{preset}` | {t} | {b['train_step_ms']:.1f} / {s['train_step_ms']:.1f} / {p['train_step_ms']:.1f} "
      f"| **{now['train_ratio']:.2f}** | {b['inference_ms']:.1f} / {s['inference_ms']:.1f} / {p['inference_ms']:.1f} "
      f"| **{now['inference_ratio']:.2f}** |")
EOF
    done
done
