//! The group factorisation of Basis Sharing — ALGORITHMS.md §3.4 (algorithm), §3.5 (rank),
//! §3.6 (coefficient update).
//!
//! For one weight kind and a group of `g` layers with weights `W_ℓ` (`m × n`) and input Grams
//! `G_ℓ` (`n × n`):
//!
//! ```text
//! G_sum = Σ_ℓ G_ℓ ;  L = robust_chol(G_sum)   (S = Lᵀ of §3.4, SᵀS = G_sum)
//! A = [W_1; …; W_g] · L   (g·m × n)  =  (S · [W_1ᵀ | … | W_gᵀ])ᵀ
//! U, Σ, Vᵀ = svd(A)        (f64)     k = ⌊g·n·m·(1−ratio)/(n + g·m)⌋
//! basis  Bᵀ = Σ_k · V_kᵀ L⁻¹   (k × n; V_kᵀL⁻¹ by a triangular solve, never forming L⁻¹)
//! coeff  C_ℓᵀ = U_k[ℓ·m .. (ℓ+1)·m, :]   (m × k)
//! layer ℓ:  y = C_ℓᵀ (Bᵀ x)
//! ```
//!
//! In §3.4's orientation `B = S⁻¹ U'_k Σ_k` with `U'` the left singular vectors of
//! `S·Wcat` (our `V`) and `C = V'ᵀ_k` (our `U_kᵀ`): Σ sits in the basis, the coefficients have
//! orthonormal rows (§3.10.3). What is minimised is
//! `‖S (Wcat − B C)‖_F² = Σ_ℓ ‖(W_ℓ − C_ℓᵀBᵀ) X_𝒢‖_F² = Σ_{i>k} σ_i²`, every layer's error
//! measured on the pooled inputs `X_𝒢` of the group. With `g = 1` this is SVD-LLM's whitened
//! SVD with Σ in the first factor instead of split as `√Σ` on both.

use llm_compress_core::budget::{check_ratio, shared_basis_rank};
use llm_compress_core::{
    CoreError, GroupCompressor, InputStats, Linear, LinearId, Mat, MatRef, StatsRequest,
};
use llm_compress_whitening_svd::{
    closed_form_update, robust_cholesky, whitened_svd_with_cholesky_solver, CholeskyOptions,
    SvdSolver, WhitenedSvd,
};
use std::sync::Arc;

/// Basis Sharing at a given ratio of parameters removed, a [`GroupCompressor`].
#[derive(Clone, Debug)]
pub struct SharedBasis {
    /// Fraction of the group's parameters removed.
    pub ratio: f64,
    /// Robust Cholesky settings (ALGORITHMS.md §1.2; the reference's absolute `7e-6` is
    /// meaningless on un-normalised Grams, the relative floor is what matters).
    pub cholesky: CholeskyOptions,
    /// How the SVD of the whitened stack is computed (default exact; the randomized solver
    /// computes only the kept rank, see `llm_compress_whitening_svd::randomized`).
    pub solver: SvdSolver,
}

impl SharedBasis {
    /// Basis Sharing removing `ratio` of the parameters, default Cholesky settings.
    pub fn new(ratio: f64) -> Self {
        Self {
            ratio,
            cholesky: CholeskyOptions::default(),
            solver: SvdSolver::Exact,
        }
    }

    /// The same with another SVD solver.
    pub fn with_solver(mut self, solver: SvdSolver) -> Self {
        self.solver = solver;
        self
    }

    /// The rank of a group of `group` weights of shape `d_out × d_in` (§3.5).
    pub fn rank(&self, d_out: usize, d_in: usize, group: usize) -> Result<usize, CoreError> {
        check_ratio(self.ratio)?;
        let k = shared_basis_rank(d_out, d_in, group, self.ratio);
        if k == 0 {
            return Err(CoreError::Parameter {
                name: "ratio".into(),
                detail: format!(
                    "ratio {} leaves rank 0 for a group of {group} {d_out}×{d_in} weights",
                    self.ratio
                ),
            });
        }
        Ok(k)
    }

