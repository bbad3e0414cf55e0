//! VGG-style CNN cost accounting.

use serde::{Deserialize, Serialize};

use super::{Family, Shape};
use crate::ParamCounts;

/// Side of every convolution kernel.
pub const KERNEL: usize = 3;
/// Convolutions per stage, before its max-pool.
pub const CONVS_PER_STAGE: usize = 2;

/// Per convolution: `(c_in, c_out, rows, columns)` of its (same-padded) output.
pub fn convs(input: [usize; 3], stages: &[usize]) -> Vec<(u64, u64, u64, u64)> {
    let [mut c, mut h, mut w] = input.map(|v| v as u64);
    let mut out = Vec::new();
    for &s in stages {
        for _ in 0..CONVS_PER_STAGE {
            out.push((c, s as u64, h, w));
            c = s as u64;
        }
        (h, w) = (h / 2, w / 2); // 2×2 max-pool, floor
    }
    out
}

/// Inputs of the hidden fully connected layer: the last stage's channels × its pooled image.
pub fn flat_features(input: [usize; 3], stages: &[usize]) -> u64 {
    let pooled = |v: usize| (v >> stages.len()) as u64;
    stages.last().map_or(input[0] as u64, |&c| c as u64) * pooled(input[1]) * pooled(input[2])
}

/// Exact trainable parameters (kernels, biases, the two linear layers). No embeddings, so
/// both conventions count the same.
pub fn cnn_param_counts(
    input: [usize; 3],
    stages: &[usize],
    fc: usize,
    classes: usize,
) -> ParamCounts {
    let k2 = (KERNEL * KERNEL) as u64;
    let conv: u64 = convs(input, stages)
        .iter()
        .map(|&(ci, co, _, _)| ci * co * k2 + co)
        .sum();
    let (f, fc, k) = (flat_features(input, stages), fc as u64, classes as u64);
    let total = conv + (f * fc + fc) + (fc * k + k);
    ParamCounts {
        total,
        non_embedding: total,
        embedding: 0,
    }
}

/// Training FLOPs per sample: 6 × the multiply-adds of the convolutions (every output
/// position × 3·3·c_in taps, padding included) and the two linear layers.
pub fn cnn_flops_per_sample(input: [usize; 3], stages: &[usize], fc: usize, classes: usize) -> f64 {
    let k2 = (KERNEL * KERNEL) as u64;
    let conv: u64 = convs(input, stages)
        .iter()
        .map(|&(ci, co, h, w)| h * w * k2 * ci * co)
        .sum();
    let linear = flat_features(input, stages) * fc as u64 + (fc * classes) as u64;
    6.0 * (conv + linear) as f64
}

/// A VGG-style CNN (Simonyan & Zisserman 2015): per stage two 3×3 same-padded convolutions
/// with ReLU and a 2×2 max-pool; then a hidden ReLU layer and a linear classifier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CnnConfig {
    /// Input channels, rows and columns.
    pub input: [usize; 3],
    /// Channels of each stage.
    pub stages: Vec<usize>,
    /// Units of the hidden fully connected layer.
    pub fc: usize,
    /// Classes.
    pub classes: usize,
    /// Dropout probability.
    pub dropout: f64,
}

impl Shape for CnnConfig {
    fn family(&self) -> Family {
        Family::Cnn
    }

    fn param_counts(&self) -> ParamCounts {
        cnn_param_counts(self.input, &self.stages, self.fc, self.classes)
    }

    fn flops_per_example(&self) -> f64 {
        cnn_flops_per_sample(self.input, &self.stages, self.fc, self.classes)
    }

    fn describe(&self) -> String {
        let [c, h, w] = self.input;
        format!(
            "cnn {c}x{h}x{w} conv{:?} fc{} → {}",
            self.stages, self.fc, self.classes
        )
    }
}
