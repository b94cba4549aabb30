//! Which bases to keep — ALGORITHMS.md §5.8 ("Selection") and §5.3 (Basel's mass rule).
//!
//! - Per matrix: [`top_k`] (`k` from SVD-LLM's budget formula, §2.4) or [`mass_rule`] (the
//!   smallest set of the largest values reaching a fraction `K` of their sum; Basel's code uses
//!   `Σ σ`, §5.3/§5.9.2, the training-free form `Σ score`).
//! - Global: [`global_allocation`] keeps, across all matrices, the bases with the largest
//!   `score / (‖W X‖_F² · (m + n))` — output-energy-normalised error per stored parameter — until
//!   one parameter budget is spent, so ranks differ by layer and kind.
//!
//! Every function returns kept indices in ascending order.

use llm_compress_core::CoreError;
use serde::{Deserialize, Serialize};

/// Indices of the `k` largest values (ties to the lower index), ascending.
pub fn top_k(values: &[f64], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[b].total_cmp(&values[a]).then(a.cmp(&b)));
    let mut kept: Vec<usize> = order.into_iter().take(k).collect();
    kept.sort_unstable();
    kept
}

/// The smallest set of the largest values whose sum reaches `keep_fraction` of the total
/// (Basel's mass rule, §5.3), ascending; at least one index. `keep_fraction` must be in (0, 1].
pub fn mass_rule(values: &[f64], keep_fraction: f64) -> Result<Vec<usize>, CoreError> {
    if !(keep_fraction > 0.0 && keep_fraction <= 1.0) {
        return Err(CoreError::Parameter {
            name: "keep fraction".into(),
            detail: format!("must be in (0, 1], got {keep_fraction}"),
        });
    }
    if values.iter().any(|v| !(v.is_finite() && *v >= 0.0)) {
        return Err(CoreError::Numerical {
            what: "mass rule".into(),
            detail: "values must be finite and non-negative".into(),
        });
    }
    let total: f64 = values.iter().sum();
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[b].total_cmp(&values[a]).then(a.cmp(&b)));
    let mut acc = 0.0;
    let mut k = 0;
    for &i in &order {
        if k > 0 && acc >= keep_fraction * total {
            break;
        }
        acc += values[i];
        k += 1;
    }
    let mut kept: Vec<usize> = order.into_iter().take(k.max(1)).collect();
    kept.sort_unstable();
    Ok(kept)
}

/// The scores of one matrix, all a global allocation needs to know about it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct MatrixScores {
    /// A name for reports (e.g. `"3.q"`).
    pub name: String,
    /// `m`.
    pub d_out: usize,
    /// `n`.
    pub d_in: usize,
    /// One score per basis (`min(m, n)` of them).
    pub scores: Vec<f64>,
    /// `‖W X‖_F²`, the normaliser (§5.8).
    pub output_energy: f64,
}

impl MatrixScores {
    /// Parameters one basis costs: `m + n`.
    pub fn cost(&self) -> usize {
        self.d_out + self.d_in
    }

    /// The largest rank worth storing as two factors: `⌊m·n/(m+n)⌋` (above it, the pair holds
    /// more than the dense weight), and at most the number of bases.
    pub fn max_rank(&self) -> usize {
        ((self.d_out * self.d_in) / self.cost())
            .min(self.scores.len())
            .max(1)
    }
}

/// Global allocation (§5.8): keep, across all matrices, the bases with the largest
/// `score_i / (energy · (m + n))` while their cost `Σ (m + n)` fits in `budget_params`.
///
/// Every matrix keeps at least its best basis (a layer cannot vanish) and at most
/// [`MatrixScores::max_rank`]. Greedy: bases are taken in priority order, a basis that no longer
/// fits is skipped and smaller ones may still fill the gap, so the result uses at most
/// `budget_params` and leaves less than the largest per-basis cost unused (unless every matrix
/// is at its maximum rank). Returns kept indices per matrix, ascending; errors if the budget
/// cannot pay one basis per matrix.
pub fn global_allocation(
    matrices: &[MatrixScores],
    budget_params: usize,
) -> Result<Vec<Vec<usize>>, CoreError> {
    let mut kept: Vec<Vec<usize>> = vec![Vec::new(); matrices.len()];
    let mut used = 0usize;
    let mut candidates: Vec<(f64, usize, usize)> = Vec::new();
    for (mi, m) in matrices.iter().enumerate() {
        if m.scores.is_empty() {
            return Err(CoreError::Parameter {
                name: "matrix scores".into(),
                detail: format!("{} has no bases", m.name),
            });
        }
        if m.scores.iter().any(|s| !s.is_finite()) || !m.output_energy.is_finite() {
            return Err(CoreError::Numerical {
                what: format!("scores of {}", m.name),
                detail: "not finite".into(),
            });
        }
        let norm = if m.output_energy > 0.0 {
            1.0 / (m.output_energy * m.cost() as f64)
        } else {
            0.0
        };
        let best = top_k(&m.scores, 1)[0];
        kept[mi].push(best);
        used += m.cost();
        for (i, s) in m.scores.iter().enumerate() {
            if i != best {
                candidates.push((s * norm, mi, i));
            }
        }
    }
    if used > budget_params {
        return Err(CoreError::Parameter {
            name: "budget".into(),
            detail: format!(
                "{budget_params} parameters cannot keep one basis in each of {} matrices ({used} needed)",
                matrices.len()
            ),
        });
    }
    candidates.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    for (_, mi, i) in candidates {
        let m = &matrices[mi];
        if kept[mi].len() < m.max_rank() && used + m.cost() <= budget_params {
            kept[mi].push(i);
            used += m.cost();
        }
    }
    for k in &mut kept {
        k.sort_unstable();
    }
    Ok(kept)
}

/// Parameters of a selection: `Σ k·(m + n)`.
pub fn selection_params(matrices: &[MatrixScores], kept: &[Vec<usize>]) -> usize {
    matrices
        .iter()
        .zip(kept)
        .map(|(m, k)| k.len() * m.cost())
        .sum()
}
