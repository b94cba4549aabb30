//! How one weight is stored, and its forward pass.

use crate::{par, CoreError, Mat, MatMut, MatRef, NmSparse, QuantMatrix, QuantSparse};
use faer::linalg::matmul::matmul;
use faer::Accum;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// The seven linears of a Llama-family decoder layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinearKind {
    /// Query projection.
    Q,
    /// Key projection.
    K,
    /// Value projection.
    V,
    /// Attention output projection.
    O,
    /// MLP gate projection.
    Gate,
    /// MLP up projection.
    Up,
    /// MLP down projection.
    Down,
}

impl LinearKind {
    /// All kinds, in the order a decoder layer uses them.
    pub const ALL: [LinearKind; 7] = [
        LinearKind::Q,
        LinearKind::K,
        LinearKind::V,
        LinearKind::O,
        LinearKind::Gate,
        LinearKind::Up,
        LinearKind::Down,
    ];

    /// The Hugging Face module name (`q_proj`, ..., `down_proj`).
    pub fn hf_name(self) -> &'static str {
        match self {
            LinearKind::Q => "self_attn.q_proj",
            LinearKind::K => "self_attn.k_proj",
            LinearKind::V => "self_attn.v_proj",
            LinearKind::O => "self_attn.o_proj",
            LinearKind::Gate => "mlp.gate_proj",
            LinearKind::Up => "mlp.up_proj",
            LinearKind::Down => "mlp.down_proj",
        }
    }

    /// Short name (`q`, `k`, `v`, `o`, `gate`, `up`, `down`).
    pub fn short(self) -> &'static str {
        match self {
            LinearKind::Q => "q",
            LinearKind::K => "k",
            LinearKind::V => "v",
            LinearKind::O => "o",
            LinearKind::Gate => "gate",
            LinearKind::Up => "up",
            LinearKind::Down => "down",
        }
    }

    /// Parse a short name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.short() == s)
    }

    /// The distinct input a kind reads: q/k/v share the attention input, gate/up the MLP input.
    pub fn input(self) -> LinearInput {
        match self {
            LinearKind::Q | LinearKind::K | LinearKind::V => LinearInput::Attn,
            LinearKind::O => LinearInput::AttnOut,
            LinearKind::Gate | LinearKind::Up => LinearInput::Mlp,
            LinearKind::Down => LinearInput::MlpHidden,
        }
    }
}

/// The four distinct linear inputs of a decoder layer (one Gram each).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinearInput {
    /// Normalised residual stream read by q, k, v.
    Attn,
    /// Attention output read by o.
    AttnOut,
    /// Normalised residual stream read by gate, up.
    Mlp,
    /// `act(gate x) ⊙ up x`, read by down.
    MlpHidden,
}

impl LinearInput {
    /// The four distinct inputs, in layer order.
    pub const ALL: [LinearInput; 4] = [
        LinearInput::Attn,
        LinearInput::AttnOut,
        LinearInput::Mlp,
        LinearInput::MlpHidden,
    ];
}

/// Which linear of which decoder layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LinearId {
    /// Decoder layer index, from 0.
    pub layer: usize,
    /// Which of the seven linears.
    pub kind: LinearKind,
}

impl fmt::Display for LinearId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "layers.{}.{}", self.layer, self.kind.short())
    }
}

