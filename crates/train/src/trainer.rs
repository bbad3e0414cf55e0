//! The training loop: one run from a resolved config to a record.
//!
//! Per optimiser step: `grad_accum` micro-batches (batch `k` drawn from `(seed, k)`), each
//! loss checked for NaN/inf, gradients averaged, the global gradient norm clipped, one AdamW
//! step at the learning rate of the tokens reached. Evaluation runs on the fixed validation
//! sample at token 0, every `eval_every_tokens`, and at the end. Checkpoints are atomic; a
//! resumed run continues the exact loss curve of an uninterrupted one.

use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use burn::module::{Module, ModuleVisitor, Param, ParamGroup};
use burn::optim::{
    AdamW, AdamWConfig, AdamWState, AdaptiveMomentumState, GradientsAccumulator, GradientsParams,
    ModuleOptimizer, Optimizer,
};
use burn::tensor::{Device, Tensor};
use scalelab_data::{Batch, TrainingData};
use scalelab_kernels::{self as fused, AdamWStep};
use scalelab_models::{Gpt, RnnLm, SeededInit};
use scalelab_spec::counts::LM_FLOPS_CONVENTION;
use scalelab_spec::{
    CurvePoint, ExampleScore, ParamCounts, RUN_RECORD_SCHEMA_VERSION, RunConfig, RunRecord,
    RunStatus, TASK_EXAMPLES_FILE, TrainConfig, run_id,
};

use crate::checkpoint::{self, CHECKPOINT_SCHEMA_VERSION, CheckpointState};
use crate::fsutil::write_atomic;
use crate::schedule::learning_rate;
use crate::task_eval::{evaluate_task, evaluate_task_examples};
use crate::{Objective, TrainError, machine};

/// Where a run writes and how it may continue.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Directory of this run: `record.json` and `checkpoint/` go here.
    pub run_dir: PathBuf,
    /// The device to train on (autodiff is added by the loop).
    pub device: Device,
    /// Name of the backend and device, for the record.
    pub backend: String,
    /// Continue from the run's checkpoint when there is one.
    pub resume: bool,
    /// Stop, as if killed, right after the first checkpoint at or past this many tokens.
    pub stop_after_tokens: Option<u64>,
}

/// How a call to the loop ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The run finished or diverged; its record is written.
    Finished(Box<RunRecord>),
    /// The run stopped early at a checkpoint (see [`RunOptions::stop_after_tokens`]).
    Stopped {
        /// Tokens trained so far.
        tokens_seen: u64,
    },
}

/// Receives progress as a run trains (a progress bar, a log, or nothing).
pub trait Progress {
    /// Training starts (or resumes at `tokens_seen`) towards `total_tokens`.
    fn start(&mut self, _tokens_seen: u64, _total_tokens: u64) {}
    /// An optimiser step finished.
    fn step(&mut self, _tokens_seen: u64, _loss: f64, _lr: f64) {}
    /// An evaluation finished.
    fn eval(&mut self, _point: &CurvePoint) {}
}

/// Progress that goes nowhere.
pub struct NoProgress;
impl Progress for NoProgress {}

/// Trains the language model of `config` on `data`: the GPT, or a recurrent model when the
/// config's family says so.
pub fn train_gpt(
    config: &RunConfig,
    data: &TrainingData,
    options: &RunOptions,
    progress: &mut dyn Progress,
) -> Result<Outcome, TrainError> {
    let device = options.device.clone().autodiff();
    let mut init = SeededInit::new(config.seed);
    let params = config.model.param_counts();
    if config.model.family.is_gpt() {
        let model = Gpt::new(&config.model, &mut init, &device);
        train_loop(model, config, data, options, progress, params)
    } else {
        let model = RnnLm::new(&config.model, &mut init, &device);
        train_loop(model, config, data, options, progress, params)
    }
}

pub(crate) fn build_optimizer(
    train: &TrainConfig,
    no_decay: Vec<burn::module::ParamId>,
) -> ModuleOptimizer {
    adamw(
        [train.beta1, train.beta2],
        train.epsilon,
        train.weight_decay,
        no_decay,
    )
}

