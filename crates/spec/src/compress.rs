//! What compression during training asks of a run (`[train]`): gradual pruning's schedule and
//! distillation's teacher. Resolved by `TrainSpec::resolve`; carried out by `scalelab-train`.

use serde::{Deserialize, Serialize};

/// Gradual magnitude pruning (Zhu & Gupta 2017, "To prune, or not to prune", eq. 1 with an
/// initial sparsity of 0): between `start` and `end` (shares of the budget's tokens) each weight
/// matrix of the model's layers is pruned to `sparsity · (1 − (1 − p)³)`, p the share of the
/// way, its smallest-magnitude weights zeroed and kept at zero from then on. `start = end = 0`
/// keeps the zeros the weights start with and prunes no more: a pruned parent's child.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PruneConfig {
    /// Final share of zero weights in each matrix, in (0, 1).
    pub sparsity: f64,
    /// Where pruning starts (share of the budget).
    pub start: f64,
    /// Where it reaches `sparsity`.
    pub end: f64,
}

impl PruneConfig {
    /// The sparsity due after `seen` of `total` tokens.
    pub fn sparsity_at(&self, seen: u64, total: u64) -> f64 {
        let at = seen as f64 / total.max(1) as f64;
        if at <= self.start {
            return 0.0;
        }
        let p = ((at - self.start) / (self.end - self.start).max(f64::MIN_POSITIVE)).min(1.0);
        self.sparsity * (1.0 - (1.0 - p).powi(3))
    }
}

/// Distillation (Hinton et al. 2015): the loss is `λ·CE(y, s) + (1 − λ)·τ²·KL(p_t^τ ‖ p_s^τ)`,
/// `p^τ` the softmax of logits divided by τ, averaged over the predicted positions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistillConfig {
    /// The teacher's id (a run's, or `hf-…` for a transformers checkpoint): part of the
    /// student's identity; its directory is given at run time (`train.distill_from`).
    pub teacher: String,
    /// τ.
    pub temperature: f64,
    /// λ.
    pub hard_weight: f64,
}
