//! Low-rank compression of a model that does not fit in memory: the calibration walk of
//! [`crate::lowrank`], writing each compressed layer to its own file as soon as it is done and
//! saving the walk's state after every layer so that an interrupted run resumes where it
//! stopped.
//!
//! Memory is bounded by one decoder layer (read from the mmapped checkpoint, its pages released
//! once converted), its statistics and factorisations, and the calibration hidden states — never
//! the model: a LLaMA-7B-shaped checkpoint compresses in a few GiB (docs/scale.md).
//!
//! The output folder is a compact folder (format version 3, [`Manifest::tensor_files`]):
//! - `model-base.safetensors`: embedding, final norm, head;
//! - `model-layer-00000.safetensors`, ...: one file per decoder layer (norms and the factors);
//! - `manifest.json`, written last, with the SHA-256 over every tensor file.
//!
//! While the run is going the folder also holds `progress.json` (the options, the finished
//! layers' representations, the next layer) and `walk-state-NNNNN.safetensors` (the f32 hidden
//! states of the calibration windows entering layer `NNNNN`). Each file is written atomically
//! and `progress.json` names the state it goes with, so whatever instant the run is killed at,
//! the folder describes a consistent prefix: `resume` continues from its last finished layer.
//! Both are removed when the manifest is written.
//!
//! ```no_run
//! use llm_compress::lowrank::{LowRankMethod, LowRankOptions};
//! use llm_compress::streaming::{compress_low_rank_streaming, StreamingOptions};
//! use llm_compress::tensor_io::Checkpoint;
//! let ckpt = Checkpoint::open("llama-7b-shaped".as_ref())?;
//! let opts = LowRankOptions::new(LowRankMethod::SvdLlm, 0.2);
//! let stream = StreamingOptions { resume: true, ..Default::default() };
//! let outcome = compress_low_rank_streaming(&ckpt, &opts, "out".as_ref(), &stream, |_| {
//!     std::ops::ControlFlow::Continue(())
//! })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::export::{base_tensors, layer_norm_tensors};
use crate::lowrank::{
    factorize_layer, low_rank_request, release_whitening_grams, whitening_factors, LowRankOptions,
    LowRankReport,
};
use llm_compress_core::{LinearId, LinearKind, Mat};
use llm_compress_eval::{
    calibration_windows, walk_layers_from, EvalError, LayerCalibration, Model, WalkState,
};
use llm_compress_tensor_io::compact::{
    self, linear_to_tensors, write_json_atomic, write_tensor_sources, BaseModel, LinearRepr,
    Manifest,
};
use llm_compress_tensor_io::{Checkpoint, IoError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The progress file of a streamed run.
pub const PROGRESS: &str = "progress.json";
/// The tensor file of the embedding, final norm and head.
pub const BASE_TENSORS: &str = "model-base.safetensors";

/// The tensor file of decoder layer `l`.
pub fn layer_file_name(l: usize) -> String {
    format!("model-layer-{l:05}.safetensors")
}

fn state_file_name(next_layer: usize) -> String {
    format!("walk-state-{next_layer:05}.safetensors")
}

/// Options of a streamed run, beyond the method's.
#[derive(Clone, Debug, Default)]
pub struct StreamingOptions {
    /// Continue the run recorded in the folder (`progress.json`) instead of starting over.
    /// Refused if that run used other options or another model.
    pub resume: bool,
    /// The manifest's method record (default: method, ratio, update, whitening stream).
    pub method_json: Option<serde_json::Value>,
    /// The manifest's calibration record (default: the calibration options).
    pub calibration_json: Option<serde_json::Value>,
}

/// Progress of a streamed run.
#[derive(Clone, Copy, Debug)]
pub struct StreamProgress {
    /// Layers finished (written), counting those of the run being resumed.
    pub done: usize,
    /// Decoder layers in the model.
    pub total: usize,
    /// The layer just finished took this long (walk and factorisation).
    pub layer_s: f64,
    /// Estimated seconds to the end: the mean time per layer of this process times the layers
    /// left.
    pub eta_s: f64,
}

/// How a streamed run ended.
#[derive(Debug)]
pub enum StreamOutcome {
    /// Every layer is written and the manifest is in place.
    Finished(LowRankReport),
    /// The progress callback asked to stop; the folder resumes from `next_layer`.
    Stopped {
        /// The first layer not yet written.
        next_layer: usize,
    },
}

/// What `progress.json` records.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct RunRecord {
    /// Options and model this run belongs to (compared on resume).
    fingerprint: serde_json::Value,
    /// The first layer not yet written.
    next_layer: usize,
    /// The walk state entering `next_layer` (none before layer 0 has finished).
    state_file: Option<String>,
    linears: BTreeMap<String, LinearRepr>,
    ranks: Vec<(String, usize)>,
    linear_params_before: usize,
    linear_params_after: usize,
    walk_s: f64,
    factorize_s: f64,
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> EvalError + '_ {
    move |source| {
        EvalError::Io(IoError::Io {
            path: path.into(),
            source,
        })
    }
}

