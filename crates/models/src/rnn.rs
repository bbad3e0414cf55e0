//! Recurrent sequence classifiers: a token embedding, stacked LSTM (Hochreiter & Schmidhuber
//! 1997) or GRU (Cho et al. 2014) layers with PyTorch's gate layouts, and a linear classifier
//! of the hidden state at each sequence's last real token. Padding positions leave the state
//! unchanged, so padded and unpadded sequences give the same result.
//!
//! Read top to bottom: cost accounting, the cells, the model. Shapes: `[B, T]` token ids,
//! `E` embedding width, `H` hidden units, `G·H` gate pre-activations (`G` = 4 for LSTM, 3 for
//! GRU), `K` classes.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Embedding, Linear};
use burn::tensor::{Device, Int, Tensor, TensorData};
use scalelab_kernels::{linear, recurrent};
use scalelab_spec::{LmConfig, RnnCell};

use crate::init::{InitKind, ParamFactory, WeightInit};
use crate::registry::{FamilyModel, LanguageModel, TextClassifier};
use scalelab_spec::family::RnnConfig;

// Cost accounting lives with the shapes: `scalelab_spec::family::rnn`.

/// sentence order (`N = Σ lengths`): the tagging head shared by the text families.
pub(crate) fn tag_logits(classifier: &Linear, states: Tensor<3>, lengths: &[usize]) -> Tensor<2> {
    let [b, t, _] = states.dims();
    let device = states.device();
    let logits = classifier.forward(states); // [B, T, K]
    let k = logits.dims()[2];
    let real: Vec<i64> = lengths
        .iter()
        .enumerate()
        .flat_map(|(row, &n)| (0..n.clamp(1, t)).map(move |s| (row * t + s) as i64))
        .collect();
    let n = real.len();
    let index = Tensor::<1, Int>::from_data(TensorData::new(real, [n]), &device);
    logits.reshape([b * t, k]).select(0, index) // [N, K]
}

// ---------------------------------------------------------------------------------------------
// The cells.
// ---------------------------------------------------------------------------------------------

/// One recurrent layer: input and hidden projections to the gates.
#[derive(Module, Debug)]
pub struct RecurrentLayer {
    input: Linear,
    hidden: Linear,
    /// 4: LSTM, 3: GRU.
    gates: usize,
}

impl RecurrentLayer {
    /// Runs the layer over `x` `[B, T, d_in]`; positions where `mask` `[B, T]` is 0 keep the
    /// previous state. Returns the hidden states `[B, T, H]`. The input projection of every
    /// position is one product; the steps are one fused operation on the CPU backend
    /// (`scalelab_kernels::recurrent`).
    fn forward(&self, x: Tensor<3>, mask: Tensor<2>) -> Tensor<3> {
        let projected = linear(x, &self.input); // [B, T, G·H], all positions at once
        recurrent(projected, &self.hidden, mask, self.gates)
    }
}

// ---------------------------------------------------------------------------------------------
// The model.
// ---------------------------------------------------------------------------------------------

/// A recurrent sequence classifier.
#[derive(Module, Debug)]
pub struct RnnClassifier {
    embedding: Embedding,
    layers: Vec<RecurrentLayer>,
    classifier: Linear,
    dropout: Dropout,
}

impl RnnClassifier {
    /// Class logits `[B, K]` of `tokens` `[B, T]` whose first `lengths[b]` tokens are real.
    pub fn forward(&self, tokens: Tensor<2, Int>, lengths: &[usize]) -> Tensor<2> {
        let [b, _] = tokens.dims();
        let (x, last) = self.states(tokens, lengths); // [B, T, H], [B, T, 1]
        let [_, _, h] = x.dims();
        let final_state = (x * last).sum_dim(1).reshape([b, h]); // [B, H]
        self.classifier.forward(self.dropout.forward(final_state)) // [B, K]
    }