/// How one weight `W` (`d_out × d_in`) is stored. Closed and recursive, so that methods compose.
#[derive(Clone, Debug)]
pub enum Linear {
    /// A dense `d_out × d_in` matrix.
    Dense(Mat<f32>),
    /// `y = second(first(x))`: `first` is `k × d_in`, `second` is `d_out × k`.
    LowRank {
        /// Applied first: `d_in → k`.
        first: Box<Linear>,
        /// Applied second: `k → d_out`.
        second: Box<Linear>,
    },
    /// A pruned weight in packed form (kept values + keep bitmask), see [`NmSparse`].
    Sparse(NmSparse),
    /// `y = coeff(basis(x))` with a `basis` (`k × d_in`) shared by several layers through one
    /// [`Arc`] (Basis Sharing) and a private `coeff` (`d_out × k`). [`Linear::param_count`] and
    /// [`Linear::storage_bytes`] count the coefficient only; a model-level count adds each basis
    /// once (see [`crate::shared::distinct_param_count`]).
    Shared {
        /// The basis shared by a group of layers (`d_in → k`), one allocation for the group.
        basis: Arc<Linear>,
        /// This layer's coefficients (`k → d_out`).
        coeff: Box<Linear>,
    },
    /// Packed int8 / int4 codes with scales, or f16 values (LSAQ, `quant.rs`).
    Quantized(QuantMatrix),
    /// A pruned weight whose kept values are quantized (LSAQ after pruning, `quant_sparse.rs`).
    QuantizedSparse(QuantSparse),
}

impl Linear {
    /// `(d_out, d_in)`.
    pub fn shape(&self) -> (usize, usize) {
        match self {
            Linear::Dense(w) => (w.nrows(), w.ncols()),
            Linear::LowRank { first, second } => (second.shape().0, first.shape().1),
            Linear::Sparse(s) => s.shape(),
            Linear::Shared { basis, coeff } => (coeff.shape().0, basis.shape().1),
            Linear::Quantized(q) => q.shape(),
            Linear::QuantizedSparse(q) => q.shape(),
        }
    }

    /// Build a low-rank linear from factors `first` (`k × d_in`) and `second` (`d_out × k`).
    pub fn low_rank(first: Linear, second: Linear) -> Result<Self, CoreError> {
        let (k1, _) = first.shape();
        let (_, k2) = second.shape();
        if k1 != k2 {
            return Err(CoreError::Shape {
                what: "low-rank factors".into(),
                expected: (k1, k1),
                got: (k1, k2),
            });
        }
        Ok(Linear::LowRank {
            first: Box::new(first),
            second: Box::new(second),
        })
    }

    /// The inner rank of a low-rank linear, `None` for a dense one.
    pub fn rank(&self) -> Option<usize> {
        match self {
            Linear::Dense(_)
            | Linear::Sparse(_)
            | Linear::Quantized(_)
            | Linear::QuantizedSparse(_) => None,
            Linear::LowRank { first, .. } => Some(first.shape().0),
            Linear::Shared { basis, .. } => Some(basis.shape().0),
        }
    }

    /// `y = W x` for a batch `x` (`d_in × T`, one token per column) into `y` (`d_out × T`).
    pub fn forward(&self, x: MatRef<'_, f32>, y: MatMut<'_, f32>) {
        let (m, n) = self.shape();
        assert_eq!(x.nrows(), n, "forward: input rows != d_in");
        assert_eq!(
            (y.nrows(), y.ncols()),
            (m, x.ncols()),
            "forward: output shape"
        );
        match self {
            Linear::Dense(w) => matmul(y, Accum::Replace, w.as_ref(), x, 1.0f32, par()),
            Linear::LowRank { first, second } => {
                let mut z = Mat::<f32>::zeros(first.shape().0, x.ncols());
                first.forward(x, z.as_mut());
                second.forward(z.as_ref(), y);
            }
            Linear::Sparse(s) => s.forward(x, y),
            Linear::Shared { basis, coeff } => {
                let mut z = Mat::<f32>::zeros(basis.shape().0, x.ncols());
                basis.forward(x, z.as_mut());
                coeff.forward(z.as_ref(), y);
            }
            Linear::Quantized(q) => q.forward(x, y),
            Linear::QuantizedSparse(q) => q.forward(x, y),
        }
    }

    /// Convenience: `W x` into a new matrix.
    pub fn apply(&self, x: MatRef<'_, f32>) -> Mat<f32> {
        let mut y = Mat::<f32>::zeros(self.shape().0, x.ncols());
        self.forward(x, y.as_mut());
        y
    }

