//! Training-free Basis Selection (ALGORITHMS.md §5.8) over the layer-streamed calibration walk.
//!
//! Two allocations:
//! - **per matrix**: one walk. Each layer's bases are scored on its own calibration Gram and
//!   selected on the spot (top-`k` with SVD-LLM's rank formula, or the mass rule).
//! - **global**: a global allocation needs every matrix's scores before any rank is chosen, so
//!   it takes two passes. Pass 1 ([`score_model`]) walks the **original** model once and keeps
//!   only the scores (`min(m, n)` f64 per matrix: 0.8 MB for SmolLM2, never the SVDs or the
//!   Grams of more than one layer). The ranks are then allocated under one budget
//!   ([`llm_compress_basis_select::global_allocation`]). Pass 2 builds the factors: for plain
//!   bases without residual/refit it needs no statistics at all (the SVD of `W` is recomputed
//!   layer by layer and the chosen indices are kept); otherwise it is a second walk (Grams from
//!   the compressed prefix by default, as SVD-LLM here), and whitened bases keep the top
//!   `k_matrix` of their re-whitened SVD. The scores of pass 1 do not depend on the ratio and can
//!   be saved and reused ([`ModelScores`] is serialisable).
//!
//! Budget: the global allocation gets exactly the parameters SVD-LLM's per-matrix formula keeps
//! at the same ratio (`Σ ⌊mn(1−ratio)/(m+n)⌋·(m+n)`), so the two are compared at the same size.

use crate::export::OutputLayers;
use crate::lowrank::{CalibrationText, Progress};
use llm_compress_basis_select::{
    global_allocation, mass_rule, plain_bases, refit_coefficients, residual_bases,
    selection_params, top_k, whitened_bases, Coefficients, MatrixScores, ScoredBases,
};
use llm_compress_core::budget::{check_ratio, svd_llm_rank};
use llm_compress_core::{Linear, LinearId, LinearInput, LinearKind, Mat, StatsRequest};
use llm_compress_eval::{
    calibration_windows, walk_layers, CalibrationConfig, DecoderLayer, EvalError, LayerCalibration,
    Model, StatsFrom, WalkEvent,
};
use llm_compress_tensor_io::Checkpoint;
use llm_compress_whitening_svd::{robust_cholesky, CholeskyOptions};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

/// Which rank-one bases a weight is written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BasisFamily {
    /// Plain SVD of `W` (Basel's pretrained bases).
    Plain,
    /// SVD-LLM's whitened bases (SVD of `W·chol(G)`).
    Whitened,
}

impl BasisFamily {
    /// `plain` or `whitened`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "plain" => Some(Self::Plain),
            "whitened" => Some(Self::Whitened),
            _ => None,
        }
    }
}

/// How ranks are chosen.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Allocation {
    /// Top-`k` per matrix, `k` from SVD-LLM's formula (minus the residual rank).
    PerMatrix,
    /// Basel's mass rule per matrix: keep the fewest bases carrying this fraction of the total
    /// score (the ratio is then not a target; the achieved size is reported).
    Mass(f64),
    /// One parameter budget across all matrices (§5.8).
    Global,
}

/// Options of a basis-selection run.
#[derive(Clone, Debug, Serialize)]
pub struct BasisSelectOptions {
    /// Fraction of decoder-linear parameters removed.
    pub ratio: f64,
    /// Which bases each weight is written in (default plain).
    pub bases: BasisFamily,
    /// How the kept ranks are chosen (default global).
    pub allocation: Allocation,
    /// Residual bases per matrix (whitened SVD of `W − W_keep`), paid out of the budget.
    pub residual_rank: usize,
    /// Closed-form refit of all kept coefficients on the Gram.
    pub refit: bool,
    /// Where the statistics of the compressing walk come from (per-matrix scores, whitening,
    /// residuals, refit). The global scores always come from the original model.
    pub stats_from: StatsFrom,
    /// Number, length and seed of the calibration windows (default 16 × 2048, seed 3).
    pub calibration: CalibrationConfig,
    /// Text the calibration windows are drawn from.
    #[serde(skip)]
    pub calibration_text: CalibrationText,
    /// Which linears to compress.
    pub kinds: Vec<LinearKind>,
}

