//! `scalelab emergence`: the emergence test and mirage check on a CSV of task results.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use scalelab_analysis::emergence::{
    EmergenceOptions, ExampleRow, METRIC_NAMES, Metric, MetricPoint, MirageVerdict, PerToken,
    TaskEmergence, TaskRow, analyse_tasks,
};

use crate::args::EmergenceArgs;

/// Reads `scale,task,metric,value[,n_test][,answer_tokens]` rows; every error names the file
/// and the line.
pub(crate) fn read_task_rows(path: &Path) -> Result<Vec<TaskRow>> {
    let (mut reader, headers, index) = crate::open_csv(
        path,
        &["scale", "task", "metric", "value"],
        "the columns are scale,task,metric,value and optionally n_test, answer_tokens",
    )?;
    let column = |name: &str| headers.iter().position(|h| h.trim() == name);
    let n_test_col = column("n_test");
    let length_col = column("answer_tokens");
    let mut rows = Vec::new();
    for (row, record) in reader.records().enumerate() {
        let line = row + 2; // the header is line 1
        let record =
            record.with_context(|| format!("{}: line {line} is not valid CSV", path.display()))?;
        let field = |i: usize| record.get(i).unwrap_or("").trim();
        let number = |name: &str, raw: &str| -> Result<f64> {
            raw.parse().map_err(|_| {
                anyhow::anyhow!(
                    "{}: line {line}, column `{name}`: `{raw}` is not a number\nhint: fix or delete that row",
                    path.display()
                )
            })
        };
        let scale = number("scale", field(index[0]))?;
        let task = field(index[1]);
        if task.is_empty() {
            bail!(
                "{}: line {line}, column `task` is empty\nhint: name the task of every row",
                path.display()
            );
        }
        let metric_name = field(index[2]);
        let Some(metric) = Metric::from_name(metric_name) else {
            bail!(
                "{}: line {line}, column `metric`: unknown metric `{metric_name}`\nhint: use one of {METRIC_NAMES}",
                path.display()
            );
        };
        let value = number("value", field(index[3]))?;
        let n_test = match n_test_col.map(field) {
            None | Some("") => None,
            Some(raw) => Some(raw.parse::<u64>().ok().filter(|&n| n > 0).ok_or_else(|| {
                anyhow::anyhow!(
                    "{}: line {line}, column `n_test`: `{raw}` is not a positive whole number\nhint: n_test is the number of test examples behind the value; leave it empty if unknown",
                    path.display()
                )
            })?),
        };
        let answer_tokens = match length_col.map(field) {
            None | Some("") => None,
            Some(raw) => Some(raw.parse::<f64>().ok().filter(|l| l.is_finite() && *l >= 1.0).ok_or_else(|| {
                anyhow::anyhow!(
                    "{}: line {line}, column `answer_tokens`: `{raw}` is not a number of tokens >= 1\nhint: answer_tokens is the length of the task's answer in tokens (a mean over examples may be fractional); leave it empty if unknown",
                    path.display()
                )
            })?),
        };
        rows.push(TaskRow::new(
            task,
            metric,
            scale,
            value,
            n_test,
            answer_tokens,
        ));
    }
    if rows.is_empty() {
        bail!(
            "{}: no rows after the header\nhint: one row per (scale, task, metric) measurement",
            path.display()
        );
    }
    Ok(rows)
}

