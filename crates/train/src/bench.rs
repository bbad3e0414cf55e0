//! Step-time benchmark of the training step, on the reference setting of
//! `shared/peer/torch_gpt_step.py`: a fixed random batch, AdamW at lr 3e-4 and weight decay
//! 0.1, no clipping, median over timed steps after warm-up. The step is the loop's own
//! `train_step`, so what is measured is what trains.

use std::time::Instant;

use burn::optim::GradientsParams;
use burn::tensor::Device;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use scalelab_data::Batch;
use scalelab_models::{FamilyModel, Gpt, SeededInit};
use scalelab_spec::{Budget, LmConfig, TrainConfig};

use crate::Objective;
use crate::trainer::{build_optimizer, train_step};

/// Timing of one benchmarked configuration.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StepTiming {
    /// Trainable parameters (all).
    pub params: u64,
    /// Median milliseconds per full training step.
    pub median_ms: f64,
    /// Fastest step.
    pub min_ms: f64,
    /// Slowest step.
    pub max_ms: f64,
    /// Tokens per second at the median.
    pub tokens_per_sec: f64,
    /// GFLOP/s at the median, counted as the peer does: `6·N·tokens + 12·L·T·d·tokens`.
    pub gflops: f64,
    /// Loss of the first step.
    pub loss_first: f64,
    /// Loss of the last step (lower: the model learns the repeated batch).
    pub loss_last: f64,
    /// The loss of every step, warm-up included.
    pub losses: Vec<f64>,
    /// Where a step's time goes, medians over the same number of separately timed steps.
    pub phases: PhaseTiming,
}

/// Median milliseconds of each phase of a training step. The CPU backend runs eagerly, so
/// each phase's wall time is its own work.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct PhaseTiming {
    /// Forward pass to the loss, read back as a number.
    pub forward_ms: f64,
    /// Backward pass and collection of the parameters' gradients.
    pub backward_ms: f64,
    /// The AdamW update.
    pub optimizer_ms: f64,
}

/// Times `warmup + steps` training steps of a GPT of shape `config` on a batch of `batch` sequences.
pub fn bench_gpt_step(
    config: &LmConfig,
    batch: usize,
    warmup: usize,
    steps: usize,
    device: &Device,
) -> StepTiming {
    let device = device.clone().autodiff();
    let mut model = Gpt::init(config, &mut SeededInit::new(0), &device);
    let train = TrainConfig {
        optimizer: scalelab_spec::Optimiser::AdamW,
        batch_size: batch,
        grad_accum: 1,
        lr: 3e-4,
        min_lr_ratio: 1.0,
        warmup_fraction: 0.0,
        weight_decay: 0.1,
        beta1: 0.9,
        beta2: 0.999,
        epsilon: 1e-8,
        grad_clip: 0.0,
        budget: Budget::Tokens(1),
        eval_every_tokens: 1,
        eval_tokens: 1,
        checkpoint_every_tokens: 0,
        eval_per_decade: 0,
        keep_snapshots: false,
        l1: 0.0,
        l2: 0.0,
        early_stopping_patience: 0,
        prune: None,
        distill: None,
    };
    let mut optimizer = build_optimizer(&train, model.no_decay_param_ids());
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let n = batch * config.ctx_len;
    let v = config.vocab_size as i64;
    let fixed = Batch {
        inputs: (0..n).map(|_| rng.random_range(0..v)).collect(),
        targets: (0..n).map(|_| rng.random_range(0..v)).collect(),
        batch,
        ctx: config.ctx_len,
        loss_start: 0,
    };
    let loss_of = |model: &Gpt, batch: &Batch| model.batch_loss(batch, &device);
    let (mut times, losses);
    (model, times, losses) = timed_steps(
        model,
        &mut optimizer,
        (&fixed, loss_of, 3e-4),
        (warmup, steps),
    );
    // The same step again, in its three phases.
    let mut phases = [Vec::new(), Vec::new(), Vec::new()];
    for _ in 0..steps {
        let start = Instant::now();
        let loss = model.batch_loss(&fixed, &device);
        let _ = loss.clone().into_scalar::<f32>();
        let forward = Instant::now();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let backward = Instant::now();
        model = optimizer.step(3e-4, model, grads);
        let done = Instant::now();
        phases[0].push((forward - start).as_secs_f64() * 1e3);
        phases[1].push((backward - forward).as_secs_f64() * 1e3);
        phases[2].push((done - backward).as_secs_f64() * 1e3);
    }
    let [forward_ms, backward_ms, optimizer_ms] = phases.map(|mut p| median(&mut p));
    let median_ms = median(&mut times);
    let params = config.param_counts().total;
    let tokens = n as f64;
    let flops = 6.0 * params as f64 * tokens
        + 12.0 * (config.n_layers * config.ctx_len * config.d_model) as f64 * tokens;
    StepTiming {
        params,
        median_ms,
        min_ms: times.first().copied().unwrap_or(f64::NAN),
        max_ms: times.last().copied().unwrap_or(f64::NAN),
        tokens_per_sec: tokens / (median_ms / 1e3),
        gflops: flops / (median_ms / 1e3) / 1e9,
        loss_first: losses.first().copied().unwrap_or(f64::NAN),
        loss_last: losses.last().copied().unwrap_or(f64::NAN),
        losses,
        phases: PhaseTiming {
            forward_ms,
            backward_ms,
            optimizer_ms,
        },
    }
}

