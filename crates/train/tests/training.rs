//! The training loop end to end on the embedded corpus, with a tiny GPT: determinism,
//! resume-equals-uninterrupted, divergence handling, corrupt checkpoints, and learning.

#![expect(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

use burn::tensor::Device;
use scalelab_data::{TokenData, TrainingData, load_corpus};
use scalelab_spec::{
    CurvePoint, GptPreset, LmSpec, RunConfig, RunSpec, RunStatus, TaskMetrics, TaskSpec, TrainSpec,
};
use scalelab_train::{NoProgress, Outcome, RunOptions, train_lm};

fn tiny_spec() -> RunSpec {
    RunSpec {
        seed: 11,
        model: LmSpec {
            ctx_len: 32,
            ..LmSpec::with_preset(GptPreset::Nano)
        },
        train: TrainSpec {
            batch_size: 4,
            grad_accum: 2,
            lr: 3e-3,
            budget_tokens: Some(4 * 2 * 32 * 12), // 12 steps
            eval_every_tokens: 4 * 2 * 32 * 4,    // every 4 steps
            eval_tokens: 256,
            ..TrainSpec::default()
        },
        ..RunSpec::default()
    }
}

fn data(spec: &RunSpec) -> TrainingData {
    let config = spec.data.resolve().unwrap();
    let text = TokenData::prepare(
        &load_corpus(&config.source).unwrap(),
        &config,
        spec.model.ctx_len,
    )
    .unwrap();
    let task = spec.task.as_ref().map(|t| t.resolve().unwrap());
    TrainingData::new(Some(text), task.as_ref()).unwrap()
}

fn run(
    config: &RunConfig,
    data: &TrainingData,
    dir: &std::path::Path,
    resume: bool,
    stop: Option<u64>,
) -> Outcome {
    let options = RunOptions {
        run_dir: dir.to_path_buf(),
        device: Device::flex(),
        backend: "burn-flex (cpu)".into(),
        resume,
        stop_after_tokens: stop,
        interrupt: None,
        init_from: None,
        distill_from: None,
    };
    train_lm(config, data, &options, &mut NoProgress).unwrap()
}

fn finished(outcome: Outcome) -> scalelab_spec::RunRecord {
    match outcome {
        Outcome::Finished(record) => *record,
        other => panic!("expected a finished run, got {other:?}"),
    }
}

/// The curve without wall-clock times, which differ from run to run.
fn losses(curve: &[CurvePoint]) -> Vec<(u64, Option<f64>, f64, f64)> {
    curve
        .iter()
        .map(|p| (p.tokens, p.train_loss, p.val_loss, p.lr))
        .collect()
}

#[test]
fn same_seed_same_curve_and_resume_continues_it() {
    let spec = tiny_spec();
    let data = data(&spec);
    let config = spec.resolve(256, None).unwrap();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();

    let a = finished(run(&config, &data, dirs[0].path(), false, None));
    let b = finished(run(&config, &data, dirs[1].path(), false, None));
    assert_eq!(a.status, RunStatus::Completed);
    assert_eq!(
        a.result.curve.len(),
        4,
        "evaluations at 0, 4, 8 and 12 steps"
    );
    assert_eq!(
        losses(&a.result.curve),
        losses(&b.result.curve),
        "same seed, identical curve"
    );
    assert_eq!(a.result.tokens_seen, 12 * 256);
    assert_eq!(
        a.result.train_flops,
        a.result.tokens_seen as f64 * a.result.flops_per_token
    );

    // Another seed gives another curve.
    let mut other = config.clone();
    other.seed = 12;
    let c = finished(run(&other, &data, dirs[2].path(), false, None));
    assert_ne!(losses(&a.result.curve), losses(&c.result.curve));

    // Interrupted after the checkpoint at step 5, then resumed: the same curve as `a`.
    let mut checkpointed = config.clone();
    checkpointed.train.checkpoint_every_tokens = 5 * 256;
    let uninterrupted = finished(run(
        &checkpointed,
        &data,
        tempfile::tempdir().unwrap().path(),
        false,
        None,
    ));
    let dir = tempfile::tempdir().unwrap();
    match run(&checkpointed, &data, dir.path(), false, Some(5 * 256)) {
        Outcome::Stopped { tokens_seen } => assert_eq!(tokens_seen, 5 * 256),
        other => panic!("expected a stop at the checkpoint, got {other:?}"),
    }
    assert!(
        !dir.path().join("record.json").exists(),
        "no record before the run finishes"
    );
    let resumed = finished(run(&checkpointed, &data, dir.path(), true, None));
    assert!(resumed.resumed);
    assert_eq!(
        losses(&resumed.result.curve),
        losses(&uninterrupted.result.curve),
        "resume continues the same curve"
    );
    assert_eq!(
        losses(&uninterrupted.result.curve),
        losses(&a.result.curve),
        "checkpointing changes nothing"
    );
    // The record on disk is the one returned.
    let on_disk: scalelab_spec::RunRecord =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("record.json")).unwrap())
            .unwrap();
    assert_eq!(on_disk, resumed);
}

