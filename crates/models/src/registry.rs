//! The one registry from a resolved shape to its family's modules.
//!
//! Each family's file implements [`FamilyModel`] (its modules built from its resolved shape,
//! whose parameter counts and FLOPs are `scalelab_spec::Shape`) and the forward pass of what
//! it trains for: [`LanguageModel`], [`ImageClassifier`] or [`TextClassifier`].
//! [`build_language_model`] and [`build_classifier`] are the one place that maps a shape to
//! its family's modules; callers say what to do with the model through [`UseLanguageModel`]
//! or [`UseClassifier`], generically, so the training loop never names a family.
//!
//! Adding a family: its shape in `scalelab-spec` (`family/<name>.rs`, a line of
//! `scalelab_spec::Family` and a variant of `ClassifierConfig` or a `LmConfig` family), its
//! modules here (`<name>.rs`, implementing the traits below), and its arm in [`build_classifier`] (or
//! [`build_language_model`]).

use burn::module::{Module, ParamId};
use burn::tensor::{Device, Int, Tensor};
use scalelab_spec::{ClassifierConfig, LmConfig, Shape};

use crate::{Cnn, Encoder, Gpt, Mlp, ResNet, RnnClassifier, RnnLm, WeightInit};

/// What every family's modules implement: being built from the family's resolved shape.
pub trait FamilyModel: Module + Clone {
    /// The family's resolved shape (counts and FLOPs in `scalelab-spec`).
    type Shape: Shape;
    /// The field of the output layer (the classifier, or a language model's own
    /// unembedding), by which [`init.head`](scalelab_spec::InitSpec) finds what to keep or
    /// re-initialise and a linear probe what to train.
    const HEAD: &'static str;
    /// The fields of the input layer (embeddings, a stem), frozen with the first layers.
    const INPUT: &'static [&'static str];
    /// The field holding the list of layers whose first `init.freeze_layers` are frozen.
    const LAYERS: &'static str;
    /// Each LoRA target of the family (`scalelab_spec::Family::lora_targets`) with the
    /// regular expression of the weight matrices' paths it names.
    const LORA_TARGETS: &'static [(&'static str, &'static str)];

    /// The family's modules of `shape` on `device`, initialised by `init`.
    fn init(shape: &Self::Shape, init: &mut dyn WeightInit, device: &Device) -> Self;

    /// Parameters exempt from weight decay and penalties: every rank-1 tensor (biases, norm
    /// gains and shifts), as in nanoGPT.
    fn no_decay_param_ids(&self) -> Vec<ParamId> {
        crate::rank_one_param_ids(self)
    }
}

/// A language model: next-token logits of token sequences.
pub trait LanguageModel: FamilyModel<Shape = LmConfig> {
    /// Next-token logits `[B, T, V]` of `tokens` `[B, T]`.
    fn logits(&self, tokens: Tensor<2, Int>) -> Tensor<3>;

    /// Mean next-token cross-entropy in nats, `[1]`, of `tokens` against `targets` (both
    /// `[B, T]`) at positions `start..T` (a task's answer tokens).
    fn loss_from(
        &self,
        tokens: Tensor<2, Int>,
        targets: Tensor<2, Int>,
        start: usize,
    ) -> Tensor<1> {
        crate::gpt::next_token_loss(self.logits(tokens), targets, start)
    }

    /// The L2 norm over every position of `tokens` `[B, T]` of each input feature of each
    /// layer weight matrix, keyed by the weight's name (Wanda's calibration); `None` for a
    /// family that does not expose its layers' inputs.
    fn input_norms(&self, _tokens: Tensor<2, Int>) -> Option<Vec<(String, Vec<f32>)>> {
        None
    }
}

/// A classifier of images `[B, C, H, W]`.
pub trait ImageClassifier: FamilyModel {
    /// Class logits `[B, K]`.
    fn classify_images(&self, images: Tensor<4>) -> Tensor<2>;
}

/// A classifier of padded token sequences `[B, T]` whose first `lengths[b]` tokens are real,
/// and a tagger of their tokens.
pub trait TextClassifier: FamilyModel {
    /// Class logits `[B, K]` of each sequence.
    fn classify_text(&self, tokens: Tensor<2, Int>, lengths: &[usize]) -> Tensor<2>;

