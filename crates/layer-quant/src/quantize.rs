//! Quantizing a whole [`Linear`], whatever its representation (the composition of §7):
//! - a low-rank linear quantizes its two factors;
//! - a sparse linear quantizes its kept values and keeps its mask ([`llm_compress_core::QuantSparse`], RTN with one
//!   scale per output row and input-column group, [`crate::rtn::quantize_sparse_rtn`]);
//! - a shared-basis linear quantizes its private coefficient, and its basis **once for the
//!   whole group**: [`QuantizedBases::prepare`] quantizes every distinct basis (by [`Arc`]
//!   identity) once, and [`quantize_with_bases`] puts the same quantized [`Arc`] into every
//!   linear of the group, so the basis stays one buffer (and is stored once).
//!
//! **Rule when the layers of a group get different precisions:** the basis takes the highest
//! precision among the layers that read it (f16 > int8 > int4); each coefficient takes its own
//! layer's. A basis is read by every layer of its group, so its error reaches all of them; the
//! allocator counts it once, at that highest level (see [`crate::allocate::CostModel`]).
//!
//! [`quantized_bytes`] of a shared linear counts its coefficient only, as
//! [`Linear::storage_bytes`] does; the basis is counted once per group by the caller.

use crate::gptq::{quantize_gptq, GptqOptions};
use crate::rtn::{effective_group, quantize_rtn, quantize_sparse_rtn};
use faer::{Mat, MatRef};
use llm_compress_core::{CoreError, Linear, QuantFormat};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

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
    /// Parse `rtn` or `gptq`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "rtn" => Some(Self::Rtn),
            "gptq" => Some(Self::Gptq),
            _ => None,
        }
    }
    /// The name [`Quantizer::parse`] accepts.
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
    /// The storage precision.
    pub format: QuantFormat,
    /// Columns per scale group for int4 (`None` = per output channel). Int8 is always
    /// per-channel.
    pub group_size: Option<usize>,
    /// Round-to-nearest or GPTQ.
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
/// low-rank or shared linear the second factor's Gram is `F G Fᵀ` (computed in f64). A shared
/// basis is quantized here with `scheme` into a new buffer: to quantize a group of linears
/// that share bases, use [`QuantizedBases::prepare`] and [`quantize_with_bases`].
pub fn quantize(
    lin: &Linear,
    scheme: &QuantScheme,
    gram: Option<MatRef<'_, f64>>,
) -> Result<Linear, CoreError> {
    quantize_with_bases(lin, scheme, gram, &QuantizedBases::default())
}

/// [`quantize`], taking the quantized form of every shared basis found in `bases` (the same
/// [`Arc`] for every linear of a group); a basis not found there is quantized with `scheme`.
pub fn quantize_with_bases(
    lin: &Linear,
    scheme: &QuantScheme,
    gram: Option<MatRef<'_, f64>>,
    bases: &QuantizedBases,
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
            let f = quantize_with_bases(first, scheme, gram, bases)?;
            let inner = inner_gram.as_ref().map(|m| m.as_ref());
            let s = quantize_with_bases(second, scheme, inner, bases)?;
            Linear::low_rank(f, s)
        }
        Linear::Sparse(sp) => {
            if scheme.quantizer == Quantizer::Gptq && scheme.format != QuantFormat::F16 {
                return Err(CoreError::Parameter {
                    name: "quantizer".into(),
                    detail: "GPTQ of a sparse linear is not supported (its error feedback \
                             would fill the pruned positions); use rtn"
                        .into(),
                });
            }
            let group = match scheme.format {
                QuantFormat::Int4 => scheme.group_size,
                _ => None,
            };
            let q = quantize_sparse_rtn(sp, scheme.format, group)?;
            Ok(Linear::QuantizedSparse(q))
        }
        Linear::Shared { basis, coeff } => {
            let qb = match bases.get(basis) {
                Some(q) => q,
                None => Arc::new(quantize_with_bases(basis, scheme, gram, bases)?),
            };
            let coeff_gram = match (scheme.quantizer, gram) {
                (Quantizer::Gptq, Some(g)) => Some(factor_gram(&basis.to_dense(), g)),
                _ => None,
            };
            let inner = coeff_gram.as_ref().map(|m| m.as_ref());
            let qc = quantize_with_bases(coeff, scheme, inner, bases)?;
            Linear::shared(qb, qc)
        }
        Linear::Quantized(_) | Linear::QuantizedSparse(_) => Err(CoreError::Parameter {
            name: "linear".into(),
            detail: "already quantized".into(),
        }),
    }
}

/// The quantized form of each distinct shared basis of a model, keyed by the identity of the
/// original basis [`Arc`] (which it keeps alive, so the key stays valid).
#[derive(Clone, Debug, Default)]
pub struct QuantizedBases(BTreeMap<usize, (Arc<Linear>, Arc<Linear>)>);

/// The identity of a shared basis buffer.
pub fn basis_key(basis: &Arc<Linear>) -> usize {
    Arc::as_ptr(basis) as usize
}