#[test]
fn training_lowers_validation_loss() {
    let mut spec = tiny_spec();
    spec.train.budget_tokens = Some(4 * 2 * 32 * 60);
    spec.train.eval_every_tokens = 4 * 2 * 32 * 30;
    let data = data(&spec);
    let config = spec.resolve(256, None).unwrap();
    let record = finished(run(
        &config,
        &data,
        tempfile::tempdir().unwrap().path(),
        false,
        None,
    ));
    let first = record.result.curve.first().unwrap().val_loss;
    let last = record.result.final_val_loss.unwrap();
    // Untrained: about ln 256 = 5.55 nats. Sixty small steps learn at least the byte unigram
    // distribution (about 3.1 nats on English text).
    assert!((first - 256f64.ln()).abs() < 0.1, "{first}");
    assert!(last < 3.5, "{first} -> {last}");
    // Bits per byte of the byte tokenizer are nats / ln 2.
    assert!((record.result.final_val_bpb.unwrap() - last / std::f64::consts::LN_2).abs() < 1e-12);
}

#[test]
fn language_models_stop_early_keeping_the_best_weights_and_take_penalties() {
    // At lr 1e-12 no f32 weight moves, so the validation loss never improves on the first
    // evaluation: with patience 1 the run stops at the second one (4 of its 12 steps) and
    // keeps the weights at token 0, whose loss is its final loss.
    let mut spec = tiny_spec();
    spec.train.lr = 1e-12;
    spec.train.early_stopping_patience = 1;
    let data = data(&spec);
    let config = spec.resolve(256, None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let record = finished(run(&config, &data, dir.path(), false, None));
    let step = 4 * 2 * 32;
    assert!(record.result.stopped_early);
    assert_eq!(record.result.tokens_seen, 4 * step);
    assert_eq!(record.result.kept_tokens, Some(0));
    assert_eq!(record.result.curve.len(), 2);
    assert_eq!(
        record.result.final_val_loss,
        Some(record.result.curve[0].val_loss)
    );
    assert!(record.status == RunStatus::Completed);
    // Patience is part of the run's identity; off, it is left out (ids as before).
    let json = serde_json::to_value(&config).unwrap();
    assert_eq!(json["train"]["early_stopping_patience"], 1);
    let plain = tiny_spec().resolve(256, None).unwrap();
    let json = serde_json::to_value(&plain).unwrap();
    assert!(json["train"].get("early_stopping_patience").is_none());
    assert!(json["train"].get("l2").is_none());

    // An L2 penalty adds l2/2·Σw² (about 50 for this model's initial weights) to the
    // training loss and not to the validation loss, which it does not touch at token 0.
    let mut spec = tiny_spec();
    spec.train.l2 = 0.01;
    let penalised = finished(run(
        &spec.resolve(256, None).unwrap(),
        &data,
        tempfile::tempdir().unwrap().path(),
        false,
        None,
    ));
    let free = finished(run(
        &plain,
        &data,
        tempfile::tempdir().unwrap().path(),
        false,
        None,
    ));
    assert_eq!(
        penalised.result.curve[0].val_loss,
        free.result.curve[0].val_loss
    );
    let train_loss = |r: &scalelab_spec::RunRecord| r.result.curve[1].train_loss.unwrap();
    let extra = train_loss(&penalised) - train_loss(&free);
    assert!((0.1..0.5).contains(&extra), "penalty added {extra}");
    assert!(penalised.result.kept_tokens.is_none() && !penalised.result.stopped_early);
}

#[test]
fn divergence_is_recorded_not_a_crash() {
    let mut spec = tiny_spec();
    spec.train.lr = 1e6;
    spec.train.grad_clip = 0.0;
    spec.train.warmup_fraction = 0.0;
    let data = data(&spec);
    let config = spec.resolve(256, None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let record = finished(run(&config, &data, dir.path(), false, None));
    match &record.status {
        RunStatus::Diverged { tokens, reason } => {
            assert!(
                *tokens < record.config.train.batch_size as u64 * 2 * 32 * 12,
                "stopped early"
            );
            assert!(reason.contains("NaN") || reason.contains("inf"), "{reason}");
        }
        other => panic!("expected divergence, got {other:?}"),
    }
    assert!(
        dir.path().join("record.json").is_file(),
        "a diverged run still writes its record"
    );
}

#[test]
fn corrupt_checkpoint_is_a_clear_error_and_is_kept() {
    let mut spec = tiny_spec();
    spec.train.checkpoint_every_tokens = 256;
    let data = data(&spec);
    let config = spec.resolve(256, None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        run(&config, &data, dir.path(), false, Some(256)),
        Outcome::Stopped { .. }
    ));
    let weights = dir.path().join("checkpoint/model.safetensors");
    std::fs::write(&weights, b"not a safetensors file").unwrap();
    let options = RunOptions {
        run_dir: dir.path().to_path_buf(),
        device: Device::flex(),
        backend: "test".into(),
        resume: true,
        stop_after_tokens: None,
        interrupt: None,
        init_from: None,
        distill_from: None,
    };
    let err = train_lm(&config, &data, &options, &mut NoProgress)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("model.safetensors") && err.contains("hint:"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&weights).unwrap(),
        b"not a safetensors file",
        "nothing overwritten"
    );
    assert!(dir.path().join("checkpoint/state.json").is_file());
}

