//! `scalelab classify`: train one supervised classifier (or k, one per cross-validation fold)
//! on a labelled image set and print its metrics; `scalelab classify-study`: a grid of them.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use scalelab_analysis::summary::mean_by;
use scalelab_analysis::{FitOptions, fit_power};
use scalelab_data::{
    ImageSplits, LabelledSet, TaggedSplits, TextSplits, classification_split, load_images,
    load_pang_lee, load_pos, load_sentiment,
};
use scalelab_report::{ClassifyRun, ClassifyStudyReport, render_classify_report};
use scalelab_spec::{
    ClassMetrics, ClassifyConfig, ClassifyRecord, ClassifySpec, ClassifyStudySpec, Dataset,
    InputShape,
};
use scalelab_sweep::Store;
use scalelab_train::{RunOptions, run_id, train_classifier, train_text_classifier};
use serde_json::json;

use crate::args::{ClassifyArgs, ClassifyStudyArgs};
use crate::{human, read_toml, set_threads, write_text};

/// A loaded data set of either kind.
enum Loaded {
    Images(ImageSplits),
    Text(TextSplits),
    Tagged(TaggedSplits),
}

impl Loaded {
    fn load(spec: &ClassifySpec) -> Result<Self> {
        let dataset = spec.dataset()?;
        let dir = spec.data.dir.as_deref().map(Path::new);
        let (vocab, max_tokens) = (spec.data.bpe_vocab_size, spec.data.max_tokens);
        Ok(if dataset == Dataset::Pos {
            spec.data.check_text()?;
            Loaded::Tagged(load_pos(dir, max_tokens)?)
        } else if dataset == Dataset::PangLee {
            spec.data.check_text()?;
            Loaded::Text(load_pang_lee(dir, vocab, max_tokens)?)
        } else if dataset.is_text() {
            spec.data.check_text()?;
            Loaded::Text(load_sentiment(dir, vocab, max_tokens)?)
        } else {
            Loaded::Images(load_images(dataset, dir)?)
        })
    }

    fn input(&self) -> InputShape {
        match self {
            Loaded::Images(s) => {
                InputShape::Image([s.train.channels, s.train.height, s.train.width])
            }
            Loaded::Text(s) => InputShape::Tokens {
                vocab: s.vocab,
                ctx: s.train.ctx,
                per_token: false,
            },
            Loaded::Tagged(s) => InputShape::Tokens {
                vocab: s.vocab,
                ctx: s.train.ctx,
                per_token: true,
            },
        }
    }

    fn n_classes(&self) -> usize {
        match self {
            Loaded::Images(s) => s.train.n_classes,
            Loaded::Text(s) => s.train.n_classes,
            Loaded::Tagged(s) => s.train.n_tags,
        }
    }

    fn name(&self) -> &str {
        match self {
            Loaded::Images(s) => &s.name,
            Loaded::Text(s) => &s.name,
            Loaded::Tagged(s) => &s.name,
        }
    }

    /// Splits the training examples for `config` (its fold, if any), says what will train
    /// through `announce(train, validation, test)`, and trains.
    fn train(
        &self,
        config: &ClassifyConfig,
        options: &RunOptions,
        announce: impl Fn(usize, usize, usize),
    ) -> Result<ClassifyRecord> {
        let folds = config.fold.map(|f| (f, config.folds));
        let (tf, vf, seed) = (config.train_fraction, config.val_fraction, config.seed);
        Ok(match self {
            Loaded::Images(s) => {
                let (train, val) = classification_split(&s.train, tf, vf, folds, seed);
                announce(train.len(), val.len(), s.test.len());
                train_classifier(config, &train, &val, &s.test, options)?
            }
            Loaded::Text(s) => {
                let (train, val) = classification_split(&s.train, tf, vf, folds, seed);
                announce(train.len(), val.len(), s.test.len());
                train_text_classifier(config, &train, &val, &s.test, options)?
            }
            Loaded::Tagged(s) => {
                let (train, val) = classification_split(&s.train, tf, vf, folds, seed);
                announce(train.len(), val.len(), s.test.len());
                train_text_classifier(config, &train, &val, &s.test, options)?
            }
        })
    }
}