    /// Number of stored parameters (kept weights for a sparse linear).
    pub fn param_count(&self) -> usize {
        match self {
            Linear::Dense(w) => w.nrows() * w.ncols(),
            Linear::LowRank { first, second } => first.param_count() + second.param_count(),
            Linear::Sparse(s) => s.nnz(),
            Linear::Shared { coeff, .. } => coeff.param_count(),
            Linear::Quantized(q) => q.shape().0 * q.shape().1,
            Linear::QuantizedSparse(q) => q.nnz(),
        }
    }

    /// Bytes this linear occupies in the compact format (f32 values, plus the mask of a
    /// sparse linear; packed codes and scales for quantized ones).
    pub fn storage_bytes(&self) -> usize {
        match self {
            Linear::Dense(w) => 4 * w.nrows() * w.ncols(),
            Linear::LowRank { first, second } => first.storage_bytes() + second.storage_bytes(),
            Linear::Sparse(s) => s.storage_bytes(),
            Linear::Shared { coeff, .. } => coeff.storage_bytes(),
            Linear::Quantized(q) => q.storage_bytes(),
            Linear::QuantizedSparse(q) => q.storage_bytes(),
        }
    }

    /// The dense `d_out × d_in` matrix this linear represents.
    pub fn to_dense(&self) -> Mat<f32> {
        match self {
            Linear::Dense(w) => w.clone(),
            Linear::LowRank { first, second } => {
                let f = first.to_dense();
                second.apply(f.as_ref())
            }
            Linear::Sparse(s) => s.to_dense(),
            Linear::Shared { basis, coeff } => coeff.apply(basis.to_dense().as_ref()),
            Linear::Quantized(q) => q.to_dense(),
            Linear::QuantizedSparse(q) => q.to_dense(),
        }
    }

    /// A short description of the representation (`dense`, `low_rank(k=..)`).
    pub fn describe(&self) -> String {
        match self {
            Linear::Dense(_) => "dense".into(),
            Linear::LowRank { first, second } => match (&**first, &**second) {
                (Linear::Dense(_), Linear::Dense(_)) => format!("low_rank(k={})", first.shape().0),
                _ => format!(
                    "low_rank(k={}; {}, {})",
                    first.shape().0,
                    first.describe(),
                    second.describe()
                ),
            },
            Linear::Sparse(s) => format!("sparse({}, {})", s.pattern(), s.axis().name()),
            Linear::Shared { basis, .. } => format!("shared(k={})", basis.shape().0),
            Linear::Quantized(q) => q.describe(),
            Linear::QuantizedSparse(q) => q.describe(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn low_rank_forward_equals_dense_product() {
        let a = Mat::<f32>::from_fn(2, 5, |i, j| (i as f32 + 1.0) * (j as f32 - 2.0));
        let b = Mat::<f32>::from_fn(3, 2, |i, j| i as f32 - j as f32 * 0.5);
        let lr = Linear::low_rank(Linear::Dense(a), Linear::Dense(b)).unwrap();
        assert_eq!(lr.shape(), (3, 5));
        assert_eq!(lr.rank(), Some(2));
        assert_eq!(lr.param_count(), 10 + 6);
        let x = Mat::<f32>::from_fn(5, 4, |i, t| ((i * 7 + t * 3) % 5) as f32 - 2.0);
        let y = lr.apply(x.as_ref());
        let yd = Linear::Dense(lr.to_dense()).apply(x.as_ref());
        for t in 0..4 {
            for i in 0..3 {
                assert!((y[(i, t)] - yd[(i, t)]).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn low_rank_rejects_mismatched_factors() {
        let a = Mat::<f32>::zeros(2, 5);
        let b = Mat::<f32>::zeros(3, 4);
        assert!(Linear::low_rank(Linear::Dense(a), Linear::Dense(b)).is_err());
    }
}
