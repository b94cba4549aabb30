//! Exact against randomized SVD on one decoder layer of a real-shaped model (issue 9): the
//! whitened loss each solver leaves and its time, per linear, with the layer's own calibration
//! Grams. The measurement behind docs/scale.md's solver table.
//!
//! ```text
//! cargo bench --bench svd_solvers -- MODEL [--layer L] [--windows N] [--seq-len T]
//!     [--calib random|wikitext2|FILE] [--ratio R] [--settings P:Q,P:Q,...] [--kinds q,up,...]
//! ```
//!
//! The layer's input Grams come from the calibration walk (the original model's stream, the
//! layers before `L` run dense). For each linear `W` with whitening `L = chol(G)`, at the
//! SVD-LLM rank of `R` (default 0.2), it prints the whitened loss `‖(W − W')X‖² / ‖W X‖²`
//! (= dropped energy / total energy of `A = W L`) of the exact SVD and of the randomized one for
//! each `oversample:power_iters` setting (default `128:4,128:2,128:1,64:1`), the randomized
//! loss's excess over the exact optimum, and each solver's seconds. One Markdown row per
//! linear and setting.

use llm_compress::lowrank::CalibrationText;
use llm_compress::prelude::*;
use llm_compress_core::budget::svd_llm_rank;
use llm_compress_core::{LinearInput, Mat, StatsRequest};
use llm_compress_eval::{
    calibration_windows, walk_layers_from, CalibrationConfig, StatsFrom, WalkState,
};
use llm_compress_whitening_svd::{
    robust_cholesky, whitened_svd_with_cholesky_solver, CholeskyOptions, SvdSolver,
};
use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::time::Instant;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    llm_compress::tune_allocator();
    let args: Vec<String> = std::env::args().collect();
    let model = args
        .get(1)
        .filter(|a| !a.starts_with("--"))
        .ok_or("usage: svd_solvers MODEL [--layer L] [--windows N] ...")?;
    let layer_index: usize = arg(&args, "--layer").map_or(Ok(0), |s| s.parse())?;
    let ratio: f64 = arg(&args, "--ratio").map_or(Ok(0.2), |s| s.parse())?;
    let calib = CalibrationConfig {
        windows: arg(&args, "--windows").map_or(Ok(16), |s| s.parse())?,
        seq_len: arg(&args, "--seq-len").map_or(Ok(2048), |s| s.parse())?,
        seed: 3,
    };
    let settings: Vec<(usize, usize)> = arg(&args, "--settings")
        .unwrap_or_else(|| "128:4,128:2,128:1,64:1".into())
        .split(',')
        .map(|s| -> Result<(usize, usize), Box<dyn std::error::Error>> {
            let (p, q) = s
                .split_once(':')
                .ok_or("a setting is OVERSAMPLE:POWER_ITERS")?;
            Ok((p.parse()?, q.parse()?))
        })
        .collect::<Result<_, _>>()?;
    let kinds: Vec<LinearKind> = match arg(&args, "--kinds") {
        Some(list) => list
            .split(',')
            .map(|k| LinearKind::parse(k).ok_or(format!("unknown linear kind {k}")))
            .collect::<Result<_, _>>()?,
        None => LinearKind::ALL.to_vec(),
    };

    let ckpt = Checkpoint::open(model.as_ref())?;
    if layer_index >= ckpt.config.num_layers {
        return Err(format!("the model has {} layers", ckpt.config.num_layers).into());
    }
    let text = CalibrationText::named(&arg(&args, "--calib").unwrap_or_else(|| "random".into()));
    let windows = calibration_windows(&text.tokens(&ckpt)?, &calib)?;
    let base = Model::load_without_layers(&ckpt)?;
    let mut state = WalkState::start(&base, &windows, StatsFrom::Original)?;
    let request = StatsRequest {
        gram: true,
        ..StatsRequest::NONE
    };
    println!(
        "| linear | k | solver | oversample:iters | seconds | whitened loss | excess over exact | speed-up |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let t_walk = Instant::now();
    walk_layers_from(
        &ckpt,
        &base,
        &mut state,
        request,
        StatsFrom::Original,
        |l, layer, calib| {
            if l != layer_index {
                return Ok(());
            }
            eprintln!("walk to layer {l}: {:.1} s", t_walk.elapsed().as_secs_f64());
            let stats = calib
                .original
                .ok_or_else(|| llm_compress_eval::EvalError::Input("no statistics".into()))?;
            let mut factors: BTreeMap<LinearInput, Mat<f64>> = BTreeMap::new();
            for &kind in &kinds {
                let input = kind.input();
                if !factors.contains_key(&input) {
                    let g = stats
                        .get(&input)
                        .and_then(|s| s.gram.as_ref())
                        .ok_or_else(|| llm_compress_eval::EvalError::Input("no Gram".into()))?;
                    let (lf, _) = robust_cholesky(g.as_ref(), &CholeskyOptions::default())?;
                    factors.insert(input, lf);
                }
                let lf = &factors[&input];
                let w = layer.linear(kind).to_dense();
                let w = Mat::<f64>::from_fn(w.nrows(), w.ncols(), |i, j| w[(i, j)] as f64);
                let k = svd_llm_rank(w.nrows(), w.ncols(), ratio);
                let name = LinearId { layer: l, kind }.to_string();
                let t = Instant::now();
                let exact = whitened_svd_with_cholesky_solver(
                    w.as_ref(),
                    lf.as_ref(),
                    k,
                    SvdSolver::Exact,
                )?;
                let exact_s = t.elapsed().as_secs_f64();
                let exact_loss = exact.dropped_fraction();
                println!("| {name} | {k} | exact | - | {exact_s:.2} | {exact_loss:.6} | - | 1 |");
                for &(oversample, power_iters) in &settings {
                    let solver = SvdSolver::Randomized {
                        oversample,
                        power_iters,
                        seed: SvdSolver::DEFAULT_SEED,
                    };
                    let t = Instant::now();
                    let r = whitened_svd_with_cholesky_solver(w.as_ref(), lf.as_ref(), k, solver)?;
                    let s = t.elapsed().as_secs_f64();
                    let loss = r.dropped_fraction();
                    println!(
                        "| {name} | {k} | randomized | {oversample}:{power_iters} | {s:.2} | {loss:.6} | {:+.3}% | {:.2} |",
                        100.0 * (loss / exact_loss - 1.0),
                        exact_s / s
                    );
                }
            }
            Ok(())
        },
        |l, _, _| {
            Ok(if l >= layer_index {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            })
        },
    )?;
    Ok(())
}
