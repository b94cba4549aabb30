//! Quantizing a whole [`Linear`], whatever its representation (the composition of §7: a
//! low-rank linear quantizes its factors).
//!
//! [`quantize`] and [`quantized_bytes`] are recursive matches over [`Linear`]. **Note for the
//! merge of the sparse and shared-basis branches:** add one arm per new variant here and in
//! [`quantized_bytes`] (a sparse linear quantizes its kept values, a shared one its basis and
//! coefficients); the compiler will point at both matches.

use crate::gptq::{quantize_gptq, GptqOptions};
use crate::rtn::{effective_group, quantize_rtn};
use faer::{Mat, MatRef};
use llm_compress_core::{CoreError, Linear, QuantFormat};
use serde::{Deserialize, Serialize};

/// Which quantizer turns a weight into codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Quantizer {
    /// Symmetric round-to-nearest.
    Rtn,
    /// GPTQ with the input Gram.
    Gptq,
}

impl Quantizer {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "rtn" => Some(Self::Rtn),
            "gptq" => Some(Self::Gptq),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Self::Rtn => "rtn",
            Self::Gptq => "gptq",
        }
    }
}

/// How one layer's linears are quantized.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct QuantScheme {
    pub format: QuantFormat,
    /// Columns per scale group for int4 (`None` = per output channel). Int8 is always
    /// per-channel.
    pub group_size: Option<usize>,
    pub quantizer: Quantizer,
}

impl QuantScheme {
    /// The group size actually used for a matrix with `cols` columns.
    pub fn group_for(&self, cols: usize) -> Result<usize, CoreError> {
        match self.format {
            QuantFormat::Int4 => effective_group(cols, self.group_size),
            _ => Ok(cols.max(1)),
        }
    }
}

/// Quantize `lin` with `scheme`. `gram` is the Gram of `lin`'s input (required by GPTQ); for a
/// low-rank linear the second factor's Gram is `F G Fᵀ` (computed in f64).
pub fn quantize(
    lin: &Linear,
    scheme: &QuantScheme,
    gram: Option<MatRef<'_, f64>>,
) -> Result<Linear, CoreError> {
    match lin {
        Linear::Dense(w) => {
            let group = match scheme.format {
                QuantFormat::Int4 => scheme.group_size,
                _ => None,
            };
            let q = match (scheme.quantizer, scheme.format) {
                (_, QuantFormat::F16) | (Quantizer::Rtn, _) => {
                    quantize_rtn(w.as_ref(), scheme.format, group)?
                }
                (Quantizer::Gptq, _) => {
                    let g = gram.ok_or_else(|| {
                        CoreError::MissingStats("GPTQ needs the input Gram".into())
                    })?;
                    quantize_gptq(w.as_ref(), g, scheme.format, group, &GptqOptions::default())?
                }
            };
            Ok(Linear::Quantized(q))
        }
        Linear::LowRank { first, second } => {
            let inner_gram = match (scheme.quantizer, gram) {
                (Quantizer::Gptq, Some(g)) => Some(factor_gram(&first.to_dense(), g)),
                _ => None,
            };
            let f = quantize(first, scheme, gram)?;
            let s = quantize(second, scheme, inner_gram.as_ref().map(|m| m.as_ref()))?;
            Linear::low_rank(f, s)
        }
        Linear::Quantized(_) => Err(CoreError::Parameter {
            name: "linear".into(),
            detail: "already quantized".into(),
        }),
        Linear::Sparse(_) | Linear::Shared { .. } => Err(not_yet(lin)),
    }
}

/// Quantizing the kept values of a sparse linear, or a shared basis once for its whole group,
/// is not implemented yet: refused rather than densified.
fn not_yet(lin: &Linear) -> CoreError {
    CoreError::Parameter {
        name: "linear".into(),
        detail: format!(
            "quantizing a {} linear is not supported yet (dense and low-rank are)",
            lin.describe()
        ),
    }
}

/// `F G Fᵀ`: the Gram of `F x` given the Gram `G` of `x` (f64).
fn factor_gram(f: &Mat<f32>, g: MatRef<'_, f64>) -> Mat<f64> {
    let fd = Mat::<f64>::from_fn(f.nrows(), f.ncols(), |i, j| f[(i, j)] as f64);
    let fg = &fd * g;
    &fg * fd.transpose()
}

/// Bytes `lin` will occupy once quantized with `scheme` (packed values and f16 scales), exactly
/// [`Linear::storage_bytes`] of [`quantize`]'s result.
pub fn quantized_bytes(lin: &Linear, scheme: &QuantScheme) -> Result<usize, CoreError> {
    match lin {
        Linear::Dense(w) => {
            let (r, c) = (w.nrows(), w.ncols());
            Ok(scheme.format.matrix_bytes(r, c, scheme.group_for(c)?))
        }
        Linear::LowRank { first, second } => {
            Ok(quantized_bytes(first, scheme)? + quantized_bytes(second, scheme)?)
        }
        Linear::Quantized(_) => Err(CoreError::Parameter {
            name: "linear".into(),
            detail: "already quantized".into(),
        }),
        Linear::Sparse(_) | Linear::Shared { .. } => Err(not_yet(lin)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use llm_compress_core::rng::SplitMix64;

    fn rand_mat(r: usize, c: usize, seed: u64) -> Mat<f32> {
        let mut rng = SplitMix64::new(seed);
        Mat::from_fn(r, c, |_, _| rng.normal() as f32)
    }

    /// Quantizing a low-rank linear quantizes both factors; the byte prediction is exact, and
    /// the forward of the quantized factors equals the dense product of their dequantized forms.
    #[test]
    fn low_rank_quantizes_its_factors_with_exact_byte_counts() {
        let lr = Linear::low_rank(
            Linear::Dense(rand_mat(6, 40, 1)),
            Linear::Dense(rand_mat(30, 6, 2)),
        )
        .unwrap();
        let x = rand_mat(40, 200, 3);
        let xd = Mat::<f64>::from_fn(40, 200, |i, j| x[(i, j)] as f64);
        let g = &xd * xd.transpose();
        for quantizer in [Quantizer::Rtn, Quantizer::Gptq] {
            for (format, group_size) in [
                (QuantFormat::Int8, None),
                (QuantFormat::Int4, Some(32)),
                (QuantFormat::F16, None),
            ] {
                let s = QuantScheme {
                    format,
                    group_size,
                    quantizer,
                };
                let q = quantize(&lr, &s, Some(g.as_ref())).unwrap();
                assert_eq!(q.storage_bytes(), quantized_bytes(&lr, &s).unwrap());
                assert_eq!(q.rank(), Some(6));
                let Linear::LowRank { first, second } = &q else {
                    panic!("not low rank")
                };
                assert!(matches!(**first, Linear::Quantized(_)));
                assert!(matches!(**second, Linear::Quantized(_)));
                let y = q.apply(x.as_ref());
                let yd = &q.to_dense() * &x;
                assert!((&y - &yd).norm_l2() <= 1e-4 * yd.norm_l2());
                let rel = (&q.to_dense() - &lr.to_dense()).norm_l2() / lr.to_dense().norm_l2();
                let bound = match format {
                    QuantFormat::Int4 => 0.2,
                    QuantFormat::Int8 => 0.02,
                    QuantFormat::F16 => 1e-3,
                };
                assert!(rel < bound, "{quantizer:?} {format:?}: {rel}");
            }
        }
        let s = QuantScheme {
            format: QuantFormat::Int8,
            group_size: None,
            quantizer: Quantizer::Gptq,
        };
        assert!(quantize(&lr, &s, None).is_err());
    }
}
