//! A tokenized corpus split into training and validation streams, and the batches drawn
//! from them.
//!
//! The split is fixed by the corpus, the tokenizer and the validation fraction, never by the
//! training seed, so every run of a study is validated on the same text. The token stream is
//! cut into chunks of up to 8192 tokens, and a fixed permutation picks
//! `round(val_fraction × chunks)` of them (at least one) for validation: held-out text comes
//! from all over the corpus, not only from its last book.
//!
//! Training batch `k` of a run is drawn from a ChaCha8 generator keyed by `(seed, k)`: it
//! depends on nothing else, so a resumed run draws exactly the batches it would have drawn.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use scalelab_spec::DataConfig;

use crate::{Corpus, DataError, Tokenizer};

/// Largest chunk of the split, in tokens.
const CHUNK_TOKENS: usize = 8192;
/// Seed of the split permutation; a constant so that the split never moves.
const SPLIT_SEED: u64 = 0x5ca1_ab1e;

/// Input and target token ids of `batch` sequences of `ctx` tokens, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// `[batch, ctx]` inputs.
    pub inputs: Vec<i64>,
    /// `[batch, ctx]` next tokens.
    pub targets: Vec<i64>,
    /// Number of sequences.
    pub batch: usize,
    /// Sequence length.
    pub ctx: usize,
    /// First position whose target counts in the loss (0: every position; a task's answer
    /// batches count only the answer).
    pub loss_start: usize,
}

/// A tokenized, split corpus.
pub struct TokenData {
    /// Name of the corpus.
    pub corpus_name: String,
    /// The tokenizer that produced the streams.
    pub tokenizer: Tokenizer,
    /// Training tokens.
    pub train: Vec<u32>,
    /// Validation tokens.
    pub val: Vec<u32>,
    /// UTF-8 bytes per token in the validation stream (1 for the byte tokenizer), to turn
    /// nats per token into bits per byte.
    pub val_bytes_per_token: f64,
}

impl TokenData {
    /// Tokenizes and splits a corpus. `ctx_len` is checked against the split sizes.
    pub fn prepare(
        corpus: &Corpus,
        config: &DataConfig,
        ctx_len: usize,
    ) -> Result<Self, DataError> {
        // A BPE learns from the documents; held-out chunks are a small share of the text,
        // so training it on whole documents leaks at most a few merges.
        let docs: Vec<&str> = corpus.documents.iter().map(String::as_str).collect();
        let tokenizer = Tokenizer::build(&config.tokenizer, &docs)?;
        let separator = tokenizer.encode("\n\n")?;
        let mut stream = Vec::new();
        for doc in &corpus.documents {
            stream.extend(tokenizer.encode(doc)?);
            stream.extend(&separator);
        }
        let (train, val) = split(&stream, config.val_fraction, ctx_len);
        for (name, split) in [("train", &train), ("validation", &val)] {
            if split.len() < ctx_len + 1 {
                return Err(DataError::TooSmall {
                    name: corpus.name.clone(),
                    split: name,
                    tokens: split.len(),
                    needed: ctx_len + 1,
                });
            }
        }
        let val_bytes_per_token = match tokenizer {
            Tokenizer::Byte => 1.0,
            Tokenizer::Bpe(_) => tokenizer.decode(&val)?.len() as f64 / val.len() as f64,
        };
        Ok(Self {
            corpus_name: corpus.name.clone(),
            tokenizer,
            train,
            val,
            val_bytes_per_token,
        })
    }

    /// Training batch number `index` of a run with `seed`: `batch` windows at uniform offsets.
    pub fn train_batch(&self, seed: u64, index: u64, batch: usize, ctx: usize) -> Batch {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(index);
        let last_start = self.train.len() - ctx - 1;
        let starts: Vec<usize> = (0..batch)
            .map(|_| rng.random_range(0..=last_start))
            .collect();
        windows(&self.train, &starts, ctx)
    }

    /// The fixed validation sample: about `tokens` tokens in windows of `ctx`, evenly spaced
    /// over the validation stream, grouped into batches of at most `batch` windows.
    pub fn val_batches(&self, tokens: u64, batch: usize, ctx: usize) -> Vec<Batch> {
        self.val_starts(tokens, ctx)
            .chunks(batch)
            .map(|s| windows(&self.val, s, ctx))
            .collect()
    }

    /// The windows of [`val_batches`](Self::val_batches), each `ctx + 1` tokens (inputs and
    /// the next token), for scoring a trained model on the sample its run was scored on.
    pub fn val_windows(&self, tokens: u64, ctx: usize) -> Vec<&[u32]> {
        (self.val_starts(tokens, ctx).into_iter())
            .map(|s| &self.val[s..s + ctx + 1])
            .collect()
    }

