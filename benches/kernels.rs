//! Kernel benches at LLaMA-7B shapes (issue 9): where a streamed SVD-LLM / Basis Sharing run
//! spends its time, each kernel against this machine's measured GEMM peak.
//!
//! ```sh
//! cargo bench --bench kernels                          # criterion, every kernel
//! cargo bench --bench kernels -- svd                   # criterion, kernels whose id contains "svd"
//! cargo bench --bench kernels -- --table [--reps N] [--tokens T] [FILTER]
//! ```
//!
//! `--table` times each kernel `N` times (default 3) after one warm-up call and prints a
//! Markdown table: best and median seconds, nominal GFLOP/s at the best time, and the fraction
//! of the f32 or f64 GEMM peak measured in the same run (the best of `N` square 4096³
//! products). docs/scale.md holds the table of this machine. `--tokens T` sets the batch of the
//! Gram and forward kernels (default 2048, one calibration window).
//!
//! Nominal FLOP counts: `2mnk` for a product (`mn²` for a product with a triangular factor),
//! `d(d+1)T` for a Gram batch (the lower triangle of `X Xᵀ`), `n³/3` for Cholesky, `n²k` for a
//! triangular solve with `k` right-hand sides, Golub & Van Loan's `6mn² + 20n³` (thin `U`,
//! `V`; `m ≥ n`) for the exact SVD, and the sum of the steps of `crate::randomized` for the
//! randomized one. Every factorisation kernel runs at the SVD-LLM 0.2 rank of its shape
//! (q/o 4096 × 4096: 1638; gate/up/down: 2388; the Basis Sharing 2 × 11008 × 4096 stack: 2762).

use criterion::{Criterion, Throughput};
use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatRef};
use llm_compress::core::budget::{shared_basis_rank, svd_llm_rank};
use llm_compress::core::rng::SplitMix64;
use llm_compress::core::Linear;
use llm_compress::core::{par, GramAccumulator, LinearId, LinearInput, LinearKind, StatsRequest};
use llm_compress::eval::{DecoderLayer, LayerObserver, Rope};
use llm_compress::synth::{LinearGenerator, SynthShape};
use llm_compress::whitening_svd::{
    robust_cholesky, whitened_svd_with_cholesky_solver, CholeskyOptions, SvdSolver,
};
use std::time::Instant;

/// Which GEMM peak a kernel is measured against.
#[derive(Clone, Copy, PartialEq)]
enum Precision {
    F32,
    F64,
}

/// A closure that runs a kernel once.
type Run = Box<dyn FnMut()>;

/// One benchmarked kernel: an id, its nominal FLOPs, and the set-up that builds its inputs and
/// returns the closure that runs it once (called only if the kernel is selected, so that its
/// inputs exist only while it is measured).
struct Kernel {
    id: String,
    precision: Precision,
    flops: f64,
    setup: Box<dyn FnOnce() -> Run>,
}

fn gaussian_f64(rows: usize, cols: usize, seed: u64) -> Mat<f64> {
    let mut rng = SplitMix64::new(seed);
    Mat::<f64>::from_fn(rows, cols, |_, _| rng.normal())
}

fn gaussian_f32(rows: usize, cols: usize, seed: u64) -> Mat<f32> {
    let mut rng = SplitMix64::new(seed);
    Mat::<f32>::from_fn(rows, cols, |_, _| rng.normal() as f32)
}

/// A full-rank Gram `X Xᵀ / T` of `T = 2d` Gaussian tokens with per-channel scales spread over
/// two decades (a trained model's inputs have outlier channels), f64.
fn synthetic_gram(d: usize, seed: u64) -> Mat<f64> {
    let t = d + d / 4;
    let mut x = gaussian_f64(d, t, seed);
    let mut rng = SplitMix64::new(seed ^ 0xA5A5);
    for i in 0..d {
        let s = 10f64.powf(2.0 * rng.uniform() - 1.0);
        x.row_mut(i).iter_mut().for_each(|v| *v *= s);
    }
    let mut g = Mat::<f64>::zeros(d, d);
    matmul(
        g.as_mut(),
        Accum::Replace,
        x.as_ref(),
        x.transpose(),
        1.0 / t as f64,
        par(),
    );
    g
}