/// AdamW with decoupled `weight_decay` on every parameter but `no_decay`: Burn's `AdamW`,
/// with each parameter's step fused into one pass on the CPU backend ([`FusedAdamW`]).
pub(crate) fn adamw(
    betas: [f64; 2],
    epsilon: f64,
    weight_decay: f64,
    no_decay: Vec<burn::module::ParamId>,
) -> ModuleOptimizer {
    let config = |weight_decay: f64| FusedAdamW {
        burn: AdamWConfig::new()
            .with_beta_1(betas[0] as f32)
            .with_beta_2(betas[1] as f32)
            .with_epsilon(epsilon as f32)
            .with_weight_decay(weight_decay as f32)
            .build(),
        beta_1: betas[0] as f32,
        beta_2: betas[1] as f32,
        epsilon: epsilon as f32,
        weight_decay: weight_decay as f32,
    };
    ModuleOptimizer::from(config(weight_decay)).with_group(
        ParamGroup::from_ids(no_decay),
        config(0.0),
        None,
    )
}

/// Burn's AdamW (its state, so checkpoints keep their format) with the step of each parameter
/// done by scalelab's fused kernel on the CPU backend and by Burn's `AdamW` elsewhere.
#[derive(Clone)]
struct FusedAdamW {
    burn: AdamW,
    beta_1: f32,
    beta_2: f32,
    epsilon: f32,
    weight_decay: f32,
}

impl Optimizer for FusedAdamW {
    type State<const D: usize> = AdamWState<D>;

    fn step<const D: usize>(
        &self,
        lr: f64,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        if !fused::available(&tensor) {
            return self.burn.step(lr, tensor, grad, state);
        }
        let (time, moments) = match state {
            Some(s) => (
                s.momentum.time + 1,
                [s.momentum.moment_1, s.momentum.moment_2],
            ),
            None => (1, [grad.zeros_like(), grad.zeros_like()]),
        };
        let step = AdamWStep {
            lr,
            beta_1: self.beta_1,
            beta_2: self.beta_2,
            epsilon: self.epsilon,
            weight_decay: self.weight_decay,
            time: time as i32,
        };
        let [param, moment_1, moment_2] = fused::adamw_step(tensor, grad, moments, step);
        let state = AdaptiveMomentumState::new(time, moment_1, moment_2);
        (param, Some(AdamWState::new(state)))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        AdamW::to_device(state, device)
    }
}

