//! A language-model run from a resolved config to a record, through the one loop
//! (`engine.rs`); and what every kind of run shares: the optimiser and its fused step, the
//! optimiser step with accumulation and clipping, the options and progress of a run.
//!
//! Per optimiser step: `grad_accum` micro-batches (batch `k` drawn from `(seed, k)`), each
//! loss checked for NaN/inf, gradients averaged, the global gradient norm clipped, one AdamW
//! step at the learning rate of the tokens reached. Evaluation runs on the fixed validation
//! sample at token 0, every `eval_every_tokens`, and at the end. Checkpoints are atomic; a
//! resumed run continues the exact loss curve of an uninterrupted one.

use std::path::PathBuf;

use burn::lr_scheduler::module_lr_scheduler::ModuleLearningRate;
use burn::module::{Module, ModuleVisitor, Param, ParamGroup};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{
    AdamConfig, AdamW, AdamWConfig, AdamWState, AdaptiveMomentumState, GradientsAccumulator,
    GradientsParams, ModuleOptimizer, Optimizer, SgdConfig,
};
use burn::tensor::{Device, Tensor};
use scalelab_data::{Batch, Example, TrainingData};
use scalelab_kernels::{self as fused, AdamWStep};
use scalelab_models::{LanguageModel, SeededInit, UseLanguageModel, build_language_model};
use scalelab_spec::{
    CurvePoint, ExampleScore, InitConfig, LmResult, Optimiser, RunConfig, RunRecord,
    TASK_EXAMPLES_FILE, TrainConfig, run_id,
};

use crate::engine::{At, BodyLr, LoopEnd, LoopSettings, Workload, run_loop};
use crate::fsutil::write_atomic;
use crate::penalty::add_penalties;
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
    /// Set by Ctrl-C or SIGTERM: the loop writes a checkpoint at the next step boundary and
    /// stops ([`Outcome::Stopped`]); the same command resumes.
    pub interrupt: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    /// The directory of the parent run whose weights a run with `init.parent` starts from
    /// (`init.from` of its spec).
    pub init_from: Option<PathBuf>,
    /// The directory of the teacher a run with `train.distill` learns from
    /// (`train.distill_from` of its spec).
    pub distill_from: Option<PathBuf>,
}

/// How a call to the loop ended, for a run whose record is `R` (a language model's by
/// default, or a classifier's).
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome<R = RunRecord> {
    /// The run finished or diverged; its record is written.
    Finished(Box<R>),
    /// The run stopped early at a checkpoint (see [`RunOptions::stop_after_tokens`]).
    Stopped {
        /// Tokens (a classifier: samples) trained so far.
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
pub fn train_lm(
    config: &RunConfig,
    data: &TrainingData,
    options: &RunOptions,
    progress: &mut dyn Progress,
) -> Result<Outcome, TrainError> {
    let device = options.device.clone().autodiff();
    let run = LmRun {
        config,
        data,
        options,
        progress,
    };
    build_language_model(
        &config.model,
        &mut SeededInit::new(InitConfig::weight_seed(config.init.as_ref(), config.seed)),
        &device,
        run,
    )
}

/// A language-model run waiting for its model.
struct LmRun<'a> {
    config: &'a RunConfig,
    data: &'a TrainingData,
    options: &'a RunOptions,
    progress: &'a mut dyn Progress,
}

impl UseLanguageModel for LmRun<'_> {
    type Out = Result<Outcome, TrainError>;

    fn language_model<M: LanguageModel>(self, model: M) -> Self::Out {
        train_loop(model, self.config, self.data, self.options, self.progress)
    }
}

/// The optimiser of a language-model run.
pub(crate) fn build_optimizer(
    train: &TrainConfig,
    no_decay: Vec<burn::module::ParamId>,
) -> ModuleOptimizer {
    optimizer(
        train.optimizer,
        [train.beta1, train.beta2],
        train.epsilon,
        train.weight_decay,
        no_decay,
    )
}

