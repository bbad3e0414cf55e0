//! The language model's spec (what a user writes under `[model]`) and its resolved shape (what a
//! model is built from): a GPT by default, or an LSTM or GRU language model (`family`).
//!
//! One size dial sets a model's size, as in nanochat: `depth` is the number of layers and the
//! width follows as `d_model = depth × aspect_ratio`, rounded up to a whole number of heads of
//! `head_dim`. Named presets give familiar shapes, and every shape can be overridden
//! explicitly. Resolution happens once, in [`LmSpec::resolve`]; only [`LmConfig`] travels
//! inward.

use serde::{Deserialize, Serialize};

use crate::SpecError;
use crate::family::{Family, Purpose};

/// A language model as the user describes it: a preset or a depth, plus optional explicit
/// overrides (the GPT's keys; the recurrent families use `n_layers` and `d_model`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LmSpec {
    /// A named shape (see [`GptPreset`]); overrides below still apply on top of it.
    pub preset: Option<GptPreset>,
    /// The size dial: number of Transformer blocks. Width follows from `aspect_ratio`.
    pub depth: Option<usize>,
    /// `d_model = depth × aspect_ratio` when the size comes from `depth`. nanochat uses 64.
    pub aspect_ratio: usize,
    /// Width of one attention head; the number of heads is `d_model / head_dim`.
    pub head_dim: usize,
    /// Explicit override of the number of blocks.
    pub n_layers: Option<usize>,
    /// Explicit override of the residual width.
    pub d_model: Option<usize>,
    /// Explicit override of the number of attention heads.
    pub n_heads: Option<usize>,
    /// Explicit override of the MLP hidden width (default `4 × d_model`, as in GPT-2).
    pub d_ff: Option<usize>,
    /// Context length in tokens (the learned position table has this many rows).
    pub ctx_len: usize,
    /// Dropout on embeddings and residual branches; 0 for pretraining, as in nanoGPT.
    pub dropout: f64,
    /// Share the token embedding with the output head (GPT-2 does).
    pub tie_embeddings: bool,
    /// Share one block's weights across all `n_layers` blocks (cross-layer parameter sharing,
    /// ALBERT: Lan et al. 2020): the compute of `n_layers` blocks with the parameters of one.
    pub share_layers: bool,
    /// The language model's family: `gpt` (default), or `lstm` / `gru` — a recurrent
    /// language model of `n_layers` layers of `d_model` units (heads, `d_ff`, positions and
    /// tying do not apply), to compare with the Transformer at equal parameters or compute.
    pub family: Family,
}

impl Default for LmSpec {
    fn default() -> Self {
        Self {
            preset: None,
            depth: None,
            aspect_ratio: 64,
            head_dim: 64,
            n_layers: None,
            d_model: None,
            n_heads: None,
            d_ff: None,
            ctx_len: 256,
            dropout: 0.0,
            tie_embeddings: false,
            share_layers: false,
            family: Family::Gpt,
        }
    }
}

crate::named! {
    /// Named GPT shapes (`model.preset`). The first three are the reference models of the
    /// speed benchmark.
    pub enum GptPreset under "model.preset" {
        /// 2 layers, width 64, 4 heads: the small benchmark model.
        Nano = "nano",
        /// 4 layers, width 128, 4 heads: the default for a few minutes of CPU training.
        Micro = "micro",
        /// 4 layers, width 256, 4 heads: the large benchmark model.
        Mini = "mini",
        /// 6 layers, width 384, 6 heads: nanoGPT's Shakespeare-char shape.
        Small = "small",
        /// 12 layers, width 768, 12 heads: GPT-2 small (124M with its 50257-token vocabulary).
        Gpt2Small = "gpt2-small",
    }
}

impl GptPreset {
    /// `(n_layers, d_model, n_heads)` of the preset.
    pub fn shape(self) -> (usize, usize, usize) {
        match self {
            GptPreset::Nano => (2, 64, 4),
            GptPreset::Micro => (4, 128, 4),
            GptPreset::Mini => (4, 256, 4),
            GptPreset::Small => (6, 384, 6),
            GptPreset::Gpt2Small => (12, 768, 12),
        }
    }
}

