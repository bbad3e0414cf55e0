//! Training a supervised classifier (MLP, CNN, ResNet, recurrent, encoder) on labelled data
//! through the one training loop (`engine.rs`) the language models use: AdamW, warm-up and
//! cosine decay over a budget of samples or FLOPs, evaluation on the validation examples at
//! regular points, optional L1/L2 penalties, early stopping that keeps the best weights, and
//! divergence recorded as the run's status; then metrics of the kept weights on the training,
//! validation and test examples, written as a [`ClassifyRecord`].
//!
//! With `checkpoint_every_samples` a run checkpoints as a language model does and an
//! interrupted one resumes where it stopped (with early stopping, its best weights so far are
//! kept in the checkpoint too); without, it trains again from the start.

use std::time::Instant;

use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use scalelab_data::{
    Draw, ImageBatch, LabelledBatch, LabelledSet, MlmBatch, PairBatch, TaggedBatch, TokenBatch,
};
use scalelab_models::{
    FamilyModel, ImageClassifier, SeededInit, TextClassifier, UseClassifier, build_classifier,
};
use scalelab_spec::{
    ClassMetrics, ClassifyConfig, ClassifyPoint, ClassifyRecord, ClassifyResult, InitConfig, Named,
    Purpose, SplitAccuracy, run_id,
};

use crate::engine::{At, BodyLr, LoopEnd, LoopSettings, Workload, run_loop};
use crate::metrics::class_metrics;
use crate::penalty::add_penalties;
use crate::trainer::optimizer;
use crate::{Outcome, Progress, RunOptions, TrainError};

/// Examples per forward pass when evaluating: the throughput's best on this machine for every
/// family, or within a few per cent of it (`scalelab bench --family F --inference-batch N`,
/// N from 32 to 500, README "Evaluation"); the training batch has no bearing on it.
const EVAL_BATCH: usize = 128;

/// A model that gives class logits `[B, K]` for the batches `B` of one kind of data set:
/// every image classifier for image batches, every text classifier for sentence and tagged
/// batches.
pub trait Classifier<B: LabelledBatch>: FamilyModel {
    /// Class logits of `batch`, computed on `device`.
    fn batch_logits(&self, batch: &B, device: &Device) -> Tensor<2>;

    /// The training loss of `batch`: the cross-entropy of its logits against its labels, plus
    /// a second objective's where the batch has one.
    fn batch_loss(&self, batch: &B, device: &Device) -> Tensor<1> {
        cross_entropy(self.batch_logits(batch, device), batch.labels(), device)
    }

    /// Whether its batches carry a second objective ([`Classifier::second_task`]).
    const SECOND_TASK: bool = false;

    /// A second objective's logits and labels (next-sentence prediction), scored beside the
    /// first.
    fn second_task(&self, _batch: &B, _device: &Device) -> Option<(Tensor<2>, Vec<i64>)> {
        None
    }
}

/// The mean cross-entropy of `logits` `[n, K]` against `labels`.
fn cross_entropy(logits: Tensor<2>, labels: &[i64], device: &Device) -> Tensor<1> {
    CrossEntropyLossConfig::new()
        .init(device)
        .forward(logits, label_tensor(labels, device))
}

impl<M: ImageClassifier> Classifier<ImageBatch> for M {
    fn batch_logits(&self, batch: &ImageBatch, device: &Device) -> Tensor<2> {
        let [c, h, w] = batch.shape;
        let images = Tensor::<4>::from_data(
            TensorData::new(batch.pixels.clone(), [batch.batch, c, h, w]),
            device,
        );
        self.classify_images(images)
    }
}

/// Padded token ids `[B, T]` as a tensor.
fn token_tensor(ids: &[i64], batch: usize, ctx: usize, device: &Device) -> Tensor<2, Int> {
    Tensor::<2, Int>::from_data(TensorData::new(ids.to_vec(), [batch, ctx]), device)
}

impl<M: TextClassifier> Classifier<TokenBatch> for M {
    fn batch_logits(&self, batch: &TokenBatch, device: &Device) -> Tensor<2> {
        let tokens = token_tensor(&batch.ids, batch.batch, batch.ctx, device);
        self.classify_text(tokens, &batch.lengths)
    }
}

