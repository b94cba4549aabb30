//! The shared vocabulary of llm-compress.
//!
//! Every method crate speaks these types and nothing else, so that a method can be tested on
//! synthetic matrices alone and embedded in an engine that has its own runtime:
//!
//! - [`Linear`]: how one weight is stored (dense, low-rank, ...), with its forward pass;
//! - [`LinearId`] / [`LinearKind`]: which weight of which decoder layer;
//! - [`InputStats`] / [`GramAccumulator`]: what calibration learned about a linear's input
//!   (an `f64` Gram `X Xᵀ`, the token count, per-channel absolute sums);
//! - [`budget`]: the exact rank formulas of the specification;
//! - the narrow traits [`MatrixCompressor`], [`GroupCompressor`] and [`LayerPolicy`].
//!
//! # Layout convention
//! A weight `W` is `d_out × d_in` (PyTorch layout, `y = W x`). Activations are stored
//! **one token per column**: a batch `X` is `d_in × T`, so a forward is `Y = W X` and the
//! Gram of the inputs is `G = X Xᵀ` (`d_in × d_in`), the matrix the SVD-LLM paper writes `X Xᵀ`
//! and ALGORITHMS.md writes `XᵀX` for tokens-as-rows.
//!
//! # Example
//! ```
//! use llm_compress_core::{Linear, Mat};
//! let w = Mat::<f32>::from_fn(3, 4, |i, j| (i * 4 + j) as f32);
//! let lin = Linear::Dense(w);
//! let x = Mat::<f32>::from_fn(4, 2, |i, t| (i + t) as f32);
//! let mut y = Mat::<f32>::zeros(3, 2);
//! lin.forward(x.as_ref(), y.as_mut());
//! assert_eq!(lin.shape(), (3, 4));
//! assert_eq!(y[(0, 0)], 0.0 * 0.0 + 1.0 * 1.0 + 2.0 * 2.0 + 3.0 * 3.0);
//! ```

#![warn(missing_docs)]
pub mod budget;
mod error;
mod linear;
pub mod quant;
pub mod quant_sparse;
pub mod rng;
pub mod shared;
mod sparse;
mod stats;
mod traits;

pub use error::CoreError;
pub use faer::{Mat, MatMut, MatRef};
pub use linear::{Linear, LinearId, LinearInput, LinearKind};
pub use quant::{QuantFormat, QuantMatrix};
pub use quant_sparse::QuantSparse;
pub use sparse::{GroupAxis, NmSparse, SparsityPattern};
pub use stats::{GramAccumulator, InputStats, StatsRequest};
pub use traits::{GroupCompressor, LayerPolicy, MatrixCompressor};

/// Parallelism used by the dense kernels of this workspace: every rayon thread.
pub fn par() -> faer::Par {
    let n = rayon::current_num_threads();
    if n <= 1 {
        faer::Par::Seq
    } else {
        faer::Par::rayon(n)
    }
}

/// The parallel degree of kernels whose floating-point result depends on how their work is
/// split (faer's SVD and eigen solvers). Fixed, so that results are bit-identical whatever the
/// number of threads: faer splits by the degree it is given, and rayon runs the pieces on however
/// many threads exist (measured: matmul, SYRK and Cholesky do not depend on the degree; the SVD
/// does).
pub const DETERMINISTIC_DEGREE: usize = 4;

/// Parallelism for degree-sensitive kernels: [`DETERMINISTIC_DEGREE`] pieces.
pub fn par_deterministic() -> faer::Par {
    faer::Par::rayon(DETERMINISTIC_DEGREE)
}