fn train_loop<M: Objective>(
    mut model: M,
    config: &RunConfig,
    data: &TrainingData,
    options: &RunOptions,
    progress: &mut dyn Progress,
    params: ParamCounts,
) -> Result<Outcome, TrainError> {
    let t = &config.train;
    let ctx = config.model.ctx_len;
    let device = options.device.clone().autodiff();
    let id = run_id(config)?;
    let (total_steps, tokens_per_step) = config.planned_steps();
    let total_tokens = total_steps * tokens_per_step;
    let flops_per_token = config.model.flops_per_token();
    let mut optimizer = build_optimizer(t, model.no_decay_param_ids());
    // Dropout draws from the backend's generator.
    device.seed(config.seed);

    let resume_from = if options.resume {
        checkpoint::find(&options.run_dir)
    } else {
        None
    };
    let mut state = match &resume_from {
        Some(dir) => {
            let state = checkpoint::load_state(dir, &id)?;
            (model, optimizer) = checkpoint::load_weights(dir, model, optimizer)?;
            state
        }
        None => CheckpointState {
            schema_version: CHECKPOINT_SCHEMA_VERSION,
            run_id: id.clone(),
            config: config.clone(),
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
    let val_batches = data.val_batches(t.eval_tokens, t.batch_size, ctx);
    // A task is evaluated on its test set and on as many training examples.
    let task_sets = data
        .task()
        .map(|task| (task.test.clone(), task.train_probe(task.test.len())));
    let clock = Instant::now();
    let wall_before = state.wall_secs;
    let wall = |clock: &Instant| wall_before + clock.elapsed().as_secs_f64();
    progress.start(state.tokens_seen, total_tokens);

    let eval_point = |model: &M, state: &CheckpointState, lr: f64, wall_secs: f64| {
        let val_loss = evaluate(model, &val_batches, &device);
        let (task_test, task_train, examples) = match &task_sets {
            Some((test, train)) => {
                let inner = model.valid();
                let device = device.clone().without_autodiff();
                let (test, examples) = evaluate_task_examples(&inner, test, &device);
                (
                    Some(test),
                    (!train.is_empty()).then(|| evaluate_task(&inner, train, &device)),
                    Some(examples),
                )
            }
            None => (None, None, None),
        };
        let (sum, count) = state.pending_loss;
        let point = CurvePoint {
            step: state.step,
            tokens: state.tokens_seen,
            flops: state.tokens_seen as f64 * flops_per_token,
            train_loss: (count > 0).then(|| sum / count as f64),
            val_loss,
            val_bpb: val_loss / data.val_bytes_per_token() / std::f64::consts::LN_2,
            lr,
            wall_secs,
            weight_norm: Some(weight_norm(model)),
            task_test,
            task_train,
        };
        (point, examples)
    };
    // The test examples' own scores at the latest evaluation, written beside the record.
    let mut last_examples = None;
    if state.curve.is_empty() {
        let (point, examples) = eval_point(&model, &state, 0.0, wall(&clock));
        last_examples = examples;
        progress.eval(&point);
        state.curve.push(point);
    }

    let mut status = RunStatus::Completed;
    'steps: for step in state.step..total_steps {
        let tokens_after = (step + 1) * tokens_per_step;
        let lr = learning_rate(
            t.lr,
            t.min_lr_ratio,
            t.warmup_fraction,
            tokens_after,
            total_tokens,
        );
        let batches = (0..t.grad_accum).map(|micro| {
            data.train_batch(
                config.seed,
                step * t.grad_accum as u64 + micro as u64,
                t.batch_size,
                ctx,
            )
        });
        let step_loss;
        (model, step_loss) = train_step(
            model,
            &mut optimizer,
            batches,
            |model: &M, batch: &Batch| model.batch_loss(batch, &device),
            t.grad_clip,
            lr,
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

        let tokens_before = state.tokens_seen;
        state.step = step + 1;
        state.tokens_seen = tokens_after;
        state.pending_loss.0 += step_loss;
        state.pending_loss.1 += 1;
        progress.step(tokens_after, step_loss, lr);

        let last = state.step == total_steps;
        let log_point = log_crossed(
            tokens_before,
            tokens_after,
            tokens_per_step,
            t.eval_per_decade,
        );
        if log_point && t.keep_snapshots {
            checkpoint::save_snapshot(&options.run_dir, &model, tokens_after)?;
        }
        if last || crossed(tokens_before, tokens_after, t.eval_every_tokens) || log_point {
            let (point, examples) = eval_point(&model, &state, lr, wall(&clock));
            last_examples = examples;
            if !point.val_loss.is_finite() {
                status = RunStatus::Diverged {
                    tokens: state.tokens_seen,
                    reason: format!(
                        "validation loss became {} at step {}",
                        point.val_loss, state.step
                    ),
                };
            }
            progress.eval(&point);
            state.curve.push(point);
            state.pending_loss = (0.0, 0);
            if status != RunStatus::Completed {
                break 'steps;
            }
        }
        if last
            || (t.checkpoint_every_tokens > 0
                && crossed(tokens_before, tokens_after, t.checkpoint_every_tokens))
        {
            state.wall_secs = wall(&clock);
            checkpoint::save(&options.run_dir, &model, &optimizer, &state)?;
            if !last
                && options
                    .stop_after_tokens
                    .is_some_and(|stop| tokens_after >= stop)
            {
                return Ok(Outcome::Stopped {
                    tokens_seen: tokens_after,
                });
            }
        }
    }

    let last_point = state.curve.last();
    let record = RunRecord {
        schema_version: RUN_RECORD_SCHEMA_VERSION,
        run_id: id,
        config: config.clone(),
        git_revision: machine::git_revision().to_string(),
        params,
        param_convention: ParamCounts::CONVENTION.to_string(),
        flops_per_token,
        flops_convention: LM_FLOPS_CONVENTION,
        tokens_per_step,
        tokens_seen: state.tokens_seen,
        train_flops: state.tokens_seen as f64 * flops_per_token,
        final_val_loss: last_point.map(|p| p.val_loss).filter(|v| v.is_finite()),
        final_val_bpb: last_point.map(|p| p.val_bpb).filter(|v| v.is_finite()),
        curve: state.curve,
        status,
        wall_secs: wall(&clock),
        peak_rss_bytes: machine::peak_rss_bytes(),
        threads: rayon::current_num_threads(),
        machine: machine::describe(&options.backend),
        started_unix_secs: state.started_unix_secs,
        resumed: resume_from.is_some(),
        unique_train_tokens: data.unique_train_tokens(),
        epochs: data
            .unique_train_tokens()
            .filter(|&u| u > 0)
            .map(|u| state.tokens_seen as f64 / u as f64),
    };
    let json = serde_json::to_vec_pretty(&record).map_err(|source| TrainError::Serialise {
        what: "run record",
        source,
    })?;
    if let Some(examples) = &last_examples {
        write_task_examples(&options.run_dir.join(TASK_EXAMPLES_FILE), examples)?;
    }
    write_atomic(&options.run_dir.join("record.json"), &json)?;
    Ok(Outcome::Finished(Box::new(record)))
}

/// One optimiser step of any model on any batches (`loss_of` gives a batch's loss): the mean
/// loss over the micro-batches, their averaged gradients, global
/// norm clipping (when `grad_clip > 0`), and AdamW at `lr`. Returns the updated model and the
/// mean loss, or `Err(loss)` with the model untouched when a loss is NaN or infinite.
pub(crate) fn train_step<M: Module, B>(
    model: M,
    optimizer: &mut ModuleOptimizer,
    batches: impl ExactSizeIterator<Item = B>,
    loss_of: impl Fn(&M, &B) -> Tensor<1>,
    grad_clip: f64,
    lr: f64,
) -> (M, Result<f64, f64>) {
    let n = batches.len().max(1) as f64;
    let mut mean_loss = 0.0;
    let mut accumulator = GradientsAccumulator::<M>::new();
    for batch in batches {
        let loss = loss_of(&model, &batch);
        let value = f64::from(loss.clone().into_scalar::<f32>());
        if !value.is_finite() {
            return (model, Err(value));
        }
        mean_loss += value / n;
        let grads = loss.div_scalar(n).backward();
        accumulator.accumulate(&model, GradientsParams::from_grads(grads, &model));
    }
    let mut grads = accumulator.grads();
    if grad_clip > 0.0 {
        clip_global_norm(&model, &mut grads, grad_clip);
    }
    (optimizer.step(lr, model, grads), Ok(mean_loss))
}

/// Whether a multiple of `every` lies in `(before, after]`.
fn crossed(before: u64, after: u64, every: u64) -> bool {
    every > 0 && after / every > before / every
}

/// Whether a log-spaced point `first · 10^(i / per_decade)` (i = 0, 1, …) lies in
/// `(before, after]`.
fn log_crossed(before: u64, after: u64, first: u64, per_decade: u32) -> bool {
    if per_decade == 0 || first == 0 || after < first {
        return false;
    }
    let per_decade = f64::from(per_decade);
    // The last point at or below `after` (a little slack for rounding of exact powers).
    let i = (per_decade * (after as f64 / first as f64).log10() + 1e-9).floor();
    let point = (first as f64 * 10f64.powf(i / per_decade)).round() as u64;
    point > before
}

/// L2 norm of all of a model's parameters.
fn weight_norm<M: Module>(model: &M) -> f64 {
    struct SumOfSquares(f64);
    impl ModuleVisitor for SumOfSquares {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0 += f64::from(param.val().square().sum().into_scalar::<f32>());
        }
    }
    let mut sum = SumOfSquares(0.0);
    model.visit(&mut sum);
    sum.0.sqrt()
}

/// Mean validation loss (nats/token) of `model` over `batches`, without autodiff.
fn evaluate<M: Objective>(model: &M, batches: &[Batch], device: &Device) -> f64 {
    let model = model.valid();
    let device = device.clone().without_autodiff();
    let (mut sum, mut windows) = (0.0, 0usize);
    for batch in batches {
        let loss = f64::from(model.batch_loss(batch, &device).into_scalar::<f32>());
        sum += loss * batch.batch as f64;
        windows += batch.batch;
    }
    sum / windows.max(1) as f64
}

/// Scales all gradients so that their global L2 norm is at most `max_norm` (as PyTorch's
/// `clip_grad_norm_`; Burn's own clipping works per tensor). Returns the norm before clipping.
fn clip_global_norm<M: Module>(model: &M, grads: &mut GradientsParams, max_norm: f64) -> f64 {
    struct SumOfSquares<'a> {
        grads: &'a GradientsParams,
        total: Option<Tensor<1>>,
    }
    impl ModuleVisitor for SumOfSquares<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(grad) = self.grads.get::<D>(param.id) {
                let s = grad.square().sum();
                self.total = Some(match self.total.take() {
                    Some(total) => total + s,
                    None => s,
                });
            }
        }
    }
    struct Scale<'a> {
        grads: &'a mut GradientsParams,
        factor: f64,
    }
    impl ModuleVisitor for Scale<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(grad) = self.grads.remove::<D>(param.id) {
                self.grads.register(param.id, grad.mul_scalar(self.factor));
            }
        }
    }
    let mut sum = SumOfSquares { grads, total: None };
    model.visit(&mut sum);
    let norm = sum
        .total
        .map_or(0.0, |t| f64::from(t.sqrt().into_scalar::<f32>()));
    if norm > max_norm {
        let factor = max_norm / (norm + 1e-6);
        model.visit(&mut Scale { grads, factor });
    }
    norm
}