    /// Factor the group `weights` (each `m × n`, same shape) with the lower Cholesky factor `l`
    /// of the group's summed Gram (see [`summed_gram`] and [`robust_cholesky`]).
    pub fn factorize_with_cholesky(
        &self,
        weights: &[MatRef<'_, f32>],
        l: MatRef<'_, f64>,
    ) -> Result<GroupFactorization, CoreError> {
        let Some(first) = weights.first() else {
            return Err(CoreError::Parameter {
                name: "group".into(),
                detail: "a group needs at least one layer".into(),
            });
        };
        let (m, n) = first.shape();
        for w in weights {
            if w.shape() != (m, n) {
                return Err(CoreError::Shape {
                    what: "weights of one group".into(),
                    expected: (m, n),
                    got: w.shape(),
                });
            }
        }
        let g = weights.len();
        let k = self.rank(m, n, g)?;
        let stacked = Mat::<f64>::from_fn(g * m, n, |i, j| weights[i / m][(i % m, j)] as f64);
        let svd = whitened_svd_with_cholesky_solver(stacked.as_ref(), l, k, self.solver)?;
        Ok(GroupFactorization { svd, d_out: m })
    }

    /// Summed Gram, robust Cholesky and [`Self::factorize_with_cholesky`] in one call.
    pub fn factorize(
        &self,
        weights: &[MatRef<'_, f32>],
        grams: &[MatRef<'_, f64>],
    ) -> Result<GroupFactorization, CoreError> {
        let gsum = summed_gram(grams)?;
        let (l, report) = robust_cholesky(gsum.as_ref(), &self.cholesky)?;
        if report.regularised() {
            tracing::info!(?report, "group Gram regularised");
        }
        self.factorize_with_cholesky(weights, l.as_ref())
    }
}

/// `Σ_ℓ G_ℓ` in f64. Errors if the list is empty or the shapes differ.
pub fn summed_gram(grams: &[MatRef<'_, f64>]) -> Result<Mat<f64>, CoreError> {
    let Some(first) = grams.first() else {
        return Err(CoreError::MissingStats(
            "a group needs at least one Gram".into(),
        ));
    };
    let mut sum = first.to_owned();
    for g in &grams[1..] {
        if g.shape() != sum.shape() {
            return Err(CoreError::Shape {
                what: "Grams of one group".into(),
                expected: sum.shape(),
                got: g.shape(),
            });
        }
        sum += g;
    }
    Ok(sum)
}

/// One group's shared basis and per-layer coefficients, in f64.
#[derive(Clone, Debug)]
pub struct GroupFactorization {
    svd: WhitenedSvd,
    d_out: usize,
}

impl GroupFactorization {
    /// The kept rank `k`.
    pub fn rank(&self) -> usize {
        self.svd.rank()
    }

    /// Number of layers in the group.
    pub fn group_size(&self) -> usize {
        self.svd.u.nrows() / self.d_out
    }

    /// All singular values of the whitened concatenation, descending.
    pub fn sigma(&self) -> &[f64] {
        &self.svd.sigma
    }

    /// `Σ_{i>k} σ_i² = ‖S (Wcat − B C)‖_F²`, the group's output error on its pooled inputs.
    pub fn dropped_energy(&self) -> f64 {
        self.svd.dropped_energy()
    }

    /// `dropped_energy / Σ σ_i²`.
    pub fn dropped_fraction(&self) -> f64 {
        self.svd.dropped_fraction()
    }

    /// The basis as the weight of the linear `x ↦ Bᵀ x`: `Σ_k V_kᵀ L⁻¹` (`k × n`).
    pub fn basis(&self) -> Mat<f64> {
        let (k, n) = self.svd.vpt.shape();
        Mat::<f64>::from_fn(k, n, |i, j| self.svd.sigma[i] * self.svd.vpt[(i, j)])
    }

    /// Layer `i`'s coefficient as the weight of the linear `z ↦ C_iᵀ z` (`m × k`).
    pub fn coefficient(&self, i: usize) -> Mat<f64> {
        self.svd
            .u
            .as_ref()
            .subrows(i * self.d_out, self.d_out)
            .to_owned()
    }

    /// The layers' f32 linears, all reading one `Arc` basis.
    pub fn to_linears(&self) -> Result<Vec<Linear>, CoreError> {
        let basis = Arc::new(Linear::Dense(to_f32(
            self.basis().as_ref(),
            "shared basis",
        )?));
        (0..self.group_size())
            .map(|i| {
                let c = to_f32(self.coefficient(i).as_ref(), "shared-basis coefficient")?;
                Linear::shared(basis.clone(), Linear::Dense(c))
            })
            .collect()
    }
}

fn to_f32(m: MatRef<'_, f64>, what: &str) -> Result<Mat<f32>, CoreError> {
    let out = Mat::<f32>::from_fn(m.nrows(), m.ncols(), |i, j| m[(i, j)] as f32);
    if out.as_ref().is_all_finite() {
        Ok(out)
    } else {
        Err(CoreError::Numerical {
            what: what.into(),
            detail: "a value is not finite in f32".into(),
        })
    }
}

/// The coefficient update of §3.6 for one layer: with the basis `Bᵀ` (`k × n`) fixed, the
/// coefficient minimising `‖(W − C Bᵀ) X̃‖_F²` on the inputs `X̃` the layer sees in the
/// compressed model, `C = W G̃ B (Bᵀ G̃ B)⁻¹` with `G̃ = X̃ X̃ᵀ` (§3.6's
/// `C = (Bᵀ G̃ B)⁻¹ Bᵀ G̃ Wcat`, per layer), solved through the normal equations with a small
/// ridge by [`closed_form_update`]. Returns a new [`Linear::Shared`] on the same basis.
pub fn update_coefficient(
    lin: &Linear,
    w: MatRef<'_, f32>,
    gram: MatRef<'_, f64>,
) -> Result<Linear, CoreError> {
    let Linear::Shared { basis, .. } = lin else {
        return Err(CoreError::Parameter {
            name: "update".into(),
            detail: format!("expected a shared linear, got {}", lin.describe()),
        });
    };
    let b = basis.to_dense();
    let coeff = closed_form_update(b.as_ref(), w, gram)?;
    Linear::shared(basis.clone(), Linear::Dense(coeff))
}

impl GroupCompressor for SharedBasis {
    fn name(&self) -> &str {
        "basis-sharing"
    }

    fn needs(&self) -> StatsRequest {
        StatsRequest {
            gram: true,
            ..StatsRequest::NONE
        }
    }

    fn compress_group(
        &self,
        members: &[(LinearId, MatRef<'_, f32>, &InputStats)],
    ) -> Result<Vec<Linear>, CoreError> {
        let grams = members
            .iter()
            .map(|(id, _, s)| {
                s.gram.as_ref().map(|g| g.as_ref()).ok_or_else(|| {
                    CoreError::MissingStats(format!("basis sharing needs the input Gram of {id}"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let weights: Vec<MatRef<'_, f32>> = members.iter().map(|(_, w, _)| *w).collect();
        self.factorize(&weights, &grams)?.to_linears()
    }
}
