//! `scalelab classify`: train one supervised classifier (or k, one per cross-validation fold)
//! on a labelled image set and print its metrics; `scalelab classify-study`: a grid of them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use scalelab_analysis::classify::{ClassifyRow, analyse_classify_study};
use scalelab_data::{
    ImageSplits, LabelledSet, Masking, PairMasking, SentenceSet, SentenceTask, TaggedSplits,
    TextSet, TextSplits, classification_split, load_images, load_pang_lee, load_pos,
    load_sentiment,
};
use scalelab_report::{ClassifyRun, ClassifyStudyReport, render_classify_report};
use scalelab_spec::{
    ClassMetrics, ClassifyConfig, ClassifyRecord, ClassifySpec, ClassifyStudySpec, Dataset,
    InputShape, Objective, RunStatus, TokenizerKind, TokenizerSpec,
};
use scalelab_sweep::{ClassifyPlan, Store, plan_classify_study};
use scalelab_train::transfer::parent_dir;
use scalelab_train::{ClassifierInput, Outcome, Progress, RunOptions, run_id, train_classifier};
use serde_json::json;

use crate::args::{ClassifyArgs, ClassifyStudyArgs, StudyFileArgs, StudyRunArgs};
use crate::progress::Bar;
use crate::study::{StudyKind, run_exit, run_planned, study_name};
use crate::{human, read_toml, set_threads, write_text};

/// A loaded data set of either kind.
/// Whether masked sentences are read in pairs (next-sentence prediction).
#[derive(Clone, Copy)]
enum Pairs {
    No,
    Yes,
}

enum Loaded {
    Images(ImageSplits),
    Text(TextSplits),
    Tagged(TaggedSplits),
    /// A text set's sentences for masked-language-model pre-training.
    /// Pairs of them, when next sentences are predicted too.
    Masked(TextSplits, Pairs),
}

impl Loaded {
    fn load(spec: &ClassifySpec) -> Result<Self> {
        let dataset = spec.dataset();
        let dir = spec.data.dir.as_deref().map(Path::new);
        let max_tokens = spec.data.max_tokens;
        let vocab = match spec.data.tokenizer {
            TokenizerKind::Byte => TokenizerSpec::Byte,
            TokenizerKind::Bpe => TokenizerSpec::BpeTrain {
                vocab_size: spec.data.bpe_vocab_size,
            },
        };
        Ok(if dataset == Dataset::Pos {
            spec.data.check_text()?;
            Loaded::Tagged(load_pos(dir, max_tokens)?)
        } else if dataset == Dataset::PangLee {
            spec.data.check_text()?;
            Loaded::Text(load_pang_lee(dir, &vocab, max_tokens)?)
        } else if dataset.is_text() {
            spec.data.check_text()?;
            Loaded::Text(load_sentiment(dir, &vocab, max_tokens)?)
        } else {
            Loaded::Images(load_images(dataset, dir)?)
        }
        .for_objective(spec.objective))
    }

    /// The data as `objective` reads it (the resolved spec refuses other pairings).
    fn for_objective(self, objective: Objective) -> Self {
        match (self, objective) {
            (Loaded::Text(s), Objective::Mlm) => Loaded::Masked(s, Pairs::No),
            (Loaded::Tagged(s), Objective::Mlm) => Loaded::Masked(s.sentences(), Pairs::No),
            (Loaded::Text(s), Objective::MlmNsp) => Loaded::Masked(s, Pairs::Yes),
            (Loaded::Tagged(s), Objective::MlmNsp) => Loaded::Masked(s.sentences(), Pairs::Yes),
            (loaded, _) => loaded,
        }
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
            // The head predicts at every token (FLOPs counted so), then is read at the
            // chosen ones.
            Loaded::Masked(s, _) => InputShape::Tokens {
                vocab: s.vocab,
                ctx: s.train.ctx,
                per_token: true,
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
            // Every token id, padding (the mask token) included, is an output.
            Loaded::Masked(s, _) => s.vocab,
        }
    }

