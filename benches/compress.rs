//! Compression bench: wall time (calibration included) and peak RSS of SVD-LLM at ratio 0.2 on
//! the default model with 16 x 2048 calibration windows, with where the time goes.
//!
//! `cargo bench --bench compress [-- --ratio R --windows N --model PATH --one-pass]`
//! (`--one-pass`: whitening Grams from the original model, as the reference code). Peak RSS is the
//! process's `VmHWM`: this binary does nothing else, so it is the compression's peak.

use llm_compress::lowrank::{compress_low_rank, LowRankMethod, LowRankOptions};
use llm_compress::prelude::*;
use std::time::Instant;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    llm_compress::tune_allocator();
    let ratio: f64 = arg("--ratio").and_then(|s| s.parse().ok()).unwrap_or(0.2);
    let windows: usize = arg("--windows").and_then(|s| s.parse().ok()).unwrap_or(16);
    let path = arg("--model")
        .or_else(|| std::env::var("LLM_COMPRESS_MODEL").ok())
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var("HOME").unwrap_or_else(|_| ".".into());
            std::path::Path::new(&home)
                .join(".cache/llm-compress/models/SmolLM2-135M-Instruct.Q4_1.gguf")
        });
    let t0 = Instant::now();
    let ckpt = Checkpoint::open(&path)?;
    let open_s = t0.elapsed().as_secs_f64();
    let mut opts = LowRankOptions::new(LowRankMethod::SvdLlm, ratio);
    opts.calibration.windows = windows;
    let one_pass = std::env::args().any(|a| a == "--one-pass");
    if one_pass {
        opts.whiten_from = llm_compress::eval::StatsFrom::Original;
    }
    let (out, r) = compress_low_rank(&ckpt, &opts, |_| {})?;
    let dir = tempfile::tempdir()?;
    let t1 = Instant::now();
    llm_compress::export::write_compact(
        &ckpt,
        &out,
        dir.path(),
        serde_json::json!({"name": "svd-llm", "ratio": ratio}),
        serde_json::Value::Null,
        r.linear_params_before,
    )?;
    let write_s = t1.elapsed().as_secs_f64();
    let total = t0.elapsed().as_secs_f64();
    let peak = llm_compress::eval::sys::peak_rss_bytes().unwrap_or(0);
    let mode = if one_pass { "one-pass" } else { "sequential" };
    println!("| SVD-LLM {ratio}, {windows} x 2048 calibration, {mode} whitening | value |");
    println!("|---|---|");
    println!("| open checkpoint (s) | {open_s:.2} |");
    println!("| tokenize + sample calibration (s) | {:.2} |", r.prepare_s);
    println!("| layer walk: forward + Grams (s) | {:.2} |", r.walk_s);
    println!("| Cholesky + SVD + factors (s) | {:.2} |", r.factorize_s);
    println!("| write compact output (s) | {write_s:.2} |");
    println!("| total wall (s) | {total:.2} |");
    println!(
        "| peak RSS (MiB) | {:.0} |",
        peak as f64 / (1u64 << 20) as f64
    );
    println!(
        "| kept linear params | {:.4} |",
        r.linear_params_after as f64 / r.linear_params_before as f64
    );
    Ok(())
}
