//! The choice of SVD solver for the truncated SVDs of this crate, and a randomized truncated
//! SVD (Halko, Martinsson & Tropp 2011, "Finding structure with randomness", SIAM Review 53(2);
//! below "HMT") for the rank that is kept — the opt-in of ALGORITHMS.md §7.4.
//!
//! [`SvdSolver::Exact`] (the default) is the full f64 thin SVD of the whitened weight
//! `A = W L` (§1.3). [`SvdSolver::Randomized`] computes only the leading `k` triplets of the
//! `m × n` matrix `A`, in f64. The code works on the orientation whose rows are the short side
//! (`A` if `m ≤ n`, else the view `Aᵀ`), `r = min(m, n)` rows and `c = max(m, n)` columns:
//!
//! ```text
//! l  = min(k + p, r)                        oversampled sketch size               (HMT §4.2)
//! H  = A Aᵀ                                 r × r, once (SYRK)
//! Ω  ~ N(0, 1)^{r × l}, seeded              Gaussian test matrix                  (HMT Alg. 4.1)
//! Y  = H Ω                                  range finder
//! repeat q times:  Y = H · lu(Y)            subspace iteration, LU-normalised     (HMT Alg. 4.4, §4.5)
//! Q  = orth(Y)                              orthonormal basis, once
//! T  = Qᵀ H Q  (= B Bᵀ, B = Qᵀ A)           l × l                                 (HMT Alg. 5.3 / 5.1 step 1)
//! T  = U_T Λ U_Tᵀ;  U = Q U_T[:, top k]     small symmetric eigenproblem          (HMT Alg. 5.3)
//! σ̃ᵢ vᵢ = Aᵀ uᵢ,  σ̃ᵢ = ‖Aᵀ uᵢ‖               right vectors from A itself           (HMT Alg. 5.1 steps 2–3)
//! ```
//!
//! (`orth` = Householder QR, thin Q; `lu(Y)` = `Pᵀ L` of the pivoted LU `P Y = L U`.) This is
//! HMT's subspace iteration (Alg. 4.4: `Y = (A Aᵀ)^q A Ω`, normalised after each application of
//! `A Aᵀ`) run on the Gram `H = A Aᵀ`, with HMT's Algorithm 5.3 (the direct eigendecomposition
//! of a Hermitian matrix) for the small problem. The departures from the textbook form, and why:
//!
//! - **LU between iterations, QR once.** The normalisation between two products with `H` only
//!   has to keep the columns from collapsing onto the leading singular vector; its span is all
//!   that matters (HMT §4.5). `Pᵀ L` has the span of `Y` and entries `|L_ij| ≤ 1`, at a quarter
//!   of the flops of a Householder QR with its explicit `Q` (`r l² − l³/3` against
//!   `4 r l² − 4 l³/3`); only the final basis must be orthonormal. scikit-learn's and fbpca's
//!   randomized SVDs normalise this way. On a 7B down projection this took the randomized
//!   factorisation from 35.6 s to 26.1 s with the triangular `W·L` (docs/scale.md).
//! - **The Gram `H` is formed once** (`r²c` flops as a SYRK). Then each subspace iteration is
//!   one `r × r` by `r × l` product (`2r²l`) and one orthonormalisation on the short side,
//!   instead of two `r × c` products (`4rcl`) and an orthonormalisation of a `c × l` matrix.
//!   On the 4096 × 22016 Basis Sharing matrix that is ≈ 5× fewer flops per iteration. The
//!   sketch is `H Ω = U Σ² Uᵀ Ω` instead of `A Ω' = U Σ Vᵀ Ω'` (`Uᵀ Ω` and `Vᵀ Ω'` are both
//!   Gaussian), i.e. half an iteration more than HMT's `q`: the iterate after `q` rounds is
//!   `(A Aᵀ)^{q+1} Ω`, whose range error decays like `(σ_{k+1}/σ_k)^{2q+2}` (HMT Cor. 10.10).
//! - **Eigendecomposition instead of an SVD of `B`** (HMT Alg. 5.1 step 2): `T` is `l × l`
//!   against an `l × c` SVD. Forming `A Aᵀ` squares the condition number: the computed
//!   directions of the kept singular values lose relative accuracy only where `σᵢ/σ₁` nears
//!   `√ε ≈ 1e-8` (HMT §5.5 and §6.3), far below the kept part of a whitened weight (SmolLM2:
//!   the k-th kept value is ≳ 1e-2 of the first). And it cannot break the identities below:
//!   the factors are not built from `√λ` but from `A` itself, `σ̃ᵢ vᵢ = Aᵀ uᵢ` exactly, with
//!   `uᵢ` orthonormal to working precision.
//! - **Sketch on the short side**, so that every orthonormalisation is of an `r × l` matrix.
//!
//! # What holds for the randomized output
//! With `P = U_k U_kᵀ` (`U_k = Q U_T[:, top k]`, orthonormal) an orthogonal projector, the
//! rank-`k` approximation is `A_k = U_k diag(σ̃) V_kᵀ = P A`, so
//!
//! ```text
//! ‖A − A_k‖_F² = ‖A‖_F² − ‖P A‖_F² = ‖A‖_F² − Σ_{i≤k} σ̃ᵢ²   ≥   Σ_{i>k} σᵢ²   (Eckart–Young)
//! ```
//!
//! and for SVD-LLM (`A = W L`, `L Lᵀ = X Xᵀ`) the calibration output error is still **exactly**
//! the reported dropped energy, `‖(W − W')X‖_F² = ‖A − A_k‖_F²` =
//! [`WhitenedSvd::dropped_energy`] (computed as total − kept, with `‖A‖_F²` taken from `A`
//! itself); it exceeds the optimum `Σ_{i>k}σᵢ²` of the exact solver by the randomized
//! method's approximation error (HMT Thm. 10.5–10.6 bound it; measured figures in
//! `docs/scale.md`). What no longer holds: the singular values past `k` are not computed
//! (`sigma` holds the `k` kept `σ̃ᵢ`), `σ̃ᵢ ≤ σᵢ` are only estimates of the exact values, and
//! `U_k`, `V_k` only approximate the exact singular vectors.
//!
//! Determinism: `Ω` comes from [`SplitMix64`] (Box–Muller) with one generator per column seeded
//! from `seed` and the column index, so the same seed gives bit-identical factors (the QR and
//! eigen solvers run at the fixed parallel degree of [`llm_compress_core::par_deterministic`]).
//!
//! [`WhitenedSvd::dropped_energy`]: crate::WhitenedSvd::dropped_energy

