//! Whitened truncated SVD and its two-factor storage — ALGORITHMS.md §1.3, §1.4 and §2.3,
//! plus the §2.7 baselines (plain SVD, ASVD's diagonal scaling) as special whitenings.
//!
//! Given a weight `W` (`m × n`), a whitening matrix `L` (`n × n`, invertible) and a rank `k`:
//!
//! ```text
//! A = W · L ;  U, Σ, Vᵀ = svd(A)                      (§1.3)
//! V'ᵀ = V_kᵀ · L⁻¹            (k × n, by a triangular solve Lᵀ V' = V_k, never forming L⁻¹)
//! second = U_k · diag(√Σ_k)   (m × k, "u_proj")       (§2.3, §1.4)
//! first  = diag(√Σ_k) · V'ᵀ   (k × n, "v_proj")
//! W' = second · first = U_k Σ_k V_kᵀ L⁻¹
//! ```
//!
//! - **SVD-LLM**: `L = chol(G)` of the input Gram `G = X Xᵀ` ([`robust_cholesky`], §1.2).
//!   Then for the calibration tokens `X`, `‖(W − W')X‖_F² = Σ_{i>k} σᵢ²` exactly (§1.3), and
//!   `W'` is the optimal rank-`k` matrix for that output loss.
//! - **Plain SVD** (§2.7): `L = I`.
//! - **ASVD** (§2.7): `L = S = diag(mean_t |x_tj|)^α`, a diagonal.
//!
//! # Precision (a documented choice)
//! Everything — the whitened product, the SVD and the triangular solve — runs in **f64**, and
//! only the two final factors are cast to f32. §2.10.3 allows an f32 SVD of the whitened matrix
//! for speed; the reference code does that, Basis Sharing does f64. SmolLM2-sized matrices are
//! at most 1536 × 576, for which an f64 thin SVD takes a fraction of a second, and f64 makes the
//! identity above hold to ~1e-12 instead of ~1e-5, which is what the tests check.
//! On LLaMA-7B-sized matrices the exact f64 thin SVD takes 15–25 s per matrix on 2 cores; the
//! opt-in [`SvdSolver::Randomized`] (see [`crate::randomized`]) computes only the kept rank,
//! still in f64. Every function below uses the exact solver; the `*_with_solver` variants
//! take the solver.

use crate::cholesky::{robust_cholesky, CholeskyOptions, CholeskyReport};
use crate::randomized::{randomized_svd, PartialSvd, SvdSolver};
use crate::util::{check_finite, check_shape, mul, mul_lower, to_f32_checked, to_f64};
use faer::diag::Diag;
use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::svd::{svd, svd_scratch, ComputeSvdVectors};
use faer::linalg::triangular_solve::solve_upper_triangular_in_place;
use faer::{Mat, MatRef};
use llm_compress_core::{par, CoreError, Linear};

/// A rank-`k` truncated SVD of a whitened weight, with what is needed to store it as two
/// factors and to report the truncation error.
#[derive(Clone, Debug)]
pub struct WhitenedSvd {
    /// `U_k` (`m × k`, orthonormal columns).
    pub u: Mat<f64>,
    /// The computed singular values of the whitened weight `A = W L`, descending. With
    /// [`SvdSolver::Exact`]: **all** `min(m, n)` of them, so that callers can report the
    /// dropped energy `Σ_{i>k} σᵢ²`. With [`SvdSolver::Randomized`]: only the `k` kept ones
    /// (see [`WhitenedSvd::sigma_is_complete`]).
    pub sigma: Vec<f64>,
    /// `V'ᵀ = V_kᵀ L⁻¹` (`k × n`).
    pub vpt: Mat<f64>,
    /// What the robust Cholesky did, when this SVD whitened with a Gram.
    pub cholesky: Option<CholeskyReport>,
    /// `‖A‖_F²` computed from `A` itself, when `sigma` is not complete.
    whitened_energy: Option<f64>,
}

impl WhitenedSvd {
    /// The kept rank `k`.
    pub fn rank(&self) -> usize {
        self.vpt.nrows()
    }