impl<M: TextClassifier> Classifier<TaggedBatch> for M {
    fn batch_logits(&self, batch: &TaggedBatch, device: &Device) -> Tensor<2> {
        let tokens = token_tensor(&batch.ids, batch.batch, batch.ctx, device);
        self.tag_tokens(tokens, &batch.lengths)
    }
}

/// A masked-language model's logits are its per-token logits at the chosen positions.
impl<M: TextClassifier> Classifier<MlmBatch> for M {
    fn batch_logits(&self, batch: &MlmBatch, device: &Device) -> Tensor<2> {
        let tokens = token_tensor(&batch.ids, batch.batch, batch.ctx, device);
        let every = self.tag_tokens(tokens, &batch.lengths); // [Σ lengths, V]
        chosen_rows(every, &batch.positions, device)
    }
}

/// The rows of `every` `[N, V]` at the masked `positions`.
fn chosen_rows(every: Tensor<2>, positions: &[usize], device: &Device) -> Tensor<2> {
    let chosen: Vec<i64> = positions.iter().map(|&p| p as i64).collect();
    let n = chosen.len();
    every.select(
        0,
        Tensor::<1, Int>::from_data(TensorData::new(chosen, [n]), device),
    )
}

/// Masked sentence pairs: the masked tokens' logits, and the next-sentence logits as a
/// second objective whose cross-entropy is added to the loss (BERT's sum of the two).
impl<M: TextClassifier> Classifier<PairBatch> for M {
    const SECOND_TASK: bool = true;

    fn batch_logits(&self, batch: &PairBatch, device: &Device) -> Tensor<2> {
        pair_logits(self, batch, device).0
    }

    fn batch_loss(&self, batch: &PairBatch, device: &Device) -> Tensor<1> {
        let (masked, next) = pair_logits(self, batch, device);
        cross_entropy(masked, batch.labels(), device) + cross_entropy(next, &batch.next, device)
    }

    fn second_task(&self, batch: &PairBatch, device: &Device) -> Option<(Tensor<2>, Vec<i64>)> {
        Some((pair_logits(self, batch, device).1, batch.next.clone()))
    }
}

/// The masked tokens' logits `[n, V]` and the next-sentence logits `[B, 2]` of `batch`.
fn pair_logits<M: TextClassifier>(
    model: &M,
    batch: &PairBatch,
    device: &Device,
) -> (Tensor<2>, Tensor<2>) {
    let m = &batch.masked;
    let tokens = token_tensor(&m.ids, m.batch, m.ctx, device);
    let segments = token_tensor(&batch.segments, m.batch, m.ctx, device);
    let (every, next) = model.tag_pairs(tokens, segments, &m.lengths);
    (chosen_rows(every, &m.positions, device), next)
}

/// Trains the classifier of `config` (any family that reads this kind of data) on `train`,
/// validates on `val`, tests on `test`.
pub fn train_classifier<S: LabelledSet>(
    config: &ClassifyConfig,
    train: &S,
    val: &S,
    test: &S,
    options: &RunOptions,
    progress: &mut dyn Progress,
) -> Result<Outcome<ClassifyRecord>, TrainError>
where
    S::Batch: ClassifierInput,
{
    let device = options.device.clone().autodiff();
    let run = ClassifyRun {
        config,
        train,
        val,
        test,
        options,
        progress,
    };
    build_classifier(
        &config.model,
        &mut SeededInit::new(InitConfig::weight_seed(config.init.as_ref(), config.seed)),
        &device,
        run,
    )
}

/// A classification run waiting for its model.
pub struct ClassifyRun<'a, S> {
    config: &'a ClassifyConfig,
    train: &'a S,
    val: &'a S,
    test: &'a S,
    options: &'a RunOptions,
    progress: &'a mut dyn Progress,
}