use crate::util::{check_finite, mul};
use faer::diag::Diag;
use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::evd::{self_adjoint_evd, self_adjoint_evd_scratch, ComputeEigenvectors};
use faer::linalg::householder::{
    apply_block_householder_sequence_on_the_left_in_place_scratch,
    apply_block_householder_sequence_on_the_left_in_place_with_conj,
};
use faer::linalg::lu::partial_pivoting::factor::{lu_in_place, lu_in_place_scratch};
use faer::linalg::matmul::triangular::{matmul as tri_matmul, BlockStructure};
use faer::linalg::qr::no_pivoting::factor::{
    qr_in_place, qr_in_place_scratch, recommended_block_size,
};
use faer::{Accum, Conj, Mat, MatRef};
use llm_compress_core::rng::SplitMix64;
use llm_compress_core::{par, CoreError};
use rayon::prelude::*;

/// How a truncated SVD computes its leading singular triplets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SvdSolver {
    /// The full f64 thin SVD (faer); every singular value is computed and the SVD-LLM identity
    /// `‖(W − W')X‖_F² = Σ_{i>k} σᵢ²` holds to working precision with the optimal `W'`.
    #[default]
    Exact,
    /// Randomized range finder with subspace iteration (HMT Alg. 4.4 + 5.1; module docs).
    Randomized {
        /// Extra sketch columns `p` beyond the kept rank (`l = min(k + p, min(m, n))`).
        oversample: usize,
        /// Subspace (power) iterations `q`; each costs two more products with `A` and two
        /// orthonormalisations. At most [`SvdSolver::MAX_POWER_ITERS`].
        power_iters: usize,
        /// Seed of the Gaussian test matrix.
        seed: u64,
    },
}

impl SvdSolver {
    /// Upper bound accepted for `power_iters` (more is never useful in f64: the subspace has
    /// converged to working precision long before, HMT §4.5).
    pub const MAX_POWER_ITERS: usize = 64;
    /// Default oversampling of [`SvdSolver::randomized`].
    pub const DEFAULT_OVERSAMPLE: usize = 128;
    /// Default subspace iterations of [`SvdSolver::randomized`].
    pub const DEFAULT_POWER_ITERS: usize = 4;
    /// Default seed of [`SvdSolver::randomized`].
    pub const DEFAULT_SEED: u64 = 0x5EED;

