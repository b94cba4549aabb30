//! Robust Cholesky factorisation of a calibration Gram — ALGORITHMS.md §1.2.
//!
//! Computes a lower-triangular `L` with `L Lᵀ = G` (`chol(A)` of §0.1) for an un-normalised,
//! symmetric positive semi-definite Gram `G = X Xᵀ` in f64, never failing on the two
//! situations real calibration data produces:
//!
//! 1. **Dead input channels** (`G_jj == 0`, an input that is zero on every calibration token,
//!    so row and column `j` are zero): the SparseGPT trick of §1.2 sets `G_jj = 1`. The
//!    channel's contribution to the output error is zero whatever `L_jj` is, so this changes no
//!    output, only makes `G` invertible.
//! 2. **Rank deficiency** (fewer tokens than channels, collinear channels): the eigen-shift of
//!    the `robust_chol` pseudo-code of §1.2, `A ← A + (−λ_min + ε)·I`, so that the smallest
//!    eigenvalue becomes `ε`, with the relative floor recommended there:
//!    `ε = max(eps_abs, eps_rel · trace(G)/n)` (defaults `1e-6` and `1e-8`). The absolute
//!    `1e-6` of the reference code alone is meaningless on un-normalised Grams.
//!
//! A factorisation that "succeeds" with a pivot `L_jj² < eps_rel · trace(G)/n` is treated as
//! failed: such a pivot is roundoff on a numerically singular Gram, and `L⁻¹` (applied through
//! triangular solves by the whitened SVD) would amplify it. Since every Cholesky pivot is at
//! least `λ_min`, this only ever fires when `λ_min < ε`, i.e. exactly when the shift is due.
//! If the shifted factorisation still fails (it should not in f64), the floor is multiplied by
//! 10 and the shift recomputed, up to [`CholeskyOptions::max_retries`] times.
//!
//! Every fallback is logged with `tracing::warn!` and recorded in the [`CholeskyReport`].

use crate::util::{check_finite, check_shape};
use faer::diag::Diag;
use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::cholesky::llt::factor::{
    cholesky_in_place, cholesky_in_place_scratch, LltRegularization,
};
use faer::linalg::evd::{self_adjoint_evd, self_adjoint_evd_scratch, ComputeEigenvectors};
use faer::{Mat, MatRef};
use llm_compress_core::{par, CoreError};

/// Tuning of [`robust_cholesky`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CholeskyOptions {
    /// Absolute floor of the smallest eigenvalue after an eigen-shift (SVD-LLM's `1e-6`).
    pub eps_abs: f64,
    /// Relative floor, times `trace(G)/n` (the mean eigenvalue). Also the threshold below which
    /// a Cholesky pivot `L_jj²` counts as a failure.
    pub eps_rel: f64,
    /// Set `G_jj = 1` where `G_jj == 0` before factorising (§1.2's first fix).
    pub fix_dead_channels: bool,
    /// How many times the floor may be multiplied by 10 if a shifted factorisation still fails.
    pub max_retries: usize,
}

impl Default for CholeskyOptions {
    fn default() -> Self {
        Self {
            eps_abs: 1e-6,
            eps_rel: 1e-8,
            fix_dead_channels: true,
            max_retries: 6,
        }
    }
}

/// What [`robust_cholesky`] did to obtain its factor.
#[derive(Clone, Debug, PartialEq)]
pub struct CholeskyReport {
    /// Dimension `n` of the Gram.
    pub dim: usize,
    /// Number of diagonal entries `G_jj == 0` that were set to 1.
    pub dead_channels: usize,
    /// The eigenvalue floor `ε = max(eps_abs, eps_rel · trace/n)` (trace after the dead-channel
    /// fix).
    pub eps: f64,
    /// The plain Cholesky of the (dead-channel-fixed) Gram succeeded on the first attempt.
    pub direct: bool,
    /// Why the direct factorisation was rejected, if it was.
    pub failure: Option<String>,
    /// The smallest eigenvalue of the (dead-channel-fixed) Gram, when the fallback computed it.
    pub lambda_min: Option<f64>,
    /// The amount added to the diagonal by the eigen-shift (0 when none).
    pub shift: f64,
    /// Number of Cholesky factorisations attempted (1 when `direct`).
    pub attempts: usize,
}

impl CholeskyReport {
    /// Whether the factor is of a matrix other than the input Gram (dead-channel fix or shift).
    pub fn regularised(&self) -> bool {
        self.dead_channels > 0 || self.shift != 0.0
    }
}