    fn val_starts(&self, tokens: u64, ctx: usize) -> Vec<usize> {
        let last_start = self.val.len() - ctx - 1;
        let max_windows = self.val.len() / (ctx + 1);
        let n = (tokens as usize).div_ceil(ctx).clamp(1, max_windows.max(1));
        (0..n)
            .map(|i| if n == 1 { 0 } else { i * last_start / (n - 1) })
            .collect()
    }
}

fn windows(stream: &[u32], starts: &[usize], ctx: usize) -> Batch {
    let mut inputs = Vec::with_capacity(starts.len() * ctx);
    let mut targets = Vec::with_capacity(starts.len() * ctx);
    for &s in starts {
        inputs.extend(stream[s..s + ctx].iter().map(|&t| t as i64));
        targets.extend(stream[s + 1..s + ctx + 1].iter().map(|&t| t as i64));
    }
    Batch {
        inputs,
        targets,
        batch: starts.len(),
        ctx,
        loss_start: 0,
    }
}

/// Splits a stream into (train, validation) by whole chunks; see the module comment.
fn split(stream: &[u32], val_fraction: f64, ctx_len: usize) -> (Vec<u32>, Vec<u32>) {
    // Small corpora get smaller chunks (at least 20 of them), but never shorter than one
    // sequence, so both splits can hold a window.
    let chunk = (stream.len() / 20).clamp(ctx_len + 1, CHUNK_TOKENS.max(ctx_len + 1));
    let chunks: Vec<&[u32]> = stream.chunks(chunk).collect();
    let n_val = ((chunks.len() as f64 * val_fraction).round() as usize)
        .clamp(1, chunks.len().saturating_sub(1).max(1));
    let mut order: Vec<usize> = (0..chunks.len()).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(SPLIT_SEED));
    let mut is_val = vec![false; chunks.len()];
    for &i in &order[..n_val] {
        is_val[i] = true;
    }
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for (i, c) in chunks.iter().enumerate() {
        if is_val[i] {
            val.extend_from_slice(c)
        } else {
            train.extend_from_slice(c)
        }
    }
    (train, val)
}

#[cfg(test)]
mod tests {
    use super::*;
    use scalelab_spec::{CorpusSource, TokenizerSpec};

    fn config() -> DataConfig {
        DataConfig {
            source: CorpusSource::Embedded,
            tokenizer: TokenizerSpec::Byte,
            val_fraction: 0.1,
        }
    }

    #[test]
    fn split_is_disjoint_complete_and_fixed() {
        let stream: Vec<u32> = (0..100_000).collect();
        let (train, val) = split(&stream, 0.1, 64);
        assert_eq!(train.len() + val.len(), stream.len());
        let mut all: Vec<u32> = train.iter().chain(&val).copied().collect();
        all.sort();
        assert_eq!(all, stream, "every token in exactly one split");
        // 20 chunks of 5000: two of them held out.
        assert_eq!(val.len(), 10_000);
        assert_eq!(split(&stream, 0.1, 64), (train, val));
    }

    #[test]
    fn batches_are_seeded_windows_with_shifted_targets() {
        let corpus = Corpus {
            name: "test".into(),
            documents: vec!["abcdefghijklmnopqrstuvwxyz".repeat(400)],
        };
        let data = TokenData::prepare(&corpus, &config(), 16).unwrap();
        let b = data.train_batch(1, 5, 4, 16);
        assert_eq!((b.inputs.len(), b.targets.len()), (64, 64));
        assert_eq!(
            b.inputs[1..16],
            b.targets[0..15],
            "targets are inputs shifted by one"
        );
        assert_eq!(b, data.train_batch(1, 5, 4, 16));
        assert_ne!(b, data.train_batch(1, 6, 4, 16));
        assert_ne!(b, data.train_batch(2, 5, 4, 16));

        let val = data.val_batches(100, 3, 16);
        let windows: usize = val.iter().map(|b| b.batch).sum();
        assert_eq!(windows, 7, "ceil(100 / 16) windows");
        assert_eq!(val, data.val_batches(100, 3, 16));
    }

    #[test]
    fn tiny_corpus_is_rejected_with_sizes() {
        let corpus = Corpus {
            name: "tiny".into(),
            documents: vec!["just a few words".into()],
        };
        let err = TokenData::prepare(&corpus, &config(), 256)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("too small") && err.contains("257"), "{err}");
    }
}
