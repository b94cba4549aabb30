//! The defining identities of training-free Basis Selection (ALGORITHMS.md §5.8), in f64.

use faer::Mat;
use llm_compress_basis_select::*;
use llm_compress_core::budget::svd_llm_rank;
use llm_compress_core::rng::SplitMix64;
use llm_compress_whitening_svd::{plain_svd_f64, robust_cholesky, CholeskyOptions};

fn random(m: usize, n: usize, rng: &mut SplitMix64) -> Mat<f32> {
    Mat::<f32>::from_fn(m, n, |_, _| rng.normal() as f32)
}

/// Inputs with very unequal channel scales and correlations, as real activations have.
fn inputs(n: usize, t: usize, rng: &mut SplitMix64) -> Mat<f64> {
    let mix = Mat::<f64>::from_fn(n, n, |i, j| if i == j { 1.0 } else { 0.3 * rng.normal() });
    let z = Mat::<f64>::from_fn(n, t, |i, _| rng.normal() * 3.0 / (1.0 + i as f64));
    &mix * &z
}

fn gram(x: &Mat<f64>) -> Mat<f64> {
    x * x.transpose()
}

fn output_error(w: &Mat<f32>, approx: &Mat<f64>, x: &Mat<f64>) -> f64 {
    let w64 = Mat::<f64>::from_fn(w.nrows(), w.ncols(), |i, j| w[(i, j)] as f64);
    let d = &w64 - approx;
    (&d * x).squared_norm_l2()
}

#[test]
fn dropping_bases_costs_exactly_the_sum_of_their_scores() {
    // ‖(W − W_keep) X‖_F² = Σ_{i∈P} σ_i² v_iᵀ G v_i, relative 1e-9, for random dropped sets,
    // for plain and for whitened bases, tall and wide weights.
    let mut rng = SplitMix64::new(11);
    for (m, n) in [(20, 12), (9, 16)] {
        let w = random(m, n, &mut rng);
        let x = inputs(n, 300, &mut rng);
        let g = gram(&x);
        let (l, _) = robust_cholesky(g.as_ref(), &CholeskyOptions::default()).unwrap();
        for bases in [
            plain_bases(w.as_ref(), Some(g.as_ref())).unwrap(),
            whitened_bases(w.as_ref(), l.as_ref(), g.as_ref()).unwrap(),
        ] {
            let total = output_energy(w.as_ref(), g.as_ref()).unwrap();
            assert!((bases.total_score() - total).abs() <= 1e-9 * total);
            for trial in 0..5 {
                let kept: Vec<usize> = (0..bases.len())
                    .filter(|_| rng.below(2) == 0 || trial == 0)
                    .collect();
                if kept.is_empty() {
                    continue;
                }
                let dropped: f64 = (0..bases.len())
                    .filter(|i| !kept.contains(i))
                    .map(|i| bases.scores[i])
                    .sum();
                let approx = bases.keep(&kept).unwrap().reconstruct();
                let err = output_error(&w, &approx, &x);
                assert!(
                    (err - dropped).abs() <= 1e-9 * total,
                    "{m}x{n}: error {err} vs dropped scores {dropped}"
                );
            }
        }
    }
}

#[test]
fn whitened_scores_are_the_squared_singular_values() {
    let mut rng = SplitMix64::new(12);
    let w = random(10, 14, &mut rng);
    let g = gram(&inputs(14, 200, &mut rng));
    let (l, _) = robust_cholesky(g.as_ref(), &CholeskyOptions::default()).unwrap();
    let b = whitened_bases(w.as_ref(), l.as_ref(), g.as_ref()).unwrap();
    for (s, sigma) in b.scores.iter().zip(&b.svd.sigma) {
        assert!((s - sigma * sigma).abs() <= 1e-9 * b.total_score());
    }
}

#[test]
fn with_identity_gram_per_matrix_selection_is_plain_svd_truncation() {
    let mut rng = SplitMix64::new(13);
    let (m, n) = (24, 16);
    let w = random(m, n, &mut rng);
    let eye = Mat::<f64>::identity(n, n);
    let bases = plain_bases(w.as_ref(), Some(eye.as_ref())).unwrap();
    for ratio in [0.2, 0.5] {
        let k = svd_llm_rank(m, n, ratio);
        let kept = top_k(&bases.scores, k);
        assert_eq!(kept, (0..k).collect::<Vec<_>>());
        let ours = bases.keep(&kept).unwrap().reconstruct();
        let w64 = Mat::<f64>::from_fn(m, n, |i, j| w[(i, j)] as f64);
        let svd = plain_svd_f64(w64.as_ref(), k).unwrap().reconstruct();
        assert!((&ours - &svd).norm_l2() <= 1e-10 * w64.norm_l2());
        // and the f32 factors compute the same map
        let lin = bases.keep(&kept).unwrap().to_linear().unwrap();
        assert_eq!(lin.rank(), Some(k));
        let dense = lin.to_dense();
        let rel = (0..m)
            .flat_map(|i| (0..n).map(move |j| (i, j)))
            .map(|(i, j)| (dense[(i, j)] as f64 - svd[(i, j)]).powi(2))
            .sum::<f64>()
            .sqrt()
            / w64.norm_l2();
        assert!(rel < 1e-5, "{rel}");
    }
}

