//! A classification run: the training part of a spec, the whole spec, its budget, and the resolved config that fixes its result (and its id).

use serde::{Deserialize, Serialize};

use super::{Augmentation, ClassifierConfig, ClassifierSpec, Dataset, ImageDataSpec, InputShape};
use crate::init::{InitConfig, InitSpec, Parent};
use crate::optim::OptimiserKind;
use crate::run::is_zero;
use crate::{Named, Optimiser, SpecError};

/// The training part of a classification spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClassifyTrainSpec {
    /// Images per optimiser step.
    pub batch_size: usize,
    /// Peak learning rate (AdamW).
    pub lr: f64,
    /// Budget in training samples seen (repeats counted).
    pub budget_samples: Option<u64>,
    /// Budget in training FLOPs.
    pub budget_flops: Option<f64>,
    /// Warm-up share of the budget, then cosine decay to `min_lr_ratio`.
    pub warmup_fraction: f64,
    /// Final learning rate as a share of the peak.
    pub min_lr_ratio: f64,
    /// Decoupled weight decay of AdamW on weight matrices and kernels.
    pub weight_decay: f64,
    /// L1 penalty `l1 · Σ|w|` over weight matrices and kernels, added to the loss.
    pub l1: f64,
    /// L2 penalty `l2/2 · Σw²` over weight matrices and kernels, added to the loss.
    pub l2: f64,
    /// Evaluate on the validation images every this many samples (0: ten times a run).
    pub eval_every_samples: u64,
    /// Stop after this many evaluations without a lower validation loss and keep the best
    /// weights (0: never stop early).
    pub early_stopping_patience: usize,
    /// Checkpoint every this many samples (0: never), so that an interrupted run resumes
    /// where it stopped instead of training again.
    pub checkpoint_every_samples: u64,
    /// The optimiser: `adamw` (default), `adam` or `sgd` (see `scalelab_spec::optim`).
    pub optimizer: OptimiserKind,
    /// SGD's momentum factor (0: plain SGD).
    pub momentum: f64,
    /// SGD with Nesterov's momentum.
    pub nesterov: bool,
    /// Distil from the trained classifier in this run directory (an image classifier for an
    /// image data set, a sentence classifier for a sentence data set, with the same classes):
    /// the loss mixes the labels' cross-entropy with the KL divergence from the teacher's
    /// softened predictions (Hinton et al. 2015).
    pub distill_from: Option<String>,
    /// The softmax temperature τ of distillation (the KL term is scaled by τ²).
    pub distill_temperature: f64,
    /// λ: the weight of the labels' loss; 1 − λ weighs the teacher's.
    pub distill_hard_weight: f64,
}

impl Default for ClassifyTrainSpec {
    fn default() -> Self {
        Self {
            batch_size: 64,
            lr: 1e-3,
            budget_samples: None,
            budget_flops: None,
            warmup_fraction: 0.02,
            min_lr_ratio: 0.0,
            weight_decay: 0.0,
            l1: 0.0,
            l2: 0.0,
            eval_every_samples: 0,
            early_stopping_patience: 0,
            checkpoint_every_samples: 0,
            optimizer: OptimiserKind::AdamW,
            momentum: crate::optim::default_momentum(),
            nesterov: false,
            distill_from: None,
            distill_temperature: 2.0,
            distill_hard_weight: 0.5,
        }
    }
}

crate::named! {
    /// What a classification run learns (`objective`).
    #[derive(Default)]
    pub enum Objective under "objective" {
        /// The data set's classes (or tags).
        #[default]
        Classify = "classify",
        /// Masked-language-model pre-training of a text encoder on the data set's training
        /// sentences, labels (or tags) unused (BERT: 15% of the tokens chosen, 80% masked, 10%
        /// replaced, 10% kept; `scalelab_data::mlm`): a parent for classifiers of the same
        /// sentences.
        Mlm = "mlm",
        /// Masked-language-model and next-sentence pre-training together (BERT's two
        /// objectives, their losses summed): the encoder reads pairs of consecutive training
        /// sentences, half of them with the second replaced by a random one
        /// (`scalelab_data::nsp`), and predicts the masked tokens and whether the second
        /// sentence follows the first.
        MlmNsp = "mlm-nsp",
    }
}

