use thiserror::Error;

/// Errors of the runtime and of evaluation.
#[derive(Debug, Error)]
pub enum EvalError {
    /// Reading the checkpoint (tensors, config, tokenizer) failed.
    #[error(transparent)]
    Io(#[from] llm_compress_tensor_io::IoError),
    /// A compression step or core operation failed (e.g. a method run inside
    /// [`walk_layers`](crate::walk_layers)).
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
        /// The file that could not be read.
        path: std::path::PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
}
