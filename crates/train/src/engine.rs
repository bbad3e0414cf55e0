//! The one training loop, for every kind of run: language models, synthetic tasks and
//! classifiers. A [`Workload`] says what a step trains on and how a point of the curve is
//! measured; the loop does the rest, the same way for all of them:
//!
//! - the budget (tokens or samples, or FLOPs converted to them) rounded up to whole optimiser
//!   steps, and the learning rate of the units reached (warm-up, then cosine decay);
//! - per step the workload's micro-batches (gradient accumulation), each loss checked for
//!   NaN/inf, gradients averaged, the global gradient norm clipped, one AdamW step;
//! - evaluation at 0, every `eval_every` units, at log-spaced points, and at the end;
//! - early stopping after `patience` evaluations without a better validation loss, keeping
//!   the best weights;
//! - divergence (a non-finite training or validation loss) recorded as the run's status;
//! - atomic checkpoints every `checkpoint_every` units (and at the end where asked), exact
//!   resume from them, and a stop "as if killed" after a checkpoint for tests;
//! - progress (start, every step, every evaluation).
//!
//! What a run records is the caller's: the loop returns the curve, the weights and how the
//! run ended.

use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use burn::lr_scheduler::module_lr_scheduler::{ModuleLearningRate, ModuleLrScheduler};
use burn::module::Module;
use burn::module::{ParamGroup, ParamId};
use burn::optim::ModuleOptimizer;
use burn::tensor::Tensor;
use scalelab_spec::{Adaptation, Record, RecordKind, RunStatus};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::checkpoint::{self, CHECKPOINT_SCHEMA_VERSION, CheckpointState};
use crate::fsutil::write_atomic;
use crate::schedule::learning_rate;
use crate::trainer::train_step;
use crate::{Progress, RunOptions, TrainError, machine};

/// The loop's settings, in the workload's units (tokens or samples).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct LoopSettings {
    /// Optimiser steps of the budget.
    pub total_steps: u64,
    /// Units (tokens or samples) per step.
    pub per_step: u64,
    /// Peak learning rate.
    pub lr: f64,
    /// Final learning rate as a share of the peak.
    pub min_lr_ratio: f64,
    /// Warm-up share of the budget.
    pub warmup_fraction: f64,
    /// Global gradient-norm clip (0: none).
    pub grad_clip: f64,
    /// Units between evaluations (0: only at 0 and at the end).
    pub eval_every: u64,
    /// Extra log-spaced evaluations per decade of units (0: none).
    pub eval_per_decade: u32,
    /// Keep the weights at every log-spaced evaluation.
    pub keep_snapshots: bool,
    /// Units between checkpoints (0: none but the last, if `checkpoint_at_end`).
    pub checkpoint_every: u64,
    /// Checkpoint at the end of the budget.
    pub checkpoint_at_end: bool,
    /// Evaluations without a better validation loss before stopping (0: never).
    pub patience: usize,
}

impl LoopSettings {
    /// The settings of a run of `(steps, units per step)` on this learning-rate curve (peak,
    /// final share of the peak, warm-up share), with everything else off: no clipping, no
    /// evaluations but at 0 and the end, no checkpoints, no early stopping.
    pub fn new((total_steps, per_step): (u64, u64), lr: f64, min_lr: f64, warmup: f64) -> Self {
        LoopSettings {
            total_steps,
            per_step,
            lr,
            min_lr_ratio: min_lr,
            warmup_fraction: warmup,
            grad_clip: 0.0,
            eval_every: 0,
            eval_per_decade: 0,
            keep_snapshots: false,
            checkpoint_every: 0,
            checkpoint_at_end: false,
            patience: 0,
        }
    }
}

/// Where the loop stands when it asks for an evaluation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct At {
    /// Optimiser steps taken.
    pub step: u64,
    /// Units trained on.
    pub seen: u64,
    /// Learning rate of the last step (0 before the first).
    pub lr: f64,
    /// Wall seconds of training so far.
    pub wall_secs: f64,
    /// Mean training loss since the previous evaluation.
    pub train_loss: Option<f64>,
}

