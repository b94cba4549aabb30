//! Training-free Basis Selection ("Basel", ALGORITHMS.md §5.8): compress a model for one target
//! application by keeping the singular bases that the application's inputs actually use.
//!
//! Each weight is written as rank-one bases `W = Σ σ_i u_i v_iᵀ` — the plain SVD (Basel's
//! pretrained bases) or, as an option, SVD-LLM's whitened bases. On the target data's input
//! Gram `G = X Xᵀ`, `score_i = σ_i² · v_iᵀ G v_i` is the **exact** output error that dropping
//! basis `i` costs, and scores add up over any dropped set ([`bases`]). Selection ([`select`])
//! keeps the top-`k` per matrix under SVD-LLM's budget formula, or Basel's mass rule, or — the
//! method's point — a **global** allocation under one parameter budget, in which ranks differ by
//! layer and kind. Optional extras: residual bases (the whitened SVD of what was dropped) and
//! a closed-form refit of the kept coefficients (a no-op for plain-SVD bases alone).
//! The result is stored as `Linear::LowRank`, so export, runtime and composition come for free.
//!
//! Activations are one token per column (`X` is `d_in × T`, `G = X Xᵀ`), as everywhere in the
//! workspace.
//!
//! # Example
//! ```
//! use llm_compress_basis_select::{global_allocation, plain_bases, MatrixScores};
//! use llm_compress_core::rng::SplitMix64;
//! use llm_compress_core::{GramAccumulator, Mat, StatsRequest};
//!
//! let mut rng = SplitMix64::new(1);
//! let x = Mat::<f32>::from_fn(8, 100, |i, _| rng.normal() as f32 / (1.0 + i as f32));
//! let mut acc = GramAccumulator::new(8, StatsRequest { gram: true, ..StatsRequest::NONE });
//! acc.add(x.as_ref());
//! let g = acc.finish().gram.unwrap();
//!
//! // Score the bases of two weights on the target inputs, then share one budget.
//! let mut matrices = Vec::new();
//! let mut bases = Vec::new();
//! for (name, d_out) in [("a", 6), ("b", 12)] {
//!     let w = Mat::<f32>::from_fn(d_out, 8, |_, _| rng.normal() as f32);
//!     let b = plain_bases(w.as_ref(), Some(g.as_ref()))?;
//!     matrices.push(MatrixScores {
//!         name: name.into(), d_out, d_in: 8,
//!         scores: b.scores.clone(), output_energy: b.total_score(),
//!     });
//!     bases.push(b);
//! }
//! let budget = 60; // parameters
//! let kept = global_allocation(&matrices, budget)?;
//! let used: usize = kept.iter().zip(&matrices).map(|(k, m)| k.len() * (m.d_out + m.d_in)).sum();
//! assert!(used <= budget);
//! let linear = bases[0].keep(&kept[0])?.to_linear()?; // Linear::LowRank
//! assert_eq!(linear.rank(), Some(kept[0].len()));
//! # Ok::<(), llm_compress_core::CoreError>(())
//! ```
#![warn(missing_docs)]

pub mod bases;
pub mod select;

pub use bases::{
    basis_scores, output_energy, plain_bases, refit_coefficients, residual_bases, whitened_bases,
    Coefficients, ScoredBases,
};
pub use select::{global_allocation, mass_rule, selection_params, top_k, MatrixScores};
