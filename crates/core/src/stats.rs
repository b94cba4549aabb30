//! Calibration statistics of one linear input (ALGORITHMS.md §1.1).

use crate::{par, Mat, MatRef};
use faer::linalg::matmul::triangular::{matmul as tri_matmul, BlockStructure};
use faer::Accum;

/// Which statistics a method needs from the calibration walk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatsRequest {
    /// The full `f64` Gram `X Xᵀ` (whitening, GPTQ, Basis Sharing, Basis Selection).
    pub gram: bool,
    /// Only the Gram's diagonal, the squared channel norms (Wanda, DaSS).
    pub channel_norms: bool,
    /// Per-channel `Σ_t |x_tj|` (ASVD's abs-mean scaling).
    pub abs_sums: bool,
}

impl StatsRequest {
    /// Nothing requested.
    pub const NONE: StatsRequest = StatsRequest {
        gram: false,
        channel_norms: false,
        abs_sums: false,
    };
    /// Everything either request asks for.
    pub fn union(self, o: StatsRequest) -> StatsRequest {
        StatsRequest {
            gram: self.gram || o.gram,
            channel_norms: self.channel_norms || o.channel_norms,
            abs_sums: self.abs_sums || o.abs_sums,
        }
    }
}

/// What calibration learned about one linear input.
///
/// Channel norms are the Gram's diagonal and are never stored twice: when only norms were
/// requested, `gram` is `None` and `sq_norms` holds the diagonal.
#[derive(Clone, Debug)]
pub struct InputStats {
    /// `G = Σ_t x_t x_tᵀ` (`d_in × d_in`, un-normalised, f64), when requested.
    pub gram: Option<Mat<f64>>,
    /// `Σ_t x_tj²` when the Gram was not requested.
    sq_norms: Option<Vec<f64>>,
    /// `Σ_t |x_tj|`, when requested.
    pub abs_sums: Option<Vec<f64>>,
    /// Number of calibration tokens `T`.
    pub tokens: u64,
}

impl InputStats {
    /// Stats made of a Gram alone (tests, synthetic data).
    pub fn from_gram(gram: Mat<f64>, tokens: u64) -> Self {
        Self {
            gram: Some(gram),
            sq_norms: None,
            abs_sums: None,
            tokens,
        }
    }

    /// Input dimension.
    pub fn dim(&self) -> usize {
        match (&self.gram, &self.sq_norms, &self.abs_sums) {
            (Some(g), _, _) => g.nrows(),
            (None, Some(v), _) => v.len(),
            (None, None, Some(a)) => a.len(),
            _ => 0,
        }
    }

    /// `Σ_t x_tj²` per channel (the Gram's diagonal).
    pub fn squared_norms(&self) -> Option<Vec<f64>> {
        if let Some(g) = &self.gram {
            return Some((0..g.nrows()).map(|j| g[(j, j)]).collect());
        }
        self.sq_norms.clone()
    }
}

/// Accumulates [`InputStats`] over batches: each batch product in f32 (GEMM speed), added into
/// an f64 accumulator (ALGORITHMS.md §1.1).
#[derive(Clone, Debug)]
pub struct GramAccumulator {
    request: StatsRequest,
    dim: usize,
    gram: Option<Mat<f64>>,
    sq_norms: Option<Vec<f64>>,
    abs_sums: Option<Vec<f64>>,
    tokens: u64,
}

impl GramAccumulator {
    /// An empty accumulator for inputs of dimension `dim`.
    pub fn new(dim: usize, request: StatsRequest) -> Self {
        Self {
            request,
            dim,
            gram: request.gram.then(|| Mat::<f64>::zeros(dim, dim)),
            sq_norms: (request.channel_norms && !request.gram).then(|| vec![0.0; dim]),
            abs_sums: request.abs_sums.then(|| vec![0.0; dim]),
            tokens: 0,
        }
    }

    /// What this accumulator collects.
    pub fn request(&self) -> StatsRequest {
        self.request
    }

    /// Add a batch `x` (`d_in × T`, one token per column).
    pub fn add(&mut self, x: MatRef<'_, f32>) {
        assert_eq!(x.nrows(), self.dim, "GramAccumulator: batch rows != dim");
        self.tokens += x.ncols() as u64;
        if let Some(g) = &mut self.gram {
            // Lower triangle only (SYRK): half the FLOPs; `finish` mirrors it.
            let mut b = Mat::<f32>::zeros(self.dim, self.dim);
            tri_matmul(
                b.as_mut(),
                BlockStructure::TriangularLower,
                Accum::Replace,
                x,
                BlockStructure::Rectangular,
                x.transpose(),
                BlockStructure::Rectangular,
                1.0f32,
                par(),
            );
            for j in 0..self.dim {
                for i in j..self.dim {
                    g[(i, j)] += b[(i, j)] as f64;
                }
            }
        }
        if self.sq_norms.is_some() || self.abs_sums.is_some() {
            for t in 0..x.ncols() {
                let col = x.col(t);
                if let Some(s) = &mut self.sq_norms {
                    for (j, v) in col.iter().enumerate() {
                        s[j] += (*v as f64) * (*v as f64);
                    }
                }
                if let Some(a) = &mut self.abs_sums {
                    for (j, v) in col.iter().enumerate() {
                        a[j] += v.abs() as f64;
                    }
                }
            }
        }
    }

    /// Merge another accumulator of the same shape (e.g. a group's Grams).
    pub fn merge(&mut self, other: &GramAccumulator) {
        assert_eq!(self.dim, other.dim);
        self.tokens += other.tokens;
        if let (Some(a), Some(b)) = (&mut self.gram, &other.gram) {
            *a += b;
        }
        for (a, b) in [
            (&mut self.sq_norms, &other.sq_norms),
            (&mut self.abs_sums, &other.abs_sums),
        ] {
            if let (Some(a), Some(b)) = (a, b) {
                a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
            }
        }
    }

    /// The accumulated statistics.
    pub fn finish(self) -> InputStats {
        let gram = self.gram.map(|mut g| {
            for j in 0..self.dim {
                for i in j + 1..self.dim {
                    g[(j, i)] = g[(i, j)];
                }
            }
            g
        });
        InputStats {
            gram,
            sq_norms: self.sq_norms,
            abs_sums: self.abs_sums,
            tokens: self.tokens,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gram_over_batches_equals_gram_of_all() {
        let x = Mat::<f32>::from_fn(3, 10, |i, t| ((i * 5 + t * 3) % 7) as f32 - 3.0);
        let req = StatsRequest {
            gram: true,
            channel_norms: false,
            abs_sums: true,
        };
        let mut acc = GramAccumulator::new(3, req);
        acc.add(x.as_ref().subcols(0, 4));
        acc.add(x.as_ref().subcols(4, 6));
        let s = acc.finish();
        assert_eq!(s.tokens, 10);
        let g = s.gram.as_ref().unwrap();
        for i in 0..3 {
            for j in 0..3 {
                let want: f64 = (0..10).map(|t| x[(i, t)] as f64 * x[(j, t)] as f64).sum();
                assert!((g[(i, j)] - want).abs() < 1e-9);
            }
            let abs: f64 = (0..10).map(|t| x[(i, t)].abs() as f64).sum();
            assert_eq!(s.abs_sums.as_ref().unwrap()[i], abs);
        }
        let norms = s.squared_norms().unwrap();
        assert_eq!(norms[1], g[(1, 1)]);
    }
}
