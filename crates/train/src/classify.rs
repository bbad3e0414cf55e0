//! Training a supervised classifier (MLP, CNN) on labelled images with the same optimiser step
//! as the language models: AdamW, warm-up and cosine decay over a budget of samples or FLOPs,
//! evaluation on the validation images at regular points, optional L1/L2 penalties and early
//! stopping that keeps the best weights; then metrics of the kept weights on the training,
//! validation and test images, written as a [`ClassifyRecord`].
//!
//! Runs are minutes long and restart from scratch rather than resume from checkpoints.

use std::time::Instant;

use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use scalelab_data::{ImageBatch, ImageSet, LabelledBatch, LabelledSet, TaggedBatch, TokenBatch};
use scalelab_models::{Cnn, Encoder, Mlp, ResNet, RnnClassifier, SeededInit, rank_one_param_ids};
use scalelab_spec::{
    CLASSIFY_PARAM_CONVENTION, CLASSIFY_RECORD_SCHEMA_VERSION, ClassMetrics, ClassifierConfig,
    ClassifyConfig, ClassifyPoint, ClassifyRecord, FlopsConvention, SpecError, run_id,
};

use crate::fsutil::write_atomic;
use crate::metrics::class_metrics;
use crate::schedule::learning_rate;
use crate::trainer::{adamw, train_step};
use crate::{RunOptions, TrainError, machine};

/// Images per forward pass when evaluating.
const EVAL_BATCH: usize = 500;

/// A model that gives class logits `[B, K]` for the batches `B` of one kind of data set.
pub trait Classifier<B>: Module + Clone {
    /// Class logits of `batch`, computed on `device`.
    fn batch_logits(&self, batch: &B, device: &Device) -> Tensor<2>;
}

/// The images of a batch as `[B, C, H, W]`.
fn image_tensor(batch: &ImageBatch, device: &Device) -> Tensor<4> {
    let [c, h, w] = batch.shape;
    Tensor::<4>::from_data(
        TensorData::new(batch.pixels.clone(), [batch.batch, c, h, w]),
        device,
    )
}

impl Classifier<ImageBatch> for Mlp {
    fn batch_logits(&self, batch: &ImageBatch, device: &Device) -> Tensor<2> {
        self.forward(image_tensor(batch, device))
    }
}

impl Classifier<ImageBatch> for Cnn {
    fn batch_logits(&self, batch: &ImageBatch, device: &Device) -> Tensor<2> {
        self.forward(image_tensor(batch, device))
    }
}

/// Padded token ids `[B, T]` as a tensor.
fn token_tensor(ids: &[i64], batch: usize, ctx: usize, device: &Device) -> Tensor<2, Int> {
    Tensor::<2, Int>::from_data(TensorData::new(ids.to_vec(), [batch, ctx]), device)
}

impl Classifier<TokenBatch> for RnnClassifier {
    fn batch_logits(&self, batch: &TokenBatch, device: &Device) -> Tensor<2> {
        self.forward(
            token_tensor(&batch.ids, batch.batch, batch.ctx, device),
            &batch.lengths,
        )
    }
}

impl Classifier<TokenBatch> for Encoder {
    fn batch_logits(&self, batch: &TokenBatch, device: &Device) -> Tensor<2> {
        self.forward(
            token_tensor(&batch.ids, batch.batch, batch.ctx, device),
            &batch.lengths,
        )
    }
}

impl Classifier<TaggedBatch> for RnnClassifier {
    fn batch_logits(&self, batch: &TaggedBatch, device: &Device) -> Tensor<2> {
        self.forward_tags(
            token_tensor(&batch.ids, batch.batch, batch.ctx, device),
            &batch.lengths,
        )
    }
}

impl Classifier<TaggedBatch> for Encoder {
    fn batch_logits(&self, batch: &TaggedBatch, device: &Device) -> Tensor<2> {
        self.forward_tags(
            token_tensor(&batch.ids, batch.batch, batch.ctx, device),
            &batch.lengths,
        )
    }
}

