//! Defining identities of Basis Sharing (ALGORITHMS.md §3.4, §3.5, §3.6, §3.11).

use llm_compress_core::budget::{shared_basis_rank, svd_llm_rank};
use llm_compress_core::rng::SplitMix64;
use llm_compress_core::shared::distinct_param_count;
use llm_compress_core::{
    GramAccumulator, GroupCompressor, InputStats, Linear, LinearId, LinearKind, Mat, MatRef,
};
use llm_compress_shared_basis::{update_coefficient, SharedBasis};
use llm_compress_whitening_svd::{robust_cholesky, CholeskyOptions, SvdLlm};
use std::sync::Arc;

/// Anisotropic inputs: channel scales spread over two decades, correlated channels.
fn inputs(rng: &mut SplitMix64, d_in: usize, tokens: usize) -> Mat<f32> {
    let mix = Mat::<f32>::from_fn(d_in, d_in, |i, j| {
        if i == j {
            1.0
        } else {
            0.3 * rng.normal() as f32 / (d_in as f32).sqrt()
        }
    });
    let z = Mat::<f32>::from_fn(d_in, tokens, |i, _| {
        rng.normal() as f32 * 10f32.powf(-2.0 * i as f32 / d_in as f32)
    });
    &mix * &z
}

/// The Gram `X Xᵀ` formed in f64 (so the identities below hold to roundoff).
fn gram(x: MatRef<'_, f32>) -> InputStats {
    let x = to_f64(x);
    InputStats::from_gram(&x * x.transpose(), x.ncols() as u64)
}

fn to_f64(m: MatRef<'_, f32>) -> Mat<f64> {
    Mat::from_fn(m.nrows(), m.ncols(), |i, j| m[(i, j)] as f64)
}

fn frob2(m: MatRef<'_, f64>) -> f64 {
    let mut s = 0.0;
    for j in 0..m.ncols() {
        for i in 0..m.nrows() {
            s += m[(i, j)] * m[(i, j)];
        }
    }
    s
}

struct Group {
    weights: Vec<Mat<f32>>,
    xs: Vec<Mat<f32>>,
    stats: Vec<InputStats>,
}

fn group(seed: u64, g: usize, d_out: usize, d_in: usize, tokens: usize) -> Group {
    let mut rng = SplitMix64::new(seed);
    let weights: Vec<Mat<f32>> = (0..g)
        .map(|_| Mat::from_fn(d_out, d_in, |_, _| rng.normal() as f32))
        .collect();
    let xs: Vec<Mat<f32>> = (0..g).map(|_| inputs(&mut rng, d_in, tokens)).collect();
    let stats = xs.iter().map(|x| gram(x.as_ref())).collect();
    Group { weights, xs, stats }
}

/// ‖S (Wcat − B C)‖_F² = Σ_{i>k} σ_i², i.e. Σ_ℓ ‖(W_ℓ − W'_ℓ) X_𝒢‖_F² over the pooled inputs
/// of the group, in f64 (relative tolerance 1e-9).
#[test]
fn whitened_group_error_equals_dropped_energy() {
    for (g, d_out, d_in) in [(2, 10, 16), (3, 6, 16), (4, 24, 16)] {
        let grp = group(11 + g as u64, g, d_out, d_in, 200);
        let ws: Vec<MatRef<f32>> = grp.weights.iter().map(|w| w.as_ref()).collect();
        let grams: Vec<MatRef<f64>> = grp
            .stats
            .iter()
            .map(|s| s.gram.as_ref().unwrap().as_ref())
            .collect();
        let sb = SharedBasis::new(0.3);
        let f = sb.factorize(&ws, &grams).unwrap();
        assert_eq!(f.rank(), shared_basis_rank(d_out, d_in, g, 0.3));
        assert_eq!(f.group_size(), g);
        let b = f.basis(); // k × n (Bᵀ)
        let mut err = 0.0;
        let mut energy = 0.0;
        for l in 0..g {
            let approx = &f.coefficient(l) * &b; // m × n
            let diff = &to_f64(grp.weights[l].as_ref()) - &approx;
            for x in &grp.xs {
                let x = to_f64(x.as_ref());
                err += frob2((&diff * &x).as_ref());
                energy += frob2((&to_f64(grp.weights[l].as_ref()) * &x).as_ref());
            }
        }
        let dropped = f.dropped_energy();
        assert!(dropped > 0.0);
        assert!(
            (err - dropped).abs() <= 1e-9 * energy,
            "g={g}: error {err} vs dropped {dropped} (energy {energy})"
        );
        // Coefficients have orthonormal rows (Σ in the basis, §3.10.3).
        let mut ctc = Mat::<f64>::zeros(f.rank(), f.rank());
        for l in 0..g {
            let c = f.coefficient(l);
            ctc += c.transpose() * &c;
        }
        for i in 0..f.rank() {
            for j in 0..f.rank() {
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((ctc[(i, j)] - want).abs() < 1e-10);
            }
        }
    }
}

