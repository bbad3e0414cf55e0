//! The task half of a study's report: each run's task evaluations read from its record, the
//! memorisation-to-generalisation delay, and the emergence test over training tokens and
//! over model size.

use std::path::Path;

use anyhow::{Context, Result};
use scalelab_analysis::emergence::{
    EmergenceOptions, MIN_SCALES, Metric, MetricPoint, PerToken, TaskRow, analyse_tasks,
};
use scalelab_report::{AbilityAnalysis, Delay, TaskPoint, TaskRun, finals_by_size, metric_rows};
use scalelab_spec::{
    ExampleScore, TASK_EXAMPLES_FILE, TaskConfig, TaskKind, TaskMetrics, TaskTrainSet,
};
use scalelab_sweep::{RunState, Store, StoredRun, run_dir};

use crate::human;

/// Exact match that both splits must reach for the delay table.
const DELAY_THRESHOLD: f64 = 0.95;

/// A task and its split, in words.
pub(crate) fn describe_task(task: &TaskConfig) -> String {
    let kind = match task.kind {
        TaskKind::ModularArithmetic { modulus, .. } => format!("modulus {modulus}"),
        TaskKind::Addition { digits } | TaskKind::Multiplication { digits } => {
            format!("{digits}-digit operands")
        }
        TaskKind::Copy { length } | TaskKind::Reverse { length } => format!("{length} letters"),
        TaskKind::Recall { pairs } => format!("{pairs} key-value pairs"),
        TaskKind::Parity { bits } => format!("{bits} bits"),
    };
    let train = match task.train {
        TaskTrainSet::Fraction(f) => format!(
            "{:.0}% of the {} pairs for training",
            100.0 * f,
            task.kind.distinct_prompts()
        ),
        TaskTrainSet::Size(n) => format!("{n} training examples"),
        TaskTrainSet::Unlimited => "fresh training examples every batch".into(),
    };
    let mix = if task.mix >= 1.0 {
        "trained on alone".to_string()
    } else {
        format!(
            "{:.0}% of training sequences, mixed into the corpus",
            100.0 * task.mix
        )
    };
    format!(
        "{} ({kind}; {train}; {} test examples; {mix})",
        task.kind.name(),
        task.test_size
    )
}

/// Rows of every metric of `m` at `scale`; accuracies carry their number of trials.
fn rows(task: &str, scale: f64, m: &TaskMetrics) -> Vec<TaskRow> {
    metric_rows(m)
        .into_iter()
        .map(|(metric, value, n_test)| TaskRow {
            task: task.to_string(),
            metric,
            point: MetricPoint {
                scale,
                value,
                n_test,
            },
            answer_tokens: Some(m.answer_tokens as f64),
        })
        .collect()
}

