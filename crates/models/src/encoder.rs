//! Encoder: a BERT-style bidirectional Transformer classifier (Devlin et al. 2019), built from
//! the same pre-LayerNorm blocks as the GPT (`gpt.rs`) with attention in both directions and
//! padding keys masked out. Token and learned position embeddings, the blocks, a final
//! LayerNorm, the mean of the real tokens' states, and a linear classifier. (BERT classifies
//! from a `[CLS]` token; mean pooling needs no special token and is as common in small
//! models.)
//!
//! Read top to bottom: cost accounting, the model. Shapes: `[B, T, d]` batch, time, width.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Embedding, LayerNorm, Linear};
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::gpt::Block;
use crate::init::{InitKind, ParamFactory, WeightInit};
use crate::registry::{FamilyModel, TextClassifier};
use crate::rnn::tag_logits;
use scalelab_spec::family::EncoderConfig;

use scalelab_spec::family::encoder::{FF_MULT, NEXT_SENTENCE_CLASSES, SEGMENTS};

// Cost accounting lives with the shapes: `scalelab_spec::family::encoder`.

// ---------------------------------------------------------------------------------------------
// The model.
// ---------------------------------------------------------------------------------------------

/// A bidirectional Transformer encoder classifier.
#[derive(Module, Debug)]
pub struct Encoder {
    token_embedding: Embedding,
    position_embedding: Embedding,
    blocks: Vec<Block>,
    ln_f: LayerNorm,
    classifier: Linear,
    /// Segment embeddings `[2, d]` (`EncoderConfig::segments`).
    segment_embedding: Option<Embedding>,
    /// The next-sentence head, d → 2 over the pooled state (`EncoderConfig::next_sentence`).
    next_sentence: Option<Linear>,
    dropout: Dropout,
    n_heads: usize,
    /// Causal attention, the last real token's state classified (the GPT classifier).
    causal: bool,
}

impl Encoder {
    /// Class logits `[B, K]` of `tokens` `[B, T]` whose first `lengths[b]` tokens are real.
    pub fn forward(&self, tokens: Tensor<2, Int>, lengths: &[usize]) -> Tensor<2> {
        let (x, real) = self.states(tokens, None, lengths); // [B, T, d], [B, T]
        self.classifier
            .forward(self.dropout.forward(self.pool(x, real, lengths))) // [B, K]
    }

    /// The pooled state `[B, d]` of final states `x` `[B, T, d]` whose real tokens `real`
    /// `[B, T]` marks.
    fn pool(&self, x: Tensor<3>, real: Tensor<2>, lengths: &[usize]) -> Tensor<2> {
        let [b, t, d] = x.dims();
        let device = x.device();
        // Mean of the real tokens' states, or (causal) the last real token's, which has
        // attended to the whole sentence.
        let real = if self.causal {
            let last: Vec<f32> = lengths
                .iter()
                .flat_map(|&n| (0..t).map(move |s| f32::from(u8::from(s + 1 == n.clamp(1, t)))))
                .collect();
            Tensor::<2>::from_data(TensorData::new(last, [b, t]), &device)
        } else {
            real
        };
        let weights = real.clone().reshape([b, t, 1]); // [B, T, 1]
        let counts = real.sum_dim(1).reshape([b, 1]); // [B, 1]
        (x * weights).sum_dim(1).reshape([b, d]) / counts // [B, d]
    }

    /// Tag logits `[N, K]` of every real token (`N = Σ lengths`, sentence by sentence); each
    /// token's state has attended to the whole sentence.
    pub fn forward_tags(&self, tokens: Tensor<2, Int>, lengths: &[usize]) -> Tensor<2> {
        let (x, _) = self.states(tokens, None, lengths); // [B, T, d]
        tag_logits(&self.classifier, self.dropout.forward(x), lengths)
    }