impl Objective {
    /// Whether it is the default (left out of configs, so run ids stay as they were).
    pub fn is_classify(&self) -> bool {
        *self == Objective::Classify
    }

    /// Whether it predicts masked tokens (with or without next sentences).
    pub fn is_masked(&self) -> bool {
        matches!(self, Objective::Mlm | Objective::MlmNsp)
    }
}

/// A classification run as the user writes it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClassifySpec {
    /// Seed of initialisation, batches, augmentation and folds.
    pub seed: u64,
    /// k ≥ 2: k-fold cross-validation over the training images (0 or 1: none).
    pub folds: usize,
    /// With `folds = k`, train only this held-out fold, `0..k` (a study's cell is one fold);
    /// none: every fold.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fold: Option<usize>,
    /// The model.
    pub model: ClassifierSpec,
    /// The data.
    pub data: ImageDataSpec,
    /// Optimisation and regularisation.
    pub train: ClassifyTrainSpec,
    /// Augmentation of training images.
    pub augment: Augmentation,
    /// Where the weights start (a parent run) and which of them train.
    pub init: InitSpec,
    /// What the run learns: the classes, or (a text encoder) masked tokens.
    #[serde(skip_serializing_if = "Objective::is_classify")]
    pub objective: Objective,
    /// Where it trains; not part of the run's identity, recorded in its record.
    #[serde(skip_serializing_if = "crate::TrainDevice::is_cpu")]
    pub device: crate::TrainDevice,
}

/// A classification budget.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SampleBudget {
    /// Training samples seen.
    Samples(u64),
    /// Training FLOPs (see the record's convention).
    Flops(f64),
}

/// Resolved training settings of a classification run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassifyTrainConfig {
    /// Images per optimiser step.
    pub batch_size: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// The budget.
    pub budget: SampleBudget,
    /// Warm-up share of the budget.
    pub warmup_fraction: f64,
    /// Final learning rate as a share of the peak.
    pub min_lr_ratio: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
    /// L1 penalty coefficient.
    pub l1: f64,
    /// L2 penalty coefficient.
    pub l2: f64,
    /// Samples between evaluations (0: ten a run).
    pub eval_every_samples: u64,
    /// Evaluations without improvement before stopping (0: never).
    pub early_stopping_patience: usize,
    /// Checkpoint every this many samples (0, left out of the serialised config: never).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub checkpoint_every_samples: u64,
    /// The optimiser (AdamW, the default, is left out of the serialised config).
    #[serde(default, skip_serializing_if = "Optimiser::is_default")]
    pub optimizer: Optimiser,
    /// Distillation's teacher and settings (left out of the serialised config when off, so
    /// earlier run ids stand); set from `distill_from`'s record by the program.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distill: Option<crate::DistillConfig>,
}

/// A resolved classification run: everything that determines its result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassifyConfig {
    /// Seed.
    pub seed: u64,
    /// The data set.
    pub dataset: Dataset,
    /// Directory of its files, if not the default.
    pub data_dir: Option<String>,
    /// Share of the training images used.
    pub train_fraction: f64,
    /// Share of those held out for validation (unused with folds: the held-out fold is).
    pub val_fraction: f64,
    /// The model.
    pub model: ClassifierConfig,
    /// Training.
    pub train: ClassifyTrainConfig,
    /// Augmentation.
    pub augment: Augmentation,
    /// Cross-validation folds (0: none) and the fold this run holds out.
    pub folds: usize,
    /// The held-out fold, `0..folds`, in a cross-validated run.
    pub fold: Option<usize>,
    /// The parent run and which weights train; absent for a run trained whole from scratch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<InitConfig>,
    /// What it learns; absent for classification, so those runs keep their ids.
    #[serde(default, skip_serializing_if = "Objective::is_classify")]
    pub objective: Objective,
}

impl ClassifySpec {
    /// The data set this spec names (checked before the data are read).
    pub fn dataset(&self) -> Dataset {
        self.data.dataset
    }

