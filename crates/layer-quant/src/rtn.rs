//! Symmetric round-to-nearest quantization (ALGORITHMS.md §6.4).
//!
//! For every output row `r` and group `g` of input columns (the whole row when per-channel):
//! `scale = max_j |W_rj| / (2^{b−1} − 1)` (stored as f16; the f16-rounded scale is the one used
//! to quantize), `q = clamp(round(W / scale), −2^{b−1}, 2^{b−1} − 1)`.
//! The error of every value is at most `scale / 2`.

use half::f16;
use llm_compress_core::quant_sparse::for_each_kept;
use llm_compress_core::{CoreError, MatRef, NmSparse, QuantFormat, QuantMatrix, QuantSparse};

/// The f16 scale of a group whose largest magnitude is `absmax`.
pub fn group_scale(absmax: f32, format: QuantFormat) -> Result<f16, CoreError> {
    let s = f16::from_f32(absmax / format.qmax() as f32);
    if !s.to_f32().is_finite() || !absmax.is_finite() {
        return Err(CoreError::Numerical {
            what: "quantization scale".into(),
            detail: format!("max |w| = {absmax} has no finite f16 scale"),
        });
    }
    Ok(s)
}

/// The largest magnitude of a group, or an error naming a non-finite weight.
pub fn group_absmax(values: impl Iterator<Item = f32>) -> Result<f32, CoreError> {
    let mut m = 0.0f32;
    for v in values {
        if !v.is_finite() {
            return Err(CoreError::Numerical {
                what: "quantization".into(),
                detail: format!("non-finite weight {v}"),
            });
        }
        m = m.max(v.abs());
    }
    Ok(m)
}

/// The code of `w` on the grid of `scale` (zero when the scale is zero).
pub fn quantize_value(w: f32, scale: f16, format: QuantFormat) -> i8 {
    let s = scale.to_f32();
    if s == 0.0 {
        return 0;
    }
    (w / s)
        .round()
        .clamp(format.qmin() as f32, format.qmax() as f32) as i8
}

/// Check a group size: positive; `None` means per-channel (one group per row).
pub fn effective_group(cols: usize, group_size: Option<usize>) -> Result<usize, CoreError> {
    match group_size {
        None => Ok(cols.max(1)),
        Some(0) => Err(CoreError::Parameter {
            name: "group_size".into(),
            detail: "must be positive".into(),
        }),
        Some(g) => Ok(g.min(cols.max(1))),
    }
}

/// Round-to-nearest quantization of `w` (`d_out × d_in`) to `format`, with one scale per row
/// and group of `group_size` columns (`None`: per output channel). `F16` gives a half copy.
pub fn quantize_rtn(
    w: MatRef<'_, f32>,
    format: QuantFormat,
    group_size: Option<usize>,
) -> Result<QuantMatrix, CoreError> {
    if format == QuantFormat::F16 {
        return Ok(QuantMatrix::f16_from(w));
    }
    let (rows, cols) = (w.nrows(), w.ncols());
    let g = effective_group(cols, group_size)?;
    let ng = cols.div_ceil(g);
    let mut codes = vec![0i8; rows * cols];
    let mut scales = Vec::with_capacity(rows * ng);
    for r in 0..rows {
        for gi in 0..ng {
            let (c0, c1) = (gi * g, ((gi + 1) * g).min(cols));
            let absmax = group_absmax((c0..c1).map(|j| w[(r, j)]))?;
            let s = group_scale(absmax, format)?;
            for j in c0..c1 {
                codes[r * cols + j] = quantize_value(w[(r, j)], s, format);
            }
            scales.push(s);
        }
    }
    QuantMatrix::from_codes(rows, cols, format, g, &codes, scales)
}

/// Round-to-nearest quantization of the kept values of a sparse weight, keeping its mask: one
/// scale per output row and group of `group_size` input columns (`None`: per output row), from
/// the largest kept magnitude of the group (pruned positions do not widen the grid). `F16`
/// gives half-precision kept values.
pub fn quantize_sparse_rtn(
    sparse: &NmSparse,
    format: QuantFormat,
    group_size: Option<usize>,
) -> Result<QuantSparse, CoreError> {
    if format == QuantFormat::F16 {
        return QuantSparse::f16_from(sparse);
    }
    let (rows, cols) = sparse.shape();
    let g = effective_group(cols, group_size)?;
    let ng = cols.div_ceil(g);
    let values = sparse.values();
    if let Some(v) = values.iter().find(|v| !v.is_finite()) {
        return Err(CoreError::Numerical {
            what: "quantization".into(),
            detail: format!("non-finite weight {v}"),
        });
    }
    let mut absmax = vec![0.0f32; rows * ng];
    for_each_kept(rows, cols, sparse.axis(), sparse.mask(), |k, i, j| {
        let m = &mut absmax[i * ng + j / g];
        *m = m.max(values[k].abs());
    });
    let scales = absmax
        .iter()
        .map(|&m| group_scale(m, format))
        .collect::<Result<Vec<_>, _>>()?;
    let mut codes = vec![0i8; values.len()];
    for_each_kept(rows, cols, sparse.axis(), sparse.mask(), |k, i, j| {
        codes[k] = quantize_value(values[k], scales[i * ng + j / g], format);
    });
    QuantSparse::from_codes(sparse, format, g, &codes, scales)
}

