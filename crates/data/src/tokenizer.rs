//! Tokenizers: one token per byte (vocabulary 256, the default), or byte-level BPE from the
//! Hugging Face `tokenizers` crate, trained on the training text or loaded from a
//! `tokenizer.json`.

use std::path::Path;

use scalelab_spec::TokenizerSpec;
use tokenizers::models::TrainerWrapper;
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;

use crate::DataError;

/// Turns text into token ids and back.
pub enum Tokenizer {
    /// UTF-8 bytes as tokens.
    Byte,
    /// A Hugging Face tokenizer.
    Bpe(Box<tokenizers::Tokenizer>),
}

impl Tokenizer {
    /// Builds the tokenizer the spec asks for; a BPE is trained on `training_text`.
    pub fn build(spec: &TokenizerSpec, training_text: &[&str]) -> Result<Self, DataError> {
        match spec {
            TokenizerSpec::Byte => Ok(Self::Byte),
            TokenizerSpec::BpeFile { path } => {
                if !Path::new(path).exists() {
                    return Err(DataError::NotFound {
                        path: path.into(),
                        hint: "give the path of a Hugging Face tokenizer.json, or set `data.tokenizer = \"bpe\"` to train one".into(),
                    });
                }
                let tokenizer = tokenizers::Tokenizer::from_file(path)
                    .map_err(|e| DataError::tokenizer(format!("loading {path}"), e))?;
                Ok(Self::Bpe(Box::new(tokenizer)))
            }
            TokenizerSpec::BpeTrain { vocab_size } => {
                let mut trainer: TrainerWrapper = BpeTrainerBuilder::new()
                    .vocab_size(*vocab_size)
                    .min_frequency(2)
                    .show_progress(false)
                    .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
                    .build()
                    .into();
                let mut tokenizer = tokenizers::Tokenizer::new(BPE::default());
                tokenizer
                    .with_pre_tokenizer(Some(ByteLevel::default().add_prefix_space(false)))
                    .with_decoder(Some(ByteLevel::default()));
                tokenizer
                    .train(&mut trainer, training_text.iter())
                    .map_err(|e| DataError::tokenizer("training BPE", e))?;
                Ok(Self::Bpe(Box::new(tokenizer)))
            }
        }
    }

    /// Number of distinct token ids.
    pub fn vocab_size(&self) -> usize {
        match self {
            Self::Byte => 256,
            Self::Bpe(t) => t.get_vocab_size(true),
        }
    }

    /// Token ids of `text`.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, DataError> {
        match self {
            Self::Byte => Ok(text.bytes().map(u32::from).collect()),
            Self::Bpe(t) => Ok(t
                .encode(text, false)
                .map_err(|e| DataError::tokenizer("encoding", e))?
                .get_ids()
                .to_vec()),
        }
    }

    /// Text of `ids` (invalid UTF-8 from a byte model is replaced, not an error).
    pub fn decode(&self, ids: &[u32]) -> Result<String, DataError> {
        match self {
            Self::Byte => {
                let bytes: Vec<u8> = ids.iter().map(|&i| i.min(255) as u8).collect();
                Ok(String::from_utf8_lossy(&bytes).into_owned())
            }
            Self::Bpe(t) => t
                .decode(ids, false)
                .map_err(|e| DataError::tokenizer("decoding", e)),
        }
    }

    /// The tokenizer as a Hugging Face `tokenizers` one, for other programs (`transformers`
    /// loads its `tokenizer.json`): a BPE as it is; the byte tokenizer as a byte-level BPE of
    /// the 256 byte symbols with no merges, each byte's id its value, so that it encodes every
    /// text to exactly its UTF-8 bytes.
    pub fn to_hf(&self) -> Result<tokenizers::Tokenizer, DataError> {
        match self {
            Self::Bpe(t) => Ok((**t).clone()),
            Self::Byte => {
                let vocab: tokenizers::models::bpe::Vocab = (0..=255u8)
                    .map(|b| (byte_symbol(b).to_string(), u32::from(b)))
                    .collect();
                let bpe = BPE::builder()
                    .vocab_and_merges(vocab, Vec::new())
                    .build()
                    .map_err(|e| DataError::tokenizer("building the byte vocabulary", e))?;
                let mut tokenizer = tokenizers::Tokenizer::new(bpe);
                tokenizer
                    .with_pre_tokenizer(Some(ByteLevel::default().add_prefix_space(false)))
                    .with_decoder(Some(ByteLevel::default()));
                Ok(tokenizer)
            }
        }
    }

    /// Saves a BPE as `tokenizer.json`; the byte tokenizer has nothing to save.
    pub fn save(&self, path: &Path) -> Result<(), DataError> {
        match self {
            Self::Byte => Ok(()),
            Self::Bpe(t) => t
                .save(path, false)
                .map_err(|e| DataError::tokenizer(format!("saving {}", path.display()), e)),
        }
    }
}

