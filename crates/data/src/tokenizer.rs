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

#[cfg(test)]
mod tests {
    use super::*;

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
