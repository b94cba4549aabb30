//! Calibration: seeded windows of a text, and the **layer-streamed walk** over the decoder.
//!
//! The walk holds the hidden states of the calibration windows for one layer at a time. For
//! layer `l` it loads the layer, runs it over every window with observers that accumulate the
//! statistics the methods asked for (one [`GramAccumulator`] per distinct linear input: q/k/v
//! share the attention input, gate/up the MLP input), hands the layer and its statistics to the
//! caller's compression step, and produces the inputs of layer `l+1` from the original layer
//! (one-pass statistics, as SVD-LLM's whitening) or from the compressed one (sequential
//! statistics, as DaSS or SVD-LLM's update). With [`StatsFrom::Both`] two streams run side by
//! side: statistics of the original model and of the compressed prefix.
//!
//! Peak memory: one layer, its statistics, and one or two copies of the hidden states
//! (`windows × seq_len × hidden` f32 each), never the whole model.

use crate::model::{DecoderLayer, LayerObserver, Model};
use crate::EvalError;
use faer::{Mat, MatRef};
use llm_compress_core::rng::SplitMix64;
use llm_compress_core::{GramAccumulator, InputStats, LinearInput, StatsRequest};
use llm_compress_tensor_io::Checkpoint;
use serde::Serialize;
use std::collections::BTreeMap;

/// How calibration windows are drawn.
#[derive(Clone, Debug, Serialize)]
pub struct CalibrationConfig {
    /// Number of windows.
    pub windows: usize,
    /// Tokens per window.
    pub seq_len: usize,
    /// Seed of the window offsets.
    pub seed: u64,
}

impl Default for CalibrationConfig {
    fn default() -> Self {
        Self {
            windows: 16,
            seq_len: 2048,
            seed: 3,
        }
    }
}

/// `windows` windows of `seq_len` consecutive tokens, drawn with a seeded generator.
///
/// The text is cut into `windows` equal strata and each window is drawn uniformly inside its
/// own stratum, so windows never overlap and cover the whole text: for the same token budget
/// the Grams see more distinct text than with independent uniform offsets (which overlap
/// often when the text is only a few times longer than the budget). When a stratum is shorter
/// than a window, offsets are drawn uniformly over the whole text instead.
pub fn calibration_windows(
    tokens: &[u32],
    cfg: &CalibrationConfig,
) -> Result<Vec<Vec<u32>>, EvalError> {
    if cfg.seq_len == 0 || cfg.windows == 0 {
        return Err(EvalError::Input(
            "calibration needs at least one window of one token".into(),
        ));
    }
    if tokens.len() < cfg.seq_len {
        return Err(EvalError::Input(format!(
            "calibration text has {} tokens, fewer than one window of {}",
            tokens.len(),
            cfg.seq_len
        )));
    }
    let mut rng = SplitMix64::new(cfg.seed);
    let stratum = tokens.len() / cfg.windows;
    Ok((0..cfg.windows)
        .map(|i| {
            let o = if stratum >= cfg.seq_len {
                i * stratum + rng.below((stratum - cfg.seq_len + 1) as u64) as usize
            } else {
                rng.below((tokens.len() - cfg.seq_len + 1) as u64) as usize
            };
            tokens[o..o + cfg.seq_len].to_vec()
        })
        .collect())
}

/// Which hidden-state streams the statistics come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StatsFrom {
    /// The original model (one pass; compressed layers are never run during the walk).
    Original,
    /// The compressed prefix (sequential: each layer sees the output of the compressed ones).
    Compressed,
    /// Both streams (e.g. whitening from the original model, update from the compressed prefix).
    Both,
}

/// Statistics of one decoder layer's four distinct linear inputs.
pub type InputStatsMap = BTreeMap<LinearInput, InputStats>;

