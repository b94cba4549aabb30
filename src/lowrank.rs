//! Low-rank compression of a whole model (SVD-LLM and its baselines) over the layer-streamed
//! calibration walk.
//!
//! SVD-LLM (ALGORITHMS.md §2.3) whitens each linear with the Gram of its inputs. The reference
//! code takes those Grams from the **original** model in one pass; we default to the Grams of
//! the **compressed prefix** (sequential, as DaSS and SparseGPT do), which measured better
//! (docs/svd-llm.md), and keep the one-pass mode as an option. The optional closed-form update
//! of `U` (§2.5a) refits the second factor on the compressed-prefix inputs; with one-pass
//! whitening and the update, the walk runs both streams ([`StatsFrom::Both`]).

use crate::export::OutputLayers;
use llm_compress_core::{
    Linear, LinearId, LinearInput, LinearKind, Mat, MatrixCompressor, QuantMatrix, StatsRequest,
};
use llm_compress_eval::{
    calibration_windows, walk_layers, CalibrationConfig, DecoderLayer, EvalError, LayerCalibration,
    Model, StatsFrom, TextSource, WalkEvent,
};
use llm_compress_tensor_io::Checkpoint;
use llm_compress_whitening_svd::{
    closed_form_update, robust_cholesky, Asvd, CholeskyOptions, PlainSvd, SvdLlm, SvdSolver,
};
use rayon::prelude::*;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

/// A low-rank method.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LowRankMethod {
    /// Truncation-aware whitening (SVD-LLM).
    SvdLlm,
    /// Plain truncated SVD of the weight.
    Svd,
    /// Activation-aware SVD (abs-mean scaling, α = 0.5).
    Asvd,
}

impl LowRankMethod {
    /// The method named `s` on the command line (`svd-llm`, `svd`, `asvd`), `None` otherwise.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "svd-llm" => Some(Self::SvdLlm),
            "svd" => Some(Self::Svd),
            "asvd" => Some(Self::Asvd),
            _ => None,
        }
    }
    /// The command-line name of the method (the inverse of [`LowRankMethod::parse`]).
    pub fn name(self) -> &'static str {
        match self {
            Self::SvdLlm => "svd-llm",
            Self::Svd => "svd",
            Self::Asvd => "asvd",
        }
    }
    pub(crate) fn compressor(self, ratio: f64) -> Box<dyn MatrixCompressor> {
        self.compressor_with_solver(ratio, SvdSolver::Exact)
    }
    pub(crate) fn compressor_with_solver(
        self,
        ratio: f64,
        solver: SvdSolver,
    ) -> Box<dyn MatrixCompressor> {
        match self {
            Self::SvdLlm => Box::new(SvdLlm::new(ratio).with_solver(solver)),
            Self::Svd => Box::new(PlainSvd::new(ratio).with_solver(solver)),
            Self::Asvd => Box::new(Asvd::new(ratio).with_solver(solver)),
        }
    }
}

/// The text calibration windows are drawn from.
#[derive(Clone, Debug)]
pub enum CalibrationText {
    /// A named or file text source, tokenized with the checkpoint's tokenizer.
    Source(TextSource),
    /// Already tokenized text.
    Tokens(Vec<u32>),
    /// Seeded uniformly random token ids over the model's vocabulary (2²² of them): the
    /// calibration of a checkpoint without a tokenizer or text of its own, such as the
    /// synthetic 7B-shaped test models (`--calib random`).
    RandomTokens {
        /// Seed of the token stream.
        seed: u64,
    },
}

impl CalibrationText {
    /// The token ids of this text.
    pub fn tokens(&self, ckpt: &Checkpoint) -> Result<Vec<u32>, EvalError> {
        match self {
            CalibrationText::Source(s) => s.tokens(ckpt.require_tokenizer()?),
            CalibrationText::Tokens(t) => Ok(t.clone()),
            CalibrationText::RandomTokens { seed } => {
                let vocab = ckpt.config.vocab_size as u64;
                if vocab == 0 {
                    return Err(EvalError::Input("the model has an empty vocabulary".into()));
                }
                let mut rng = llm_compress_core::rng::SplitMix64::new(*seed);
                Ok((0..1 << 22).map(|_| rng.below(vocab) as u32).collect())
            }
        }
    }
}