    /// Tag logits `[N, K]` of every real token of sentence pairs whose `segments` `[B, T]`
    /// say which sentence each token is in, and next-sentence logits `[B, 2]` of each pair
    /// (zeros for an encoder without a next-sentence head).
    pub fn forward_pairs(
        &self,
        tokens: Tensor<2, Int>,
        segments: Tensor<2, Int>,
        lengths: &[usize],
    ) -> (Tensor<2>, Tensor<2>) {
        let (x, real) = self.states(tokens, Some(segments), lengths); // [B, T, d], [B, T]
        let x = self.dropout.forward(x);
        let next = match &self.next_sentence {
            Some(head) => head.forward(self.pool(x.clone(), real, lengths)), // [B, 2]
            None => Tensor::zeros([lengths.len(), NEXT_SENTENCE_CLASSES], &x.device()),
        };
        (tag_logits(&self.classifier, x, lengths), next)
    }

    /// The final states `[B, T, d]` and the real-token mask `[B, T]`; every token is in
    /// segment 0 unless `segments` says otherwise.
    fn states(
        &self,
        tokens: Tensor<2, Int>,
        segments: Option<Tensor<2, Int>>,
        lengths: &[usize],
    ) -> (Tensor<3>, Tensor<2>) {
        let [b, t] = tokens.dims();
        let device = tokens.device();
        let real: Vec<f32> = lengths
            .iter()
            .flat_map(|&n| (0..t).map(move |s| f32::from(u8::from(s < n.max(1)))))
            .collect();
        let real = Tensor::<2>::from_data(TensorData::new(real, [b, t]), &device); // [B, T]
        // Padding keys are hidden from every query (a sentence has at least one real token).
        let key_lengths: Vec<usize> = lengths.iter().map(|&n| n.clamp(1, t)).collect();
        let positions = Tensor::<1, Int>::arange(0..t as i64, &device).reshape([1, t]);
        let mut x = self.token_embedding.forward(tokens) // [B, T, d]
            + self.position_embedding.forward(positions); // [1, T, d]
        if let Some(segment) = &self.segment_embedding {
            let segments = segments.unwrap_or_else(|| Tensor::zeros([b, t], &device));
            x = x + segment.forward(segments); // [B, T, d]
        }
        let mut x = self.dropout.forward(x);
        for block in &self.blocks {
            x = block.forward_with(x, Some(&key_lengths), self.causal); // [B, T, d]
        }
        (self.ln_f.forward(x), real) // [B, T, d], [B, T]
    }
}

impl FamilyModel for Encoder {
    type Shape = EncoderConfig;
    const HEAD: &'static str = "classifier";
    const INPUT: &'static [&'static str] = &["token_embedding", "position_embedding"];
    const LAYERS: &'static str = "blocks";
    const LORA_TARGETS: &'static [(&'static str, &'static str)] = crate::gpt::BLOCK_LORA_TARGETS;

    /// Builds the encoder with the GPT's initialisation (N(0, 0.02), residual projections
    /// N(0, 0.02/√(2L)), zero biases, unit norms).
    fn init(c: &EncoderConfig, init: &mut dyn WeightInit, device: &Device) -> Self {
        let &EncoderConfig {
            vocab,
            ctx,
            d_model,
            n_layers,
            n_heads,
            classes,
            dropout,
            causal,
            segments,
            next_sentence,
            ..
        } = c;
        const STD: f64 = 0.02;
        let residual_std = STD / (2.0 * n_layers.max(1) as f64).sqrt();
        let mut p = ParamFactory::new(init, device);
        let normal = InitKind::Normal { std: STD };
        let token_embedding = Embedding {
            weight: p.param("token_embedding.weight", [vocab, d_model], normal),
        };
        let position_embedding = Embedding {
            weight: p.param("position_embedding.weight", [ctx, d_model], normal),
        };
        let blocks = (0..n_layers)
            .map(|i| {
                Block::new(
                    &mut p,
                    &format!("blocks.{i}"),
                    d_model,
                    FF_MULT * d_model,
                    n_heads,
                    dropout,
                    STD,
                    residual_std,
                )
            })
            .collect();
        let ln_f = p.layer_norm("ln_f", d_model);
        let classifier = p.linear("classifier", d_model, classes, STD, true);
        // Drawn last, so an encoder without them is initialised as before they existed.
        let segment_embedding = segments.then(|| Embedding {
            weight: p.param("segment_embedding.weight", [SEGMENTS, d_model], normal),
        });
        let next_sentence = next_sentence
            .then(|| p.linear("next_sentence", d_model, NEXT_SENTENCE_CLASSES, STD, true));
        Self {
            token_embedding,
            position_embedding,
            blocks,
            ln_f,
            classifier,
            segment_embedding,
            next_sentence,
            dropout: DropoutConfig::new(dropout).init(),
            n_heads,
            causal,
        }
    }
}