/// The results as JSON: one object per task, with its metrics and its mirage verdict.
pub(crate) fn emergence_json(tasks: &[TaskEmergence]) -> serde_json::Value {
    let tasks: Vec<serde_json::Value> = tasks
        .iter()
        .map(|t| {
            let metrics: Vec<serde_json::Value> = t
                .metrics
                .iter()
                .map(|m| {
                    serde_json::json!({
                        "metric": m.metric.name(),
                        "space": m.metric.space(),
                        "points": m.points,
                        "emergent": m.emergent,
                        "transition_scale": m.transition_scale,
                        "transition_interval": [m.transition_interval.lo, m.transition_interval.hi],
                        "level": m.transition_interval.level,
                        "sharpness": m.sharpness,
                        "extrapolation_error": m.extrapolation_error,
                        "trend_points": m.trend_points,
                        "range": m.range,
                        "unresolved_points": m.unresolved_points,
                        "resolution": m.resolution,
                        "reason": m.reason,
                    })
                })
                .collect();
            serde_json::json!({
                "task": t.task,
                "metrics": metrics,
                "mirage": t.mirage.as_ref().map(|v| v.kind.name()),
                "mirage_explanation": t.mirage.as_ref().map(|v| v.explanation.clone()),
                "predicted_exact_match": t.mirage.as_ref().and_then(prediction_json),
            })
        })
        .collect();
    serde_json::Value::Array(tasks)
}

/// The mirage test's fit and its predictions at the larger scales, as JSON.
fn prediction_json(v: &MirageVerdict) -> Option<serde_json::Value> {
    let e = v.evidence.as_ref()?;
    let interval = |i: &scalelab_analysis::Interval| serde_json::json!([i.lo, i.hi]);
    let larger: Vec<serde_json::Value> = e
        .larger
        .iter()
        .map(|p| {
            serde_json::json!({
                "scale": p.scale,
                "measured": p.measured,
                "measured_interval": interval(&p.measured_interval),
                "predicted": p.predicted,
                "band": interval(&p.band),
                "implied_by_per_token": p.implied,
                "implied_interval": interval(&p.implied_interval),
            })
        })
        .collect();
    Some(serde_json::json!({
        "fitted": e.quantity.name(),
        "law": "l(s) = E + A*s^-alpha; exact match = exp(-L*l(s)), or its mean over examples with their relative losses",
        "answer_tokens": e.answer_tokens,
        "fit_points": e.fit_points,
        "fit_up_to": e.fit_up_to,
        "E": e.e,
        "A": e.a,
        "alpha": e.alpha,
        "residual_sd": e.residual_sd,
        "level": e.level,
        "examples": e.examples.map(|(scale, n)| serde_json::json!({"relative_losses_at": scale, "count": n})),
        "at_transition": larger.first(),
        "larger_scales": larger,
    }))
}

/// An example: task, scale (as bits, to group on), and its name in the file.
type ExampleKey = (String, u64, String);
/// An example's log-probability, answer tokens and exact match.
type ExampleSum = (f64, f64, Option<bool>);

