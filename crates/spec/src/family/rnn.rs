//! Recurrent (LSTM, GRU) cost accounting: classifiers and language models.

use serde::{Deserialize, Serialize};

use super::{Family, Shape};
use crate::{LmConfig, ParamCounts, RnnCell};

/// Exact trainable parameters. The token embedding is the embedding of the Kaplan convention.
/// Per layer: input weights `d_in·G·H` and bias `G·H`, hidden weights `H·G·H` (and, for the
/// GRU, a hidden bias `G·H`, which its candidate gate needs inside the reset product).
pub fn rnn_param_counts(
    cell: RnnCell,
    vocab: usize,
    embed: usize,
    hidden: usize,
    layers: usize,
    classes: usize,
) -> ParamCounts {
    let (v, e, h, k, g) = (
        vocab as u64,
        embed as u64,
        hidden as u64,
        classes as u64,
        cell.gates(),
    );
    let hidden_bias = if cell == RnnCell::Gru { g * h } else { 0 };
    let recurrent: u64 = (0..layers)
        .map(|l| {
            let d_in = if l == 0 { e } else { h };
            d_in * g * h + g * h + h * g * h + hidden_bias
        })
        .sum();
    let classifier = h * k + k;
    let embedding = v * e;
    ParamCounts {
        total: embedding + recurrent + classifier,
        non_embedding: recurrent + classifier,
        embedding,
    }
}

/// Training FLOPs per sample of `ctx` positions (padding included, as it is computed):
/// 6 × the multiply-adds of the input and hidden weights at every position, and of the
/// classifier once (at every position when tagging, `per_token`). Embedding lookups are free.
pub fn rnn_flops_per_sample(
    cell: RnnCell,
    embed: usize,
    hidden: usize,
    layers: usize,
    classes: usize,
    ctx: usize,
    per_token: bool,
) -> f64 {
    let (e, h, g) = (embed as u64, hidden as u64, cell.gates());
    let per_position: u64 = (0..layers)
        .map(|l| {
            let d_in = if l == 0 { e } else { h };
            d_in * g * h + h * g * h
        })
        .sum();
    let heads = if per_token { ctx as u64 } else { 1 };
    6.0 * (per_position * ctx as u64 + heads * h * classes as u64) as f64
}

/// Exact parameters of a recurrent language model of `c` (`n_layers` layers of `d_model`
/// units, embedding width `d_model`, an untied head without bias). As for the GPT, the token
/// embedding and the head are the embedding part (Kaplan convention).
pub fn rnn_lm_param_counts(cell: RnnCell, c: &LmConfig) -> ParamCounts {
    let counts = rnn_param_counts(cell, c.vocab_size, c.d_model, c.d_model, c.n_layers, 0);
    let head = (c.d_model * c.vocab_size) as u64;
    ParamCounts {
        total: counts.total + head,
        non_embedding: counts.non_embedding,
        embedding: counts.embedding + head,
    }
}

/// Training FLOPs per token of a recurrent language model: 6 × the multiply-adds of the
/// input and hidden weights of every layer and of the head.
pub fn rnn_lm_flops_per_token(cell: RnnCell, c: &LmConfig) -> f64 {
    rnn_flops_per_sample(cell, c.d_model, c.d_model, c.n_layers, 0, 1, false)
        + 6.0 * (c.d_model * c.vocab_size) as f64
}

/// A recurrent classifier: token embedding, stacked LSTM or GRU layers, a linear classifier
/// of the last real token's hidden state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RnnConfig {
    /// The cell.
    pub cell: RnnCell,
    /// Vocabulary size (padding included).
    pub vocab: usize,
    /// Longest sequence.
    pub ctx: usize,
    /// Embedding width.
    pub embed: usize,
    /// Hidden units of each layer.
    pub hidden: usize,
    /// Stacked layers.
    pub layers: usize,
    /// Classes.
    pub classes: usize,
    /// Dropout probability (on the embedding and before the classifier).
    pub dropout: f64,
    /// Tagging: classify every token's state rather than the last one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub per_token: bool,
}

impl Shape for RnnConfig {
    fn family(&self) -> Family {
        self.cell.family()
    }

    fn param_counts(&self) -> ParamCounts {
        rnn_param_counts(
            self.cell,
            self.vocab,
            self.embed,
            self.hidden,
            self.layers,
            self.classes,
        )
    }

    fn flops_per_example(&self) -> f64 {
        rnn_flops_per_sample(
            self.cell,
            self.embed,
            self.hidden,
            self.layers,
            self.classes,
            self.ctx,
            self.per_token,
        )
    }

    fn describe(&self) -> String {
        format!(
            "{} vocab {} ctx {} embed {} {}x{} → {}",
            self.family(),
            self.vocab,
            self.ctx,
            self.embed,
            self.layers,
            self.hidden,
            self.classes
        )
    }
}
