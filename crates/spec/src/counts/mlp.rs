//! MLP cost accounting.

use crate::ParamCounts;

/// Widths of every layer boundary: inputs, hidden layers, classes.
pub fn widths(inputs: usize, hidden: &[usize], classes: usize) -> Vec<u64> {
    std::iter::once(inputs)
        .chain(hidden.iter().copied())
        .chain(std::iter::once(classes))
        .map(|w| w as u64)
        .collect()
}

/// Exact trainable parameters: a weight matrix and a bias per layer. An MLP has no
/// embeddings, so both conventions count the same.
pub fn mlp_param_counts(inputs: usize, hidden: &[usize], classes: usize) -> ParamCounts {
    let total = widths(inputs, hidden, classes)
        .windows(2)
        .map(|w| w[0] * w[1] + w[1])
        .sum();
    ParamCounts {
        total,
        non_embedding: total,
        embedding: 0,
    }
}

/// Training FLOPs per sample: 6 × the multiply-adds of the weight matrices.
pub fn mlp_flops_per_sample(inputs: usize, hidden: &[usize], classes: usize) -> f64 {
    let macs: u64 = widths(inputs, hidden, classes)
        .windows(2)
        .map(|w| w[0] * w[1])
        .sum();
    6.0 * macs as f64
}
