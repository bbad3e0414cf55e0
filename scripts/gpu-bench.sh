#!/usr/bin/env bash
# scalelab on a GPU against PyTorch on the same GPU (issue 20), prepared for a machine with
# an NVIDIA GPU, PyTorch with CUDA and the Vulkan loader, but no Rust toolchain: build the
# binary elsewhere (`cargo build --release --features gpu`, then `strip`) and bring it.
#
#   BIN=./scalelab-gpu scripts/gpu-bench.sh [PEAK_FP32_TFLOPS] [PEAK_BF16_TFLOPS]
#
# Defaults are the H200 SXM's (NVIDIA's datasheet: 67 TFLOPS fp32, 989 TFLOPS dense bf16).
# Prints the adapter Burn picks first (so a wrong one is seen in seconds), then per shape:
# scalelab (wgpu, fp32) and PyTorch eager and torch.compile (fp32, and bf16 autocast), each
# as ms/step, tokens/s and MFU. The shapes: d256 / 4 layers / ctx 128 / batch 16, and
# GPT-2 small (d768 / 12 layers / ctx 1024 / batch 8).
set -uo pipefail
BIN=${BIN:-target/release/scalelab}
FP32=${1:-67}
BF16=${2:-989}
PY=${PYTHON:-python3}
# The peer's device (cpu only to check the script where there is no CUDA).
PEER_DEVICE=${PEER_DEVICE:-cuda}
cd "$(dirname "$0")/.."

nvidia-smi -L 2>/dev/null || echo "nvidia-smi: not found"
vulkaninfo --summary 2>/dev/null | grep -E "deviceName|driverName|apiVersion" || echo "vulkaninfo: not found"

# SHAPES="64 2 2 32 4" (width, layers, heads, context, batch; ';' between shapes) for a
# quick check, e.g. on Mesa's lavapipe.
IFS=';' read -r -a shapes <<<"${SHAPES:-256 4 4 128 16;768 12 12 1024 8}"
for shape in "${shapes[@]}"; do
    read -r d layers heads ctx batch <<<"$shape"
    echo "== d$d / $layers layers / ctx $ctx / batch $batch"
    timeout 300 "$BIN" bench --device gpu --d-model "$d" --layers "$layers" --heads "$heads" \
        --ctx "$ctx" --batch "$batch" --threads "$(nproc)" --warmup 5 --steps 20 --json \
        >"/tmp/scalelab-gpu-$d.json" 2>"/tmp/scalelab-gpu-$d.err"
    grep -m1 "timing on" "/tmp/scalelab-gpu-$d.err"
    "$PY" - "$d" "$FP32" <<'PY'
import json, sys
d, peak = sys.argv[1], float(sys.argv[2])
try:
    row = json.load(open(f"/tmp/scalelab-gpu-{d}.json"))[0]["scalelab"]
except Exception as e:
    print(f"scalelab: no result ({e}); see /tmp/scalelab-gpu-{d}.err"); sys.exit()
print(f"RESULT scalelab ms={row['median_ms']:.2f} tokens_per_s={row['tokens_per_sec']:.0f} "
      f"gflops={row['gflops']:.1f} mfu={row['gflops'] / 1e3 / peak:.4f} "
      f"loss={row['loss_first']:.3f}->{row['loss_last']:.3f} mode=wgpu-fp32")
PY
    for mode in "" "--compile" "--bf16" "--bf16 --compile"; do
        peak=$FP32
        [[ $mode == *bf16* ]] && peak=$BF16
        out=$(timeout 300 "$PY" scripts/peer/torch_gpt_step.py --device "$PEER_DEVICE" --d "$d" \
            --layers "$layers" --heads "$heads" --ctx "$ctx" --batch "$batch" \
            --peak-tflops "$peak" $mode 2>&1)
        grep RESULT <<<"$out" || echo "PyTorch ${mode:-eager}: no result: $(tail -1 <<<"$out")"
    done
done