/// Factor a symmetric PSD Gram `G` (`n × n`, f64; only its lower triangle is read) as
/// `G ≈ L Lᵀ` with `L` lower triangular, following ALGORITHMS.md §1.2 (see the module docs).
///
/// Errors: [`CoreError::Shape`] if `G` is not square, [`CoreError::Parameter`] for invalid
/// options, [`CoreError::Numerical`] if `G` has a non-finite entry or every retry failed.
pub fn robust_cholesky(
    g: MatRef<'_, f64>,
    opts: &CholeskyOptions,
) -> Result<(Mat<f64>, CholeskyReport), CoreError> {
    let n = g.nrows();
    check_shape("robust_cholesky: Gram", (n, n), (n, g.ncols()))?;
    check_options(opts)?;
    check_finite(g, "robust_cholesky: Gram")?;

    // The diagonal after the dead-channel fix (the factorisations apply the same fix). The
    // direct attempt reads `g` itself: no n × n copy besides the factor (for an 11008-wide
    // Gram a copy is 0.9 GiB).
    let fix = |v: f64| {
        if opts.fix_dead_channels && v == 0.0 {
            1.0
        } else {
            v
        }
    };
    let dead_channels = if opts.fix_dead_channels {
        (0..n).filter(|&j| g[(j, j)] == 0.0).count()
    } else {
        0
    };
    if dead_channels > 0 {
        tracing::warn!(
            dead_channels,
            dim = n,
            "robust_cholesky: zero diagonal entries (dead input channels) set to 1"
        );
    }

    let trace: f64 = (0..n).map(|j| fix(g[(j, j)])).sum();
    let mean_eig = if n > 0 { trace / n as f64 } else { 0.0 };
    let eps = opts.eps_abs.max(opts.eps_rel * mean_eig);
    let mut report = CholeskyReport {
        dim: n,
        dead_channels,
        eps,
        direct: false,
        failure: None,
        lambda_min: None,
        shift: 0.0,
        attempts: 1,
    };

    let failure = match try_llt(g, opts.fix_dead_channels, opts.eps_rel * mean_eig) {
        Ok(l) => {
            report.direct = true;
            return Ok((l, report));
        }
        Err(reason) => reason,
    };
    tracing::warn!(
        dim = n,
        reason = %failure,
        "robust_cholesky: Cholesky failed, falling back to an eigen-shift"
    );
    report.failure = Some(failure);
    // Symmetric copy built from the lower triangle, dead channels fixed.
    let a = Mat::<f64>::from_fn(n, n, |i, j| {
        if i == j {
            fix(g[(i, i)])
        } else if i > j {
            g[(i, j)]
        } else {
            g[(j, i)]
        }
    });

    let lambda_min = smallest_eigenvalue(a.as_ref())?;
    report.lambda_min = Some(lambda_min);

    for retry in 0..=opts.max_retries {
        let floor = eps * 10f64.powi(retry as i32);
        // Shift so that λ_min becomes `floor`; if roundoff already put the computed λ_min above
        // the floor (the factorisation failed anyway), add the floor itself.
        let shift = if lambda_min < floor {
            floor - lambda_min
        } else {
            floor
        };
        let mut shifted = a.clone();
        for j in 0..n {
            shifted[(j, j)] += shift;
        }
        report.attempts += 1;
        report.shift = shift;
        tracing::warn!(
            dim = n,
            lambda_min,
            eps = floor,
            shift,
            "robust_cholesky: eigen-shift applied"
        );
        // After the shift every pivot is ≥ λ_min = floor in exact arithmetic.
        match try_llt(shifted.as_ref(), false, 0.5 * floor) {
            Ok(l) => return Ok((l, report)),
            Err(reason) => tracing::warn!(
                dim = n,
                reason = %reason,
                "robust_cholesky: shifted Cholesky failed, raising the floor ×10"
            ),
        }
    }
    Err(CoreError::Numerical {
        what: "robust_cholesky".into(),
        detail: format!(
            "Cholesky failed even after {} eigen-shifts (λ_min = {lambda_min:e}, ε = {eps:e})",
            opts.max_retries + 1
        ),
    })
}

fn check_options(opts: &CholeskyOptions) -> Result<(), CoreError> {
    let ok = |v: f64| v.is_finite() && v >= 0.0;
    if !ok(opts.eps_abs) || !ok(opts.eps_rel) || opts.eps_abs.max(opts.eps_rel) == 0.0 {
        return Err(CoreError::Parameter {
            name: "CholeskyOptions".into(),
            detail: format!(
                "eps_abs ({}) and eps_rel ({}) must be finite, ≥ 0, and not both 0",
                opts.eps_abs, opts.eps_rel
            ),
        });
    }
    Ok(())
}

