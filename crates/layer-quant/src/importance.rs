//! Layer importance (ALGORITHMS.md §6.2).
//!
//! - **Jaccard** (LSAQ): project a layer's input `h_in` and output `h_out` residual states
//!   through the final RMSNorm and the LM head (the "logit lens"), take the top-`k` token sets
//!   `A`, `B` and score `J = |A ∩ B| / |A ∪ B|`; `I_ℓ = 1 − mean J`.
//! - **Cosine** (ShortGPT block influence, the baseline): `BI_ℓ = 1 − mean cos(h_in, h_out)`.
//!
//! Both are means over the sampled positions. The caller (the calibration walk) feeds the
//! sampled columns of each layer's input and output as it goes: nothing but the running sums
//! and the previous layer's top-`k` sets is kept.

use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatRef};
use llm_compress_core::{par, rng::SplitMix64, CoreError};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// The final norm and head of a model, used to read residual states as token predictions.
#[derive(Clone, Copy, Debug)]
pub struct LogitLens<'a> {
    /// RMSNorm weight (`hidden`).
    pub norm: &'a [f32],
    /// RMSNorm epsilon.
    pub eps: f32,
    /// LM head, `vocab × hidden`.
    pub head: MatRef<'a, f32>,
}

impl LogitLens<'_> {
    /// Top-`k` token ids (sorted ascending) of `head · RMSNorm(h_t)` for every column `t` of `h`
    /// (`hidden × P`). Columns are processed in chunks so at most `vocab × 256` logits exist.
    pub fn top_k_sets(&self, h: MatRef<'_, f32>, k: usize) -> Result<Vec<Vec<u32>>, CoreError> {
        let (d, p) = (h.nrows(), h.ncols());
        if d != self.norm.len() || self.head.ncols() != d {
            return Err(CoreError::Shape {
                what: "logit lens".into(),
                expected: (self.head.ncols(), self.norm.len()),
                got: (d, p),
            });
        }
        let vocab = self.head.nrows();
        if k == 0 || k > vocab {
            return Err(CoreError::Parameter {
                name: "top_k".into(),
                detail: format!("must be in 1..={vocab}, got {k}"),
            });
        }
        const CHUNK: usize = 256;
        let mut out = Vec::with_capacity(p);
        let mut c0 = 0;
        while c0 < p {
            let n = CHUNK.min(p - c0);
            let x = Mat::<f32>::from_fn(d, n, |i, j| {
                let col = h.col(c0 + j);
                let ss: f32 = col.iter().map(|v| v * v).sum();
                col[i] / (ss / d as f32 + self.eps).sqrt() * self.norm[i]
            });
            let mut logits = Mat::<f32>::zeros(vocab, n);
            matmul(
                logits.as_mut(),
                Accum::Replace,
                self.head,
                x.as_ref(),
                1.0f32,
                par(),
            );
            let sets: Vec<Vec<u32>> = (0..n)
                .into_par_iter()
                .map(|j| top_k_of(logits.col(j).iter().copied(), k))
                .collect();
            out.extend(sets);
            c0 += n;
        }
        Ok(out)
    }
}

/// Indices of the `k` largest values (ties broken by the lower index), sorted ascending.
pub fn top_k_of(values: impl Iterator<Item = f32>, k: usize) -> Vec<u32> {
    let mut idx: Vec<(f32, u32)> = values.enumerate().map(|(i, v)| (v, i as u32)).collect();
    let k = k.min(idx.len());
    if k == 0 {
        return Vec::new();
    }
    let cmp = |a: &(f32, u32), b: &(f32, u32)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
    idx.select_nth_unstable_by(k - 1, cmp);
    let mut top: Vec<u32> = idx[..k].iter().map(|x| x.1).collect();
    top.sort_unstable();
    top
}

/// `|A ∩ B| / |A ∪ B|` of two sorted sets (1 for two empty sets).
pub fn jaccard(a: &[u32], b: &[u32]) -> f64 {
    let (mut i, mut j, mut inter) = (0, 0, 0usize);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                inter += 1;
                i += 1;
                j += 1;
            }
        }
    }
    let union = a.len() + b.len() - inter;
    if union == 0 {
        1.0
    } else {
        inter as f64 / union as f64
    }
}

