//! Classifier shapes: the model part of a spec, the presets, and the resolved shape of every family with its size limits.

use serde::{Deserialize, Serialize};

use crate::SpecError;
use crate::family::{
    CnnConfig, EncoderConfig, Family, MlpConfig, Purpose, ResnetConfig, RnnConfig,
};

/// The model part of a classification spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClassifierSpec {
    /// `mlp`, `cnn`, `resnet` (images) or `lstm`, `gru`, `encoder` (text).
    pub family: Family,
    /// A named shape (see [`ClassifierPreset`]); the keys below override it.
    pub preset: Option<ClassifierPreset>,
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
            family: Family::Mlp,
            preset: None,
            depth: None,
            width: None,
            fc: None,
            heads: None,
            dropout: 0.0,
        }
    }
}

crate::named! {
    /// The classifier shapes named by `model.preset` (see [`ClassifierPreset::shape`]).
    pub enum ClassifierPreset under "model.preset" {
        /// Logistic regression.
        Logistic = "logistic",
        /// One hidden layer of 128.
        MlpSmall = "mlp-small",
        /// Two hidden layers of 256.
        Mlp = "mlp",
        /// Three hidden layers of 1024.
        MlpLarge = "mlp-large",
        /// Two stages of 8 and 16 channels, fc 64.
        CnnSmall = "cnn-small",
        /// Two stages of 32 and 64 channels, fc 128.
        Cnn = "cnn",
        /// Two residual stages of 16 and 32 channels.
        ResnetSmall = "resnet-small",
        /// Three residual stages of 32, 64 and 128 channels.
        Resnet = "resnet",
        /// One LSTM layer of 128 over 64-wide embeddings.
        Lstm = "lstm",
        /// One GRU layer of 128 over 64-wide embeddings.
        Gru = "gru",
        /// Two encoder blocks of width 64.
        EncoderSmall = "encoder-small",
    }
}

impl ClassifierPreset {
    /// `(family, depth, width, fc)` of the preset; for the recurrent families `fc` is the
    /// embedding width.
    pub fn shape(self) -> (Family, usize, usize, usize) {
        match self {
            Self::Logistic => (Family::Mlp, 0, 0, 0),
            Self::MlpSmall => (Family::Mlp, 1, 128, 0),
            Self::Mlp => (Family::Mlp, 2, 256, 0),
            Self::MlpLarge => (Family::Mlp, 3, 1024, 0),
            Self::CnnSmall => (Family::Cnn, 2, 8, 64),
            Self::Cnn => (Family::Cnn, 2, 32, 128),
            Self::ResnetSmall => (Family::Resnet, 2, 16, 0),
            Self::Resnet => (Family::Resnet, 3, 32, 0),
            Self::Lstm => (Family::Lstm, 1, 128, 64),
            Self::Gru => (Family::Gru, 1, 128, 64),
            Self::EncoderSmall => (Family::Encoder, 2, 64, 0),
        }
    }
}