    fn name(&self) -> &str {
        match self {
            Loaded::Images(s) => &s.name,
            Loaded::Text(s) | Loaded::Masked(s, _) => &s.name,
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
        progress: &mut dyn Progress,
    ) -> Result<Outcome<ClassifyRecord>> {
        let folds = config.fold.map(|f| (f, config.folds));
        let (tf, vf, seed) = (config.train_fraction, config.val_fraction, config.seed);
        Ok(match self {
            Loaded::Images(s) => {
                let (train, val) = classification_split(&s.train, tf, vf, folds, seed);
                announce(train.len(), val.len(), s.test.len());
                train_classifier(config, &train, &val, &s.test, options, progress)?
            }
            Loaded::Text(s) => {
                let (train, val) = classification_split(&s.train, tf, vf, folds, seed);
                announce(train.len(), val.len(), s.test.len());
                train_classifier(config, &train, &val, &s.test, options, progress)?
            }
            Loaded::Tagged(s) => {
                let (train, val) = classification_split(&s.train, tf, vf, folds, seed);
                announce(train.len(), val.len(), s.test.len());
                train_classifier(config, &train, &val, &s.test, options, progress)?
            }
            Loaded::Masked(s, pairs) => {
                // The same split of the sentences as a classifier of them makes; each set
                // keeps them in the file's order (pairs are drawn from neighbours).
                let (train, val) = classification_split(&s.train, tf, vf, folds, seed);
                announce(train.len(), val.len(), s.test.len());
                let sets = [&train, &val, &s.test];
                match pairs {
                    Pairs::No => {
                        self_supervised::<Masking>(sets, s.vocab, config, options, progress)?
                    }
                    Pairs::Yes => {
                        self_supervised::<PairMasking>(sets, s.vocab, config, options, progress)?
                    }
                }
            }
        })
    }
}

/// Trains `config` on the sentences of the training, validation and test `sets` (of `vocab`
/// ids) as the self-supervised task `T` draws them.
fn self_supervised<T: SentenceTask>(
    sets: [&TextSet; 3],
    vocab: usize,
    config: &ClassifyConfig,
    options: &RunOptions,
    progress: &mut dyn Progress,
) -> Result<Outcome<ClassifyRecord>>
where
    T::Batch: ClassifierInput,
{
    let [train, val, test] = sets.map(|set| SentenceSet::<T>::of(set, vocab));
    Ok(train_classifier(
        config, &train, &val, &test, options, progress,
    )?)
}

/// The teacher `train.distill_from` names, read and checked against the student `config`
/// (a classifier of the same data set, trained to classify): its id goes into the student's
/// config, and so its identity.
fn classifier_teacher(
    train: &scalelab_spec::ClassifyTrainSpec,
    config: &scalelab_spec::ClassifyConfig,
) -> Result<Option<scalelab_spec::DistillConfig>> {
    let Some(dir) = &train.distill_from else {
        return Ok(None);
    };
    let path = Path::new(dir).join("record.json");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        anyhow::anyhow!(
            "train.distill_from = {dir}: cannot read {}: {e}\nhint: give the run directory of a trained classifier",
            path.display()
        )
    })?;
    let teacher: scalelab_spec::ClassifyRecord = serde_json::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "train.distill_from = {dir}: {} is not a classifier's record ({e})\nhint: give the run directory of a trained classifier (a language model distils language models: scalelab train --distill-from)",
            path.display()
        )
    })?;
    if teacher.config.dataset != config.dataset {
        anyhow::bail!(
            "train.distill_from = {dir}: the teacher was trained on {}, the student trains on {}\nhint: distil from a teacher of the same data set",
            scalelab_spec::Named::name(teacher.config.dataset),
            scalelab_spec::Named::name(config.dataset)
        );
    }
    if config.objective != scalelab_spec::Objective::Classify
        || teacher.config.objective != scalelab_spec::Objective::Classify
    {
        anyhow::bail!(
            "train.distill_from = {dir}: distillation is offered between classifiers (objective = \"classify\"), not for masked-language-model pre-training\nhint: leave distill_from out of this run"
        );
    }
    Ok(Some(scalelab_spec::DistillConfig {
        teacher: teacher.run_id,
        temperature: train.distill_temperature,
        hard_weight: train.distill_hard_weight,
    }))
}