/// One kind of run, as the loop sees it.
pub(crate) trait Workload {
    /// The model trained.
    type Model: Module + Clone;
    /// A micro-batch.
    type Batch;
    /// A point of the curve.
    type Point: Clone + Serialize + DeserializeOwned;
    /// The resolved config, kept in checkpoints.
    type Config: Clone + Serialize + DeserializeOwned;

    /// The run's id and resolved config (checkpoints belong to one run).
    fn identity(&self) -> (&str, &Self::Config);
    /// The loop's settings.
    fn settings(&self) -> LoopSettings;
    /// The micro-batches of optimiser step `step`.
    fn batches(&self, step: u64) -> Vec<Self::Batch>;
    /// The differentiable loss of `model` on `batch`, `[1]`.
    fn loss(&self, model: &Self::Model, batch: &Self::Batch) -> Tensor<1>;
    /// Measures `model` at `at`.
    fn evaluate(&mut self, model: &Self::Model, at: At) -> Self::Point;
    /// The validation loss of a point (early stopping and divergence read it).
    fn val_loss(point: &Self::Point) -> f64;
    /// The units (tokens, samples) trained on at a point.
    fn units(point: &Self::Point) -> u64;
    /// Tells `progress` about an evaluation.
    fn announce(_point: &Self::Point, _progress: &mut dyn Progress) {}
    /// The model a fresh (not resumed) run starts from: as initialised, or with a parent
    /// run's weights.
    fn start_from(
        &self,
        model: Self::Model,
        _options: &RunOptions,
    ) -> Result<Self::Model, TrainError> {
        Ok(model)
    }
    /// The model with only the weights that train left trainable (also after a checkpoint
    /// loads).
    /// The model after each optimiser step that took training from `before` to `after` of
    /// `total` units (pruning's masks): unchanged by default.
    fn after_step(
        &mut self,
        model: Self::Model,
        _before: u64,
        _after: u64,
        _total: u64,
    ) -> Self::Model {
        model
    }

    fn adapt(&self, model: Self::Model) -> Result<Self::Model, TrainError> {
        Ok(model)
    }
    /// The body's parameters and the share of the learning rate they train at, when it is
    /// not the whole (a fine-tuned run with `init.body_lr_ratio`).
    fn body_lr(&self, _model: &Self::Model) -> Option<BodyLr> {
        None
    }
}

/// The parameters of a model's body (all but its output layer) and the share of the
/// learning rate they train at.
pub(crate) type BodyLr = (Vec<ParamId>, f64);

/// The learning rate of every parameter at peak-scaled rate `lr`: `lr`, or `lr × ratio` for
/// the body (`ModuleLrScheduler`'s last matching group wins, so the body's group overrides the
/// base).
fn module_lr(lr: f64, body: Option<&BodyLr>) -> ModuleLearningRate {
    match body {
        None => lr.into(),
        Some((ids, ratio)) => ModuleLrScheduler::new(lr)
            .with_group(ParamGroup::from_ids(ids.clone()), lr * ratio)
            .step(),
    }
}

/// A run the loop finished (or stopped early, or found diverged).
pub(crate) struct Trained<M, P> {
    /// The weights at the last step.
    pub model: M,
    /// With early stopping, the best weights and the units they had seen.
    pub kept: Option<(u64, M)>,
    /// Every evaluation.
    pub curve: Vec<P>,
    /// Units trained on.
    pub seen: u64,
    /// Completed, or diverged and where.
    pub status: RunStatus,
    /// Stopped by early stopping before the budget was spent.
    pub stopped_early: bool,
    /// Wall seconds, resumed parts included.
    pub wall_secs: f64,
    /// When the run first started.
    pub started_unix_secs: u64,
    /// Whether it continued from a checkpoint.
    pub resumed: bool,
}