impl<S: LabelledSet> ClassifyRun<'_, S> {
    /// Refuses a model of a family that cannot read this data, which serves `data`.
    fn refuse(self, data: Purpose) -> Result<Outcome<ClassifyRecord>, TrainError> {
        Err(TrainError::Spec(data.refuse(self.config.model.family())))
    }
}

/// The kinds of batch a classifier reads: an image batch trains the image classifiers, a
/// sentence or tagged batch the text classifiers, and a family of the other kind is refused.
pub trait ClassifierInput: Sized {
    /// Trains an image classifier on this kind of data, or refuses it.
    fn image<M: ImageClassifier, S: LabelledSet<Batch = Self>>(
        run: ClassifyRun<'_, S>,
        model: M,
    ) -> Result<Outcome<ClassifyRecord>, TrainError>;

    /// Trains a text classifier on this kind of data, or refuses it.
    fn text<M: TextClassifier, S: LabelledSet<Batch = Self>>(
        run: ClassifyRun<'_, S>,
        model: M,
    ) -> Result<Outcome<ClassifyRecord>, TrainError>;

    /// A trained image classifier as the logits of this kind of data (none: it cannot read it).
    fn image_logits<M: ImageClassifier + 'static>(
        model: M,
        device: Device,
    ) -> Option<ClassifierLogits<Self>>;

    /// A trained text classifier as the logits of this kind of data (none: it cannot read it).
    fn text_logits<M: TextClassifier + 'static>(
        model: M,
        device: Device,
    ) -> Option<ClassifierLogits<Self>>;
}

/// A trained classifier's class logits `[n, K]` of a batch, computed on the plain device (no
/// gradients): a distillation teacher, or a compressed model being scored.
pub type ClassifierLogits<B> = Box<dyn Fn(&B) -> Tensor<2>>;

impl ClassifierInput for ImageBatch {
    fn image<M: ImageClassifier, S: LabelledSet<Batch = Self>>(
        run: ClassifyRun<'_, S>,
        model: M,
    ) -> Result<Outcome<ClassifyRecord>, TrainError> {
        classify_loop(run, model)
    }

    fn text<M: TextClassifier, S: LabelledSet<Batch = Self>>(
        run: ClassifyRun<'_, S>,
        _: M,
    ) -> Result<Outcome<ClassifyRecord>, TrainError> {
        run.refuse(Purpose::ImageClassifier)
    }

    fn image_logits<M: ImageClassifier + 'static>(
        model: M,
        device: Device,
    ) -> Option<ClassifierLogits<Self>> {
        Some(Box::new(move |batch| model.batch_logits(batch, &device)))
    }

    fn text_logits<M: TextClassifier + 'static>(_: M, _: Device) -> Option<ClassifierLogits<Self>> {
        None
    }
}

/// Sentence batches, tagged batches and masked batches are read alike.
macro_rules! text_input {
    ($batch:ty) => {
        impl ClassifierInput for $batch {
            fn image<M: ImageClassifier, S: LabelledSet<Batch = Self>>(
                run: ClassifyRun<'_, S>,
                _: M,
            ) -> Result<Outcome<ClassifyRecord>, TrainError> {
                run.refuse(Purpose::TextClassifier)
            }

            fn text<M: TextClassifier, S: LabelledSet<Batch = Self>>(
                run: ClassifyRun<'_, S>,
                model: M,
            ) -> Result<Outcome<ClassifyRecord>, TrainError> {
                classify_loop(run, model)
            }

            fn image_logits<M: ImageClassifier + 'static>(
                _: M,
                _: Device,
            ) -> Option<ClassifierLogits<Self>> {
                None
            }

            fn text_logits<M: TextClassifier + 'static>(
                model: M,
                device: Device,
            ) -> Option<ClassifierLogits<Self>> {
                Some(Box::new(move |batch| model.batch_logits(batch, &device)))
            }
        }
    };
}
text_input!(TokenBatch);
text_input!(TaggedBatch);
text_input!(MlmBatch);
text_input!(PairBatch);