impl Classifier<ImageBatch> for ResNet {
    fn batch_logits(&self, batch: &ImageBatch, device: &Device) -> Tensor<2> {
        self.forward(image_tensor(batch, device))
    }
}

/// Trains the classifier of `config` on `train`, validates on `val`, tests on `test`.
pub fn train_classifier(
    config: &ClassifyConfig,
    train: &ImageSet,
    val: &ImageSet,
    test: &ImageSet,
    options: &RunOptions,
) -> Result<ClassifyRecord, TrainError> {
    let device = options.device.clone().autodiff();
    let mut init = SeededInit::new(config.seed);
    match &config.model {
        ClassifierConfig::Mlp {
            inputs,
            hidden,
            classes,
            dropout,
        } => {
            let model = Mlp::new(*inputs, hidden, *classes, *dropout, &mut init, &device);
            classify_loop(model, config, train, val, test, options)
        }
        ClassifierConfig::Cnn {
            input,
            stages,
            fc,
            classes,
            dropout,
        } => {
            let model = Cnn::new(*input, stages, *fc, *classes, *dropout, &mut init, &device);
            classify_loop(model, config, train, val, test, options)
        }
        ClassifierConfig::Resnet {
            input,
            stages,
            classes,
            dropout,
        } => {
            let model = ResNet::new(*input, stages, *classes, *dropout, &mut init, &device);
            classify_loop(model, config, train, val, test, options)
        }
        ClassifierConfig::Rnn { .. } | ClassifierConfig::Encoder { .. } => {
            Err(TrainError::Spec(SpecError::invalid(
                "model.family",
                config.model.family(),
                "a recurrent model reads text: use a text data set such as sentiment",
            )))
        }
    }
}

/// Trains the text classifier (sentence sets) or tagger (tagged sets) of `config` on
/// `train`, validates on `val`, tests on `test`.
pub fn train_text_classifier<S>(
    config: &ClassifyConfig,
    train: &S,
    val: &S,
    test: &S,
    options: &RunOptions,
) -> Result<ClassifyRecord, TrainError>
where
    S: LabelledSet,
    RnnClassifier: Classifier<S::Batch>,
    Encoder: Classifier<S::Batch>,
{
    let device = options.device.clone().autodiff();
    let mut init = SeededInit::new(config.seed);
    match &config.model {
        ClassifierConfig::Rnn {
            cell,
            vocab,
            embed,
            hidden,
            layers,
            classes,
            dropout,
            ..
        } => {
            let model = RnnClassifier::new(
                *cell, *vocab, *embed, *hidden, *layers, *classes, *dropout, &mut init, &device,
            );
            classify_loop(model, config, train, val, test, options)
        }
        ClassifierConfig::Encoder {
            vocab,
            ctx,
            d_model,
            n_layers,
            n_heads,
            classes,
            dropout,
            ..
        } => {
            let model = Encoder::new(
                *vocab, *ctx, *d_model, *n_layers, *n_heads, *classes, *dropout, &mut init, &device,
            );
            classify_loop(model, config, train, val, test, options)
        }
        other => Err(TrainError::Spec(SpecError::invalid(
            "model.family",
            other.family(),
            "the data set is text: use lstm, gru or encoder",
        ))),
    }
}

