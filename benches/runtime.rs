//! Runtime bench: tokens/s of the native forward pass on 2048-token windows of WikiText-2, and
//! the fraction of this machine's measured f32 GEMM peak that it reaches.
//!
//! `cargo bench --bench runtime [-- --windows N --model PATH]`. The peak is measured in the same
//! run (best of 5 square 2048³ products through faer on all threads).

use faer::{linalg::matmul::matmul, Accum, Mat};
use llm_compress::prelude::*;
use std::time::Instant;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn default_model() -> std::path::PathBuf {
    if let Some(p) = arg("--model").or_else(|| std::env::var("LLM_COMPRESS_MODEL").ok()) {
        return p.into();
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| ".".into());
    std::env::var("LLM_COMPRESS_CACHE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| std::path::Path::new(&home).join(".cache/llm-compress"))
        .join("models/SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// Best-of-5 f32 GEMM rate (GFLOP/s) on `n × n` matrices.
pub fn gemm_peak_gflops(n: usize) -> f64 {
    let a = Mat::<f32>::from_fn(n, n, |i, j| ((i * 7 + j * 13) % 17) as f32 * 0.01);
    let b = Mat::<f32>::from_fn(n, n, |i, j| ((i * 3 + j * 5) % 11) as f32 * 0.01);
    let mut c = Mat::<f32>::zeros(n, n);
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        matmul(
            c.as_mut(),
            Accum::Replace,
            a.as_ref(),
            b.as_ref(),
            1.0f32,
            llm_compress::core::par(),
        );
        best = best.min(t.elapsed().as_secs_f64());
    }
    2.0 * (n as f64).powi(3) / best / 1e9
}

/// Useful FLOPs of one window's forward (linears, causal attention, head on T−1 positions).
pub fn window_flops(model: &Model, t: usize) -> f64 {
    let c = &model.config;
    let linears = 2.0 * model.linear_params() as f64 * t as f64;
    let attention =
        c.num_layers as f64 * c.num_heads as f64 * 2.0 * c.head_dim as f64 * (t * (t + 1)) as f64;
    let head = 2.0 * (c.vocab_size * c.hidden_size) as f64 * (t - 1) as f64;
    linears + attention + head
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let windows: usize = arg("--windows").and_then(|s| s.parse().ok()).unwrap_or(3);
    let path = default_model();
    let ckpt = Checkpoint::open(&path)?;
    let model = Model::load(&ckpt)?;
    let tokens = TextSource::WikiText2Test.tokens(ckpt.require_tokenizer()?)?;
    let seq = 2048;
    // Warm-up window (page faults, thread pool), not timed.
    model.window_nll(&tokens[..seq])?;
    let t0 = Instant::now();
    for w in 0..windows {
        model.window_nll(&tokens[w * seq..(w + 1) * seq])?;
    }
    let secs = t0.elapsed().as_secs_f64();
    let tps = (windows * seq) as f64 / secs;
    let achieved = window_flops(&model, seq) * windows as f64 / secs / 1e9;
    let peak = gemm_peak_gflops(2048);
    println!("| measure | value |");
    println!("|---|---|");
    println!("| model | {} |", path.display());
    println!("| threads | {} |", rayon::current_num_threads());
    println!("| windows x tokens | {windows} x {seq} |");
    println!("| tokens/s | {tps:.1} |");
    println!("| s / window | {:.2} |", secs / windows as f64);
    println!("| forward GFLOP/s (useful FLOPs) | {achieved:.1} |");
    println!("| f32 GEMM peak GFLOP/s (2048^3, faer) | {peak:.1} |");
    println!("| fraction of peak | {:.2} |", achieved / peak);
    Ok(())
}
