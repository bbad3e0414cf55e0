//! Masked-language-model examples (BERT, Devlin et al. 2019): the sentences of a text data
//! set, their labels ignored, with tokens hidden to be predicted from both sides.
//!
//! As Google's BERT code does (`create_pretraining_data.py`): in a sentence of `n` tokens,
//! `max(1, round(0.15·n))` positions are chosen without replacement; each is replaced by the
//! mask token with probability 0.8, by a uniformly random token with probability 0.1, and
//! left as it is with probability 0.1; the loss is taken at the chosen positions only, against
//! the original tokens. The mask token is the data set's padding id: the encoder masks
//! padding by length, not by id, so inside a sentence the id is free for this use, and a child
//! classifier keeps the same vocabulary (the same embedding shape). Training batches draw
//! fresh masks every step (dynamic masking, as RoBERTa does); evaluation batches draw theirs
//! from the examples' indices, so a model is always scored on the same masks.

use std::marker::PhantomData;

use rand::Rng;
use rand::SeedableRng;
use rand::seq::index::sample;
use rand_chacha::ChaCha8Rng;
use scalelab_spec::Augmentation;

use crate::labelled::{Draw, LabelledBatch, LabelledSet, batch_indices};
use crate::text_sets::TextSet;

/// Share of a sentence's tokens chosen for prediction.
pub const MLM_FRACTION: f64 = 0.15;
/// Of the chosen tokens, the share replaced by the mask token.
pub const MLM_MASK_SHARE: f64 = 0.8;
/// Of the chosen tokens, the share replaced by a random token (the rest stay as they are).
pub const MLM_RANDOM_SHARE: f64 = 0.1;

/// One sentence, masked.
#[derive(Debug, Clone, PartialEq)]
pub struct Masked {
    /// The sentence as the model reads it.
    pub inputs: Vec<u32>,
    /// The chosen positions, ascending.
    pub positions: Vec<usize>,
    /// The original token at each chosen position.
    pub targets: Vec<u32>,
}

/// Masks `tokens` (see the module docs): chosen tokens become `mask` (80%), a random id
/// below `vocab` other than `mask` (10%), or stay (10%). An empty sentence has nothing to
/// choose.
pub fn mask_sentence(tokens: &[u32], mask: u32, vocab: u32, rng: &mut impl Rng) -> Masked {
    let n = tokens.len();
    let count = ((MLM_FRACTION * n as f64).round() as usize).max(1).min(n);
    let mut positions = sample(rng, n, count).into_vec();
    positions.sort_unstable();
    let mut inputs = tokens.to_vec();
    for &p in &positions {
        let u: f64 = rng.random();
        if u < MLM_MASK_SHARE {
            inputs[p] = mask;
        } else if u < MLM_MASK_SHARE + MLM_RANDOM_SHARE {
            // Uniform over the ids but the mask's.
            let others = if mask < vocab { vocab - 1 } else { vocab };
            let id = rng.random_range(0..others.max(1));
            inputs[p] = if mask < vocab && id >= mask {
                id + 1
            } else {
                id
            };
        }
    }
    let targets = positions.iter().map(|&p| tokens[p]).collect();
    Masked {
        inputs,
        positions,
        targets,
    }
}

/// The sentences of a text set, labels dropped, as self-supervised examples whose batches
/// the task `T` draws: [`Masking`] (masked sentences, [`MaskedSet`]) or
/// [`crate::nsp::PairMasking`] (masked sentence pairs, [`crate::nsp::PairSet`]). Every token
/// id is a class, so a model predicting them has `vocab` outputs (the padding id is never a
/// target).
#[derive(Debug, Clone, PartialEq)]
pub struct SentenceSet<T> {
    /// Token ids of every sentence, at most `ctx` each, in the set's order.
    pub tokens: Vec<Vec<u32>>,
    /// Longest sequence.
    pub ctx: usize,
    /// The padding id, also the mask token.
    pub pad: u32,
    /// Vocabulary size, padding included.
    pub vocab: usize,
    /// Class 0 for every sentence (the labels are not used; splits are not stratified).
    pub sentence_classes: Vec<u32>,
    task: PhantomData<T>,
}

