//! Scored singular bases of one weight — ALGORITHMS.md §5.8 ("exact additive score").
//!
//! A weight is written as a sum of rank-one bases `W = Σ_i σ_i u_i v_iᵀ` with orthonormal
//! `u_i`. With the target application's input Gram `G = X Xᵀ`, dropping any set `P` of bases
//! raises the output error on those inputs by exactly
//!
//! ```text
//! ‖(W − W_keep) X‖_F² = Σ_{i∈P} σ_i² · v_iᵀ G v_i          (§5.8)
//! ```
//!
//! because the cross terms carry `u_iᵀ u_j = 0`. So `score_i = σ_i² v_iᵀ G v_i` is additive and
//! the whole basis scores `Σ_i score_i = tr(W G Wᵀ) = ‖W X‖_F²`, the output energy.
//!
//! Two families of bases are offered:
//! - [`plain_bases`]: the plain SVD of `W` (Basel's pretrained bases, §5.1); `v_i` orthonormal.
//! - [`whitened_bases`]: the SVD-LLM bases (§1.3) `W L = U Σ Vᵀ`, `v'_i = L⁻ᵀ v_i`, so that
//!   `W = Σ σ_i u_i v'_iᵀ`. Scored on the Gram `L` came from, `score_i = σ_i²`.
//!
//! Both reuse `llm-compress-whitening-svd`'s f64 SVD; everything here is f64 and the factors are
//! cast to f32 only by [`Coefficients::to_linear`].

use faer::linalg::matmul::matmul;
use faer::prelude::Solve;
use faer::{Accum, Mat, MatRef, Side};
use llm_compress_core::{par, CoreError, Linear};
use llm_compress_whitening_svd::{plain_svd_f64, whitened_svd_with_cholesky, WhitenedSvd};

/// A complete set of `r = min(m, n)` rank-one bases of a weight with their scores.
#[derive(Clone, Debug)]
pub struct ScoredBases {
    /// `u_i` as columns (`m × r`, orthonormal), `σ_i` (descending) and `v_iᵀ` as rows of
    /// `vpt` (`r × n`; for whitened bases `V_rᵀ L⁻¹`), so that `W = Σ σ_i u_i v_iᵀ`.
    pub svd: WhitenedSvd,
    /// `score_i = σ_i² · v_iᵀ G v_i` (§5.8), or `σ_i²` when no Gram was given.
    pub scores: Vec<f64>,
}

impl ScoredBases {
    /// Number of bases `r`.
    pub fn len(&self) -> usize {
        self.scores.len()
    }

    /// True when the weight has no bases (never, for a valid weight).
    pub fn is_empty(&self) -> bool {
        self.scores.is_empty()
    }

    /// `Σ_i score_i`: with a Gram, the output energy `‖W X‖_F² = tr(W G Wᵀ)` (§5.8).
    pub fn total_score(&self) -> f64 {
        self.scores.iter().sum()
    }

    /// The kept bases `idx` with their SVD coefficients `σ_i`.
    pub fn keep(&self, idx: &[usize]) -> Result<Coefficients, CoreError> {
        let r = self.len();
        if let Some(&bad) = idx.iter().find(|&&i| i >= r) {
            return Err(CoreError::Parameter {
                name: "basis index".into(),
                detail: format!("{bad} is out of range for {r} bases"),
            });
        }
        let (m, n) = self.svd.shape();
        let k = idx.len();
        Ok(Coefficients {
            u: Mat::<f64>::from_fn(m, k, |a, j| self.svd.u[(a, idx[j])]),
            coef: idx.iter().map(|&i| self.svd.sigma[i]).collect(),
            vt: Mat::<f64>::from_fn(k, n, |j, b| self.svd.vpt[(idx[j], b)]),
        })
    }
}

/// A weight approximation `W' = U diag(c) Vᵀ = Σ_j c_j u_j v_jᵀ` over chosen bases.
#[derive(Clone, Debug)]
pub struct Coefficients {
    /// `m × k`.
    pub u: Mat<f64>,
    /// `k` coefficients.
    pub coef: Vec<f64>,
    /// `k × n`.
    pub vt: Mat<f64>,
}

impl Coefficients {
    /// The rank `k`.
    pub fn rank(&self) -> usize {
        self.coef.len()
    }

    /// `W' = U diag(c) Vᵀ` (`m × n`).
    pub fn reconstruct(&self) -> Mat<f64> {
        let scaled = Mat::<f64>::from_fn(self.u.nrows(), self.rank(), |a, j| {
            self.u[(a, j)] * self.coef[j]
        });
        mul(scaled.as_ref(), self.vt.as_ref())
    }

