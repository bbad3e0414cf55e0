//! Text data for scalelab: corpora a user brings (a text file, a directory of text files,
//! JSON Lines) or the embedded default corpus, tokenizers (byte-level, or BPE trained or loaded
//! with Hugging Face `tokenizers`), a deterministic train/validation split, and seeded batches.
//!
//! Everything here is plain Rust on the host: no tensors. Batches are vectors of token ids
//! that the training crate turns into tensors.

pub mod corpus;
pub mod error;
pub mod folds;
pub mod images;
pub mod labelled;
pub mod mlm;
pub mod nsp;
pub mod tagged;
pub mod tasks;
pub mod text_sets;
pub mod tokenizer;
pub mod tokens;

pub use corpus::{Corpus, load_corpus};
pub use error::DataError;
pub use folds::{fold_indices, stratified_folds, stratified_split, stratified_subset};
pub use images::{
    ImageBatch, ImageSet, ImageSplits, classification_split, load_digits, load_images,
};
pub use labelled::{Draw, LabelledBatch, LabelledSet, batch_indices};
pub use mlm::{Masked, MaskedSet, Masking, MlmBatch, SentenceSet, SentenceTask, mask_sentence};
pub use nsp::{Pair, PairBatch, PairMasking, PairSet, draw_pair, truncate_pair};
pub use tagged::{TaggedBatch, TaggedSet, TaggedSplits, load_pos};
pub use tasks::{Example, TaskData, TrainingData, answer_batch, edit_distance};
pub use text_sets::{TextSet, TextSplits, TokenBatch, load_pang_lee, load_sentiment};
pub use tokenizer::Tokenizer;
pub use tokens::{Batch, TokenData};
