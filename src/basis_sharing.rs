//! Basis Sharing over a whole model (ALGORITHMS.md §3): a layer-streamed walk over **groups**
//! of consecutive decoder layers.
//!
//! For each group the walk loads the group's dense layers, runs them over the calibration
//! hidden states with observers that accumulate the four input Grams of every layer of the
//! group, factors every kind (one shared basis per kind for the shared kinds, from the group's
//! summed Gram; a per-layer SVD-LLM factorisation for the private kinds), drops the Grams and
//! moves on. Peak memory: the group's layers and Grams, one or two copies of the hidden states,
//! never the Grams of the whole model.
//!
//! Where the statistics come from ([`BasisSharingOptions::stats_from`]):
//! - [`StatsFrom::Original`]: the original model, one pass (the reference code);
//! - [`StatsFrom::Compressed`] (default): group-sequential. The hidden states entering a group
//!   come from the already compressed groups before it; inside the group the dense layers run
//!   on them (a group is factored jointly, so its own members are still dense while its
//!   statistics are gathered). This is SVD-LLM's sequential whitening lifted to groups, and it
//!   measured better on SmolLM2 (docs/basis-sharing.md).
//!
//! The optional coefficient update (§3.6, off by default) refits each shared coefficient with
//! its basis fixed on the Gram of the inputs the layer sees in the compressed model; it needs
//! the compressed stream, so with one-pass statistics both streams run.
//!
//! A group of one layer (`--group-size 1`, or a shared kind whose group has one member) is
//! SVD-LLM's whitened SVD and is stored as SVD-LLM stores it (two factors, `√Σ` on both).

use crate::export::OutputLayers;
use crate::lowrank::CalibrationText;
use llm_compress_core::shared::distinct_param_count;
use llm_compress_core::{
    GramAccumulator, InputStats, Linear, LinearId, LinearInput, LinearKind, Mat, MatRef,
    StatsRequest,
};
use llm_compress_eval::{
    calibration_windows, CalibrationConfig, DecoderLayer, EvalError, LayerObserver, Model,
    StatsFrom, TextSource,
};
use llm_compress_shared_basis::{layer_groups, update_coefficient, SharedBasis, SharingPlan};
use llm_compress_tensor_io::Checkpoint;
use llm_compress_whitening_svd::{robust_cholesky, CholeskyOptions, SvdLlm, SvdSolver};
use rayon::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Instant;

/// Options of a Basis Sharing run.
#[derive(Clone, Debug, Serialize)]
pub struct BasisSharingOptions {
    /// Fraction of decoder-linear parameters removed (per kind and group, §3.5).
    pub ratio: f64,
    /// Layers per group.
    pub group_size: usize,
    /// Kinds sharing a basis inside a group; the others are compressed per layer.
    pub shared: Vec<LinearKind>,
    /// Coefficient least-squares update on the compressed model (§3.6), default off.
    pub update: bool,
    /// Statistics from the compressed prefix (group-sequential, default) or the original model.
    pub stats_from: StatsFrom,
    /// Number, length and seed of the calibration windows (default 16 × 2048, seed 3).
    pub calibration: CalibrationConfig,
    /// Text the calibration windows are drawn from (default WikiText-2 train).
    #[serde(skip)]
    pub calibration_text: CalibrationText,
    /// SVD solver of every factorisation, shared and per-layer (default exact).
    pub svd_solver: SvdSolver,
}

impl BasisSharingOptions {
    /// Defaults of §3: groups of 2, `q, k, v, up, gate` shared, no update, group-sequential
    /// statistics, 16 × 2048 WikiText-2 train windows.
    pub fn new(ratio: f64) -> Self {
        let plan = SharingPlan::default();
        Self {
            ratio,
            group_size: plan.group_size,
            shared: plan.shared,
            update: false,
            stats_from: StatsFrom::Compressed,
            calibration: CalibrationConfig::default(),
            calibration_text: CalibrationText::Source(TextSource::WikiText2Train),
            svd_solver: SvdSolver::Exact,
        }
    }
}

