use thiserror::Error;

/// Errors of the shared vocabulary and of the compressor traits.
#[derive(Debug, Error)]
pub enum CoreError {
    /// Two shapes that must agree do not.
    #[error("shape mismatch in {what}: expected {expected:?}, got {got:?}")]
    Shape {
        /// What was being checked.
        what: String,
        /// The expected shape.
        expected: (usize, usize),
        /// The shape found.
        got: (usize, usize),
    },
    /// A numerical step failed (a factorisation that did not converge, a non-finite value).
    #[error("numerical failure in {what}: {detail}")]
    Numerical {
        /// The step that failed.
        what: String,
        /// Why.
        detail: String,
    },
    /// A parameter is out of its valid range.
    #[error("invalid parameter {name}: {detail}")]
    Parameter {
        /// The parameter's name.
        name: String,
        /// The valid range and the value given.
        detail: String,
    },
    /// A method needs a statistic that the calibration walk did not collect.
    #[error("missing calibration statistic: {0}")]
    MissingStats(String),
}
