//! A run record in the shape every tracker shares: a run's parameters (its resolved config,
//! flattened to dotted keys, and its cost conventions) and its metrics as series of
//! `(step, value)`, where the step counts training tokens (language models) or samples
//! (classifiers), never optimiser steps. Series keyed by FLOPs repeat the main ones with the
//! step in MFLOPs (10⁶ FLOPs), so that an int64 step holds budgets up to ~9·10²⁴ FLOPs.
//!
//! One place decides the tags, so TensorBoard and MLflow show the same names.

use scalelab_spec::{ClassMetrics, ClassifyRecord, Record, RecordKind, RunRecord, RunStatus};
use serde::Serialize;

/// One parameter's value.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamValue {
    /// A number (integers are exact up to 2⁵³).
    Number(f64),
    /// Text.
    Text(String),
    /// A flag.
    Bool(bool),
}

impl std::fmt::Display for ParamValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParamValue::Number(x) => write!(f, "{x}"),
            ParamValue::Text(s) => f.write_str(s),
            ParamValue::Bool(b) => write!(f, "{b}"),
        }
    }
}

/// One measured value of a series.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    /// The series' name, e.g. `loss/val`.
    pub key: String,
    /// Training tokens (or samples, or MFLOPs for `by_mflops/` series) when it was measured.
    pub step: i64,
    /// The value, as the record holds it.
    pub value: f64,
    /// Unix seconds when it was measured (the run's start where the record keeps no time).
    pub wall_time: f64,
}

/// How the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackedStatus {
    /// Its budget was spent.
    Completed,
    /// Its loss became NaN or infinite.
    Diverged,
}

/// A run as trackers see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Tracked {
    /// The run's id (the hash of its config).
    pub run_id: String,
    /// Flattened config and cost conventions, sorted by key.
    pub params: Vec<(String, ParamValue)>,
    /// Every series, in the order measured.
    pub metrics: Vec<Metric>,
    /// Unix seconds when the run started.
    pub start_time: f64,
    /// Unix seconds when it ended.
    pub end_time: f64,
    /// How it ended.
    pub status: TrackedStatus,
}

/// MFLOPs of `flops` as a step: rounded, saturating at `i64::MAX`.
fn mflops_step(flops: f64) -> i64 {
    // `as` saturates on overflow and maps NaN to 0.
    (flops / 1e6).round() as i64
}

/// `x` as a step: saturating at `i64::MAX`.
fn step(x: u64) -> i64 {
    i64::try_from(x).unwrap_or(i64::MAX)
}

/// The parameters every record has: its flattened config, its id and its conventions.
fn envelope_params<C: Serialize + RecordKind, R>(
    record: &Record<C, R>,
) -> Vec<(String, ParamValue)> {
    let mut params = Vec::new();
    if let Ok(config) = serde_json::to_value(&record.config) {
        flatten("", &config, &mut params);
    }
    params.push(("run_id".into(), ParamValue::Text(record.run_id.clone())));
    params.push((
        "params.total".into(),
        ParamValue::Number(record.params.total as f64),
    ));
    params.push((
        "params.non_embedding".into(),
        ParamValue::Number(record.params.non_embedding as f64),
    ));
    params.push((
        "param_convention".into(),
        ParamValue::Text(record.param_convention.clone()),
    ));
    let flops_convention = serde_json::to_value(record.flops_convention)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    params.push((
        "flops_convention".into(),
        ParamValue::Text(flops_convention),
    ));
    params.push((
        "git_revision".into(),
        ParamValue::Text(record.git_revision.clone()),
    ));
    params.push((
        "backend".into(),
        ParamValue::Text(record.machine.backend.clone()),
    ));
    params.sort_by(|a, b| a.0.cmp(&b.0));
    params.dedup_by(|a, b| a.0 == b.0);
    params
}

/// Flattens JSON objects into `a.b.c` keys; arrays become their JSON text; nulls are left out.
fn flatten(prefix: &str, value: &serde_json::Value, out: &mut Vec<(String, ParamValue)>) {
    use serde_json::Value;
    let key = |k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                flatten(&key(k), v, out);
            }
        }
        Value::Null => {}
        Value::Bool(b) => out.push((prefix.to_string(), ParamValue::Bool(*b))),
        Value::Number(n) => out.push((
            prefix.to_string(),
            ParamValue::Number(n.as_f64().unwrap_or(f64::NAN)),
        )),
        Value::String(s) => out.push((prefix.to_string(), ParamValue::Text(s.clone()))),
        Value::Array(_) => out.push((prefix.to_string(), ParamValue::Text(value.to_string()))),
    }
}

/// Any record as tracked: its envelope's parameters and its kind's FLOPs per unit (`cost`),
/// its metrics, its start and end.
fn tracked<C: Serialize + RecordKind, R>(
    record: &Record<C, R>,
    cost: (&str, f64),
    metrics: Vec<Metric>,
    (start_time, end_time): (f64, f64),
) -> Tracked {
    let mut params = envelope_params(record);
    params.push((cost.0.to_string(), ParamValue::Number(cost.1)));
    params.sort_by(|a, b| a.0.cmp(&b.0));
    Tracked {
        run_id: record.run_id.clone(),
        params,
        metrics,
        start_time,
        end_time,
        status: match record.status {
            RunStatus::Completed => TrackedStatus::Completed,
            RunStatus::Diverged { .. } => TrackedStatus::Diverged,
        },
    }
}

