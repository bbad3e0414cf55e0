#!/usr/bin/env python3
"""Reads a scalelab TensorBoard event directory with the real `tensorboard` package and checks
every scalar and hyperparameter against the run's record.json.

    python scripts/verify/tensorboard_check.py RUN_DIR EVENTS_DIR

Expected values are taken from the record here, independently of scalelab's own mapping:
a language model's curve keyed by training tokens (a classifier's by samples), the losses again
keyed by MFLOPs, as float32 (TensorBoard's simple_value). Exits 1 naming the first mismatch.
"""
import json
import sys

import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2


def expected(record):
    """(tag, step) -> value, from the record alone."""
    want = {}
    curve = record["curve"]
    lm = "tokens_per_step" in record
    for p in curve:
        step = p["tokens"] if lm else p["samples"]
        mflops = round(p["flops"] / 1e6)
        if p.get("train_loss") is not None:
            want[("loss/train", step)] = p["train_loss"]
            want[("by_mflops/loss/train", mflops)] = p["train_loss"]
        want[("loss/val", step)] = p["val_loss"]
        want[("by_mflops/loss/val", mflops)] = p["val_loss"]
        want[("progress/flops", step)] = p["flops"]
        if lm:
            want[("bpb/val", step)] = p["val_bpb"]
            want[("lr", step)] = p["lr"]
        else:
            want[("accuracy/val", step)] = p["val_accuracy"]
    if lm:
        if record.get("final_val_loss") is not None:
            want[("final/loss/val", record["tokens_seen"])] = record["final_val_loss"]
    else:
        for split in ("train", "validation", "test"):
            for name in ("loss", "accuracy", "macro_f1", "ece"):
                want[(f"final/{split}/{name}", record["samples_seen"])] = record[split][name]
    return want


def main():
    run_dir, events_dir = sys.argv[1], sys.argv[2]
    with open(f"{run_dir}/record.json") as f:
        record = json.load(f)
    acc = EventAccumulator(events_dir, size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    checked = 0
    for (tag, step), value in expected(record).items():
        if tag not in tags:
            sys.exit(f"tensorboard: tag {tag} missing (have {sorted(tags)})")
        got = [e.value for e in acc.Scalars(tag) if e.step == step]
        if len(got) != 1:
            sys.exit(f"tensorboard: {tag} at step {step}: {len(got)} values, want 1")
        if got[0] != float(np.float32(value)):
            sys.exit(f"tensorboard: {tag} at step {step}: {got[0]!r} != float32({value!r})")
        checked += 1
    content = acc.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(
        content["_hparams_/session_start_info"]
    ).session_start_info
    end = plugin_data_pb2.HParamsPluginData.FromString(
        content["_hparams_/session_end_info"]
    ).session_end_info
    if start.group_name != record["run_id"]:
        sys.exit(f"tensorboard: hparams group {start.group_name!r} != run {record['run_id']!r}")
    model = record["config"]["model"]
    for key, value in model.items():
        if isinstance(value, bool):
            got = start.hparams[f"model.{key}"].bool_value
        elif isinstance(value, (int, float)):
            got = start.hparams[f"model.{key}"].number_value
        else:
            continue
        if got != value:
            sys.exit(f"tensorboard: hparam model.{key} = {got!r}, record has {value!r}")
        checked += 1
    completed = record["status"]["status"] == "completed"
    if end.status != (1 if completed else 2):
        sys.exit(f"tensorboard: session status {end.status} for record status {record['status']!r}")
    print(f"tensorboard {__import__('tensorboard').__version__}: {checked} scalars and hparams of run {record['run_id']} match its record")


if __name__ == "__main__":
    main()
