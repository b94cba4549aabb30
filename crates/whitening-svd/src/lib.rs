//! SVD-LLM truncation-aware whitening, the plain-SVD and ASVD baselines, and SVD-LLM's
//! closed-form factor update (ALGORITHMS.md §1.2–§1.4 and §2).
//!
//! A weight `W` (`d_out × d_in`, `y = W x`) is replaced by two skinny linears,
//! `y = second · (first · x)`, `first` `k × d_in` and `second` `d_out × k`, with the rank `k`
//! given by SVD-LLM's budget formula for that matrix's own shape
//! ([`llm_compress_core::budget::svd_llm_rank`]). The methods differ only in the whitening
//! `L` of the factorised matrix `W L` (see [`whitened`]):
//!
//! | compressor | whitening `L` | statistics ([`MatrixCompressor::needs`]) |
//! |---|---|---|
//! | [`SvdLlm`] | `chol(G)`, `G = X Xᵀ` the input Gram ([`robust_cholesky`]) | Gram |
//! | [`PlainSvd`] | `I` | none |
//! | [`Asvd`] | `diag(mean_t \|x_tj\|)^α` | per-channel absolute sums |
//!
//! With SVD-LLM's whitening the output error on the calibration tokens is exactly the dropped
//! singular energy, `‖(W − W')X‖_F² = Σ_{i>k} σᵢ²` ([`WhitenedSvd::dropped_energy`]).
//! All factorisations run in f64 (the Gram, the Cholesky factor, the SVD, the triangular
//! solves); the stored factors are f32.
//!
//! [`closed_form_update`] / [`UpdateAccumulator`] refit the second factor on inputs taken
//! from the already-compressed prefix of the model (§2.5(a)).
//!
//! Activations are one token per **column**: a batch `X` is `d_in × T`, the Gram is `X Xᵀ`.
//!
//! # Example
//! ```
//! use llm_compress_core::budget::svd_llm_rank;
//! use llm_compress_core::rng::SplitMix64;
//! use llm_compress_core::{GramAccumulator, LinearId, LinearKind, Mat, MatrixCompressor};
//! use llm_compress_whitening_svd::SvdLlm;
//!
//! let (d_out, d_in, tokens) = (12, 16, 200);
//! let mut rng = SplitMix64::new(7);
//! let w = Mat::<f32>::from_fn(d_out, d_in, |_, _| rng.normal() as f32);
//! let x = Mat::<f32>::from_fn(d_in, tokens, |i, _| rng.normal() as f32 / (1.0 + i as f32));
//!
//! // Calibration: accumulate exactly what the method needs (here the Gram X Xᵀ).
//! let svd_llm = SvdLlm::new(0.2);
//! let mut acc = GramAccumulator::new(d_in, svd_llm.needs());
//! acc.add(x.as_ref());
//! let stats = acc.finish();
//!
//! let id = LinearId { layer: 0, kind: LinearKind::Q };
//! let compressed = svd_llm.compress(id, w.as_ref(), &stats)?;
//! assert_eq!(compressed.rank(), Some(svd_llm_rank(d_out, d_in, 0.2)));
//! assert!(compressed.param_count() <= d_out * d_in * 8 / 10);
//! let y = compressed.apply(x.as_ref()); // d_out × tokens
//! assert_eq!((y.nrows(), y.ncols()), (d_out, tokens));
//! # Ok::<(), llm_compress_core::CoreError>(())
//! ```
#![warn(missing_docs)]

pub mod cholesky;
pub mod compressors;
pub mod randomized;
pub mod update;
mod util;
pub mod whitened;

pub use cholesky::{robust_cholesky, CholeskyOptions, CholeskyReport};
pub use compressors::{Asvd, PlainSvd, SvdLlm};
pub use randomized::SvdSolver;
pub use update::{closed_form_update, closed_form_update_f64, UpdateAccumulator, UPDATE_RIDGE};
pub use whitened::{
    asvd_scales, plain_svd_f64, plain_svd_f64_with_solver, scaled_svd_f64,
    scaled_svd_f64_with_solver, whitened_svd, whitened_svd_f64, whitened_svd_f64_with_solver,
    whitened_svd_with_cholesky, whitened_svd_with_cholesky_solver, WhitenedSvd,
};

#[doc(no_inline)]
pub use llm_compress_core::MatrixCompressor;