    /// Tag logits `[N, K]` of every real token (`N = Σ lengths`, sentence by sentence). The
    /// state at a token has read only the tokens up to it (a left-to-right tagger).
    pub fn forward_tags(&self, tokens: Tensor<2, Int>, lengths: &[usize]) -> Tensor<2> {
        let (x, _) = self.states(tokens, lengths); // [B, T, H]
        tag_logits(&self.classifier, self.dropout.forward(x), lengths)
    }

    /// The top layer's states `[B, T, H]` and the one-hot of each last real token `[B, T, 1]`.
    fn states(&self, tokens: Tensor<2, Int>, lengths: &[usize]) -> (Tensor<3>, Tensor<3>) {
        let [b, t] = tokens.dims();
        let device = tokens.device();
        // mask[b, s] = 1 for real tokens; last[b, s] = 1 at each sequence's last real token.
        let mask: Vec<f32> = lengths
            .iter()
            .flat_map(|&n| (0..t).map(move |s| f32::from(u8::from(s < n))))
            .collect();
        let last: Vec<f32> = lengths
            .iter()
            .flat_map(|&n| (0..t).map(move |s| f32::from(u8::from(s + 1 == n.clamp(1, t)))))
            .collect();
        let mask = Tensor::<2>::from_data(TensorData::new(mask, [b, t]), &device);
        let last = Tensor::<3>::from_data(TensorData::new(last, [b, t, 1]), &device);
        let mut x = self.dropout.forward(self.embedding.forward(tokens)); // [B, T, E]
        for layer in &self.layers {
            x = layer.forward(x, mask.clone()); // [B, T, H]
        }
        (x, last)
    }
}

// ---------------------------------------------------------------------------------------------
// The language model.
// ---------------------------------------------------------------------------------------------

/// A recurrent language model: next-token logits at every position.
#[derive(Module, Debug)]
pub struct RnnLm {
    embedding: Embedding,
    layers: Vec<RecurrentLayer>,
    head: Linear,
    dropout: Dropout,
}

impl RnnLm {
    /// Next-token logits `[B, T, V]` of `tokens` `[B, T]`.
    pub fn forward(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        let [b, t] = tokens.dims();
        let mask = Tensor::<2>::ones([b, t], &tokens.device()); // every position is real
        let mut x = self.dropout.forward(self.embedding.forward(tokens)); // [B, T, d]
        for layer in &self.layers {
            x = layer.forward(x, mask.clone()); // [B, T, d]
        }
        self.head.forward(self.dropout.forward(x)) // [B, T, V]
    }
}

/// The token embedding, N(0, 1) as PyTorch's, and `layers` recurrent layers of `hidden`
/// units with weights N(0, 1/hidden) (PyTorch draws U(−1/√H, 1/√H), of similar scale) and
/// zero biases.
fn embedding_and_layers(
    p: &mut ParamFactory<'_>,
    cell: RnnCell,
    vocab: usize,
    embed: usize,
    hidden: usize,
    layers: usize,
) -> (Embedding, Vec<RecurrentLayer>) {
    let g = cell.gates() as usize;
    let std = (1.0 / hidden as f64).sqrt();
    let embedding = Embedding {
        weight: p.param(
            "embedding.weight",
            [vocab, embed],
            InitKind::Normal { std: 1.0 },
        ),
    };
    let layers = (0..layers)
        .map(|l| {
            let d_in = if l == 0 { embed } else { hidden };
            RecurrentLayer {
                input: p.linear(&format!("layers.{l}.input"), d_in, g * hidden, std, true),
                hidden: p.linear(
                    &format!("layers.{l}.hidden"),
                    hidden,
                    g * hidden,
                    std,
                    cell == RnnCell::Gru,
                ),
                gates: g,
            }
        })
        .collect();
    (embedding, layers)
}

/// The LoRA targets of a stack of [`RecurrentLayer`]s (the classifier's and the language
/// model's): the input and the recurrent (hidden-to-hidden) matrices.
const LAYER_LORA_TARGETS: &[(&str, &str)] = &[
    ("input", r"^layers\.\d+\.input\.weight$"),
    ("recurrent", r"^layers\.\d+\.hidden\.weight$"),
];