/// What the compression step of layer `l` is given.
pub struct LayerCalibration {
    /// Statistics from the original model's hidden states ([`StatsFrom::Original`] or `Both`).
    pub original: Option<InputStatsMap>,
    /// Statistics from the compressed prefix ([`StatsFrom::Compressed`] or `Both`): the inputs
    /// of this (still dense) layer when it is fed by the already compressed layers.
    pub compressed: Option<InputStatsMap>,
}

/// Progress of the walk.
#[derive(Clone, Copy, Debug)]
pub enum WalkEvent {
    /// Layer `layer` of `layers` has been compressed and propagated.
    LayerDone {
        /// Index of the finished layer (0-based).
        layer: usize,
        /// Number of decoder layers in the walk.
        layers: usize,
    },
}

struct StatsObserver {
    accs: BTreeMap<LinearInput, GramAccumulator>,
}

impl StatsObserver {
    fn new(layer: &DecoderLayer, hidden: usize, request: StatsRequest) -> Self {
        let dims = [
            (LinearInput::Attn, hidden),
            (LinearInput::AttnOut, layer.o.shape().1),
            (LinearInput::Mlp, hidden),
            (LinearInput::MlpHidden, layer.down.shape().1),
        ];
        Self {
            accs: dims
                .into_iter()
                .map(|(k, d)| (k, GramAccumulator::new(d, request)))
                .collect(),
        }
    }
    fn finish(self) -> InputStatsMap {
        self.accs
            .into_iter()
            .map(|(k, a)| (k, a.finish()))
            .collect()
    }
}

impl LayerObserver for StatsObserver {
    fn observe(&mut self, input: LinearInput, x: MatRef<'_, f32>) {
        if let Some(a) = self.accs.get_mut(&input) {
            a.add(x);
        }
    }
}

/// Run `layer` over every window's hidden states in place, collecting statistics if asked.
fn run_layer(
    model: &Model,
    layer: &DecoderLayer,
    states: &mut [Mat<f32>],
    request: Option<StatsRequest>,
) -> Option<InputStatsMap> {
    let mut obs = request.map(|r| StatsObserver::new(layer, model.config.hidden_size, r));
    for h in states.iter_mut() {
        layer.forward(
            &model.config,
            &model.rope,
            h,
            obs.as_mut().map(|o| o as &mut dyn LayerObserver),
        );
    }
    obs.map(StatsObserver::finish)
}

/// Statistics of `layer` over `states`, leaving the states unchanged.
fn observe_only(
    model: &Model,
    layer: &DecoderLayer,
    states: &[Mat<f32>],
    request: StatsRequest,
) -> InputStatsMap {
    let mut obs = StatsObserver::new(layer, model.config.hidden_size, request);
    for h in states {
        let mut tmp = h.clone();
        layer.forward(&model.config, &model.rope, &mut tmp, Some(&mut obs));
    }
    obs.finish()
}

/// The hidden states of the calibration windows between two decoder layers: the inputs of
/// layer `next_layer` in each stream the walk runs. Saving it after every layer
/// ([`WalkState::save`]) is what lets an interrupted walk resume ([`walk_layers_from`]).
#[derive(Clone, Debug, PartialEq)]
pub struct WalkState {
    /// The decoder layer these states are the inputs of.
    pub next_layer: usize,
    /// Hidden states of the original model's stream (`hidden × seq_len` per window), empty when
    /// the walk does not run it.
    pub original: Vec<Mat<f32>>,
    /// Hidden states of the compressed prefix's stream, empty when the walk does not run it.
    pub compressed: Vec<Mat<f32>>,
}

impl WalkState {
    /// The embedded windows: the inputs of layer 0 in the streams `stats_from` needs.
    pub fn start(
        base: &Model,
        windows: &[Vec<u32>],
        stats_from: StatsFrom,
    ) -> Result<Self, EvalError> {
        let embed = |w: &Vec<u32>| base.embed(w);
        let streams = |on: bool| -> Result<Vec<Mat<f32>>, EvalError> {
            if on {
                windows.iter().map(embed).collect()
            } else {
                Ok(Vec::new())
            }
        };
        Ok(Self {
            next_layer: 0,
            original: streams(matches!(stats_from, StatsFrom::Original | StatsFrom::Both))?,
            compressed: streams(matches!(
                stats_from,
                StatsFrom::Compressed | StatsFrom::Both
            ))?,
        })
    }