/// How a [`SentenceSet`] draws its batches.
pub trait SentenceTask: Sized {
    /// What a batch is.
    type Batch: LabelledBatch;
    /// Salt of training draws.
    const TRAIN_SALT: u64;
    /// Salt of evaluation draws.
    const EVAL_SALT: u64;
    /// The batch of sentences `rows` of `set`, drawn with `rng`.
    fn batch_of(set: &SentenceSet<Self>, rows: &[usize], rng: &mut ChaCha8Rng) -> Self::Batch;
}

/// Sentences masked one by one (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct Masking;

/// A text set's sentences as masked-language-model examples.
pub type MaskedSet = SentenceSet<Masking>;

impl<T> SentenceSet<T> {
    /// `tokens` (sentences of at most `ctx` ids below `vocab`, padded with `pad`).
    pub fn new(tokens: Vec<Vec<u32>>, ctx: usize, pad: u32, vocab: usize) -> Self {
        SentenceSet {
            sentence_classes: vec![0; tokens.len()],
            tokens,
            ctx,
            pad,
            vocab,
            task: PhantomData,
        }
    }

    /// The sentences of `set` (of a vocabulary of `vocab` ids), labels dropped.
    pub fn of(set: &TextSet, vocab: usize) -> Self {
        Self::new(set.tokens.clone(), set.ctx, set.pad, vocab)
    }
}

impl SentenceTask for Masking {
    type Batch = MlmBatch;
    const TRAIN_SALT: u64 = 0x6d6c_6d5e;
    const EVAL_SALT: u64 = 0x6d6c_6d65_7661_6c00;

    fn batch_of(set: &MaskedSet, rows: &[usize], rng: &mut ChaCha8Rng) -> MlmBatch {
        let sentences = rows.iter().map(|&i| set.tokens[i].as_slice());
        mask_batch(sentences, set.ctx, set.pad, set.vocab, rng)
    }
}

/// `sentences`, each cut to `ctx` tokens and masked (see [`mask_sentence`]), padded with `pad`
/// into one batch.
pub(crate) fn mask_batch<'a>(
    sentences: impl ExactSizeIterator<Item = &'a [u32]>,
    ctx: usize,
    pad: u32,
    vocab: usize,
    rng: &mut impl Rng,
) -> MlmBatch {
    let batch = sentences.len();
    let mut ids = Vec::with_capacity(batch * ctx);
    let (mut lengths, mut positions, mut targets) = (Vec::new(), Vec::new(), Vec::new());
    let mut offset = 0;
    for sentence in sentences {
        let row = &sentence[..sentence.len().min(ctx)];
        let masked = mask_sentence(row, pad, vocab as u32, rng);
        ids.extend(masked.inputs.iter().map(|&t| i64::from(t)));
        ids.extend(std::iter::repeat_n(
            i64::from(pad),
            ctx - masked.inputs.len(),
        ));
        positions.extend(masked.positions.iter().map(|&p| offset + p));
        targets.extend(masked.targets.iter().map(|&t| i64::from(t)));
        let n = row.len().max(1);
        lengths.push(n);
        offset += n;
    }
    MlmBatch {
        ids,
        lengths,
        positions,
        targets,
        batch,
        ctx,
    }
}

/// A batch of masked sentences.
#[derive(Debug, Clone, PartialEq)]
pub struct MlmBatch {
    /// `[batch, ctx]` token ids as the model reads them, padded.
    pub ids: Vec<i64>,
    /// Real tokens of each sentence (at least 1).
    pub lengths: Vec<usize>,
    /// The chosen positions, as indices into the real tokens of the batch numbered sentence
    /// by sentence (`0..Σ lengths`), ascending.
    pub positions: Vec<usize>,
    /// The original token at each chosen position.
    pub targets: Vec<i64>,
    /// Sentences.
    pub batch: usize,
    /// Padded length.
    pub ctx: usize,
}

impl LabelledBatch for MlmBatch {
    fn labels(&self) -> &[i64] {
        &self.targets
    }
}

impl<T: SentenceTask> LabelledSet for SentenceSet<T> {
    type Batch = T::Batch;

    fn labels(&self) -> &[u32] {
        &self.sentence_classes
    }

    fn n_classes(&self) -> usize {
        self.vocab
    }

    /// The sentences at `indices`, in that order.
    fn subset(&self, indices: &[usize]) -> Self {
        let tokens = indices.iter().map(|&i| self.tokens[i].clone()).collect();
        Self::new(tokens, self.ctx, self.pad, self.vocab)
    }

