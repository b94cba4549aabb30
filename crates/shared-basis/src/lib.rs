//! Basis Sharing (ALGORITHMS.md §3): the same weight kind of `g` consecutive decoder layers is
//! factored by **one** whitened SVD; its scaled left singular vectors become a basis that every
//! layer of the group reads (one [`std::sync::Arc`] buffer, [`Linear::Shared`]) and the right
//! singular vectors, split per layer, become private coefficients.
//!
//! - [`SharedBasis`]: the [`GroupCompressor`] (summed group Gram → robust Cholesky → one f64
//!   SVD → basis and coefficients, rank from [`llm_compress_core::budget::shared_basis_rank`]);
//!   [`GroupFactorization`] exposes the f64 factors and the dropped energy;
//! - [`layer_groups`] and [`SharingPlan`]: which layers form a group (consecutive, a shorter
//!   last group) and which kinds share (default `q, k, v, up, gate`; `o, down` stay private,
//!   where a group of one is SVD-LLM's whitened SVD);
//! - [`update_coefficient`]: the optional least-squares refit of a coefficient with the basis
//!   held fixed (§3.6).
//!
//! The robust Cholesky and the whitened truncated SVD are those of
//! [`llm_compress_whitening_svd`]: the group's SVD is the whitened SVD of the weights stacked
//! **vertically**, `[W_1; …; W_g] · L` (`g·m × n`), which is the transpose of §3.4's
//! `S · [W_1ᵀ | … | W_gᵀ]` with `S = Lᵀ` and therefore has the same singular values.
//!
//! # Example
//! ```
//! use llm_compress_core::rng::SplitMix64;
//! use llm_compress_core::{GramAccumulator, GroupCompressor, Linear, LinearId, LinearKind, Mat};
//! use llm_compress_shared_basis::SharedBasis;
//! use std::sync::Arc;
//!
//! let (d_out, d_in, tokens) = (8, 12, 100);
//! let mut rng = SplitMix64::new(1);
//! let compressor = SharedBasis::new(0.3);
//! let mut weights = Vec::new();
//! let mut stats = Vec::new();
//! for _ in 0..2 {
//!     weights.push(Mat::<f32>::from_fn(d_out, d_in, |_, _| rng.normal() as f32));
//!     let x = Mat::<f32>::from_fn(d_in, tokens, |_, _| rng.normal() as f32);
//!     let mut acc = GramAccumulator::new(d_in, compressor.needs());
//!     acc.add(x.as_ref());
//!     stats.push(acc.finish());
//! }
//! let members: Vec<_> = (0..2)
//!     .map(|l| (LinearId { layer: l, kind: LinearKind::Q }, weights[l].as_ref(), &stats[l]))
//!     .collect();
//! let out = compressor.compress_group(&members)?;
//! let (b0, b1) = (out[0].shared_basis().unwrap(), out[1].shared_basis().unwrap());
//! assert!(Arc::ptr_eq(b0, b1)); // one basis buffer for the group
//! assert_eq!(out[0].shape(), (d_out, d_in));
//! # Ok::<(), llm_compress_core::CoreError>(())
//! ```
#![warn(missing_docs)]

mod factorize;
mod groups;

pub use factorize::{summed_gram, update_coefficient, GroupFactorization, SharedBasis};
pub use groups::{layer_groups, SharingPlan};

#[doc(no_inline)]
pub use llm_compress_core::{GroupCompressor, Linear};
