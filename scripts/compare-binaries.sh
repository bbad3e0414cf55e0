#!/usr/bin/env bash
# Behaviour check for refactors: runs the same short trainings (GPT, LSTM and GRU language
# models; MLP, CNN and ResNet on digits; LSTM and encoder on sentiment, which needs
# `scripts/fetch-data.sh sentiment`) with two scalelab binaries and prints each run's id,
# validation-loss curve and final metric, so that a refactor can show it changed nothing.
#
#   scripts/compare-binaries.sh OLD_BINARY NEW_BINARY
set -u
OLD=$(realpath "$1")
NEW=$(realpath "$2")
root="$(cd "$(dirname "$0")/.." && pwd)"
cmds=(
 "train --preset nano --ctx 64 --tokens 40960 --eval-every 10240 --json"
 "train --family lstm --n-layers 1 --d-model 32 --ctx 32 --tokens 20480 --eval-every 10240 --json"
 "train --family gru --n-layers 2 --d-model 32 --ctx 32 --tokens 20480 --eval-every 10240 --json"
 "classify --dataset digits --preset mlp --samples 4000 --json"
 "classify --dataset digits --preset cnn-small --samples 2000 --json"
 "classify --dataset digits --preset resnet-small --samples 1000 --json"
 "classify --dataset sentiment --data-dir $root/data/sentiment --preset lstm --samples 2000 --json"
 "classify --dataset sentiment --data-dir $root/data/sentiment --preset encoder-small --samples 2000 --json"
)
for c in "${cmds[@]}"; do
  for which in OLD NEW; do
    bin=${!which}; d=$(mktemp -d); cd "$d"
    $bin $c > out.json 2> err.log || { echo "$which FAILED: $c"; tail -3 err.log; }
    python3 - "$which" "$c" <<'PY'
import json,sys
r=json.load(open('out.json'))
curve=r['curve']
losses=[round(p['val_loss'],10) for p in curve]
extra = r.get('test',{}).get('accuracy') if 'test' in r else r.get('final_val_loss')
print(sys.argv[1], r['run_id'], losses, extra, '|', sys.argv[2][:40])
PY
  done
done