impl<S: LabelledSet> UseClassifier for ClassifyRun<'_, S>
where
    S::Batch: ClassifierInput,
{
    type Out = Result<Outcome<ClassifyRecord>, TrainError>;

    fn image_classifier<M: ImageClassifier>(self, model: M) -> Self::Out {
        S::Batch::image(self, model)
    }

    fn text_classifier<M: TextClassifier>(self, model: M) -> Self::Out {
        S::Batch::text(self, model)
    }
}

/// A classification run, as the one loop sees it: batches of the training examples
/// (augmented), the cross-entropy plus the L1/L2 penalties, and the validation loss and
/// accuracy at every evaluation.
struct ClassifierWorkload<'a, S: LabelledSet, M> {
    config: &'a ClassifyConfig,
    id: String,
    train: &'a S,
    val: &'a S,
    device: Device,
    flops_per_sample: f64,
    /// The teacher of a distilled run, with τ and λ.
    teacher: Option<(ClassifierLogits<S::Batch>, f64, f64)>,
    model: std::marker::PhantomData<M>,
}

impl<S: LabelledSet, M: Classifier<S::Batch>> Workload for ClassifierWorkload<'_, S, M> {
    type Model = M;
    type Batch = S::Batch;
    type Point = ClassifyPoint;
    type Config = ClassifyConfig;

    fn identity(&self) -> (&str, &ClassifyConfig) {
        (&self.id, self.config)
    }

    fn settings(&self) -> LoopSettings {
        let t = &self.config.train;
        let plan = LoopSettings::new(
            self.config.planned_steps(),
            t.lr,
            t.min_lr_ratio,
            t.warmup_fraction,
        );
        // Ten evaluations a run unless told otherwise.
        let ten_a_run = (plan.total_steps * plan.per_step / 10).max(plan.per_step);
        LoopSettings {
            eval_every: Some(t.eval_every_samples)
                .filter(|&every| every > 0)
                .unwrap_or(ten_a_run),
            checkpoint_every: t.checkpoint_every_samples,
            patience: t.early_stopping_patience,
            ..plan
        }
    }

    fn batches(&self, step: u64) -> Vec<S::Batch> {
        let t = &self.config.train;
        vec![self.train.train_batch(
            Draw::new(self.config.seed, step, t.batch_size),
            &self.config.augment,
        )]
    }

    fn loss(&self, model: &M, batch: &S::Batch) -> Tensor<1> {
        let t = &self.config.train;
        let loss = match &self.teacher {
            None => model.batch_loss(batch, &self.device),
            Some((teacher, temperature, hard_weight)) => {
                let student = model.batch_logits(batch, &self.device); // [n, K]
                // The teacher's logits enter the student's graph as constants.
                let teacher = Tensor::<2>::from_data(teacher(batch).into_data(), &self.device);
                let labels = label_tensor(batch.labels(), &self.device);
                let n = batch.labels().len();
                crate::distill::row_distillation_loss(
                    student,
                    teacher,
                    labels.reshape([n, 1]),
                    *temperature,
                    *hard_weight,
                )
            }
        };
        add_penalties(loss, model, t.l1, t.l2)
    }

    fn evaluate(&mut self, model: &M, at: At) -> ClassifyPoint {
        let metrics = evaluate(model, self.val);
        ClassifyPoint {
            samples: at.seen,
            flops: at.seen as f64 * self.flops_per_sample,
            train_loss: at.train_loss,
            val_loss: metrics.loss,
            val_accuracy: metrics.accuracy,
        }
    }

    fn val_loss(point: &ClassifyPoint) -> f64 {
        point.val_loss
    }

    fn units(point: &ClassifyPoint) -> u64 {
        point.samples
    }

    fn start_from(&self, model: M, options: &RunOptions) -> Result<M, TrainError> {
        crate::transfer::start_from(model, self.config.init.as_ref(), options)
    }

    fn adapt(&self, model: M) -> Result<M, TrainError> {
        crate::transfer::adapt(model, self.config.init.as_ref())
    }

    fn body_lr(&self, model: &M) -> Option<BodyLr> {
        crate::transfer::body_lr(model, self.config.init.as_ref())
    }
}