/// The optimiser `choice` of any run, weight decay on every parameter but `no_decay`: AdamW
/// (decoupled decay, its step fused on the CPU backend), Adam (decay as an L2 term of the
/// gradient) or SGD with momentum, heavy-ball or Nesterov's, without dampening (decay as an
/// L2 term), all Burn's. `betas` and `epsilon` are Adam's and AdamW's.
pub(crate) fn optimizer(
    choice: Optimiser,
    betas: [f64; 2],
    epsilon: f64,
    weight_decay: f64,
    no_decay: Vec<burn::module::ParamId>,
) -> ModuleOptimizer {
    let decay = |wd: f64| (wd > 0.0).then(|| WeightDecayConfig::new(wd as f32));
    match choice {
        Optimiser::AdamW => adamw(betas, epsilon, weight_decay, no_decay),
        Optimiser::Adam => {
            let config = |wd: f64| {
                AdamConfig::new()
                    .with_beta_1(betas[0] as f32)
                    .with_beta_2(betas[1] as f32)
                    .with_epsilon(epsilon as f32)
                    .with_weight_decay(decay(wd))
                    .build()
            };
            decayed_except(config, weight_decay, no_decay)
        }
        Optimiser::Sgd { momentum, nesterov } => {
            let config = |wd: f64| {
                SgdConfig::new()
                    .with_momentum((momentum > 0.0).then(|| {
                        MomentumConfig::new()
                            .with_momentum(momentum)
                            .with_dampening(0.0)
                            .with_nesterov(nesterov)
                    }))
                    .with_weight_decay(decay(wd))
                    .build()
            };
            decayed_except(config, weight_decay, no_decay)
        }
    }
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
    decayed_except(config, weight_decay, no_decay)
}

/// The optimiser `config(weight_decay)` for every parameter, and `config(0)` for those in
/// `no_decay` (biases and norms, as in nanoGPT).
fn decayed_except<O: Optimizer>(
    config: impl Fn(f64) -> O,
    weight_decay: f64,
    no_decay: Vec<burn::module::ParamId>,
) -> ModuleOptimizer {
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

/// A language-model run, as the one loop sees it: next-token batches of the corpus (or task
/// sequences), the validation loss on a fixed sample, and the task's metrics at every
/// evaluation.
struct LmWorkload<'a, M: Objective> {
    config: &'a RunConfig,
    id: String,
    data: &'a TrainingData,
    device: Device,
    val_batches: Vec<Batch>,
    /// A task's test set and as many of its training examples.
    task_sets: Option<(Vec<Example>, Vec<Example>)>,
    flops_per_token: f64,
    /// The test examples' own scores at the latest evaluation, written beside the record.
    last_examples: Option<Vec<ExampleScore>>,
    /// Pruning's masks (`train.prune`).
    pruner: Option<crate::sparsify::Pruner>,
    /// The teacher of a distilled run (`train.distill`).
    teacher: Option<crate::distill::Teacher>,
    model: std::marker::PhantomData<M>,
}

impl<M: Objective + Clone> Workload for LmWorkload<'_, M> {
    type Model = M;
    type Batch = Batch;
    type Point = CurvePoint;
    type Config = RunConfig;

    fn identity(&self) -> (&str, &RunConfig) {
        (&self.id, self.config)
    }

    fn settings(&self) -> LoopSettings {
        let t = &self.config.train;
        let steps = self.config.planned_steps();
        LoopSettings {
            grad_clip: t.grad_clip,
            eval_every: t.eval_every_tokens,
            eval_per_decade: t.eval_per_decade,
            keep_snapshots: t.keep_snapshots,
            checkpoint_every: t.checkpoint_every_tokens,
            checkpoint_at_end: true,
            patience: t.early_stopping_patience,
            ..LoopSettings::new(steps, t.lr, t.min_lr_ratio, t.warmup_fraction)
        }
    }

    fn batches(&self, step: u64) -> Vec<Batch> {
        let t = &self.config.train;
        (0..t.grad_accum)
            .map(|micro| {
                self.data.train_batch(
                    self.config.seed,
                    step * t.grad_accum as u64 + micro as u64,
                    t.batch_size,
                    self.config.model.ctx_len,
                )
            })
            .collect()
    }

    fn loss(&self, model: &M, batch: &Batch) -> Tensor<1> {
        let t = &self.config.train;
        let loss = match &self.teacher {
            None => model.batch_loss(batch, &self.device),
            Some(teacher) => teacher.loss(model, batch, &self.device),
        };
        add_penalties(loss, model, t.l1, t.l2)
    }

    fn evaluate(&mut self, model: &M, at: At) -> CurvePoint {
        let val_loss = evaluate(model, &self.val_batches, &self.device);
        let (task_test, task_train) = match &self.task_sets {
            Some((test, train)) => {
                let inner = model.valid();
                let device = self.device.clone().without_autodiff();
                let (test, examples) = evaluate_task_examples(&inner, test, &device);
                self.last_examples = Some(examples);
                (
                    Some(test),
                    (!train.is_empty()).then(|| evaluate_task(&inner, train, &device)),
                )
            }
            None => (None, None),
        };
        CurvePoint {
            step: at.step,
            tokens: at.seen,
            flops: at.seen as f64 * self.flops_per_token,
            train_loss: at.train_loss,
            val_loss,
            val_bpb: val_loss / self.data.val_bytes_per_token() / std::f64::consts::LN_2,
            lr: at.lr,
            wall_secs: at.wall_secs,
            weight_norm: Some(weight_norm(model)),
            task_test,
            task_train,
        }
    }

    fn val_loss(point: &CurvePoint) -> f64 {
        point.val_loss
    }

    fn units(point: &CurvePoint) -> u64 {
        point.tokens
    }

    fn announce(point: &CurvePoint, progress: &mut dyn Progress) {
        progress.eval(point);
    }

    fn start_from(&self, model: M, options: &RunOptions) -> Result<M, TrainError> {
        crate::transfer::start_from(model, self.config.init.as_ref(), options)
    }

    fn after_step(&mut self, model: M, before: u64, after: u64, total: u64) -> M {
        match &mut self.pruner {
            Some(pruner) => pruner.step(model, before, after, total),
            None => model,
        }
    }

    fn adapt(&self, model: M) -> Result<M, TrainError> {
        crate::transfer::adapt(model, self.config.init.as_ref())
    }

    fn body_lr(&self, model: &M) -> Option<BodyLr> {
        crate::transfer::body_lr(model, self.config.init.as_ref())
    }
}

