//! Next-sentence prediction examples (BERT, Devlin et al. 2019), with masked tokens: pairs of
//! a text set's training sentences, in the order the set keeps them.
//!
//! Example `i` pairs sentence `i` (segment 0) with a second sentence (segment 1): with
//! probability one half the sentence that follows it in the set ("is next", label 1), else a
//! sentence drawn uniformly from the others, neither `i` nor its successor ("not next",
//! label 0). The last sentence has no successor and is always paired with a random one. As
//! Google's BERT code does (`truncate_seq_pair`), a pair longer than the context loses tokens
//! from the end of its longer sentence, one at a time, until it fits; the pair is then masked
//! as one sequence, as [`crate::mlm`] masks a sentence. Training batches draw pairs and masks
//! afresh every step; evaluation batches draw theirs from the examples' indices.
//!
//! A set keeps the order of its source file (the splits are sorted subsets), so in a set with
//! sentences held out for testing or validation, "the sentence that follows" is the next one
//! the set kept: in the POS corpus's training split (72% of the sentences) mostly the next
//! sentence of the same document, sometimes one or two further on.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::labelled::LabelledBatch;
use crate::mlm::{MlmBatch, SentenceSet, SentenceTask, mask_batch};

/// Share of pairs whose second sentence is the next one.
pub const NEXT_SHARE: f64 = 0.5;

/// One sentence pair, as the model reads it before masking.
#[derive(Debug, Clone, PartialEq)]
pub struct Pair {
    /// The first sentence's tokens, then the second's, truncated to fit.
    pub tokens: Vec<u32>,
    /// How many of `tokens` are the first sentence's (segment 0); the rest are segment 1.
    pub first: usize,
    /// Whether the second sentence is the one that follows the first.
    pub is_next: bool,
}

/// `first` then `second` in at most `ctx` tokens: while too long, the longer loses its last
/// token (the first, when they are as long).
pub fn truncate_pair(first: &[u32], second: &[u32], ctx: usize) -> Pair {
    let (mut a, mut b) = (first.len(), second.len());
    while a + b > ctx {
        if a >= b {
            a -= 1;
        } else {
            b -= 1;
        }
    }
    let mut tokens = first[..a].to_vec();
    tokens.extend_from_slice(&second[..b]);
    Pair {
        tokens,
        first: a,
        is_next: false,
    }
}

/// Example `i` of `sentences` (see the module docs), drawn with `rng`, in at most `ctx` tokens.
pub fn draw_pair(sentences: &[Vec<u32>], i: usize, ctx: usize, rng: &mut impl Rng) -> Pair {
    let n = sentences.len();
    let has_next = i + 1 < n;
    // Sentences other than `i` and its successor.
    let others = n.saturating_sub(1 + usize::from(has_next));
    let is_next = has_next && (others == 0 || rng.random::<f64>() < NEXT_SHARE);
    let j = if is_next {
        Some(i + 1)
    } else if others > 0 {
        // The k-th sentence skipping `i` and `i + 1`.
        let k = rng.random_range(0..others);
        Some(if k < i {
            k
        } else {
            k + 1 + usize::from(has_next)
        })
    } else {
        None
    };
    let empty = Vec::new();
    let second = j.map_or(&empty, |j| &sentences[j]);
    Pair {
        is_next,
        ..truncate_pair(&sentences[i], second, ctx)
    }
}

/// Sentences drawn into pairs, then masked (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct PairMasking;

/// A text set's sentences, in order, as sentence-pair examples for masked-language-model and
/// next-sentence pre-training.
pub type PairSet = SentenceSet<PairMasking>;

impl SentenceTask for PairMasking {
    type Batch = PairBatch;
    const TRAIN_SALT: u64 = 0x6e73_705f_7472_6e00;
    const EVAL_SALT: u64 = 0x6e73_705f_6576_6c00;

    fn batch_of(set: &PairSet, rows: &[usize], rng: &mut ChaCha8Rng) -> PairBatch {
        let ctx = set.ctx;
        let pairs: Vec<Pair> = (rows.iter())
            .map(|&i| draw_pair(&set.tokens, i, ctx, rng))
            .collect();
        let tokens = pairs.iter().map(|p| p.tokens.as_slice());
        let masked = mask_batch(tokens, ctx, set.pad, set.vocab, rng);
        let segments = (pairs.iter())
            .flat_map(|p| (0..ctx).map(move |s| i64::from(s >= p.first && s < p.tokens.len())))
            .collect();
        let next = pairs.iter().map(|p| i64::from(p.is_next)).collect();
        PairBatch {
            masked,
            segments,
            next,
        }
    }
}

/// A batch of masked sentence pairs.
#[derive(Debug, Clone, PartialEq)]
pub struct PairBatch {
    /// The pairs, masked; their labels are the masked tokens.
    pub masked: MlmBatch,
    /// `[batch, ctx]` segment of every position: 1 in the second sentence, else 0.
    pub segments: Vec<i64>,
    /// Whether each pair's second sentence is the next one (1) or not (0).
    pub next: Vec<i64>,
}

