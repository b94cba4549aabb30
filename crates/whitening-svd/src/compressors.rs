//! The three [`MatrixCompressor`]s of this crate — ALGORITHMS.md §2.3 (SVD-LLM whitening +
//! truncation), §2.4 (budget → rank, per matrix shape) and §2.7 (plain SVD and ASVD
//! baselines).
//!
//! Every compressor keeps `k = ⌊m·n·(1−ratio)/(m+n)⌋` singular triplets of an `m × n` weight
//! ([`svd_llm_rank`]), evaluated **per matrix shape**: on a GQA model the 192 × 576 k/v
//! projections get their own rank rather than the square attention rank (§2.4's GQA caveat).
//! The result is `Linear::LowRank { first: diag(√Σ_k)·V'ᵀ, second: U_k·diag(√Σ_k) }` in f32
//! (§2.3's √Σ split), computed in f64 by [`crate::whitened`]. Each compressor uses the exact
//! thin SVD unless given another [`SvdSolver`] with `with_solver` (see [`crate::randomized`]).

use crate::cholesky::CholeskyOptions;
use crate::randomized::SvdSolver;
use crate::util::to_f64;
use crate::whitened::{
    asvd_scales, plain_svd_f64_with_solver, scaled_svd_f64_with_solver,
    whitened_svd_f64_with_solver, whitened_svd_with_cholesky_solver, WhitenedSvd,
};
use faer::MatRef;
use llm_compress_core::budget::{check_ratio, svd_llm_rank};
use llm_compress_core::{CoreError, InputStats, Linear, LinearId, MatrixCompressor, StatsRequest};

/// Prefix the location of a failure with the linear it happened on.
fn in_linear(id: LinearId, e: CoreError) -> CoreError {
    match e {
        CoreError::Shape {
            what,
            expected,
            got,
        } => CoreError::Shape {
            what: format!("{id}: {what}"),
            expected,
            got,
        },
        CoreError::Numerical { what, detail } => CoreError::Numerical {
            what: format!("{id}: {what}"),
            detail,
        },
        other => other,
    }
}

/// The SVD-LLM rank of a `d_out × d_in` weight at `ratio` removed, validated.
fn rank_for(d_out: usize, d_in: usize, ratio: f64) -> Result<usize, CoreError> {
    Ok(svd_llm_rank(d_out, d_in, check_ratio(ratio)?))
}

fn log_result(method: &str, id: LinearId, f: &WhitenedSvd) {
    let (m, n) = f.shape();
    tracing::debug!(
        method,
        linear = %id,
        d_out = m,
        d_in = n,
        rank = f.rank(),
        dropped_fraction = f.dropped_fraction(),
        "truncated SVD"
    );
}

/// SVD-LLM truncation-aware data whitening (§2.3): `L = chol(G)` of the input Gram,
/// truncated SVD of `W L`, factors `U_k√Σ_k` and `√Σ_k V_kᵀL⁻¹`. Needs the Gram.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SvdLlm {
    /// Fraction of the matrix's parameters removed, in `[0, 1)` (SVD-LLM's `--ratio`).
    pub ratio: f64,
    /// How the truncated SVD of the whitened weight is computed (default exact).
    pub solver: SvdSolver,
}

impl SvdLlm {
    /// SVD-LLM removing `ratio` of each matrix's parameters, exact SVD. The ratio is checked
    /// (`[0, 1)`) when a rank is computed, so [`SvdLlm::rank`] and `compress` return the error.
    pub fn new(ratio: f64) -> Self {
        Self {
            ratio,
            solver: SvdSolver::Exact,
        }
    }

    /// The same compressor with another SVD solver (validated when it runs).
    pub fn with_solver(self, solver: SvdSolver) -> Self {
        Self { solver, ..self }
    }

    /// The kept rank for a `d_out × d_in` weight.
    pub fn rank(&self, d_out: usize, d_in: usize) -> Result<usize, CoreError> {
        rank_for(d_out, d_in, self.ratio)
    }

    /// The f64 factorisation behind [`MatrixCompressor::compress`], with the computed singular values
    /// and the Cholesky report (for reports of the dropped energy).
    pub fn factorize(
        &self,
        id: LinearId,
        weight: MatRef<'_, f32>,
        stats: &InputStats,
    ) -> Result<WhitenedSvd, CoreError> {
        let (m, n) = weight.shape();
        let k = self.rank(m, n)?;
        let g = stats.gram.as_ref().ok_or_else(|| {
            CoreError::MissingStats(format!("{id}: svd-llm needs the input Gram"))
        })?;
        let f = whitened_svd_f64_with_solver(
            to_f64(weight).as_ref(),
            g.as_ref(),
            k,
            &CholeskyOptions::default(),
            self.solver,
        )
        .map_err(|e| in_linear(id, e))?;
        log_result("svd-llm", id, &f);
        Ok(f)
    }

    /// The same factorisation from an already computed Cholesky factor `L` of the input Gram,
    /// so that linears reading the same input (q/k/v, gate/up) share one factorisation.
    pub fn factorize_with_cholesky(
        &self,
        id: LinearId,
        weight: MatRef<'_, f32>,
        l: MatRef<'_, f64>,
    ) -> Result<WhitenedSvd, CoreError> {
        let (m, n) = weight.shape();
        let k = self.rank(m, n)?;
        let f = whitened_svd_with_cholesky_solver(to_f64(weight).as_ref(), l, k, self.solver)
            .map_err(|e| in_linear(id, e))?;
        log_result("svd-llm", id, &f);
        Ok(f)
    }
}