fn gemm_flops(m: usize, n: usize, k: usize) -> f64 {
    2.0 * m as f64 * n as f64 * k as f64
}

/// The square `n³` product `C = A B` of Gaussian matrices in one precision: the peak the other
/// kernels are measured against.
fn gemm_peak<T: faer::traits::ComplexField + 'static>(
    name: &str,
    precision: Precision,
    n: usize,
    one: T,
    gaussian: fn(usize, usize, u64) -> Mat<T>,
) -> Kernel {
    Kernel {
        id: format!("peak/gemm_{name}_{n}"),
        precision,
        flops: gemm_flops(n, n, n),
        setup: Box::new(move || {
            let (a, b) = (gaussian(n, n, 1), gaussian(n, n, 2));
            let mut c = Mat::<T>::zeros(n, n);
            Box::new(move || {
                matmul(
                    c.as_mut(),
                    Accum::Replace,
                    a.as_ref(),
                    b.as_ref(),
                    one.clone(),
                    par(),
                )
            })
        }),
    }
}

/// Nominal FLOPs of the randomized solver's steps (`randomized.rs`) on an `m × n` matrix.
fn randomized_flops(m: usize, n: usize, k: usize) -> f64 {
    let (r, c) = (m.min(n) as f64, m.max(n) as f64);
    let l = (k + SvdSolver::DEFAULT_OVERSAMPLE).min(m.min(n)) as f64;
    let q = SvdSolver::DEFAULT_POWER_ITERS as f64;
    let gram = r * r * c;
    let products = (q + 2.0) * 2.0 * r * r * l + 2.0 * r * l * l;
    let lu = q * (r * l * l - l * l * l / 3.0);
    let qr = 4.0 * r * l * l - 4.0 / 3.0 * l * l * l;
    let eig = 9.0 * l * l * l;
    let right = 2.0 * r * c * k as f64;
    gram + products + lu + qr + eig + right
}

/// Nominal FLOPs of a whitened SVD of an `m × n` weight at rank `k` (whitening product,
/// SVD, triangular solve).
fn whitened_flops(m: usize, n: usize, k: usize, exact: bool) -> f64 {
    let (big, small) = (m.max(n) as f64, m.min(n) as f64);
    let svd = if exact {
        6.0 * big * small * small + 20.0 * small.powi(3)
    } else {
        randomized_flops(m, n, k)
    };
    m as f64 * (n as f64).powi(2) + svd + (n as f64).powi(2) * k as f64
}

/// Observer that accumulates the four input Grams of a layer, as the calibration walk does.
struct Grams(Vec<(LinearInput, GramAccumulator)>);

impl LayerObserver for Grams {
    fn observe(&mut self, input: LinearInput, x: MatRef<'_, f32>) {
        if let Some((_, a)) = self.0.iter_mut().find(|(i, _)| *i == input) {
            a.add(x);
        }
    }
}