/// `warmup + steps` training steps of `model` on the same `batch` (loss `loss_of`, learning
/// rate `lr`, no clipping): the model after them, the milliseconds of each step after the
/// warm-up, and every step's loss (NaN for a non-finite one).
fn timed_steps<M: burn::module::Module, B: Clone>(
    mut model: M,
    optimizer: &mut burn::optim::ModuleOptimizer,
    (batch, loss_of, lr): (&B, impl Fn(&M, &B) -> burn::tensor::Tensor<1>, f64),
    (warmup, steps): (usize, usize),
) -> (M, Vec<f64>, Vec<f64>) {
    let (mut times, mut losses) = (
        Vec::with_capacity(steps),
        Vec::with_capacity(warmup + steps),
    );
    for i in 0..warmup + steps {
        let start = Instant::now();
        let loss;
        (model, loss) = train_step(
            model,
            optimizer,
            std::iter::once(batch.clone()),
            &loss_of,
            0.0,
            lr,
        );
        losses.push(loss.unwrap_or(f64::NAN));
        if i >= warmup {
            times.push(start.elapsed().as_secs_f64() * 1e3);
        }
    }
    (model, times, losses)
}

/// Median of `values` (sorted in place); NaN when empty.
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// GFLOP/s of Burn's f32 matrix product of two `n × n` matrices on `device` (the GEMM every
/// training step runs on), median of `reps` products after one warm-up: the practical peak the
/// training steps are measured against.
pub fn sgemm_gflops(n: usize, reps: usize, device: &Device) -> f64 {
    let a = burn::tensor::Tensor::<2>::random([n, n], burn::tensor::Distribution::Default, device);
    let mut times = Vec::with_capacity(reps);
    for i in 0..=reps {
        let start = Instant::now();
        let _ = a.clone().matmul(a.clone()).into_data();
        if i > 0 {
            times.push(start.elapsed().as_secs_f64());
        }
    }
    2.0 * (n as f64).powi(3) / median(&mut times) / 1e9
}

/// Timing of a classifier's training step and inference.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ClassifierTiming {
    /// Trainable parameters (all; the spec's count).
    pub params: u64,
    /// Examples (images or sentences) per training step.
    pub batch: usize,
    /// Median milliseconds per full training step (forward, backward, AdamW).
    pub train_step_ms: f64,
    /// Fastest and slowest training steps.
    pub train_range_ms: [f64; 2],
    /// Examples per inference batch.
    pub inference_batch: usize,
    /// Median milliseconds per inference batch (no autodiff graph, class probabilities read
    /// back to the host, as evaluation does).
    pub inference_ms: f64,
    /// Loss of the first and the last training step (lower: it learns the repeated batch).
    pub loss: [f64; 2],
}