fn task_spec(mix: f64, ctx: usize) -> RunSpec {
    RunSpec {
        seed: 5,
        model: LmSpec {
            ctx_len: ctx,
            ..LmSpec::with_preset(GptPreset::Nano)
        },
        train: TrainSpec {
            batch_size: 32,
            lr: 3e-3,
            budget_tokens: Some(32 * ctx as u64 * 40), // 40 steps
            eval_every_tokens: 32 * ctx as u64 * 20,   // every 20 steps
            eval_per_decade: 2,                        // and at steps 1, 3, 10, 32
            eval_tokens: 256,
            ..TrainSpec::default()
        },
        task: Some(TaskSpec {
            name: "copy".into(),
            length: 4,
            test_size: 64,
            mix,
            ..TaskSpec::default()
        }),
        ..RunSpec::default()
    }
}

/// The metrics' own invariants, whatever the model: exact match needs every token right, a
/// wrong answer is at least one edit away, and every value lies in its range.
fn check_metrics(m: &TaskMetrics, examples: usize) {
    assert_eq!((m.examples, m.answer_tokens), (examples, 4));
    assert!((0.0..=1.0).contains(&m.exact_match) && m.exact_match <= m.token_accuracy + 1e-12);
    assert!(m.edit_distance >= 1.0 - m.exact_match - 1e-12 && m.edit_distance <= 4.0);
    assert!(m.log_prob <= 0.0 && (0.0..=2.0).contains(&m.brier), "{m:?}");
}

#[test]
fn task_runs_record_every_metric_over_log_spaced_evaluations() {
    // copy of 4 letters: prompt 5 tokens, answer 4, read in sequences of 8.
    let mut spec = task_spec(1.0, 8);
    spec.train.keep_snapshots = true;
    let data = data(&spec);
    let config = spec.resolve(256, None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let record = finished(run(&config, &data, dir.path(), false, None));
    let steps: Vec<u64> = record.result.curve.iter().map(|p| p.step).collect();
    assert_eq!(steps, vec![0, 1, 4, 10, 20, 32, 40]);
    // Weights kept at the log-spaced points (256 tokens a step), and they differ.
    let mut kept: Vec<String> = std::fs::read_dir(dir.path().join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    kept.sort();
    let expected: Vec<String> = [1u64, 4, 10, 32]
        .iter()
        .map(|s| format!("tokens-{:012}.safetensors", s * 256))
        .collect();
    assert_eq!(kept, expected);
    let read = |name: &str| std::fs::read(dir.path().join("snapshots").join(name)).unwrap();
    assert_ne!(read(&kept[0]), read(&kept[3]));
    for p in &record.result.curve {
        check_metrics(p.task_test.as_ref().unwrap(), 64);
        check_metrics(p.task_train.as_ref().unwrap(), 64);
        assert!(p.weight_norm.unwrap() > 0.0);
    }
    // The validation loss of a task alone is the answer loss on the test set, and 40 steps
    // of copying teach the model something about the answer.
    let first = record.result.curve[0].task_test.clone().unwrap();
    let last = record
        .result
        .curve
        .last()
        .unwrap()
        .task_test
        .clone()
        .unwrap();
    assert!(
        last.log_prob > first.log_prob + 1.0,
        "{first:?} -> {last:?}"
    );
    let val = record.result.curve.last().unwrap().val_loss;
    assert!(
        (val - (-last.log_prob / 4.0)).abs() < 1e-3,
        "{val} vs {last:?}"
    );
}

#[test]
fn tasks_mix_into_the_corpus() {
    let spec = task_spec(0.5, 32);
    let data = data(&spec);
    let config = spec.resolve(256, None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let record = finished(run(&config, &data, dir.path(), false, None));
    let last = record.result.curve.last().unwrap();
    check_metrics(last.task_test.as_ref().unwrap(), 64);
    // Validation is on the corpus: its loss is per text token.
    assert!(
        last.val_loss > 1.0 && last.val_loss < 6.0,
        "{}",
        last.val_loss
    );
    // About half of the training sequences are packed examples.
    let batch = data.train_batch(config.seed, 0, 64, 32);
    let packed = (0..64)
        .filter(|row| {
            let seq = &batch.inputs[row * 32..(row + 1) * 32];
            seq.iter().filter(|&&t| t == i64::from(b'|')).count() >= 3
        })
        .count();
    assert!(
        (16..=48).contains(&packed),
        "{packed} of 64 rows are examples"
    );
}
