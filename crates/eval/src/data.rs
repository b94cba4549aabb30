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
    /// GSM8K train split (`data/gsm8k/train.jsonl`, calibration), built by [`jsonl_text`].
    Gsm8kTrain,
    /// GSM8K test split (`data/gsm8k/test.jsonl`, evaluation), built by [`jsonl_text`].
    Gsm8kTest,
    /// A JSONL corpus of the user's task, built by [`jsonl_text`].
    Jsonl(PathBuf),
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
            TextSource::Gsm8kTrain => {
                let p = data_dir().join("gsm8k/train.jsonl");
                jsonl_text(&read(p.clone())?, &p)?
            }
            TextSource::Gsm8kTest => {
                let p = data_dir().join("gsm8k/test.jsonl");
                jsonl_text(&read(p.clone())?, &p)?
            }
            TextSource::Jsonl(p) => jsonl_text(&read(p.clone())?, p)?,
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

/// The text of a JSONL corpus (one JSON object per non-empty line): each line is one
/// document, `question + "\n" + answer` when the object has string fields `question` and
/// `answer` (GSM8K, MetaMathQA-style after renaming), else its string field `text`; documents
/// are joined with `"\n\n"` and then windowed like WikiText-2. `path` is only used in errors,
/// which name the offending line.
pub fn jsonl_text(raw: &str, path: &Path) -> Result<String, EvalError> {
    let bad = |line: usize, what: String| {
        EvalError::Input(format!("{}: line {}: {what}", path.display(), line + 1))
    };
    let mut docs = Vec::new();
    for (i, line) in raw.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| bad(i, format!("not JSON: {e}")))?;
        let field = |k: &str| v.get(k).and_then(|x| x.as_str());
        let doc = match (field("question"), field("answer"), field("text")) {
            (Some(q), Some(a), _) => format!("{q}\n{a}"),
            (_, _, Some(t)) => t.to_string(),
            _ => {
                return Err(bad(
                    i,
                    "expected string fields `question` and `answer`, or `text`".into(),
                ))
            }
        };
        docs.push(doc);
    }
    if docs.is_empty() {
        return Err(EvalError::Input(format!(
            "{}: no documents",
            path.display()
        )));
    }
    Ok(docs.join("\n\n"))
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
    fn jsonl_documents_are_joined() {
        let p = Path::new("t.jsonl");
        let raw = "{\"question\":\"1+1?\",\"answer\":\"2\"}\n\n{\"text\":\"free\"}\n";
        assert_eq!(jsonl_text(raw, p).unwrap(), "1+1?\n2\n\nfree");
        let e = jsonl_text("{\"text\":1}", p).unwrap_err().to_string();
        assert!(e.contains("line 1"), "{e}");
        assert!(jsonl_text("not json", p).is_err());
        assert!(jsonl_text("\n", p).is_err());
    }

    #[test]
    fn gsm8k_splits_have_the_dataset_sizes() {
        for (src, n) in [
            (TextSource::Gsm8kTrain, 7473),
            (TextSource::Gsm8kTest, 1319),
        ] {
            let text = src.text().unwrap();
            // Every GSM8K answer ends with its "#### <number>" line.
            assert_eq!(text.matches("\n#### ").count(), n, "{src:?}");
        }
    }

    #[test]
    fn wikitext_test_has_the_dataset_row_count() {
        let raw = std::fs::read_to_string(data_dir().join("wikitext-2-raw/wiki.test.raw")).unwrap();
        assert_eq!(raw.split_inclusive('\n').count(), 4358);
    }
}