    /// The randomized solver with the defaults chosen from the measurements in
    /// `docs/scale.md`: oversample [`Self::DEFAULT_OVERSAMPLE`], power iterations
    /// [`Self::DEFAULT_POWER_ITERS`], seed [`Self::DEFAULT_SEED`].
    pub fn randomized() -> Self {
        Self::Randomized {
            oversample: Self::DEFAULT_OVERSAMPLE,
            power_iters: Self::DEFAULT_POWER_ITERS,
            seed: Self::DEFAULT_SEED,
        }
    }

    /// The solver named `s` (`exact`, `randomized`: the latter with the defaults), `None`
    /// otherwise.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "exact" => Some(Self::Exact),
            "randomized" => Some(Self::randomized()),
            _ => None,
        }
    }

    /// `"exact"` or `"randomized"`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Exact => "exact",
            Self::Randomized { .. } => "randomized",
        }
    }

    /// [`CoreError::Parameter`] unless the parameters are usable.
    pub fn validate(&self) -> Result<(), CoreError> {
        match *self {
            Self::Exact => Ok(()),
            Self::Randomized { power_iters, .. } if power_iters > Self::MAX_POWER_ITERS => {
                Err(CoreError::Parameter {
                    name: "power_iters".into(),
                    detail: format!(
                        "{power_iters} subspace iterations; at most {} are accepted",
                        Self::MAX_POWER_ITERS
                    ),
                })
            }
            Self::Randomized { .. } => Ok(()),
        }
    }
}

/// The leading `k` singular triplets of a matrix, computed by [`randomized_svd`].
pub(crate) struct PartialSvd {
    /// `m × k`, orthonormal columns.
    pub u: Mat<f64>,
    /// The `k` kept singular values `σ̃ᵢ = ‖Aᵀuᵢ‖`, descending.
    pub sigma: Vec<f64>,
    /// `n × k`; unit columns, except a zero column where `σ̃ᵢ = 0`.
    pub v: Mat<f64>,
}

/// The randomized truncated SVD of the module docs (`a` is `m × n`, `1 ≤ k ≤ min(m, n)`,
/// checked by the caller, entries finite).
pub(crate) fn randomized_svd(
    a: MatRef<'_, f64>,
    k: usize,
    oversample: usize,
    power_iters: usize,
    seed: u64,
) -> Result<PartialSvd, CoreError> {
    let (m, n) = a.shape();
    let r = m.min(n);
    debug_assert!(k >= 1 && k <= r);
    // Work on the orientation whose rows are the short side: at is r × c.
    let wide = m <= n;
    let at = if wide { a } else { a.transpose() };
    let l = k.saturating_add(oversample).min(r);

    // H = A Aᵀ (r × r); Y = H Ω; subspace iteration Y = H · lu(Y); Q = orth(Y).
    let h = symmetric_gram(at);
    let omega = gaussian(r, l, seed);
    let mut y = mul(h.as_ref(), omega.as_ref());
    for _ in 0..power_iters {
        y = mul(h.as_ref(), normalized_basis(y.as_ref())?.as_ref());
    }
    let q = orthonormal_basis(y.as_ref())?;
    // T = Qᵀ H Q = B Bᵀ (l × l) with B = Qᵀ A; its eigenvectors, largest λ first.
    let hq = mul(h.as_ref(), q.as_ref());
    let t = mul(q.transpose(), hq.as_ref());
    let (_, ut) = symmetric_eigen(t.as_ref())?;
    let top_k = Mat::<f64>::from_fn(l, k, |i, j| ut[(i, l - 1 - j)]);
    // r × k, orthonormal.
    let left = mul(q.as_ref(), top_k.as_ref());
    // σ̃ᵢ vᵢ = Aᵀ uᵢ (c × k): an exact product with A, not with H.
    let sv = mul(at.transpose(), left.as_ref());
    let norms: Vec<f64> = (0..k).map(|j| sv.col(j).norm_l2()).collect();
    let mut order: Vec<usize> = (0..k).collect();
    order.sort_by(|&x, &y| norms[y].total_cmp(&norms[x]));
    let sigma: Vec<f64> = order.iter().map(|&j| norms[j]).collect();
    let left = Mat::<f64>::from_fn(r, k, |i, j| left[(i, order[j])]);
    let right = Mat::<f64>::from_fn(at.ncols(), k, |i, j| {
        let s = sigma[j];
        if s > 0.0 {
            sv[(i, order[j])] / s
        } else {
            0.0
        }
    });
    check_finite(left.as_ref(), "randomized SVD: left vectors")?;
    check_finite(right.as_ref(), "randomized SVD: right vectors")?;
    let (u, v) = if wide { (left, right) } else { (right, left) };
    Ok(PartialSvd { u, sigma, v })
}