/// What a run did and where its time went.
#[derive(Clone, Debug, Default, Serialize)]
pub struct BasisSharingReport {
    /// Parameters of all decoder linears before compression.
    pub linear_params_before: usize,
    /// Each shared basis counted once.
    pub linear_params_after: usize,
    /// Tokenizing and sampling the calibration text and loading the embedding/head, in seconds.
    pub prepare_s: f64,
    /// Forward passes, Gram accumulation included.
    pub walk_s: f64,
    /// Cholesky factorisations, SVDs (and the update).
    pub factorize_s: f64,
    /// Wall time of the whole run in seconds.
    pub wall_s: f64,
    /// The layer ranges of the groups.
    pub groups: Vec<Range<usize>>,
    /// `(linears, rank)`: `layers.0-1.q` for a shared basis, `layers.3.o` for a private one.
    pub ranks: Vec<(String, usize)>,
}

/// Progress of a run: groups done out of groups.
#[derive(Clone, Copy, Debug)]
pub enum Progress {
    /// `done` of `total` layer groups are factored.
    Group {
        /// Groups finished so far (1-based count).
        done: usize,
        /// Number of layer groups.
        total: usize,
    },
}

/// Statistics of one layer's four distinct inputs.
type LayerStats = BTreeMap<LinearInput, InputStats>;

struct Observer(BTreeMap<LinearInput, GramAccumulator>);

impl Observer {
    fn new(layer: &DecoderLayer, hidden: usize, inputs: &[LinearInput]) -> Self {
        let gram = StatsRequest {
            gram: true,
            ..StatsRequest::NONE
        };
        Self(
            inputs
                .iter()
                .map(|&input| {
                    let d = match input {
                        LinearInput::Attn | LinearInput::Mlp => hidden,
                        LinearInput::AttnOut => layer.o.shape().1,
                        LinearInput::MlpHidden => layer.down.shape().1,
                    };
                    (input, GramAccumulator::new(d, gram))
                })
                .collect(),
        )
    }
    fn finish(self) -> LayerStats {
        self.0.into_iter().map(|(k, a)| (k, a.finish())).collect()
    }
}

impl LayerObserver for Observer {
    fn observe(&mut self, input: LinearInput, x: MatRef<'_, f32>) {
        if let Some(a) = self.0.get_mut(&input) {
            a.add(x);
        }
    }
}

/// Run `layer` over every state in place, observing `inputs` if non-empty.
fn run(model: &Model, layer: &DecoderLayer, states: &mut [Mat<f32>], inputs: &[LinearInput]) {
    let mut obs = Observer::new(layer, model.config.hidden_size, inputs);
    for h in states.iter_mut() {
        let o = (!inputs.is_empty()).then_some(&mut obs as &mut dyn LayerObserver);
        layer.forward(&model.config, &model.rope, h, o);
    }
}

/// Run `layer` over every state in place and return the Grams of `inputs`.
fn run_observed(
    model: &Model,
    layer: &DecoderLayer,
    states: &mut [Mat<f32>],
    inputs: &[LinearInput],
) -> LayerStats {
    let mut obs = Observer::new(layer, model.config.hidden_size, inputs);
    for h in states.iter_mut() {
        layer.forward(&model.config, &model.rope, h, Some(&mut obs));
    }
    obs.finish()
}

fn gram_of<'a>(stats: &'a LayerStats, input: LinearInput) -> Result<MatRef<'a, f64>, EvalError> {
    stats
        .get(&input)
        .and_then(|s| s.gram.as_ref())
        .map(|g| g.as_ref())
        .ok_or_else(|| EvalError::Input(format!("no Gram was collected for {input:?}")))
}

/// Which Cholesky factor a kind needs: of the group's summed Gram (`None`) or of one layer's.
type CholKey = (Option<usize>, LinearInput);

