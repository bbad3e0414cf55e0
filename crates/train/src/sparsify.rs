//! Pruning during training (`train.prune`): gradual magnitude pruning after Zhu & Gupta 2017
//! ("To prune, or not to prune"), the schedule in [`scalelab_spec::PruneConfig`].
//!
//! After every optimiser step each weight matrix of the model's layers (not its input or
//! output layer, biases or norms) is multiplied by its mask. At every hundredth of the pruning
//! window (in tokens) and at its end the masks are made again: in each matrix the smallest-magnitude weights, those already
//! pruned among them (they are zero), up to the sparsity due. A mask only ever loses ones, so
//! a pruned weight stays zero; a resumed run rebuilds its masks from its weights' zeros.

use std::collections::HashMap;

use burn::module::{Module, Param};
use burn::tensor::{Tensor, TensorData};
use scalelab_spec::{LayerSparsity, ParamCounts, PruneConfig, SparsityReport};

use crate::transfer::{MapAtPath, by_path, under};

/// Masks of a model's weight matrices, kept between steps.
pub(crate) struct Pruner {
    config: PruneConfig,
    input: &'static [&'static str],
    head: &'static str,
    /// Per matrix path: 1 kept, 0 pruned. Empty until the first step (a resumed run's are
    /// rebuilt from its zeros then).
    masks: HashMap<String, Vec<f32>>,
}

impl Pruner {
    /// A pruner of the layers of a model whose input and output layers are `input`, `head`.
    pub(crate) fn new(
        config: PruneConfig,
        input: &'static [&'static str],
        head: &'static str,
    ) -> Self {
        Self {
            config,
            input,
            head,
            masks: HashMap::new(),
        }
    }

    /// Whether the parameter at `path` is a matrix this pruner prunes.
    fn prunes(&self, path: &str, rank: usize) -> bool {
        rank == 2 && !under(path, self.head) && !self.input.iter().any(|f| under(path, f))
    }

    /// `model` after the step that took training from `before` to `after` of `total` tokens:
    /// masks made again at each hundredth of the pruning window and at its end (points fixed
    /// in tokens, so a resumed run prunes where an uninterrupted one does), then applied.
    pub(crate) fn step<M: Module>(&mut self, model: M, before: u64, after: u64, total: u64) -> M {
        let at = |share: f64| (share * total as f64).round() as u64;
        let (start, end) = (at(self.config.start), at(self.config.end));
        let every = (end.saturating_sub(start) / 100).max(1);
        let remake = after > start
            && before < end
            && (after >= end || crate::engine::crossed(before, after, every));
        let due = self.config.sparsity_at(after, total);
        model.map(&mut by_path(Apply {
            pruner: self,
            remake: remake.then_some(due),
        }))
    }

    /// What the final weights of `model` hold: each pruned matrix's zeros, and the non-zero
    /// parameters in both conventions given the dense `params`.
    pub(crate) fn report<M: Module>(&self, model: &M, params: ParamCounts) -> SparsityReport {
        let mut layers: Vec<LayerSparsity> = Vec::new();
        let mut count = Count {
            pruner: self,
            layers: &mut layers,
        };
        // A mapper that changes nothing, to walk the parameters with their paths.
        let _ = model.clone().map(&mut by_path(&mut count));
        layers.sort_by(|a, b| a.name.cmp(&b.name));
        let zeros: u64 = layers.iter().map(|l| l.zeros).sum();
        SparsityReport {
            target: self.config.sparsity,
            layers,
            nonzero: ParamCounts {
                total: params.total.saturating_sub(zeros),
                non_embedding: params.non_embedding.saturating_sub(zeros),
                embedding: params.embedding,
            },
        }
    }
}

fn values<const D: usize>(param: &Param<Tensor<D>>) -> Vec<f32> {
    param
        .val()
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap_or_default()
}

/// The mask keeping all but the `round(sparsity · n)` smallest magnitudes of `w`.
fn mask_for(w: &[f32], sparsity: f64) -> Vec<f32> {
    let k = ((sparsity * w.len() as f64).round() as usize).min(w.len());
    let mut order: Vec<usize> = (0..w.len()).collect();
    order.sort_by(|&a, &b| w[a].abs().total_cmp(&w[b].abs()).then(a.cmp(&b)));
    let mut mask = vec![1.0f32; w.len()];
    for &i in &order[..k] {
        mask[i] = 0.0;
    }
    mask
}

struct Apply<'a> {
    pruner: &'a mut Pruner,
    remake: Option<f64>,
}

impl MapAtPath for Apply<'_> {
    fn map_at<const D: usize>(&mut self, path: &str, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if !self.pruner.prunes(path, D) {
            return param;
        }
        let mask = match (self.remake, self.pruner.masks.get(path)) {
            (Some(due), _) => mask_for(&values(&param), due),
            (None, Some(mask)) => mask.clone(),
            // A resumed run: its pruned weights are its zeros.
            (None, None) => values(&param)
                .iter()
                .map(|&x| f32::from(u8::from(x != 0.0)))
                .collect(),
        };
        self.pruner.masks.insert(path.to_string(), mask.clone());
        param.map(|t| {
            let trains = t.is_require_grad();
            let mask = Tensor::<D>::from_data(TensorData::new(mask, t.shape()), &t.device());
            let masked = (t * mask).detach();
            if trains {
                masked.require_grad()
            } else {
                masked
            }
        })
    }
}

struct Count<'a> {
    pruner: &'a Pruner,
    layers: &'a mut Vec<LayerSparsity>,
}

impl MapAtPath for &mut Count<'_> {
    fn map_at<const D: usize>(&mut self, path: &str, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if self.pruner.prunes(path, D) {
            let w = values(&param);
            self.layers.push(LayerSparsity {
                name: path.to_string(),
                params: w.len() as u64,
                zeros: w.iter().filter(|x| **x == 0.0).count() as u64,
            });
        }
        param
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Zhu & Gupta's cubic schedule: 0 before the start, the final sparsity from the end on,
    /// s·(1 − (1 − p)³) between (p = 0.5: 7/8 of it).
    #[test]
    fn the_schedule_is_cubic_between_start_and_end() {
        let c = PruneConfig {
            sparsity: 0.8,
            start: 0.2,
            end: 0.6,
        };
        assert_eq!(c.sparsity_at(10, 100), 0.0);
        assert_eq!(c.sparsity_at(20, 100), 0.0);
        assert!((c.sparsity_at(40, 100) - 0.8 * 0.875).abs() < 1e-12);
        assert!((c.sparsity_at(60, 100) - 0.8).abs() < 1e-12);
        assert!((c.sparsity_at(100, 100) - 0.8).abs() < 1e-12);
        let mut last = 0.0;
        for seen in 0..=100 {
            let s = c.sparsity_at(seen, 100);
            assert!(s >= last);
            last = s;
        }
    }

    #[test]
    fn masks_zero_exactly_the_smallest_share() {
        let w = [0.5f32, -0.1, 0.3, -0.7, 0.05, 0.2, -0.4, 0.6];
        let mask = mask_for(&w, 0.5);
        // |w| sorted: 0.05, 0.1, 0.2, 0.3 are the four smallest.
        assert_eq!(mask, vec![1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0]);
    }
}