/// A fully resolved language-model shape (a GPT's, or a recurrent model's when `family` says
/// so). Every language model is built from one of these, never from a spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LmConfig {
    /// Number of Transformer blocks.
    pub n_layers: usize,
    /// Residual stream width.
    pub d_model: usize,
    /// Attention heads per block; `d_model` is a multiple of it.
    pub n_heads: usize,
    /// MLP hidden width.
    pub d_ff: usize,
    /// Context length (rows of the position table).
    pub ctx_len: usize,
    /// Vocabulary size (rows of the token table), set by the tokenizer.
    pub vocab_size: usize,
    /// Dropout probability on embeddings and residual branches.
    pub dropout: f64,
    /// Whether the output head reuses the token embedding.
    pub tie_embeddings: bool,
    /// Whether every block uses the same weights (ALBERT's cross-layer sharing); left out of
    /// the config when off, so run ids are those of before the option existed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub share_layers: bool,
    /// The family (GPT unless said otherwise).
    #[serde(default, skip_serializing_if = "Family::is_gpt")]
    pub family: Family,
}

impl LmConfig {
    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.d_model / self.n_heads
    }
}

impl LmSpec {
    /// A spec for the given size dial with every other setting at its default.
    pub fn with_depth(depth: usize) -> Self {
        Self {
            depth: Some(depth),
            ..Self::default()
        }
    }

    /// A spec for a named preset.
    pub fn with_preset(preset: GptPreset) -> Self {
        Self {
            preset: Some(preset),
            ..Self::default()
        }
    }

