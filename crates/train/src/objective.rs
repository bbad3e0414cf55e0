//! What the language-model loop needs of a model: a differentiable loss on a batch, and which
//! parameters weight decay skips; every language model of the registry has it.

use burn::module::{Module, ParamId};
use burn::tensor::{Device, Int, Tensor, TensorData};
use scalelab_data::Batch;
use scalelab_models::{FamilyModel, LanguageModel};

/// A model the training loop can optimise.
pub trait Objective: Module + Sized {
    /// Mean loss over `batch`, `[1]`, on `device` (positions from `batch.loss_start` on).
    fn batch_loss(&self, batch: &Batch, device: &Device) -> Tensor<1>;
    /// Next-token logits `[B, T, V]` of `tokens` `[B, T]`, for task evaluation.
    fn logits(&self, tokens: Tensor<2, Int>) -> Tensor<3>;
    /// Parameters exempt from weight decay.
    fn no_decay_param_ids(&self) -> Vec<ParamId>;
}

/// Token ids of a batch as `[batch, ctx]` tensors (inputs, targets).
pub fn token_tensors(batch: &Batch, device: &Device) -> (Tensor<2, Int>, Tensor<2, Int>) {
    let shape = [batch.batch, batch.ctx];
    (
        Tensor::from_data(TensorData::new(batch.inputs.clone(), shape), device),
        Tensor::from_data(TensorData::new(batch.targets.clone(), shape), device),
    )
}

impl<M: LanguageModel> Objective for M {
    fn batch_loss(&self, batch: &Batch, device: &Device) -> Tensor<1> {
        let (inputs, targets) = token_tensors(batch, device);
        self.loss_from(inputs, targets, batch.loss_start)
    }

    fn logits(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        LanguageModel::logits(self, tokens)
    }

    fn no_decay_param_ids(&self) -> Vec<ParamId> {
        FamilyModel::no_decay_param_ids(self)
    }
}