impl TextClassifier for Encoder {
    fn classify_text(&self, tokens: Tensor<2, Int>, lengths: &[usize]) -> Tensor<2> {
        self.forward(tokens, lengths)
    }

    fn tag_tokens(&self, tokens: Tensor<2, Int>, lengths: &[usize]) -> Tensor<2> {
        self.forward_tags(tokens, lengths)
    }

    fn tag_pairs(
        &self,
        tokens: Tensor<2, Int>,
        segments: Tensor<2, Int>,
        lengths: &[usize],
    ) -> (Tensor<2>, Tensor<2>) {
        self.forward_pairs(tokens, segments, lengths)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::SeededInit;
    use crate::test_util::{count_params, padded_tokens};
    use scalelab_spec::family::Shape;
    use scalelab_spec::family::encoder::*;

    /// An encoder shape with two heads, three classes, no dropout.
    fn shape(vocab: usize, ctx: usize, d_model: usize, n_layers: usize) -> EncoderConfig {
        EncoderConfig {
            vocab,
            ctx,
            d_model,
            n_layers,
            n_heads: 2,
            classes: 3,
            dropout: 0.0,
            per_token: false,
            causal: false,
            segments: false,
            next_sentence: false,
        }
    }

    /// Next-sentence pre-training's encoder: segments and a next-sentence head add 2·d
    /// embedding and 2·d + 2 other parameters, drawn after the rest (which stay as they were);
    /// a single sentence is segment 0, and the segments of a pair change what it computes.
    #[test]
    fn segments_and_the_next_sentence_head_add_what_they_count() {
        let device = Device::default();
        let plain = shape(9, 8, 8, 2);
        let pairs = EncoderConfig {
            segments: true,
            next_sentence: true,
            per_token: true,
            ..plain.clone()
        };
        let m = Encoder::init(&pairs, &mut SeededInit::new(5), &device);
        let counts = pairs.param_counts();
        assert_eq!(count_params(&m), counts.total);
        let base = plain.param_counts();
        assert_eq!(counts.embedding, base.embedding + 2 * 8);
        assert_eq!(counts.non_embedding, base.non_embedding + 2 * 8 + 2);
        let without = Encoder::init(&plain, &mut SeededInit::new(5), &device);
        let values = |t: Tensor<2>| t.into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(
            values(m.token_embedding.weight.val()),
            values(without.token_embedding.weight.val())
        );
        let tokens = || padded_tokens(&[&[3, 1, 4, 1]], 8, 5, &device);
        let zeros = Tensor::<2, Int>::zeros([1, 8], &device);
        let (tags, next) = m.forward_pairs(tokens(), zeros, &[4]);
        assert_eq!((tags.dims(), next.dims()), ([4, 3], [1, 2]));
        let single = values(m.forward_tags(tokens(), &[4]));
        let as_pair = values(tags);
        assert!(
            single
                .iter()
                .zip(&as_pair)
                .all(|(x, y)| (x - y).abs() < 1e-6)
        );
        let split = Tensor::<2, Int>::from_data(
            TensorData::new(vec![0i64, 0, 1, 1, 0, 0, 0, 0], [1, 8]),
            &device,
        );
        let (tags, _) = m.forward_pairs(tokens(), split, &[4]);
        let differs = values(tags)
            .iter()
            .zip(&single)
            .any(|(x, y)| (x - y).abs() > 1e-4);
        assert!(differs, "segment 1 must change the states");
    }

    #[test]
    fn counts_match_the_built_model_and_the_gpt() {
        let device = Device::default();
        let m = Encoder::init(&shape(13, 6, 8, 2), &mut SeededInit::new(0), &device);
        assert_eq!(count_params(&m), encoder_param_counts(13, 6, 8, 2, 3).total);
        // The blocks and final norm are the GPT's: an encoder of GPT-2 small's shape without
        // its head has GPT-2 small's 85,056,000 non-embedding parameters plus a classifier.
        let c = encoder_param_counts(50257, 1024, 768, 12, 2);
        assert_eq!(c.non_embedding, 85_056_000 + 768 * 2 + 2);
        assert_eq!(c.embedding, 50257 * 768 + 1024 * 768);
    }

    #[test]
    fn padding_does_not_change_the_result() {
        let device = Device::default();
        let m = Encoder::init(&shape(9, 8, 8, 2), &mut SeededInit::new(2), &device);
        let short = m.forward(padded_tokens(&[&[3, 1, 4]], 3, 5, &device), &[3]);
        let padded = m.forward(padded_tokens(&[&[3, 1, 4]], 8, 5, &device), &[3]);
        let a = short.into_data().try_to_vec::<f32>().unwrap();
        let b = padded.into_data().try_to_vec::<f32>().unwrap();
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-5, "{a:?} vs {b:?}");
        }
        // Tagging: a row per real token, unchanged by padding.
        let short = m.forward_tags(padded_tokens(&[&[3, 1, 4]], 3, 5, &device), &[3]);
        let padded = m.forward_tags(padded_tokens(&[&[3, 1, 4]], 8, 5, &device), &[3]);
        assert_eq!(short.dims(), [3, 3]);
        let a = short.into_data().try_to_vec::<f32>().unwrap();
        let b = padded.into_data().try_to_vec::<f32>().unwrap();
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-5, "{a:?} vs {b:?}");
        }
    }

    /// The GPT classifier reads its last real token, which sees only what comes before it:
    /// a later token or padding changes nothing, and the class of a sentence is that of its
    /// last token's state.
    #[test]
    fn a_causal_classifier_reads_the_last_token_and_never_the_future() {
        let device = Device::default();
        let c = EncoderConfig {
            causal: true,
            ..shape(9, 8, 8, 2)
        };
        let m = Encoder::init(&c, &mut SeededInit::new(4), &device);
        let values = |t: Tensor<2>| t.into_data().try_to_vec::<f32>().unwrap();
        let three = values(m.forward(padded_tokens(&[&[3, 1, 4]], 8, 5, &device), &[3]));
        // The same sentence with a fourth token beyond its length: unchanged.
        let longer = padded_tokens(&[&[3, 1, 4, 7]], 8, 5, &device);
        let same = values(m.forward(longer.clone(), &[3]));
        for (x, y) in three.iter().zip(&same) {
            assert!((x - y).abs() < 1e-5, "{three:?} vs {same:?}");
        }
        // Its last token's tag logits are the sentence's class logits.
        let tags = values(m.forward_tags(padded_tokens(&[&[3, 1, 4]], 8, 5, &device), &[3]));
        for (x, y) in three.iter().zip(&tags[6..9]) {
            assert!((x - y).abs() < 1e-5, "{three:?} vs {tags:?}");
        }
        // Reading four tokens does change it.
        let four = values(m.forward(longer, &[4]));
        assert!(three.iter().zip(&four).any(|(x, y)| (x - y).abs() > 1e-4));
        assert_eq!(c.family(), scalelab_spec::Family::Gpt);
    }

    #[test]
    fn gradients_match_finite_differences() {
        let ids: Vec<f32> = [1, 5, 2, 7, 3, 0, 4, 6].iter().map(|&v| v as f32).collect();
        crate::test_util::gradient_check(
            |init, device| Encoder::init(&shape(8, 4, 4, 1), init, device),
            |model, x| {
                let [b, _, _, t] = x.dims();
                model.forward(x.reshape([b, t]).int(), &[4, 3])
            },
            ([2, 1, 1, 4], ids),
            6,
        );
    }
}