/// `A Aᵀ` (`r × r`, both triangles) from the lower triangle of a SYRK-shaped product.
fn symmetric_gram(a: MatRef<'_, f64>) -> Mat<f64> {
    let r = a.nrows();
    let mut h = Mat::<f64>::zeros(r, r);
    tri_matmul(
        h.as_mut(),
        BlockStructure::TriangularLower,
        Accum::Replace,
        a,
        BlockStructure::Rectangular,
        a.transpose(),
        BlockStructure::Rectangular,
        1.0f64,
        par(),
    );
    for j in 0..r {
        for i in j + 1..r {
            h[(j, i)] = h[(i, j)];
        }
    }
    h
}

/// A `rows × cols` standard Gaussian matrix; column `j` comes from its own [`SplitMix64`]
/// seeded from `(seed, j)`, so the matrix does not depend on the thread count.
fn gaussian(rows: usize, cols: usize, seed: u64) -> Mat<f64> {
    let columns: Vec<Vec<f64>> = (0..cols)
        .into_par_iter()
        .map(|j| {
            let mut seeder = SplitMix64::new(seed ^ (j as u64).wrapping_mul(0xD1B5_4A32_D192_ED03));
            let mut rng = SplitMix64::new(seeder.next_u64());
            (0..rows).map(|_| rng.normal()).collect()
        })
        .collect();
    Mat::<f64>::from_fn(rows, cols, |i, j| columns[j][i])
}

/// The thin `Q` (`m × l`, orthonormal columns) of the Householder QR of `y` (`m × l`,
/// `l ≤ m`). A rank-deficient `y` still gives an orthonormal `Q` (Householder reflections are
/// orthogonal whatever the data).
fn orthonormal_basis(y: MatRef<'_, f64>) -> Result<Mat<f64>, CoreError> {
    let (m, l) = y.shape();
    debug_assert!(l <= m);
    let par = llm_compress_core::par_deterministic();
    let bs = recommended_block_size::<f64>(m, l);
    let mut qr = y.to_owned();
    let mut coeff = Mat::<f64>::zeros(bs, l);
    let mut mem = MemBuffer::new(faer::dyn_stack::StackReq::any_of(&[
        qr_in_place_scratch::<f64>(m, l, bs, par, Default::default()),
        apply_block_householder_sequence_on_the_left_in_place_scratch::<f64>(m, bs, l),
    ]));
    qr_in_place(
        qr.as_mut(),
        coeff.as_mut(),
        par,
        MemStack::new(&mut mem),
        Default::default(),
    );
    let mut q = Mat::<f64>::identity(m, l);
    apply_block_householder_sequence_on_the_left_in_place_with_conj(
        qr.as_ref(),
        coeff.as_ref(),
        Conj::No,
        q.as_mut(),
        par,
        MemStack::new(&mut mem),
    );
    check_finite(q.as_ref(), "randomized SVD: orthonormal basis")?;
    Ok(q)
}