impl BasisSelectOptions {
    /// Defaults: plain bases, global allocation, no residual, no refit, sequential statistics,
    /// 16 × 2048 windows of the given text.
    pub fn new(ratio: f64, calibration_text: CalibrationText) -> Self {
        Self {
            ratio,
            bases: BasisFamily::Plain,
            allocation: Allocation::Global,
            residual_rank: 0,
            refit: false,
            stats_from: StatsFrom::Compressed,
            calibration: CalibrationConfig::default(),
            calibration_text,
            kinds: LinearKind::ALL.to_vec(),
        }
    }
}

/// Pass-1 scores of every compressed matrix (ratio-independent; reusable across ratios).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ModelScores {
    /// The bases the scores were computed for; a run with other bases rejects them.
    pub bases: BasisFamily,
    /// A description of the calibration (text, windows, seed), checked when the scores are
    /// reused.
    pub calibration: String,
    /// The scored linears, in walk order; `ids[i]` is scored by `matrices[i]`.
    pub ids: Vec<LinearId>,
    /// Shape and per-basis scores of each linear of `ids`.
    pub matrices: Vec<MatrixScores>,
}

/// What a run produced.
#[derive(Clone, Debug, Default, Serialize)]
pub struct BasisSelectReport {
    /// Parameters of all decoder linears before compression.
    pub linear_params_before: usize,
    /// Parameters of all decoder linears after compression.
    pub linear_params_after: usize,
    /// The parameter budget of the selection (global and per-matrix top-k).
    pub budget_params: usize,
    /// Pass 1 and the global allocation, in seconds (about 0 for per-matrix runs or reused scores).
    pub score_s: f64,
    /// Building the factors (pass 2, or the single per-matrix walk), in seconds.
    pub compress_s: f64,
    /// Wall time of the whole run in seconds.
    pub wall_s: f64,
    /// `(linear, rank)` for every compressed linear.
    pub ranks: Vec<(String, usize)>,
}

/// The description stored in [`ModelScores::calibration`].
pub fn calibration_description(opts: &BasisSelectOptions, text_name: &str) -> String {
    format!(
        "{text_name} windows={} seq_len={} seed={}",
        opts.calibration.windows, opts.calibration.seq_len, opts.calibration.seed
    )
}

fn gram_request() -> StatsRequest {
    StatsRequest {
        gram: true,
        ..StatsRequest::NONE
    }
}

fn need_gram(
    stats: &BTreeMap<LinearInput, llm_compress_core::InputStats>,
    input: LinearInput,
) -> Result<&Mat<f64>, EvalError> {
    stats
        .get(&input)
        .and_then(|s| s.gram.as_ref())
        .ok_or_else(|| EvalError::Input("basis-select needs the input Gram".into()))
}

/// Lower Cholesky factors of the Grams of the given inputs, one per distinct input.
fn cholesky_per_input(
    stats: &BTreeMap<LinearInput, llm_compress_core::InputStats>,
    inputs: &BTreeSet<LinearInput>,
    layer: usize,
) -> Result<BTreeMap<LinearInput, Mat<f64>>, EvalError> {
    inputs
        .par_iter()
        .map(|&input| -> Result<_, EvalError> {
            let (l, report) = robust_cholesky(
                need_gram(stats, input)?.as_ref(),
                &CholeskyOptions::default(),
            )?;
            if report.regularised() {
                tracing::info!(layer, ?input, ?report, "Gram regularised");
            }
            Ok((input, l))
        })
        .collect()
}