/// Compress `ckpt` with the low-rank method of `opts`, writing the compact folder `out` layer
/// by layer (see the module documentation). `progress` is called after every layer; returning
/// `ControlFlow::Break(())` stops the run cleanly after that layer (what an interrupt does, minus
/// the lost layer), leaving a folder that `resume` continues.
pub fn compress_low_rank_streaming(
    ckpt: &Checkpoint,
    opts: &LowRankOptions,
    out: &Path,
    stream: &StreamingOptions,
    mut progress: impl FnMut(StreamProgress) -> ControlFlow<()>,
) -> Result<StreamOutcome, EvalError> {
    let t0 = Instant::now();
    llm_compress_core::budget::check_ratio(opts.ratio)?;
    let method_json = stream.method_json.clone().unwrap_or_else(|| {
        crate::lowrank::with_factor_dtype(
            serde_json::json!({
                "name": opts.method.name(), "ratio": opts.ratio, "update": opts.update,
                "whiten_from": opts.whiten_from, "svd_solver": opts.svd_solver,
            }),
            opts.factor_dtype,
        )
    });
    let calibration_json = stream
        .calibration_json
        .clone()
        .unwrap_or_else(|| serde_json::json!(opts.calibration));
    let fingerprint = fingerprint(ckpt, opts, &method_json, &calibration_json)?;
    std::fs::create_dir_all(out).map_err(io_err(out))?;
    let n_layers = ckpt.config.num_layers;
    let mut base = Model::load_without_layers(ckpt)?;

    let resumed = if stream.resume {
        read_record(out)?
    } else {
        None
    };
    let (mut record, mut state) = match resumed {
        Some(r) => {
            if r.fingerprint != fingerprint {
                return Err(EvalError::Input(format!(
                    "{} holds a run of other options or another model ({}); remove the folder \
                     or run without resume",
                    out.display(),
                    out.join(PROGRESS).display()
                )));
            }
            let state = match &r.state_file {
                Some(f) => Some(WalkState::load(
                    &out.join(f),
                    ckpt.config.hidden_size,
                    opts.calibration.seq_len,
                )?),
                None => None,
            };
            if let Some(s) = &state {
                if s.next_layer != r.next_layer {
                    return Err(EvalError::Input(format!(
                        "{}: the saved walk state enters layer {}, the progress file says {}",
                        out.display(),
                        s.next_layer,
                        r.next_layer
                    )));
                }
            }
            tracing::info!(next_layer = r.next_layer, "resuming a streamed run");
            (r, state)
        }
        None => {
            clear_outputs(out)?;
            (
                RunRecord {
                    fingerprint: fingerprint.clone(),
                    next_layer: 0,
                    state_file: None,
                    linears: BTreeMap::new(),
                    ranks: Vec::new(),
                    linear_params_before: 0,
                    linear_params_after: 0,
                    walk_s: 0.0,
                    factorize_s: 0.0,
                },
                None,
            )
        }
    };
    if !out.join(BASE_TENSORS).exists() {
        write_tensor_sources(&out.join(BASE_TENSORS), &base_tensors(&base))?;
    }
    write_record(out, &record)?;

    if record.next_layer < n_layers {
        let (request, stats_from) = low_rank_request(opts);
        let mut state = match state.take() {
            Some(s) => s,
            None => {
                let tokens = opts.calibration_text.tokens(ckpt)?;
                let windows = calibration_windows(&tokens, &opts.calibration)?;
                WalkState::start(&base, &windows, stats_from)?
            }
        };
        // The walk needs only the configuration and RoPE table of `base`: free the embedding
        // and head (2 × vocab × hidden f32, 1 GiB for a 7B model), already written.
        base.embed = Mat::zeros(0, 0);
        base.lm_head = None;
        let compressor = opts
            .method
            .compressor_with_solver(opts.ratio, opts.svd_solver);
        let started = Instant::now();
        let first = record.next_layer;
        let mut layer_t = Instant::now();
        let factorize_s = std::cell::Cell::new(0.0);
        walk_layers_from(
            ckpt,
            &base,
            &mut state,
            request,
            stats_from,
            |l, layer, mut calib: LayerCalibration| {
                let t = Instant::now();
                let chol = whitening_factors(opts, l, &calib)?;
                release_whitening_grams(opts, &mut calib, &chol);
                let new =
                    factorize_layer(opts, compressor.as_ref(), l, layer, &calib, &chol, false)?;
                drop((calib, chol));
                for (kind, lin) in new {
                    *layer.linear_mut(kind) = lin;
                }
                factorize_s.set(t.elapsed().as_secs_f64());
                Ok(())
            },
            |l, layer, state| {
                // 1. The layer's file.
                let mut tensors = BTreeMap::new();
                layer_norm_tensors(l, &layer, &mut tensors);
                for kind in LinearKind::ALL {
                    let id = LinearId { layer: l, kind };
                    let lin = layer.linear(kind);
                    if lin.shared_basis().is_some() {
                        return Err(EvalError::Input(format!(
                            "{id}: a shared basis cannot be written layer by layer"
                        )));
                    }
                    let prefix = format!("model.layers.{l}.{}", kind.hf_name());
                    let repr = linear_to_tensors(&prefix, lin, &mut tensors);
                    record.linears.insert(id.to_string(), repr);
                    let (m, n) = ckpt.config.linear_shape(kind);
                    record.linear_params_before += m * n;
                    record.linear_params_after += lin.param_count();
                    if let Some(k) = lin.rank() {
                        record.ranks.push((id.to_string(), k));
                    }
                }
                write_tensor_sources(&out.join(layer_file_name(l)), &tensors)?;
                drop(tensors);
                drop(layer);
                // 2. The state entering the next layer, then 3. the record naming it, then
                // the previous state goes.
                let old_state = record.state_file.take();
                if state.next_layer < n_layers {
                    let name = state_file_name(state.next_layer);
                    state.save(&out.join(&name))?;
                    record.state_file = Some(name);
                }
                record.next_layer = state.next_layer;
                let layer_s = layer_t.elapsed().as_secs_f64();
                record.factorize_s += factorize_s.get();
                record.walk_s += layer_s - factorize_s.get();
                write_record(out, &record)?;
                if let Some(f) = old_state {
                    if Some(&f) != record.state_file.as_ref() {
                        let p = out.join(f);
                        std::fs::remove_file(&p).map_err(io_err(&p))?;
                    }
                }
                let done_here = l + 1 - first;
                let per_layer = started.elapsed().as_secs_f64() / done_here as f64;
                let p = StreamProgress {
                    done: l + 1,
                    total: n_layers,
                    layer_s,
                    eta_s: per_layer * (n_layers - l - 1) as f64,
                };
                tracing::info!(
                    layer = l,
                    layers = n_layers,
                    layer_s = format!("{:.1}", p.layer_s),
                    eta_s = format!("{:.0}", p.eta_s),
                    rss_mib = llm_compress_eval::sys::rss_bytes().unwrap_or(0) >> 20,
                    peak_mib = llm_compress_eval::sys::peak_rss_bytes().unwrap_or(0) >> 20,
                    "layer written"
                );
                layer_t = Instant::now();
                Ok(progress(p))
            },
        )?;
        if record.next_layer < n_layers {
            return Ok(StreamOutcome::Stopped {
                next_layer: record.next_layer,
            });
        }
    }
    finish(ckpt, out, &record, method_json, calibration_json, t0)
}

