#!/usr/bin/env python3
"""Compares the runs of two study directories run by id: same validation curve (every
evaluation's loss, to the last digit) and same final loss, for every run of the second that
the first also has. Exits 1 if any differs or is missing.

    scripts/compare-studies.py studies/quickstart /tmp/clone/studies/quickstart
"""
import json
import os
import sys

old, new = (os.path.join(d, "runs") for d in sys.argv[1:3])
same, bad = 0, 0
for run_id in sorted(os.listdir(new)):
    paths = [os.path.join(d, run_id, "record.json") for d in (old, new)]
    if not os.path.exists(paths[1]):
        continue
    if not os.path.exists(paths[0]):
        print(f"{run_id}: not in {old}")
        bad += 1
        continue
    a, b = (json.load(open(p)) for p in paths)
    curve = lambda r: [p["val_loss"] for p in r["curve"]]
    if curve(a) == curve(b) and a["final_val_loss"] == b["final_val_loss"]:
        same += 1
    else:
        print(f"{run_id}: differs")
        bad += 1
print(f"{same} runs identical, {bad} differ or are missing")
sys.exit(1 if bad else 0)