#[cfg(test)]
mod tests {
    use super::*;
    use llm_compress_core::Mat;

    fn weight(rows: usize, cols: usize) -> Mat<f32> {
        let mut rng = llm_compress_core::rng::SplitMix64::new(5);
        Mat::from_fn(rows, cols, |i, _| {
            // Rows of very different magnitudes, some outliers.
            let u = rng.uniform() as f32 - 0.5;
            let big = if rng.below(50) == 0 { 8.0 } else { 1.0 };
            u * big * (1.0 + i as f32)
        })
    }

    /// Every value is within half a (group) step of its original, and per-group scales never do
    /// worse than per-channel ones.
    #[test]
    fn rtn_error_is_at_most_half_a_step_per_scheme() {
        let w = weight(12, 300);
        for (format, group) in [
            (QuantFormat::Int8, None),
            (QuantFormat::Int4, None),
            (QuantFormat::Int4, Some(32)),
            (QuantFormat::Int4, Some(64)),
            (QuantFormat::Int4, Some(128)),
        ] {
            let q = quantize_rtn(w.as_ref(), format, group).unwrap();
            let d = q.to_dense();
            let g = q.group_size();
            let mut sq = 0.0f64;
            for r in 0..12 {
                for j in 0..300 {
                    let s = q.scales()[r * q.groups_per_row() + j / g].to_f32();
                    let e = (w[(r, j)] - d[(r, j)]).abs();
                    assert!(
                        e <= 0.5 * s * 1.001 + 1e-7,
                        "{format:?} {group:?} {e} > {s}/2"
                    );
                    sq += (e as f64).powi(2);
                }
            }
            eprintln!("{format:?} {group:?}: squared error {sq:.4}");
        }
        let err = |group| {
            let q = quantize_rtn(w.as_ref(), QuantFormat::Int4, group).unwrap();
            (&q.to_dense() - &w).norm_l2()
        };
        assert!(err(Some(32)) < err(Some(128)));
        assert!(err(Some(128)) < err(None));
        let q8 = quantize_rtn(w.as_ref(), QuantFormat::Int8, None).unwrap();
        assert!((&q8.to_dense() - &w).norm_l2() < err(Some(32)) / 8.0);
    }

    /// Sparse RTN: pruned positions stay zero, every kept value is within half a step of its
    /// group's scale, for both mask axes and every scheme.
    #[test]
    fn sparse_rtn_error_is_at_most_half_a_step_and_keeps_the_mask() {
        use llm_compress_core::{GroupAxis, SparsityPattern};
        let w = weight(16, 256);
        for axis in [GroupAxis::Inputs, GroupAxis::Outputs] {
            // Two kept per group of four consecutive positions along the axis.
            let keep = |i: usize, j: usize| {
                let (line, p) = match axis {
                    GroupAxis::Inputs => (i, j),
                    GroupAxis::Outputs => (j, i),
                };
                (p + line) % 4 < 2
            };
            let s = NmSparse::from_dense(
                w.as_ref(),
                keep,
                axis,
                SparsityPattern::NM { zeros: 2, group: 4 },
            )
            .unwrap();
            for (format, group) in [
                (QuantFormat::Int8, None),
                (QuantFormat::Int4, None),
                (QuantFormat::Int4, Some(32)),
                (QuantFormat::Int4, Some(128)),
                (QuantFormat::F16, None),
            ] {
                let q = quantize_sparse_rtn(&s, format, group).unwrap();
                let (d, orig) = (q.to_dense(), s.to_dense());
                let g = q.group_size();
                for i in 0..16 {
                    for j in 0..256 {
                        if !s.is_kept(i, j) {
                            assert_eq!(d[(i, j)], 0.0);
                            continue;
                        }
                        let e = (d[(i, j)] - orig[(i, j)]).abs();
                        let bound = match format {
                            QuantFormat::F16 => orig[(i, j)].abs() * 1e-3,
                            _ => 0.5 * q.scales()[i * q.groups_per_row() + j / g].to_f32() * 1.001,
                        };
                        assert!(
                            e <= bound + 1e-7,
                            "{axis:?} {format:?} {group:?}: {e} > {bound}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn zero_rows_and_f16_are_handled() {
        let mut w = weight(3, 10);
        for j in 0..10 {
            w[(1, j)] = 0.0;
        }
        let q = quantize_rtn(w.as_ref(), QuantFormat::Int4, Some(4)).unwrap();
        let d = q.to_dense();
        assert!((0..10).all(|j| d[(1, j)] == 0.0));
        let h = quantize_rtn(w.as_ref(), QuantFormat::F16, None).unwrap();
        let d = h.to_dense();
        for j in 0..10 {
            assert!((d[(2, j)] - w[(2, j)]).abs() <= w[(2, j)].abs() * 1e-3);
        }
        assert!(quantize_rtn(w.as_ref(), QuantFormat::Int4, Some(0)).is_err());
        w[(0, 0)] = f32::NAN;
        assert!(quantize_rtn(w.as_ref(), QuantFormat::Int8, None).is_err());
    }
}