/// Writes the test examples' scores as CSV (`example,answer_tokens,exact_match,log_prob,
/// correct_tokens`), atomically. A run resumed after its last evaluation has none to write,
/// and keeps the file of the process that made it.
fn write_task_examples(
    path: &std::path::Path,
    examples: &[ExampleScore],
) -> Result<(), TrainError> {
    let io = |source: std::io::Error| TrainError::Io {
        action: "writing the test examples' scores",
        path: path.to_path_buf(),
        source,
    };
    let mut w = csv::Writer::from_writer(Vec::new());
    for e in examples {
        w.serialize(e).map_err(|e| io(std::io::Error::other(e)))?;
    }
    let bytes = w.into_inner().map_err(|e| io(e.into_error()))?;
    write_atomic(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fused_adamw_follows_burns_adamw() {
        use burn::tensor::{Distribution, Tolerance};
        let device = Device::flex();
        device.seed(17);
        let optimizer = |weight_decay: f64| FusedAdamW {
            burn: AdamWConfig::new()
                .with_weight_decay(weight_decay as f32)
                .build(),
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-5,
            weight_decay: weight_decay as f32,
        };
        for weight_decay in [0.0, 0.1] {
            let opt = optimizer(weight_decay);
            assert!(fused::available(&Tensor::<2>::zeros([1, 1], &device)));
            let start = Tensor::<2>::random([37, 5], Distribution::Normal(0.0, 1.0), &device);
            let (mut fused, mut burn) = (start.clone(), start.clone());
            let (mut fused_state, mut burn_state) = (None, None);
            for _ in 0..6 {
                let g = Tensor::<2>::random([37, 5], Distribution::Normal(0.0, 1.0), &device);
                (fused, fused_state) = opt.step(1e-2, fused, g.clone(), fused_state);
                (burn, burn_state) = opt.burn.step(1e-2, burn, g, burn_state);
            }
            let tolerance = Tolerance::absolute(1e-6);
            fused
                .clone()
                .into_data()
                .assert_approx_eq::<f32>(&burn.into_data(), tolerance);
            let (f, b) = match (fused_state, burn_state) {
                (Some(f), Some(b)) => (f.momentum, b.momentum),
                _ => panic!("both optimisers keep a state"),
            };
            assert_eq!(f.time, b.time);
            f.moment_1
                .into_data()
                .assert_approx_eq::<f32>(&b.moment_1.into_data(), tolerance);
            f.moment_2
                .into_data()
                .assert_approx_eq::<f32>(&b.moment_2.into_data(), tolerance);
            // The parameters moved: the comparison is not of two unchanged tensors.
            // (Compared with where they started; six steps at lr 1e-2 move each by ~0.06.)
            let moved = fused.sub(start).abs().max().into_scalar::<f32>();
            assert!(moved > 0.01, "moved {moved}");
        }
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
