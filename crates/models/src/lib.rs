//! Model families of scalelab, one file each, each readable top to bottom and each reporting
//! its exact parameter counts and training FLOPs from its shape.
//!
//! Models only build and run: the training loop, data and records live in other crates.

mod buffer;
pub mod cnn;
pub mod encoder;
pub mod fused;
mod gemm;
pub mod gpt;
pub mod init;
pub mod mlp;
pub mod resnet;
pub mod rnn;

pub use cnn::{Cnn, cnn_flops_per_sample, cnn_param_counts};
pub use encoder::{Encoder, encoder_flops_per_sample, encoder_param_counts};
pub use gpt::{FLOPS_CONVENTION, Gpt, gpt_flops_per_token, gpt_param_counts};
pub use init::{FormulaInit, InitKind, SeededInit, WeightInit};
pub use mlp::{Mlp, mlp_flops_per_sample, mlp_param_counts};
pub use resnet::{ResNet, resnet_flops_per_sample, resnet_param_counts};
pub use rnn::{
    RnnClassifier, RnnLm, rnn_flops_per_sample, rnn_lm_flops_per_token, rnn_lm_param_counts,
    rnn_param_counts,
};

/// Exact parameter counts of the language model of `c`, whatever its family.
pub fn param_counts(c: &scalelab_spec::GptConfig) -> scalelab_spec::ParamCounts {
    if c.family.is_gpt() {
        gpt_param_counts(c)
    } else {
        rnn_lm_param_counts(c)
    }
}

/// Training FLOPs per token of the language model of `c`, whatever its family (the
/// recurrent models have no attention term).
pub fn flops_per_token(c: &scalelab_spec::GptConfig) -> f64 {
    if c.family.is_gpt() {
        gpt_flops_per_token(c)
    } else {
        rnn_lm_flops_per_token(c)
    }
}

/// Ids of every rank-1 parameter (biases, norm gains and biases): the tensors that weight
/// decay and weight penalties skip, as in nanoGPT.
pub fn rank_one_param_ids<M: burn::module::Module>(model: &M) -> Vec<burn::module::ParamId> {
    use burn::module::{ModuleVisitor, Param, ParamId};
    use burn::tensor::Tensor;
    struct RankOne(Vec<ParamId>);
    impl ModuleVisitor for RankOne {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if D == 1 {
                self.0.push(param.id);
            }
        }
    }
    let mut visitor = RankOne(Vec::new());
    model.visit(&mut visitor);
    visitor.0
}

#[cfg(test)]
mod test_util;