    /// `(d_out, d_in)` of the approximated weight.
    pub fn shape(&self) -> (usize, usize) {
        (self.u.nrows(), self.vpt.ncols())
    }

    /// Whether `sigma` holds every singular value (the exact solver) rather than the leading
    /// estimates of the randomized one.
    pub fn sigma_is_complete(&self) -> bool {
        self.whitened_energy.is_none()
    }

    /// `‖A‖_F² = Σ_i σᵢ²`, the whitened weight's squared Frobenius norm (for SVD-LLM, the
    /// output energy `‖W X‖_F²` on the calibration tokens). From `sigma` with the exact solver,
    /// from `A` itself with the randomized one.
    pub fn total_energy(&self) -> f64 {
        match self.whitened_energy {
            Some(e) => e,
            None => self.sigma.iter().map(|s| s * s).sum(),
        }
    }

    /// `‖A − U_k Σ_k V_kᵀ‖_F²`, for SVD-LLM the output error `‖(W − W')X‖_F²` on the
    /// calibration tokens. Exact solver: `Σ_{i>k} σᵢ²` (the optimum). Randomized solver:
    /// `‖A‖_F² − Σ_{i≤k} σ̃ᵢ²` (the factors are an orthogonal projection of `A`, see
    /// [`crate::randomized`]), which is ≥ the optimum; being a difference it carries an absolute
    /// rounding error of order `ε‖A‖_F²`, clamped at 0.
    pub fn dropped_energy(&self) -> f64 {
        match self.whitened_energy {
            Some(e) => {
                let kept: f64 = self.sigma[..self.rank()].iter().map(|s| s * s).sum();
                (e - kept).max(0.0)
            }
            None => self.sigma[self.rank()..].iter().map(|s| s * s).sum(),
        }
    }

    /// `dropped_energy / total_energy` (0 for a zero weight).
    pub fn dropped_fraction(&self) -> f64 {
        let total = self.total_energy();
        if total > 0.0 {
            self.dropped_energy() / total
        } else {
            0.0
        }
    }

    /// `first = diag(√Σ_k) · V'ᵀ` (`k × n`), in f64.
    pub fn first(&self) -> Mat<f64> {
        let (k, n) = self.vpt.shape();
        Mat::<f64>::from_fn(k, n, |i, j| self.sigma[i].sqrt() * self.vpt[(i, j)])
    }

    /// `second = U_k · diag(√Σ_k)` (`m × k`), in f64.
    pub fn second(&self) -> Mat<f64> {
        let (m, k) = self.u.shape();
        Mat::<f64>::from_fn(m, k, |i, j| self.u[(i, j)] * self.sigma[j].sqrt())
    }

    /// `W' = second · first = U_k Σ_k V'ᵀ` (`m × n`), in f64.
    pub fn reconstruct(&self) -> Mat<f64> {
        mul(self.second().as_ref(), self.first().as_ref())
    }

    /// The two factors cast to f32 as `Linear::LowRank { first, second }`.
    ///
    /// Errors with [`CoreError::Numerical`] if a factor is not finite in f32.
    pub fn to_linear(&self) -> Result<Linear, CoreError> {
        let first = to_f32_checked(self.first().as_ref(), "low-rank first factor")?;
        let second = to_f32_checked(self.second().as_ref(), "low-rank second factor")?;
        Linear::low_rank(Linear::Dense(first), Linear::Dense(second))
    }
}

/// SVD-LLM's whitened truncated SVD of an f32 weight `W` (`m × n`) with input Gram `G`
/// (`n × n`, f64) at rank `k`, with the default [`CholeskyOptions`]. The weight is widened to
/// f64 and [`whitened_svd_f64`] does the work.
pub fn whitened_svd(
    w: MatRef<'_, f32>,
    g: MatRef<'_, f64>,
    k: usize,
) -> Result<WhitenedSvd, CoreError> {
    whitened_svd_f64(to_f64(w).as_ref(), g, k, &CholeskyOptions::default())
}