/// Write the manifest (last), `config.json`, `tokenizer.json`, and drop the run's bookkeeping.
fn finish(
    ckpt: &Checkpoint,
    out: &Path,
    record: &RunRecord,
    method: serde_json::Value,
    calibration: serde_json::Value,
    t0: Instant,
) -> Result<StreamOutcome, EvalError> {
    let n_layers = ckpt.config.num_layers;
    let mut files = vec![BASE_TENSORS.to_string()];
    files.extend((0..n_layers).map(layer_file_name));
    let paths: Vec<PathBuf> = files.iter().map(|f| out.join(f)).collect();
    let manifest = Manifest {
        format_version: compact::required_version(record.linears.values())
            .max(compact::SHARDED_VERSION),
        producer: format!("llm-compress {}", env!("CARGO_PKG_VERSION")),
        base_model: BaseModel {
            path: ckpt.path.display().to_string(),
            format: ckpt.format().into(),
            sha256: ckpt.sha256()?,
        },
        method,
        calibration,
        linears: record.linears.clone(),
        linear_params_before: record.linear_params_before,
        linear_params_after: record.linear_params_after,
        tensors_sha256: compact::files_sha256(&paths)?,
        tensor_files: files,
    };
    write_json_atomic(&out.join("config.json"), &ckpt.config.to_hf_json())?;
    if let Some(t) = &ckpt.tokenizer {
        write_json_atomic(&out.join("tokenizer.json"), &t.to_hf_json())?;
    }
    let mpath = out.join(compact::MANIFEST);
    let m = serde_json::to_value(&manifest).map_err(|source| IoError::Json {
        path: mpath.clone(),
        source,
    })?;
    write_json_atomic(&mpath, &m)?;
    let p = out.join(PROGRESS);
    std::fs::remove_file(&p).map_err(io_err(&p))?;
    if let Some(f) = &record.state_file {
        let p = out.join(f);
        if p.exists() {
            std::fs::remove_file(&p).map_err(io_err(&p))?;
        }
    }
    let wall_s = t0.elapsed().as_secs_f64();
    Ok(StreamOutcome::Finished(LowRankReport {
        linear_params_before: record.linear_params_before,
        linear_params_after: record.linear_params_after,
        prepare_s: (wall_s - record.walk_s - record.factorize_s).max(0.0),
        walk_s: record.walk_s,
        factorize_s: record.factorize_s,
        wall_s,
        ranks: record.ranks.clone(),
    }))
}

