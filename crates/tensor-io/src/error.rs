use std::path::PathBuf;
use thiserror::Error;

/// Everything that can go wrong reading or writing a checkpoint. Each variant names the file
/// and the field at fault; no input, however malformed, makes this crate panic.
#[derive(Debug, Error)]
pub enum IoError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not in the format it claims, or is truncated or inconsistent.
    #[error("{path}: malformed {format} file: {detail}")]
    Malformed {
        path: PathBuf,
        format: &'static str,
        detail: String,
    },
    /// A value the format allows but this crate does not support (a dtype, a quant type, ...).
    #[error("{path}: unsupported {what}: {detail}")]
    Unsupported {
        path: PathBuf,
        what: &'static str,
        detail: String,
    },
    /// A required field is absent from a config, manifest or metadata.
    #[error("{path}: missing field `{field}`")]
    MissingField { path: PathBuf, field: String },
    /// A field is present but has the wrong type or an invalid value.
    #[error("{path}: invalid field `{field}`: {detail}")]
    InvalidField {
        path: PathBuf,
        field: String,
        detail: String,
    },
    /// A tensor the caller asked for is not in the checkpoint.
    #[error("{path}: no tensor named `{name}`")]
    NoTensor { path: PathBuf, name: String },
    #[error("{path}: invalid JSON: {source}")]
    Json {
        path: PathBuf,
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