#[test]
fn refit_is_a_no_op_for_plain_svd_bases() {
    // c = argmin ‖(W − U diag(c) Vᵀ)X‖ equals σ for any subset of plain-SVD bases (relative
    // 1e-8), and lowers the error once residual bases are appended.
    let mut rng = SplitMix64::new(14);
    let (m, n) = (18, 12);
    let w = random(m, n, &mut rng);
    let x = inputs(n, 250, &mut rng);
    let g = gram(&x);
    let bases = plain_bases(w.as_ref(), Some(g.as_ref())).unwrap();
    let kept = top_k(&bases.scores, 5);
    let sel = bases.keep(&kept).unwrap();
    let refit = refit_coefficients(w.as_ref(), &sel, g.as_ref()).unwrap();
    for (c, s) in refit.coef.iter().zip(&sel.coef) {
        assert!((c - s).abs() <= 1e-8 * s.abs(), "{c} vs {s}");
    }
    let (l, _) = robust_cholesky(g.as_ref(), &CholeskyOptions::default()).unwrap();
    let res = residual_bases(w.as_ref(), &sel, l.as_ref(), 2).unwrap();
    let both = sel.append(&res).unwrap();
    let e_sel = output_error(&w, &sel.reconstruct(), &x);
    let e_both = output_error(&w, &both.reconstruct(), &x);
    assert!(e_both < e_sel, "residual bases must lower the error");
    let e_refit = output_error(
        &w,
        &refit_coefficients(w.as_ref(), &both, g.as_ref())
            .unwrap()
            .reconstruct(),
        &x,
    );
    assert!(e_refit <= e_both * (1.0 + 1e-9), "{e_refit} > {e_both}");
}

fn synthetic_scores(rng: &mut SplitMix64) -> Vec<MatrixScores> {
    [(16, 8), (8, 16), (30, 10), (5, 12), (12, 12)]
        .iter()
        .enumerate()
        .map(|(i, &(m, n))| {
            let scores: Vec<f64> = (0..m.min(n)).map(|_| rng.normal().powi(2)).collect();
            MatrixScores {
                name: format!("m{i}"),
                d_out: m,
                d_in: n,
                output_energy: scores.iter().sum(),
                scores,
            }
        })
        .collect()
}

#[test]
fn global_allocation_meets_the_budget_within_one_basis() {
    let mut rng = SplitMix64::new(15);
    let mats = synthetic_scores(&mut rng);
    let max_cost = mats.iter().map(|m| m.cost()).max().unwrap();
    let full: usize = mats.iter().map(|m| m.max_rank() * m.cost()).sum();
    for frac in [0.3, 0.5, 0.8] {
        let budget = (full as f64 * frac) as usize;
        let kept = global_allocation(&mats, budget).unwrap();
        let used = selection_params(&mats, &kept);
        assert!(used <= budget, "{used} > {budget}");
        assert!(
            budget - used < max_cost,
            "{used} leaves more than one basis of {budget}"
        );
        for (k, m) in kept.iter().zip(&mats) {
            assert!(!k.is_empty() && k.len() <= m.max_rank());
        }
    }
    // Ranks follow the normalised scores: a matrix whose scores are all tiny gets rank 1.
    let mut skewed = mats.clone();
    skewed[2].scores = vec![
        1.0, 1e-12, 1e-12, 1e-12, 1e-12, 1e-12, 1e-12, 1e-12, 1e-12, 1e-12,
    ];
    skewed[2].output_energy = skewed[2].scores.iter().sum();
    let kept = global_allocation(&skewed, full / 2).unwrap();
    assert_eq!(kept[2], vec![0]);
    // A budget too small for one basis per matrix is an error, not a panic.
    assert!(global_allocation(&mats, 10).is_err());
}

#[test]
fn mass_rule_and_top_k() {
    let v = [1.0, 4.0, 0.5, 2.5, 2.0];
    assert_eq!(top_k(&v, 2), vec![1, 3]);
    assert_eq!(mass_rule(&v, 0.4).unwrap(), vec![1]); // 4 ≥ 0.4·10
    assert_eq!(mass_rule(&v, 0.5).unwrap(), vec![1, 3]); // 6.5 ≥ 5
    assert_eq!(mass_rule(&v, 1.0).unwrap().len(), 5);
    assert!(mass_rule(&v, 0.0).is_err());
    assert!(mass_rule(&[f64::NAN], 0.5).is_err());
}