/// The abilities analysis of a study's completed runs; `None` when no run has a task.
pub(crate) fn analyse_abilities(
    store: &Store,
    runs: &[StoredRun],
    seed: u64,
) -> Result<Option<AbilityAnalysis>> {
    let mut a = AbilityAnalysis::default();
    // scalelab scores exact match by greedy decoding (every argmax right), so the per-token
    // quantity whose L-th power predicts it is the per-token argmax accuracy; the answer's
    // probability exp(log_prob) predicts a sampled exact match instead.
    let options = EmergenceOptions {
        seed,
        per_token: PerToken::TokenAccuracy,
        ..EmergenceOptions::default()
    };
    let budgets = {
        let mut b: Vec<u64> = runs.iter().map(|r| r.planned_tokens).collect();
        b.sort_unstable();
        b.dedup();
        b.len()
    };
    for r in runs.iter().filter(|r| r.status == RunState::Completed) {
        let Some(record) = store.run_record(&r.run_id)? else {
            continue;
        };
        let Some(task) = &record.config.task else {
            continue;
        };
        a.task = describe_task(task);
        let points: Vec<TaskPoint> = record
            .curve
            .iter()
            .filter_map(|p| {
                p.task_test.clone().map(|test| TaskPoint {
                    tokens: p.tokens as f64,
                    weight_norm: p.weight_norm,
                    test,
                    train: p.task_train.clone(),
                })
            })
            .collect();
        let label = if budgets > 1 {
            format!("{} · {} tokens", r.size, human(r.planned_tokens as f64))
        } else {
            r.size.clone()
        };
        let first = |f: &dyn Fn(&TaskPoint) -> Option<f64>| {
            points
                .iter()
                .find(|p| f(p).is_some_and(|v| v >= DELAY_THRESHOLD))
                .map(|p| p.tokens)
        };
        a.delays.push(Delay {
            label: label.clone(),
            threshold: DELAY_THRESHOLD,
            train_tokens: first(&|p| p.train.as_ref().map(|t| t.exact_match)),
            test_tokens: first(&|p| Some(p.test.exact_match)),
        });
        // Over training time: every evaluation after the first step.
        let over_time: Vec<TaskRow> = points
            .iter()
            .filter(|p| p.tokens > 0.0)
            .flat_map(|p| rows(task.kind.name(), p.tokens, &p.test))
            .collect();
        if over_time.len() / Metric::RECORDED.len() >= MIN_SCALES {
            match analyse_tasks(&over_time, &[], &options) {
                Ok(mut t) if !t.is_empty() => a.over_tokens.push((label.clone(), t.remove(0))),
                Ok(_) => {}
                Err(e) => a
                    .notes
                    .push(format!("{label}: no emergence test over tokens: {e}")),
            }
        }
        a.runs.push(TaskRun {
            label,
            size: r.size.clone(),
            n: r.n,
            points,
        });
    }
    if a.runs.is_empty() {
        return Ok(None);
    }
    // Over N: each size's last evaluation at its largest budget.
    let name = a.task.split(' ').next().unwrap_or("task").to_string();
    let finals = finals_by_size(&a.runs);
    let over_n: Vec<TaskRow> = finals
        .iter()
        .flat_map(|(_, n, p)| rows(&name, *n, &p.test))
        .collect();
    let sizes = finals.len();
    if sizes >= MIN_SCALES {
        match analyse_tasks(&over_n, &[], &options) {
            Ok(mut t) if !t.is_empty() => a.over_n = Some(t.remove(0)),
            Ok(_) => {}
            Err(e) => a.notes.push(format!("no emergence test over N: {e}")),
        }
    } else if sizes > 1 {
        a.notes.push(format!(
            "{sizes} sizes: the emergence test over N needs at least {MIN_SCALES}; the test over training tokens is below"
        ));
    }
    Ok(Some(a))
}

/// Each size's per-example test scores at its last evaluation, from the `task_examples.csv`
/// beside the record of its completed run with the largest budget: `(N, scores)`, sizes in
/// order of first appearance; sizes whose run wrote none are left out.
pub(crate) fn final_examples(
    study_dir: &Path,
    runs: &[StoredRun],
) -> Result<Vec<(f64, Vec<ExampleScore>)>> {
    let mut sizes: Vec<&str> = Vec::new();
    for r in runs {
        if !sizes.contains(&r.size.as_str()) {
            sizes.push(&r.size);
        }
    }
    let mut out = Vec::new();
    for size in sizes {
        let Some(run) = runs
            .iter()
            .filter(|r| r.size == size && r.status == RunState::Completed)
            .max_by_key(|r| r.planned_tokens)
        else {
            continue;
        };
        let path = run_dir(study_dir, &run.run_id).join(TASK_EXAMPLES_FILE);
        if !path.exists() {
            continue;
        }
        let mut reader = csv::Reader::from_path(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let scores = reader
            .deserialize()
            .collect::<Result<Vec<ExampleScore>, _>>()
            .with_context(|| {
                format!(
                    "{}: not a table of example scores\nhint: the run writes it at its last evaluation; delete the file and re-run the run to rewrite it",
                    path.display()
                )
            })?;
        out.push((run.n, scores));
    }
    Ok(out)
}