/// The f64 core of [`whitened_svd`]: `L = robust_chol(G)`, then [`whitened_svd_with_cholesky`].
pub fn whitened_svd_f64(
    w: MatRef<'_, f64>,
    g: MatRef<'_, f64>,
    k: usize,
    opts: &CholeskyOptions,
) -> Result<WhitenedSvd, CoreError> {
    whitened_svd_f64_with_solver(w, g, k, opts, SvdSolver::Exact)
}

/// [`whitened_svd_f64`] with a choice of [`SvdSolver`].
pub fn whitened_svd_f64_with_solver(
    w: MatRef<'_, f64>,
    g: MatRef<'_, f64>,
    k: usize,
    opts: &CholeskyOptions,
    solver: SvdSolver,
) -> Result<WhitenedSvd, CoreError> {
    check_shape(
        "whitened_svd: Gram vs weight columns",
        (w.ncols(), w.ncols()),
        g.shape(),
    )?;
    solver.validate()?;
    let (l, report) = robust_cholesky(g, opts)?;
    let mut out = whitened_svd_with_cholesky_solver(w, l.as_ref(), k, solver)?;
    out.cholesky = Some(report);
    Ok(out)
}

/// Whitened truncated SVD with a precomputed lower Cholesky factor `L` of the Gram (only its
/// lower triangle is read). Lets a caller factor a shared Gram once for several weights
/// (q/k/v read one input, gate/up another).
pub fn whitened_svd_with_cholesky(
    w: MatRef<'_, f64>,
    l: MatRef<'_, f64>,
    k: usize,
) -> Result<WhitenedSvd, CoreError> {
    whitened_svd_with_cholesky_solver(w, l, k, SvdSolver::Exact)
}

/// [`whitened_svd_with_cholesky`] with a choice of [`SvdSolver`].
pub fn whitened_svd_with_cholesky_solver(
    w: MatRef<'_, f64>,
    l: MatRef<'_, f64>,
    k: usize,
    solver: SvdSolver,
) -> Result<WhitenedSvd, CoreError> {
    let n = w.ncols();
    check_shape("whitened_svd: Cholesky factor", (n, n), l.shape())?;
    check_finite(l, "whitened_svd: Cholesky factor")?;
    for j in 0..n {
        if l[(j, j)] == 0.0 {
            return Err(CoreError::Numerical {
                what: "whitened_svd: Cholesky factor".into(),
                detail: format!("L[{j},{j}] is zero, L is singular"),
            });
        }
    }
    truncated_svd(w, Whitening::Lower(l), k, solver)
}

/// Plain truncated SVD of `W` at rank `k` (the "SVD" baseline of §2.7): whitening `L = I`.
pub fn plain_svd_f64(w: MatRef<'_, f64>, k: usize) -> Result<WhitenedSvd, CoreError> {
    plain_svd_f64_with_solver(w, k, SvdSolver::Exact)
}

/// [`plain_svd_f64`] with a choice of [`SvdSolver`].
pub fn plain_svd_f64_with_solver(
    w: MatRef<'_, f64>,
    k: usize,
    solver: SvdSolver,
) -> Result<WhitenedSvd, CoreError> {
    truncated_svd(w, Whitening::Identity, k, solver)
}

/// Truncated SVD of `W · diag(scales)`, with `first` un-scaled by `diag(scales)⁻¹` (ASVD,
/// §2.7). `scales` must be finite and strictly positive (see [`asvd_scales`]).
pub fn scaled_svd_f64(
    w: MatRef<'_, f64>,
    scales: &[f64],
    k: usize,
) -> Result<WhitenedSvd, CoreError> {
    scaled_svd_f64_with_solver(w, scales, k, SvdSolver::Exact)
}