/// Cosine similarity of two vectors (1 when either is zero).
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (*x as f64, *y as f64);
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    if aa == 0.0 || bb == 0.0 {
        1.0
    } else {
        ab / (aa.sqrt() * bb.sqrt())
    }
}

/// Running sums of both importance scores over the sampled positions of every layer.
#[derive(Clone, Debug)]
pub struct ImportanceAccumulator {
    jaccard_sum: Vec<f64>,
    cosine_sum: Vec<f64>,
    count: Vec<u64>,
}

impl ImportanceAccumulator {
    /// An accumulator for `layers` decoder layers.
    pub fn new(layers: usize) -> Self {
        Self {
            jaccard_sum: vec![0.0; layers],
            cosine_sum: vec![0.0; layers],
            count: vec![0; layers],
        }
    }

    /// Add the sampled positions of layer `l`: its input and output states (`hidden × P`, same
    /// columns) and their top-`k` sets (from [`LogitLens::top_k_sets`]).
    pub fn add(
        &mut self,
        l: usize,
        h_in: MatRef<'_, f32>,
        h_out: MatRef<'_, f32>,
        sets_in: &[Vec<u32>],
        sets_out: &[Vec<u32>],
    ) {
        let p = h_in.ncols();
        assert!(h_out.ncols() == p && sets_in.len() == p && sets_out.len() == p);
        for t in 0..p {
            self.jaccard_sum[l] += jaccard(&sets_in[t], &sets_out[t]);
            let a: Vec<f32> = h_in.col(t).iter().copied().collect();
            let b: Vec<f32> = h_out.col(t).iter().copied().collect();
            self.cosine_sum[l] += cosine(&a, &b);
        }
        self.count[l] += p as u64;
    }

    /// `I_ℓ = 1 − mean J` and `BI_ℓ = 1 − mean cos` for every layer.
    pub fn finish(self) -> LayerImportance {
        let mean = |s: &[f64]| -> Vec<f64> {
            s.iter()
                .zip(&self.count)
                .map(|(s, &c)| if c == 0 { 0.0 } else { 1.0 - s / c as f64 })
                .collect()
        };
        LayerImportance {
            jaccard: mean(&self.jaccard_sum),
            cosine: mean(&self.cosine_sum),
            positions: self.count.first().copied().unwrap_or(0),
        }
    }
}

/// Both importance scores of every decoder layer (higher = more important).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerImportance {
    /// `1 − mean Jaccard` of the logit-lens top-k sets.
    pub jaccard: Vec<f64>,
    /// `1 − mean cosine` of the residual states (block influence).
    pub cosine: Vec<f64>,
    /// Positions averaged per layer.
    pub positions: u64,
}

/// Which ranking drives the allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RankingKind {
    /// LSAQ: by Jaccard importance.
    Jaccard,
    /// Baseline: by block-influence cosine importance.
    Cosine,
    /// Control: a seeded random permutation.
    Random,
    /// Control: the Jaccard ranking reversed (least important promoted first).
    Reversed,
}

impl RankingKind {
    /// Parse `jaccard`, `cosine`, `random` or `reversed`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "jaccard" => Some(Self::Jaccard),
            "cosine" => Some(Self::Cosine),
            "random" => Some(Self::Random),
            "reversed" => Some(Self::Reversed),
            _ => None,
        }
    }
    /// The name [`RankingKind::parse`] accepts.
    pub fn name(self) -> &'static str {
        match self {
            Self::Jaccard => "jaccard",
            Self::Cosine => "cosine",
            Self::Random => "random",
            Self::Reversed => "reversed",
        }
    }
    /// Whether this ranking needs the importance walk.
    pub fn needs_importance(self) -> bool {
        self != Self::Random
    }
}

/// Layers sorted by decreasing score (ties by layer index).
pub fn order_by_score(score: &[f64]) -> Vec<usize> {
    let mut o: Vec<usize> = (0..score.len()).collect();
    o.sort_by(|&a, &b| score[b].total_cmp(&score[a]).then(a.cmp(&b)));
    o
}

