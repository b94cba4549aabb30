//! One-shot pruning of decoder linears without weight update: DaSS, Wanda and magnitude, at
//! N:M (`2:4`, `4:8`, any `N < M`) or unstructured sparsity (ALGORITHMS.md §4).
//!
//! - **DaSS** (dependency-aware semi-structured sparsity, §4.3): in a GLU MLP each intermediate
//!   channel `i` ties row `i` of `gate_proj`/`up_proj` to column `i` of `down_proj`. gate/up are
//!   scored `S_ij = |W_ij| · ‖h_i‖^α` (`h` = the down_proj input, α = 0.5 by default, no
//!   input-activation factor) and compared **along the intermediate (output) dimension**: for
//!   each input column, groups of `M` consecutive rows (§4.4). down_proj is scored as Wanda.
//! - **Wanda**: `S_ij = |W_ij| · ‖X_j‖₂` (input-channel norm), compared within each output row,
//!   groups of `M` consecutive input columns; unstructured: the `⌊s·d_in⌋` lowest of each row.
//! - **Magnitude**: `|W_ij|`, N:M within rows; unstructured: one threshold per matrix (as the
//!   Wanda reference's magnitude baseline).
//!
//! The result is a [`Linear::Sparse`] holding the kept values and a keep bitmask
//! ([`NmSparse`]). Scores are computed in `f64`; ties go to the lower position (pruned first).
//! Only the squared channel norms `Σ_t x_tj²` are needed ([`Pruner::needs`]); any positive
//! scaling of them (e.g. the reference's division by the number of sequences) leaves every mask
//! unchanged.
//!
//! # Example
//! ```
//! use llm_compress_core::{LinearKind, Mat, SparsityPattern};
//! use llm_compress_glu_sparsity::{PruneMethod, Pruner};
//! // gate_proj of a toy MLP: 8 intermediate channels × 4 model dims.
//! let w = Mat::<f32>::from_fn(8, 4, |i, j| 1.0 + (i * 4 + j) as f32);
//! let input_sq_norms = vec![1.0; 4];
//! let hidden_sq_norms: Vec<f64> = (0..8).map(|i| (i + 1) as f64).collect();
//! let pruner = Pruner::new(PruneMethod::Dass, "2:4".parse()?);
//! let lin = pruner.prune(LinearKind::Gate, w.as_ref(), &input_sq_norms, &hidden_sq_norms)?;
//! let dense = lin.to_dense();
//! // Every column, every group of 4 rows: exactly 2 zeros.
//! for j in 0..4 {
//!     for g in 0..2 {
//!         assert_eq!((0..4).filter(|r| dense[(4 * g + r, j)] == 0.0).count(), 2);
//!     }
//! }
//! assert_eq!(lin.param_count(), 16);
//! # Ok::<(), llm_compress_core::CoreError>(())
//! ```

#![warn(missing_docs)]
use llm_compress_core::{
    CoreError, GroupAxis, Linear, LinearKind, Mat, MatRef, NmSparse, SparsityPattern, StatsRequest,
};
use rayon::prelude::*;

/// The pruning metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PruneMethod {
    /// DaSS on gate/up (output-side norm, groups along outputs), Wanda on every other linear.
    Dass,
    /// Wanda on every linear.
    Wanda,
    /// Weight magnitude.
    Magnitude,
}

impl PruneMethod {
    /// Parse `dass`, `wanda` or `magnitude`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "dass" => Some(Self::Dass),
            "wanda" => Some(Self::Wanda),
            "magnitude" => Some(Self::Magnitude),
            _ => None,
        }
    }
    /// Stable name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Dass => "dass",
            Self::Wanda => "wanda",
            Self::Magnitude => "magnitude",
        }
    }
}

/// Which positions of a `d_out × d_in` weight are kept (row-major booleans).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeepMask {
    rows: usize,
    cols: usize,
    keep: Vec<bool>,
}

impl KeepMask {
    /// Whether `(i, j)` is kept.
    pub fn is_kept(&self, i: usize, j: usize) -> bool {
        self.keep[i * self.cols + j]
    }
    /// `(rows, cols)`.
    pub fn shape(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }
    /// Number of pruned positions.
    pub fn pruned(&self) -> usize {
        self.keep.iter().filter(|k| !**k).count()
    }
}

/// A pruning configuration: metric, pattern, sparsity, DaSS norm exponent.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pruner {
    /// The scoring metric.
    pub method: PruneMethod,
    /// Where the zeros go: N:M groups or unstructured.
    pub pattern: SparsityPattern,
    /// Fraction of weights zeroed. For N:M it is `N/M`.
    pub sparsity: f64,
    /// DaSS exponent α on the intermediate norm `‖h_i‖` (0.5 in the reference).
    pub alpha: f64,
}