/// Options of a low-rank compression run.
#[derive(Clone, Debug, Serialize)]
pub struct LowRankOptions {
    /// Which low-rank method factors each linear.
    pub method: LowRankMethod,
    /// Fraction of decoder-linear parameters removed.
    pub ratio: f64,
    /// Closed-form update of the second factor from the compressed prefix (§2.5a).
    pub update: bool,
    /// Where the whitening Grams come from: the compressed prefix (sequential, the default:
    /// each layer is whitened with the inputs it will actually see once the layers before it
    /// are compressed) or the original model (one pass, the reference code's behaviour, about
    /// half the walk time). Measured on SmolLM2 at ratio 0.2 (wt2-20w, 16 x 2048 windows,
    /// seed 3): 59.0 sequential against 63.1 one-pass; see docs/svd-llm.md.
    pub whiten_from: StatsFrom,
    /// Number, length and seed of the calibration windows (default 16 × 2048, seed 3).
    pub calibration: CalibrationConfig,
    /// Text the calibration windows are drawn from (default WikiText-2 train).
    #[serde(skip)]
    pub calibration_text: CalibrationText,
    /// Which linears to compress (default: all seven kinds).
    pub kinds: Vec<LinearKind>,
    /// How the truncated SVDs are computed: exact (default) or randomized (only the kept rank;
    /// see docs/scale.md for its speed and accuracy).
    pub svd_solver: SvdSolver,
    /// How the two factors of each compressed linear are stored (default f32; left out of the
    /// serialized options when f32, so records of f32 runs did not change with the option).
    #[serde(skip_serializing_if = "FactorDtype::is_f32")]
    pub factor_dtype: FactorDtype,
}

impl LowRankOptions {
    /// Options for `method` at `ratio` with the defaults: no update, whitening from the
    /// compressed prefix, 16 × 2048 windows of WikiText-2 train (seed 3), all seven linear
    /// kinds. The ratio is checked by [`compress_low_rank`].
    pub fn new(method: LowRankMethod, ratio: f64) -> Self {
        Self {
            method,
            ratio,
            update: false,
            whiten_from: StatsFrom::Compressed,
            calibration: CalibrationConfig::default(),
            calibration_text: CalibrationText::Source(TextSource::WikiText2Train),
            kinds: LinearKind::ALL.to_vec(),
            svd_solver: SvdSolver::Exact,
            factor_dtype: FactorDtype::F32,
        }
    }
}

/// Add `"factor_dtype"` to a method record when it is not the default f32, so the record (and
/// the resume fingerprint) of an f32 run is the one it was before the option existed.
pub fn with_factor_dtype(
    mut method_json: serde_json::Value,
    factor_dtype: FactorDtype,
) -> serde_json::Value {
    if !factor_dtype.is_f32() {
        method_json["factor_dtype"] = serde_json::json!(factor_dtype);
    }
    method_json
}

/// The precision the factors of a low-rank linear are stored (and run) in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FactorDtype {
    /// f32, as computed.
    #[default]
    F32,
    /// f16 copies (`Linear::Quantized` in the f16 format, read natively by the runtime and the
    /// compact format): half the bytes. The SVD is still computed in f64 and the factors in
    /// f32; only the stored copies are rounded (relative error 2⁻¹¹ per entry, far below the
    /// truncation's).
    F16,
}

impl FactorDtype {
    /// `f32` or `f16`; `None` otherwise.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "f32" => Some(Self::F32),
            "f16" => Some(Self::F16),
            _ => None,
        }
    }

    /// Whether this is the default, f32.
    pub fn is_f32(&self) -> bool {
        *self == Self::F32
    }

    /// `"f32"` or `"f16"`.
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
        }
    }
}

/// `lin`'s factors as f16 copies when it is low-rank (anything else is returned as it is).
/// Errors, rather than storing an infinity, when an entry is beyond f16's range (±65504).
pub fn f16_factors(id: LinearId, lin: Linear) -> Result<Linear, EvalError> {
    let Linear::LowRank { first, second } = lin else {
        return Ok(lin);
    };
    let to_f16 = |factor: &Linear, which: &str| -> Result<Linear, EvalError> {
        let dense = factor.to_dense();
        let max = dense.norm_max();
        if max.is_nan() || max > half::f16::MAX.to_f32() {
            return Err(llm_compress_core::CoreError::Numerical {
                what: format!("{id}: {which} factor"),
                detail: format!(
                    "an entry of magnitude {max:e} is beyond f16's range (±65504): keep f32 factors"
                ),
            }
            .into());
        }
        Ok(Linear::Quantized(QuantMatrix::f16_from(dense.as_ref())))
    };
    Ok(Linear::low_rank(
        to_f16(&first, "first")?,
        to_f16(&second, "second")?,
    )?)
}

