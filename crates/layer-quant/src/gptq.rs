//! GPTQ (Frantar et al. 2022): quantize the columns of `W` one at a time and spread each
//! column's error over the columns not yet quantized, weighted by the inverse of the input Gram,
//! so that `‖(W − Q) X‖_F` rather than `‖W − Q‖_F` is (greedily) minimised. The quantization
//! grid is the one of [`crate::rtn`] (ALGORITHMS.md §6.4); the Gram is the `G = X Xᵀ` the
//! calibration walk already collects (§1.1).
//!
//! Steps, with `H = G + λ·mean(diag G)·I` (dead channels, `G_jj = 0`, get `H_jj = 1` and a zero
//! weight column):
//! 1. `H⁻¹` from the f64 Cholesky factor of `H`, then the upper Cholesky factor `U` of `H⁻¹`
//!    (`H⁻¹ = Uᵀ U`), both in f64;
//! 2. for each column `i` (in blocks of [`BLOCK`] columns, lazy trailing updates):
//!    `q_i = quant(w_i)`, `e_i = (w_i − q_i) / U_ii`, `w_j −= e_i U_ij` for `j > i`.
//!
//! With groups, a group's scales are computed from its (already updated) columns when its first
//! column is reached, as in the reference implementation. Per channel, the scales come from the
//! original rows.

use crate::rtn::{effective_group, group_absmax, group_scale, quantize_value};
use faer::linalg::matmul::matmul;
use faer::linalg::solvers::DenseSolveCore;
use faer::{Accum, Mat, MatRef, Side};
use half::f16;
use llm_compress_core::{par, CoreError, QuantFormat, QuantMatrix};

/// Columns per lazy-update block (a multiple of every supported group size).
pub const BLOCK: usize = 128;

/// Options of [`quantize_gptq`].
#[derive(Clone, Copy, Debug)]
pub struct GptqOptions {
    /// Relative dampening `λ` added to the diagonal (`λ · mean(diag G)`); the reference uses 0.01.
    pub damp: f64,
}

impl Default for GptqOptions {
    fn default() -> Self {
        Self { damp: 0.01 }
    }
}

/// The upper Cholesky factor `U` of `H⁻¹` (`H⁻¹ = Uᵀ U`) for the damped Gram, and the dead
/// channels. Retries with ten times the dampening (up to three times) if `H` is not positive
/// definite in floating point.
fn inverse_hessian_factor(
    gram: MatRef<'_, f64>,
    damp: f64,
) -> Result<(Mat<f64>, Vec<bool>), CoreError> {
    let n = gram.nrows();
    let dead: Vec<bool> = (0..n).map(|j| gram[(j, j)] <= 0.0).collect();
    let mean_diag = (0..n)
        .filter(|&j| !dead[j])
        .map(|j| gram[(j, j)])
        .sum::<f64>()
        / (n.max(1) as f64);
    let mut lambda = damp;
    for _ in 0..4 {
        let h = Mat::<f64>::from_fn(n, n, |i, j| {
            if dead[i] || dead[j] {
                if i == j {
                    1.0
                } else {
                    0.0
                }
            } else {
                gram[(i, j)] + if i == j { lambda * mean_diag } else { 0.0 }
            }
        });
        let Ok(llt) = h.llt(Side::Lower) else {
            lambda *= 10.0;
            continue;
        };
        let hinv = llt.inverse();
        // Symmetrise against round-off before the second factorisation.
        let hinv = Mat::<f64>::from_fn(n, n, |i, j| 0.5 * (hinv[(i, j)] + hinv[(j, i)]));
        if let Ok(l2) = hinv.llt(Side::Lower) {
            return Ok((l2.L().transpose().to_owned(), dead));
        }
        lambda *= 10.0;
    }
    Err(CoreError::Numerical {
        what: "GPTQ".into(),
        detail: format!("the damped Gram is not positive definite (dampening up to {lambda:e})"),
    })
}

