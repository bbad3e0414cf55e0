//! CSV exports of a study: `runs.csv` (one row per run), `curves.csv` (one row per
//! evaluation) and, for studies with a task, `task_curves.csv`, `emergence_n.csv` and
//! `emergence_n_examples.csv`. The
//! first column of each is the schema version, so readers can tell apart files written by
//! different versions. Every file is written atomically.

use std::path::Path;

use scalelab_spec::ExampleScore;
use scalelab_spec::{StoredCurvePoint, StoredRun};

use crate::TaskRun;
use scalelab_analysis::abilities::{finals_by_size, metric_rows};

use crate::ReportError;

/// Version of the CSV layouts. Bump when a column changes meaning or is removed.
pub const CSV_SCHEMA_VERSION: u32 = 1;

fn csv_err(path: &Path, e: impl std::fmt::Display) -> ReportError {
    ReportError::Csv {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// Writes the finished CSV atomically: a temporary file beside `path`, then a rename, so a
/// reader never sees half a file and an interrupted export leaves the old one whole.
fn finish(path: &Path, w: csv::Writer<Vec<u8>>) -> Result<(), ReportError> {
    let bytes = w.into_inner().map_err(|e| csv_err(path, e))?;
    let tmp = path.with_extension("csv.tmp");
    std::fs::write(&tmp, bytes).map_err(|e| csv_err(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| csv_err(path, e))
}

fn opt(v: Option<f64>) -> String {
    v.map_or(String::new(), |v| v.to_string())
}

/// Writes one row per run; columns `N` (the study's convention), `D` (tokens seen) and
/// `loss` (final validation loss) can be fed straight to `scalelab fit`.
pub fn write_runs_csv(path: &Path, runs: &[StoredRun]) -> Result<(), ReportError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "schema_version",
        "run_id",
        "size",
        "seed",
        "n_layers",
        "d_model",
        "n_heads",
        "params_total",
        "params_non_embedding",
        "N",
        "param_convention",
        "D",
        "C",
        "loss",
        "val_bpb",
        "flops_per_token",
        "budget_kind",
        "budget_value",
        "status",
        "wall_secs",
    ])
    .map_err(|e| csv_err(path, e))?;
    for r in runs {
        w.write_record([
            CSV_SCHEMA_VERSION.to_string(),
            r.run_id.clone(),
            r.size.clone(),
            r.seed.to_string(),
            r.n_layers.to_string(),
            r.d_model.to_string(),
            r.n_heads.to_string(),
            r.params_total.to_string(),
            r.params_non_embedding.to_string(),
            r.n.to_string(),
            r.param_convention.clone(),
            r.tokens_seen.to_string(),
            r.train_flops.to_string(),
            opt(r.final_val_loss),
            opt(r.final_val_bpb),
            r.flops_per_token.to_string(),
            r.budget_kind.clone(),
            r.budget_value.to_string(),
            r.status.name().to_string(),
            r.wall_secs.to_string(),
        ])
        .map_err(|e| csv_err(path, e))?;
    }
    finish(path, w)
}

/// Writes one row per evaluation of every run.
pub fn write_curves_csv(
    path: &Path,
    runs: &[StoredRun],
    curves: &[Vec<StoredCurvePoint>],
) -> Result<(), ReportError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "schema_version",
        "run_id",
        "N",
        "tokens",
        "flops",
        "val_loss",
        "val_bpb",
        "train_loss",
    ])
    .map_err(|e| csv_err(path, e))?;
    for (r, curve) in runs.iter().zip(curves) {
        for p in curve {
            w.write_record([
                CSV_SCHEMA_VERSION.to_string(),
                r.run_id.clone(),
                r.n.to_string(),
                p.tokens.to_string(),
                p.flops.to_string(),
                p.val_loss.to_string(),
                p.val_bpb.to_string(),
                opt(p.train_loss),
            ])
            .map_err(|e| csv_err(path, e))?;
        }
    }
    finish(path, w)
}

/// Every task evaluation of every run, one row per (evaluation, split, metric): columns
/// `schema_version, run, size, N, tokens, split, task, metric, value, n_test`.
pub fn write_task_curves_csv(path: &Path, task: &str, runs: &[TaskRun]) -> Result<(), ReportError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "schema_version",
        "run",
        "size",
        "N",
        "tokens",
        "split",
        "task",
        "metric",
        "value",
        "n_test",
    ])
    .map_err(|e| csv_err(path, e))?;
    for run in runs {
        for p in &run.points {
            let splits = [("test", Some(&p.test)), ("train", p.train.as_ref())];
            for (split, metrics) in splits {
                let Some(m) = metrics else { continue };
                for (metric, value, n) in metric_rows(m) {
                    w.write_record([
                        CSV_SCHEMA_VERSION.to_string(),
                        run.label.clone(),
                        run.size.clone(),
                        run.n.to_string(),
                        p.tokens.to_string(),
                        split.to_string(),
                        task.to_string(),
                        metric.name().to_string(),
                        value.to_string(),
                        n.map_or(String::new(), |n| n.to_string()),
                    ])
                    .map_err(|e| csv_err(path, e))?;
                }
            }
        }
    }
    finish(path, w)
}

/// The last test evaluation of each size (at its largest budget), in the layout
/// `scalelab emergence --input` reads: `scale, task, metric, value, n_test, answer_tokens`
/// with scale = N.
pub fn write_emergence_csv(path: &Path, task: &str, runs: &[TaskRun]) -> Result<(), ReportError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "scale",
        "task",
        "metric",
        "value",
        "n_test",
        "answer_tokens",
    ])
    .map_err(|e| csv_err(path, e))?;
    for (_, n, p) in finals_by_size(runs) {
        for (metric, value, n_test) in metric_rows(&p.test) {
            w.write_record([
                n.to_string(),
                task.to_string(),
                metric.name().to_string(),
                value.to_string(),
                n_test.map_or(String::new(), |n| n.to_string()),
                p.test.answer_tokens.to_string(),
            ])
            .map_err(|e| csv_err(path, e))?;
        }
    }
    finish(path, w)
}

/// Each size's per-example test scores at its last evaluation (from the runs'
/// `task_examples.csv`), in the layout `scalelab emergence --per-example` reads:
/// `scale, task, example, log_prob, exact_match, answer_tokens` with scale = N.
pub fn write_emergence_examples_csv(
    path: &Path,
    task: &str,
    sizes: &[(f64, Vec<ExampleScore>)],
) -> Result<(), ReportError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "scale",
        "task",
        "example",
        "log_prob",
        "exact_match",
        "answer_tokens",
    ])
    .map_err(|e| csv_err(path, e))?;
    for (n, examples) in sizes {
        for e in examples {
            w.write_record([
                n.to_string(),
                task.to_string(),
                e.example.to_string(),
                e.log_prob.to_string(),
                u8::from(e.exact_match).to_string(),
                e.answer_tokens.to_string(),
            ])
            .map_err(|e| csv_err(path, e))?;
        }
    }
    finish(path, w)
}
