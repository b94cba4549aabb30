//! Pruning a whole model with DaSS, Wanda or magnitude (ALGORITHMS.md §4) over the sequential
//! calibration walk.
//!
//! The procedure of both references (§4.5): for layer `l`, the **dense** layer `l` runs on the
//! hidden states of the **already pruned** prefix with observers accumulating the squared
//! channel norms of every linear input; the selected linears are pruned from those statistics
//! (gate/up/down of DaSS all from the same pass, including the down_proj input norms that score
//! gate/up); then the pruned layer runs on the same states to produce the next layer's inputs.
//! This is [`walk_layers`] with [`StatsFrom::Compressed`] and a norms-only request (no Gram).

use crate::export::OutputLayers;
use crate::lowrank::{CalibrationText, Progress};
use llm_compress_core::{Linear, LinearId, LinearInput, LinearKind, SparsityPattern, StatsRequest};
use llm_compress_eval::{
    calibration_windows, walk_layers, CalibrationConfig, DecoderLayer, EvalError, LayerCalibration,
    Model, StatsFrom, TextSource, WalkEvent,
};
use llm_compress_glu_sparsity::{PruneMethod, Pruner};
use llm_compress_tensor_io::Checkpoint;
use rayon::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Instant;

/// Which decoder linears are pruned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PruneScope {
    /// gate, up, down (the DaSS reference, also for its Wanda baseline).
    Mlp,
    /// q, k, v, o only, with Wanda (magnitude if the method is magnitude): an extension.
    Attention,
    /// Every decoder linear: the MLP with the method, attention with Wanda (magnitude if the
    /// method is magnitude). With Wanda this is what the Wanda reference does.
    All,
}

impl PruneScope {
    /// Parse `mlp`, `attention` or `all`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "mlp" => Some(Self::Mlp),
            "attention" => Some(Self::Attention),
            "all" => Some(Self::All),
            _ => None,
        }
    }
    /// The linears pruned.
    pub fn kinds(self) -> Vec<LinearKind> {
        use LinearKind::*;
        match self {
            Self::Mlp => vec![Gate, Up, Down],
            Self::Attention => vec![Q, K, V, O],
            Self::All => LinearKind::ALL.to_vec(),
        }
    }
}

/// Options of a pruning run.
#[derive(Clone, Debug, Serialize)]
pub struct SparsityOptions {
    #[serde(serialize_with = "ser_method")]
    /// The scoring metric (DaSS, Wanda, magnitude).
    pub method: PruneMethod,
    #[serde(serialize_with = "ser_pattern")]
    /// N:M groups or unstructured.
    pub pattern: SparsityPattern,
    /// Fraction of the pruned linears' weights zeroed (`N/M` for N:M).
    pub sparsity: f64,
    /// DaSS norm exponent α (0.5).
    pub alpha: f64,
    /// Which linears are pruned.
    pub scope: PruneScope,
    /// Calibration windows.
    pub calibration: CalibrationConfig,
    #[serde(skip)]
    /// The calibration text.
    pub calibration_text: CalibrationText,
}

fn ser_method<S: serde::Serializer>(m: &PruneMethod, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(m.name())
}
fn ser_pattern<S: serde::Serializer>(p: &SparsityPattern, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&p.to_string())
}

impl SparsityOptions {
    /// `method` at `pattern` on the MLP, default sparsity (`N/M`, or 0.5 unstructured), α = 0.5,
    /// the default calibration (16 × 2048 WikiText-2 train windows, seed 3).
    pub fn new(method: PruneMethod, pattern: SparsityPattern) -> Self {
        let p = Pruner::new(method, pattern);
        Self {
            method,
            pattern,
            sparsity: p.sparsity,
            alpha: p.alpha,
            scope: PruneScope::Mlp,
            calibration: CalibrationConfig::default(),
            calibration_text: CalibrationText::Source(TextSource::WikiText2Train),
        }
    }

    /// Check the pattern, sparsity and α (a bad option is an input error).
    pub fn validate(&self) -> Result<(), EvalError> {
        for kind in self.scope.kinds() {
            self.pruner(kind)
                .validate()
                .map_err(|e| EvalError::Input(e.to_string()))?;
        }
        Ok(())
    }

    /// The pruner applied to `kind`: the method on the MLP, Wanda (or magnitude) on attention.
    fn pruner(&self, kind: LinearKind) -> Pruner {
        let method = match (self.method, kind.input()) {
            (PruneMethod::Dass, LinearInput::Attn | LinearInput::AttnOut) => PruneMethod::Wanda,
            (m, _) => m,
        };
        Pruner {
            method,
            pattern: self.pattern,
            sparsity: self.sparsity,
            alpha: self.alpha,
        }
    }
}