/// The printable character GPT-2's byte-level BPE writes byte `b` as (`bytes_to_unicode` of
/// OpenAI's `encoder.py`): printable Latin-1 bytes stand for themselves, the other 68 take the
/// code points from 256 on, in byte order.
fn byte_symbol(b: u8) -> char {
    let printable = |x: u8| matches!(x, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    if printable(b) {
        char::from(b)
    } else {
        let rank = (0..b).filter(|&x| !printable(x)).count() as u32;
        char::from_u32(256 + rank).unwrap_or('?')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The byte symbols are the byte-level pre-tokenizer's alphabet, and the Hugging Face form
    /// of the byte tokenizer encodes text to its UTF-8 bytes and decodes it back.
    #[test]
    fn byte_tokenizer_as_hugging_face_is_the_same_bytes() {
        let symbols: std::collections::HashSet<char> = (0..=255u8).map(byte_symbol).collect();
        let alphabet: std::collections::HashSet<char> = ByteLevel::alphabet().into_iter().collect();
        assert_eq!(symbols, alphabet);
        let hf = Tokenizer::Byte.to_hf().unwrap();
        let text = "Hé said:\n\t\"x ≥ 1\" \u{1F600}  end";
        let ids = hf.encode(text, false).unwrap().get_ids().to_vec();
        assert_eq!(ids, Tokenizer::Byte.encode(text).unwrap());
        assert_eq!(hf.decode(&ids, false).unwrap(), text);
        assert_eq!(hf.get_vocab_size(true), 256);
    }

    #[test]
    fn byte_tokenizer_is_utf8_bytes() {
        let t = Tokenizer::Byte;
        assert_eq!(t.encode("hé").unwrap(), vec![104, 195, 169]);
        assert_eq!(t.decode(&[104, 195, 169]).unwrap(), "hé");
        assert_eq!(t.vocab_size(), 256);
    }

    #[test]
    fn bpe_trains_round_trips_and_compresses() {
        let text = "the cat sat on the mat. the cat ate the rat. ".repeat(200);
        let t = Tokenizer::build(&TokenizerSpec::BpeTrain { vocab_size: 300 }, &[&text]).unwrap();
        assert!(
            t.vocab_size() <= 300 && t.vocab_size() > 256,
            "{}",
            t.vocab_size()
        );
        let sample = "the cat sat on the rat.";
        let ids = t.encode(sample).unwrap();
        assert_eq!(t.decode(&ids).unwrap(), sample);
        assert!(
            ids.len() < sample.len() / 2,
            "{} tokens for {} bytes",
            ids.len(),
            sample.len()
        );

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        t.save(&path).unwrap();
        let loaded = Tokenizer::build(
            &TokenizerSpec::BpeFile {
                path: path.display().to_string(),
            },
            &[],
        )
        .unwrap();
        assert_eq!(loaded.encode(sample).unwrap(), ids);
    }
}