    /// Append other bases (e.g. [`residual_bases`]).
    pub fn append(&self, other: &Coefficients) -> Result<Coefficients, CoreError> {
        let (m, n) = (self.u.nrows(), self.vt.ncols());
        if (other.u.nrows(), other.vt.ncols()) != (m, n) {
            return Err(CoreError::Shape {
                what: "appended bases".into(),
                expected: (m, n),
                got: (other.u.nrows(), other.vt.ncols()),
            });
        }
        let (k1, k2) = (self.rank(), other.rank());
        Ok(Coefficients {
            u: Mat::<f64>::from_fn(m, k1 + k2, |a, j| {
                if j < k1 {
                    self.u[(a, j)]
                } else {
                    other.u[(a, j - k1)]
                }
            }),
            coef: self.coef.iter().chain(&other.coef).copied().collect(),
            vt: Mat::<f64>::from_fn(k1 + k2, n, |j, b| {
                if j < k1 {
                    self.vt[(j, b)]
                } else {
                    other.vt[(j - k1, b)]
                }
            }),
        })
    }

    /// Two skinny f32 linears (§1.4): `first = diag(√|c|) Vᵀ` (`k × n`) and
    /// `second = U diag(sign(c)·√|c|)` (`m × k`); for `c = σ` this is SVD-LLM's square-root split.
    /// Errors with [`CoreError::Numerical`] if a factor is not finite in f32, and with
    /// [`CoreError::Parameter`] for rank 0.
    pub fn to_linear(&self) -> Result<Linear, CoreError> {
        let k = self.rank();
        if k == 0 {
            return Err(CoreError::Parameter {
                name: "rank".into(),
                detail: "a low-rank linear needs at least one basis".into(),
            });
        }
        let root: Vec<f64> = self.coef.iter().map(|c| c.abs().sqrt()).collect();
        let first = Mat::<f32>::from_fn(k, self.vt.ncols(), |j, b| {
            (root[j] * self.vt[(j, b)]) as f32
        });
        let second = Mat::<f32>::from_fn(self.u.nrows(), k, |a, j| {
            (self.u[(a, j)] * root[j] * self.coef[j].signum()) as f32
        });
        if !(first.as_ref().is_all_finite() && second.as_ref().is_all_finite()) {
            return Err(CoreError::Numerical {
                what: "basis-select factors".into(),
                detail: "a value is not finite in f32".into(),
            });
        }
        Linear::low_rank(Linear::Dense(first), Linear::Dense(second))
    }
}

fn mul(a: MatRef<'_, f64>, b: MatRef<'_, f64>) -> Mat<f64> {
    let mut out = Mat::<f64>::zeros(a.nrows(), b.ncols());
    matmul(out.as_mut(), Accum::Replace, a, b, 1.0f64, par());
    out
}

fn check_gram(g: MatRef<'_, f64>, n: usize) -> Result<(), CoreError> {
    if g.shape() != (n, n) {
        return Err(CoreError::Shape {
            what: "basis scores: Gram vs weight columns".into(),
            expected: (n, n),
            got: g.shape(),
        });
    }
    if !g.is_all_finite() {
        return Err(CoreError::Numerical {
            what: "basis scores: Gram".into(),
            detail: "contains a non-finite value".into(),
        });
    }
    Ok(())
}

/// `score_i = σ_i² · v_iᵀ G v_i` for bases given as `σ` and rows `v_iᵀ` of `vt` (§5.8),
/// computing `Vᵀ G` once (`r × n` by `n × n`).
pub fn basis_scores(
    sigma: &[f64],
    vt: MatRef<'_, f64>,
    g: MatRef<'_, f64>,
) -> Result<Vec<f64>, CoreError> {
    check_gram(g, vt.ncols())?;
    let vtg = mul(vt, g);
    Ok((0..vt.nrows())
        .map(|i| {
            let quad: f64 = (0..vt.ncols()).map(|b| vtg[(i, b)] * vt[(i, b)]).sum();
            sigma[i] * sigma[i] * quad
        })
        .collect())
}

/// The output energy `‖W X‖_F² = tr(W G Wᵀ)` of an f32 weight on inputs with Gram `G`.
pub fn output_energy(w: MatRef<'_, f32>, g: MatRef<'_, f64>) -> Result<f64, CoreError> {
    check_gram(g, w.ncols())?;
    let w64 = Mat::<f64>::from_fn(w.nrows(), w.ncols(), |i, j| w[(i, j)] as f64);
    let wg = mul(w64.as_ref(), g);
    Ok((0..w.nrows())
        .map(|a| {
            (0..w.ncols())
                .map(|b| wg[(a, b)] * w64[(a, b)])
                .sum::<f64>()
        })
        .sum())
}

fn widen(w: MatRef<'_, f32>) -> Mat<f64> {
    Mat::<f64>::from_fn(w.nrows(), w.ncols(), |i, j| w[(i, j)] as f64)
}

