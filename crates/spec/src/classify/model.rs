//! Classifier shapes: the model part of a spec, the presets, and the resolved shape of every family with its size limits.

use serde::{Deserialize, Serialize};

use crate::SpecError;

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
    /// Its name in upper case, as tables write it.
    pub fn name(self) -> &'static str {
        match self {
            RnnCell::Lstm => "LSTM",
            RnnCell::Gru => "GRU",
        }
    }

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