/// Score the bases of one layer's matrices (scores only are kept by the caller).
fn score_layer(
    layer: &DecoderLayer,
    l: usize,
    stats: &BTreeMap<LinearInput, llm_compress_core::InputStats>,
    opts: &BasisSelectOptions,
) -> Result<Vec<(LinearId, ScoredBases)>, EvalError> {
    let inputs: BTreeSet<LinearInput> = opts.kinds.iter().map(|k| k.input()).collect();
    let chol = match opts.bases {
        BasisFamily::Whitened => cholesky_per_input(stats, &inputs, l)?,
        BasisFamily::Plain => BTreeMap::new(),
    };
    opts.kinds
        .par_iter()
        .map(|&kind| -> Result<_, EvalError> {
            let w = layer.linear(kind).to_dense();
            let g = need_gram(stats, kind.input())?;
            let b = match chol.get(&kind.input()) {
                Some(lf) => whitened_bases(w.as_ref(), lf.as_ref(), g.as_ref())?,
                None => plain_bases(w.as_ref(), Some(g.as_ref()))?,
            };
            Ok((LinearId { layer: l, kind }, b))
        })
        .collect()
}

/// Pass 1 of the global allocation: walk the original model once and score every basis.
pub fn score_model(
    ckpt: &Checkpoint,
    opts: &BasisSelectOptions,
    calibration: String,
    mut progress: impl FnMut(Progress),
) -> Result<ModelScores, EvalError> {
    let tokens = opts.calibration_text.tokens(ckpt)?;
    let windows = calibration_windows(&tokens, &opts.calibration)?;
    let base = Model::load_without_layers(ckpt)?;
    let mut ids = Vec::new();
    let mut matrices = Vec::new();
    walk_layers(
        ckpt,
        &base,
        &windows,
        gram_request(),
        StatsFrom::Original,
        |l, layer, calib: &LayerCalibration| {
            let stats = calib
                .original
                .as_ref()
                .ok_or_else(|| EvalError::Input("walk returned no statistics".into()))?;
            for (id, b) in score_layer(layer, l, stats, opts)? {
                let (m, n) = b.svd.shape();
                matrices.push(MatrixScores {
                    name: id.to_string(),
                    d_out: m,
                    d_in: n,
                    output_energy: b.total_score(),
                    scores: b.scores,
                });
                ids.push(id);
            }
            // The layer is not needed again: drop its weights so the walk does not keep the
            // whole dense decoder alive (pass 1 holds one layer at a time).
            for kind in LinearKind::ALL {
                *layer.linear_mut(kind) = Linear::Dense(Mat::zeros(0, 0));
            }
            Ok(())
        },
        |WalkEvent::LayerDone { layer, layers }| {
            progress(Progress::Layer {
                done: layer + 1,
                total: layers,
            })
        },
    )?;
    Ok(ModelScores {
        bases: opts.bases,
        calibration,
        ids,
        matrices,
    })
}

/// Kept basis indices per matrix, from the global allocation over `scores`.
pub fn global_plan(
    scores: &ModelScores,
    opts: &BasisSelectOptions,
) -> Result<(BTreeMap<LinearId, Vec<usize>>, usize), EvalError> {
    check_ratio(opts.ratio)?;
    let mut budget = 0usize;
    for m in &scores.matrices {
        let k = svd_llm_rank(m.d_out, m.d_in, opts.ratio);
        if k <= opts.residual_rank {
            return Err(EvalError::Input(format!(
                "residual rank {} leaves no budget for selected bases in {} (rank {k})",
                opts.residual_rank, m.name
            )));
        }
        budget += (k - opts.residual_rank) * m.cost();
    }
    let kept = global_allocation(&scores.matrices, budget)?;
    tracing::info!(
        budget,
        used = selection_params(&scores.matrices, &kept),
        "global allocation"
    );
    let total_budget = budget
        + scores
            .matrices
            .iter()
            .map(|m| opts.residual_rank * m.cost())
            .sum::<usize>();
    Ok((scores.ids.iter().copied().zip(kept).collect(), total_budget))
}