/// Factor every kind of one group: `layers[i]` is layer `range.start + i`, `stats[i]` its Grams.
fn compress_group(
    range: &Range<usize>,
    layers: &mut [DecoderLayer],
    stats: &[LayerStats],
    opts: &BasisSharingOptions,
    ranks: &mut Vec<(String, usize)>,
) -> Result<(), EvalError> {
    let g = layers.len();
    let shared = |kind: LinearKind| g > 1 && opts.shared.contains(&kind);
    // One Cholesky per distinct (summed or per-layer) Gram, in parallel.
    let mut keys: Vec<CholKey> = Vec::new();
    for kind in LinearKind::ALL {
        if shared(kind) {
            keys.push((None, kind.input()));
        } else {
            keys.extend((0..g).map(|i| (Some(i), kind.input())));
        }
    }
    keys.sort();
    keys.dedup();
    let chol: BTreeMap<CholKey, Mat<f64>> = keys
        .into_par_iter()
        .map(|key| -> Result<_, EvalError> {
            let gram = match key {
                (Some(i), input) => gram_of(&stats[i], input)?.to_owned(),
                (None, input) => {
                    let grams = stats
                        .iter()
                        .map(|s| gram_of(s, input))
                        .collect::<Result<Vec<_>, _>>()?;
                    llm_compress_shared_basis::summed_gram(&grams)?
                }
            };
            let (l, report) = robust_cholesky(gram.as_ref(), &CholeskyOptions::default())?;
            if report.regularised() {
                tracing::info!(layers = ?range, ?key, ?report, "Gram regularised");
            }
            Ok((key, l))
        })
        .collect::<Result<_, _>>()?;
    // Every kind of the group in parallel: one Vec<Linear> (a linear per layer) per kind.
    let results: Vec<(LinearKind, Vec<Linear>)> = LinearKind::ALL
        .into_par_iter()
        .map(|kind| -> Result<_, EvalError> {
            let weights: Vec<Mat<f32>> = layers.iter().map(|l| l.linear(kind).to_dense()).collect();
            let lins = if shared(kind) {
                let ws: Vec<MatRef<f32>> = weights.iter().map(|w| w.as_ref()).collect();
                let l = &chol[&(None, kind.input())];
                SharedBasis::new(opts.ratio)
                    .with_solver(opts.svd_solver)
                    .factorize_with_cholesky(&ws, l.as_ref())?
                    .to_linears()?
            } else {
                weights
                    .iter()
                    .enumerate()
                    .map(|(i, w)| -> Result<Linear, EvalError> {
                        let id = LinearId {
                            layer: range.start + i,
                            kind,
                        };
                        let l = &chol[&(Some(i), kind.input())];
                        Ok(SvdLlm::new(opts.ratio)
                            .with_solver(opts.svd_solver)
                            .factorize_with_cholesky(id, w.as_ref(), l.as_ref())?
                            .to_linear()?)
                    })
                    .collect::<Result<_, _>>()?
            };
            Ok((kind, lins))
        })
        .collect::<Result<_, _>>()?;
    for (kind, lins) in results {
        if shared(kind) {
            let rank = lins[0].rank().unwrap_or(0);
            ranks.push((
                format!("layers.{}-{}.{}", range.start, range.end - 1, kind.short()),
                rank,
            ));
        }
        for (i, lin) in lins.into_iter().enumerate() {
            if !shared(kind) {
                let id = LinearId {
                    layer: range.start + i,
                    kind,
                };
                ranks.push((id.to_string(), lin.rank().unwrap_or(0)));
            }
            *layers[i].linear_mut(kind) = lin;
        }
    }
    Ok(())
}

/// The §3.6 update of layer `layer`'s shared coefficients from the Grams `comp` of its inputs
/// in the compressed model; `dense` holds its original weights.
fn update_layer(
    layer: &mut DecoderLayer,
    dense: &BTreeMap<LinearKind, Mat<f32>>,
    comp: &LayerStats,
) -> Result<(), EvalError> {
    let updated: Vec<(LinearKind, Linear)> = dense
        .par_iter()
        .map(|(&kind, w)| -> Result<_, EvalError> {
            let gram = gram_of(comp, kind.input())?;
            Ok((
                kind,
                update_coefficient(layer.linear(kind), w.as_ref(), gram)?,
            ))
        })
        .collect::<Result<_, _>>()?;
    for (kind, lin) in updated {
        *layer.linear_mut(kind) = lin;
    }
    Ok(())
}