/// The scheme of a basis read by linears quantized with `schemes`: the highest precision
/// (f16 > int8 > int4) among them (see the module documentation).
pub fn basis_scheme(schemes: impl IntoIterator<Item = QuantScheme>) -> Option<QuantScheme> {
    schemes.into_iter().max_by_key(|s| s.format)
}

impl QuantizedBases {
    /// Quantize every distinct shared basis read by `readers` (each linear with the scheme of
    /// its layer) once, with [`basis_scheme`] of its readers' schemes. RTN only: GPTQ of a
    /// basis would need the Grams of every reader.
    pub fn prepare<'a>(
        readers: impl IntoIterator<Item = (&'a Linear, QuantScheme)>,
    ) -> Result<Self, CoreError> {
        let mut want: BTreeMap<usize, (Arc<Linear>, Vec<QuantScheme>)> = BTreeMap::new();
        for (lin, scheme) in readers {
            let mut found = Vec::new();
            collect_shared_bases(lin, &mut found);
            for b in found {
                want.entry(basis_key(&b))
                    .or_insert_with(|| (b.clone(), Vec::new()))
                    .1
                    .push(scheme);
            }
        }
        let mut out = BTreeMap::new();
        for (key, (b, schemes)) in want {
            let Some(scheme) = basis_scheme(schemes) else {
                continue;
            };
            if scheme.quantizer == Quantizer::Gptq && scheme.format != QuantFormat::F16 {
                return Err(CoreError::Parameter {
                    name: "quantizer".into(),
                    detail: "GPTQ of a shared basis is not supported; use rtn".into(),
                });
            }
            let q = Arc::new(quantize(&b, &scheme, None)?);
            out.insert(key, (b, q));
        }
        Ok(Self(out))
    }

    /// The quantized form of `basis`, if prepared.
    pub fn get(&self, basis: &Arc<Linear>) -> Option<Arc<Linear>> {
        self.0.get(&basis_key(basis)).map(|(_, q)| q.clone())
    }