/// Runs the command.
pub(crate) fn run(args: ClassifyArgs) -> Result<ExitCode> {
    let spec = args.spec()?;
    let threads = set_threads(args.threads)?;
    let data = Loaded::load(&spec)?;
    let config = spec.resolve(data.input(), data.n_classes())?;
    let folds: Vec<Option<usize>> = if config.folds >= 2 {
        (0..config.folds).map(Some).collect()
    } else {
        vec![None]
    };
    let params = config.model.param_counts();
    let mut records = Vec::new();
    for fold in folds {
        let mut config = config.clone();
        config.fold = fold;
        let id = run_id(&config)?;
        let (steps, per_step) = config.planned_steps();
        let fold_text = fold.map_or(String::new(), |f| {
            format!(" | fold {} of {}", f + 1, config.folds)
        });
        let options = RunOptions {
            run_dir: args.out.join(&id),
            device: burn::tensor::Device::flex(),
            backend: "burn-flex (cpu)".to_string(),
            resume: false,
            stop_after_tokens: None,
        };
        let announce = |train: usize, val: usize, test: usize| {
            eprintln!(
                "run {id}: {} | {} params | {}: {train} train / {val} val / {test} test examples | {} samples in {steps} steps | {threads} threads{fold_text}",
                config.model.describe(),
                human(params.total as f64),
                data.name(),
                human((steps * per_step) as f64),
            );
        };
        let record = data
            .train(&config, &options, announce)
            .with_context(|| format!("training classifier run {id}"))?;
        eprintln!(
            "record written to {}",
            options.run_dir.join("record.json").display()
        );
        records.push(record);
    }
    let mut out = std::io::stdout().lock();
    match records.as_slice() {
        [record] if args.json => {
            serde_json::to_writer_pretty(&mut out, record)?;
            writeln!(out)?;
        }
        [record] => print_record(&mut out, record)?,
        _ if args.json => {
            serde_json::to_writer_pretty(&mut out, &fold_summary(&records))?;
            writeln!(out)?;
        }
        _ => print_folds(&mut out, &records)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn metrics_row(name: &str, m: &ClassMetrics) -> String {
    format!(
        "{name:<11} {:>7.4}  {:.4} [{:.4}, {:.4}]  {:>8.4}  {:>6.4}  {:>6}",
        m.loss,
        m.accuracy,
        m.accuracy_interval[0],
        m.accuracy_interval[1],
        m.macro_f1,
        m.ece,
        m.examples
    )
}

fn print_record(out: &mut impl Write, r: &ClassifyRecord) -> Result<()> {
    writeln!(out, "run         {}", r.run_id)?;
    writeln!(
        out,
        "model       {}, {} parameters, {:.3e} training FLOPs a sample",
        r.config.model.describe(),
        r.params.total,
        r.flops_per_sample
    )?;
    writeln!(
        out,
        "trained     {} samples on {} examples ({:.1} epochs), {:.3e} FLOPs; weights kept at {} samples{}",
        r.samples_seen,
        r.train_examples,
        r.samples_seen as f64 / r.train_examples.max(1) as f64,
        r.train_flops,
        r.kept_samples,
        if r.stopped_early {
            " (stopped early)"
        } else {
            ""
        }
    )?;
    writeln!(
        out,
        "{:<11} {:>7}  {:<24}  {:>8}  {:>6}  {:>6}",
        "", "loss", "accuracy [95% CI]", "macro F1", "ECE", "n"
    )?;
    writeln!(out, "{}", metrics_row("train", &r.train))?;
    writeln!(out, "{}", metrics_row("validation", &r.validation))?;
    writeln!(out, "{}", metrics_row("test", &r.test))?;
    writeln!(
        out,
        "gap         train - test accuracy {:+.4}",
        r.train.accuracy - r.test.accuracy
    )?;
    writeln!(
        out,
        "wall        {:.1} s, {} threads",
        r.wall_secs, r.threads
    )?;
    Ok(())
}

/// Mean and sample standard deviation.
fn mean_sd(values: &[f64]) -> (f64, f64) {
    let n = values.len().max(1) as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = if values.len() > 1 {
        values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

type Getter = fn(&ClassMetrics) -> f64;
const SUMMARISED: [(&str, Getter); 6] = [
    ("loss", |m| m.loss),
    ("accuracy", |m| m.accuracy),
    ("macro_precision", |m| m.macro_precision),
    ("macro_recall", |m| m.macro_recall),
    ("macro_f1", |m| m.macro_f1),
    ("ece", |m| m.ece),
];

fn fold_summary(records: &[ClassifyRecord]) -> serde_json::Value {
    let part = |pick: fn(&ClassifyRecord) -> &ClassMetrics| {
        let mut map = serde_json::Map::new();
        for (name, get) in SUMMARISED {
            let values: Vec<f64> = records.iter().map(|r| get(pick(r))).collect();
            let (mean, sd) = mean_sd(&values);
            map.insert(
                name.into(),
                json!({ "mean": mean, "sd": sd, "folds": values }),
            );
        }
        serde_json::Value::Object(map)
    };
    json!({
        "folds": records.len(),
        "run_ids": records.iter().map(|r| r.run_id.clone()).collect::<Vec<_>>(),
        "validation": part(|r| &r.validation),
        "test": part(|r| &r.test),
        "train": part(|r| &r.train),
    })
}

fn print_folds(out: &mut impl Write, records: &[ClassifyRecord]) -> Result<()> {
    writeln!(
        out,
        "{}-fold cross-validation of {} (mean ± sd over folds; validation = the held-out fold)",
        records.len(),
        records
            .first()
            .map_or(String::new(), |r| r.config.model.describe())
    )?;
    writeln!(
        out,
        "{:<16} {:>17} {:>17} {:>17}",
        "", "train", "validation", "test"
    )?;
    for (name, get) in SUMMARISED {
        let cell = |pick: fn(&ClassifyRecord) -> &ClassMetrics| {
            let values: Vec<f64> = records.iter().map(|r| get(pick(r))).collect();
            let (mean, sd) = mean_sd(&values);
            format!("{mean:.4} ± {sd:.4}")
        };
        writeln!(
            out,
            "{name:<16} {:>17} {:>17} {:>17}",
            cell(|r| &r.train),
            cell(|r| &r.validation),
            cell(|r| &r.test)
        )?;
    }
    Ok(())
}

/// `scalelab classify-study FILE`: every model × training fraction × regulariser × seed of a
/// classification study, resumable (finished runs are kept in the study's SQLite store, and
/// a record written by an interrupted invocation is imported), then a CSV of the results and
/// the report page.
pub(crate) fn study(args: ClassifyStudyArgs) -> Result<ExitCode> {
    let spec: ClassifyStudySpec = read_toml(&args.file)?;
    let cells = spec
        .expand()
        .with_context(|| format!("in {}", args.file.display()))?;
    let threads = set_threads(args.threads)?;
    let dir = args.out.join(&spec.name);
    let data = Loaded::load(&spec.base).with_context(|| format!("in {}", args.file.display()))?;
    eprintln!(
        "classification study {} in {}: {} runs on {} ({threads} threads)",
        spec.name,
        dir.display(),
        cells.len(),
        data.name()
    );
    let store = Store::open(&dir)?;
    let mut runs = Vec::new();
    for (i, (cell, run_spec)) in cells.into_iter().enumerate() {
        let mut config = run_spec
            .resolve(data.input(), data.n_classes())
            .with_context(|| {
                format!("in {} ({} run {})", args.file.display(), cell.model, i + 1)
            })?;
        config.fold = cell.fold;
        let id = run_id(&config)?;
        let run_dir = dir.join("runs").join(&id);
        let record_path = run_dir.join("record.json");
        let record: ClassifyRecord = if let Some(record) = store.classify_record(&id)? {
            record
        } else if record_path.is_file() {
            // Trained by an invocation that stopped before storing it.
            let text = std::fs::read_to_string(&record_path)
                .with_context(|| format!("reading {}", record_path.display()))?;
            let record = serde_json::from_str(&text).with_context(|| {
                format!(
                    "{} is not a classification record; delete it to train the run again",
                    record_path.display()
                )
            })?;
            store.record_classify(&cell, &record)?;
            record
        } else {
            let options = RunOptions {
                run_dir,
                device: burn::tensor::Device::flex(),
                backend: "burn-flex (cpu)".to_string(),
                resume: false,
                stop_after_tokens: None,
            };
            let record = data
                .train(&config, &options, |_, _, _| {})
                .with_context(|| format!("training run {id}"))?;
            store.record_classify(&cell, &record)?;
            eprintln!(
                "  done  {id} {:<16} D={:<6} {:<14} seed {}  test acc {:.4}  gap {:+.4}  {:.1} s",
                cell.model,
                record.train_examples,
                cell.regulariser,
                cell.seed,
                record.test.accuracy,
                record.train.accuracy - record.test.accuracy,
                record.wall_secs
            );
            record
        };
        runs.push(ClassifyRun { cell, record });
    }
    write_text(&dir.join("results.csv"), &results_csv(&runs)?)?;
    let mut report = ClassifyStudyReport {
        name: spec.name.clone(),
        description: spec.description.clone(),
        command: format!("scalelab classify-study {}", args.file.display()),
        ..ClassifyStudyReport::default()
    };
    fit_errors(&runs, &mut report);
    write_text(
        &dir.join("report.html"),
        &render_classify_report(&report, &runs)?,
    )?;
    eprintln!(
        "results in {}, report in {}",
        dir.join("results.csv").display(),
        dir.join("report.html").display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Power laws of test error against N (largest fraction) and against D (largest model), over
/// the first regulariser's runs, seeds averaged.
fn fit_errors(runs: &[ClassifyRun], report: &mut ClassifyStudyReport) {
    let Some(first) = runs.first().map(|r| r.cell.regulariser.clone()) else {
        return;
    };
    let base: Vec<&ClassifyRun> = runs
        .iter()
        .filter(|r| r.cell.regulariser == first)
        .collect();
    let max_fraction = base
        .iter()
        .map(|r| r.cell.train_fraction)
        .fold(0.0, f64::max);
    let max_n = base
        .iter()
        .map(|r| r.record.params.total)
        .max()
        .unwrap_or(0);
    let points = |pick: &dyn Fn(&ClassifyRun) -> Option<f64>| {
        let rows: Vec<((), f64, f64)> = base
            .iter()
            .filter_map(|r| pick(r).map(|x| ((), x, 1.0 - r.record.test.accuracy)))
            .collect();
        mean_by(&rows).pop().map_or_else(Vec::new, |(_, pts)| pts)
    };
    // Error against N within one family: the one with the most sizes (families move the
    // curve, so a fit across them mixes laws).
    let mut families: Vec<(&str, Vec<u64>)> = Vec::new();
    for r in &base {
        let family = r.record.config.model.family();
        let n = r.record.params.total;
        match families.iter_mut().find(|(f, _)| *f == family) {
            Some((_, sizes)) if !sizes.contains(&n) => sizes.push(n),
            Some(_) => {}
            None => families.push((family, vec![n])),
        }
    }
    let family = families
        .iter()
        .max_by_key(|(_, sizes)| sizes.len())
        .map_or("", |(f, _)| *f);
    if families.len() > 1 {
        report.fit_notes.push(format!(
            "The fit against N uses the {family} runs only (the family with the most sizes): \
             families move the curve, so one law across them would mix laws."
        ));
    }
    let by_n = points(&|r| {
        (r.cell.train_fraction == max_fraction && r.record.config.model.family() == family)
            .then_some(r.record.params.total as f64)
    });
    let by_d =
        points(&|r| (r.record.params.total == max_n).then_some(r.record.train_examples as f64));
    let opts = FitOptions::default();
    for (axis, pts, slot) in [
        ("N", by_n, &mut report.fit_n),
        ("D", by_d, &mut report.fit_d),
    ] {
        let x: Vec<f64> = pts.iter().map(|p| p.0).collect();
        let y: Vec<f64> = pts.iter().map(|p| p.1).collect();
        if pts.iter().any(|p| p.1 <= 0.0) {
            report.fit_notes.push(format!(
                "No fit against {axis}: a test error of 0 has no logarithm."
            ));
            continue;
        }
        match fit_power(axis, &x, &y, &opts) {
            Ok(fit) => *slot = Some(fit),
            Err(e) => report.fit_notes.push(format!("No fit against {axis}: {e}")),
        }
    }
}

fn results_csv(runs: &[ClassifyRun]) -> Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "run_id",
        "model",
        "family",
        "params",
        "train_fraction",
        "train_examples",
        "regulariser",
        "seed",
        "fold",
        "samples",
        "train_flops",
        "train_accuracy",
        "test_accuracy",
        "test_loss",
        "gap",
        "test_macro_f1",
        "test_ece",
        "wall_secs",
    ])?;
    for r in runs {
        let rec = &r.record;
        w.write_record([
            rec.run_id.clone(),
            r.cell.model.clone(),
            rec.config.model.family().to_string(),
            rec.params.total.to_string(),
            r.cell.train_fraction.to_string(),
            rec.train_examples.to_string(),
            r.cell.regulariser.clone(),
            r.cell.seed.to_string(),
            r.cell.fold.map_or(String::new(), |f| f.to_string()),
            rec.kept_samples.to_string(),
            format!("{:e}", rec.train_flops),
            rec.train.accuracy.to_string(),
            rec.test.accuracy.to_string(),
            rec.test.loss.to_string(),
            (rec.train.accuracy - rec.test.accuracy).to_string(),
            rec.test.macro_f1.to_string(),
            rec.test.ece.to_string(),
            format!("{:.3}", rec.wall_secs),
        ])?;
    }
    Ok(String::from_utf8(w.into_inner()?)?)
}

#[cfg(test)]
mod tests {
    use super::mean_sd;

    #[test]
    fn mean_and_sample_sd() {
        let (m, s) = mean_sd(&[1.0, 2.0, 3.0, 4.0]);
        assert!((m - 2.5).abs() < 1e-12);
        // Σ(x - 2.5)² = 5, / (4 - 1) → sd √(5/3).
        assert!((s - (5.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert_eq!(mean_sd(&[7.0]), (7.0, 0.0));
    }
}
