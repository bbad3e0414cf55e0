//! What a classification run records: per-class scores, metrics on each split, the evaluations during training, and the record.

use serde::{Deserialize, Serialize};

use super::ClassifyConfig;
use crate::Record;

/// The parameter-count convention of classification records.
pub const CLASSIFY_PARAM_CONVENTION: &str = "total = all trainable parameters; non_embedding = total minus the token and position embeddings of the text families (the image families have none, so there non_embedding = total)";

/// Schema version of [`ClassifyRecord`]: 2 adds the status (a diverged run is recorded).
pub const CLASSIFY_RECORD_SCHEMA_VERSION: u32 = 2;

/// Precision, recall and F1 of one class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassScores {
    /// Of the examples predicted as this class, the share that are (0 when none predicted).
    pub precision: f64,
    /// Of the examples of this class, the share predicted as it (0 when there are none).
    pub recall: f64,
    /// Harmonic mean of precision and recall (0 when both are 0).
    pub f1: f64,
    /// Examples of this class.
    pub support: u64,
}

/// A classifier's quality on one set of examples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassMetrics {
    /// Examples; accuracy's resolution is `1 / examples`.
    pub examples: u64,
    /// Mean cross-entropy in nats.
    pub loss: f64,
    /// Share predicted right.
    pub accuracy: f64,
    /// 95% Wilson interval of the accuracy.
    pub accuracy_interval: [f64; 2],
    /// Unweighted means over classes.
    pub macro_precision: f64,
    /// See `macro_precision`.
    pub macro_recall: f64,
    /// See `macro_precision`.
    pub macro_f1: f64,
    /// Per class, in label order.
    pub per_class: Vec<ClassScores>,
    /// `confusion[true][predicted]` counts.
    pub confusion: Vec<Vec<u64>>,
    /// Expected calibration error over 15 equal-width confidence bins (Guo et al. 2017).
    pub ece: f64,
}

/// One evaluation during training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassifyPoint {
    /// Training samples seen.
    pub samples: u64,
    /// Training FLOPs spent.
    pub flops: f64,
    /// Mean training loss (with penalties) since the previous point.
    pub train_loss: Option<f64>,
    /// Validation cross-entropy.
    pub val_loss: f64,
    /// Validation accuracy.
    pub val_accuracy: f64,
}

/// A classification run's record.
pub type ClassifyRecord = Record<ClassifyConfig, ClassifyResult>;

/// What a classification run measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassifyResult {
    /// Training FLOPs per sample.
    pub flops_per_sample: f64,
    /// Images trained on (after the fraction and the validation hold-out or fold).
    pub train_examples: u64,
    /// Training samples seen (repeats counted).
    pub samples_seen: u64,
    /// Training FLOPs spent.
    pub train_flops: f64,
    /// Evaluations over training.
    pub curve: Vec<ClassifyPoint>,
    /// Samples seen when the kept weights were (the best validation loss under early stopping,
    /// else the end).
    pub kept_samples: u64,
    /// Whether early stopping ended the run before its budget.
    pub stopped_early: bool,
    /// Metrics of the kept weights on the training images (without augmentation).
    pub train: ClassMetrics,
    /// On the validation images (the held-out fold when cross-validating).
    pub validation: ClassMetrics,
    /// On the test images.
    pub test: ClassMetrics,
    /// Next-sentence accuracy of the kept weights on pairs of each split's sentences, drawn
    /// as training draws them (`objective = "mlm-nsp"` only; chance is 50%).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_sentence: Option<SplitAccuracy>,
}

/// An accuracy on the training, validation and test examples.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SplitAccuracy {
    /// On the training examples.
    pub train: f64,
    /// On the validation examples.
    pub validation: f64,
    /// On the test examples.
    pub test: f64,
}
