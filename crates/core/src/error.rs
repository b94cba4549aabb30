use thiserror::Error;

/// Errors of the shared vocabulary and of the compressor traits.
#[derive(Debug, Error)]
pub enum CoreError {
    /// Two shapes that must agree do not.
    #[error("shape mismatch in {what}: expected {expected:?}, got {got:?}")]
    Shape {
        what: String,
        expected: (usize, usize),
        got: (usize, usize),
    },
    /// A numerical step failed (a factorisation that did not converge, a non-finite value).
    #[error("numerical failure in {what}: {detail}")]
    Numerical { what: String, detail: String },
    /// A parameter is out of its valid range.
    #[error("invalid parameter {name}: {detail}")]
    Parameter { name: String, detail: String },
    /// A method needs a statistic that the calibration walk did not collect.
    #[error("missing calibration statistic: {0}")]
    MissingStats(String),
}