impl<M: Module, P> Trained<M, P> {
    /// Writes `weights` (the model the record describes) to the run directory's
    /// [`WEIGHTS_FILE`](crate::transfer::WEIGHTS_FILE), then seals this run's `result` in
    /// the one record envelope and writes it to `record.json`, both atomically.
    pub(crate) fn write_record<C: RecordKind + Serialize + Clone, R: Serialize>(
        &self,
        (id, config): (&str, &C),
        weights: &impl Module,
        extra_secs: f64,
        options: &RunOptions,
        result: R,
    ) -> Result<Record<C, R>, TrainError> {
        let (weights_bytes, adapter_bytes) =
            crate::transfer::save_weights(&options.run_dir, weights)?;
        let adaptation = config.init().map(|init| Adaptation {
            parent: init.parent.clone(),
            trainable_params: crate::transfer::trainable_params(&self.model),
            weights_bytes,
            adapter_bytes,
            peak_rss_bytes: machine::peak_rss_bytes(),
        });
        let record = Record {
            schema_version: C::SCHEMA_VERSION,
            run_id: id.to_string(),
            config: config.clone(),
            git_revision: machine::git_revision().to_string(),
            params: config.param_counts(),
            param_convention: C::PARAM_CONVENTION.to_string(),
            flops_convention: C::FLOPS_CONVENTION,
            status: self.status.clone(),
            resumed: self.resumed,
            wall_secs: self.wall_secs + extra_secs,
            threads: rayon::current_num_threads(),
            machine: machine::describe(&options.backend),
            adaptation,
            result,
        };
        let json = serde_json::to_vec_pretty(&record).map_err(|source| TrainError::Serialise {
            what: "run record",
            source,
        })?;
        write_atomic(&options.run_dir.join("record.json"), &json)?;
        Ok(record)
    }
}

/// How a call of the loop ended.
pub(crate) enum LoopEnd<M, P> {
    /// The budget is spent, early stopping or divergence ended it.
    Trained(Box<Trained<M, P>>),
    /// Stopped at a checkpoint, as if killed ([`RunOptions::stop_after_tokens`]).
    Stopped {
        /// Units trained on so far.
        seen: u64,
    },
}

/// Whether a multiple of `every` lies in `(before, after]`.
pub(crate) fn crossed(before: u64, after: u64, every: u64) -> bool {
    every > 0 && after / every > before / every
}

/// Whether a log-spaced point `first · 10^(i / per_decade)` (i = 0, 1, …) lies in
/// `(before, after]`.
pub(crate) fn log_crossed(before: u64, after: u64, first: u64, per_decade: u32) -> bool {
    if per_decade == 0 || first == 0 || after < first {
        return false;
    }
    let per_decade = f64::from(per_decade);
    // The last point at or below `after` (a little slack for rounding of exact powers).
    let i = (per_decade * (after as f64 / first as f64).log10() + 1e-9).floor();
    let point = (first as f64 * 10f64.powf(i / per_decade)).round() as u64;
    point > before
}

/// The best validation loss of `curve`, the units seen at it, and the evaluations since: as
/// the loop tracks them (a later evaluation replaces the best only when strictly lower).
fn replay_best<P>(curve: &[P], val_loss: fn(&P) -> f64, units: fn(&P) -> u64) -> (f64, u64, usize) {
    let mut best = (f64::INFINITY, 0, 0);
    for (i, p) in curve.iter().enumerate() {
        let v = val_loss(p);
        if i == 0 || v < best.0 {
            best = (v, units(p), 0);
        } else {
            best.2 += 1;
        }
    }
    best
}