/// Cholesky of the symmetric `a` (lower triangle read; with `fix_dead`, zero diagonal entries
/// taken as 1); rejects non-positive pivots, pivots `L_jj² < min_pivot_sq` and non-finite
/// factors.
fn try_llt(a: MatRef<'_, f64>, fix_dead: bool, min_pivot_sq: f64) -> Result<Mat<f64>, String> {
    let n = a.nrows();
    let mut l = Mat::<f64>::zeros(n, n);
    l.copy_from_triangular_lower(a);
    if fix_dead {
        for j in 0..n {
            if l[(j, j)] == 0.0 {
                l[(j, j)] = 1.0;
            }
        }
    }
    let par = par();
    let mut mem = MemBuffer::new(cholesky_in_place_scratch::<f64>(n, par, Default::default()));
    cholesky_in_place(
        l.as_mut(),
        LltRegularization::default(),
        par,
        MemStack::new(&mut mem),
        Default::default(),
    )
    .map_err(|e| format!("non-positive pivot ({e:?})"))?;
    for j in 0..n {
        for i in 0..j {
            l[(i, j)] = 0.0;
        }
    }
    for j in 0..n {
        let d = l[(j, j)];
        if d.is_nan() || d * d < min_pivot_sq {
            return Err(format!(
                "pivot {j} is numerically zero (L_jj² = {:e} < {min_pivot_sq:e})",
                d * d
            ));
        }
    }
    if !l.as_ref().is_all_finite() {
        return Err("non-finite factor".into());
    }
    Ok(l)
}

/// Smallest eigenvalue of the symmetric `a`.
fn smallest_eigenvalue(a: MatRef<'_, f64>) -> Result<f64, CoreError> {
    let n = a.nrows();
    if n == 0 {
        return Ok(0.0);
    }
    // Degree-sensitive: a fixed degree keeps results bit-identical whatever the thread count.
    let par = llm_compress_core::par_deterministic();
    let mut s = Diag::<f64>::zeros(n);
    let mut mem = MemBuffer::new(self_adjoint_evd_scratch::<f64>(
        n,
        ComputeEigenvectors::No,
        par,
        Default::default(),
    ));
    self_adjoint_evd(
        a,
        s.as_mut(),
        None,
        par,
        MemStack::new(&mut mem),
        Default::default(),
    )
    .map_err(|e| CoreError::Numerical {
        what: "robust_cholesky: eigenvalues".into(),
        detail: format!("{e:?}"),
    })?;
    let v = s.column_vector();
    Ok((0..n).map(|i| v[i]).fold(f64::INFINITY, f64::min))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spd_matrix_factors_directly_and_exactly() {
        // G = B Bᵀ + I, a well-conditioned SPD matrix; tolerance 1e-12 relative on L Lᵀ = G.
        let b = Mat::<f64>::from_fn(5, 5, |i, j| ((i * 7 + j * 3) % 5) as f64 - 2.0);
        let mut g = crate::util::mul(b.as_ref(), b.transpose());
        for j in 0..5 {
            g[(j, j)] += 1.0;
        }
        let (l, rep) = robust_cholesky(g.as_ref(), &CholeskyOptions::default()).unwrap();
        assert!(rep.direct && !rep.regularised() && rep.attempts == 1);
        let r = crate::util::mul(l.as_ref(), l.transpose());
        let err = (&r - &g).norm_l2() / g.norm_l2();
        assert!(err < 1e-12, "{err}");
        for j in 0..5 {
            for i in 0..j {
                assert_eq!(l[(i, j)], 0.0);
            }
        }
    }

    #[test]
    fn negative_definite_part_is_shifted_to_eps() {
        // diag(4, 1, -1): λ_min = -1, floor = max(1e-6, 1e-8·4/3) = 1e-6, shift = 1 + 1e-6.
        let g = Mat::<f64>::from_fn(3, 3, |i, j| match (i, j) {
            (0, 0) => 4.0,
            (1, 1) => 1.0,
            (2, 2) => -1.0,
            _ => 0.0,
        });
        let (l, rep) = robust_cholesky(g.as_ref(), &CholeskyOptions::default()).unwrap();
        assert!(!rep.direct);
        assert!((rep.lambda_min.unwrap() + 1.0).abs() < 1e-12);
        assert!((rep.shift - (1.0 + 1e-6)).abs() < 1e-12);
        assert!((l[(2, 2)] * l[(2, 2)] - 1e-6).abs() < 1e-12);
    }

    #[test]
    fn invalid_input_is_an_error() {
        let mut g = Mat::<f64>::identity(3, 3);
        g[(1, 0)] = f64::NAN;
        assert!(matches!(
            robust_cholesky(g.as_ref(), &CholeskyOptions::default()),
            Err(CoreError::Numerical { .. })
        ));
        let g = Mat::<f64>::zeros(3, 2);
        assert!(matches!(
            robust_cholesky(g.as_ref(), &CholeskyOptions::default()),
            Err(CoreError::Shape { .. })
        ));
        let opts = CholeskyOptions {
            eps_abs: 0.0,
            eps_rel: 0.0,
            ..Default::default()
        };
        assert!(matches!(
            robust_cholesky(Mat::<f64>::identity(2, 2).as_ref(), &opts),
            Err(CoreError::Parameter { .. })
        ));
    }
}
