//! Model families of scalelab, one file each, each readable top to bottom. Their exact
//! parameter counts and training FLOPs are computed from the shape alone, without Burn, in
//! `scalelab_spec::counts`; each family's tests check them against the built modules.
//!
//! [`registry`] is the one place a resolved shape becomes a family's modules; adding a
//! family is described there.
//!
//! Models only build and run: the training loop, data and records live in other crates.

pub mod cnn;
pub mod encoder;
pub mod gpt;
pub mod init;
pub mod mlp;
pub mod registry;
pub mod resnet;
pub mod rnn;

pub use cnn::Cnn;
pub use encoder::Encoder;
pub use gpt::Gpt;
pub use init::{FormulaInit, InitKind, SeededInit, WeightInit};
pub use mlp::Mlp;
pub use registry::{
    FamilyModel, ImageClassifier, LanguageModel, TextClassifier, UseClassifier, UseLanguageModel,
    build_classifier, build_language_model,
};
pub use resnet::ResNet;
pub use rnn::{RnnClassifier, RnnLm};

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
