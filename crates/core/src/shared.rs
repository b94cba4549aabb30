//! Linears that share a factor ([`Linear::Shared`], Basis Sharing, ALGORITHMS.md §3) and how
//! to count a model that holds them.
//!
//! # Counting rule
//! A shared basis is stored once per group, however many layers read it. So that a sum over
//! linears does not count it once per reader, [`Linear::param_count`] and
//! [`Linear::storage_bytes`] of a [`Linear::Shared`] count its **coefficient only**, and the
//! model-level totals [`distinct_param_count`] / [`distinct_storage_bytes`] add every distinct
//! basis once, identifying bases by their [`Arc`] pointer. Any count over a whole model must use
//! these two functions; a per-layer sum of `param_count` misses the bases.
//!
//! ```
//! use llm_compress_core::shared::distinct_param_count;
//! use llm_compress_core::{Linear, Mat};
//! use std::sync::Arc;
//! let basis = Arc::new(Linear::Dense(Mat::<f32>::zeros(2, 6))); // k × d_in
//! let a = Linear::shared(basis.clone(), Linear::Dense(Mat::zeros(4, 2)))?;
//! let b = Linear::shared(basis, Linear::Dense(Mat::zeros(4, 2)))?;
//! assert_eq!(a.param_count(), 8); // the coefficient only
//! assert_eq!(distinct_param_count([&a, &b]), 12 + 8 + 8); // the basis once
//! # Ok::<(), llm_compress_core::CoreError>(())
//! ```

use crate::{CoreError, Linear};
use std::collections::BTreeSet;
use std::sync::Arc;

impl Linear {
    /// `y = coeff(basis(x))` with a shared `basis` (`k × d_in`) and a private `coeff`
    /// (`d_out × k`).
    pub fn shared(basis: Arc<Linear>, coeff: Linear) -> Result<Self, CoreError> {
        let (k1, _) = basis.shape();
        let (_, k2) = coeff.shape();
        if k1 != k2 {
            return Err(CoreError::Shape {
                what: "shared basis and coefficient".into(),
                expected: (k1, k1),
                got: (k1, k2),
            });
        }
        Ok(Linear::Shared {
            basis,
            coeff: Box::new(coeff),
        })
    }

    /// The shared basis of a [`Linear::Shared`], `None` otherwise.
    pub fn shared_basis(&self) -> Option<&Arc<Linear>> {
        match self {
            Linear::Shared { basis, .. } => Some(basis),
            _ => None,
        }
    }
}

/// Every shared basis reachable from `lin` (through nested factors).
fn collect_bases<'a>(lin: &'a Linear, out: &mut Vec<&'a Arc<Linear>>) {
    match lin {
        Linear::Dense(_)
        | Linear::Sparse(_)
        | Linear::Quantized(_)
        | Linear::QuantizedSparse(_) => {}
        Linear::LowRank { first, second } => {
            collect_bases(first, out);
            collect_bases(second, out);
        }
        Linear::Shared { basis, coeff } => {
            out.push(basis);
            collect_bases(basis, out);
            collect_bases(coeff, out);
        }
    }
}

/// Sum of `measure` over `linears`, plus `measure` of each distinct shared basis once.
fn distinct_sum<'a>(
    linears: impl IntoIterator<Item = &'a Linear>,
    measure: impl Fn(&Linear) -> usize,
) -> usize {
    let mut seen = BTreeSet::new();
    let mut total = 0;
    let mut bases = Vec::new();
    for lin in linears {
        total += measure(lin);
        bases.clear();
        collect_bases(lin, &mut bases);
        for b in &bases {
            if seen.insert(Arc::as_ptr(b) as usize) {
                total += measure(b);
            }
        }
    }
    total
}

/// Parameters stored by `linears`, each shared basis counted once (see the module docs).
pub fn distinct_param_count<'a>(linears: impl IntoIterator<Item = &'a Linear>) -> usize {
    distinct_sum(linears, Linear::param_count)
}

/// Compact-format bytes of `linears`, each shared basis counted once.
pub fn distinct_storage_bytes<'a>(linears: impl IntoIterator<Item = &'a Linear>) -> usize {
    distinct_sum(linears, Linear::storage_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Mat;

    #[test]
    fn shared_forward_and_counts() {
        let basis = Arc::new(Linear::Dense(Mat::<f32>::from_fn(2, 5, |i, j| {
            (i as f32 + 1.0) * (j as f32 - 2.0)
        })));
        let c1 = Mat::<f32>::from_fn(3, 2, |i, j| i as f32 - j as f32 * 0.5);
        let c2 = Mat::<f32>::from_fn(3, 2, |i, j| i as f32 * 0.25 + j as f32);
        let a = Linear::shared(basis.clone(), Linear::Dense(c1)).unwrap();
        let b = Linear::shared(basis.clone(), Linear::Dense(c2)).unwrap();
        assert_eq!(a.shape(), (3, 5));
        assert_eq!(a.rank(), Some(2));
        assert_eq!(a.param_count(), 6);
        assert_eq!(a.storage_bytes(), 24);
        let x = Mat::<f32>::from_fn(5, 4, |i, t| ((i * 7 + t * 3) % 5) as f32 - 2.0);
        let y = a.apply(x.as_ref());
        let yd = Linear::Dense(a.to_dense()).apply(x.as_ref());
        for t in 0..4 {
            for i in 0..3 {
                assert!((y[(i, t)] - yd[(i, t)]).abs() < 1e-5);
            }
        }
        // Two readers of one basis: basis once. A second basis with equal content counts again.
        assert_eq!(distinct_param_count([&a, &b]), 10 + 6 + 6);
        assert_eq!(distinct_storage_bytes([&a, &b]), 4 * (10 + 6 + 6));
        let other = Arc::new((*basis).clone());
        let c = Linear::shared(other, Linear::Dense(Mat::zeros(3, 2))).unwrap();
        assert_eq!(distinct_param_count([&a, &b, &c]), 10 + 6 + 6 + 10 + 6);
        assert!(Linear::shared(basis, Linear::Dense(Mat::zeros(3, 4))).is_err());
    }
}