/// What must match for a folder's run to be resumed: the options, the calibration, and the
/// model (path, configuration and the size of each tensor file; hashing a 13 GB checkpoint at
/// every start would cost a minute).
fn fingerprint(
    ckpt: &Checkpoint,
    opts: &LowRankOptions,
    method: &serde_json::Value,
    calibration: &serde_json::Value,
) -> Result<serde_json::Value, EvalError> {
    let files = ckpt
        .files()
        .iter()
        .map(|p| {
            let len = std::fs::metadata(p).map_err(io_err(p))?.len();
            Ok(serde_json::json!([p.display().to_string(), len]))
        })
        .collect::<Result<Vec<_>, EvalError>>()?;
    Ok(serde_json::json!({
        "options": opts, "method": method, "calibration": calibration,
        "model": {"path": ckpt.path.display().to_string(), "config": ckpt.config.to_hf_json(),
                  "files": files},
    }))
}

fn read_record(out: &Path) -> Result<Option<RunRecord>, EvalError> {
    let p = out.join(PROGRESS);
    if !p.exists() {
        if out.join(compact::MANIFEST).exists() {
            return Err(EvalError::Input(format!(
                "{} is a finished output (manifest.json, no {PROGRESS}): nothing to resume",
                out.display()
            )));
        }
        return Ok(None);
    }
    let text = std::fs::read_to_string(&p).map_err(io_err(&p))?;
    let r: RunRecord = serde_json::from_str(&text)
        .map_err(|source| EvalError::Io(IoError::Json { path: p, source }))?;
    Ok(Some(r))
}

fn write_record(out: &Path, r: &RunRecord) -> Result<(), EvalError> {
    let p = out.join(PROGRESS);
    let v = serde_json::to_value(r).map_err(|source| IoError::Json {
        path: p.clone(),
        source,
    })?;
    Ok(write_json_atomic(&p, &v)?)
}

/// Remove what a previous run left in `out` (its manifest first, so the folder never passes
/// for a finished output while it is rewritten).
fn clear_outputs(out: &Path) -> Result<(), EvalError> {
    let m = out.join(compact::MANIFEST);
    if m.exists() {
        std::fs::remove_file(&m).map_err(io_err(&m))?;
    }
    for e in std::fs::read_dir(out).map_err(io_err(out))? {
        let p = e.map_err(io_err(out))?.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let ours = name == PROGRESS
            || name == BASE_TENSORS
            || (name.starts_with("model-layer-") || name.starts_with("walk-state-"))
                && name.ends_with(".safetensors");
        if ours {
            std::fs::remove_file(&p).map_err(io_err(&p))?;
        }
    }
    Ok(())
}
