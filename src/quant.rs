//! LSAQ over a whole model (ALGORITHMS.md §6): layer importance from a calibration pass, one
//! precision per decoder layer from a byte budget for the whole tensor file, and quantization
//! (round-to-nearest, or GPTQ over the sequential calibration walk).
//!
//! Two passes are inherent: the allocation needs the importance of every layer before the first
//! layer can be quantized, so the importance pass runs first (forward passes of the original
//! model only, no Grams), then the quantization pass (RTN needs no calibration; GPTQ runs the
//! layer-streamed walk and quantizes each layer with the Grams of the quantized prefix).
//!
//! The importance pass holds the hidden states of the calibration windows for one layer at a
//! time, like the walk, plus the top-k sets of the sampled positions of the previous layer's
//! output; it never stores the hidden states of all layers.
//!
//! Composition: [`quantize_to_budget`] takes already compressed layers and quantizes what they
//! store: the factors of low-rank layers (SVD-LLM), the kept values of sparse ones (DaSS, Wanda,
//! magnitude; the mask is kept), the coefficients and shared bases of Basis Sharing (each
//! basis once, at the highest precision among the layers reading it, and still one buffer
//! afterwards). Importance is measured on those layers; the byte costs count each basis once.

use crate::export::OutputLayers;
use crate::lowrank::CalibrationText;
use llm_compress_core::{Linear, LinearId, LinearKind, Mat, QuantFormat, StatsRequest};
use llm_compress_eval::{
    calibration_windows, walk_layers, CalibrationConfig, DecoderLayer, EvalError, Model, StatsFrom,
    TextSource, WalkEvent,
};
use llm_compress_layer_quant::{
    allocate_model, basis_key, collect_shared_bases, quantize_with_bases, quantized_bytes, ranking,
    Allocation, CostModel, ImportanceAccumulator, LayerImportance, LogitLens, QuantScheme,
    QuantizedBases, Quantizer, RankingKind, SharedCost,
};
use llm_compress_tensor_io::Checkpoint;
use rayon::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

/// Options of an LSAQ run.
#[derive(Clone, Debug, Serialize)]
pub struct LsaqOptions {
    /// Bytes the tensor file (`model.safetensors`) may occupy.
    pub budget_bytes: usize,
    /// Precision levels a layer may get (any of int4, int8, f16).
    pub ladder: Vec<QuantFormat>,
    /// Columns per scale group for int4 (`None` = per output channel).
    pub group_size: Option<usize>,
    /// Round-to-nearest or GPTQ.
    pub quantizer: Quantizer,
    /// The ranking that decides which layers are promoted first.
    pub importance: RankingKind,
    /// Size of the logit-lens top-k token sets.
    pub top_k: usize,
    /// Every `position_stride`-th position of each window is scored (positions
    /// `stride−1, 2·stride−1, ...`).
    pub position_stride: usize,
    /// Seed of the random ranking.
    pub seed: u64,
    /// Store embeddings (and an untied head) as f16 rather than f32.
    pub f16_embeddings: bool,
    /// Calibration windows (importance pass and GPTQ).
    pub calibration: CalibrationConfig,
    /// GPTQ's Grams: of the quantized prefix's outputs (`Compressed`, sequential, as the
    /// reference GPTQ) or of the original model's (`Original`, one pass).
    #[serde(skip)]
    pub gptq_stats_from: StatsFrom,
    #[serde(skip)]
    /// The calibration text.
    pub calibration_text: CalibrationText,
    /// Importance measured earlier on the same layers (skips the importance pass; used to
    /// compare rankings and budgets without re-measuring).
    #[serde(skip)]
    pub precomputed_importance: Option<LayerImportance>,
}

impl LsaqOptions {
    /// Defaults of ALGORITHMS.md §6: ladder {int4, int8, f16}, per-channel int4 unless a group
    /// size is set, RTN, Jaccard importance with k = 10, every 16th position, f16 embeddings.
    pub fn new(budget_bytes: usize) -> Self {
        Self {
            budget_bytes,
            ladder: vec![QuantFormat::Int4, QuantFormat::Int8, QuantFormat::F16],
            group_size: None,
            quantizer: Quantizer::Rtn,
            importance: RankingKind::Jaccard,
            top_k: 10,
            position_stride: 16,
            seed: 0,
            f16_embeddings: true,
            calibration: CalibrationConfig::default(),
            gptq_stats_from: StatsFrom::Compressed,
            calibration_text: CalibrationText::Source(TextSource::WikiText2Train),
            precomputed_importance: None,
        }
    }