/// The full plain SVD of `W` (Basel's pretrained bases), scored on the target Gram `G`
/// (`score_i = σ_i² v_iᵀ G v_i`), or by `σ_i²` alone without a Gram (then selection by score
/// is plain SVD truncation).
pub fn plain_bases(
    w: MatRef<'_, f32>,
    g: Option<MatRef<'_, f64>>,
) -> Result<ScoredBases, CoreError> {
    let r = w.nrows().min(w.ncols());
    let svd = plain_svd_f64(widen(w).as_ref(), r)?;
    let scores = match g {
        Some(g) => basis_scores(&svd.sigma, svd.vpt.as_ref(), g)?,
        None => svd.sigma.iter().map(|s| s * s).collect(),
    };
    Ok(ScoredBases { svd, scores })
}

/// The full whitened SVD of `W` with the lower Cholesky factor `L` of a Gram (SVD-LLM's bases,
/// §1.3), scored on `G` (`σ_i²` when `G = L Lᵀ`; pass the Gram actually measured, so that a
/// regularised `L` is scored honestly).
pub fn whitened_bases(
    w: MatRef<'_, f32>,
    l: MatRef<'_, f64>,
    g: MatRef<'_, f64>,
) -> Result<ScoredBases, CoreError> {
    let r = w.nrows().min(w.ncols());
    let svd = whitened_svd_with_cholesky(widen(w).as_ref(), l, r)?;
    let scores = basis_scores(&svd.sigma, svd.vpt.as_ref(), g)?;
    Ok(ScoredBases { svd, scores })
}

/// Residual bases without training (§5.8, "new bases"): the whitened SVD of
/// `W − W_keep` with the Cholesky factor `L` of the target Gram, truncated to `r_add`, i.e. the
/// output-optimal rank-`r_add` correction of what selection dropped.
pub fn residual_bases(
    w: MatRef<'_, f32>,
    kept: &Coefficients,
    l: MatRef<'_, f64>,
    r_add: usize,
) -> Result<Coefficients, CoreError> {
    let mut resid = widen(w);
    resid -= kept.reconstruct();
    let svd = whitened_svd_with_cholesky(resid.as_ref(), l, r_add)?;
    Ok(Coefficients {
        coef: svd.sigma[..r_add].to_vec(),
        u: svd.u,
        vt: svd.vpt,
    })
}

/// Closed-form refit of the coefficients (§5.8): `c = argmin_c ‖(W − U diag(c) Vᵀ) X‖_F`.
///
/// Normal equations `M c = b` with `M_ij = (u_iᵀu_j)(v_iᵀ G v_j)` and `b_i = u_iᵀ W G v_i`,
/// solved by Cholesky with a ridge of `1e-12·trace(M)/k`. For plain-SVD bases alone the `u_i`
/// are orthonormal and `u_iᵀW = σ_i v_iᵀ`, so `c = σ` (a no-op, as the spec says); it moves
/// once non-orthogonal residual bases are appended.
pub fn refit_coefficients(
    w: MatRef<'_, f32>,
    bases: &Coefficients,
    g: MatRef<'_, f64>,
) -> Result<Coefficients, CoreError> {
    let k = bases.rank();
    check_gram(g, w.ncols())?;
    if k == 0 {
        return Ok(bases.clone());
    }
    let gv = mul(g, bases.vt.transpose()); // n × k
    let vgv = mul(bases.vt.as_ref(), gv.as_ref()); // k × k
    let utu = mul(bases.u.transpose(), bases.u.as_ref()); // k × k
    let utw = mul(bases.u.transpose(), widen(w).as_ref()); // k × n
    let mut m = Mat::<f64>::from_fn(k, k, |i, j| utu[(i, j)] * vgv[(i, j)]);
    let b = Mat::<f64>::from_fn(k, 1, |i, _| {
        (0..w.ncols()).map(|a| utw[(i, a)] * gv[(a, i)]).sum()
    });
    let trace: f64 = (0..k).map(|i| m[(i, i)]).sum();
    let ridge = 1e-12 * trace.max(f64::MIN_POSITIVE) / k as f64;
    for i in 0..k {
        m[(i, i)] += ridge;
    }
    let llt = m.llt(Side::Lower).map_err(|e| CoreError::Numerical {
        what: "coefficient refit".into(),
        detail: format!("normal equations not positive definite: {e:?}"),
    })?;
    let c = llt.solve(b.as_ref());
    if !c.as_ref().is_all_finite() {
        return Err(CoreError::Numerical {
            what: "coefficient refit".into(),
            detail: "solution is not finite".into(),
        });
    }
    Ok(Coefficients {
        u: bases.u.clone(),
        coef: (0..k).map(|i| c[(i, 0)]).collect(),
        vt: bases.vt.clone(),
    })
}