/// A resolved classifier shape: one variant per family, each its family's shape (in
/// `crate::family`), serialised with the family's name as the `family` tag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "family")]
pub enum ClassifierConfig {
    /// Multilayer perceptron.
    Mlp(MlpConfig),
    /// VGG-style CNN.
    Cnn(CnnConfig),
    /// A recurrent (LSTM or GRU) classifier.
    Rnn(RnnConfig),
    /// A bidirectional Transformer encoder.
    Encoder(EncoderConfig),
    /// A GPT classifier: the encoder's shape with causal attention, the last real token
    /// classified (`causal` is set).
    Gpt(EncoderConfig),
    /// ResNet-style network.
    Resnet(ResnetConfig),
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

/// Widest layer (`model.width`, `model.fc`) a classifier may have.
pub const MAX_CLASSIFIER_WIDTH: usize = 1 << 20;

impl ClassifierSpec {
    /// Resolves the shape for `input` and `classes` classes.
    pub fn resolve(
        &self,
        input: InputShape,
        classes: usize,
    ) -> Result<ClassifierConfig, SpecError> {
        let (mut family, mut depth, mut width, mut fc) = (self.family, None, None, None);
        if let Some(preset) = self.preset {
            let (f, d, w, c) = preset.shape();
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
        let purpose = match input {
            InputShape::Image(_) => Purpose::ImageClassifier,
            InputShape::Tokens { .. } => Purpose::TextClassifier,
        };
        if !family.serves(purpose) {
            return Err(purpose.refuse(family));
        }
        let dropout = self.dropout;
        Ok(match (input, family) {
            (
                InputShape::Tokens {
                    vocab,
                    ctx,
                    per_token,
                },
                Family::Encoder | Family::Gpt,
            ) => {
                let d_model = positive("model.width", width.unwrap_or(64))?;
                let n_heads = positive("model.heads", self.heads.unwrap_or((d_model / 16).max(1)))?;
                if d_model % n_heads != 0 {
                    return Err(SpecError::invalid(
                        "model.heads",
                        n_heads,
                        format!("a divisor of the width {d_model}"),
                    ));
                }
                let causal = family == Family::Gpt;
                let shape = EncoderConfig {
                    vocab,
                    ctx,
                    d_model,
                    n_layers: positive("model.depth", depth.unwrap_or(2))?,
                    n_heads,
                    classes,
                    dropout,
                    per_token,
                    causal,
                    segments: false,
                    next_sentence: false,
                };
                if causal {
                    ClassifierConfig::Gpt(shape)
                } else {
                    ClassifierConfig::Encoder(shape)
                }
            }
            (
                InputShape::Tokens {
                    vocab,
                    ctx,
                    per_token,
                },
                _,
            ) => {
                let cell = family.rnn_cell().unwrap_or(RnnCell::Lstm);
                let layers = positive("model.depth", depth.unwrap_or(1))?;
                if layers > 8 {
                    return Err(SpecError::invalid(
                        "model.depth",
                        layers,
                        "at most 8 layers",
                    ));
                }
                ClassifierConfig::Rnn(RnnConfig {
                    cell,
                    vocab,
                    ctx,
                    embed: positive("model.fc", fc.unwrap_or(64))?,
                    hidden: positive("model.width", width.unwrap_or(128))?,
                    layers,
                    classes,
                    dropout,
                    per_token,
                })
            }
            (InputShape::Image(input), Family::Cnn) => {
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
                ClassifierConfig::Cnn(CnnConfig {
                    input,
                    stages: (0..depth).map(|s| width << s).collect(),
                    fc,
                    classes,
                    dropout,
                })
            }
            (InputShape::Image(input), Family::Resnet) => {
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
                ClassifierConfig::Resnet(ResnetConfig {
                    input,
                    stages: (0..depth).map(|s| width << s).collect(),
                    classes,
                    dropout,
                })
            }
            (InputShape::Image(input), _) => {
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
                ClassifierConfig::Mlp(MlpConfig {
                    inputs: input.iter().product(),
                    hidden: vec![width; depth],
                    classes,
                    dropout,
                })
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths_too_large_to_count_are_refused_by_name() {
        let image = InputShape::Image([1, 8, 8]);
        for (family, key) in [(Family::Mlp, "model.width"), (Family::Cnn, "model.width")] {
            let spec = ClassifierSpec {
                family,
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
            family: Family::Cnn,
            fc: Some(MAX_CLASSIFIER_WIDTH + 1),
            ..ClassifierSpec::default()
        };
        let err = spec.resolve(image, 10).unwrap_err().to_string();
        assert!(err.contains("model.fc"), "{err}");
        // The widest allowed still resolves.
        let spec = ClassifierSpec {
            family: Family::Mlp,
            width: Some(MAX_CLASSIFIER_WIDTH),
            ..ClassifierSpec::default()
        };
        assert!(spec.resolve(image, 10).is_ok());
    }
}