/// [`scaled_svd_f64`] with a choice of [`SvdSolver`].
pub fn scaled_svd_f64_with_solver(
    w: MatRef<'_, f64>,
    scales: &[f64],
    k: usize,
    solver: SvdSolver,
) -> Result<WhitenedSvd, CoreError> {
    check_shape(
        "scaled_svd: scales vs weight columns",
        (w.ncols(), 1),
        (scales.len(), 1),
    )?;
    if let Some(j) = scales.iter().position(|s| !(s.is_finite() && *s > 0.0)) {
        return Err(CoreError::Parameter {
            name: "scales".into(),
            detail: format!("scale {j} = {} is not finite and positive", scales[j]),
        });
    }
    truncated_svd(w, Whitening::Diagonal(scales), k, solver)
}

/// ASVD's input-channel scales `s_j = (Σ_t |x_tj| / T)^α` (§2.7, "abs_mean", default
/// `α = 0.5`). A channel whose mean is zero (dead on the calibration set) gets the smallest
/// positive scale of the others (1 if all are zero): its input never moves, so any positive
/// value leaves the output unchanged, and a small one keeps its weight column from taking
/// rank away from live channels while keeping `S⁻¹` finite.
pub fn asvd_scales(abs_sums: &[f64], tokens: u64, alpha: f64) -> Result<Vec<f64>, CoreError> {
    if tokens == 0 {
        return Err(CoreError::MissingStats(
            "ASVD needs per-channel absolute sums over at least one token".into(),
        ));
    }
    if !alpha.is_finite() || alpha < 0.0 {
        return Err(CoreError::Parameter {
            name: "alpha".into(),
            detail: format!("must be finite and ≥ 0, got {alpha}"),
        });
    }
    if let Some(j) = abs_sums.iter().position(|a| !(a.is_finite() && *a >= 0.0)) {
        return Err(CoreError::Numerical {
            what: "ASVD scales".into(),
            detail: format!("abs_sums[{j}] = {} is not finite and ≥ 0", abs_sums[j]),
        });
    }
    let mut s: Vec<f64> = abs_sums
        .iter()
        .map(|a| (a / tokens as f64).powf(alpha))
        .collect();
    let floor = s
        .iter()
        .copied()
        .filter(|v| *v > 0.0 && v.is_finite())
        .fold(f64::INFINITY, f64::min);
    let floor = if floor.is_finite() { floor } else { 1.0 };
    let mut dead = 0usize;
    for v in &mut s {
        if !(*v > 0.0 && v.is_finite()) {
            *v = floor;
            dead += 1;
        }
    }
    if dead > 0 {
        tracing::warn!(
            dead,
            floor,
            "ASVD: zero-activation channels given the smallest positive scale"
        );
    }
    Ok(s)
}