/// Times `warmup + steps` training steps of the classifier `shape` on a fixed random batch of
/// `batch` examples of `input` (images of `[channels, height, width]`, or full-length
/// sentences of `ctx` tokens from `vocab`) and `classes` classes (AdamW, lr 1e-3, as the
/// classifier runs train), then as many inference batches of `inference_batch` examples;
/// medians after warm-up.
pub fn bench_classifier(
    shape: &scalelab_spec::ClassifierConfig,
    input: scalelab_spec::InputShape,
    classes: usize,
    (batch, inference_batch): (usize, usize),
    (warmup, steps): (usize, usize),
    device: &Device,
) -> Result<ClassifierTiming, crate::TrainError> {
    struct Bench<'a> {
        input: scalelab_spec::InputShape,
        classes: usize,
        sizes: (usize, usize),
        counts: (usize, usize),
        device: &'a Device,
    }
    impl Bench<'_> {
        /// `model`'s timing on training batch `fixed` and inference batch `eval`.
        fn time<B, M>(&self, model: M, fixed: B, eval: B) -> Option<ClassifierTiming>
        where
            B: scalelab_data::LabelledBatch + Clone,
            M: crate::classify::Classifier<B>,
        {
            Some(time_classifier(
                model,
                &fixed,
                &eval,
                self.counts,
                self.device,
            ))
        }

        fn labels(&self, n: usize, rng: &mut ChaCha8Rng) -> Vec<i64> {
            (0..n)
                .map(|_| rng.random_range(0..self.classes as i64))
                .collect()
        }
    }
    impl scalelab_models::UseClassifier for Bench<'_> {
        type Out = Option<ClassifierTiming>;
        fn image_classifier<M: scalelab_models::ImageClassifier + 'static>(
            self,
            model: M,
        ) -> Self::Out {
            let scalelab_spec::InputShape::Image(shape) = self.input else {
                return None;
            };
            let mut rng = ChaCha8Rng::seed_from_u64(0);
            let mut images = |n: usize| scalelab_data::ImageBatch {
                pixels: (0..n * shape.iter().product::<usize>())
                    .map(|_| rng.random_range(0.0f32..1.0))
                    .collect(),
                shape,
                labels: self.labels(n, &mut rng),
                batch: n,
            };
            self.time(model, images(self.sizes.0), images(self.sizes.1))
        }
        fn text_classifier<M: scalelab_models::TextClassifier + 'static>(
            self,
            model: M,
        ) -> Self::Out {
            let scalelab_spec::InputShape::Tokens { vocab, ctx, .. } = self.input else {
                return None;
            };
            let mut rng = ChaCha8Rng::seed_from_u64(0);
            let mut sentences = |n: usize| scalelab_data::TokenBatch {
                // Token 0 is the padding; every sentence is full length.
                ids: (0..n * ctx)
                    .map(|_| rng.random_range(1..vocab.max(2) as i64))
                    .collect(),
                lengths: vec![ctx; n],
                labels: self.labels(n, &mut rng),
                batch: n,
                ctx,
            };
            self.time(model, sentences(self.sizes.0), sentences(self.sizes.1))
        }
    }
    let autodiff = device.clone().autodiff();
    let bench = Bench {
        input,
        classes,
        sizes: (batch, inference_batch),
        counts: (warmup, steps.max(1)),
        device: &autodiff,
    };
    let timing =
        scalelab_models::build_classifier(shape, &mut SeededInit::new(0), &autodiff, bench);
    // Trainable parameters (Burn also counts batch norm's running statistics).
    let params = shape.param_counts().total;
    timing
        .map(|t| ClassifierTiming { params, ..t })
        .ok_or_else(|| {
            crate::TrainError::Spec(scalelab_spec::SpecError::invalid(
                "model.family",
                scalelab_spec::Named::name(shape.family()),
                "benchmark an image family on images and a text family on sentences",
            ))
        })
}

/// The timing of `model`'s training steps on `fixed` and its inference on `eval` (see
/// [`bench_classifier`]).
fn time_classifier<B, M>(
    model: M,
    fixed: &B,
    eval: &B,
    (warmup, steps): (usize, usize),
    device: &Device,
) -> ClassifierTiming
where
    B: scalelab_data::LabelledBatch + Clone,
    M: crate::classify::Classifier<B>,
{
    let mut optimizer = crate::trainer::optimizer(
        scalelab_spec::Optimiser::AdamW,
        [0.9, 0.999],
        1e-8,
        0.0,
        model.no_decay_param_ids(),
    );
    let loss_of = |m: &M, b: &B| m.batch_loss(b, device);
    let (model, mut times, losses) = timed_steps(
        model,
        &mut optimizer,
        (fixed, loss_of, 1e-3),
        (warmup, steps),
    );
    let inner = model.valid();
    let plain = device.clone().without_autodiff();
    let mut inference = Vec::new();
    for i in 0..warmup + steps {
        let start = Instant::now();
        let p = burn::tensor::activation::softmax(inner.batch_logits(eval, &plain), 1);
        let _ = p.into_data();
        if i >= warmup {
            inference.push(start.elapsed().as_secs_f64() * 1e3);
        }
    }
    let range = [
        times.iter().copied().fold(f64::INFINITY, f64::min),
        times.iter().copied().fold(0.0, f64::max),
    ];
    ClassifierTiming {
        params: 0, // set by the caller from the spec

        batch: fixed.labels().len(),
        train_step_ms: median(&mut times),
        train_range_ms: range,
        inference_batch: eval.labels().len(),
        inference_ms: median(&mut inference),
        loss: [
            losses.first().copied().unwrap_or(f64::NAN),
            losses.last().copied().unwrap_or(f64::NAN),
        ],
    }
}