/// Reads per-example scores in either layout (see `--per-example`): the examples, and the
/// summary rows they give (mean log-probability, exact match when present, with n_test and
/// answer_tokens), one set per (task, scale).
pub(crate) fn read_example_rows(path: &Path) -> Result<(Vec<ExampleRow>, Vec<TaskRow>)> {
    let headers = csv::Reader::from_path(path)
        .and_then(|mut r| r.headers().cloned())
        .with_context(|| format!("cannot read the header row of CSV file {}", path.display()))?;
    let per_token = headers.iter().any(|h| h.trim() == "token_index");
    let required: &[&str] = if per_token {
        &["scale", "task", "example", "token_index", "logprob"]
    } else {
        &["scale", "task", "example", "log_prob"]
    };
    let (mut reader, headers, index) = crate::open_csv(
        path,
        required,
        "per-example scores are scale,task,example,token_index,logprob (a row per answer token) or scale,task,example,log_prob[,exact_match][,answer_tokens] (a row per example)",
    )?;
    let column = |name: &str| headers.iter().position(|h| h.trim() == name);
    let (exact_col, length_col) = (column("exact_match"), column("answer_tokens"));
    let mut examples: Vec<(ExampleKey, ExampleSum)> = Vec::new();
    let mut position: std::collections::HashMap<ExampleKey, usize> =
        std::collections::HashMap::new();
    for (row, record) in reader.records().enumerate() {
        let line = row + 2;
        let record =
            record.with_context(|| format!("{}: line {line} is not valid CSV", path.display()))?;
        let field = |i: usize| record.get(i).unwrap_or("").trim();
        let number = |name: &str, raw: &str| -> Result<f64> {
            raw.parse::<f64>().ok().filter(|v| v.is_finite()).ok_or_else(|| {
                anyhow::anyhow!(
                    "{}: line {line}, column `{name}`: `{raw}` is not a finite number\nhint: fix or delete that row",
                    path.display()
                )
            })
        };
        let scale = number("scale", field(index[0]))?;
        if scale <= 0.0 {
            bail!(
                "{}: line {line}, column `scale`: {scale} is not positive\nhint: scale is parameters, FLOPs or tokens",
                path.display()
            );
        }
        let task = field(index[1]).to_string();
        if task.is_empty() {
            bail!(
                "{}: line {line}, column `task` is empty\nhint: name the task of every row",
                path.display()
            );
        }
        let example = field(index[2]).to_string();
        let name = if per_token { "logprob" } else { "log_prob" };
        let log_prob = number(name, field(index[index.len() - 1]))?;
        if log_prob > 0.0 {
            bail!(
                "{}: line {line}, column `{name}`: {log_prob} is above 0\nhint: a log-probability is <= 0 (natural log)",
                path.display()
            );
        }
        let tokens = match length_col.map(field) {
            Some(raw) if !per_token && !raw.is_empty() => {
                number("answer_tokens", raw).and_then(|l| {
                    if l >= 1.0 {
                        Ok(l)
                    } else {
                        bail!(
                            "{}: line {line}, column `answer_tokens`: {l} is below 1\nhint: the length of the example's answer in tokens",
                            path.display()
                        )
                    }
                })?
            }
            _ => 1.0,
        };
        let exact = match exact_col.map(field) {
            None | Some("") => None,
            Some("1" | "true") => Some(true),
            Some("0" | "false") => Some(false),
            Some(raw) => bail!(
                "{}: line {line}, column `exact_match`: `{raw}` is not 0 or 1\nhint: whether the example's whole answer was right",
                path.display()
            ),
        };
        let key = (task, scale.to_bits(), example);
        match position.get(&key) {
            Some(&i) if per_token => {
                let e = &mut examples[i].1;
                e.0 += log_prob;
                e.1 += 1.0;
            }
            Some(_) => bail!(
                "{}: line {line}: example `{}` of task `{}` at scale {scale} appears twice\nhint: one row per example (or give token_index for a row per token)",
                path.display(),
                key.2,
                key.0
            ),
            None => {
                position.insert(key.clone(), examples.len());
                examples.push((key, (log_prob, tokens, exact)));
            }
        }
    }
    if examples.is_empty() {
        bail!(
            "{}: no rows after the header\nhint: one row per example (or per answer token)",
            path.display()
        );
    }
    // Summary rows per (task, scale), in order of first appearance.
    let mut groups: Vec<(String, u64)> = Vec::new();
    for ((task, scale, _), _) in &examples {
        if !groups.iter().any(|(t, s)| t == task && s == scale) {
            groups.push((task.clone(), *scale));
        }
    }
    let mut summary = Vec::new();
    for (task, bits) in groups {
        let members: Vec<&ExampleSum> = examples
            .iter()
            .filter(|((t, s, _), _)| *t == task && *s == bits)
            .map(|(_, v)| v)
            .collect();
        let n = members.len() as f64;
        let scale = f64::from_bits(bits);
        let length = (per_token || length_col.is_some())
            .then(|| members.iter().map(|m| m.1).sum::<f64>() / n);
        let mut push = |metric, value| {
            summary.push(TaskRow {
                task: task.clone(),
                metric,
                point: MetricPoint {
                    scale,
                    value,
                    n_test: Some(members.len() as u64),
                },
                answer_tokens: length,
            });
        };
        push(
            Metric::LogProb,
            members.iter().map(|m| m.0).sum::<f64>() / n,
        );
        let right: Option<Vec<bool>> = members.iter().map(|m| m.2).collect();
        if let Some(right) = right {
            push(
                Metric::ExactMatch,
                right.iter().filter(|&&r| r).count() as f64 / n,
            );
        }
    }
    let rows = examples
        .into_iter()
        .map(|((task, scale, _), (log_prob, _, _))| ExampleRow {
            task,
            scale: f64::from_bits(scale),
            log_prob,
        })
        .collect();
    Ok((rows, summary))
}