    fn scheme(&self, format: QuantFormat) -> QuantScheme {
        QuantScheme {
            format,
            group_size: self.group_size,
            quantizer: self.quantizer,
        }
    }
}

/// What an LSAQ run measured and decided.
#[derive(Clone, Debug, Serialize)]
pub struct LsaqReport {
    /// Both importance scores per layer (absent for a random ranking).
    pub importance: Option<LayerImportance>,
    /// Layers from most to least important under the chosen ranking.
    pub order: Vec<usize>,
    /// Bytes and precision level of every layer.
    pub allocation: Allocation,
    /// Precision of each decoder layer.
    pub formats: Vec<QuantFormat>,
    /// Bytes outside the decoder linears (embeddings, norms, an estimate of the file header).
    pub fixed_bytes: usize,
    /// Decoder-linear parameters after quantization.
    pub linear_params: usize,
    /// Seconds of the importance pass.
    pub importance_s: f64,
    /// Seconds of the quantization pass.
    pub quantize_s: f64,
    /// Wall-clock seconds of the run.
    pub wall_s: f64,
}

/// Progress of an LSAQ run.
#[derive(Clone, Copy, Debug)]
pub enum LsaqProgress {
    /// Importance pass: layers done out of layers.
    Importance {
        /// Layers done.
        done: usize,
        /// Layers.
        total: usize,
    },
    /// Quantization pass: layers done out of layers.
    Quantize {
        /// Layers done.
        done: usize,
        /// Layers.
        total: usize,
    },
}

/// Parse a byte size: `60MB` (10⁶), `60MiB` (2²⁰), `1.5GB`, `500kB`, `123456` (bytes).
pub fn parse_bytes(s: &str) -> Result<usize, EvalError> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" | "k" => 1e3,
        "mb" | "m" => 1e6,
        "gb" | "g" => 1e9,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        u => {
            return Err(EvalError::Input(format!(
                "unknown size unit `{u}` in `{s}` (use B, kB, MB, GB, KiB, MiB, GiB)"
            )))
        }
    };
    let v: f64 = num
        .parse()
        .map_err(|_| EvalError::Input(format!("`{s}` is not a size such as 60MB")))?;
    if !v.is_finite() || v <= 0.0 {
        return Err(EvalError::Input(format!("size `{s}` must be positive")));
    }
    Ok((v * mult).round() as usize)
}