impl Pruner {
    /// `method` at `pattern`, sparsity `N/M` (N:M) or 0.5 (unstructured), α = 0.5.
    pub fn new(method: PruneMethod, pattern: SparsityPattern) -> Self {
        let sparsity = match pattern {
            SparsityPattern::NM { zeros, group } => zeros as f64 / group as f64,
            SparsityPattern::Unstructured => 0.5,
        };
        Self {
            method,
            pattern,
            sparsity,
            alpha: 0.5,
        }
    }

    /// Check the parameters: a valid pattern, sparsity in `[0, 1)` (equal to `N/M` for N:M), a
    /// finite α.
    pub fn validate(&self) -> Result<(), CoreError> {
        let pattern = self.pattern.validate()?;
        let param = |name: &str, detail: String| CoreError::Parameter {
            name: name.into(),
            detail,
        };
        if !(0.0..1.0).contains(&self.sparsity) {
            return Err(param(
                "sparsity",
                format!("{} is outside [0, 1)", self.sparsity),
            ));
        }
        if let SparsityPattern::NM { zeros, group } = pattern {
            let s = zeros as f64 / group as f64;
            if (self.sparsity - s).abs() > 1e-9 {
                return Err(param(
                    "sparsity",
                    format!(
                        "{} differs from the {pattern} pattern's {s} (N:M fixes the sparsity)",
                        self.sparsity
                    ),
                ));
            }
        }
        if !self.alpha.is_finite() {
            return Err(param("alpha", format!("{} is not finite", self.alpha)));
        }
        Ok(())
    }

    /// The calibration statistics needed: squared channel norms only (no Gram).
    pub fn needs(&self) -> StatsRequest {
        StatsRequest {
            channel_norms: true,
            ..StatsRequest::NONE
        }
    }

    /// The axis the comparison groups of `kind` run along.
    pub fn axis(&self, kind: LinearKind) -> GroupAxis {
        match (self.method, kind) {
            (PruneMethod::Dass, LinearKind::Gate | LinearKind::Up) => GroupAxis::Outputs,
            _ => GroupAxis::Inputs,
        }
    }

    /// The keep mask of `weight` (`d_out × d_in`) of a linear of `kind`.
    ///
    /// `input_sq_norms` are `Σ_t x_tj²` of this linear's input (length `d_in`; Wanda, and DaSS
    /// down_proj); `hidden_sq_norms` are those of the layer's down_proj input `h` (length
    /// `d_ff`; DaSS gate/up). A method ignores the statistics it does not use (an empty slice is
    /// fine there).
    pub fn mask(
        &self,
        kind: LinearKind,
        weight: MatRef<'_, f32>,
        input_sq_norms: &[f64],
        hidden_sq_norms: &[f64],
    ) -> Result<KeepMask, CoreError> {
        self.validate()?;
        let axis = self.axis(kind);
        let scores = match (self.method, axis) {
            (PruneMethod::Magnitude, _) => magnitude_scores(weight),
            (PruneMethod::Dass, GroupAxis::Outputs) => {
                dass_scores(weight, hidden_sq_norms, self.alpha)?
            }
            _ => wanda_scores(weight, input_sq_norms)?,
        };
        Ok(match (self.method, self.pattern) {
            (PruneMethod::Magnitude, SparsityPattern::Unstructured) => {
                select_per_matrix(scores.as_ref(), self.sparsity)
            }
            _ => select_per_line(scores.as_ref(), axis, self.pattern, self.sparsity)?,
        })
    }

    /// Prune `weight` of a linear of `kind` into a packed [`Linear::Sparse`] (see
    /// [`Pruner::mask`] for the statistics).
    pub fn prune(
        &self,
        kind: LinearKind,
        weight: MatRef<'_, f32>,
        input_sq_norms: &[f64],
        hidden_sq_norms: &[f64],
    ) -> Result<Linear, CoreError> {
        let mask = self.mask(kind, weight, input_sq_norms, hidden_sq_norms)?;
        let sparse = NmSparse::from_dense(
            weight,
            |i, j| mask.is_kept(i, j),
            self.axis(kind),
            self.pattern,
        )?;
        Ok(Linear::Sparse(sparse))
    }
}

fn check_norms(what: &str, norms: &[f64], want: usize) -> Result<(), CoreError> {
    if norms.len() != want {
        return Err(CoreError::MissingStats(format!(
            "{what}: {} channel norms for {want} channels",
            norms.len()
        )));
    }
    if let Some(v) = norms.iter().find(|v| !v.is_finite() || **v < 0.0) {
        return Err(CoreError::Numerical {
            what: what.into(),
            detail: format!("squared channel norm {v}"),
        });
    }
    Ok(())
}

