//! What the language-model loop adds to a language model of the registry: its loss on one of
//! the data crate's batches.

use burn::tensor::{Device, Int, Tensor, TensorData};
use scalelab_data::Batch;
use scalelab_models::LanguageModel;

/// A language model the training loop can optimise (its logits and the parameters weight
/// decay skips come from [`LanguageModel`] and its `FamilyModel`).
pub trait Objective: LanguageModel {
    /// Mean loss over `batch`, `[1]`, on `device` (positions from `batch.loss_start` on).
    fn batch_loss(&self, batch: &Batch, device: &Device) -> Tensor<1>;
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
}