/// Parse a ladder such as `f16,int8,int4` (any order; sorted by precision, duplicates removed).
pub fn parse_ladder(s: &str) -> Result<Vec<QuantFormat>, EvalError> {
    let mut v = s
        .split(',')
        .map(|p| {
            QuantFormat::parse(p.trim()).ok_or_else(|| {
                EvalError::Input(format!(
                    "unknown precision `{p}`; expected f16, int8 or int4"
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    v.sort();
    v.dedup();
    if v.is_empty() {
        return Err(EvalError::Input("empty ladder".into()));
    }
    Ok(v)
}

/// Positions scored in a window of `len` tokens.
fn sampled_positions(len: usize, stride: usize) -> Vec<usize> {
    (stride - 1..len).step_by(stride).collect()
}

fn sample_columns(states: &[Mat<f32>], stride: usize) -> Mat<f32> {
    let cols: Vec<(usize, usize)> = states
        .iter()
        .enumerate()
        .flat_map(|(w, h)| {
            sampled_positions(h.ncols(), stride)
                .into_iter()
                .map(move |t| (w, t))
        })
        .collect();
    let d = states.first().map_or(0, |h| h.nrows());
    Mat::from_fn(d, cols.len(), |i, j| states[cols[j].0][(i, cols[j].1)])
}

/// Importance of every decoder layer (Jaccard and cosine, §6.2) over `windows`, computed as the
/// layers are run: `layer(l)` yields decoder layer `l` (loaded from a checkpoint or taken from
/// memory).
pub fn layer_importance<'a>(
    base: &Model,
    n_layers: usize,
    mut layer: impl FnMut(usize) -> Result<std::borrow::Cow<'a, DecoderLayer>, EvalError>,
    windows: &[Vec<u32>],
    top_k: usize,
    stride: usize,
    mut progress: impl FnMut(usize),
) -> Result<LayerImportance, EvalError> {
    if stride == 0 {
        return Err(EvalError::Input("position stride must be positive".into()));
    }
    let lens = LogitLens {
        norm: &base.norm,
        eps: base.config.rms_norm_eps as f32,
        head: base.head(),
    };
    let mut states: Vec<Mat<f32>> = windows
        .iter()
        .map(|w| base.embed(w))
        .collect::<Result<_, _>>()?;
    let mut h_in = sample_columns(&states, stride);
    if h_in.ncols() == 0 {
        return Err(EvalError::Input(format!(
            "no position sampled: windows shorter than the stride {stride}"
        )));
    }
    let mut sets_in = lens.top_k_sets(h_in.as_ref(), top_k)?;
    let mut acc = ImportanceAccumulator::new(n_layers);
    for l in 0..n_layers {
        let lay = layer(l)?;
        for h in states.iter_mut() {
            lay.forward(&base.config, &base.rope, h, None);
        }
        drop(lay);
        let h_out = sample_columns(&states, stride);
        let sets_out = lens.top_k_sets(h_out.as_ref(), top_k)?;
        acc.add(l, h_in.as_ref(), h_out.as_ref(), &sets_in, &sets_out);
        h_in = h_out;
        sets_in = sets_out;
        progress(l + 1);
    }
    Ok(acc.finish())
}

/// Estimated safetensors header bytes of a tensor besides its name: the JSON skeleton
/// `"":{"data_offsets":[,],"dtype":"","shape":[,]},` (48 bytes) plus the digits of two offsets
/// and two dimensions and the dtype name (measured on SmolLM2: within 0.02% of the file).
fn header_bytes(name: &str) -> usize {
    name.len() + 80
}

/// Bytes of the tensor file outside the decoder layers: embeddings (and an untied head) at 2
/// or 4 bytes per value, the f32 final norm, and the header's fixed part.
pub fn base_fixed_bytes(base: &Model, f16_embeddings: bool) -> usize {
    let cfg = &base.config;
    let per = if f16_embeddings { 2 } else { 4 };
    let mats = 1 + usize::from(base.lm_head.is_some());
    let mut names = vec!["model.embed_tokens.weight", "model.norm.weight"];
    if base.lm_head.is_some() {
        names.push("lm_head.weight");
    }
    mats * per * cfg.vocab_size * cfg.hidden_size
        + 4 * base.norm.len()
        + 8
        + 26 // {"__metadata__":{"format":"pt"},
        + names.iter().map(|n| header_bytes(n)).sum::<usize>()
}

/// Bytes of a decoder layer outside its linears' values (f32 norms and biases) plus the header
/// estimate of every tensor the layer will be stored as.
pub fn layer_fixed_bytes(l: usize, layer: &DecoderLayer) -> usize {
    let p = format!("model.layers.{l}.");
    let mut bytes = 4 * (layer.attn_norm.len() + layer.mlp_norm.len())
        + header_bytes(&format!("{p}input_layernorm.weight"))
        + header_bytes(&format!("{p}post_attention_layernorm.weight"));
    if let Some(b) = &layer.qkv_bias {
        bytes += 4 * b.iter().map(Vec::len).sum::<usize>();
        bytes += 3 * header_bytes(&format!("{p}self_attn.q_proj.bias"));
    }
    for k in LinearKind::ALL {
        bytes += linear_header_bytes(&format!("{p}{}", k.hf_name()), layer.linear(k));
    }
    bytes
}

/// Header estimate of the tensors a linear is stored as once quantized (`qweight` and
/// `scales` per matrix; `qvalues`, `scales` and `mask` for a sparse one; an f16 matrix has no
/// scales, counted anyway: at most ~130 bytes over). A shared linear's basis is not included
/// (it is stored once, see [`basis_header_bytes`]).
fn linear_header_bytes(prefix: &str, lin: &Linear) -> usize {
    match lin {
        Linear::LowRank { first, second } => {
            linear_header_bytes(&format!("{prefix}.first"), first)
                + linear_header_bytes(&format!("{prefix}.second"), second)
        }
        Linear::Shared { coeff, .. } => linear_header_bytes(&format!("{prefix}.coeff"), coeff),
        Linear::Sparse(_) | Linear::QuantizedSparse(_) => {
            header_bytes(&format!("{prefix}.qvalues"))
                + header_bytes(&format!("{prefix}.scales"))
                + header_bytes(&format!("{prefix}.mask"))
        }
        _ => header_bytes(&format!("{prefix}.qweight")) + header_bytes(&format!("{prefix}.scales")),
    }
}

/// Header estimate of a shared basis read by `readers` (in layer order), stored once under the
/// name the writer gives it (`model.shared_bases.layers.{first}-{last}.{kind}`).
fn basis_header_bytes(readers: &[LinearId], basis: &Linear) -> usize {
    let (Some(first), Some(last)) = (readers.first(), readers.last()) else {
        return 0;
    };
    let name = format!(
        "model.shared_bases.layers.{}-{}.{}",
        first.layer,
        last.layer,
        first.kind.short()
    );
    linear_header_bytes(&name, basis)
}

/// Byte cost of each layer at each ladder level: its own linears (a shared linear's
/// coefficient only).
fn layer_costs(layer: &DecoderLayer, opts: &LsaqOptions) -> Result<Vec<usize>, EvalError> {
    opts.ladder
        .iter()
        .map(|&f| {
            let scheme = opts.scheme(f);
            let mut b = 0;
            for k in LinearKind::ALL {
                b += quantized_bytes(layer.linear(k), &scheme)?;
            }
            Ok(b)
        })
        .collect()
}

/// The distinct shared bases of `layers` (by buffer identity): the basis and its readers, in
/// layer order.
fn shared_bases(layers: &[DecoderLayer]) -> Vec<(Arc<Linear>, Vec<LinearId>)> {
    let mut by_key: BTreeMap<usize, (Arc<Linear>, Vec<LinearId>)> = BTreeMap::new();
    for (l, layer) in layers.iter().enumerate() {
        for kind in LinearKind::ALL {
            let mut found = Vec::new();
            collect_shared_bases(layer.linear(kind), &mut found);
            for b in found {
                let e = by_key
                    .entry(basis_key(&b))
                    .or_insert_with(|| (b.clone(), Vec::new()));
                let id = LinearId { layer: l, kind };
                if !e.1.contains(&id) {
                    e.1.push(id);
                }
            }
        }
    }
    by_key.into_values().collect()
}

/// The byte model of `layers` under `opts`: per-layer costs, each shared basis once at the
/// highest level of its readers, and the fixed part (`base_fixed` plus norms, biases and the
/// header estimate).
pub fn cost_model(
    layers: &[DecoderLayer],
    base_fixed: usize,
    opts: &LsaqOptions,
) -> Result<CostModel, EvalError> {
    let mut model = CostModel {
        fixed: base_fixed,
        ..Default::default()
    };
    for (l, layer) in layers.iter().enumerate() {
        model.layers.push(layer_costs(layer, opts)?);
        model.fixed += layer_fixed_bytes(l, layer);
    }
    for (basis, readers) in shared_bases(layers) {
        model.fixed += basis_header_bytes(&readers, &basis);
        let bytes = opts
            .ladder
            .iter()
            .map(|&f| quantized_bytes(&basis, &opts.scheme(f)))
            .collect::<Result<Vec<_>, _>>()?;
        let mut readers: Vec<usize> = readers.iter().map(|id| id.layer).collect();
        readers.dedup();
        model.shared.push(SharedCost { readers, bytes });
    }
    Ok(model)
}

/// Quantize `layers` (loaded from `ckpt` when `None`) to the byte budget of `opts`.
///
/// With `layers` given (composition), importance is measured on them and the quantizer must be
/// RTN. Returns the quantized layers and the report.
pub fn quantize_to_budget(
    ckpt: &Checkpoint,
    layers: Option<Vec<DecoderLayer>>,
    opts: &LsaqOptions,
    mut progress: impl FnMut(LsaqProgress),
) -> Result<(OutputLayers, LsaqReport), EvalError> {
    let t0 = Instant::now();
    if opts.top_k == 0 {
        return Err(EvalError::Input("top-k must be positive".into()));
    }
    if opts.ladder.is_empty() {
        return Err(EvalError::Input("empty ladder".into()));
    }
    if layers.is_some() && opts.quantizer == Quantizer::Gptq {
        return Err(EvalError::Input(
            "GPTQ after another method is not supported yet (its walk reads the checkpoint's \
             layers); use --quantizer rtn for a composition"
                .into(),
        ));
    }
    let base = Model::load_without_layers(ckpt)?;
    let n_layers = ckpt.config.num_layers;
    let measure = opts.importance.needs_importance() && opts.precomputed_importance.is_none();
    let needs_windows = measure || opts.quantizer == Quantizer::Gptq;
    let windows = if needs_windows {
        let text = opts.calibration_text.tokens(ckpt)?;
        calibration_windows(&text, &opts.calibration)?
    } else {
        Vec::new()
    };
    // Importance pass.
    let importance = if !measure {
        opts.precomputed_importance.clone()
    } else {
        let imp = match &layers {
            Some(ls) => layer_importance(
                &base,
                n_layers,
                |l| Ok(std::borrow::Cow::Borrowed(&ls[l])),
                &windows,
                opts.top_k,
                opts.position_stride,
                |d| {
                    progress(LsaqProgress::Importance {
                        done: d,
                        total: n_layers,
                    })
                },
            )?,
            None => layer_importance(
                &base,
                n_layers,
                |l| Ok(std::borrow::Cow::Owned(DecoderLayer::load(ckpt, l)?)),
                &windows,
                opts.top_k,
                opts.position_stride,
                |d| {
                    progress(LsaqProgress::Importance {
                        done: d,
                        total: n_layers,
                    })
                },
            )?,
        };
        Some(imp)
    };
    let importance_s = t0.elapsed().as_secs_f64();
    let order = ranking(opts.importance, n_layers, importance.as_ref(), opts.seed)?;
    // Allocation from exact byte costs (each shared basis once).
    let base_fixed = base_fixed_bytes(&base, opts.f16_embeddings);
    let costs = match &layers {
        Some(ls) => {
            if ls.len() != n_layers {
                return Err(EvalError::Input(format!(
                    "{} layers given for a model of {n_layers}",
                    ls.len()
                )));
            }
            cost_model(ls, base_fixed, opts)?
        }
        None => {
            let mut m = CostModel {
                fixed: base_fixed,
                ..Default::default()
            };
            for l in 0..n_layers {
                let layer = DecoderLayer::load(ckpt, l)?;
                m.layers.push(layer_costs(&layer, opts)?);
                m.fixed += layer_fixed_bytes(l, &layer);
            }
            m
        }
    };
    let fixed = costs.fixed;
    // A budget that cannot be met is bad input (the message names the smallest feasible size).
    let allocation = allocate_model(&costs, opts.budget_bytes, &order)
        .map_err(|e| EvalError::Input(e.to_string()))?;
    let formats: Vec<QuantFormat> = allocation.levels.iter().map(|&v| opts.ladder[v]).collect();
    tracing::info!(?formats, bytes = allocation.bytes, "allocation");
    // Quantization pass. Shared bases first: each once, at the highest level of its readers.
    let t1 = Instant::now();
    let bases = match &layers {
        Some(ls) => QuantizedBases::prepare(ls.iter().enumerate().flat_map(|(l, layer)| {
            let scheme = opts.scheme(formats[l]);
            LinearKind::ALL.map(|k| (layer.linear(k), scheme))
        }))?,
        None => QuantizedBases::default(),
    };
    let quantize_layer = |layer: &mut DecoderLayer,
                          format: QuantFormat,
                          grams: Option<&llm_compress_eval::calibration::InputStatsMap>|
     -> Result<(), EvalError> {
        let scheme = opts.scheme(format);
        let done: Vec<(LinearKind, Linear)> = LinearKind::ALL
            .par_iter()
            .map(|&k| -> Result<_, EvalError> {
                let g = grams
                    .and_then(|m| m.get(&k.input()))
                    .and_then(|s| s.gram.as_ref())
                    .map(|g| g.as_ref());
                Ok((k, quantize_with_bases(layer.linear(k), &scheme, g, &bases)?))
            })
            .collect::<Result<_, _>>()?;
        for (k, q) in done {
            *layer.linear_mut(k) = q;
        }
        Ok(())
    };
    let out_layers = match (layers, opts.quantizer) {
        (Some(mut ls), _) => {
            for (l, layer) in ls.iter_mut().enumerate() {
                quantize_layer(layer, formats[l], None)?;
                progress(LsaqProgress::Quantize {
                    done: l + 1,
                    total: n_layers,
                });
            }
            ls
        }
        (None, Quantizer::Rtn) => {
            let mut ls = Vec::with_capacity(n_layers);
            for (l, &format) in formats.iter().enumerate() {
                let mut layer = DecoderLayer::load(ckpt, l)?;
                quantize_layer(&mut layer, format, None)?;
                ls.push(layer);
                progress(LsaqProgress::Quantize {
                    done: l + 1,
                    total: n_layers,
                });
            }
            ls
        }
        (None, Quantizer::Gptq) => {
            let request = StatsRequest {
                gram: true,
                ..StatsRequest::NONE
            };
            walk_layers(
                ckpt,
                &base,
                &windows,
                request,
                opts.gptq_stats_from,
                |l, layer, calib| {
                    let grams = match opts.gptq_stats_from {
                        StatsFrom::Original => calib.original.as_ref(),
                        _ => calib.compressed.as_ref(),
                    };
                    let grams = grams.ok_or_else(|| {
                        EvalError::Input("walk returned no statistics for GPTQ".into())
                    })?;
                    quantize_layer(layer, formats[l], Some(grams))
                },
                |WalkEvent::LayerDone { layer, layers }| {
                    progress(LsaqProgress::Quantize {
                        done: layer + 1,
                        total: layers,
                    })
                },
            )?
        }
    };
    let linear_params = out_layers.iter().map(DecoderLayer::linear_params).sum();
    let report = LsaqReport {
        importance,
        order,
        allocation,
        formats,
        fixed_bytes: fixed,
        linear_params,
        importance_s,
        quantize_s: t1.elapsed().as_secs_f64(),
        wall_s: t0.elapsed().as_secs_f64(),
    };
    Ok((
        OutputLayers {
            base,
            layers: out_layers,
        },
        report,
    ))
}

/// The manifest's `method` entry of an LSAQ run: options, importance scores, ranking and the
/// precision of every layer.
pub fn method_json(opts: &LsaqOptions, report: &LsaqReport) -> serde_json::Value {
    serde_json::json!({
        "name": "lsaq",
        "budget_bytes": opts.budget_bytes,
        "ladder": opts.ladder.iter().map(|f| f.name()).collect::<Vec<_>>(),
        "group_size": opts.group_size,
        "quantizer": opts.quantizer.name(),
        "importance": opts.importance.name(),
        "top_k": opts.top_k,
        "position_stride": opts.position_stride,
        "seed": opts.seed,
        "f16_embeddings": opts.f16_embeddings,
        "ranking": report.order,
        "scores": report.importance,
        "layer_formats": report.formats.iter().map(|f| f.name()).collect::<Vec<_>>(),
        "predicted_bytes": report.allocation.bytes,
        "min_bytes": report.allocation.min_bytes,
        "max_bytes": report.allocation.max_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_ladders_parse() {
        assert_eq!(parse_bytes("60MB").unwrap(), 60_000_000);
        assert_eq!(parse_bytes("1.5GB").unwrap(), 1_500_000_000);
        assert_eq!(parse_bytes("2MiB").unwrap(), 2 * 1024 * 1024);
        assert_eq!(parse_bytes("123").unwrap(), 123);
        assert!(parse_bytes("12XB").is_err());
        assert!(parse_bytes("MB").is_err());
        assert!(parse_bytes("0MB").is_err());
        assert_eq!(
            parse_ladder("f16,int4,int8").unwrap(),
            vec![QuantFormat::Int4, QuantFormat::Int8, QuantFormat::F16]
        );
        assert!(parse_ladder("int3").is_err());
        assert_eq!(sampled_positions(40, 16), vec![15, 31]);
    }
}