/// Compress every decoder layer of `ckpt` by Basis Sharing; returns the layers and a report.
pub fn compress_basis_sharing(
    ckpt: &Checkpoint,
    opts: &BasisSharingOptions,
    mut progress: impl FnMut(Progress),
) -> Result<(OutputLayers, BasisSharingReport), EvalError> {
    let t0 = Instant::now();
    llm_compress_core::budget::check_ratio(opts.ratio)?;
    if opts.stats_from == StatsFrom::Both {
        return Err(EvalError::Input(
            "basis sharing takes its statistics from `original` or `compressed`".into(),
        ));
    }
    let groups = layer_groups(ckpt.config.num_layers, opts.group_size)?;
    let text_tokens = opts.calibration_text.tokens(ckpt)?;
    let windows = calibration_windows(&text_tokens, &opts.calibration)?;
    let base = Model::load_without_layers(ckpt)?;
    let mut report = BasisSharingReport {
        prepare_s: t0.elapsed().as_secs_f64(),
        groups: groups.clone(),
        ..Default::default()
    };
    let use_orig = opts.stats_from == StatsFrom::Original;
    let use_comp = opts.stats_from == StatsFrom::Compressed || opts.update;
    let embed_all =
        || -> Result<Vec<Mat<f32>>, EvalError> { windows.iter().map(|w| base.embed(w)).collect() };
    let mut orig = if use_orig { embed_all()? } else { Vec::new() };
    let mut comp = if use_comp { embed_all()? } else { Vec::new() };
    let all_inputs = LinearInput::ALL;
    let mut out_layers = Vec::with_capacity(ckpt.config.num_layers);
    let mut factorize_s = 0.0;
    for (gi, range) in groups.iter().enumerate() {
        let mut layers = range
            .clone()
            .map(|l| DecoderLayer::load(ckpt, l))
            .collect::<Result<Vec<_>, _>>()?;
        for layer in &layers {
            report.linear_params_before += layer.linear_params();
        }
        // The group's Grams: from the original stream (advancing it) or from the dense group
        // run on a copy of the compressed stream.
        let stats: Vec<LayerStats> = if use_orig {
            layers
                .iter()
                .map(|layer| run_observed(&base, layer, &mut orig, &all_inputs))
                .collect()
        } else {
            let mut tmp = comp.clone();
            layers
                .iter()
                .map(|layer| run_observed(&base, layer, &mut tmp, &all_inputs))
                .collect()
        };
        let t = Instant::now();
        let dense_shared: Vec<BTreeMap<LinearKind, Mat<f32>>> = if opts.update && layers.len() > 1 {
            layers
                .iter()
                .map(|l| {
                    opts.shared
                        .iter()
                        .map(|&k| (k, l.linear(k).to_dense()))
                        .collect()
                })
                .collect()
        } else {
            Vec::new()
        };
        compress_group(range, &mut layers, &stats, opts, &mut report.ranks)?;
        drop(stats);
        factorize_s += t.elapsed().as_secs_f64();
        // Advance the compressed stream through the compressed group (updating first).
        if use_comp {
            for (i, layer) in layers.iter_mut().enumerate() {
                if let Some(dense) = dense_shared.get(i) {
                    let inputs: Vec<LinearInput> = dense.keys().map(|k| k.input()).collect();
                    let mut tmp = comp.clone();
                    let comp_stats = run_observed(&base, layer, &mut tmp, &inputs);
                    drop(tmp);
                    let t = Instant::now();
                    update_layer(layer, dense, &comp_stats)?;
                    factorize_s += t.elapsed().as_secs_f64();
                }
                run(&base, layer, &mut comp, &[]);
            }
        }
        out_layers.extend(layers);
        progress(Progress::Group {
            done: gi + 1,
            total: groups.len(),
        });
    }
    report.linear_params_after = distinct_param_count(
        out_layers
            .iter()
            .flat_map(|l| LinearKind::ALL.into_iter().map(move |k| l.linear(k))),
    );
    report.factorize_s = factorize_s;
    report.wall_s = t0.elapsed().as_secs_f64();
    report.walk_s = report.wall_s - factorize_s - report.prepare_s;
    Ok((
        OutputLayers {
            base,
            layers: out_layers,
        },
        report,
    ))
}

/// Parameters a Basis Sharing model keeps, predicted from shapes alone (each basis once):
/// `Σ_groups Σ_kinds k·(n + g·m)` for shared kinds, `k·(n + m)` per layer for private ones.
/// Used to check the written file against what the sharing predicts.
pub fn predicted_params(
    config: &llm_compress_tensor_io::ModelConfig,
    opts: &BasisSharingOptions,
) -> Result<usize, EvalError> {
    use llm_compress_core::budget::{shared_basis_rank, svd_llm_rank};
    let mut total = 0;
    for range in layer_groups(config.num_layers, opts.group_size)? {
        let g = range.len();
        for kind in LinearKind::ALL {
            let (m, n) = config.linear_shape(kind);
            if g > 1 && opts.shared.contains(&kind) {
                total += shared_basis_rank(m, n, g, opts.ratio) * (n + g * m);
            } else {
                total += g * svd_llm_rank(m, n, opts.ratio) * (n + m);
            }
        }
    }
    Ok(total)
}
