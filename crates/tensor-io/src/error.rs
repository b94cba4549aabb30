use std::path::PathBuf;
use thiserror::Error;

/// Everything that can go wrong reading or writing a checkpoint. Each variant names the file
/// and the field at fault; no input, however malformed, makes this crate panic.
#[derive(Debug, Error)]
pub enum IoError {
    /// An operating-system error while opening, reading, mapping or writing a file.
    #[error("{path}: {source}")]
    Io {
        /// The file (or directory) at fault.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not in the format it claims, or is truncated or inconsistent.
    #[error("{path}: malformed {format} file: {detail}")]
    Malformed {
        /// The file at fault.
        path: PathBuf,
        /// The format it was read as (`safetensors`, `gguf`, `config.json`).
        format: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// A value the format allows but this crate does not support (a dtype, a quant type, ...).
    #[error("{path}: unsupported {what}: {detail}")]
    Unsupported {
        /// The file at fault.
        path: PathBuf,
        /// The kind of value that is unsupported (e.g. `dtype`, `model path`).
        what: &'static str,
        /// The value found and what is supported.
        detail: String,
    },
    /// A required field is absent from a config, manifest or metadata.
    #[error("{path}: missing field `{field}`")]
    MissingField {
        /// The file at fault.
        path: PathBuf,
        /// The name of the missing field.
        field: String,
    },
    /// A field is present but has the wrong type or an invalid value.
    #[error("{path}: invalid field `{field}`: {detail}")]
    InvalidField {
        /// The file at fault.
        path: PathBuf,
        /// The name of the field.
        field: String,
        /// What was found and what was expected.
        detail: String,
    },
    /// A tensor the caller asked for is not in the checkpoint.
    #[error("{path}: no tensor named `{name}`")]
    NoTensor {
        /// The checkpoint file searched.
        path: PathBuf,
        /// The requested tensor name.
        name: String,
    },
    /// A JSON file (config, manifest, tokenizer, shard index) does not parse.
    #[error("{path}: invalid JSON: {source}")]
    Json {
        /// The file at fault.
        path: PathBuf,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
}

impl IoError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        IoError::Io {
            path: path.into(),
            source,
        }
    }
}