/// Where the time of a run went, and what came out.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LowRankReport {
    /// Parameters of all decoder linears before compression.
    pub linear_params_before: usize,
    /// Parameters of all decoder linears after compression (linears left dense included).
    pub linear_params_after: usize,
    /// Tokenizing and sampling the calibration text.
    pub prepare_s: f64,
    /// Forward passes of the walk, Gram accumulation included.
    pub walk_s: f64,
    /// Cholesky, SVD, factor products (and the update).
    pub factorize_s: f64,
    /// Wall time of the whole run in seconds.
    pub wall_s: f64,
    /// `(linear, rank)` for every compressed linear.
    pub ranks: Vec<(String, usize)>,
}

/// Progress of a compression run, for a caller-owned display.
#[derive(Clone, Copy, Debug)]
pub enum Progress {
    /// `done` of `total` decoder layers are compressed.
    Layer {
        /// Layers finished so far (1-based count).
        done: usize,
        /// Number of decoder layers.
        total: usize,
    },
}

/// Compress every decoder layer of `ckpt`; returns the layers and a report.
pub fn compress_low_rank(
    ckpt: &Checkpoint,
    opts: &LowRankOptions,
    mut progress: impl FnMut(Progress),
) -> Result<(OutputLayers, LowRankReport), EvalError> {
    let t0 = Instant::now();
    llm_compress_core::budget::check_ratio(opts.ratio)?;
    opts.svd_solver.validate()?;
    let compressor = opts
        .method
        .compressor_with_solver(opts.ratio, opts.svd_solver);
    let text_tokens = opts.calibration_text.tokens(ckpt)?;
    let windows = calibration_windows(&text_tokens, &opts.calibration)?;
    let base = Model::load_without_layers(ckpt)?;
    let prepare_s = t0.elapsed().as_secs_f64();
    let (request, stats_from) = low_rank_request(opts);
    let mut report = LowRankReport {
        prepare_s,
        ..Default::default()
    };
    let mut factorize_s = 0.0;
    let layers = walk_layers(
        ckpt,
        &base,
        &windows,
        request,
        stats_from,
        |l, layer, calib: &LayerCalibration| {
            let t = Instant::now();
            let results = low_rank_layer(opts, compressor.as_ref(), l, layer, calib)?;
            for (kind, lin) in results {
                let id = LinearId { layer: l, kind };
                report.linear_params_before += layer.linear(kind).param_count();
                if let Some(k) = lin.rank() {
                    report.ranks.push((id.to_string(), k));
                }
                report.linear_params_after += lin.param_count();
                *layer.linear_mut(kind) = lin;
            }
            // Linears left dense still count on both sides.
            for kind in LinearKind::ALL.iter().filter(|k| !opts.kinds.contains(k)) {
                let n = layer.linear(*kind).param_count();
                report.linear_params_before += n;
                report.linear_params_after += n;
            }
            factorize_s += t.elapsed().as_secs_f64();
            Ok(())
        },
        |WalkEvent::LayerDone { layer, layers }| {
            progress(Progress::Layer {
                done: layer + 1,
                total: layers,
            })
        },
    )?;
    report.factorize_s = factorize_s;
    report.wall_s = t0.elapsed().as_secs_f64();
    report.walk_s = report.wall_s - factorize_s - prepare_s;
    Ok((OutputLayers { base, layers }, report))
}

/// The statistics a low-rank run asks the walk for, and from which stream.
pub(crate) fn low_rank_request(opts: &LowRankOptions) -> (StatsRequest, StatsFrom) {
    let mut request = opts.method.compressor(opts.ratio).needs();
    if opts.update {
        request = request.union(StatsRequest {
            gram: true,
            ..StatsRequest::NONE
        });
    }
    let stats_from = match (opts.whiten_from, opts.update) {
        (StatsFrom::Original, false) => StatsFrom::Original,
        (StatsFrom::Original, true) | (StatsFrom::Both, _) => StatsFrom::Both,
        (StatsFrom::Compressed, _) => StatsFrom::Compressed,
    };
    (request, stats_from)
}

/// Factorise the linears `opts.kinds` of decoder layer `l` from its calibration statistics;
/// returns the new linears (the layer is not modified). The per-layer step of
/// [`compress_low_rank`] and of a [`crate::pipeline::Pipeline`].
pub(crate) fn low_rank_layer(
    opts: &LowRankOptions,
    compressor: &dyn MatrixCompressor,
    l: usize,
    layer: &DecoderLayer,
    calib: &LayerCalibration,
) -> Result<Vec<(LinearKind, Linear)>, EvalError> {
    let chol = whitening_factors(opts, l, calib)?;
    factorize_layer(opts, compressor, l, layer, calib, &chol, true)
}

