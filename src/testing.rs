//! Fixtures for tests, benches and the fuzz targets: a tiny random Llama compressed end to end.
//! Not part of the stable API.

use crate::export::write_compact;
use crate::lowrank::{compress_low_rank, CalibrationText, LowRankMethod, LowRankOptions};
use llm_compress_eval::testing::{random_weights, write_tiny_safetensors, V};
use llm_compress_eval::{CalibrationConfig, EvalError};
use llm_compress_tensor_io::Checkpoint;
use std::path::Path;

/// Write the tiny random Llama of [`llm_compress_eval::testing`] (weights from `seed`) into
/// `src`, compress it with SVD-LLM at ratio 0.2 on synthetic tokens, and write the compact
/// folder `dir`.
pub fn write_tiny_compact(src: &Path, dir: &Path, seed: u64) -> Result<(), EvalError> {
    let io = |e: std::io::Error| EvalError::Data {
        path: src.into(),
        source: e,
    };
    std::fs::create_dir_all(src).map_err(io)?;
    write_tiny_safetensors(src, &random_weights(seed, true), true).map_err(io)?;
    let ckpt = Checkpoint::open(src)?;
    let mut opts = LowRankOptions::new(LowRankMethod::SvdLlm, 0.2);
    opts.calibration = CalibrationConfig {
        windows: 2,
        seq_len: 16,
        seed: 1,
    };
    opts.calibration_text = CalibrationText::Tokens((0..200).map(|i| (i * 7 % V) as u32).collect());
    let before = ckpt.config.linear_params();
    let (out, _) = compress_low_rank(&ckpt, &opts, |_| {})?;
    write_compact(
        &ckpt,
        &out,
        dir,
        serde_json::json!({"name": "svd-llm", "ratio": 0.2}),
        serde_json::Value::Null,
        before,
    )
}