/// A seeded random permutation of `0..n` (Fisher–Yates with [`SplitMix64`]).
pub fn random_order(n: usize, seed: u64) -> Vec<usize> {
    let mut o: Vec<usize> = (0..n).collect();
    let mut rng = SplitMix64::new(seed);
    for i in (1..n).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        o.swap(i, j);
    }
    o
}

/// The promotion order (most important first) of `kind`; `importance` is required for every
/// kind but [`RankingKind::Random`].
pub fn ranking(
    kind: RankingKind,
    layers: usize,
    importance: Option<&LayerImportance>,
    seed: u64,
) -> Result<Vec<usize>, CoreError> {
    let need = || {
        importance.ok_or_else(|| {
            CoreError::MissingStats(format!("{} ranking needs layer importance", kind.name()))
        })
    };
    Ok(match kind {
        RankingKind::Random => random_order(layers, seed),
        RankingKind::Jaccard => order_by_score(&need()?.jaccard),
        RankingKind::Cosine => order_by_score(&need()?.cosine),
        RankingKind::Reversed => {
            let mut o = order_by_score(&need()?.jaccard);
            o.reverse();
            o
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jaccard_and_top_k_follow_their_definitions() {
        assert_eq!(jaccard(&[1, 2, 3], &[2, 3, 4]), 2.0 / 4.0);
        assert_eq!(jaccard(&[1, 2], &[1, 2]), 1.0);
        assert_eq!(jaccard(&[1], &[2]), 0.0);
        let v = [0.5f32, 3.0, -1.0, 3.0, 2.0];
        assert_eq!(top_k_of(v.iter().copied(), 2), vec![1, 3]);
        assert_eq!(top_k_of(v.iter().copied(), 3), vec![1, 3, 4]);
        assert!((cosine(&[1.0, 0.0], &[1.0, 1.0]) - 0.5f64.sqrt()).abs() < 1e-12);
    }

    /// A layer that leaves the state unchanged scores 0 on both; one that moves the state to a
    /// different top-k scores 1 on Jaccard.
    #[test]
    fn identity_layer_is_unimportant_and_a_rotating_layer_is_important() {
        let (vocab, d) = (50, 6);
        let head = Mat::<f32>::from_fn(vocab, d, |v, i| ((v * 7 + i * 13) % 11) as f32 - 5.0);
        let norm = vec![1.0f32; d];
        let lens = LogitLens {
            norm: &norm,
            eps: 1e-6,
            head: head.as_ref(),
        };
        let h = Mat::<f32>::from_fn(d, 8, |i, t| ((i * 3 + t * 5) % 7) as f32 - 3.0);
        let neg = Mat::<f32>::from_fn(d, 8, |i, t| -h[(i, t)]);
        let k = 5;
        let (s_h, s_neg) = (
            lens.top_k_sets(h.as_ref(), k).unwrap(),
            lens.top_k_sets(neg.as_ref(), k).unwrap(),
        );
        let mut acc = ImportanceAccumulator::new(2);
        acc.add(0, h.as_ref(), h.as_ref(), &s_h, &s_h);
        acc.add(1, h.as_ref(), neg.as_ref(), &s_h, &s_neg);
        let imp = acc.finish();
        assert!(imp.jaccard[0].abs() < 1e-12 && imp.cosine[0].abs() < 1e-12);
        assert!(imp.jaccard[1] > 0.5, "{:?}", imp.jaccard);
        assert!((imp.cosine[1] - 2.0).abs() < 1e-6);
        assert_eq!(
            ranking(RankingKind::Jaccard, 2, Some(&imp), 0).unwrap(),
            vec![1, 0]
        );
        assert_eq!(
            ranking(RankingKind::Reversed, 2, Some(&imp), 0).unwrap(),
            vec![0, 1]
        );
        assert!(ranking(RankingKind::Cosine, 2, None, 0).is_err());
        assert!(lens.top_k_sets(h.as_ref(), 0).is_err());
    }

    #[test]
    fn random_order_is_a_seeded_permutation() {
        let a = random_order(30, 7);
        let mut s = a.clone();
        s.sort();
        assert_eq!(s, (0..30).collect::<Vec<_>>());
        assert_eq!(a, random_order(30, 7));
        assert_ne!(a, random_order(30, 8));
    }
}
