//! Text sources for calibration and evaluation, with the perplexity protocol of
//! `data/SOURCES.md`: rows of `wiki.test.raw` (a line `" \n"` is an empty row), joined with
//! `"\n\n"`, tokenized once with no BOS/EOS.

use crate::EvalError;
use llm_compress_tensor_io::Tokenizer;
use std::path::{Path, PathBuf};

/// The repository's `data/` folder: `$LLM_COMPRESS_DATA`, else the one of this source tree.
pub fn data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("LLM_COMPRESS_DATA") {
        return PathBuf::from(d);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data")
}

/// A text corpus the tools know by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TextSource {
    /// WikiText-2 raw test split (evaluation).
    WikiText2Test,
    /// The first ~1 MB of the WikiText-2 raw train split (calibration).
    WikiText2Train,
    /// A plain text file, taken as is.
    File(PathBuf),
}

impl TextSource {
    /// The text, built with the protocol of `data/SOURCES.md` for the WikiText files.
    pub fn text(&self) -> Result<String, EvalError> {
        let read = |p: PathBuf| {
            std::fs::read_to_string(&p).map_err(|source| EvalError::Data { path: p, source })
        };
        Ok(match self {
            TextSource::WikiText2Test => {
                wikitext_rows_text(&read(data_dir().join("wikitext-2-raw/wiki.test.raw"))?)
            }
            TextSource::WikiText2Train => wikitext_rows_text(&read(
                data_dir().join("wikitext-2-raw/wiki.train.prefix1MB.raw"),
            )?),
            TextSource::File(p) => read(p.clone())?,
        })
    }

    /// Tokenize [`TextSource::text`] once, with no special tokens added.
    pub fn tokens(&self, tok: &Tokenizer) -> Result<Vec<u32>, EvalError> {
        Ok(tok.encode(&self.text()?))
    }
}

/// Rows of a raw WikiText file (each line keeps its `"\n"`; `" \n"` is the empty row) joined
/// with `"\n\n"`, as the SVD-LLM, Wanda and Basis Sharing evaluation code builds them.
pub fn wikitext_rows_text(raw: &str) -> String {
    let rows: Vec<&str> = raw
        .split_inclusive('\n')
        .map(|l| if l == " \n" { "" } else { l })
        .collect();
    rows.join("\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_joined_as_the_protocol_says() {
        let raw = " \n = Title = \n \n Text here .\n";
        assert_eq!(
            wikitext_rows_text(raw),
            "\n\n = Title = \n\n\n\n\n Text here .\n"
        );
    }

    #[test]
    fn wikitext_test_has_the_dataset_row_count() {
        let raw = std::fs::read_to_string(data_dir().join("wikitext-2-raw/wiki.test.raw")).unwrap();
        assert_eq!(raw.split_inclusive('\n').count(), 4358);
    }
}