/// A language model's record: every curve point keyed by training tokens, the losses again
/// keyed by MFLOPs.
pub fn from_lm(record: &RunRecord) -> Tracked {
    let start = record.result.started_unix_secs as f64;
    let mut metrics = Vec::new();
    let mut push = |key: &str, step: i64, value: f64, wall_time: f64| {
        metrics.push(Metric {
            key: key.to_string(),
            step,
            value,
            wall_time,
        })
    };
    for point in &record.result.curve {
        let (t, wall) = (step(point.tokens), start + point.wall_secs);
        let by_flops = mflops_step(point.flops);
        if let Some(loss) = point.train_loss {
            push("loss/train", t, loss, wall);
            push("by_mflops/loss/train", by_flops, loss, wall);
        }
        push("loss/val", t, point.val_loss, wall);
        push("by_mflops/loss/val", by_flops, point.val_loss, wall);
        push("bpb/val", t, point.val_bpb, wall);
        push("lr", t, point.lr, wall);
        push("progress/tokens", t, point.tokens as f64, wall);
        push("progress/flops", t, point.flops, wall);
        if let Some(norm) = point.weight_norm {
            push("weight_norm", t, norm, wall);
        }
        for (split, task) in [("test", &point.task_test), ("train", &point.task_train)] {
            if let Some(task) = task {
                for (name, value) in [
                    ("exact_match", task.exact_match),
                    ("token_accuracy", task.token_accuracy),
                    ("edit_distance", task.edit_distance),
                    ("log_prob", task.log_prob),
                    ("brier", task.brier),
                ] {
                    push(&format!("task/{split}/{name}"), t, value, wall);
                }
            }
        }
    }
    let end = start + record.wall_secs;
    let last = step(record.result.tokens_seen);
    if let Some(loss) = record.result.final_val_loss {
        push("final/loss/val", last, loss, end);
    }
    if let Some(bpb) = record.result.final_val_bpb {
        push("final/bpb/val", last, bpb, end);
    }
    let cost = ("flops_per_token", record.result.flops_per_token);
    tracked(record, cost, metrics, (start, end))
}

/// A classifier's record: every curve point keyed by training samples (the losses and
/// accuracy again by MFLOPs), and the kept weights' final metrics on each split. Classifier
/// records keep no start time: `end_time` (e.g. the record file's modification time) dates it.
pub fn from_classifier(record: &ClassifyRecord, end_time: f64) -> Tracked {
    let start = end_time - record.wall_secs;
    let mut metrics = Vec::new();
    let mut push = |key: &str, step: i64, value: f64| {
        metrics.push(Metric {
            key: key.to_string(),
            step,
            value,
            wall_time: start,
        })
    };
    for point in &record.result.curve {
        let (s, by_flops) = (step(point.samples), mflops_step(point.flops));
        if let Some(loss) = point.train_loss {
            push("loss/train", s, loss);
            push("by_mflops/loss/train", by_flops, loss);
        }
        push("loss/val", s, point.val_loss);
        push("by_mflops/loss/val", by_flops, point.val_loss);
        push("accuracy/val", s, point.val_accuracy);
        push("by_mflops/accuracy/val", by_flops, point.val_accuracy);
        push("progress/samples", s, point.samples as f64);
        push("progress/flops", s, point.flops);
    }
    let last = step(record.result.samples_seen);
    let splits: [(&str, &ClassMetrics); 3] = [
        ("train", &record.result.train),
        ("validation", &record.result.validation),
        ("test", &record.result.test),
    ];
    for (split, m) in splits {
        for (name, value) in [
            ("loss", m.loss),
            ("accuracy", m.accuracy),
            ("macro_f1", m.macro_f1),
            ("ece", m.ece),
        ] {
            push(&format!("final/{split}/{name}"), last, value);
        }
    }
    let cost = ("flops_per_sample", record.result.flops_per_sample);
    tracked(record, cost, metrics, (start, end_time))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flatten_names_nested_keys_and_keeps_types() {
        let value = serde_json::json!({
            "model": {"d_model": 48, "tie": false},
            "data": {"source": {"kind": "embedded"}},
            "targets": ["attn", "mlp"],
            "none": null,
        });
        let mut out = Vec::new();
        flatten("", &value, &mut out);
        out.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            out,
            vec![
                (
                    "data.source.kind".into(),
                    ParamValue::Text("embedded".into())
                ),
                ("model.d_model".into(), ParamValue::Number(48.0)),
                ("model.tie".into(), ParamValue::Bool(false)),
                (
                    "targets".into(),
                    ParamValue::Text(r#"["attn","mlp"]"#.into())
                ),
            ]
        );
    }

    #[test]
    fn steps_saturate_instead_of_wrapping() {
        assert_eq!(step(u64::MAX), i64::MAX);
        assert_eq!(mflops_step(6.67e11), 667_000);
        assert_eq!(mflops_step(1e40), i64::MAX);
        assert_eq!(mflops_step(f64::NAN), 0);
    }
}