/// Trains `model` for `run` (see the module docs) and writes its record.
fn classify_loop<S: LabelledSet, M: Classifier<S::Batch>>(
    run: ClassifyRun<'_, S>,
    model: M,
) -> Result<Outcome<ClassifyRecord>, TrainError>
where
    S::Batch: ClassifierInput,
{
    let (config, train, val, test) = (run.config, run.train, run.val, run.test);
    let (options, progress) = (run.options, run.progress);
    let t = &config.train;
    let device = options.device.clone().autodiff();
    device.seed(config.seed);
    let flops_per_sample = config.model.flops_per_sample();
    let optimizer = optimizer(
        t.optimizer,
        [0.9, 0.999],
        1e-8,
        t.weight_decay,
        model.no_decay_param_ids(),
    );
    let mut work = ClassifierWorkload {
        config,
        id: run_id(config)?,
        train,
        val,
        device,
        flops_per_sample,
        teacher: load_teacher::<S::Batch>(config, options)?,
        model: std::marker::PhantomData,
    };
    let mut run = match run_loop(&mut work, model, optimizer, options, progress)? {
        LoopEnd::Trained(run) => run,
        LoopEnd::Stopped { seen } => return Ok(Outcome::Stopped { tokens_seen: seen }),
    };
    // The final evaluation's time counts too; the loop's wall time includes a resumed run's
    // earlier pieces.
    let clock = Instant::now();
    let samples_seen = run.curve.last().map_or(0, |p| p.samples);
    let (kept_samples, kept) = match run.kept.take() {
        Some(kept) => kept,
        None => (samples_seen, run.model.valid()),
    };
    let result = ClassifyResult {
        flops_per_sample,
        train_examples: train.len() as u64,
        samples_seen,
        train_flops: samples_seen as f64 * flops_per_sample,
        curve: std::mem::take(&mut run.curve),
        kept_samples,
        stopped_early: run.stopped_early,
        train: evaluate(&kept, train),
        validation: evaluate(&kept, val),
        test: {
            let (probs, targets) = predict(&kept, test);
            write_test_predictions(&options.run_dir, &probs, &targets, test.n_classes())?;
            class_metrics(&probs, &targets, test.n_classes())
        },
        next_sentence: match [train, val, test].map(|set| second_accuracy(&kept, set)) {
            [Some(train), Some(validation), Some(test)] => Some(SplitAccuracy {
                train,
                validation,
                test,
            }),
            _ => None,
        },
    };
    let record = run.write_record(
        (&work.id, config),
        &kept,
        clock.elapsed().as_secs_f64(),
        options,
        result,
    )?;
    Ok(Outcome::Finished(Box::new(record)))
}

/// The teacher of a distilled run (`train.distill`), loaded from `options.distill_from` on
/// the plain device, with τ and λ; none without distillation.
fn load_teacher<B: ClassifierInput>(
    config: &ClassifyConfig,
    options: &RunOptions,
) -> Result<Option<(ClassifierLogits<B>, f64, f64)>, TrainError> {
    let Some(distill) = &config.train.distill else {
        return Ok(None);
    };
    let refuse = |message: String, hint: &str| TrainError::Compress {
        message,
        hint: hint.into(),
    };
    let dir = crate::distill::teacher_dir(distill, options)?;
    let record_path = dir.join("record.json");
    let record: ClassifyRecord = std::fs::read_to_string(&record_path)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .ok_or_else(|| {
            refuse(
                format!(
                    "{} is not a trained classifier's record",
                    record_path.display()
                ),
                "point distill_from at a classifier's run directory",
            )
        })?;
    crate::distill::check_teacher(&record.run_id, distill, dir)?;
    let weights_path = dir.join(crate::transfer::WEIGHTS_FILE);
    let bytes = std::fs::read(&weights_path).map_err(|source| TrainError::Io {
        action: "read",
        path: weights_path.clone(),
        source,
    })?;
    let teacher =
        classifier_logits::<B>(&record.config.model, bytes, &weights_path, &options.device)?
            .ok_or_else(|| {
                refuse(
                    format!(
                        "the teacher in {} is a {} classifier, which cannot read this run's data",
                        dir.display(),
                        record.config.model.family().name()
                    ),
                    "distil from a classifier of the student's kind of data (images or sentences)",
                )
            })?;
    Ok(Some((teacher, distill.temperature, distill.hard_weight)))
}

