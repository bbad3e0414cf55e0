//! Encoder cost accounting.

use serde::{Deserialize, Serialize};

use super::{Family, Shape};
use crate::ParamCounts;

/// MLP width of each block as a multiple of `d`, as in the GPT and BERT.
pub const FF_MULT: usize = 4;

/// Exact trainable parameters; the token and position embeddings are the embedding part
/// (Kaplan convention). Blocks count as in [`super::gpt::gpt_param_counts`].
pub fn encoder_param_counts(
    vocab: usize,
    ctx: usize,
    d_model: usize,
    n_layers: usize,
    classes: usize,
) -> ParamCounts {
    let (v, t, d, l, k) = (
        vocab as u64,
        ctx as u64,
        d_model as u64,
        n_layers as u64,
        classes as u64,
    );
    let f = FF_MULT as u64 * d;
    let block = 2 * (2 * d) + (d * 3 * d + 3 * d) + (d * d + d) + (d * f + f) + (f * d + d);
    let non_embedding = l * block + 2 * d + d * k + k;
    let embedding = v * d + t * d;
    ParamCounts {
        total: non_embedding + embedding,
        non_embedding,
        embedding,
    }
}

/// Training FLOPs per sample of `ctx` tokens: per token 6 × the block matrices' weights plus
/// 12·L·T·d for the attention scores and weighted sums (as the GPT's convention), and
/// 6·d·K for the classifier, once or (tagging, `per_token`) at every token.
pub fn encoder_flops_per_sample(
    ctx: usize,
    d_model: usize,
    n_layers: usize,
    classes: usize,
    per_token: bool,
) -> f64 {
    let (t, d, l) = (ctx as f64, d_model as f64, n_layers as f64);
    let f = FF_MULT as f64 * d;
    let per_position = 6.0 * l * (4.0 * d * d + 2.0 * d * f) + 12.0 * l * t * d;
    let heads = if per_token { t } else { 1.0 };
    per_position * t + heads * 6.0 * d * classes as f64
}

/// A bidirectional Transformer encoder (BERT-style) with mean pooling of the real tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EncoderConfig {
    /// Vocabulary size (padding included).
    pub vocab: usize,
    /// Longest sequence.
    pub ctx: usize,
    /// Residual width.
    pub d_model: usize,
    /// Blocks.
    pub n_layers: usize,
    /// Attention heads.
    pub n_heads: usize,
    /// Classes.
    pub classes: usize,
    /// Dropout probability.
    pub dropout: f64,
    /// Tagging: classify every token's state rather than their mean.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub per_token: bool,
    /// Causal attention and the last real token's state classified: the GPT family's
    /// classifier (GPT-1's recipe, Radford et al. 2018), whose body a GPT language model's
    /// weights fit.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub causal: bool,
    /// Segment embeddings (BERT's token types, 2 × d, counted with the embeddings): every
    /// token of the first sentence of a pair gets segment 0, of the second segment 1, and of
    /// a single sentence 0. Set by next-sentence pre-training and inherited by its children,
    /// which then read their sentences as the parent did.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub segments: bool,
    /// A next-sentence head (BERT's NSP, d → 2, over the pooled state) beside the per-token
    /// output layer: whether the second sentence of a pair follows the first.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub next_sentence: bool,
}

/// Outputs of the next-sentence head.
pub const NEXT_SENTENCE_CLASSES: usize = 2;
/// Segments a sentence pair has.
pub const SEGMENTS: usize = 2;

impl Shape for EncoderConfig {
    fn family(&self) -> Family {
        if self.causal {
            Family::Gpt
        } else {
            Family::Encoder
        }
    }

    fn param_counts(&self) -> ParamCounts {
        let mut counts = encoder_param_counts(
            self.vocab,
            self.ctx,
            self.d_model,
            self.n_layers,
            self.classes,
        );
        let d = self.d_model as u64;
        if self.segments {
            counts.embedding += SEGMENTS as u64 * d;
        }
        if self.next_sentence {
            counts.non_embedding += NEXT_SENTENCE_CLASSES as u64 * (d + 1);
        }
        counts.total = counts.embedding + counts.non_embedding;
        counts
    }

    fn flops_per_example(&self) -> f64 {
        encoder_flops_per_sample(
            self.ctx,
            self.d_model,
            self.n_layers,
            self.classes,
            self.per_token,
        ) + if self.next_sentence {
            6.0 * self.d_model as f64 * NEXT_SENTENCE_CLASSES as f64
        } else {
            0.0
        }
    }

    fn describe(&self) -> String {
        format!(
            "{} vocab {} ctx {} {}L d{} {}h → {}",
            if self.causal { "gpt" } else { "encoder" },
            self.vocab,
            self.ctx,
            self.n_layers,
            self.d_model,
            self.n_heads,
            self.classes
        )
    }
}