    /// Write the states to `path` (f32 safetensors, atomically: a crash leaves the previous
    /// file or none). The layer index goes in the metadata.
    pub fn save(&self, path: &std::path::Path) -> Result<(), EvalError> {
        use llm_compress_tensor_io::compact::TensorSource;
        let mut tensors = BTreeMap::new();
        for (stream, states) in [
            ("original", &self.original),
            ("compressed", &self.compressed),
        ] {
            for (i, h) in states.iter().enumerate() {
                tensors.insert(format!("{stream}.{i:05}"), TensorSource::Matrix(h.as_ref()));
            }
        }
        let headers: Vec<llm_compress_tensor_io::safetensors::TensorHeader> = tensors
            .iter()
            .map(
                |(name, t)| llm_compress_tensor_io::safetensors::TensorHeader {
                    name: name.clone(),
                    dtype: t.dtype(),
                    shape: t.shape(),
                },
            )
            .collect();
        let sources: Vec<&TensorSource> = tensors.values().collect();
        let mut meta = BTreeMap::new();
        meta.insert("next_layer".to_string(), self.next_layer.to_string());
        llm_compress_tensor_io::safetensors::write_safetensors_with(
            path,
            &headers,
            &meta,
            |i, w| sources[i].write_to(w),
        )?;
        Ok(())
    }

    /// Read states written by [`WalkState::save`], checking that every window is
    /// `hidden × seq_len`.
    pub fn load(path: &std::path::Path, hidden: usize, seq_len: usize) -> Result<Self, EvalError> {
        let f = llm_compress_tensor_io::safetensors::SafetensorsFile::open(path)?;
        let next_layer = f
            .metadata()
            .get("next_layer")
            .and_then(|v| v.parse::<usize>().ok())
            .ok_or_else(|| {
                EvalError::Input(format!(
                    "{}: no `next_layer` in the metadata of a walk state",
                    path.display()
                ))
            })?;
        let mut state = Self {
            next_layer,
            original: Vec::new(),
            compressed: Vec::new(),
        };
        for name in f.tensors().keys() {
            let (shape, data) = f.tensor_f32(name)?;
            if shape != [hidden, seq_len] {
                return Err(EvalError::Input(format!(
                    "{}: state {name} has shape {shape:?}, expected [{hidden}, {seq_len}]",
                    path.display()
                )));
            }
            let h = crate::model::mat_from_row_major(hidden, seq_len, &data);
            match name.split_once('.') {
                Some(("original", _)) => state.original.push(h),
                Some(("compressed", _)) => state.compressed.push(h),
                _ => {
                    return Err(EvalError::Input(format!(
                        "{}: unexpected tensor {name} in a walk state",
                        path.display()
                    )))
                }
            }
        }
        Ok(state)
    }
}

/// Walk the decoder of `ckpt` one layer at a time over `windows`.
///
/// `base` holds the embedding and RoPE table (see [`Model::load_without_layers`]).
/// `compress(l, layer, calib)` turns the dense layer `l` into its compressed form in place.
/// Returns the compressed layers, in order.
pub fn walk_layers(
    ckpt: &Checkpoint,
    base: &Model,
    windows: &[Vec<u32>],
    request: StatsRequest,
    stats_from: StatsFrom,
    mut compress: impl FnMut(usize, &mut DecoderLayer, &LayerCalibration) -> Result<(), EvalError>,
    mut progress: impl FnMut(WalkEvent),
) -> Result<Vec<DecoderLayer>, EvalError> {
    let mut state = WalkState::start(base, windows, stats_from)?;
    let mut out = Vec::with_capacity(ckpt.config.num_layers);
    walk_layers_from(
        ckpt,
        base,
        &mut state,
        request,
        stats_from,
        |l, layer, calib| compress(l, layer, &calib),
        |l, layer, _| {
            out.push(layer);
            progress(WalkEvent::LayerDone {
                layer: l,
                layers: ckpt.config.num_layers,
            });
            Ok(std::ops::ControlFlow::Continue(()))
        },
    )?;
    Ok(out)
}