/// The trained classifier of `shape` with the safetensors `weights` (read from `path`) as
/// the logits of batches `B` on the plain `device`; none when it cannot read `B`.
pub(crate) fn classifier_logits<B: ClassifierInput>(
    shape: &scalelab_spec::ClassifierConfig,
    weights: Vec<u8>,
    path: &std::path::Path,
    device: &Device,
) -> Result<Option<ClassifierLogits<B>>, TrainError> {
    struct Make<B> {
        bytes: Vec<u8>,
        path: std::path::PathBuf,
        device: Device,
        batch: std::marker::PhantomData<B>,
    }
    impl<B: ClassifierInput> UseClassifier for Make<B> {
        type Out = Result<Option<ClassifierLogits<B>>, TrainError>;
        fn image_classifier<M: ImageClassifier + 'static>(self, model: M) -> Self::Out {
            let model = crate::checkpoint::load_bytes(self.bytes, &self.path, model)?;
            Ok(B::image_logits(model, self.device))
        }
        fn text_classifier<M: TextClassifier + 'static>(self, model: M) -> Self::Out {
            let model = crate::checkpoint::load_bytes(self.bytes, &self.path, model)?;
            Ok(B::text_logits(model, self.device))
        }
    }
    let make = Make {
        bytes: weights,
        path: path.to_path_buf(),
        device: device.clone(),
        batch: std::marker::PhantomData,
    };
    build_classifier(shape, &mut SeededInit::new(0), device, make)
}

/// The metrics of a classifier given as its `logits` on every example of `set`.
pub(crate) fn score_set<S: LabelledSet>(
    logits: &ClassifierLogits<S::Batch>,
    set: &S,
) -> ClassMetrics {
    let (probs, targets) = probabilities(logits.as_ref(), set);
    class_metrics(&probs, &targets, set.n_classes())
}

fn label_tensor(labels: &[i64], device: &Device) -> Tensor<1, Int> {
    Tensor::<1, Int>::from_data(TensorData::new(labels.to_vec(), [labels.len()]), device)
}

/// Class probabilities `[n, K]` of every target of `set` (an example, or a token when
/// tagging) and the targets, without autodiff or dropout.
fn predict<S: LabelledSet, M: Classifier<S::Batch>>(model: &M, set: &S) -> (Vec<f32>, Vec<u32>) {
    let model = model.valid();
    let device = model.devices().into_iter().next().unwrap_or_default();
    probabilities(&|batch| model.batch_logits(batch, &device), set)
}

/// The class probabilities `[n, K]` that `logits` give every target of `set`, and the targets.
fn probabilities<S: LabelledSet>(
    logits: &dyn Fn(&S::Batch) -> Tensor<2>,
    set: &S,
) -> (Vec<f32>, Vec<u32>) {
    probabilities_in(logits, set, EVAL_BATCH)
}

/// [`probabilities`] computed in batches of `batch` examples.
fn probabilities_in<S: LabelledSet>(
    logits: &dyn Fn(&S::Batch) -> Tensor<2>,
    set: &S,
    batch: usize,
) -> (Vec<f32>, Vec<u32>) {
    let mut probs = Vec::with_capacity(set.len() * set.n_classes());
    let mut targets = Vec::with_capacity(set.len());
    for batch in set.eval_batches(batch) {
        let p = softmax(logits(&batch), 1);
        probs.extend(p.into_data().try_to_vec::<f32>().unwrap_or_default());
        targets.extend(batch.labels().iter().map(|&l| l as u32));
    }
    (probs, targets)
}

/// The file of a classifier run's predictions on its test set, one row per test target in
/// a fixed order: `example,label,predicted,correct` (what a paired comparison of two runs on
/// the same test set reads: `scalelab compare`).
pub const TEST_PREDICTIONS: &str = "test_predictions.csv";