fn train_loop<M: Objective + Clone>(
    model: M,
    config: &RunConfig,
    data: &TrainingData,
    options: &RunOptions,
    progress: &mut dyn Progress,
) -> Result<Outcome, TrainError> {
    let t = &config.train;
    let device = options.device.clone().autodiff();
    let optimizer = build_optimizer(t, model.no_decay_param_ids());
    // Dropout draws from the backend's generator.
    device.seed(config.seed);
    let flops_per_token = config.model.flops_per_token();
    let mut work = LmWorkload {
        config,
        id: run_id(config)?,
        data,
        val_batches: data.val_batches(t.eval_tokens, t.batch_size, config.model.ctx_len),
        task_sets: data
            .task()
            .map(|task| (task.test.clone(), task.train_probe(task.test.len()))),
        device,
        flops_per_token,
        last_examples: None,
        pruner: config
            .train
            .prune
            .map(|p| crate::sparsify::Pruner::new(p, M::INPUT, M::HEAD)),
        teacher: crate::distill::Teacher::for_run(config, options)?,
        model: std::marker::PhantomData,
    };
    let mut run = match run_loop(&mut work, model, optimizer, options, progress)? {
        LoopEnd::Trained(run) => run,
        LoopEnd::Stopped { seen } => return Ok(Outcome::Stopped { tokens_seen: seen }),
    };
    let (_, tokens_per_step) = config.planned_steps();
    // With early stopping the kept weights' evaluation is the run's final one.
    let kept_tokens = run.kept.as_ref().map(|(tokens, _)| *tokens);
    let last_point = match kept_tokens {
        Some(tokens) => run.curve.iter().rfind(|p| p.tokens == tokens),
        None => run.curve.last(),
    };
    let finite = |v: f64| Some(v).filter(|v| v.is_finite());
    let final_val_loss = last_point.and_then(|p| finite(p.val_loss));
    let final_val_bpb = last_point.and_then(|p| finite(p.val_bpb));
    let result = LmResult {
        flops_per_token,
        tokens_per_step,
        tokens_seen: run.seen,
        train_flops: run.seen as f64 * flops_per_token,
        final_val_loss,
        final_val_bpb,
        curve: std::mem::take(&mut run.curve),
        peak_rss_bytes: machine::peak_rss_bytes(),
        started_unix_secs: run.started_unix_secs,
        unique_train_tokens: data.unique_train_tokens(),
        epochs: data
            .unique_train_tokens()
            .filter(|&u| u > 0)
            .map(|u| run.seen as f64 / u as f64),
        kept_tokens,
        stopped_early: run.stopped_early,
        sparsity: work.pruner.as_ref().map(|p| {
            let weights = run.kept.as_ref().map_or(&run.model, |(_, best)| best);
            p.report(weights, config.model.param_counts())
        }),
    };
    if let Some(examples) = &work.last_examples {
        write_task_examples(&options.run_dir.join(TASK_EXAMPLES_FILE), examples)?;
    }
    let weights = run.kept.as_ref().map_or(&run.model, |(_, best)| best);
    let record = run.write_record((&work.id, config), weights, 0.0, options, result)?;
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
    lr: impl Into<ModuleLearningRate>,
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
}