/// g = 1 reproduces SVD-LLM's W' (Σ placement differs, the product does not).
#[test]
fn group_of_one_is_svd_llm() {
    let grp = group(5, 1, 20, 16, 150);
    let w = grp.weights[0].as_ref();
    let gram = grp.stats[0].gram.as_ref().unwrap();
    let (l, _) = robust_cholesky(gram.as_ref(), &CholeskyOptions::default()).unwrap();
    let ratio = 0.25;
    let shared = SharedBasis::new(ratio)
        .factorize_with_cholesky(&[w], l.as_ref())
        .unwrap();
    let id = LinearId {
        layer: 0,
        kind: LinearKind::O,
    };
    let svd_llm = SvdLlm::new(ratio)
        .factorize_with_cholesky(id, w, l.as_ref())
        .unwrap();
    assert_eq!(shared.rank(), svd_llm_rank(20, 16, ratio));
    assert_eq!(shared.rank(), svd_llm.rank());
    let a = &shared.coefficient(0) * &shared.basis();
    let b = svd_llm.reconstruct();
    let scale = frob2(b.as_ref()).sqrt();
    assert!(frob2((&a - &b).as_ref()).sqrt() <= 1e-10 * scale);
    // And through the f32 linears.
    let lins = SharedBasis::new(ratio)
        .compress_group(&[(id, w, &grp.stats[0])])
        .unwrap();
    let lin_svd = svd_llm.to_linear().unwrap();
    let (da, db) = (lins[0].to_dense(), lin_svd.to_dense());
    let mut worst = 0f32;
    for i in 0..20 {
        for j in 0..16 {
            worst = worst.max((da[(i, j)] - db[(i, j)]).abs());
        }
    }
    assert!(worst < 1e-4 * scale as f32, "max difference {worst}");
}

/// Every member reads one basis; counts take it once; storage matches §3.1.
#[test]
fn group_shares_one_basis_and_counts_it_once() {
    let (g, d_out, d_in) = (3, 12, 16);
    let grp = group(9, g, d_out, d_in, 120);
    let members: Vec<(LinearId, MatRef<f32>, &InputStats)> = (0..g)
        .map(|l| {
            (
                LinearId {
                    layer: l,
                    kind: LinearKind::Up,
                },
                grp.weights[l].as_ref(),
                &grp.stats[l],
            )
        })
        .collect();
    let out = SharedBasis::new(0.4).compress_group(&members).unwrap();
    assert_eq!(out.len(), g);
    let b0 = out[0].shared_basis().unwrap();
    for lin in &out {
        assert!(Arc::ptr_eq(b0, lin.shared_basis().unwrap()));
        assert_eq!(lin.shape(), (d_out, d_in));
    }
    let k = shared_basis_rank(d_out, d_in, g, 0.4);
    assert_eq!(distinct_param_count(&out), k * d_in + g * k * d_out);
    assert!(distinct_param_count(&out) as f64 <= 0.6 * (g * d_out * d_in) as f64);
    assert_eq!(
        out.iter().map(Linear::param_count).sum::<usize>(),
        g * k * d_out
    );
}

/// §3.6: with G̃ = the group's own summed Gram the update returns the SVD coefficients.
#[test]
fn coefficient_update_with_the_group_gram_is_a_fixed_point() {
    let grp = group(21, 2, 8, 16, 150);
    let ws: Vec<MatRef<f32>> = grp.weights.iter().map(|w| w.as_ref()).collect();
    let grams: Vec<MatRef<f64>> = grp
        .stats
        .iter()
        .map(|s| s.gram.as_ref().unwrap().as_ref())
        .collect();
    let gsum = llm_compress_shared_basis::summed_gram(&grams).unwrap();
    let f = SharedBasis::new(0.3).factorize(&ws, &grams).unwrap();
    let lins = f.to_linears().unwrap();
    for (l, lin) in lins.iter().enumerate() {
        let upd = update_coefficient(lin, ws[l], gsum.as_ref()).unwrap();
        assert!(Arc::ptr_eq(
            lin.shared_basis().unwrap(),
            upd.shared_basis().unwrap()
        ));
        let (a, b) = (lin.to_dense(), upd.to_dense());
        let mut worst = 0f32;
        for i in 0..8 {
            for j in 0..16 {
                worst = worst.max((a[(i, j)] - b[(i, j)]).abs());
            }
        }
        assert!(worst < 1e-3, "update moved the coefficient by {worst}");
        // On a layer's own inputs the update never does worse than the SVD coefficient.
        let own = grp.stats[l].gram.as_ref().unwrap();
        let upd_own = update_coefficient(lin, ws[l], own.as_ref()).unwrap();
        let x = &grp.xs[l];
        let err = |c: &Linear| {
            let d = &grp.weights[l] - c.to_dense();
            frob2(to_f64((&d * x).as_ref()).as_ref())
        };
        assert!(err(&upd_own) <= err(lin) * (1.0 + 1e-5));
    }
}

/// Rank formula of §3.5, GQA shapes included (k/v of SmolLM2 are 192 × 576).
#[test]
fn rank_formula_and_bad_input() {
    let sb = SharedBasis::new(0.2);
    assert_eq!(
        sb.rank(192, 576, 2).unwrap(),
        2 * 576 * 192 * 8 / (10 * (576 + 2 * 192))
    );
    assert_eq!(sb.rank(1024, 4096, 2).unwrap(), 1092);
    assert_eq!(sb.rank(4096, 4096, 2).unwrap(), 2184);
    assert_eq!(sb.rank(576, 576, 1).unwrap(), svd_llm_rank(576, 576, 0.2));
    assert!(SharedBasis::new(1.5).rank(4, 4, 2).is_err());
    // Mismatched shapes and missing Grams are errors, not panics.
    let grp = group(2, 2, 6, 8, 40);
    let other = Mat::<f32>::zeros(5, 8);
    let l = Mat::<f64>::identity(8, 8);
    assert!(sb
        .factorize_with_cholesky(&[grp.weights[0].as_ref(), other.as_ref()], l.as_ref())
        .is_err());
    assert!(sb.factorize_with_cholesky(&[], l.as_ref()).is_err());
    let empty = GramAccumulator::new(8, llm_compress_core::StatsRequest::NONE).finish();
    let id = LinearId {
        layer: 0,
        kind: LinearKind::Q,
    };
    assert!(sb
        .compress_group(&[(id, grp.weights[0].as_ref(), &empty)])
        .is_err());
}
