//! Layer-wise closed-form update of the second factor — ALGORITHMS.md §2.5(a) (SVD-LLM
//! arXiv v1, code step 2).
//!
//! The spec keeps `V_p = V_kᵀL⁻¹` from the whitened SVD and refits `U` by least squares on
//! inputs `X` taken from the **compressed** prefix, against the outputs `Y` of the **original**
//! linear on those inputs:
//!
//! ```text
//! Z = X_rows · V_pᵀ · Σ_k ;  U_newᵀ = argmin ‖Z U_newᵀ − Y_rows‖_F ;  U_out = U_new · √Σ_k
//! ```
//!
//! With tokens as columns (this workspace's layout) and the fixed first factor
//! `F = √Σ_k · V_p` (`k × n`), `Z = (F X)ᵀ · √Σ_k`, so `Z U_newᵀ = (F X)ᵀ U_outᵀ` and the update is
//! exactly the refit of the second factor with the first held fixed:
//!
//! ```text
//! second_new = argmin_S ‖S · F X − W X‖_F²
//! normal equations:  S · (F G̃ Fᵀ) = W G̃ Fᵀ ,   G̃ = X Xᵀ (the Gram of the compressed-prefix inputs)
//! ```
//!
//! so it is computable from a Gram alone ([`closed_form_update`]), or streamed over batches
//! of tokens ([`UpdateAccumulator`], which accumulates `Z Zᵀ = F X Xᵀ Fᵀ` and
//! `Z Yᵀ = F X Xᵀ Wᵀ` in f64 batch by batch). As §2.5(a) recommends, the `k × k` system is
//! solved by Cholesky with a ridge `λ = 1e-6 · trace(F G̃ Fᵀ)/k` ([`UPDATE_RIDGE`]); up to that
//! ridge, the result is the least-squares refit on the tokens behind `G̃` (a rank-deficient
//! system gets the ridge's minimum-norm-like solution instead of an arbitrary one).

use crate::cholesky::{robust_cholesky, CholeskyOptions};
use crate::util::{check_finite, check_shape, mul, to_f32_checked, to_f64};
use faer::linalg::triangular_solve::{
    solve_lower_triangular_in_place, solve_upper_triangular_in_place,
};
use faer::{Mat, MatRef};
use llm_compress_core::{par, CoreError};

/// Relative ridge of the normal equations: `λ = UPDATE_RIDGE · trace(Z Zᵀ)/k`.
pub const UPDATE_RIDGE: f64 = 1e-6;

/// The closed-form update (§2.5(a)) from the Gram `G̃ = X Xᵀ` (`n × n`) of the inputs of this
/// linear in the compressed model: returns the new `second` (`d_out × k`) that minimises
/// `‖second · first · X − w_orig · X‖_F²` over the tokens behind `G̃` (up to the ridge
/// [`UPDATE_RIDGE`]). `first` is `k × n`, `w_orig` the original `d_out × n` weight.
pub fn closed_form_update(
    first: MatRef<'_, f32>,
    w_orig: MatRef<'_, f32>,
    g_tilde: MatRef<'_, f64>,
) -> Result<Mat<f32>, CoreError> {
    let s = closed_form_update_f64(to_f64(first).as_ref(), to_f64(w_orig).as_ref(), g_tilde)?;
    to_f32_checked(s.as_ref(), "closed-form update: second factor")
}

/// The f64 core of [`closed_form_update`].
pub fn closed_form_update_f64(
    first: MatRef<'_, f64>,
    w_orig: MatRef<'_, f64>,
    g_tilde: MatRef<'_, f64>,
) -> Result<Mat<f64>, CoreError> {
    let n = first.ncols();
    check_shape(
        "closed-form update: original weight columns",
        (w_orig.nrows(), n),
        w_orig.shape(),
    )?;
    check_shape("closed-form update: Gram", (n, n), g_tilde.shape())?;
    check_finite(first, "closed-form update: first factor")?;
    check_finite(w_orig, "closed-form update: original weight")?;
    check_finite(g_tilde, "closed-form update: Gram")?;
    let fg = mul(first, g_tilde); // F G̃ (k × n)
    let zz = mul(fg.as_ref(), first.transpose()); // F G̃ Fᵀ (k × k)
    let zy = mul(fg.as_ref(), w_orig.transpose()); // F G̃ Wᵀ (k × m)
    solve_normal_equations(zz, zy.as_ref())
}