fn kernels(tokens: usize) -> Vec<Kernel> {
    let cfg = SynthShape::Llama7b.config();
    let (h, f) = (cfg.hidden_size, cfg.intermediate_size);
    let mut out = Vec::new();
    let n = 4096;

    // The machine's matmul peak, f32 and f64.
    out.push(gemm_peak("f32", Precision::F32, n, 1.0f32, gaussian_f32));
    out.push(gemm_peak("f64", Precision::F64, n, 1.0f64, gaussian_f64));

    // The walk: one calibration window through a dense 7B decoder layer, without and with the
    // four Grams of its linear inputs (what the calibration walk runs per window).
    let layer_params = 4 * h * h + 3 * h * f;
    let layer_flops = 2.0 * layer_params as f64 * tokens as f64
        + 2.0 * (cfg.num_heads * cfg.head_dim) as f64 * (tokens * (tokens + 1)) as f64;
    let gram_flops = move |d: usize| (d * (d + 1) * tokens) as f64;
    let all_grams = 3.0 * gram_flops(h) + gram_flops(f);
    for with_grams in [false, true] {
        let cfg = cfg.clone();
        out.push(Kernel {
            id: format!(
                "walk/layer_forward{}_{tokens}",
                if with_grams { "_with_grams" } else { "" }
            ),
            precision: Precision::F32,
            flops: layer_flops + if with_grams { all_grams } else { 0.0 },
            setup: Box::new(move || {
                let mut gen = LinearGenerator::new(&cfg, 0);
                let mut lin = |kind| Linear::Dense(gen.linear(LinearId { layer: 0, kind }));
                let layer = DecoderLayer {
                    attn_norm: vec![1.0; h],
                    mlp_norm: vec![1.0; h],
                    q: lin(LinearKind::Q),
                    k: lin(LinearKind::K),
                    v: lin(LinearKind::V),
                    o: lin(LinearKind::O),
                    gate: lin(LinearKind::Gate),
                    up: lin(LinearKind::Up),
                    down: lin(LinearKind::Down),
                    qkv_bias: None,
                };
                let rope = Rope::new(cfg.head_dim, cfg.rope_theta, tokens.max(1));
                let x0 = gaussian_f32(h, tokens, 3);
                let request = StatsRequest {
                    gram: true,
                    ..StatsRequest::NONE
                };
                let mut grams = with_grams.then(|| {
                    Grams(
                        [
                            (LinearInput::Attn, h),
                            (LinearInput::AttnOut, h),
                            (LinearInput::Mlp, h),
                            (LinearInput::MlpHidden, f),
                        ]
                        .into_iter()
                        .map(|(i, d)| (i, GramAccumulator::new(d, request)))
                        .collect(),
                    )
                });
                Box::new(move || {
                    let mut x = x0.clone();
                    let obs = grams.as_mut().map(|g| g as &mut dyn LayerObserver);
                    layer.forward(&cfg, &rope, &mut x, obs);
                })
            }),
        });
    }

    // Gram accumulation of one batch: f32 product into the f64 accumulator.
    for d in [h, f] {
        out.push(Kernel {
            id: format!("gram/accumulate_{d}x{tokens}"),
            precision: Precision::F32,
            flops: gram_flops(d),
            setup: Box::new(move || {
                let x = gaussian_f32(d, tokens, 4);
                let mut acc = GramAccumulator::new(
                    d,
                    StatsRequest {
                        gram: true,
                        ..StatsRequest::NONE
                    },
                );
                Box::new(move || acc.add(x.as_ref()))
            }),
        });
    }

    // Robust Cholesky of a Gram (the direct factorisation succeeds on these).
    for d in [h, f] {
        out.push(Kernel {
            id: format!("cholesky/{d}"),
            precision: Precision::F64,
            flops: (d as f64).powi(3) / 3.0,
            setup: Box::new(move || {
                let g = synthetic_gram(d, 5);
                Box::new(move || {
                    robust_cholesky(g.as_ref(), &CholeskyOptions::default())
                        .expect("a full-rank synthetic Gram factors");
                })
            }),
        });
    }

    // Whitened truncated SVD (W·L, SVD, triangular solve), exact and randomized, at the 0.2
    // rank: the per-linear work of SVD-LLM, and of Basis Sharing on a 2-layer gate/up stack.
    let shapes: [(&str, LinearKind, usize); 4] = [
        ("q_4096x4096", LinearKind::Q, 1),
        ("up_11008x4096", LinearKind::Up, 1),
        ("down_4096x11008", LinearKind::Down, 1),
        ("shared_up_22016x4096", LinearKind::Up, 2),
    ];
    for (name, kind, group) in shapes {
        let (m, nn) = cfg.linear_shape(kind);
        let rows = m * group;
        let k = if group == 1 {
            svd_llm_rank(m, nn, 0.2)
        } else {
            shared_basis_rank(m, nn, group, 0.2)
        };
        for (solver, exact) in [(SvdSolver::Exact, true), (SvdSolver::randomized(), false)] {
            let cfg = cfg.clone();
            out.push(Kernel {
                id: format!("whitened_svd/{}_{name}_k{k}", solver.name()),
                precision: Precision::F64,
                flops: whitened_flops(rows, nn, k, exact),
                setup: Box::new(move || {
                    let mut gen = LinearGenerator::new(&cfg, 0);
                    let parts: Vec<Mat<f32>> = (0..group)
                        .map(|l| gen.linear(LinearId { layer: l, kind }))
                        .collect();
                    let w = Mat::<f64>::from_fn(rows, nn, |i, j| parts[i / m][(i % m, j)] as f64);
                    drop(parts);
                    let g = synthetic_gram(nn, nn as u64);
                    let (l, _) = robust_cholesky(g.as_ref(), &CholeskyOptions::default())
                        .expect("a full-rank synthetic Gram factors");
                    drop(g);
                    Box::new(move || {
                        whitened_svd_with_cholesky_solver(w.as_ref(), l.as_ref(), k, solver)
                            .expect("whitened SVD of a finite weight");
                    })
                }),
            });
        }
    }
    out
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    llm_compress::tune_allocator();
    let args: Vec<String> = std::env::args().collect();
    let tokens: usize = arg(&args, "--tokens")
        .and_then(|s| s.parse().ok())
        .unwrap_or(2048);
    // A filter is the one argument that is neither a flag nor a flag's value; kernels it does
    // not select are never set up (criterion would only skip their measurement).
    let filter = args
        .iter()
        .enumerate()
        .skip(1)
        .find(|(i, a)| {
            !a.starts_with("--") && !matches!(args[i - 1].as_str(), "--reps" | "--tokens")
        })
        .map(|(_, a)| a.clone());
    let selected = kernels(tokens)
        .into_iter()
        .filter(|k| filter.as_deref().is_none_or(|f| k.id.contains(f)));
    if args.iter().any(|a| a == "--table") {
        let reps: usize = arg(&args, "--reps")
            .and_then(|s| s.parse().ok())
            .unwrap_or(3)
            .max(1);
        table(selected, reps);
    } else {
        let mut c = Criterion::default().sample_size(10).configure_from_args();
        for k in selected {
            let mut run = (k.setup)();
            let (group, name) = k.id.split_once('/').unwrap_or(("kernel", k.id.as_str()));
            let mut g = c.benchmark_group(group);
            g.sampling_mode(criterion::SamplingMode::Flat);
            // Criterion's "elements" are FLOPs: its elem/s is FLOP/s.
            g.throughput(Throughput::Elements(k.flops as u64));
            g.bench_function(name, |b| b.iter(&mut run));
            g.finish();
        }
        c.final_summary();
    }
}

