//! Packed sparse (N:M, keep bitmask) forward against the dense f32 GEMM (faer), on the linear
//! shapes of SmolLM2-135M: bytes and time.
//!
//! `cargo bench --bench sparse [-- --reps N]`. For each shape, pattern, group axis and token
//! count T: stored bytes (packed / dense f32) and the best-of-N time of `Y = W X` (`X` is
//! `d_in × T`, one token per column) for the dense matrix and for its packed 2:4 / 4:8 form. The
//! packed result is checked against the dense product of the masked matrix.

use faer::Mat;
use llm_compress_core::rng::SplitMix64;
use llm_compress_core::{GroupAxis, Linear, NmSparse, SparsityPattern};
use std::time::Instant;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn best_of(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let reps: usize = arg("--reps").and_then(|s| s.parse().ok()).unwrap_or(5);
    let mut rng = SplitMix64::new(1);
    println!("threads {}", rayon::current_num_threads());
    println!("| shape (d_out x d_in) | pattern | axis | T | dense bytes | packed bytes | ratio | dense ms | packed ms | packed/dense time |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (name, m, n) in [
        ("q/o", 576, 576),
        ("gate/up", 1536, 576),
        ("down", 576, 1536),
    ] {
        let w = Mat::<f32>::from_fn(m, n, |_, _| rng.normal() as f32);
        for (zeros, group) in [(2, 4), (4, 8)] {
            let pattern = SparsityPattern::NM { zeros, group };
            for axis in [GroupAxis::Inputs, GroupAxis::Outputs] {
                // A random valid N:M mask: in each group keep M-N positions chosen by a hash.
                let keep = |i: usize, j: usize| {
                    let (line, p) = match axis {
                        GroupAxis::Inputs => (i, j),
                        GroupAxis::Outputs => (j, i),
                    };
                    let g = p / group;
                    let rot = (line * 7 + g * 13) % group;
                    (p % group + group - rot) % group < group - zeros
                };
                let sp = NmSparse::from_dense(w.as_ref(), keep, axis, pattern).expect("valid mask");
                let dense = Linear::Dense(sp.to_dense());
                let packed = Linear::Sparse(sp);
                for t in [1usize, 64, 2048] {
                    let x = Mat::<f32>::from_fn(n, t, |_, _| rng.normal() as f32);
                    let mut y = Mat::<f32>::zeros(m, t);
                    let mut yd = Mat::<f32>::zeros(m, t);
                    let td = best_of(reps, || dense.forward(x.as_ref(), yd.as_mut()));
                    let tp = best_of(reps, || packed.forward(x.as_ref(), y.as_mut()));
                    let mut err = 0f32;
                    for c in 0..t {
                        for i in 0..m {
                            err = err.max((y[(i, c)] - yd[(i, c)]).abs());
                        }
                    }
                    assert!(err < 1e-3, "packed forward differs from dense by {err}");
                    println!(
                        "| {name} ({m}x{n}) | {pattern} | {} | {t} | {} | {} | {:.3} | {:.3} | {:.3} | {:.2} |",
                        axis.name(),
                        dense.storage_bytes(),
                        packed.storage_bytes(),
                        packed.storage_bytes() as f64 / dense.storage_bytes() as f64,
                        td * 1e3,
                        tp * 1e3,
                        tp / td
                    );
                }
            }
        }
    }
}
