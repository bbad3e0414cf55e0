//! ResNet cost accounting.

use serde::{Deserialize, Serialize};

use super::{Family, Shape};
use crate::ParamCounts;

/// Per block: `(c_in, c_out, rows, columns)` at the block's resolution.
pub fn blocks(input: [usize; 3], stages: &[usize]) -> Vec<(u64, u64, u64, u64)> {
    let (mut h, mut w) = (input[1] as u64, input[2] as u64);
    let mut c = stages.first().map_or(0, |&s| s as u64);
    let mut out = Vec::new();
    for (i, &s) in stages.iter().enumerate() {
        if i > 0 {
            (h, w) = (h / 2, w / 2);
        }
        out.push((c, s as u64, h, w));
        c = s as u64;
    }
    out
}

/// Exact trainable parameters: kernels, batch-norm gains and shifts, the classifier. Running
/// statistics are state, not parameters. No embeddings: both conventions count the same.
pub fn resnet_param_counts(input: [usize; 3], stages: &[usize], classes: usize) -> ParamCounts {
    let c0 = stages.first().map_or(0, |&s| s as u64);
    let stem = 9 * input[0] as u64 * c0 + 2 * c0;
    let body: u64 = blocks(input, stages)
        .iter()
        .map(|&(ci, co, _, _)| {
            let convs = 9 * ci * co + 2 * co + 9 * co * co + 2 * co;
            let projection = if ci != co { ci * co + 2 * co } else { 0 };
            convs + projection
        })
        .sum();
    let last = stages.last().map_or(0, |&s| s as u64);
    let head = last * classes as u64 + classes as u64;
    let total = stem + body + head;
    ParamCounts {
        total,
        non_embedding: total,
        embedding: 0,
    }
}

/// Training FLOPs per sample: 6 × the multiply-adds of every convolution (every output
/// position × taps × c_in) and the classifier.
pub fn resnet_flops_per_sample(input: [usize; 3], stages: &[usize], classes: usize) -> f64 {
    let c0 = stages.first().map_or(0, |&s| s as u64);
    let (h, w) = (input[1] as u64, input[2] as u64);
    let stem = h * w * 9 * input[0] as u64 * c0;
    let body: u64 = blocks(input, stages)
        .iter()
        .map(|&(ci, co, h, w)| {
            let projection = if ci != co { h * w * ci * co } else { 0 };
            h * w * 9 * (ci * co + co * co) + projection
        })
        .sum();
    let last = stages.last().map_or(0, |&s| s as u64);
    6.0 * (stem + body + last * classes as u64) as f64
}

/// A ResNet-style network with batch norm (He et al. 2016): a 3×3 stem, one basic block per
/// stage (2×2 max-pool before stages after the first), global average pooling, a linear
/// classifier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResnetConfig {
    /// Input channels, rows and columns.
    pub input: [usize; 3],
    /// Channels of each stage.
    pub stages: Vec<usize>,
    /// Classes.
    pub classes: usize,
    /// Dropout probability (before the classifier).
    pub dropout: f64,
}

impl Shape for ResnetConfig {
    fn family(&self) -> Family {
        Family::Resnet
    }

    fn param_counts(&self) -> ParamCounts {
        resnet_param_counts(self.input, &self.stages, self.classes)
    }

    fn flops_per_example(&self) -> f64 {
        resnet_flops_per_sample(self.input, &self.stages, self.classes)
    }

    fn describe(&self) -> String {
        let [c, h, w] = self.input;
        format!(
            "resnet {c}x{h}x{w} blocks{:?} → {}",
            self.stages, self.classes
        )
    }
}