impl FamilyModel for RnnClassifier {
    type Shape = RnnConfig;
    const HEAD: &'static str = "classifier";
    const INPUT: &'static [&'static str] = &["embedding"];
    const LAYERS: &'static str = "layers";
    const LORA_TARGETS: &'static [(&'static str, &'static str)] = LAYER_LORA_TARGETS;

    /// Builds the classifier: the embedding and layers of [`embedding_and_layers`], a
    /// classifier N(0, 1/H).
    fn init(c: &RnnConfig, init: &mut dyn WeightInit, device: &Device) -> Self {
        let mut p = ParamFactory::new(init, device);
        let (embedding, layers) =
            embedding_and_layers(&mut p, c.cell, c.vocab, c.embed, c.hidden, c.layers);
        let std = (1.0 / c.hidden as f64).sqrt();
        let classifier = p.linear("classifier", c.hidden, c.classes, std, true);
        Self {
            embedding,
            layers,
            classifier,
            dropout: DropoutConfig::new(c.dropout).init(),
        }
    }
}

impl TextClassifier for RnnClassifier {
    fn classify_text(&self, tokens: Tensor<2, Int>, lengths: &[usize]) -> Tensor<2> {
        self.forward(tokens, lengths)
    }

    fn tag_tokens(&self, tokens: Tensor<2, Int>, lengths: &[usize]) -> Tensor<2> {
        self.forward_tags(tokens, lengths)
    }
}

impl FamilyModel for RnnLm {
    type Shape = LmConfig;
    const HEAD: &'static str = "head";
    const INPUT: &'static [&'static str] = &["embedding"];
    const LAYERS: &'static str = "layers";
    const LORA_TARGETS: &'static [(&'static str, &'static str)] = LAYER_LORA_TARGETS;

    /// Builds the model of `c` (family `lstm` or `gru`): the embedding and layers of
    /// [`embedding_and_layers`] with `d_model` units, a head N(0, 1/d) without bias.
    fn init(c: &LmConfig, init: &mut dyn WeightInit, device: &Device) -> Self {
        let mut p = ParamFactory::new(init, device);
        let cell = c.family.rnn_cell().unwrap_or(RnnCell::Lstm);
        let d = c.d_model;
        let (embedding, layers) =
            embedding_and_layers(&mut p, cell, c.vocab_size, d, d, c.n_layers);
        let head = p.linear("head", d, c.vocab_size, (1.0 / d as f64).sqrt(), false);
        Self {
            embedding,
            layers,
            head,
            dropout: DropoutConfig::new(c.dropout).init(),
        }
    }
}

