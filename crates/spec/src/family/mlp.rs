//! MLP cost accounting.

use serde::{Deserialize, Serialize};

use super::{Family, Shape};
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

/// A multilayer perceptron: flatten, `hidden` ReLU layers, a linear classifier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MlpConfig {
    /// Inputs per example.
    pub inputs: usize,
    /// Units of each hidden layer (empty: logistic regression).
    pub hidden: Vec<usize>,
    /// Classes.
    pub classes: usize,
    /// Dropout probability.
    pub dropout: f64,
}

impl Shape for MlpConfig {
    fn family(&self) -> Family {
        Family::Mlp
    }

    fn param_counts(&self) -> ParamCounts {
        mlp_param_counts(self.inputs, &self.hidden, self.classes)
    }

    fn flops_per_example(&self) -> f64 {
        mlp_flops_per_sample(self.inputs, &self.hidden, self.classes)
    }

    fn describe(&self) -> String {
        let sizes: Vec<String> = widths(self.inputs, &self.hidden, self.classes)
            .iter()
            .map(ToString::to_string)
            .collect();
        format!("mlp {}", sizes.join("-"))
    }
}