/// Trains `model` on `train` (see the module docs) and writes its record.
pub fn classify_loop<S: LabelledSet, M: Classifier<S::Batch>>(
    mut model: M,
    config: &ClassifyConfig,
    train: &S,
    val: &S,
    test: &S,
    options: &RunOptions,
) -> Result<ClassifyRecord, TrainError> {
    let t = &config.train;
    let device = options.device.clone().autodiff();
    device.seed(config.seed);
    let clock = Instant::now();
    let (total_steps, per_step) = config.planned_steps();
    let total_samples = total_steps * per_step;
    let flops_per_sample = config.model.flops_per_sample();
    let eval_every = if t.eval_every_samples > 0 {
        t.eval_every_samples
    } else {
        (total_samples / 10).max(per_step)
    };
    let no_decay = rank_one_param_ids(&model);
    let mut optimizer = adamw([0.9, 0.999], 1e-8, t.weight_decay, no_decay);
    let loss_of = |model: &M, batch: &S::Batch| {
        let labels = label_tensor(batch.labels(), &device);
        let loss = CrossEntropyLossConfig::new()
            .init(&device)
            .forward(model.batch_logits(batch, &device), labels);
        add_penalties(loss, model, t.l1, t.l2)
    };

    let mut curve = vec![eval_point(&model, val, 0, 0.0, None)];
    // With early stopping, the best weights are kept as a snapshot: `valid()` copies running
    // statistics (batch norm), which a plain clone would share with the model that keeps
    // training. Without it, no snapshot is taken.
    let keep_best = t.early_stopping_patience > 0;
    let mut best = (curve[0].val_loss, 0u64, keep_best.then(|| model.valid()));
    let mut since_best = 0usize;
    let mut pending = (0.0, 0u64);
    let mut stopped_early = false;
    for step in 0..total_steps {
        let samples_after = (step + 1) * per_step;
        let lr = learning_rate(
            t.lr,
            t.min_lr_ratio,
            t.warmup_fraction,
            samples_after,
            total_samples,
        );
        let batch = train.train_batch(config.seed, step, t.batch_size, &config.augment);
        let loss;
        (model, loss) = train_step(
            model,
            &mut optimizer,
            std::iter::once(batch),
            loss_of,
            0.0,
            lr,
        );
        let loss = loss.map_err(|value| TrainError::Diverged {
            reason: format!("training loss became {value} at step {step}"),
        })?;
        pending.0 += loss;
        pending.1 += 1;
        let last = step + 1 == total_steps;
        if last || samples_after / eval_every > (samples_after - per_step) / eval_every {
            let train_loss = Some(pending.0 / pending.1 as f64);
            let point = eval_point(
                &model,
                val,
                samples_after,
                samples_after as f64 * flops_per_sample,
                train_loss,
            );
            pending = (0.0, 0);
            if point.val_loss < best.0 {
                best = (
                    point.val_loss,
                    samples_after,
                    keep_best.then(|| model.valid()),
                );
                since_best = 0;
            } else {
                since_best += 1;
            }
            curve.push(point);
            if keep_best && since_best >= t.early_stopping_patience {
                stopped_early = !last;
                break;
            }
        }
    }
    let samples_seen = curve.last().map_or(0, |p| p.samples);
    let (kept_samples, kept) = match best.2 {
        Some(snapshot) => (best.1, snapshot),
        None => (samples_seen, model.valid()),
    };
    let record = ClassifyRecord {
        schema_version: CLASSIFY_RECORD_SCHEMA_VERSION,
        run_id: run_id(config)?,
        config: config.clone(),
        git_revision: machine::git_revision().to_string(),
        params: config.model.param_counts(),
        param_convention: CLASSIFY_PARAM_CONVENTION.into(),
        flops_per_sample,
        flops_convention: FlopsConvention::SixForwardMacsPerSample,
        train_examples: train.len() as u64,
        samples_seen,
        train_flops: samples_seen as f64 * flops_per_sample,
        curve,
        kept_samples,
        stopped_early,
        train: evaluate(&kept, train),
        validation: evaluate(&kept, val),
        test: evaluate(&kept, test),
        wall_secs: clock.elapsed().as_secs_f64(),
        threads: rayon::current_num_threads(),
        machine: machine::describe(&options.backend),
    };
    let json = serde_json::to_vec_pretty(&record).map_err(|source| TrainError::Serialise {
        what: "classification record",
        source,
    })?;
    std::fs::create_dir_all(&options.run_dir).map_err(|source| TrainError::Io {
        action: "create",
        path: options.run_dir.clone(),
        source,
    })?;
    write_atomic(&options.run_dir.join("record.json"), &json)?;
    Ok(record)
}

fn label_tensor(labels: &[i64], device: &Device) -> Tensor<1, Int> {
    Tensor::<1, Int>::from_data(TensorData::new(labels.to_vec(), [labels.len()]), device)
}