    /// Resolves the spec for `input` and `classes`, starting from `parent` (read from
    /// `init.from` by the caller) if the spec names one.
    pub fn resolve(
        &self,
        input: InputShape,
        classes: usize,
        parent: Option<&Parent>,
    ) -> Result<ClassifyConfig, SpecError> {
        let dataset = self.dataset();
        let mut model = self.model.resolve(input, classes)?;
        if let ClassifierConfig::Encoder(shape) = &mut model {
            // A child of a next-sentence model reads its sentences as segment 0, as the parent
            // read a pair's first sentence.
            shape.next_sentence = self.objective == Objective::MlmNsp;
            shape.segments = shape.next_sentence || parent.is_some_and(|p| p.segments);
        }
        let init = self.init.resolve(model.family(), false, parent)?;
        let t = &self.train;
        let fraction = |key: &str, v: f64, lo_open: bool, hi: f64| {
            let ok = v.is_finite() && v <= hi && if lo_open { v > 0.0 } else { v >= 0.0 };
            if ok {
                Ok(())
            } else {
                Err(SpecError::invalid(
                    key,
                    v,
                    format!("a share in {}0, {hi}]", if lo_open { "(" } else { "[" }),
                ))
            }
        };
        fraction("data.train_fraction", self.data.train_fraction, true, 1.0)?;
        fraction("data.val_fraction", self.data.val_fraction, false, 0.5)?;
        fraction("train.warmup_fraction", t.warmup_fraction, false, 0.5)?;
        fraction("train.min_lr_ratio", t.min_lr_ratio, false, 1.0)?;
        for (key, v) in [
            ("train.weight_decay", t.weight_decay),
            ("train.l1", t.l1),
            ("train.l2", t.l2),
        ] {
            if !(v.is_finite() && (0.0..=10.0).contains(&v)) {
                return Err(SpecError::invalid(
                    key,
                    v,
                    "a coefficient in [0, 10]; 0 turns it off",
                ));
            }
        }
        if !(t.lr.is_finite() && t.lr > 0.0 && t.lr <= 10.0) {
            return Err(SpecError::invalid(
                "train.lr",
                t.lr,
                "a positive learning rate, e.g. 1e-3",
            ));
        }
        if t.batch_size == 0 {
            return Err(SpecError::invalid(
                "train.batch_size",
                0,
                "must be at least 1",
            ));
        }
        let budget = match (t.budget_samples, t.budget_flops) {
            (Some(_), Some(_)) => {
                return Err(SpecError::invalid(
                    "train.budget_flops",
                    "(set together with budget_samples)",
                    "give exactly one of `budget_samples` and `budget_flops`",
                ));
            }
            (Some(0), None) => {
                return Err(SpecError::invalid(
                    "train.budget_samples",
                    0,
                    "train on at least one batch",
                ));
            }
            (Some(samples), None) => SampleBudget::Samples(samples),
            (None, Some(f)) if f.is_finite() && f > 0.0 => SampleBudget::Flops(f),
            (None, Some(f)) => {
                return Err(SpecError::invalid(
                    "train.budget_flops",
                    f,
                    "a positive number of FLOPs, e.g. 1e12",
                ));
            }
            (None, None) => SampleBudget::Samples(100_000),
        };
        if self.folds == 1 || self.folds > 20 {
            return Err(SpecError::invalid(
                "folds",
                self.folds,
                "0 for a single validation split, or 2-20 folds",
            ));
        }
        if let Some(fold) = self.fold
            && fold >= self.folds
        {
            return Err(SpecError::invalid(
                "fold",
                fold,
                format!(
                    "a held-out fold in 0..{} (set folds = k ≥ 2 first)",
                    self.folds
                ),
            ));
        }
        self.augment.check()?;
        if self.objective.is_masked() {
            let objective = self.objective.name();
            if !dataset.is_text() {
                return Err(SpecError::invalid(
                    "objective",
                    objective,
                    format!(
                        "masked-language-model pre-training reads the sentences of a text data set (sentiment, pang_lee or pos), not {}",
                        dataset.name()
                    ),
                ));
            }
            if model.family() != crate::Family::Encoder {
                return Err(SpecError::invalid(
                    "objective",
                    objective,
                    format!(
                        "masked-language-model pre-training is for the bidirectional encoder (model.family = \"encoder\"), not {}",
                        model.family().name()
                    ),
                ));
            }
        }
        crate::run::in_range(
            "train.distill_temperature",
            t.distill_temperature,
            1e-3,
            1e3,
            "a positive temperature, e.g. 2 (Hinton et al. used 1 to 20)",
        )?;
        crate::run::in_range(
            "train.distill_hard_weight",
            t.distill_hard_weight,
            0.0,
            1.0,
            "the labels' share of the loss, from 0 to 1, e.g. 0.5",
        )?;
        let (budget_key, samples) = match budget {
            SampleBudget::Samples(s) => ("train.budget_samples", s as f64),
            SampleBudget::Flops(f) => ("train.budget_flops", f / model.flops_per_sample()),
        };
        crate::run::check_budget(
            ("train.batch_size", "samples a step"),
            (t.batch_size as f64, crate::run::MAX_SAMPLES_PER_STEP),
            (budget_key, "samples"),
            samples,
        )?;
        Ok(ClassifyConfig {
            seed: self.seed,
            dataset,
            data_dir: self.data.dir.clone(),
            train_fraction: self.data.train_fraction,
            val_fraction: self.data.val_fraction,
            model,
            train: ClassifyTrainConfig {
                batch_size: t.batch_size,
                lr: t.lr,
                budget,
                warmup_fraction: t.warmup_fraction,
                min_lr_ratio: t.min_lr_ratio,
                weight_decay: t.weight_decay,
                l1: t.l1,
                l2: t.l2,
                eval_every_samples: t.eval_every_samples,
                early_stopping_patience: t.early_stopping_patience,
                checkpoint_every_samples: t.checkpoint_every_samples,
                optimizer: Optimiser::resolve(t.optimizer, t.momentum, t.nesterov)?,
                distill: None,
            },
            augment: self.augment.clone(),
            folds: self.folds,
            fold: self.fold,
            init,
            objective: self.objective,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGITS: InputShape = InputShape::Image([1, 8, 8]);

    fn resolve(spec: &ClassifySpec) -> Result<ClassifyConfig, String> {
        spec.resolve(DIGITS, 10, None).map_err(|e| e.to_string())
    }

    #[test]
    fn a_held_out_fold_must_be_one_of_the_folds() {
        let mut spec = ClassifySpec {
            folds: 3,
            fold: Some(1),
            ..ClassifySpec::default()
        };
        assert_eq!(resolve(&spec).map(|c| c.fold), Ok(Some(1)));
        spec.fold = Some(3);
        let err = resolve(&spec).unwrap_err();
        assert!(err.contains("fold") && err.contains("0..3"), "{err}");
        spec.folds = 0;
        spec.fold = Some(0);
        assert!(resolve(&spec).unwrap_err().contains("folds = k"));
    }

    #[test]
    fn budgets_are_samples_or_flops_and_buy_whole_batches() {
        let mut spec = ClassifySpec::default();
        spec.train.batch_size = 64;
        spec.train.budget_samples = Some(1000);
        let config = resolve(&spec).unwrap();
        assert_eq!(config.train.budget, SampleBudget::Samples(1000));
        assert_eq!(
            config.planned_steps(),
            (16, 64),
            "1000 samples → 16 batches of 64"
        );
        spec.train.budget_flops = Some(1e9);
        assert!(resolve(&spec).unwrap_err().contains("exactly one"));
        spec.train.budget_samples = None;
        let config = resolve(&spec).unwrap();
        let per_sample = config.model.flops_per_sample();
        let (steps, batch) = config.planned_steps();
        assert_eq!(steps, ((1e9 / per_sample) as u64).div_ceil(64));
        assert_eq!(batch, 64);
        spec.train.budget_flops = Some(f64::NAN);
        assert!(resolve(&spec).unwrap_err().contains("budget_flops"));
        spec.train.budget_flops = None;
        spec.train.budget_samples = Some(0);
        assert!(resolve(&spec).unwrap_err().contains("budget_samples"));
    }
}
