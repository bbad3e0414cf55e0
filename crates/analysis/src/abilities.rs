//! The task half of a study's analysis: each run's task evaluations, the
//! memorisation-to-generalisation delay, and the emergence test over training tokens and
//! over model size. No I/O: the runs' records go in.

use scalelab_spec::{RunRecord, TaskMetrics};

use crate::Interval;

use crate::emergence::{
    EmergenceOptions, MIN_SCALES, Metric, PerToken, TaskEmergence, TaskRow, analyse_tasks,
    wilson_interval,
};

/// Exact match that both splits must reach for the delay table.
pub const DELAY_THRESHOLD: f64 = 0.95;

/// Coverage of the intervals drawn around measured accuracies.
pub const INTERVAL_LEVEL: f64 = 0.95;

/// The Wilson interval (at [`INTERVAL_LEVEL`]) of the share `metric` of `m`, an accuracy over
/// `m`'s test examples.
pub fn accuracy_interval(m: &TaskMetrics, metric: Metric) -> Interval {
    wilson_interval(
        metric_value(m, metric) * m.examples as f64,
        m.examples as u64,
        INTERVAL_LEVEL,
    )
}

/// A completed run, as the abilities analysis reads it.
#[derive(Debug, Clone, Copy)]
pub struct AbilityRun<'a> {
    /// Its label in tables and figures (its size, and its budget when the study has several).
    pub label: &'a str,
    /// Its size label (one colour per size).
    pub size: &'a str,
    /// N in the study's convention.
    pub n: f64,
    /// Its record (runs without a task are passed over).
    pub record: &'a RunRecord,
}

/// One evaluation of a run on its task.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskPoint {
    /// Training tokens so far.
    pub tokens: f64,
    /// L2 norm of all parameters.
    pub weight_norm: Option<f64>,
    /// Metrics on the test set.
    pub test: TaskMetrics,
    /// Metrics on a fixed sample of training examples.
    pub train: Option<TaskMetrics>,
}

/// A run's task evaluations.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRun {
    /// Label: size and budget.
    pub label: String,
    /// Size label (one colour per size).
    pub size: String,
    /// N in the study's convention.
    pub n: f64,
    /// Evaluations in token order.
    pub points: Vec<TaskPoint>,
}

/// How long a run took to fit its training examples and to generalise.
#[derive(Debug, Clone, PartialEq)]
pub struct Delay {
    /// The run.
    pub label: String,
    /// Exact match both splits had to reach.
    pub threshold: f64,
    /// First evaluated tokens at which training exact match reached the threshold.
    pub train_tokens: Option<f64>,
    /// First evaluated tokens at which test exact match reached it.
    pub test_tokens: Option<f64>,
}

/// Everything the abilities pages show.
#[derive(Debug, Clone, Default)]
pub struct AbilityAnalysis {
    /// The task's name and settings, in words.
    pub task: String,
    /// Runs with task evaluations.
    pub runs: Vec<TaskRun>,
    /// The emergence test over N (final evaluations at each size's largest budget).
    pub over_n: Option<TaskEmergence>,
    /// The emergence test over training tokens, per run.
    pub over_tokens: Vec<(String, TaskEmergence)>,
    /// Memorisation against generalisation, per run.
    pub delays: Vec<Delay>,
    /// Why an analysis is missing.
    pub notes: Vec<String>,
}

/// Each size's last evaluation at its largest budget, sizes in order of first appearance:
/// `(size, N, evaluation)`.
pub fn finals_by_size(runs: &[TaskRun]) -> Vec<(&str, f64, &TaskPoint)> {
    let mut sizes: Vec<&str> = Vec::new();
    for run in runs {
        if !sizes.contains(&run.size.as_str()) {
            sizes.push(&run.size);
        }
    }
    sizes
        .into_iter()
        .filter_map(|size| {
            runs.iter()
                .filter(|r| r.size == size)
                .filter_map(|r| r.points.last().map(|p| (size, r.n, p)))
                .max_by(|x, y| x.2.tokens.total_cmp(&y.2.tokens))
        })
        .collect()
}

/// Every metric of `m` with its value and, for accuracies, its number of trials (examples
/// for exact match, answer tokens for token accuracy).
pub fn metric_rows(m: &TaskMetrics) -> [(Metric, f64, Option<u64>); 5] {
    Metric::RECORDED.map(|metric| {
        let trials = match metric {
            Metric::ExactMatch => Some(m.examples as u64),
            Metric::TokenAccuracy => Some((m.examples * m.answer_tokens) as u64),
            _ => None,
        };
        (metric, metric_value(m, metric), trials)
    })
}