/// Runs the command.
pub(crate) fn run(args: ClassifyArgs) -> Result<ExitCode> {
    if args.run.exit_with_parent {
        crate::exit_with_parent();
    }
    let interrupt = crate::interrupt::handle()?;
    let spec = args.spec()?;
    let threads = set_threads(args.run.threads)?;
    let data = Loaded::load(&spec)?;
    let parent = crate::read_parent(&spec.init)?;
    let mut config = spec.resolve(data.input(), data.n_classes(), parent.as_ref())?;
    config.train.distill = classifier_teacher(&spec.train, &config)?;
    let folds: Vec<Option<usize>> = if config.fold.is_some() {
        vec![config.fold]
    } else if config.folds >= 2 {
        (0..config.folds).map(Some).collect()
    } else {
        vec![None]
    };
    let params = config.model.param_counts();
    let (device, backend) = crate::device::open(spec.device)?;
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
            run_dir: args
                .run
                .run_dir
                .clone()
                .unwrap_or_else(|| args.run.out.join(&id)),
            device: device.clone(),
            backend: backend.clone(),
            resume: true,
            stop_after_tokens: args.run.stop_after,
            interrupt: Some(Arc::clone(&interrupt)),
            init_from: spec.init.from.as_deref().map(parent_dir),
            distill_from: spec.train.distill_from.as_deref().map(PathBuf::from),
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
        let mut bar = Bar::new(args.run.json || args.run.exit_with_parent, "samples");
        let outcome = data
            .train(&config, &options, announce, &mut bar)
            .with_context(|| format!("training classifier run {id}"))?;
        bar.finish();
        let record = match outcome {
            Outcome::Finished(record) => *record,
            Outcome::Stopped { tokens_seen } => {
                let dir = &options.run_dir;
                return Ok(crate::interrupt::stopped(
                    &interrupt,
                    tokens_seen,
                    "samples",
                    dir,
                ));
            }
        };
        eprintln!(
            "record written to {}",
            options.run_dir.join("record.json").display()
        );
        crate::export::after_run(
            &options.run_dir,
            args.run.tensorboard.as_deref(),
            &args.run.mlflow,
        )?;
        records.push(record);
    }
    let diverged = records.iter().find_map(|r| match &r.status {
        RunStatus::Diverged { reason, .. } => Some(format!("run {} diverged: {reason}", r.run_id)),
        RunStatus::Completed => None,
    });
    let mut out = std::io::stdout().lock();
    match records.as_slice() {
        [record] if args.run.json => {
            serde_json::to_writer_pretty(&mut out, record)?;
            writeln!(out)?;
        }
        [record] => print_record(&mut out, record)?,
        _ if args.run.json => {
            serde_json::to_writer_pretty(&mut out, &fold_summary(&records))?;
            writeln!(out)?;
        }
        _ => print_folds(&mut out, &records)?,
    }
    Ok(match diverged {
        Some(message) => {
            eprintln!("{message}\nhint: lower `train.lr`, or raise `train.warmup_fraction`");
            ExitCode::from(3)
        }
        None => ExitCode::SUCCESS,
    })
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
        r.result.flops_per_sample
    )?;
    writeln!(
        out,
        "trained     {} samples on {} examples ({:.1} epochs), {:.3e} FLOPs; weights kept at {} samples{}",
        r.result.samples_seen,
        r.result.train_examples,
        r.result.samples_seen as f64 / r.result.train_examples.max(1) as f64,
        r.result.train_flops,
        r.result.kept_samples,
        if r.result.stopped_early {
            " (stopped early)"
        } else {
            ""
        }
    )?;
    if let RunStatus::Diverged { tokens, reason } = &r.status {
        writeln!(out, "diverged    at {tokens} samples: {reason}")?;
    }
    writeln!(
        out,
        "{:<11} {:>7}  {:<24}  {:>8}  {:>6}  {:>6}",
        "", "loss", "accuracy [95% CI]", "macro F1", "ECE", "n"
    )?;
    writeln!(out, "{}", metrics_row("train", &r.result.train))?;
    writeln!(out, "{}", metrics_row("validation", &r.result.validation))?;
    writeln!(out, "{}", metrics_row("test", &r.result.test))?;
    writeln!(
        out,
        "gap         train - test accuracy {:+.4}",
        r.result.train.accuracy - r.result.test.accuracy
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
        "validation": part(|r| &r.result.validation),
        "test": part(|r| &r.result.test),
        "train": part(|r| &r.result.train),
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
            cell(|r| &r.result.train),
            cell(|r| &r.result.validation),
            cell(|r| &r.result.test)
        )?;
    }
    Ok(())
}