/// Trains `model` with `optimizer` on `work` (see the module docs).
pub(crate) fn run_loop<W: Workload>(
    work: &mut W,
    mut model: W::Model,
    mut optimizer: ModuleOptimizer,
    options: &RunOptions,
    progress: &mut dyn Progress,
) -> Result<LoopEnd<W::Model, W::Point>, TrainError> {
    let s = work.settings();
    let total = s.total_steps * s.per_step;
    let (id, config) = work.identity();
    let (id, config) = (id.to_string(), config.clone());
    let resume_from = if options.resume {
        checkpoint::find(&options.run_dir)
    } else {
        None
    };
    // A fresh run starts from its parent's weights (if it has one); then what does not train
    // is frozen, or LoRA adapters attached, before a checkpoint (which holds them) loads.
    if resume_from.is_none() {
        model = work.start_from(model, options)?;
    }
    model = work.adapt(model)?;
    let body_lr = work.body_lr(&model);
    let mut state: CheckpointState<W::Config, W::Point> = match &resume_from {
        Some(dir) => {
            let state = checkpoint::load_state(dir, &id)?;
            (model, optimizer) = checkpoint::load_weights(dir, model, optimizer)?;
            state
        }
        None => CheckpointState {
            schema_version: CHECKPOINT_SCHEMA_VERSION,
            run_id: id,
            config,
            step: 0,
            tokens_seen: 0,
            curve: Vec::new(),
            pending_loss: (0.0, 0),
            wall_secs: 0.0,
            started_unix_secs: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        },
    };
    let clock = Instant::now();
    let wall_before = state.wall_secs;
    let wall = |clock: &Instant| wall_before + clock.elapsed().as_secs_f64();
    progress.start(state.tokens_seen, total);
    let at = |state: &CheckpointState<W::Config, W::Point>, lr: f64, wall_secs: f64| {
        let (sum, count) = state.pending_loss;
        At {
            step: state.step,
            seen: state.tokens_seen,
            lr,
            wall_secs,
            train_loss: (count > 0).then(|| sum / count as f64),
        }
    };
    if state.curve.is_empty() {
        let point = work.evaluate(&model, at(&state, 0.0, wall(&clock)));
        W::announce(&point, progress);
        state.curve.push(point);
    }
    // Early stopping keeps the best weights as a snapshot: `valid()` copies running
    // statistics (batch norm), which a plain clone would share with the model that keeps
    // training. Without it, no snapshot is taken.
    // A resumed run replays its curve to find where the best evaluation was and how many
    // have passed since, and reloads the best weights its checkpoint kept.
    let keep_best = s.patience > 0;
    let (best_loss, best_at, mut since_best) = replay_best(&state.curve, W::val_loss, W::units);
    let best_weights = match (&resume_from, keep_best) {
        (_, false) => None,
        (None, true) => Some((0, model.valid())),
        (Some(dir), true) => Some((best_at, checkpoint::load_best(dir, model.valid())?)),
    };
    let mut best: (f64, Option<(u64, W::Model)>) = (best_loss, best_weights);
    let mut stopped_early = false;

    // Masks kept between steps (pruning) are made from the weights as they start, before the
    // first step changes them: a resumed run's or a pruned parent's zeros.
    model = work.after_step(model, state.tokens_seen, state.tokens_seen, total);
    let mut status = RunStatus::Completed;
    'steps: for step in state.step..s.total_steps {
        let after = (step + 1) * s.per_step;
        let lr = learning_rate(s.lr, s.min_lr_ratio, s.warmup_fraction, after, total);
        let step_loss;
        (model, step_loss) = train_step(
            model,
            &mut optimizer,
            work.batches(step).into_iter(),
            |model: &W::Model, batch: &W::Batch| work.loss(model, batch),
            s.grad_clip,
            module_lr(lr, body_lr.as_ref()),
        );
        let step_loss = match step_loss {
            Ok(loss) => loss,
            Err(value) => {
                status = RunStatus::Diverged {
                    tokens: state.tokens_seen,
                    reason: format!("training loss became {value} at step {step}"),
                };
                break 'steps;
            }
        };

        let before = state.tokens_seen;
        model = work.after_step(model, before, after, total);
        state.step = step + 1;
        state.tokens_seen = after;
        state.pending_loss.0 += step_loss;
        state.pending_loss.1 += 1;
        progress.step(after, step_loss, lr);

        let last = state.step == s.total_steps;
        let log_point = log_crossed(before, after, s.per_step, s.eval_per_decade);
        if log_point && s.keep_snapshots {
            checkpoint::save_snapshot(&options.run_dir, &model, after)?;
        }
        if last || crossed(before, after, s.eval_every) || log_point {
            let point = work.evaluate(&model, at(&state, lr, wall(&clock)));
            let val_loss = W::val_loss(&point);
            if !val_loss.is_finite() {
                status = RunStatus::Diverged {
                    tokens: state.tokens_seen,
                    reason: format!("validation loss became {val_loss} at step {}", state.step),
                };
            }
            W::announce(&point, progress);
            state.curve.push(point);
            state.pending_loss = (0.0, 0);
            if status != RunStatus::Completed {
                break 'steps;
            }
            if val_loss < best.0 {
                best = (val_loss, keep_best.then(|| (after, model.valid())));
                since_best = 0;
            } else {
                since_best += 1;
            }
            if keep_best && since_best >= s.patience {
                stopped_early = !last;
                break 'steps;
            }
        }
        let interrupted =
            !last && (options.interrupt.as_ref()).is_some_and(|flag| flag.load(Ordering::Relaxed));
        if (last && s.checkpoint_at_end)
            || (s.checkpoint_every > 0 && crossed(before, after, s.checkpoint_every))
            || interrupted
        {
            state.wall_secs = wall(&clock);
            let kept = best.1.as_ref().map(|(_, weights)| weights);
            checkpoint::save(&options.run_dir, &model, &optimizer, &state, kept)?;
            if interrupted || (!last && options.stop_after_tokens.is_some_and(|stop| after >= stop))
            {
                return Ok(LoopEnd::Stopped { seen: after });
            }
        }
    }
    Ok(LoopEnd::Trained(Box::new(Trained {
        model,
        kept: best.1,
        curve: state.curve,
        seen: state.tokens_seen,
        status,
        stopped_early,
        wall_secs: wall(&clock),
        started_unix_secs: state.started_unix_secs,
        resumed: resume_from.is_some(),
    })))
}

