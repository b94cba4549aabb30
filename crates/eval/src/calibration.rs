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
    let n_layers = ckpt.config.num_layers;
    let embed = |w: &Vec<u32>| base.embed(w);
    let use_orig = matches!(stats_from, StatsFrom::Original | StatsFrom::Both);
    let use_comp = matches!(stats_from, StatsFrom::Compressed | StatsFrom::Both);
    let mut orig: Vec<Mat<f32>> = if use_orig {
        windows.iter().map(embed).collect::<Result<_, _>>()?
    } else {
        Vec::new()
    };
    let mut comp: Vec<Mat<f32>> = if use_comp {
        windows.iter().map(embed).collect::<Result<_, _>>()?
    } else {
        Vec::new()
    };
    tracing::debug!(
        rss_mib = crate::sys::rss_bytes().unwrap_or(0) >> 20,
        peak_mib = crate::sys::peak_rss_bytes().unwrap_or(0) >> 20,
        "calibration states ready"
    );
    let mut out = Vec::with_capacity(n_layers);
    for l in 0..n_layers {
        let mut layer = DecoderLayer::load(ckpt, l)?;
        let last = l + 1 == n_layers;
        // Statistics of the compressed prefix: the dense layer on the compressed stream. The
        // states are kept: the compressed layer must run on these same inputs afterwards.
        let comp_stats = use_comp.then(|| observe_only(base, &layer, &comp, request));
        // Original stream: statistics and the next layer's inputs in one pass.
        let orig_stats = if use_orig {
            if last {
                // The outputs are not needed.
                Some(observe_only(base, &layer, &orig, request))
            } else {
                run_layer(base, &layer, &mut orig, Some(request))
            }
        } else {
            None
        };
        let calib = LayerCalibration {
            original: orig_stats,
            compressed: comp_stats,
        };
        compress(l, &mut layer, &calib)?;
        drop(calib);
        if use_comp && !last {
            run_layer(base, &layer, &mut comp, None);
        }
        out.push(layer);
        progress(WalkEvent::LayerDone {
            layer: l,
            layers: n_layers,
        });
    }
    Ok(out)
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
