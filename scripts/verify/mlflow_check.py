#!/usr/bin/env python3
"""Reads runs scalelab logged to an MLflow tracking server with the real `mlflow` client and
checks them against their record.json files.

    python scripts/verify/mlflow_check.py URI EXPERIMENT RUN_DIR [RUN_DIR ...]

For each run: exactly one MLflow run carries its tag scalelab.run_id; it is FINISHED (FAILED
for a diverged run); its parameters hold the record's model shape and learning rate; every
validation loss of the record's curve is in the metric history at its step (training tokens,
or samples for a classifier) with the record's exact value; record.json is an artifact equal
to the file. Prints one line per run; exits 1 naming the first mismatch.
"""
import json
import os
import sys
import tempfile

import mlflow
from mlflow.tracking import MlflowClient


def main():
    uri, experiment, run_dirs = sys.argv[1], sys.argv[2], sys.argv[3:]
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        sys.exit(f"mlflow: no experiment {experiment!r}")
    for run_dir in run_dirs:
        with open(os.path.join(run_dir, "record.json")) as f:
            record = json.load(f)
        rid = record["run_id"]
        runs = client.search_runs([exp.experiment_id], filter_string=f"tags.`scalelab.run_id` = '{rid}'")
        if len(runs) != 1:
            sys.exit(f"mlflow: {len(runs)} runs tagged {rid}, want 1")
        run = runs[0]
        completed = record["status"]["status"] == "completed"
        want_status = "FINISHED" if completed else "FAILED"
        if run.info.status != want_status:
            sys.exit(f"mlflow: run {rid} is {run.info.status}, want {want_status}")
        params = run.data.params
        model = record["config"]["model"]
        for key, value in model.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                if float(params.get(f"model.{key}", "nan")) != float(value):
                    sys.exit(f"mlflow: param model.{key} = {params.get(f'model.{key}')!r}, record {value!r}")
        if float(params["train.lr"]) != record["config"]["train"]["lr"]:
            sys.exit(f"mlflow: param train.lr = {params['train.lr']!r}")
        lm = "tokens_per_step" in record
        history = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "loss/val")}
        checked = 0
        for point in record["curve"]:
            step = point["tokens"] if lm else point["samples"]
            if history.get(step) != point["val_loss"]:
                sys.exit(f"mlflow: loss/val at {step} = {history.get(step)!r}, record {point['val_loss']!r}")
            checked += 1
        artifacts = [a.path for a in client.list_artifacts(run.info.run_id)]
        if "record.json" not in artifacts:
            sys.exit(f"mlflow: record.json not among the artifacts {artifacts}")
        with tempfile.TemporaryDirectory() as tmp:
            path = client.download_artifacts(run.info.run_id, "record.json", tmp)
            with open(path, "rb") as a, open(os.path.join(run_dir, "record.json"), "rb") as b:
                if a.read() != b.read():
                    sys.exit("mlflow: the record.json artifact differs from the file")
        print(f"mlflow {mlflow.__version__}: run {rid} is one {run.info.status} MLflow run, {len(params)} params, {checked} validation losses exact, record.json artifact equal")


if __name__ == "__main__":
    main()