    /// Tag logits `[N, K]` of every real token, sequence by sequence (`N = Σ lengths`).
    fn tag_tokens(&self, tokens: Tensor<2, Int>, lengths: &[usize]) -> Tensor<2>;

    /// Tag logits `[N, K]` of sentence pairs whose `segments` `[B, T]` say which sentence each
    /// token is in, and next-sentence logits `[B, 2]` (BERT's NSP). Only the encoder has a
    /// next-sentence head (the spec refuses next-sentence pre-training of other families);
    /// without one the segments are ignored and the logits are zeros, a constant guess.
    fn tag_pairs(
        &self,
        tokens: Tensor<2, Int>,
        segments: Tensor<2, Int>,
        lengths: &[usize],
    ) -> (Tensor<2>, Tensor<2>) {
        let b = lengths.len();
        let device = segments.device();
        (
            self.tag_tokens(tokens, lengths),
            Tensor::zeros([b, 2], &device),
        )
    }
}

/// What to do with the language model [`build_language_model`] makes.
pub trait UseLanguageModel {
    /// What it gives.
    type Out;
    /// Use the model.
    fn language_model<M: LanguageModel + 'static>(self, model: M) -> Self::Out;
}

/// What to do with the classifier [`build_classifier`] makes, for each kind of input.
pub trait UseClassifier {
    /// What it gives.
    type Out;
    /// Use an image classifier.
    fn image_classifier<M: ImageClassifier + 'static>(self, model: M) -> Self::Out;
    /// Use a text classifier or tagger.
    fn text_classifier<M: TextClassifier + 'static>(self, model: M) -> Self::Out;
}

/// Builds the language model of `shape` (a GPT, or a recurrent model when its family says
/// so) on `device`, initialised by `init`, and hands it to `then`.
pub fn build_language_model<U: UseLanguageModel>(
    shape: &LmConfig,
    init: &mut dyn WeightInit,
    device: &Device,
    then: U,
) -> U::Out {
    if shape.family.is_gpt() {
        then.language_model(Gpt::init(shape, init, device))
    } else {
        then.language_model(RnnLm::init(shape, init, device))
    }
}

/// Builds the classifier of `shape` on `device`, initialised by `init`, and hands it to
/// `then`.
pub fn build_classifier<U: UseClassifier>(
    shape: &ClassifierConfig,
    init: &mut dyn WeightInit,
    device: &Device,
    then: U,
) -> U::Out {
    match shape {
        ClassifierConfig::Mlp(c) => then.image_classifier(Mlp::init(c, init, device)),
        ClassifierConfig::Cnn(c) => then.image_classifier(Cnn::init(c, init, device)),
        ClassifierConfig::Resnet(c) => then.image_classifier(ResNet::init(c, init, device)),
        ClassifierConfig::Rnn(c) => then.text_classifier(RnnClassifier::init(c, init, device)),
        ClassifierConfig::Encoder(c) | ClassifierConfig::Gpt(c) => {
            then.text_classifier(Encoder::init(c, init, device))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scalelab_spec::Family;

    /// The LoRA target names a spec accepts for each family are exactly the ones its modules
    /// know a pattern for.
    #[test]
    fn every_family_knows_the_lora_targets_its_spec_accepts() {
        fn names<M: FamilyModel>() -> Vec<&'static str> {
            M::LORA_TARGETS.iter().map(|(name, _)| *name).collect()
        }
        let cases: [(Family, Vec<&str>); 8] = [
            (Family::Gpt, names::<Gpt>()),
            (Family::Encoder, names::<Encoder>()),
            (Family::Mlp, names::<Mlp>()),
            (Family::Cnn, names::<Cnn>()),
            (Family::Resnet, names::<ResNet>()),
            (Family::Lstm, names::<RnnClassifier>()),
            (Family::Lstm, names::<RnnLm>()),
            (Family::Gru, names::<RnnLm>()),
        ];
        for (family, known) in cases {
            assert_eq!(family.lora_targets(), known.as_slice(), "{family}");
        }
    }
}