#[cfg(test)]
mod tests {
    use burn::nn::{Linear, LinearConfig};
    use burn::tensor::Device;
    use serde::Deserialize;

    use super::*;
    use crate::NoProgress;

    /// One evaluation of the toy workload.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Point {
        seen: u64,
        val_loss: f64,
    }

    /// A linear layer whose loss is the sum of its weights times the step's factor, and whose
    /// validation losses are scripted, one an evaluation.
    struct Toy {
        settings: LoopSettings,
        /// The batch of step `k` is `factor(k)`.
        factor: fn(u64) -> f32,
        val_losses: Vec<f64>,
        evaluations: usize,
    }

    impl Workload for Toy {
        type Model = Linear;
        type Batch = f32;
        type Point = Point;
        type Config = ();

        fn identity(&self) -> (&str, &()) {
            ("toy", &())
        }
        fn settings(&self) -> LoopSettings {
            self.settings
        }
        fn batches(&self, step: u64) -> Vec<f32> {
            vec![(self.factor)(step)]
        }
        fn loss(&self, model: &Linear, batch: &f32) -> Tensor<1> {
            model.weight.val().sum().mul_scalar(*batch)
        }
        fn evaluate(&mut self, _model: &Linear, at: At) -> Point {
            let val_loss = self.val_losses[self.evaluations.min(self.val_losses.len() - 1)];
            self.evaluations += 1;
            Point {
                seen: at.seen,
                val_loss,
            }
        }
        fn val_loss(point: &Point) -> f64 {
            point.val_loss
        }
        fn units(point: &Point) -> u64 {
            point.seen
        }
    }

    fn settings(patience: usize) -> LoopSettings {
        LoopSettings {
            eval_every: 8,
            patience,
            ..LoopSettings::new((10, 4), 1e-2, 0.1, 0.0)
        }
    }

    fn train(toy: &mut Toy) -> Box<Trained<Linear, Point>> {
        let device = Device::flex().autodiff();
        let model = LinearConfig::new(2, 1).init(&device);
        let optimizer = crate::trainer::adamw([0.9, 0.999], 1e-8, 0.0, Vec::new());
        let dir = tempfile::tempdir().unwrap();
        let options = RunOptions {
            run_dir: dir.path().to_path_buf(),
            device: Device::flex(),
            backend: "test".into(),
            resume: false,
            stop_after_tokens: None,
            interrupt: None,
            init_from: None,
            distill_from: None,
        };
        match run_loop(toy, model, optimizer, &options, &mut NoProgress).unwrap() {
            LoopEnd::Trained(run) => run,
            LoopEnd::Stopped { .. } => panic!("no checkpoint to stop at"),
        }
    }

    #[test]
    fn a_non_finite_loss_ends_the_run_as_diverged_where_it_happened() {
        let mut toy = Toy {
            settings: settings(0),
            factor: |step| if step == 3 { f32::NAN } else { 1.0 },
            val_losses: vec![1.0],
            evaluations: 0,
        };
        let run = train(&mut toy);
        assert_eq!(
            run.status,
            RunStatus::Diverged {
                tokens: 12,
                reason: "training loss became NaN at step 3".into()
            }
        );
        assert_eq!(run.seen, 12, "three steps of four units");
        // Evaluated at 0 and at 8 units, before the bad step.
        let seen: Vec<u64> = run.curve.iter().map(|p| p.seen).collect();
        assert_eq!(seen, vec![0, 8]);
    }

    #[test]
    fn early_stopping_stops_after_patience_and_keeps_the_best_weights() {
        // Evaluations at 0, 8, 16, 24, …: the best is at 8, then two worse ones.
        let mut toy = Toy {
            settings: settings(2),
            factor: |_| 1.0,
            val_losses: vec![3.0, 1.0, 2.0, 2.5, 0.5],
            evaluations: 0,
        };
        let run = train(&mut toy);
        assert_eq!(run.status, RunStatus::Completed);
        assert!(run.stopped_early);
        assert_eq!(run.seen, 24);
        let (kept_at, kept) = run.kept.expect("the best weights");
        assert_eq!(kept_at, 8);
        // The kept weights are those after two steps, not the last ones after six.
        assert_ne!(
            kept.weight.val().into_data(),
            run.model.weight.val().into_data()
        );
        // Without patience the whole budget trains and nothing is kept apart.
        let mut toy = Toy {
            settings: settings(0),
            ..toy
        };
        toy.evaluations = 0;
        let run = train(&mut toy);
        assert!(!run.stopped_early && run.kept.is_none());
        assert_eq!(run.seen, 40);
        assert_eq!(run.curve.len(), 6, "0, 8, 16, 24, 32 and the end at 40");
    }

    #[test]
    fn crossing_multiples() {
        assert!(crossed(90, 110, 100));
        assert!(crossed(99, 100, 100));
        assert!(!crossed(100, 199, 100));
        assert!(!crossed(0, 50, 0));
    }

    #[test]
    fn log_spaced_points() {
        // 4 a decade from 100 tokens a step: 100, 178, 316, 562, 1000, 1778, …
        let steps: Vec<u64> = (1..=20u64)
            .filter(|&s| log_crossed((s - 1) * 100, s * 100, 100, 4))
            .collect();
        assert_eq!(steps, vec![1, 2, 4, 6, 10, 18]);
        assert!(!log_crossed(0, 100, 100, 0));
    }
}