    /// Fresh masks (and pairs) every batch; augmentation does not apply to sentences.
    fn train_batch(&self, draw: Draw, _: &Augmentation) -> T::Batch {
        let mut rng = draw.rng(T::TRAIN_SALT);
        let rows = batch_indices(self.len(), draw.seed, draw.index, draw.size);
        T::batch_of(self, &rows, &mut rng)
    }

    /// Drawn from the first index, so the same examples are scored alike every time.
    fn batch(&self, indices: &[usize]) -> T::Batch {
        let first = indices.first().copied().unwrap_or(0) as u64;
        let mut rng = ChaCha8Rng::seed_from_u64(T::EVAL_SALT ^ first);
        T::batch_of(self, indices, &mut rng)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifteen_percent_are_chosen_and_split_eighty_ten_ten() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        // A 20-token sentence of ids 10..30: round(0.15 × 20) = 3 positions exactly.
        let sentence: Vec<u32> = (10..30).collect();
        let m = mask_sentence(&sentence, 99, 50, &mut rng);
        assert_eq!(m.positions.len(), 3);
        assert!(m.positions.windows(2).all(|w| w[0] < w[1]));
        for (i, &t) in sentence.iter().enumerate() {
            match m.positions.iter().position(|&p| p == i) {
                Some(k) => assert_eq!(m.targets[k], t),
                None => assert_eq!(m.inputs[i], t, "unchosen tokens stay"),
            }
        }
        // Short sentences still predict one token; an empty one none.
        assert_eq!(mask_sentence(&[5, 6], 99, 50, &mut rng).positions.len(), 1);
        assert_eq!(
            mask_sentence(&[5, 6, 7], 99, 50, &mut rng).positions.len(),
            1
        );
        assert!(mask_sentence(&[], 99, 50, &mut rng).positions.is_empty());
        // A random replacement is never the mask itself (byte-level sets mask with byte 0).
        for _ in 0..200 {
            let m = mask_sentence(&[7; 10], 0, 3, &mut rng);
            let random = m
                .positions
                .iter()
                .filter(|&&p| m.inputs[p] != 0 && m.inputs[p] != 7);
            assert!(random.clone().all(|&p| (1..3).contains(&m.inputs[p])));
        }
        // Over 200,000 chosen tokens the shares are 80/10/10 (a random id can equal the
        // original: 1 in 50 of the 10%, so "kept" is 10% + 0.2%).
        let long: Vec<u32> = (0..1000).map(|i| i % 50).collect();
        let (mut chosen, mut masked, mut kept, mut random) = (0, 0, 0, 0);
        for _ in 0..1334 {
            let m = mask_sentence(&long, 99, 50, &mut rng);
            assert_eq!(m.positions.len(), 150);
            for (&p, &t) in m.positions.iter().zip(&m.targets) {
                chosen += 1;
                match m.inputs[p] {
                    99 => masked += 1,
                    x if x == t => kept += 1,
                    _ => random += 1,
                }
            }
        }
        let share = |k: usize| k as f64 / chosen as f64;
        assert!((share(masked) - 0.8).abs() < 0.005, "{}", share(masked));
        assert!((share(kept) - 0.102).abs() < 0.005, "{}", share(kept));
        assert!((share(random) - 0.098).abs() < 0.005, "{}", share(random));
    }

    #[test]
    fn batches_number_their_positions_across_sentences_and_score_on_fixed_masks() {
        let tokens = vec![(0..20).collect(), vec![3, 4], (0..40).collect()];
        let set = MaskedSet::new(tokens, 32, 60, 61);
        assert_eq!(set.n_classes(), 61);
        let b = set.batch(&[0, 1, 2]);
        assert_eq!(b.lengths, [20, 2, 32]);
        // 3 + 1 + round(0.15 × 32) = 5 positions; those of sentence 2 start after 22 tokens.
        assert_eq!(b.positions.len(), 3 + 1 + 5);
        assert!(b.positions[3] >= 20 && b.positions[3] < 22);
        assert!(b.positions[4..].iter().all(|&p| (22..54).contains(&p)));
        assert_eq!(b.ids.len(), 3 * 32);
        // The same examples get the same masks; training batches draw fresh ones.
        assert_eq!(set.batch(&[0, 1, 2]), b);
        let draw = |index| set.train_batch(Draw::new(7, index, 3), &Augmentation::default());
        assert_eq!(draw(0), draw(0));
        assert_ne!(draw(0).positions, draw(1).positions);
    }
}
