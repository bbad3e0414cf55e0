//! GPT cost accounting (see `scalelab-models`'s `gpt.rs` for the model).

use crate::{FlopsConvention, LmConfig, ParamCounts};

/// Exact trainable parameter counts of a GPT of this shape, in both conventions.
pub fn gpt_param_counts(c: &LmConfig) -> ParamCounts {
    let (v, t, d, f, l) = (
        c.vocab_size as u64,
        c.ctx_len as u64,
        c.d_model as u64,
        c.d_ff as u64,
        c.n_layers as u64,
    );
    let layer_norm = 2 * d; // gain and bias
    let attention = (d * 3 * d + 3 * d) + (d * d + d); // qkv and output projection, with biases
    let mlp = (d * f + f) + (f * d + d); // up and down projection, with biases
    let block = 2 * layer_norm + attention + mlp;
    let token_embedding = v * d;
    let position_embedding = t * d;
    let head = if c.tie_embeddings { 0 } else { d * v }; // no bias, as GPT-2
    // With cross-layer sharing one block's weights serve every layer.
    let distinct_blocks = if c.share_layers { 1 } else { l };
    let non_embedding = distinct_blocks * block + layer_norm;
    let embedding = token_embedding + position_embedding + head;
    ParamCounts {
        total: non_embedding + embedding,
        non_embedding,
        embedding,
    }
}

/// Training FLOPs per token (forward + backward) under [`FlopsConvention::SixNMatmulPlusAttention`].
pub fn gpt_flops_per_token(c: &LmConfig) -> f64 {
    let (v, t, d, f, l) = (
        c.vocab_size as f64,
        c.ctx_len as f64,
        c.d_model as f64,
        c.d_ff as f64,
        c.n_layers as f64,
    );
    // Weights that take part in a matrix product: qkv (3d²), projection (d²), MLP (2·d·d_ff)
    // in every block, and the output head (d·V) whether or not it is tied. A shared block
    // counts once per layer it runs in: compute, not storage.
    let matmul_weights = l * (4.0 * d * d + 2.0 * d * f) + d * v;
    // Attention scores QKᵀ and the weighted sum AV: 2·T·d multiply-adds per token per layer,
    // 2 FLOPs each, ×3 for forward and backward = 12·L·T·d.
    6.0 * matmul_weights + 12.0 * l * t * d
}

/// The FLOP convention of [`LmConfig::flops_per_token`].
pub const LM_FLOPS_CONVENTION: FlopsConvention = FlopsConvention::SixNMatmulPlusAttention;