/// The summary rows of `--input`, completed by those of `--per-example`: a (task, scale,
/// metric) the input lacks comes from the examples, and an answer length the input lacks
/// too.
fn merge_rows(mut rows: Vec<TaskRow>, derived: Vec<TaskRow>) -> Vec<TaskRow> {
    for d in derived {
        let same = |r: &TaskRow| r.task == d.task && r.point.scale == d.point.scale;
        if d.answer_tokens.is_some() {
            for r in rows
                .iter_mut()
                .filter(|r| same(r) && r.answer_tokens.is_none())
            {
                r.answer_tokens = d.answer_tokens;
            }
        }
        if !rows.iter().any(|r| same(r) && r.metric == d.metric) {
            rows.push(d);
        }
    }
    rows
}

pub(crate) fn run(args: EmergenceArgs) -> Result<ExitCode> {
    let mut rows = match &args.input {
        Some(input) => read_task_rows(input)?,
        None => Vec::new(),
    };
    let mut examples = Vec::new();
    if let Some(path) = &args.per_example {
        let (e, derived) = read_example_rows(path)?;
        examples = e;
        rows = merge_rows(rows, derived);
    }
    let source = args
        .input
        .iter()
        .chain(&args.per_example)
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(" and ");
    let options = EmergenceOptions {
        min_sharpness: args.min_sharpness,
        min_extrapolation_error: args.min_extrapolation_error,
        level: args.level,
        bootstrap: args.bootstrap,
        seed: args.seed,
        per_token: PerToken::from_name(&args.per_token).ok_or_else(|| {
            anyhow::anyhow!(
                "--per-token {}: unknown quantity\nhint: use one of {}",
                args.per_token,
                PerToken::NAMES
            )
        })?,
        answer_tokens: args.answer_tokens,
    };
    let tasks =
        analyse_tasks(&rows, &examples, &options).with_context(|| format!("analysing {source}"))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&emergence_json(&tasks))?);
        return Ok(ExitCode::SUCCESS);
    }
    for t in &tasks {
        println!("task {}", t.task);
        println!(
            "  {:<15} {:>8} {:>10} {:>23} {:>9} {:>13}",
            "metric", "emergent", "transition", "interval", "sharpness", "extrapolation"
        );
        for m in &t.metrics {
            println!(
                "  {:<15} {:>8} {:>10.3e} {:>23} {:>9.2} {:>+13.2}",
                m.metric.name(),
                if m.emergent { "yes" } else { "no" },
                m.transition_scale,
                format!(
                    "[{:.2e}, {:.2e}]",
                    m.transition_interval.lo, m.transition_interval.hi
                ),
                m.sharpness,
                m.extrapolation_error,
            );
        }
        for m in &t.metrics {
            println!("  {}: {}", m.metric.name(), m.reason);
        }
        if let Some(e) = t.mirage.as_ref().and_then(|v| v.evidence.as_ref()) {
            println!(
                "  exact match predicted from {} ({:.1}% intervals):",
                e.quantity.name(),
                100.0 * e.level
            );
            println!(
                "  {:>10} {:>24} {:>24} {:>9}",
                "scale", "measured", "predicted", "implied"
            );
            for p in &e.larger {
                println!(
                    "  {:>10.3e} {:>24} {:>24} {:>9.3}",
                    p.scale,
                    format!(
                        "{:.3} [{:.3}, {:.3}]",
                        p.measured, p.measured_interval.lo, p.measured_interval.hi
                    ),
                    format!("{:.3} [{:.3}, {:.3}]", p.predicted, p.band.lo, p.band.hi),
                    p.implied
                );
            }
        }
        if let Some(v) = &t.mirage {
            println!("  verdict: {} — {}", v.kind.name(), v.explanation);
        }
        println!();
    }
    Ok(ExitCode::SUCCESS)
}