/// What a pruning run produced and where the time went.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SparsityReport {
    /// Decoder-linear parameters before pruning.
    pub linear_params_before: usize,
    /// Kept (non-pruned) decoder-linear weights.
    pub linear_params_after: usize,
    /// Dense f32 bytes of the decoder linears.
    pub linear_bytes_before: usize,
    /// Bytes of the decoder linears as stored (packed sparse + dense).
    pub linear_bytes_after: usize,
    /// Seconds tokenizing and sampling the calibration text.
    pub prepare_s: f64,
    /// Seconds of forward passes and norm accumulation.
    pub walk_s: f64,
    /// Scoring, mask selection and packing.
    pub prune_s: f64,
    /// Wall-clock seconds of the run.
    pub wall_s: f64,
}

/// Prune the decoder of `ckpt`; returns the layers and a report.
pub fn compress_sparse(
    ckpt: &Checkpoint,
    opts: &SparsityOptions,
    mut progress: impl FnMut(Progress),
) -> Result<(OutputLayers, SparsityReport), EvalError> {
    let t0 = Instant::now();
    let kinds = opts.scope.kinds();
    opts.validate()?;
    let text_tokens = opts.calibration_text.tokens(ckpt)?;
    let windows = calibration_windows(&text_tokens, &opts.calibration)?;
    let base = Model::load_without_layers(ckpt)?;
    let mut report = SparsityReport {
        prepare_s: t0.elapsed().as_secs_f64(),
        ..Default::default()
    };
    let request = prune_request(opts);
    let mut prune_s = 0.0;
    let layers = walk_layers(
        ckpt,
        &base,
        &windows,
        request,
        StatsFrom::Compressed,
        |l, layer, calib: &LayerCalibration| {
            let t = Instant::now();
            let pruned = prune_layer(opts, &kinds, l, layer, calib)?;
            for kind in LinearKind::ALL {
                let lin = pruned
                    .iter()
                    .find(|(k, _)| *k == kind)
                    .map_or(layer.linear(kind), |(_, lin)| lin);
                let (m, n) = lin.shape();
                report.linear_params_before += m * n;
                report.linear_bytes_before += 4 * m * n;
                report.linear_params_after += lin.param_count();
                report.linear_bytes_after += lin.storage_bytes();
            }
            for (kind, lin) in pruned {
                *layer.linear_mut(kind) = lin;
            }
            prune_s += t.elapsed().as_secs_f64();
            Ok(())
        },
        |WalkEvent::LayerDone { layer, layers }| {
            progress(Progress::Layer {
                done: layer + 1,
                total: layers,
            })
        },
    )?;
    report.prune_s = prune_s;
    report.wall_s = t0.elapsed().as_secs_f64();
    report.walk_s = report.wall_s - prune_s - report.prepare_s;
    Ok((OutputLayers { base, layers }, report))
}

/// Prune the linears `kinds` of decoder layer `l` from the channel norms of the compressed
/// prefix; returns the pruned linears (the layer is not modified). The per-layer step of
/// [`compress_sparse`] and of a [`crate::pipeline::Pipeline`].
pub(crate) fn prune_layer(
    opts: &SparsityOptions,
    kinds: &[LinearKind],
    l: usize,
    layer: &DecoderLayer,
    calib: &LayerCalibration,
) -> Result<Vec<(LinearKind, Linear)>, EvalError> {
    let stats = calib
        .compressed
        .as_ref()
        .ok_or_else(|| EvalError::Input("walk returned no statistics".into()))?;
    let norms = |input: LinearInput| -> Result<Vec<f64>, EvalError> {
        stats
            .get(&input)
            .and_then(|s| s.squared_norms())
            .ok_or_else(|| EvalError::Input(format!("no channel norms for {input:?}")))
    };
    let hidden = norms(LinearInput::MlpHidden)?;
    let inputs: BTreeMap<LinearInput, Vec<f64>> = LinearInput::ALL
        .into_iter()
        .map(|i| Ok((i, norms(i)?)))
        .collect::<Result<_, EvalError>>()?;
    kinds
        .par_iter()
        .map(|&kind| -> Result<_, EvalError> {
            let w = layer.linear(kind).to_dense();
            let lin = opts
                .pruner(kind)
                .prune(kind, w.as_ref(), &inputs[&kind.input()], &hidden)
                .map_err(|e| EvalError::Input(format!("{}: {e}", LinearId { layer: l, kind })))?;
            Ok((kind, lin))
        })
        .collect()
}

/// The statistics a pruning run asks the walk for (channel norms of the compressed prefix).
pub(crate) fn prune_request(opts: &SparsityOptions) -> StatsRequest {
    opts.pruner(LinearKind::Gate).needs()
}