impl LanguageModel for RnnLm {
    fn logits(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        self.forward(tokens)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::SeededInit;
    use crate::test_util::{count_params, padded_tokens};
    use scalelab_spec::Family;
    use scalelab_spec::family::rnn::*;

    /// A recurrent classifier's shape with three classes, no dropout.
    fn shape(cell: RnnCell, vocab: usize, embed: usize, hidden: usize, layers: usize) -> RnnConfig {
        RnnConfig {
            cell,
            vocab,
            ctx: 1,
            embed,
            hidden,
            layers,
            classes: 3,
            dropout: 0.0,
            per_token: false,
        }
    }

    #[test]
    fn counts_match_the_built_model_and_by_hand() {
        let device = Device::default();
        for cell in [RnnCell::Lstm, RnnCell::Gru] {
            for layers in [1, 2] {
                let m = RnnClassifier::init(
                    &shape(cell, 11, 5, 7, layers),
                    &mut SeededInit::new(0),
                    &device,
                );
                assert_eq!(
                    count_params(&m),
                    rnn_param_counts(cell, 11, 5, 7, layers, 3).total
                );
            }
        }
        // PyTorch's nn.LSTM(64, 128) has 4·128·(64 + 128) = 98,304 weights and two biases of
        // 4·128, 99,328 in all; we keep one bias (PyTorch's two only ever appear summed).
        let c = rnn_param_counts(RnnCell::Lstm, 1000, 64, 128, 1, 2);
        assert_eq!(c.non_embedding - (128 * 2 + 2), 99_328 - 512);
        assert_eq!(c.embedding, 64_000);
        // GRU: nn.GRU(64, 128) has 3·128·(64 + 128) + 2·3·128 = 74,496, the same as ours.
        let g = rnn_param_counts(RnnCell::Gru, 1000, 64, 128, 1, 2);
        assert_eq!(g.non_embedding - (128 * 2 + 2), 74_496);
    }

    #[test]
    fn padding_does_not_change_the_result() {
        let device = Device::default();
        for cell in [RnnCell::Lstm, RnnCell::Gru] {
            let m = RnnClassifier::init(&shape(cell, 9, 4, 6, 2), &mut SeededInit::new(1), &device);
            let short = m.forward(padded_tokens(&[&[3, 1, 4]], 3, 0, &device), &[3]);
            let padded = m.forward(padded_tokens(&[&[3, 1, 4]], 7, 0, &device), &[3]);
            let a = short.into_data().try_to_vec::<f32>().unwrap();
            let b = padded.into_data().try_to_vec::<f32>().unwrap();
            for (x, y) in a.iter().zip(&b) {
                assert!((x - y).abs() < 1e-6, "{cell:?}: {a:?} vs {b:?}");
            }
            // Tagging: one row of logits per real token, the same with or without padding,
            // and a token's tags do not depend on the tokens after it.
            let short = m.forward_tags(padded_tokens(&[&[3, 1, 4], &[2]], 3, 0, &device), &[3, 1]);
            let padded = m.forward_tags(padded_tokens(&[&[3, 1, 8], &[2]], 6, 0, &device), &[2, 1]);
            assert_eq!(short.dims(), [4, 3]);
            assert_eq!(padded.dims(), [3, 3]);
            let a = short.into_data().try_to_vec::<f32>().unwrap();
            let b = padded.into_data().try_to_vec::<f32>().unwrap();
            // Rows: sentence 1 tokens 0, 1 (and 2 in `short`), then sentence 2 token 0.
            for (x, y) in a[..6].iter().zip(&b[..6]) {
                assert!((x - y).abs() < 1e-6, "{cell:?}");
            }
            for (x, y) in a[9..].iter().zip(&b[6..]) {
                assert!((x - y).abs() < 1e-6, "{cell:?}");
            }
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        for cell in [RnnCell::Lstm, RnnCell::Gru] {
            // The checker feeds a float tensor; the model reads it as token ids 0..8.
            let ids: Vec<f32> = [1, 5, 2, 7, 3, 0, 4, 6].iter().map(|&v| v as f32).collect();
            crate::test_util::gradient_check(
                |init, device| RnnClassifier::init(&shape(cell, 8, 3, 4, 2), init, device),
                |model, x| {
                    let [b, _, _, t] = x.dims();
                    model.forward(x.reshape([b, t]).int(), &[4, 3])
                },
                ([2, 1, 1, 4], ids),
                6,
            );
        }
    }

    #[test]
    fn language_model_counts_and_causality() {
        let device = Device::default();
        for family in [Family::Lstm, Family::Gru] {
            let c = LmConfig {
                n_layers: 2,
                d_model: 6,
                n_heads: 1,
                d_ff: 24,
                ctx_len: 8,
                vocab_size: 11,
                dropout: 0.0,
                tie_embeddings: false,
                share_layers: false,
                family,
            };
            let m = RnnLm::init(&c, &mut SeededInit::new(0), &device);
            assert_eq!(count_params(&m), c.param_counts().total);
            // The logits at position 1 do not depend on the token at position 2.
            let a = m.forward(padded_tokens(&[&[1, 2, 3]], 3, 0, &device));
            let b = m.forward(padded_tokens(&[&[1, 2, 7]], 3, 0, &device));
            let a = a.narrow(1, 0, 2).into_data().try_to_vec::<f32>().unwrap();
            let b = b.narrow(1, 0, 2).into_data().try_to_vec::<f32>().unwrap();
            assert_eq!(a, b, "{family:?}");
        }
    }
}