/// The whitening `L` of `A = W L`.
enum Whitening<'a> {
    Identity,
    Diagonal(&'a [f64]),
    Lower(MatRef<'a, f64>),
}

fn truncated_svd(
    w: MatRef<'_, f64>,
    whitening: Whitening<'_>,
    k: usize,
    solver: SvdSolver,
) -> Result<WhitenedSvd, CoreError> {
    solver.validate()?;
    let (m, n) = w.shape();
    let r = m.min(n);
    if k == 0 || k > r {
        return Err(CoreError::Parameter {
            name: "rank".into(),
            detail: format!("k = {k} must be in 1..={r} for a {m}×{n} weight"),
        });
    }
    check_finite(w, "truncated SVD: weight")?;

    let a = match &whitening {
        Whitening::Identity => w.to_owned(),
        Whitening::Diagonal(s) => Mat::<f64>::from_fn(m, n, |i, j| w[(i, j)] * s[j]),
        Whitening::Lower(l) => mul_lower(w, *l),
    };
    let (u_k, sigma, mut vp, whitened_energy) = match solver {
        SvdSolver::Exact => {
            let ThinSvd { u, sigma, v } = thin_svd(a.as_ref())?;
            let u_k = u.as_ref().subcols(0, k).to_owned();
            (u_k, sigma, v.as_ref().subcols(0, k).to_owned(), None)
        }
        SvdSolver::Randomized {
            oversample,
            power_iters,
            seed,
        } => {
            let energy = a.squared_norm_l2();
            let PartialSvd { u, sigma, v } =
                randomized_svd(a.as_ref(), k, oversample, power_iters, seed)?;
            (u, sigma, v, Some(energy))
        }
    };
    // V' (n × k) with V'ᵀ = V_kᵀ L⁻¹, i.e. Lᵀ V' = V_k.
    match &whitening {
        Whitening::Identity => {}
        Whitening::Diagonal(s) => {
            for c in 0..k {
                for (j, sj) in s.iter().enumerate() {
                    vp[(j, c)] /= sj;
                }
            }
        }
        Whitening::Lower(l) => solve_upper_triangular_in_place(l.transpose(), vp.as_mut(), par()),
    }
    let vpt = vp.transpose().to_owned();
    check_finite(vpt.as_ref(), "truncated SVD: V_kᵀ L⁻¹")?;
    Ok(WhitenedSvd {
        u: u_k,
        sigma,
        vpt,
        cholesky: None,
        whitened_energy,
    })
}

/// A thin SVD `A = U diag(σ) Vᵀ`, σ descending.
struct ThinSvd {
    u: Mat<f64>,
    sigma: Vec<f64>,
    v: Mat<f64>,
}

/// Thin SVD of `a` in f64.
fn thin_svd(a: MatRef<'_, f64>) -> Result<ThinSvd, CoreError> {
    let (m, n) = a.shape();
    let r = m.min(n);
    let mut u = Mat::<f64>::zeros(m, r);
    let mut v = Mat::<f64>::zeros(n, r);
    let mut s = Diag::<f64>::zeros(r);
    // The SVD's result depends on its parallel degree: a fixed one keeps outputs bit-identical
    // whatever the thread count.
    let par = llm_compress_core::par_deterministic();
    let mut mem = MemBuffer::new(svd_scratch::<f64>(
        m,
        n,
        ComputeSvdVectors::Thin,
        ComputeSvdVectors::Thin,
        par,
        Default::default(),
    ));
    svd(
        a,
        s.as_mut(),
        Some(u.as_mut()),
        Some(v.as_mut()),
        par,
        MemStack::new(&mut mem),
        Default::default(),
    )
    .map_err(|e| CoreError::Numerical {
        what: "thin SVD".into(),
        detail: format!("{e:?}"),
    })?;
    let sv = s.column_vector();
    let sigma: Vec<f64> = (0..r).map(|i| sv[i]).collect();
    Ok(ThinSvd { u, sigma, v })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_out_of_range_is_a_parameter_error() {
        let w = Mat::<f64>::identity(3, 4);
        for k in [0, 4] {
            assert!(matches!(
                plain_svd_f64(w.as_ref(), k),
                Err(CoreError::Parameter { .. })
            ));
        }
        assert!(plain_svd_f64(w.as_ref(), 3).is_ok());
    }

    #[test]
    fn full_rank_plain_svd_reconstructs_exactly() {
        // k = min(m, n): W' = W to 1e-12 relative.
        let w = Mat::<f64>::from_fn(4, 6, |i, j| ((i * 5 + j * 3) % 7) as f64 - 3.0 + i as f64);
        let f = plain_svd_f64(w.as_ref(), 4).unwrap();
        let err = (&f.reconstruct() - &w).norm_l2() / w.norm_l2();
        assert!(err < 1e-12, "{err}");
        assert_eq!(f.dropped_energy(), 0.0);
        assert_eq!(f.sigma.len(), 4);
    }

    #[test]
    fn asvd_scales_guard_dead_channels() {
        let s = asvd_scales(&[4.0, 0.0, 16.0], 4, 0.5).unwrap();
        assert_eq!(s, vec![1.0, 1.0, 2.0]);
        let s = asvd_scales(&[0.0, 0.0], 4, 0.5).unwrap();
        assert_eq!(s, vec![1.0, 1.0]);
        assert!(asvd_scales(&[1.0], 0, 0.5).is_err());
        assert!(asvd_scales(&[f64::NAN], 1, 0.5).is_err());
        let w = Mat::<f64>::identity(2, 2);
        assert!(scaled_svd_f64(w.as_ref(), &[1.0, 0.0], 1).is_err());
    }
}