/// `loss + l1·Σ|w| + l2/2·Σw²` over every weight matrix and kernel (rank ≥ 2).
fn add_penalties<M: Module>(loss: Tensor<1>, model: &M, l1: f64, l2: f64) -> Tensor<1> {
    if l1 == 0.0 && l2 == 0.0 {
        return loss;
    }
    struct Penalty {
        l1: f64,
        l2: f64,
        total: Option<Tensor<1>>,
    }
    impl ModuleVisitor for Penalty {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if D < 2 {
                return;
            }
            let w = param.val();
            let mut term = w.clone().abs().sum().mul_scalar(self.l1);
            if self.l2 > 0.0 {
                term = term + w.square().sum().mul_scalar(self.l2 / 2.0);
            }
            self.total = Some(match self.total.take() {
                Some(total) => total + term,
                None => term,
            });
        }
    }
    let mut penalty = Penalty {
        l1,
        l2,
        total: None,
    };
    model.visit(&mut penalty);
    match penalty.total {
        Some(p) => loss + p,
        None => loss,
    }
}

/// Class probabilities `[n, K]` of every target of `set` (an example, or a token when
/// tagging) and the targets, without autodiff or dropout.
fn predict<S: LabelledSet, M: Classifier<S::Batch>>(model: &M, set: &S) -> (Vec<f32>, Vec<u32>) {
    let model = model.valid();
    let device = model.devices().into_iter().next().unwrap_or_default();
    let mut probs = Vec::with_capacity(set.len() * set.n_classes());
    let mut targets = Vec::with_capacity(set.len());
    for batch in set.eval_batches(EVAL_BATCH) {
        let p = softmax(model.batch_logits(&batch, &device), 1);
        probs.extend(p.into_data().try_to_vec::<f32>().unwrap_or_default());
        targets.extend(batch.labels().iter().map(|&l| l as u32));
    }
    (probs, targets)
}

fn evaluate<S: LabelledSet, M: Classifier<S::Batch>>(model: &M, set: &S) -> ClassMetrics {
    let (probs, targets) = predict(model, set);
    class_metrics(&probs, &targets, set.n_classes())
}

fn eval_point<S: LabelledSet, M: Classifier<S::Batch>>(
    model: &M,
    val: &S,
    samples: u64,
    flops: f64,
    train_loss: Option<f64>,
) -> ClassifyPoint {
    let metrics = evaluate(model, val);
    ClassifyPoint {
        samples,
        flops,
        train_loss,
        val_loss: metrics.loss,
        val_accuracy: metrics.accuracy,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::ParamId;

    #[test]
    fn penalties_add_l1_and_half_l2_of_matrices_only() {
        let device = Device::default();
        // 2 inputs, no hidden layer, 2 classes: a 2×2 weight and a bias. Seeded weights; the
        // penalty must equal l1·Σ|w| + l2/2·Σw² of the weight matrix alone.
        let model = Mlp::new(2, &[], 2, 0.0, &mut SeededInit::new(3), &device);
        struct Weights(Vec<f32>, Vec<ParamId>);
        impl ModuleVisitor for Weights {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                if D == 2 {
                    self.0.extend(
                        param
                            .val()
                            .into_data()
                            .try_to_vec::<f32>()
                            .unwrap_or_default(),
                    );
                    self.1.push(param.id);
                }
            }
        }
        let mut w = Weights(Vec::new(), Vec::new());
        model.visit(&mut w);
        assert_eq!(w.0.len(), 4);
        let expected = 0.3 * w.0.iter().map(|v| f64::from(v.abs())).sum::<f64>()
            + 0.05 * w.0.iter().map(|v| f64::from(v * v)).sum::<f64>();
        let zero = Tensor::<1>::zeros([1], &device);
        let got = f64::from(add_penalties(zero, &model, 0.3, 0.1).into_scalar::<f32>());
        assert!((got - expected).abs() < 1e-5, "{got} vs {expected}");
        assert!(!rank_one_param_ids(&model).contains(&w.1[0]));
    }
}