/// Time every kernel `reps` times after a warm-up call and print the table. The fraction of
/// peak is against the `peak/` kernel of the same precision measured earlier in the run, so
/// the table always measures the peaks, whatever the filter.
fn table(selected: impl Iterator<Item = Kernel>, reps: usize) {
    let mut peak = [0.0f64; 2];
    println!("| kernel | best (s) | median (s) | GFLOP/s | of peak |");
    println!("|---|---|---|---|---|");
    let peaks = kernels(0).into_iter().filter(|k| k.id.starts_with("peak/"));
    for k in peaks.chain(selected.filter(|k| !k.id.starts_with("peak/"))) {
        let mut run = (k.setup)();
        run();
        let mut times: Vec<f64> = (0..reps)
            .map(|_| {
                let t = Instant::now();
                run();
                t.elapsed().as_secs_f64()
            })
            .collect();
        times.sort_by(f64::total_cmp);
        let (best, median) = (times[0], times[times.len() / 2]);
        let gflops = k.flops / best / 1e9;
        let slot = (k.precision == Precision::F64) as usize;
        if k.id.starts_with("peak/") {
            peak[slot] = gflops;
        }
        println!(
            "| {} | {best:.3} | {median:.3} | {gflops:.1} | {:.0}% |",
            k.id,
            100.0 * gflops / peak[slot]
        );
    }
}