impl MatrixCompressor for SvdLlm {
    fn name(&self) -> &str {
        "svd-llm"
    }
    fn needs(&self) -> StatsRequest {
        StatsRequest {
            gram: true,
            ..StatsRequest::NONE
        }
    }
    fn compress(
        &self,
        id: LinearId,
        weight: MatRef<'_, f32>,
        stats: &InputStats,
    ) -> Result<Linear, CoreError> {
        self.factorize(id, weight, stats)?
            .to_linear()
            .map_err(|e| in_linear(id, e))
    }
}

/// Plain truncated SVD of the weight (§2.7 "SVD" baseline). Needs no statistics.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PlainSvd {
    /// Fraction of the matrix's parameters removed, in `[0, 1)`.
    pub ratio: f64,
    /// How the truncated SVD is computed (default exact).
    pub solver: SvdSolver,
}

impl PlainSvd {
    /// Plain SVD removing `ratio` of each matrix's parameters, exact SVD. The ratio is checked
    /// (`[0, 1)`) when a rank is computed, so [`PlainSvd::rank`] and `compress` return the error.
    pub fn new(ratio: f64) -> Self {
        Self {
            ratio,
            solver: SvdSolver::Exact,
        }
    }

    /// The same compressor with another SVD solver (validated when it runs).
    pub fn with_solver(self, solver: SvdSolver) -> Self {
        Self { solver, ..self }
    }

    /// The kept rank for a `d_out × d_in` weight.
    pub fn rank(&self, d_out: usize, d_in: usize) -> Result<usize, CoreError> {
        rank_for(d_out, d_in, self.ratio)
    }

    /// The f64 factorisation behind [`MatrixCompressor::compress`].
    pub fn factorize(
        &self,
        id: LinearId,
        weight: MatRef<'_, f32>,
    ) -> Result<WhitenedSvd, CoreError> {
        let (m, n) = weight.shape();
        let k = self.rank(m, n)?;
        let f = plain_svd_f64_with_solver(to_f64(weight).as_ref(), k, self.solver)
            .map_err(|e| in_linear(id, e))?;
        log_result("svd", id, &f);
        Ok(f)
    }
}

impl MatrixCompressor for PlainSvd {
    fn name(&self) -> &str {
        "svd"
    }
    fn needs(&self) -> StatsRequest {
        StatsRequest::NONE
    }
    fn compress(
        &self,
        id: LinearId,
        weight: MatRef<'_, f32>,
        _stats: &InputStats,
    ) -> Result<Linear, CoreError> {
        self.factorize(id, weight)?
            .to_linear()
            .map_err(|e| in_linear(id, e))
    }
}

/// ASVD activation-aware SVD (§2.7): `S = diag(mean_t |x_tj|)^α`, truncated SVD of `W S`,
/// first factor multiplied by `S⁻¹` (zero-activation channels guarded, see [`asvd_scales`]).
/// Needs the per-channel absolute sums. The per-layer rank search of the ASVD paper is not
/// part of this baseline: the rank is the same budget formula as SVD-LLM's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Asvd {
    /// Fraction of the matrix's parameters removed, in `[0, 1)`.
    pub ratio: f64,
    /// Exponent of the abs-mean scaling (ASVD default 0.5).
    pub alpha: f64,
    /// How the truncated SVD of the scaled weight is computed (default exact).
    pub solver: SvdSolver,
}

impl Asvd {
    /// ASVD's default exponent.
    pub const DEFAULT_ALPHA: f64 = 0.5;

    /// `Asvd { ratio, alpha: 0.5 }` with the exact SVD.
    pub fn new(ratio: f64) -> Self {
        Self {
            ratio,
            alpha: Self::DEFAULT_ALPHA,
            solver: SvdSolver::Exact,
        }
    }

    /// The same compressor with another SVD solver (validated when it runs).
    pub fn with_solver(self, solver: SvdSolver) -> Self {
        Self { solver, ..self }
    }

    /// The kept rank for a `d_out × d_in` weight.
    pub fn rank(&self, d_out: usize, d_in: usize) -> Result<usize, CoreError> {
        rank_for(d_out, d_in, self.ratio)
    }

    /// The f64 factorisation behind [`MatrixCompressor::compress`].
    pub fn factorize(
        &self,
        id: LinearId,
        weight: MatRef<'_, f32>,
        stats: &InputStats,
    ) -> Result<WhitenedSvd, CoreError> {
        let (m, n) = weight.shape();
        let k = self.rank(m, n)?;
        let abs = stats.abs_sums.as_ref().ok_or_else(|| {
            CoreError::MissingStats(format!("{id}: asvd needs per-channel absolute sums"))
        })?;
        let s = asvd_scales(abs, stats.tokens, self.alpha).map_err(|e| in_linear(id, e))?;
        let f = scaled_svd_f64_with_solver(to_f64(weight).as_ref(), &s, k, self.solver)
            .map_err(|e| in_linear(id, e))?;
        log_result("asvd", id, &f);
        Ok(f)
    }
}

impl MatrixCompressor for Asvd {
    fn name(&self) -> &str {
        "asvd"
    }
    fn needs(&self) -> StatsRequest {
        StatsRequest {
            abs_sums: true,
            ..StatsRequest::NONE
        }
    }
    fn compress(
        &self,
        id: LinearId,
        weight: MatRef<'_, f32>,
        stats: &InputStats,
    ) -> Result<Linear, CoreError> {
        self.factorize(id, weight, stats)?
            .to_linear()
            .map_err(|e| in_linear(id, e))
    }
}
