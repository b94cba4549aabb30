use thiserror::Error;

/// Errors of the runtime and of evaluation.
#[derive(Debug, Error)]
pub enum EvalError {
    #[error(transparent)]
    Io(#[from] llm_compress_tensor_io::IoError),
    #[error(transparent)]
    Core(#[from] llm_compress_core::CoreError),
    /// A tensor has the wrong shape for the model's configuration.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// Bad input to the runtime (token out of range, window too long, too little text).
    #[error("{0}")]
    Input(String),
    /// A data file could not be read.
    #[error("{path}: {source}")]
    Data {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}