    /// Resolves the spec into a shape, for a tokenizer of `vocab_size` tokens.
    ///
    /// Precedence: explicit overrides, then the preset, then the depth dial. With neither a
    /// preset nor a depth, the dial defaults to depth 4.
    pub fn resolve(&self, vocab_size: usize) -> Result<LmConfig, SpecError> {
        if self.preset.is_some() && self.depth.is_some() {
            return Err(SpecError::invalid(
                "model.depth",
                self.depth.unwrap_or_default(),
                "give either `preset` or `depth`, not both (overrides such as `n_layers` may go with either)",
            ));
        }
        positive("model.aspect_ratio", self.aspect_ratio)?;
        positive("model.head_dim", self.head_dim)?;
        let (base_layers, base_width, base_heads) = match self.preset {
            Some(preset) => preset.shape(),
            None => {
                let depth = self.depth.unwrap_or(4);
                positive("model.depth", depth)?;
                // Round the width up to a whole number of heads.
                let width = depth
                    .checked_mul(self.aspect_ratio)
                    .map(|w| w.div_ceil(self.head_dim))
                    .and_then(|w| w.checked_mul(self.head_dim))
                    .ok_or_else(|| {
                        SpecError::invalid(
                            "model.depth",
                            depth,
                            format!(
                                "depth × aspect_ratio ({}) overflows; pick a depth below {}",
                                self.aspect_ratio,
                                usize::MAX / self.aspect_ratio.max(1) / 2
                            ),
                        )
                    })?;
                (depth, width, width / self.head_dim)
            }
        };
        let n_layers = self.n_layers.unwrap_or(base_layers);
        let d_model = self.d_model.unwrap_or(base_width);
        let n_heads = self.n_heads.unwrap_or(match (self.d_model, self.n_heads) {
            // An explicit width without explicit heads: heads follow from head_dim.
            (Some(d), None) => (d / self.head_dim).max(1),
            _ => base_heads,
        });
        // Saturating: an oversized width is refused by the bound below, not by an overflow.
        let d_ff = self.d_ff.unwrap_or(d_model.saturating_mul(4));
        positive("model.n_layers", n_layers)?;
        positive("model.d_model", d_model)?;
        positive("model.n_heads", n_heads)?;
        positive("model.d_ff", d_ff)?;
        positive("model.ctx_len", self.ctx_len)?;
        positive("vocab_size", vocab_size)?;
        if !d_model.is_multiple_of(n_heads) {
            return Err(SpecError::invalid(
                "model.n_heads",
                n_heads,
                format!(
                    "d_model = {d_model} must be a multiple of n_heads; pick a divisor of {d_model}"
                ),
            ));
        }
        // Every count downstream (parameters, FLOPs, memory) is then safe in u64: an upper
        // bound on the parameters of any family of this shape, in f64, stays below the limit.
        let (l, d, f, t, v) = (
            n_layers as f64,
            d_model as f64,
            d_ff as f64,
            self.ctx_len as f64,
            vocab_size as f64,
        );
        let bound = l * (12.0 * d * d + 2.0 * d * f + 16.0 * d + 2.0 * f) + d * (2.0 * v + t + 2.0);
        if bound > MAX_PARAMS {
            return Err(SpecError::invalid(
                "model.d_model",
                d_model,
                format!(
                    "with n_layers = {n_layers}, d_ff = {d_ff}, ctx_len = {} and {vocab_size} tokens the model would have about {bound:.1e} parameters, more than the {MAX_PARAMS:.0e} scalelab counts; pick a smaller depth or width",
                    self.ctx_len
                ),
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(SpecError::invalid(
                "model.dropout",
                self.dropout,
                "dropout is a probability in [0, 1)",
            ));
        }
        if !self.family.serves(Purpose::LanguageModel) {
            return Err(Purpose::LanguageModel.refuse(self.family));
        }
        if self.share_layers && !self.family.is_gpt() {
            return Err(SpecError::invalid(
                "model.share_layers",
                true,
                format!(
                    "cross-layer sharing is a GPT option; a {} has no blocks to share",
                    self.family
                ),
            ));
        }
        Ok(LmConfig {
            n_layers,
            d_model,
            n_heads,
            d_ff,
            ctx_len: self.ctx_len,
            vocab_size,
            dropout: self.dropout,
            tie_embeddings: self.tie_embeddings,
            share_layers: self.share_layers,
            family: self.family,
        })
    }
}

/// Most parameters a model spec may resolve to (ten trillion, beyond any model trained
/// today): it keeps every parameter, FLOP and memory count within u64 and f64 precision.
pub const MAX_PARAMS: f64 = 1e13;

fn positive(key: &str, value: usize) -> Result<(), SpecError> {
    if value == 0 {
        return Err(SpecError::invalid(key, value, "must be at least 1"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_dial_sets_width_and_heads() {
        // depth 4 × aspect 64 = 256 wide, 256 / 64 = 4 heads.
        let c = LmSpec::with_depth(4).resolve(256).unwrap();
        assert_eq!(
            (c.n_layers, c.d_model, c.n_heads, c.d_ff),
            (4, 256, 4, 1024)
        );
        // depth 3 × aspect 40 = 120, rounded up to two heads of 64 = 128.
        let spec = LmSpec {
            depth: Some(3),
            aspect_ratio: 40,
            ..LmSpec::default()
        };
        let c = spec.resolve(256).unwrap();
        assert_eq!((c.d_model, c.n_heads), (128, 2));
    }

    #[test]
    fn shapes_too_large_to_count_are_refused_by_name() {
        // depth 100000 × aspect 64: 6.4M wide, ~4.9e19 parameters, past u64 in the counts.
        let err = LmSpec::with_depth(100_000)
            .resolve(256)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("model.d_model") && err.contains("parameters") && err.contains("1e13"),
            "{err}"
        );
        // A depth whose width overflows usize itself.
        let err = LmSpec::with_depth(usize::MAX / 2)
            .resolve(256)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("model.depth") && err.contains("overflows"),
            "{err}"
        );
        // GPT-3's shape (96 layers of 12288, 175B parameters) still resolves.
        let spec = LmSpec {
            n_layers: Some(96),
            d_model: Some(12288),
            n_heads: Some(96),
            ctx_len: 2048,
            ..LmSpec::default()
        };
        assert!(spec.resolve(50257).is_ok());
    }

    #[test]
    fn preset_with_override() {
        let spec = LmSpec {
            n_layers: Some(3),
            ..LmSpec::with_preset(GptPreset::Mini)
        };
        let c = spec.resolve(256).unwrap();
        assert_eq!((c.n_layers, c.d_model, c.n_heads), (3, 256, 4));
    }

    #[test]
    fn explicit_width_derives_heads_from_head_dim() {
        let spec = LmSpec {
            d_model: Some(192),
            head_dim: 32,
            ..LmSpec::with_depth(2)
        };
        assert_eq!(spec.resolve(256).unwrap().n_heads, 6);
    }

    #[test]
    fn bad_shapes_name_the_key() {
        let spec = LmSpec {
            n_heads: Some(3),
            ..LmSpec::with_preset(GptPreset::Mini)
        };
        let err = spec.resolve(256).unwrap_err().to_string();
        assert!(
            err.contains("model.n_heads") && err.contains("256"),
            "{err}"
        );

        let err = "huge".parse::<GptPreset>().unwrap_err();
        assert!(
            err.to_string().contains("model.preset") && err.to_string().contains("gpt2-small"),
            "{err}"
        );
        let err = toml::from_str::<LmSpec>("preset = \"huge\"").unwrap_err();
        assert!(err.to_string().contains("gpt2-small"), "{err}");
        let spec = LmSpec {
            family: Family::Mlp,
            ..LmSpec::default()
        };
        let err = spec.resolve(256).unwrap_err().to_string();
        assert!(
            err.contains("model.family") && err.contains("gpt, lstm or gru"),
            "{err}"
        );

        let spec = LmSpec {
            dropout: 1.5,
            ..LmSpec::default()
        };
        assert!(
            spec.resolve(256)
                .unwrap_err()
                .to_string()
                .contains("model.dropout")
        );
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = toml::from_str::<LmSpec>("deph = 3")
            .unwrap_err()
            .to_string();
        assert!(err.contains("deph"), "{err}");
    }
}