/// The statistics the whitening reads (`opts.whiten_from`'s stream).
fn whitening_stats<'a>(
    opts: &LowRankOptions,
    calib: &'a LayerCalibration,
) -> Result<&'a llm_compress_eval::calibration::InputStatsMap, EvalError> {
    match opts.whiten_from {
        StatsFrom::Compressed => calib.compressed.as_ref(),
        _ => calib.original.as_ref(),
    }
    .ok_or_else(|| EvalError::Input("walk returned no whitening statistics".into()))
}

/// SVD-LLM's whitening of layer `l`: one robust Cholesky factor per distinct input of
/// `opts.kinds` (q/k/v share one, gate/up share one), computed in parallel; empty for the
/// other methods. Once they exist the whitening Grams are no longer needed
/// ([`release_whitening_grams`]).
pub(crate) fn whitening_factors(
    opts: &LowRankOptions,
    l: usize,
    calib: &LayerCalibration,
) -> Result<BTreeMap<LinearInput, Mat<f64>>, EvalError> {
    let orig = whitening_stats(opts, calib)?;
    Ok(if opts.method == LowRankMethod::SvdLlm {
        let inputs: BTreeSet<LinearInput> = opts.kinds.iter().map(|k| k.input()).collect();
        inputs
            .into_par_iter()
            .map(|input| -> Result<_, EvalError> {
                let g = orig
                    .get(&input)
                    .and_then(|s| s.gram.as_ref())
                    .ok_or_else(|| EvalError::Input("svd-llm needs the input Gram".into()))?;
                let (factor, chol_report) =
                    robust_cholesky(g.as_ref(), &CholeskyOptions::default())?;
                if chol_report.regularised() {
                    tracing::info!(layer = l, ?input, ?chol_report, "Gram regularised");
                }
                Ok((input, factor))
            })
            .collect::<Result<_, _>>()?
    } else {
        BTreeMap::new()
    })
}

/// Drop the Grams of `calib` that nothing reads once the Cholesky factors `chol` exist: for
/// SVD-LLM every Gram except the compressed-prefix ones the update refits with (1.3 GiB per
/// layer of a 7B model, in f64).
pub(crate) fn release_whitening_grams(
    opts: &LowRankOptions,
    calib: &mut LayerCalibration,
    chol: &BTreeMap<LinearInput, Mat<f64>>,
) {
    for (stream, keep) in [
        (&mut calib.original, false),
        (&mut calib.compressed, opts.update),
    ] {
        if keep {
            continue;
        }
        for (input, stats) in stream.iter_mut().flatten() {
            if chol.contains_key(input) {
                stats.gram = None;
            }
        }
    }
}

/// The factorisations of layer `l`, given the whitening factors of [`whitening_factors`]: in
/// parallel over the linears when `parallel` (faster on small matrices), else one after the
/// other (each factorisation is itself parallel; peak memory is one factorisation's, which
/// for a 7B MLP matrix and the exact SVD is about 3 GB).
pub(crate) fn factorize_layer(
    opts: &LowRankOptions,
    compressor: &dyn MatrixCompressor,
    l: usize,
    layer: &DecoderLayer,
    calib: &LayerCalibration,
    chol: &BTreeMap<LinearInput, Mat<f64>>,
    parallel: bool,
) -> Result<Vec<(LinearKind, Linear)>, EvalError> {
    let orig = whitening_stats(opts, calib)?;
    let one = |&kind: &LinearKind| -> Result<_, EvalError> {
        let id = LinearId { layer: l, kind };
        let w = layer.linear(kind).to_dense();
        let stats = orig
            .get(&kind.input())
            .ok_or_else(|| EvalError::Input(format!("no statistics for {id}")))?;
        let mut lin = match chol.get(&kind.input()) {
            Some(lf) => SvdLlm::new(opts.ratio)
                .with_solver(opts.svd_solver)
                .factorize_with_cholesky(id, w.as_ref(), lf.as_ref())?
                .to_linear()?,
            None => compressor.compress(id, w.as_ref(), stats)?,
        };
        if opts.update {
            let comp = calib
                .compressed
                .as_ref()
                .and_then(|c| c.get(&kind.input()))
                .and_then(|s| s.gram.as_ref())
                .ok_or_else(|| {
                    EvalError::Input("update needs the compressed-prefix Gram".into())
                })?;
            if let Linear::LowRank { first, .. } = &lin {
                let f = first.to_dense();
                let second = closed_form_update(f.as_ref(), w.as_ref(), comp.as_ref())?;
                lin = Linear::low_rank(Linear::Dense(f), Linear::Dense(second))?;
            }
        }
        if opts.factor_dtype == FactorDtype::F16 {
            lin = f16_factors(id, lin)?;
        }
        Ok((kind, lin))
    };
    if parallel {
        opts.kinds.par_iter().map(one).collect()
    } else {
        opts.kinds.iter().map(one).collect()
    }
}