/// The value of `metric` in `m`.
pub fn metric_value(m: &TaskMetrics, metric: Metric) -> f64 {
    match metric {
        Metric::ExactMatch => m.exact_match,
        Metric::TokenAccuracy => m.token_accuracy,
        Metric::EditDistance => m.edit_distance,
        Metric::LogProb => m.log_prob,
        Metric::CrossEntropy => -m.log_prob / m.answer_tokens.max(1) as f64,
        Metric::Brier => m.brier,
    }
}

/// Rows of every metric of `m` at `scale`; accuracies carry their number of trials.
fn rows(task: &str, scale: f64, m: &TaskMetrics) -> Vec<TaskRow> {
    metric_rows(m)
        .into_iter()
        .map(|(metric, value, n_test)| {
            TaskRow::new(
                task,
                metric,
                scale,
                value,
                n_test,
                Some(m.answer_tokens as f64),
            )
        })
        .collect()
}

/// The abilities analysis of a study's completed runs with a task; `None` when there are
/// none.
pub fn analyse_abilities(runs: &[AbilityRun<'_>], seed: u64) -> Option<AbilityAnalysis> {
    let mut a = AbilityAnalysis::default();
    // scalelab scores exact match by greedy decoding (every argmax right), so the per-token
    // quantity whose L-th power predicts it is the per-token argmax accuracy; the answer's
    // probability exp(log_prob) predicts a sampled exact match instead.
    let options = EmergenceOptions {
        seed,
        per_token: PerToken::TokenAccuracy,
        ..EmergenceOptions::default()
    };
    for r in runs {
        let record = r.record;
        let Some(task) = &record.config.task else {
            continue;
        };
        a.task = task.describe();
        let points: Vec<TaskPoint> = record
            .result
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
        let label = r.label.to_string();
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
            size: r.size.to_string(),
            n: r.n,
            points,
        });
    }
    if a.runs.is_empty() {
        return None;
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
    Some(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(examples: usize, exact_match: f64) -> TaskMetrics {
        TaskMetrics {
            examples,
            answer_tokens: 2,
            exact_match,
            token_accuracy: exact_match.sqrt(),
            edit_distance: 2.0 * (1.0 - exact_match),
            log_prob: exact_match.max(1e-9).ln(),
            brier: 1.0 - exact_match,
        }
    }

    fn task_run(size: &str, n: f64, finals: &[(f64, f64)]) -> TaskRun {
        TaskRun {
            label: size.into(),
            size: size.into(),
            n,
            points: finals
                .iter()
                .map(|&(tokens, em)| TaskPoint {
                    tokens,
                    weight_norm: None,
                    test: metrics(100, em),
                    train: None,
                })
                .collect(),
        }
    }

    #[test]
    fn each_size_is_read_at_its_largest_budgets_last_evaluation() {
        let runs = [
            task_run("s", 1e3, &[(10.0, 0.1), (20.0, 0.2)]),
            task_run("l", 1e4, &[(10.0, 0.5)]),
            task_run("s", 1e3, &[(10.0, 0.3), (40.0, 0.4)]),
        ];
        let finals: Vec<(&str, f64, f64)> = finals_by_size(&runs)
            .into_iter()
            .map(|(size, n, p)| (size, n, p.test.exact_match))
            .collect();
        assert_eq!(finals, vec![("s", 1e3, 0.4), ("l", 1e4, 0.5)]);
    }

    #[test]
    fn accuracies_carry_their_trials_and_wilson_intervals() {
        let m = metrics(100, 0.5);
        let rows = metric_rows(&m);
        assert_eq!(rows[0], (Metric::ExactMatch, 0.5, Some(100)));
        assert_eq!(
            rows[1].2,
            Some(200),
            "token accuracy: examples × answer tokens"
        );
        assert_eq!(metric_value(&m, Metric::CrossEntropy), -m.log_prob / 2.0);
        // Wilson 95% interval of 50/100: 0.5 ± 1.96·√(0.25/100 + 1.96²/(4·100²))/(1 + 1.96²/100),
        // about [0.404, 0.596] (Wilson 1927, the score interval).
        let i = accuracy_interval(&m, Metric::ExactMatch);
        assert!(
            (i.lo - 0.4038).abs() < 1e-3 && (i.hi - 0.5962).abs() < 1e-3,
            "{i:?}"
        );
    }
}