/// A basis of the column span of `y` (`m × l`, `l ≤ m`) for an intermediate step of the
/// subspace iteration: `Pᵀ L` of the partially pivoted LU `P y = L U` (`L` unit lower
/// trapezoidal, entries `|L_ij| ≤ 1`), which spans what `y` spans when `U` is invertible. It
/// costs `m l² − l³/3` flops against about four times that for a Householder QR and its
/// explicit `Q`, and like the QR it stops the columns from collapsing onto the leading singular
/// vector; only the last step needs orthonormal columns (HMT §4.5 allows any normalisation in
/// between; scikit-learn's and fbpca's randomized SVDs normalise this way). Falls back to
/// [`orthonormal_basis`] when a pivot of `U` is zero or not finite (rank-deficient `y`).
fn normalized_basis(y: MatRef<'_, f64>) -> Result<Mat<f64>, CoreError> {
    let (m, l) = y.shape();
    debug_assert!(l <= m);
    let par = llm_compress_core::par_deterministic();
    let mut lu = y.to_owned();
    let mut perm = vec![0usize; m];
    let mut perm_inv = vec![0usize; m];
    let mut mem = MemBuffer::new(lu_in_place_scratch::<usize, f64>(
        m,
        l,
        par,
        Default::default(),
    ));
    let (_, p) = lu_in_place(
        lu.as_mut(),
        &mut perm,
        &mut perm_inv,
        par,
        MemStack::new(&mut mem),
        Default::default(),
    );
    if (0..l).any(|j| !(lu[(j, j)].is_finite() && lu[(j, j)] != 0.0)) {
        return orthonormal_basis(y);
    }
    // Row i of L is row fwd[i] of Pᵀ L (P y = L U with (P y)[i] = y[fwd[i]]).
    let (fwd, _) = p.arrays();
    let mut basis = Mat::<f64>::zeros(m, l);
    for j in 0..l {
        basis[(fwd[j], j)] = 1.0;
        for i in j + 1..m {
            basis[(fwd[i], j)] = lu[(i, j)];
        }
    }
    check_finite(basis.as_ref(), "randomized SVD: LU basis")?;
    Ok(basis)
}

/// Eigenvalues (ascending) and eigenvectors of the symmetric `h` (lower triangle read).
fn symmetric_eigen(h: MatRef<'_, f64>) -> Result<(Vec<f64>, Mat<f64>), CoreError> {
    let n = h.nrows();
    let par = llm_compress_core::par_deterministic();
    let mut s = Diag::<f64>::zeros(n);
    let mut u = Mat::<f64>::zeros(n, n);
    let mut mem = MemBuffer::new(self_adjoint_evd_scratch::<f64>(
        n,
        ComputeEigenvectors::Yes,
        par,
        Default::default(),
    ));
    self_adjoint_evd(
        h,
        s.as_mut(),
        Some(u.as_mut()),
        par,
        MemStack::new(&mut mem),
        Default::default(),
    )
    .map_err(|e| CoreError::Numerical {
        what: "randomized SVD: eigendecomposition of B Bᵀ".into(),
        detail: format!("{e:?}"),
    })?;
    let sv = s.column_vector();
    Ok(((0..n).map(|i| sv[i]).collect(), u))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Q Qᵀ` of an orthonormal basis of the span of `y`.
    fn projector(y: MatRef<'_, f64>) -> Mat<f64> {
        let q = orthonormal_basis(y).unwrap();
        mul(q.as_ref(), q.transpose())
    }

    /// The LU basis spans exactly what `y` spans (same orthogonal projector to 1e-8), for a
    /// well-conditioned `y` and for one whose columns nearly collapse onto one direction (the
    /// situation of a late subspace iteration); for a rank-deficient `y` (a zero pivot falls back
    /// to the QR, a roundoff-sized one does not) the basis still contains `y`'s span.
    #[test]
    fn lu_basis_spans_the_same_space() {
        let (m, l) = (60, 12);
        let g = gaussian(m, l, 7);
        let spread = Mat::<f64>::from_fn(m, l, |i, j| g[(i, j)] * 1e-6 + g[(i, 0)]);
        let mut deficient = g.clone();
        for i in 0..m {
            deficient[(i, 3)] = 2.0 * deficient[(i, 1)];
        }
        for (name, y) in [
            ("gaussian", g),
            ("collapsing", spread),
            ("deficient", deficient),
        ] {
            let b = normalized_basis(y.as_ref()).unwrap();
            let d = &projector(b.as_ref()) - &projector(y.as_ref());
            if name == "deficient" {
                // A QR of a rank-deficient matrix still spans the same column space (the
                // projector differs only by the extra arbitrary direction): check y ⊂ span(b).
                let p = projector(b.as_ref());
                let r = &y - &mul(p.as_ref(), y.as_ref());
                assert!(r.norm_l2() < 1e-10 * y.norm_l2(), "{name}: {}", r.norm_l2());
            } else {
                assert!(d.norm_l2() < 1e-8, "{name}: {}", d.norm_l2());
            }
        }
    }
}