/// Writes [`TEST_PREDICTIONS`] (atomically) from the kept weights' class probabilities.
fn write_test_predictions(
    run_dir: &std::path::Path,
    probs: &[f32],
    targets: &[u32],
    n_classes: usize,
) -> Result<(), TrainError> {
    let mut text = String::from("example,label,predicted,correct\n");
    for (i, (row, &label)) in probs.chunks(n_classes.max(1)).zip(targets).enumerate() {
        let (predicted, _) = crate::metrics::predicted_class(row);
        let correct = u8::from(predicted == label as usize);
        text.push_str(&format!("{i},{label},{predicted},{correct}\n"));
    }
    crate::fsutil::write_atomic(&run_dir.join(TEST_PREDICTIONS), text.as_bytes())
}

fn evaluate<S: LabelledSet, M: Classifier<S::Batch>>(model: &M, set: &S) -> ClassMetrics {
    let (probs, targets) = predict(model, set);
    class_metrics(&probs, &targets, set.n_classes())
}

/// The accuracy of `model`'s second objective (next-sentence prediction) over `set`, if its
/// batches have one.
fn second_accuracy<S: LabelledSet, M: Classifier<S::Batch>>(model: &M, set: &S) -> Option<f64> {
    // Most batches have none: their sets are not batched again to find out.
    if !M::SECOND_TASK {
        return None;
    }
    let model = model.valid();
    let device = model.devices().into_iter().next().unwrap_or_default();
    let (mut right, mut total) = (0usize, 0usize);
    for batch in set.eval_batches(EVAL_BATCH) {
        let (logits, labels) = model.second_task(&batch, &device)?;
        let guesses = logits.argmax(1).into_data().convert::<i64>();
        let guesses = guesses.try_to_vec::<i64>().unwrap_or_default();
        right += guesses.iter().zip(&labels).filter(|(g, l)| g == l).count();
        total += labels.len();
    }
    (total > 0).then(|| right as f64 / total as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The probabilities of every test image of the digits by a CNN and an MLP, evaluated in
    /// batches of `batch`.
    fn digits_probabilities(
        preset: scalelab_spec::ClassifierPreset,
        batch: usize,
    ) -> (Vec<f32>, Vec<u32>) {
        let digits = scalelab_data::load_digits().unwrap();
        let spec = scalelab_spec::ClassifierSpec {
            preset: Some(preset),
            ..Default::default()
        };
        let shape = spec
            .resolve(
                scalelab_spec::InputShape::Image([
                    digits.test.channels,
                    digits.test.height,
                    digits.test.width,
                ]),
                10,
            )
            .unwrap();
        let device = Device::default();
        struct Eval<'a>(&'a scalelab_data::ImageSet, usize, Device);
        impl UseClassifier for Eval<'_> {
            type Out = (Vec<f32>, Vec<u32>);
            fn image_classifier<M: ImageClassifier>(self, model: M) -> Self::Out {
                let Eval(set, batch, device) = self;
                probabilities_in(&|b| model.batch_logits(b, &device), set, batch)
            }
            fn text_classifier<M: TextClassifier>(self, _: M) -> Self::Out {
                unreachable!("an image preset")
            }
        }
        let eval = Eval(&digits.test, batch, device.clone());
        build_classifier(&shape, &mut SeededInit::new(3), &device, eval)
    }

    #[test]
    fn evaluation_gives_the_same_numbers_in_any_batch_size() {
        // The batch size is chosen for speed (EVAL_BATCH): it must not change the numbers.
        use scalelab_spec::ClassifierPreset::{CnnSmall, ResnetSmall};
        for preset in [CnnSmall, ResnetSmall] {
            let (reference, targets) = digits_probabilities(preset, 500);
            for batch in [EVAL_BATCH, 7, 1] {
                let (probs, t) = digits_probabilities(preset, batch);
                assert_eq!(t, targets);
                let worst = probs
                    .iter()
                    .zip(&reference)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0f32, f32::max);
                assert!(worst < 1e-5, "{preset:?} batch {batch}: {worst}");
            }
        }
    }
}