    /// Number of distinct bases.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no basis was prepared.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Every shared basis reachable from `lin` (through factors and coefficients).
pub fn collect_shared_bases(lin: &Linear, out: &mut Vec<Arc<Linear>>) {
    match lin {
        Linear::LowRank { first, second } => {
            collect_shared_bases(first, out);
            collect_shared_bases(second, out);
        }
        Linear::Shared { basis, coeff } => {
            out.push(basis.clone());
            collect_shared_bases(coeff, out);
        }
        Linear::Dense(_)
        | Linear::Sparse(_)
        | Linear::Quantized(_)
        | Linear::QuantizedSparse(_) => {}
    }
}

/// `F G Fᵀ`: the Gram of `F x` given the Gram `G` of `x` (f64).
fn factor_gram(f: &Mat<f32>, g: MatRef<'_, f64>) -> Mat<f64> {
    let fd = Mat::<f64>::from_fn(f.nrows(), f.ncols(), |i, j| f[(i, j)] as f64);
    let fg = &fd * g;
    &fg * fd.transpose()
}

/// Bytes `lin` will occupy once quantized with `scheme` (packed values and f16 scales, plus the
/// mask of a sparse linear), exactly [`Linear::storage_bytes`] of [`quantize`]'s result: for a
/// shared linear its coefficient only (count each basis once, with [`quantized_bytes`] of the
/// basis at its own scheme).
pub fn quantized_bytes(lin: &Linear, scheme: &QuantScheme) -> Result<usize, CoreError> {
    match lin {
        Linear::Dense(w) => {
            let (r, c) = (w.nrows(), w.ncols());
            Ok(scheme.format.matrix_bytes(r, c, scheme.group_for(c)?))
        }
        Linear::LowRank { first, second } => {
            Ok(quantized_bytes(first, scheme)? + quantized_bytes(second, scheme)?)
        }
        Linear::Sparse(sp) => {
            let (r, c) = sp.shape();
            let scales = match scheme.format {
                QuantFormat::F16 => 0,
                _ => r * c.div_ceil(scheme.group_for(c)?),
            };
            Ok(
                llm_compress_core::quant_sparse::packed_bytes(scheme.format, sp.nnz())
                    + 2 * scales
                    + sp.mask().len(),
            )
        }
        Linear::Shared { coeff, .. } => quantized_bytes(coeff, scheme),
        Linear::Quantized(_) | Linear::QuantizedSparse(_) => Err(CoreError::Parameter {
            name: "linear".into(),
            detail: "already quantized".into(),
        }),
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

    fn scheme(format: QuantFormat, group_size: Option<usize>) -> QuantScheme {
        QuantScheme {
            format,
            group_size,
            quantizer: Quantizer::Rtn,
        }
    }

    fn rel_bound(format: QuantFormat) -> f32 {
        match format {
            QuantFormat::Int4 => 0.2,
            QuantFormat::Int8 => 0.02,
            QuantFormat::F16 => 1e-3,
        }
    }

    /// Two linears sharing one basis, in layers given int4 and int8: the basis is quantized
    /// once, at int8 (the highest precision of its readers), and both quantized linears hold
    /// the same buffer; the forward equals the dense forward of the dequantized matrix; the
    /// byte prediction counts the basis once; the error is within the scheme's bound.
    #[test]
    fn shared_basis_is_quantized_once_at_the_highest_precision() {
        let basis = Arc::new(Linear::Dense(rand_mat(8, 64, 4)));
        let a = Linear::shared(basis.clone(), Linear::Dense(rand_mat(40, 8, 5))).unwrap();
        let b = Linear::shared(basis.clone(), Linear::Dense(rand_mat(40, 8, 6))).unwrap();
        let (s4, s8) = (
            scheme(QuantFormat::Int4, Some(32)),
            scheme(QuantFormat::Int8, None),
        );
        let bases = QuantizedBases::prepare([(&a, s4), (&b, s8)]).unwrap();
        assert_eq!(bases.len(), 1);
        let qa = quantize_with_bases(&a, &s4, None, &bases).unwrap();
        let qb = quantize_with_bases(&b, &s8, None, &bases).unwrap();
        let (ba, bb) = (qa.shared_basis().unwrap(), qb.shared_basis().unwrap());
        assert!(Arc::ptr_eq(ba, bb), "the group keeps one basis buffer");
        let Linear::Quantized(qbasis) = &**ba else {
            panic!("basis is {}", ba.describe())
        };
        assert_eq!(qbasis.format(), QuantFormat::Int8);
        let Linear::Shared { coeff, .. } = &qa else {
            panic!("not shared")
        };
        let Linear::Quantized(qc) = &**coeff else {
            panic!("coefficient is {}", coeff.describe())
        };
        assert_eq!(qc.format(), QuantFormat::Int4);
        // Bytes: each coefficient at its own scheme, the basis once at int8.
        let total = llm_compress_core::shared::distinct_storage_bytes([&qa, &qb]);
        let predicted = quantized_bytes(&a, &s4).unwrap()
            + quantized_bytes(&b, &s8).unwrap()
            + quantized_bytes(&basis, &s8).unwrap();
        assert_eq!(total, predicted);
        let x = rand_mat(64, 70, 7);
        for (orig, q, s) in [(&a, &qa, s4), (&b, &qb, s8)] {
            let y = q.apply(x.as_ref());
            let yd = &q.to_dense() * &x;
            assert!((&y - &yd).norm_l2() <= 1e-5 * yd.norm_l2());
            let rel = (&q.to_dense() - &orig.to_dense()).norm_l2() / orig.to_dense().norm_l2();
            assert!(rel < rel_bound(s.format), "{:?}: {rel}", s.format);
        }
        // Without prepared bases a single linear gets its own copy at its own scheme.
        let alone = quantize(&a, &s4, None).unwrap();
        assert!(!Arc::ptr_eq(alone.shared_basis().unwrap(), ba));
        // GPTQ of a shared basis is refused, not approximated.
        let g = QuantScheme {
            quantizer: Quantizer::Gptq,
            ..s8
        };
        assert!(QuantizedBases::prepare([(&a, g)]).is_err());
    }

    /// A sparse linear keeps its mask, its kept values are quantized within the scheme's
    /// bound, the forward equals the dense forward of the dequantized matrix, and the byte
    /// prediction is exact.
    #[test]
    fn sparse_linear_quantizes_its_kept_values() {
        use llm_compress_core::{GroupAxis, NmSparse, SparsityPattern};
        let w = rand_mat(48, 256, 8);
        let x = rand_mat(256, 67, 9);
        for axis in [GroupAxis::Inputs, GroupAxis::Outputs] {
            let keep = |i: usize, j: usize| match axis {
                GroupAxis::Inputs => (j + i) % 4 < 2,
                GroupAxis::Outputs => (i + j) % 4 < 2,
            };
            let sp = NmSparse::from_dense(
                w.as_ref(),
                keep,
                axis,
                SparsityPattern::NM { zeros: 2, group: 4 },
            )
            .unwrap();
            let lin = Linear::Sparse(sp.clone());
            for s in [
                scheme(QuantFormat::Int4, Some(128)),
                scheme(QuantFormat::Int4, None),
                scheme(QuantFormat::Int8, None),
                scheme(QuantFormat::F16, None),
            ] {
                let q = quantize(&lin, &s, None).unwrap();
                let Linear::QuantizedSparse(qs) = &q else {
                    panic!("{}", q.describe())
                };
                assert_eq!(qs.mask(), sp.mask());
                assert_eq!(q.storage_bytes(), quantized_bytes(&lin, &s).unwrap());
                assert_eq!(q.param_count(), sp.nnz());
                let y = q.apply(x.as_ref());
                let yd = &q.to_dense() * &x;
                assert!(
                    (&y - &yd).norm_l2() <= 1e-5 * yd.norm_l2(),
                    "{}",
                    q.describe()
                );
                let d = sp.to_dense();
                let rel = (&q.to_dense() - &d).norm_l2() / d.norm_l2();
                assert!(rel < rel_bound(s.format), "{}: {rel}", q.describe());
            }
            let g = QuantScheme {
                quantizer: Quantizer::Gptq,
                ..scheme(QuantFormat::Int8, None)
            };
            assert!(quantize(&lin, &g, None).is_err());
        }
    }
}