/// GPTQ quantization of `w` (`d_out × d_in`) with the input Gram `gram` (`d_in × d_in`).
/// `F16` gives a half copy (no error feedback needed).
pub fn quantize_gptq(
    w: MatRef<'_, f32>,
    gram: MatRef<'_, f64>,
    format: QuantFormat,
    group_size: Option<usize>,
    opts: &GptqOptions,
) -> Result<QuantMatrix, CoreError> {
    if format == QuantFormat::F16 {
        return Ok(QuantMatrix::f16_from(w));
    }
    let (rows, cols) = (w.nrows(), w.ncols());
    if gram.nrows() != cols || gram.ncols() != cols {
        return Err(CoreError::Shape {
            what: "GPTQ Gram".into(),
            expected: (cols, cols),
            got: (gram.nrows(), gram.ncols()),
        });
    }
    if !(opts.damp.is_finite() && opts.damp > 0.0) {
        return Err(CoreError::Parameter {
            name: "damp".into(),
            detail: format!("must be positive, got {}", opts.damp),
        });
    }
    let g = effective_group(cols, group_size)?;
    let per_channel = g >= cols;
    if !per_channel && BLOCK % g != 0 {
        return Err(CoreError::Parameter {
            name: "group_size".into(),
            detail: format!("GPTQ supports group sizes dividing {BLOCK}, got {g}"),
        });
    }
    let ng = cols.div_ceil(g);
    let (u64f, dead) = inverse_hessian_factor(gram, opts.damp)?;
    let u = Mat::<f32>::from_fn(cols, cols, |i, j| u64f[(i, j)] as f32);
    let mut wk = Mat::<f32>::from_fn(rows, cols, |r, j| if dead[j] { 0.0 } else { w[(r, j)] });
    let mut scales = vec![f16::ZERO; rows * ng];
    if per_channel {
        for r in 0..rows {
            scales[r] = group_scale(group_absmax((0..cols).map(|j| wk[(r, j)]))?, format)?;
        }
    }
    let mut codes = vec![0i8; rows * cols];
    let mut err = Mat::<f32>::zeros(rows, BLOCK);
    let mut i1 = 0;
    while i1 < cols {
        let i2 = (i1 + BLOCK).min(cols);
        for i in i1..i2 {
            if !per_channel && i % g == 0 {
                let c1 = (i + g).min(cols);
                for r in 0..rows {
                    let m = group_absmax((i..c1).map(|j| wk[(r, j)]))?;
                    scales[r * ng + i / g] = group_scale(m, format)?;
                }
            }
            let d = u[(i, i)];
            for r in 0..rows {
                let s = scales[r * ng + i / g];
                let q = quantize_value(wk[(r, i)], s, format);
                codes[r * cols + i] = q;
                err[(r, i - i1)] = (wk[(r, i)] - s.to_f32() * q as f32) / d;
            }
            // In-block update of the columns after i.
            for j in i + 1..i2 {
                let uij = u[(i, j)];
                if uij == 0.0 {
                    continue;
                }
                for r in 0..rows {
                    wk[(r, j)] -= err[(r, i - i1)] * uij;
                }
            }
        }
        if i2 < cols {
            let nb = i2 - i1;
            let (_, mut rest) = wk.as_mut().split_at_col_mut(i2);
            matmul(
                rest.as_mut(),
                Accum::Add,
                err.as_ref().subcols(0, nb),
                u.as_ref().submatrix(i1, i2, nb, cols - i2),
                -1.0f32,
                par(),
            );
        }
        i1 = i2;
    }
    QuantMatrix::from_codes(rows, cols, format, g, &codes, scales)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtn::quantize_rtn;
    use llm_compress_core::rng::SplitMix64;

    /// Correlated inputs (a few strong latent directions), as in real activations.
    fn inputs(d: usize, t: usize, seed: u64) -> Mat<f32> {
        let mut rng = SplitMix64::new(seed);
        let mix = Mat::<f32>::from_fn(d, 8, |_, _| rng.normal() as f32);
        let z = Mat::<f32>::from_fn(8, t, |_, _| rng.normal() as f32);
        let noise = Mat::<f32>::from_fn(d, t, |_, _| 0.1 * rng.normal() as f32);
        &(&mix * &z) + &noise
    }

    fn gram(x: &Mat<f32>) -> Mat<f64> {
        let xd = Mat::<f64>::from_fn(x.nrows(), x.ncols(), |i, j| x[(i, j)] as f64);
        &xd * xd.transpose()
    }

    fn out_err(w: &Mat<f32>, q: &QuantMatrix, x: &Mat<f32>) -> f64 {
        let d = &q.to_dense() - w;
        (&d * x).norm_l2() as f64
    }

    /// The defining property: a smaller output error `‖(W − Q)X‖` than round-to-nearest on the
    /// same grid, for every scheme; codes stay on the grid.
    #[test]
    fn gptq_beats_rtn_on_the_output_error() {
        let (m, n, t) = (24, 256, 600);
        let mut rng = SplitMix64::new(11);
        let w = Mat::<f32>::from_fn(m, n, |_, _| rng.normal() as f32);
        let x = inputs(n, t, 12);
        let g = gram(&x);
        for (format, group) in [
            (QuantFormat::Int8, None),
            (QuantFormat::Int4, None),
            (QuantFormat::Int4, Some(32)),
            (QuantFormat::Int4, Some(128)),
        ] {
            let qg = quantize_gptq(
                w.as_ref(),
                g.as_ref(),
                format,
                group,
                &GptqOptions::default(),
            )
            .unwrap();
            let qr = quantize_rtn(w.as_ref(), format, group).unwrap();
            let (eg, er) = (out_err(&w, &qg, &x), out_err(&w, &qr, &x));
            eprintln!("{format:?} {group:?}: gptq {eg:.3} rtn {er:.3}");
            assert!(eg < 0.8 * er, "{format:?} {group:?}: gptq {eg} rtn {er}");
        }
    }

    /// The unblocked algorithm of the reference, written out column by column in f64: for
    /// each column `i` (a group's scales from the current, already updated weights when `i`
    /// starts a group), `q = quant(w_i)`, `e = (w_i − q) / U_ii`, `W[:, j] −= e · U_ij` for all
    /// `j > i`. The blocked implementation (lazy updates of 128 columns) must give the same
    /// codes up to floating-point ties.
    fn reference_gptq(
        w: &Mat<f32>,
        g: &Mat<f64>,
        format: QuantFormat,
        group: Option<usize>,
    ) -> Mat<f32> {
        let (m, n) = (w.nrows(), w.ncols());
        let gs = group.unwrap_or(n);
        let (u, _) = inverse_hessian_factor(g.as_ref(), 0.01).unwrap();
        let mut wk = Mat::<f64>::from_fn(m, n, |i, j| w[(i, j)] as f64);
        let mut q = Mat::<f32>::zeros(m, n);
        let mut scales = vec![f16::ZERO; m];
        for i in 0..n {
            if i % gs == 0 {
                for r in 0..m {
                    let amax = (i..(i + gs).min(n))
                        .map(|j| wk[(r, j)].abs())
                        .fold(0.0, f64::max);
                    scales[r] = group_scale(amax as f32, format).unwrap();
                }
            }
            for r in 0..m {
                let code = quantize_value(wk[(r, i)] as f32, scales[r], format);
                let qv = scales[r].to_f32() * code as f32;
                q[(r, i)] = qv;
                let e = (wk[(r, i)] - qv as f64) / u[(i, i)];
                for j in i + 1..n {
                    wk[(r, j)] -= e * u[(i, j)];
                }
            }
        }
        q
    }

    #[test]
    fn blocked_gptq_equals_the_unblocked_reference() {
        let (m, n, t) = (12, 320, 500);
        let mut rng = SplitMix64::new(21);
        let w = Mat::<f32>::from_fn(m, n, |_, _| rng.normal() as f32);
        let x = inputs(n, t, 22);
        let g = gram(&x);
        for (format, group) in [
            (QuantFormat::Int8, None),
            (QuantFormat::Int4, None),
            (QuantFormat::Int4, Some(32)),
            (QuantFormat::Int4, Some(128)),
        ] {
            let ours = quantize_gptq(
                w.as_ref(),
                g.as_ref(),
                format,
                group,
                &GptqOptions::default(),
            )
            .unwrap()
            .to_dense();
            let reference = reference_gptq(&w, &g, format, group);
            let same = (0..m)
                .flat_map(|i| (0..n).map(move |j| (i, j)))
                .filter(|&(i, j)| ours[(i, j)] == reference[(i, j)])
                .count();
            let frac = same as f64 / (m * n) as f64;
            let (eo, er) = (
                (&(&ours - &w) * &x).norm_l2(),
                (&(&reference - &w) * &x).norm_l2(),
            );
            eprintln!(
                "{format:?} {group:?}: {:.4} of codes equal, error {eo:.3} vs {er:.3}",
                frac
            );
            assert!(
                frac > 0.99,
                "{format:?} {group:?}: only {frac} of the codes agree"
            );
            assert!(
                (eo / er - 1.0).abs() < 0.02,
                "{format:?} {group:?}: {eo} vs {er}"
            );
        }
    }

    #[test]
    fn dead_channels_and_bad_input_are_handled() {
        let (m, n) = (4, 16);
        let w = Mat::<f32>::from_fn(m, n, |i, j| (i as f32 - j as f32) * 0.1);
        let mut x = inputs(n, 50, 3);
        for t in 0..50 {
            x[(5, t)] = 0.0;
        }
        let g = gram(&x);
        let q = quantize_gptq(
            w.as_ref(),
            g.as_ref(),
            QuantFormat::Int8,
            None,
            &Default::default(),
        )
        .unwrap();
        assert!((0..m).all(|r| q.to_dense()[(r, 5)] == 0.0));
        let bad = Mat::<f64>::zeros(3, 3);
        assert!(quantize_gptq(
            w.as_ref(),
            bad.as_ref(),
            QuantFormat::Int8,
            None,
            &Default::default()
        )
        .is_err());
        assert!(quantize_gptq(
            w.as_ref(),
            g.as_ref(),
            QuantFormat::Int4,
            Some(12),
            &Default::default()
        )
        .is_err());
    }
}
