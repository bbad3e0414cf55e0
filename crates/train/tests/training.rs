//! The training loop end to end on the embedded corpus, with a tiny GPT: determinism,
//! resume-equals-uninterrupted, divergence handling, corrupt checkpoints, and learning.

#![expect(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

use burn::tensor::Device;
use scalelab_data::{TokenData, TrainingData, load_corpus};
use scalelab_spec::{CurvePoint, GptSpec, RunConfig, RunSpec, RunStatus, TrainSpec};
use scalelab_train::{NoProgress, Outcome, RunOptions, train_gpt};

fn tiny_spec() -> RunSpec {
    RunSpec {
        seed: 11,
        model: GptSpec {
            ctx_len: 32,
            ..GptSpec::with_preset("nano")
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
    };
    train_gpt(config, data, &options, &mut NoProgress).unwrap()
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
    let config = spec.resolve(256).unwrap();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();

    let a = finished(run(&config, &data, dirs[0].path(), false, None));
    let b = finished(run(&config, &data, dirs[1].path(), false, None));
    assert_eq!(a.status, RunStatus::Completed);
    assert_eq!(a.curve.len(), 4, "evaluations at 0, 4, 8 and 12 steps");
    assert_eq!(
        losses(&a.curve),
        losses(&b.curve),
        "same seed, identical curve"
    );
    assert_eq!(a.tokens_seen, 12 * 256);
    assert_eq!(a.train_flops, a.tokens_seen as f64 * a.flops_per_token);

    // Another seed gives another curve.
    let mut other = config.clone();
    other.seed = 12;
    let c = finished(run(&other, &data, dirs[2].path(), false, None));
    assert_ne!(losses(&a.curve), losses(&c.curve));

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
        losses(&resumed.curve),
        losses(&uninterrupted.curve),
        "resume continues the same curve"
    );
    assert_eq!(
        losses(&uninterrupted.curve),
        losses(&a.curve),
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
    let config = spec.resolve(256).unwrap();
    let record = finished(run(
        &config,
        &data,
        tempfile::tempdir().unwrap().path(),
        false,
        None,
    ));
    let first = record.curve.first().unwrap().val_loss;
    let last = record.final_val_loss.unwrap();
    // Untrained: about ln 256 = 5.55 nats. Sixty small steps learn at least the byte unigram
    // distribution (about 3.1 nats on English text).
    assert!((first - 256f64.ln()).abs() < 0.1, "{first}");
    assert!(last < 3.5, "{first} -> {last}");
    // Bits per byte of the byte tokenizer are nats / ln 2.
    assert!((record.final_val_bpb.unwrap() - last / std::f64::consts::LN_2).abs() < 1e-12);
}

#[test]
fn divergence_is_recorded_not_a_crash() {
    let mut spec = tiny_spec();
    spec.train.lr = 1e6;
    spec.train.grad_clip = 0.0;
    spec.train.warmup_fraction = 0.0;
    let data = data(&spec);
    let config = spec.resolve(256).unwrap();
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
    let config = spec.resolve(256).unwrap();
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
    };
    let err = train_gpt(&config, &data, &options, &mut NoProgress)
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