impl LabelledBatch for PairBatch {
    fn labels(&self) -> &[i64] {
        &self.masked.targets
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labelled::{Draw, LabelledSet};
    use rand::SeedableRng;
    use scalelab_spec::Augmentation;

    #[test]
    fn pairs_are_cut_from_the_longer_sentence_to_fit() {
        // 5 + 3 tokens in 6: the first, the longer, loses two (5 → 4 → 3); 3 + 3 fits.
        let p = truncate_pair(&[1, 2, 3, 4, 5], &[6, 7, 8], 6);
        assert_eq!(p.tokens, [1, 2, 3, 6, 7, 8]);
        assert_eq!(p.first, 3);
        // 2 + 6 in 5: the second loses three.
        let p = truncate_pair(&[1, 2], &[3, 4, 5, 6, 7, 8], 5);
        assert_eq!(p.tokens, [1, 2, 3, 4, 5]);
        assert_eq!(p.first, 2);
        // Equal lengths: the first gives way first. 4 + 4 in 7 → 3 + 4.
        let p = truncate_pair(&[1, 2, 3, 4], &[5, 6, 7, 8], 7);
        assert_eq!((p.tokens.len(), p.first), (7, 3));
        // A pair that fits is whole.
        assert_eq!(truncate_pair(&[1], &[2], 8).tokens, [1, 2]);
    }

    #[test]
    fn half_the_pairs_are_next_and_the_others_never_are() {
        // Sentence k is [k, k]: the second sentence's first token says which it is.
        let sentences: Vec<Vec<u32>> = (0..10).map(|k| vec![k, k]).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let (mut next, mut total) = (0, 0);
        let mut seen = [0usize; 10];
        for _ in 0..4000 {
            let p = draw_pair(&sentences, 4, 8, &mut rng);
            assert_eq!((p.first, &p.tokens[..2]), (2, &[4, 4][..]));
            let second = p.tokens[2] as usize;
            seen[second] += 1;
            if p.is_next {
                assert_eq!(second, 5);
                next += 1;
            } else {
                assert!(second != 4 && second != 5, "{second} drawn as not next");
            }
            total += 1;
        }
        let share = next as f64 / total as f64;
        assert!((share - 0.5).abs() < 0.03, "{share}");
        // The 2,000 or so "not next" pairs spread over the 8 other sentences.
        assert!(
            seen.iter()
                .enumerate()
                .all(|(k, &c)| k == 4 || k == 5 || c > 150)
        );
        // The last sentence is never "next" and never paired with itself.
        for _ in 0..200 {
            let p = draw_pair(&sentences, 9, 8, &mut rng);
            assert!(!p.is_next && p.tokens[2] != 9);
        }
        // Two sentences: the first's only partner is its successor, the second's the first.
        let two = [vec![1], vec![2]];
        assert!(draw_pair(&two, 0, 4, &mut rng).is_next);
        let p = draw_pair(&two, 1, 4, &mut rng);
        assert_eq!((p.tokens, p.is_next), (vec![2, 1], false));
        // One sentence has no partner.
        assert_eq!(draw_pair(&[vec![3, 4]], 0, 4, &mut rng).tokens, [3, 4]);
    }

    #[test]
    fn batches_mark_segments_and_mask_the_pair() {
        let set = PairSet::new(vec![vec![1, 2, 3], vec![4, 5], vec![6, 7, 8, 9]], 8, 20, 21);
        let b = set.batch(&[0, 1]);
        assert_eq!(b.next.len(), 2);
        assert_eq!(b.segments.len(), 2 * 8);
        for (row, &len) in b.masked.lengths.iter().enumerate() {
            let segments = &b.segments[row * 8..(row + 1) * 8];
            let first = [3, 2][row];
            assert!(segments[..first].iter().all(|&s| s == 0));
            assert!(segments[first..len].iter().all(|&s| s == 1));
            assert!(
                segments[len..].iter().all(|&s| s == 0),
                "padding is segment 0"
            );
        }
        // Sentence 0 with sentence 1 (5 tokens, one masked) or sentence 2 (7 tokens, one).
        let expect = if b.next[0] == 1 { 5 } else { 7 };
        assert_eq!(b.masked.lengths[0], expect);
        assert_eq!(
            b.masked.positions.iter().filter(|&&p| p < expect).count(),
            1
        );
        // Scored alike every time; trained on fresh draws.
        assert_eq!(set.batch(&[0, 1]), b);
        let draws: Vec<PairBatch> = (0..8)
            .map(|i| set.train_batch(Draw::new(1, i, 3), &Augmentation::default()))
            .collect();
        assert!(draws.iter().any(|d| d.next != draws[0].next));
    }
}
