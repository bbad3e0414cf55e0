//! Supervised classification runs beyond GPT: a model family (MLP, VGG-style CNN), a labelled
//! data set, regularisation and augmentation, a budget in training samples or FLOPs, and
//! optionally k-fold cross-validation; and the record such a run writes.
//!
//! ```toml
//! seed = 0
//! folds = 0                 # k ≥ 2: stratified k-fold cross-validation of the training images
//!
//! [model]
//! family = "mlp"            # mlp | cnn | resnet
//! depth = 2                 # mlp: hidden layers (0 = logistic regression); cnn: stages
//! width = 256               # mlp: hidden units; cnn: channels of the first stage (doubling)
//! dropout = 0.0
//!
//! [data]
//! dataset = "digits"        # digits (embedded) | mnist | fashion_mnist
//! train_fraction = 1.0      # stratified, nested share of the training images
//! val_fraction = 0.1        # of those, held out for validation and early stopping
//!
//! [train]
//! batch_size = 64
//! lr = 1e-3
//! budget_samples = 200_000  # or budget_flops; samples are a classifier's tokens
//! weight_decay = 0.0        # decoupled (AdamW)
//! l1 = 0.0                  # penalties added to the loss: l1·Σ|w| + l2/2·Σw² over weight matrices
//! l2 = 0.0
//! early_stopping_patience = 0   # evaluations without a better validation loss before stopping
//! checkpoint_every_samples = 0  # > 0: checkpoint, so an interrupted run resumes
//! optimizer = "adamw"      # adamw | adam | sgd (with momentum = 0.9, nesterov = false)
//!
//! [augment]                 # random affine maps of training images (none by default)
//! shift_pixels = 2.0
//! rotate_degrees = 10.0
//! scale = 0.1
//! ```
//!
//! Budgets are training samples (images seen, repeats counted) or FLOPs, never steps or epochs.

mod data;
mod model;
mod record;
mod run;
mod study;

pub use data::{Augmentation, Dataset, ImageDataSpec};
pub use model::{
    ClassifierConfig, ClassifierPreset, ClassifierSpec, InputShape, MAX_CLASSIFIER_WIDTH, RnnCell,
};
pub use record::{
    CLASSIFY_PARAM_CONVENTION, CLASSIFY_RECORD_SCHEMA_VERSION, ClassMetrics, ClassScores,
    ClassifyPoint, ClassifyRecord, ClassifyResult, SplitAccuracy,
};
pub use run::{
    ClassifyConfig, ClassifySpec, ClassifyTrainConfig, ClassifyTrainSpec, Objective, SampleBudget,
};
pub use study::{ClassifyStudySpec, Regulariser, StudyCell};