/// Wanda's metric `S_ij = |W_ij| · √(Σ_t x_tj²)` (`input_sq_norms` of length `d_in`).
pub fn wanda_scores(w: MatRef<'_, f32>, input_sq_norms: &[f64]) -> Result<Mat<f64>, CoreError> {
    check_norms("wanda input norms", input_sq_norms, w.ncols())?;
    let s: Vec<f64> = input_sq_norms.iter().map(|v| v.sqrt()).collect();
    Ok(Mat::from_fn(w.nrows(), w.ncols(), |i, j| {
        (w[(i, j)] as f64).abs() * s[j]
    }))
}

/// DaSS's gate/up metric (§4.3) `S_ij = |W_ij| · (Σ_t h_ti²)^{α/2}` = `|W_ij| · ‖h_i‖^α`, with
/// `hidden_sq_norms` of length `d_out` (the intermediate channels).
pub fn dass_scores(
    w: MatRef<'_, f32>,
    hidden_sq_norms: &[f64],
    alpha: f64,
) -> Result<Mat<f64>, CoreError> {
    check_norms("dass intermediate norms", hidden_sq_norms, w.nrows())?;
    let s: Vec<f64> = hidden_sq_norms
        .iter()
        .map(|v| v.powf(alpha / 2.0))
        .collect();
    Ok(Mat::from_fn(w.nrows(), w.ncols(), |i, j| {
        (w[(i, j)] as f64).abs() * s[i]
    }))
}

/// `S_ij = |W_ij|`.
pub fn magnitude_scores(w: MatRef<'_, f32>) -> Mat<f64> {
    Mat::from_fn(w.nrows(), w.ncols(), |i, j| (w[(i, j)] as f64).abs())
}

/// Positions of `scores` sorted by ascending score, ties by position.
fn ascending(scores: &[f64]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(a.cmp(&b)));
    idx
}

/// Prune along lines (§4.4): a line is a row ([`GroupAxis::Inputs`]) or a column
/// ([`GroupAxis::Outputs`]). N:M: in each group of `M` consecutive positions of a line, the `N`
/// lowest scores are pruned. Unstructured: the `⌊sparsity · len⌋` lowest of each line.
pub fn select_per_line(
    scores: MatRef<'_, f64>,
    axis: GroupAxis,
    pattern: SparsityPattern,
    sparsity: f64,
) -> Result<KeepMask, CoreError> {
    let (rows, cols) = (scores.nrows(), scores.ncols());
    let (lines, len) = match axis {
        GroupAxis::Inputs => (rows, cols),
        GroupAxis::Outputs => (cols, rows),
    };
    if let SparsityPattern::NM { group, .. } = pattern.validate()? {
        if len % group != 0 {
            return Err(CoreError::Parameter {
                name: "pattern".into(),
                detail: format!(
                    "{pattern} along {}: line length {len} is not a multiple of {group}",
                    axis.name()
                ),
            });
        }
    }
    let line_masks: Vec<Vec<bool>> = (0..lines)
        .into_par_iter()
        .map(|line| {
            let s: Vec<f64> = (0..len)
                .map(|p| match axis {
                    GroupAxis::Inputs => scores[(line, p)],
                    GroupAxis::Outputs => scores[(p, line)],
                })
                .collect();
            let mut keep = vec![true; len];
            match pattern {
                SparsityPattern::NM { zeros, group } => {
                    for g in (0..len).step_by(group) {
                        for &p in ascending(&s[g..g + group]).iter().take(zeros) {
                            keep[g + p] = false;
                        }
                    }
                }
                SparsityPattern::Unstructured => {
                    let n = (sparsity * len as f64).floor() as usize;
                    for &p in ascending(&s).iter().take(n) {
                        keep[p] = false;
                    }
                }
            }
            keep
        })
        .collect();
    let mut keep = vec![true; rows * cols];
    for (line, lm) in line_masks.iter().enumerate() {
        for (p, &k) in lm.iter().enumerate() {
            let (i, j) = match axis {
                GroupAxis::Inputs => (line, p),
                GroupAxis::Outputs => (p, line),
            };
            keep[i * cols + j] = k;
        }
    }
    Ok(KeepMask { rows, cols, keep })
}

/// Prune the `⌊sparsity · numel⌋` lowest scores of the whole matrix (one threshold).
pub fn select_per_matrix(scores: MatRef<'_, f64>, sparsity: f64) -> KeepMask {
    let (rows, cols) = (scores.nrows(), scores.ncols());
    let flat: Vec<f64> = (0..rows * cols)
        .map(|k| scores[(k / cols, k % cols)])
        .collect();
    let n = (sparsity * flat.len() as f64).floor() as usize;
    let mut keep = vec![true; flat.len()];
    for &k in ascending(&flat).iter().take(n) {
        keep[k] = false;
    }
    KeepMask { rows, cols, keep }
}