/// The walk of [`walk_layers`] from `state` (the inputs of layer `state.next_layer`) to the
/// last layer, handing each compressed layer to `finished(l, layer, state)` instead of keeping
/// it: `state` then holds the inputs of layer `l + 1`, so the caller can write the layer and
/// save the state, and a later call resumes from there; `finished` returning
/// `ControlFlow::Break(())` ends the walk there. Memory: one layer, its statistics and the
/// states, whatever the depth.
pub fn walk_layers_from(
    ckpt: &Checkpoint,
    base: &Model,
    state: &mut WalkState,
    request: StatsRequest,
    stats_from: StatsFrom,
    mut compress: impl FnMut(usize, &mut DecoderLayer, LayerCalibration) -> Result<(), EvalError>,
    mut finished: impl FnMut(
        usize,
        DecoderLayer,
        &WalkState,
    ) -> Result<std::ops::ControlFlow<()>, EvalError>,
) -> Result<(), EvalError> {
    let n_layers = ckpt.config.num_layers;
    let use_orig = matches!(stats_from, StatsFrom::Original | StatsFrom::Both);
    let use_comp = matches!(stats_from, StatsFrom::Compressed | StatsFrom::Both);
    if use_orig == state.original.is_empty() || use_comp == state.compressed.is_empty() {
        return Err(EvalError::Input(format!(
            "walk state holds the streams ({} original, {} compressed windows) of another \
             statistics mode than {stats_from:?}",
            state.original.len(),
            state.compressed.len()
        )));
    }
    tracing::debug!(
        rss_mib = crate::sys::rss_bytes().unwrap_or(0) >> 20,
        peak_mib = crate::sys::peak_rss_bytes().unwrap_or(0) >> 20,
        "calibration states ready"
    );
    for l in state.next_layer..n_layers {
        let mut layer = DecoderLayer::load(ckpt, l)?;
        let last = l + 1 == n_layers;
        // Statistics of the compressed prefix: the dense layer on the compressed stream. The
        // states are kept: the compressed layer must run on these same inputs afterwards.
        let comp_stats = use_comp.then(|| observe_only(base, &layer, &state.compressed, request));
        // Original stream: statistics and the next layer's inputs in one pass.
        let orig_stats = if use_orig {
            if last {
                // The outputs are not needed.
                Some(observe_only(base, &layer, &state.original, request))
            } else {
                run_layer(base, &layer, &mut state.original, Some(request))
            }
        } else {
            None
        };
        let calib = LayerCalibration {
            original: orig_stats,
            compressed: comp_stats,
        };
        compress(l, &mut layer, calib)?;
        if use_comp && !last {
            run_layer(base, &layer, &mut state.compressed, None);
        }
        state.next_layer = l + 1;
        if finished(l, layer, state)?.is_break() {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_seeded_and_in_range() {
        let tokens: Vec<u32> = (0..1000).collect();
        let cfg = CalibrationConfig {
            windows: 5,
            seq_len: 100,
            seed: 7,
        };
        let a = calibration_windows(&tokens, &cfg).unwrap();
        let b = calibration_windows(&tokens, &cfg).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), 5);
        for w in &a {
            assert_eq!(w.len(), 100);
            assert_eq!(w[99] - w[0], 99, "windows are consecutive tokens");
        }
        let c = calibration_windows(
            &tokens,
            &CalibrationConfig {
                seed: 8,
                ..cfg.clone()
            },
        )
        .unwrap();
        assert_ne!(a, c);
        assert!(calibration_windows(&tokens[..50], &cfg).is_err());
    }
}
