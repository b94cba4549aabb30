//! Diagnostic of docs/lsaq.md (GPTQ vs RTN): the relative output error
//! `‖(W − Q) X‖² / ‖W X‖² = tr(E G Eᵀ) / tr(W G Wᵀ)` of every decoder linear quantized to int4
//! (group 128 and per channel) by RTN and by GPTQ, GPTQ fitted on the Grams of `CALIB_WINDOWS`
//! WikiText-2 train windows (seed 3, original model), measured on those Grams ("in sample")
//! and on the Grams of as many other windows (seed 1234, "held out"), the first `SKIP` tokens
//! of each held-out window left out (env `SKIP`, default 0: `SKIP=4` drops the attention-sink
//! tokens). Env `DAMP` sets GPTQ's relative dampening (default 0.01).
//!
//! ```text
//! cargo bench --bench gptq_diag -- MODEL [CALIB_WINDOWS] [SEQ_LEN] [LAYERS]
//! ```

use llm_compress_core::{LinearInput, LinearKind, Mat, MatRef, QuantFormat, StatsRequest};
use llm_compress_eval::{
    calibration_windows, walk_layers, CalibrationConfig, DecoderLayer, LayerObserver, Model,
    StatsFrom, TextSource,
};
use llm_compress_layer_quant::{quantize_gptq, quantize_rtn, GptqOptions};
use llm_compress_tensor_io::Checkpoint;

fn out_err(e: &Mat<f32>, g: MatRef<'_, f64>) -> f64 {
    let ed = Mat::<f64>::from_fn(e.nrows(), e.ncols(), |i, j| e[(i, j)] as f64);
    let eg = &ed * g;
    let mut s = 0.0;
    for i in 0..ed.nrows() {
        for j in 0..ed.ncols() {
            s += eg[(i, j)] * ed[(i, j)];
        }
    }
    s
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let model = args
        .get(1)
        .ok_or("usage: gptq_diag MODEL [CALIB_WINDOWS] [SEQ_LEN] [LAYERS]")?;
    let ckpt = Checkpoint::open(model.as_ref())?;
    let windows_n: usize = args.get(2).map_or(Ok(2), |s| s.parse())?;
    let seq_len: usize = args.get(3).map_or(Ok(2048), |s| s.parse())?;
    let max_layers: usize = args.get(4).map_or(Ok(usize::MAX), |s| s.parse())?;
    let base = Model::load_without_layers(&ckpt)?;
    let text = TextSource::WikiText2Train.tokens(ckpt.require_tokenizer()?)?;
    let windows = calibration_windows(
        &text,
        &CalibrationConfig {
            windows: windows_n,
            seq_len,
            seed: 3,
        },
    )?;
    let request = StatsRequest {
        gram: true,
        ..StatsRequest::NONE
    };
    let damp: f64 = std::env::var("DAMP")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.01);
    let mut tot = [0.0f64; 4];
    let mut held_tot = [0.0f64; 4];
    // Held-out Grams (other windows) of the first layers.
    let held_windows = calibration_windows(
        &text,
        &CalibrationConfig {
            windows: windows_n,
            seq_len,
            seed: 1234,
        },
    )?;
    // Held-out Grams, skipping the first SKIP tokens of each window (the attention sink).
    let skip: usize = std::env::var("SKIP")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    struct Obs(std::collections::BTreeMap<LinearInput, Mat<f64>>, usize);
    impl LayerObserver for Obs {
        fn observe(&mut self, input: LinearInput, x: MatRef<'_, f32>) {
            let t = x.ncols();
            let xs = Mat::<f64>::from_fn(x.nrows(), t.saturating_sub(self.1), |i, j| {
                x[(i, j + self.1)] as f64
            });
            let g = &xs * xs.transpose();
            let e = self
                .0
                .entry(input)
                .or_insert_with(|| Mat::zeros(x.nrows(), x.nrows()));
            *e += &g;
        }
    }
    let mut held: Vec<std::collections::BTreeMap<LinearInput, Mat<f64>>> = Vec::new();
    let mut states: Vec<Mat<f32>> = held_windows
        .iter()
        .map(|w| base.embed(w))
        .collect::<Result<_, _>>()?;
    for l in 0..ckpt.config.num_layers.min(max_layers) {
        let layer = DecoderLayer::load(&ckpt, l)?;
        let mut obs = Obs(Default::default(), skip);
        for h in states.iter_mut() {
            layer.forward(&base.config, &base.rope, h, Some(&mut obs));
        }
        held.push(obs.0);
    }
    let _ = walk_layers(
        &ckpt,
        &base,
        &windows,
        request,
        StatsFrom::Original,
        |l, layer, calib| {
            if l >= max_layers {
                return Ok(());
            }
            let stats = calib
                .original
                .as_ref()
                .ok_or_else(|| llm_compress_eval::EvalError::Input("no statistics".into()))?;
            for k in LinearKind::ALL {
                let g = stats[&k.input()]
                    .gram
                    .as_ref()
                    .ok_or_else(|| llm_compress_eval::EvalError::Input("no Gram".into()))?;
                let w = layer.linear(k).to_dense();
                let base_e = out_err(&w, g.as_ref());
                let mut row = vec![];
                for (i, group) in [Some(128), None].into_iter().enumerate() {
                    let r = quantize_rtn(w.as_ref(), QuantFormat::Int4, group)?.to_dense();
                    let q = quantize_gptq(
                        w.as_ref(),
                        g.as_ref(),
                        QuantFormat::Int4,
                        group,
                        &GptqOptions { damp },
                    )?
                    .to_dense();
                    let er = out_err(&(&w - &r), g.as_ref()) / base_e;
                    let eq = out_err(&(&w - &q), g.as_ref()) / base_e;
                    tot[2 * i] += er;
                    tot[2 * i + 1] += eq;
                    let hg = &held[l][&k.input()];
                    let hb = out_err(&w, hg.as_ref());
                    let (hr, hq) = (
                        out_err(&(&w - &r), hg.as_ref()) / hb,
                        out_err(&(&w - &q), hg.as_ref()) / hb,
                    );
                    held_tot[2 * i] += hr;
                    held_tot[2 * i + 1] += hq;
                    row.push(format!("held {hr:.3e}/{hq:.3e}"));
                    row.push(format!("{er:.3e}/{eq:.3e}"));
                }
                println!(
                    "layer {l:>2} {:>5}: g128 rtn/gptq {} {}  per-channel rtn/gptq {} {}",
                    k.short(),
                    row[0],
                    row[1],
                    row[2],
                    row[3]
                );
            }
            Ok(())
        },
        |_| {},
    )?;
    println!(
        "held-out sum: g128 rtn {:.4e} gptq {:.4e}; per-channel rtn {:.4e} gptq {:.4e}",
        held_tot[0], held_tot[1], held_tot[2], held_tot[3]
    );
    println!(
        "sum: g128 rtn {:.4e} gptq {:.4e}; per-channel rtn {:.4e} gptq {:.4e}",
        tot[0], tot[1], tot[2], tot[3]
    );
    Ok(())
}