/// Streaming form of the closed-form update: feed batches of compressed-prefix inputs `X`
/// (`n × T`, one token per column), then [`solve`](Self::solve). Accumulates, in f64,
/// `Z Zᵀ` (`k × k`) and `Z Yᵀ` (`k × d_out`) with `Z = first · X` and `Y = w_orig · X`.
///
/// Equivalent to [`closed_form_update`] on the Gram of the same tokens; prefer this when the
/// Gram (`n × n`) is larger than `k × (k + d_out)`.
#[derive(Clone, Debug)]
pub struct UpdateAccumulator {
    first: Mat<f64>,
    w: Mat<f64>,
    zz: Mat<f64>,
    zy: Mat<f64>,
    tokens: u64,
}

impl UpdateAccumulator {
    /// Start from the fixed first factor (`k × n`) and the original weight (`d_out × n`).
    pub fn new(first: MatRef<'_, f32>, w_orig: MatRef<'_, f32>) -> Result<Self, CoreError> {
        let (k, n) = first.shape();
        let m = w_orig.nrows();
        check_shape(
            "update accumulator: original weight columns",
            (m, n),
            w_orig.shape(),
        )?;
        let first = to_f64(first);
        let w = to_f64(w_orig);
        check_finite(first.as_ref(), "update accumulator: first factor")?;
        check_finite(w.as_ref(), "update accumulator: original weight")?;
        Ok(Self {
            first,
            w,
            zz: Mat::zeros(k, k),
            zy: Mat::zeros(k, m),
            tokens: 0,
        })
    }

    /// Add a batch of inputs `x` (`n × T`).
    pub fn add(&mut self, x: MatRef<'_, f32>) -> Result<(), CoreError> {
        let n = self.first.ncols();
        check_shape("update accumulator: batch rows", (n, x.ncols()), x.shape())?;
        let x = to_f64(x);
        check_finite(x.as_ref(), "update accumulator: batch")?;
        let z = mul(self.first.as_ref(), x.as_ref()); // k × T
        let y = mul(self.w.as_ref(), x.as_ref()); // m × T
        self.zz += mul(z.as_ref(), z.transpose());
        self.zy += mul(z.as_ref(), y.transpose());
        self.tokens += x.ncols() as u64;
        Ok(())
    }

    /// Tokens accumulated so far.
    pub fn tokens(&self) -> u64 {
        self.tokens
    }

    /// The new second factor (`d_out × k`) in f64.
    pub fn solve_f64(&self) -> Result<Mat<f64>, CoreError> {
        if self.tokens == 0 {
            return Err(CoreError::MissingStats(
                "closed-form update: no tokens were accumulated".into(),
            ));
        }
        solve_normal_equations(self.zz.clone(), self.zy.as_ref())
    }

    /// The new second factor (`d_out × k`) in f32.
    pub fn solve(&self) -> Result<Mat<f32>, CoreError> {
        to_f32_checked(
            self.solve_f64()?.as_ref(),
            "closed-form update: second factor",
        )
    }
}

/// Solve `S · ZZ = ZYᵀ` for `S` (`m × k`): `Sᵀ = (ZZ + λI)⁻¹ ZY` by Cholesky, with
/// `λ = UPDATE_RIDGE · trace(ZZ)/k`.
fn solve_normal_equations(mut zz: Mat<f64>, zy: MatRef<'_, f64>) -> Result<Mat<f64>, CoreError> {
    let k = zz.nrows();
    let trace: f64 = (0..k).map(|i| zz[(i, i)]).sum();
    if !(trace > 0.0 && trace.is_finite()) {
        return Err(CoreError::Numerical {
            what: "closed-form update".into(),
            detail: format!(
                "trace(Z Zᵀ) = {trace:e}: no signal behind the Gram (no tokens, or a zero first factor)"
            ),
        });
    }
    let ridge = UPDATE_RIDGE * trace / k as f64;
    for i in 0..k {
        zz[(i, i)] += ridge;
    }
    // The ridge makes ZZ + λI positive definite; the robust factorisation only guards roundoff.
    let opts = CholeskyOptions {
        eps_abs: 0.0,
        eps_rel: 1e-8,
        fix_dead_channels: false,
        max_retries: 6,
    };
    let (l, _) = robust_cholesky(zz.as_ref(), &opts)?;
    let mut st = zy.to_owned(); // k × m
    solve_lower_triangular_in_place(l.as_ref(), st.as_mut(), par());
    solve_upper_triangular_in_place(l.transpose(), st.as_mut(), par());
    let s = st.transpose().to_owned();
    check_finite(s.as_ref(), "closed-form update: solution")?;
    Ok(s)
}