/// Build one compressed linear from its bases: selection, then optional residual bases and
/// refit (both need the Gram and its Cholesky factor).
fn build_linear(
    w: &Mat<f32>,
    bases: &ScoredBases,
    kept: &[usize],
    gram: Option<(&Mat<f64>, &Mat<f64>)>,
    opts: &BasisSelectOptions,
) -> Result<Linear, EvalError> {
    let mut coef: Coefficients = bases.keep(kept)?;
    if opts.residual_rank > 0 || opts.refit {
        let (g, l) = gram.ok_or_else(|| {
            EvalError::Input("residual bases and refit need the input Gram".into())
        })?;
        if opts.residual_rank > 0 {
            let res = residual_bases(w.as_ref(), &coef, l.as_ref(), opts.residual_rank)?;
            coef = coef.append(&res)?;
        }
        if opts.refit {
            coef = refit_coefficients(w.as_ref(), &coef, g.as_ref())?;
        }
    }
    Ok(coef.to_linear()?)
}

/// Compress every decoder layer of `ckpt` by basis selection. For the global allocation,
/// `scores` are pass-1 scores to reuse (computed if `None`).
pub fn compress_basis_select(
    ckpt: &Checkpoint,
    opts: &BasisSelectOptions,
    scores: Option<&ModelScores>,
    mut progress: impl FnMut(Progress),
) -> Result<(OutputLayers, BasisSelectReport), EvalError> {
    let t0 = Instant::now();
    check_ratio(opts.ratio)?;
    if let Allocation::Mass(k) = opts.allocation {
        if !(k > 0.0 && k <= 1.0) {
            return Err(EvalError::Input(format!(
                "mass keep fraction must be in (0, 1], got {k}"
            )));
        }
    }
    let mut report = BasisSelectReport::default();
    // Global: pass 1 (or the given scores), then the plan.
    let plan = if opts.allocation == Allocation::Global {
        let owned;
        let s = match scores {
            Some(s) => s,
            None => {
                owned = score_model(ckpt, opts, String::new(), &mut progress)?;
                &owned
            }
        };
        if s.bases != opts.bases {
            return Err(EvalError::Input(format!(
                "scores were computed for {:?} bases, the run asks for {:?}",
                s.bases, opts.bases
            )));
        }
        let (plan, budget) = global_plan(s, opts)?;
        report.budget_params = budget;
        Some(plan)
    } else {
        None
    };
    report.score_s = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let needs_stats = plan.is_none()
        || opts.bases == BasisFamily::Whitened
        || opts.residual_rank > 0
        || opts.refit;
    let mut budget_per_matrix = 0usize;
    let mut compress_layer = |l: usize,
                              layer: &mut DecoderLayer,
                              stats: Option<
        &BTreeMap<LinearInput, llm_compress_core::InputStats>,
    >|
     -> Result<(), EvalError> {
        let inputs: BTreeSet<LinearInput> = opts.kinds.iter().map(|k| k.input()).collect();
        let chol = match stats {
            Some(s) if opts.bases == BasisFamily::Whitened || opts.residual_rank > 0 => {
                cholesky_per_input(s, &inputs, l)?
            }
            _ => BTreeMap::new(),
        };
        let results: Vec<(LinearKind, Linear, usize, usize)> = opts
            .kinds
            .par_iter()
            .map(|&kind| -> Result<_, EvalError> {
                let id = LinearId { layer: l, kind };
                let w = layer.linear(kind).to_dense();
                let (m, n) = (w.nrows(), w.ncols());
                let g = stats.map(|s| need_gram(s, kind.input())).transpose()?;
                let bases = match (opts.bases, chol.get(&kind.input()), g) {
                    (BasisFamily::Whitened, Some(lf), Some(g)) => {
                        whitened_bases(w.as_ref(), lf.as_ref(), g.as_ref())?
                    }
                    (BasisFamily::Whitened, _, _) => {
                        return Err(EvalError::Input("whitened bases need the Gram".into()))
                    }
                    (BasisFamily::Plain, _, g) => plain_bases(w.as_ref(), g.map(|g| g.as_ref()))?,
                };
                let formula = svd_llm_rank(m, n, opts.ratio);
                let (kept, budget) = match (&plan, opts.allocation) {
                    (Some(plan), _) => {
                        let idx = plan.get(&id).ok_or_else(|| {
                            EvalError::Input(format!("the scores have no entry for {id}"))
                        })?;
                        let kept = match opts.bases {
                            BasisFamily::Plain => idx.clone(),
                            // Re-whitened bases: keep as many as the plan gives, best first.
                            BasisFamily::Whitened => top_k(&bases.scores, idx.len()),
                        };
                        (kept, 0)
                    }
                    (None, Allocation::Mass(k)) => (mass_rule(&bases.scores, k)?, 0),
                    (None, _) => {
                        if formula <= opts.residual_rank {
                            return Err(EvalError::Input(format!(
                                "residual rank {} leaves no selected bases in {id} (rank {formula})",
                                opts.residual_rank
                            )));
                        }
                        (
                            top_k(&bases.scores, formula - opts.residual_rank),
                            formula * (m + n),
                        )
                    }
                };
                let gl = match (g, chol.get(&kind.input())) {
                    (Some(g), Some(lf)) => Some((g, lf)),
                    _ => None,
                };
                let lin = build_linear(&w, &bases, &kept, gl, opts)?;
                Ok((kind, lin, m * n, budget))
            })
            .collect::<Result<_, _>>()?;
        for (kind, lin, before, budget) in results {
            report.linear_params_before += before;
            budget_per_matrix += budget;
            if let Some(k) = lin.rank() {
                report
                    .ranks
                    .push((LinearId { layer: l, kind }.to_string(), k));
            }
            report.linear_params_after += lin.param_count();
            *layer.linear_mut(kind) = lin;
        }
        for kind in LinearKind::ALL.iter().filter(|k| !opts.kinds.contains(k)) {
            let n = layer.linear(*kind).param_count();
            report.linear_params_before += n;
            report.linear_params_after += n;
        }
        Ok(())
    };
    let base = Model::load_without_layers(ckpt)?;
    let layers = if needs_stats {
        let tokens = opts.calibration_text.tokens(ckpt)?;
        let windows = calibration_windows(&tokens, &opts.calibration)?;
        walk_layers(
            ckpt,
            &base,
            &windows,
            gram_request(),
            opts.stats_from,
            |l, layer, calib: &LayerCalibration| {
                let stats = match opts.stats_from {
                    StatsFrom::Compressed => calib.compressed.as_ref(),
                    _ => calib.original.as_ref(),
                }
                .ok_or_else(|| EvalError::Input("walk returned no statistics".into()))?;
                compress_layer(l, layer, Some(stats))
            },
            |WalkEvent::LayerDone { layer, layers }| {
                progress(Progress::Layer {
                    done: layer + 1,
                    total: layers,
                })
            },
        )?
    } else {
        // Plain bases with a global plan: the selection is fixed, no statistics are needed.
        let n = ckpt.config.num_layers;
        let mut out = Vec::with_capacity(n);
        for l in 0..n {
            let mut layer = DecoderLayer::load(ckpt, l)?;
            compress_layer(l, &mut layer, None)?;
            out.push(layer);
            progress(Progress::Layer {
                done: l + 1,
                total: n,
            });
        }
        out
    };
    if plan.is_none() {
        report.budget_params = budget_per_matrix;
    }
    report.compress_s = t1.elapsed().as_secs_f64();
    report.wall_s = t0.elapsed().as_secs_f64();
    Ok((OutputLayers { base, layers }, report))
}