/// `scalelab classify-study FILE [--out DIR] [--threads N]`: the same as `scalelab study run
/// FILE --dir DIR/NAME [--threads-per-run N]`, kept so that older commands still work.
pub(crate) fn study(args: ClassifyStudyArgs) -> Result<ExitCode> {
    let spec: ClassifyStudySpec = read_toml(&args.file)?;
    study_run(&StudyRunArgs {
        dir: Some(args.out.join(&spec.name)),
        file: args.file,
        jobs: None,
        threads_per_run: args.threads,
        no_report: false,
        claim_timeout: None,
        device: None,
        tensorboard: None,
        mlflow: Default::default(),
        import_only: false,
    })
}

/// The study file, its grid planned against its data: every cell resolved and checked
/// before anything trains.
pub(crate) fn classify_plan(
    file: &Path,
    dir: Option<&Path>,
) -> Result<(ClassifyPlan, String, PathBuf)> {
    let spec: ClassifyStudySpec = read_toml(file)?;
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read study file {}", file.display()))?;
    let data = Loaded::load(&spec.base).with_context(|| format!("in {}", file.display()))?;
    let plan = plan_classify_study(&spec, data.input(), data.n_classes(), file)?;
    let dir = dir.map_or_else(
        || PathBuf::from("studies").join(&spec.name),
        Path::to_path_buf,
    );
    Ok((plan, text, dir))
}

/// `scalelab study plan FILE` of a classification study: its runs, resolved.
pub(crate) fn study_plan(args: &StudyFileArgs) -> Result<ExitCode> {
    let (plan, _, dir) = classify_plan(&args.file, args.dir.as_deref())?;
    crate::study::write_plan(&plan.spec.name, &dir, &plan)?;
    if args.json {
        let runs: Vec<serde_json::Value> = plan
            .runs
            .iter()
            .map(|r| {
                json!({
                    "run_id": r.run_id, "cell": r.cell, "model": r.config.model.describe(),
                    "params": r.params, "samples": r.samples, "flops": r.flops,
                })
            })
            .collect();
        let value = json!({
            "study": plan.spec.name, "kind": "classify", "dir": dir, "runs": runs,
            "total_flops": plan.total_flops(),
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "classification study {} ({} runs) -> {}",
        plan.spec.name,
        plan.runs.len(),
        dir.display()
    );
    println!(
        "{:<16} {:<18} {:>6} {:<16} {:>4} {:>10} {:>10} {:>10}",
        "run", "model", "D", "regulariser", "seed", "params", "samples", "FLOPs"
    );
    for r in &plan.runs {
        println!(
            "{:<16} {:<18} {:>6} {:<16} {:>4} {:>10} {:>10} {:>10.3e}",
            r.run_id,
            r.cell.model,
            r.cell.train_fraction,
            r.cell.regulariser,
            r.cell.seed,
            human(r.params.total as f64),
            human(r.samples as f64),
            r.flops
        );
    }
    println!("total {:.3e} FLOPs", plan.total_flops());
    Ok(ExitCode::SUCCESS)
}

/// `scalelab study run FILE` of a classification study: every cell planned first, then
/// trained as child processes (several at a time, resumable after any interruption,
/// `kill -9` included) by the one study runner, then a CSV of the results and the report.
pub(crate) fn study_run(args: &StudyRunArgs) -> Result<ExitCode> {
    let (plan, text, dir) = classify_plan(&args.file, args.dir.as_deref())?;
    let context = (plan.spec.name.as_str(), text.as_str(), dir.as_path());
    let (summary, store) = run_planned(args, StudyKind::Classify, &plan, plan.runs.len(), context)?;
    if !args.no_report && store.is_some() {
        let path = study_report(&dir, None)?;
        println!("{}", path.display());
    }
    Ok(run_exit(&summary))
}

/// The study's recorded runs, in the grid's order.
fn recorded_runs(store: &Store) -> Result<Vec<ClassifyRun>> {
    Ok(store
        .classify_runs()?
        .into_iter()
        .map(|(cell, record)| ClassifyRun { cell, record })
        .collect())
}

/// Writes the study's results CSV to `path`.
pub(crate) fn write_results(store: &Store, path: &Path) -> Result<()> {
    write_text(path, &results_csv(&recorded_runs(store)?)?)
}

/// Writes `results.csv` and the report (to `out`, default `DIR/report.html`) of the
/// classification study in `dir`, from its store; returns the report's path.
pub(crate) fn study_report(dir: &Path, out: Option<&Path>) -> Result<PathBuf> {
    let store = Store::open(dir)?;
    let runs = recorded_runs(&store)?;
    let spec: ClassifyStudySpec = match store.meta("spec_toml")? {
        Some(text) => toml::from_str(&text).with_context(|| {
            format!(
                "the study file stored in {} is damaged",
                store.path().display()
            )
        })?,
        None => ClassifyStudySpec {
            name: study_name(&store, dir)?,
            ..ClassifyStudySpec::default()
        },
    };
    write_text(&dir.join("results.csv"), &results_csv(&runs)?)?;
    let rows: Vec<ClassifyRow> = runs
        .iter()
        .map(|r| ClassifyRow::of(&r.cell, &r.record))
        .collect();
    let analysis = analyse_classify_study(&rows);
    let report = ClassifyStudyReport {
        name: spec.name.clone(),
        description: spec.description.clone(),
        command: format!("scalelab study report {}", dir.display()),
        fit_n: analysis.fit_n,
        fit_d: analysis.fit_d,
        fit_notes: analysis.notes,
    };
    let path = out.map_or_else(|| dir.join("report.html"), Path::to_path_buf);
    write_text(&path, &render_classify_report(&report, &runs)?)?;
    eprintln!(
        "results in {}, report in {}",
        dir.join("results.csv").display(),
        path.display()
    );
    Ok(path)
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
            rec.result.train_examples.to_string(),
            r.cell.regulariser.clone(),
            r.cell.seed.to_string(),
            r.cell.fold.map_or(String::new(), |f| f.to_string()),
            rec.result.kept_samples.to_string(),
            format!("{:e}", rec.result.train_flops),
            rec.result.train.accuracy.to_string(),
            rec.result.test.accuracy.to_string(),
            rec.result.test.loss.to_string(),
            (rec.result.train.accuracy - rec.result.test.accuracy).to_string(),
            rec.result.test.macro_f1.to_string(),
            rec.result.test.ece.to_string(),
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
