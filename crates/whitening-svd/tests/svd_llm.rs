//! Behavioural tests of the crate on synthetic data (ALGORITHMS.md §1.2, §1.3, §2.3–§2.5, §2.7,
//! §2.11). Every tolerance is stated next to its assertion.

use faer::linalg::matmul::matmul;
use faer::linalg::solvers::SolveLstsq;
use faer::{Accum, Mat, MatRef, Par};
use llm_compress_core::budget::svd_llm_rank;
use llm_compress_core::rng::SplitMix64;
use llm_compress_core::{
    CoreError, GramAccumulator, InputStats, Linear, LinearId, LinearKind, MatrixCompressor,
    StatsRequest,
};
use llm_compress_whitening_svd::{
    closed_form_update, closed_form_update_f64, plain_svd_f64, robust_cholesky, whitened_svd,
    whitened_svd_f64, Asvd, CholeskyOptions, PlainSvd, SvdLlm, UpdateAccumulator,
};

// ---------------------------------------------------------------------------------------------
// helpers

fn mul(a: MatRef<'_, f64>, b: MatRef<'_, f64>) -> Mat<f64> {
    let mut c = Mat::<f64>::zeros(a.nrows(), b.ncols());
    matmul(c.as_mut(), Accum::Replace, a, b, 1.0, Par::Seq);
    c
}

fn gram(x: MatRef<'_, f64>) -> Mat<f64> {
    mul(x, x.transpose())
}

fn normal(rng: &mut SplitMix64, m: usize, n: usize) -> Mat<f64> {
    Mat::<f64>::from_fn(m, n, |_, _| rng.normal())
}

/// `f32`-representable normal matrix, widened to f64 (so f32 and f64 paths see the same data).
fn normal_f32(rng: &mut SplitMix64, m: usize, n: usize) -> Mat<f64> {
    Mat::<f64>::from_fn(m, n, |_, _| rng.normal() as f32 as f64)
}

/// `X = diag(s) · R` with `s_i = 10^(-decades · i/(n-1))`: anisotropic inputs, tokens as
/// columns.
fn anisotropic_x(rng: &mut SplitMix64, n: usize, t: usize, decades: f64) -> Mat<f64> {
    Mat::<f64>::from_fn(n, t, |i, _| {
        10f64.powf(-decades * i as f64 / (n - 1) as f64) * rng.normal() as f32 as f64
    })
}

fn f32_of(m: MatRef<'_, f64>) -> Mat<f32> {
    Mat::<f32>::from_fn(m.nrows(), m.ncols(), |i, j| m[(i, j)] as f32)
}

fn f64_of(m: MatRef<'_, f32>) -> Mat<f64> {
    Mat::<f64>::from_fn(m.nrows(), m.ncols(), |i, j| m[(i, j)] as f64)
}

/// `‖(W − W')X‖_F²` in f64.
fn out_err(w: MatRef<'_, f64>, wp: MatRef<'_, f64>, x: MatRef<'_, f64>) -> f64 {
    let e = w - wp;
    mul(e.as_ref(), x).squared_norm_l2()
}

fn rel(a: MatRef<'_, f64>, b: MatRef<'_, f64>) -> f64 {
    (a - b).norm_l2() / b.norm_l2()
}

fn id(kind: LinearKind) -> LinearId {
    LinearId { layer: 3, kind }
}

fn factors(lin: &Linear) -> (Mat<f64>, Mat<f64>) {
    match lin {
        Linear::LowRank { first, second } => match (&**first, &**second) {
            (Linear::Dense(f), Linear::Dense(s)) => (f64_of(f.as_ref()), f64_of(s.as_ref())),
            _ => panic!("factors must be dense"),
        },
        other => panic!("expected a low-rank linear, got {}", other.describe()),
    }
}

fn dense(lin: &Linear) -> Mat<f64> {
    f64_of(lin.to_dense().as_ref())
}

fn all_finite(lin: &Linear) -> bool {
    let (f, s) = factors(lin);
    f.as_ref().is_all_finite() && s.as_ref().is_all_finite()
}

fn stats_of(x: MatRef<'_, f64>, req: StatsRequest) -> InputStats {
    let mut acc = GramAccumulator::new(x.nrows(), req);
    acc.add(f32_of(x).as_ref());
    acc.finish()
}

const ALL_STATS: StatsRequest = StatsRequest {
    gram: true,
    channel_norms: false,
    abs_sums: true,
};

// ---------------------------------------------------------------------------------------------
// §1.3 / §2.11: the defining identity

#[test]
fn output_error_equals_dropped_energy_exactly_in_f64() {
    // ‖(W − W')X‖_F² = Σ_{i>k} σᵢ², relative tolerance 1e-8 (f64 path, G = X Xᵀ exactly).
    let mut rng = SplitMix64::new(11);
    for &(m, n, k, decades, mixed) in &[
        (24, 40, 7, 2.0, false),
        (48, 32, 12, 3.0, false),
        (30, 30, 1, 1.0, true),
        (20, 36, 19, 2.0, true),
    ] {
        let t = 3 * n;
        let mut x = anisotropic_x(&mut rng, n, t, decades);
        if mixed {
            // Correlated channels: X ← M X with a random mixing M.
            let mix = normal(&mut rng, n, n);
            x = mul(mix.as_ref(), x.as_ref());
        }
        let w = normal(&mut rng, m, n);
        let g = gram(x.as_ref());
        let f = whitened_svd_f64(w.as_ref(), g.as_ref(), k, &CholeskyOptions::default()).unwrap();
        let rep = f.cholesky.as_ref().unwrap();
        assert!(rep.direct && !rep.regularised(), "{rep:?}");
        assert_eq!(f.rank(), k);
        assert_eq!(f.sigma.len(), m.min(n));
        let err = out_err(w.as_ref(), f.reconstruct().as_ref(), x.as_ref());
        let dropped = f.dropped_energy();
        let r = (err - dropped).abs() / dropped;
        assert!(
            r < 1e-8,
            "m={m} n={n} k={k}: err {err} vs Σ_(i>k) σ² {dropped} (rel {r:e})"
        );
        // And the total energy is the output energy ‖W X‖² (1e-10 relative).
        let total = mul(w.as_ref(), x.as_ref()).squared_norm_l2();
        assert!((f.total_energy() - total).abs() / total < 1e-10);
    }
}

#[test]
fn whitened_svd_beats_plain_svd_on_anisotropic_inputs() {
    // Through the f32 compressors. SVD-LLM is the optimal rank-k map for this loss, so it must
    // be strictly better; with 3 decades of anisotropy it should be at least 2× better.
    // The f32 compressor's error must also match Σ_{i>k}σ² to 1e-3 relative (f32 factors).
    let mut rng = SplitMix64::new(5);
    let (m, n, t) = (40, 48, 200);
    let x = anisotropic_x(&mut rng, n, t, 3.0);
    let w = normal_f32(&mut rng, m, n);
    let stats = stats_of(x.as_ref(), ALL_STATS);
    let ratio = 0.4;
    let llm = SvdLlm::new(ratio)
        .compress(id(LinearKind::Up), f32_of(w.as_ref()).as_ref(), &stats)
        .unwrap();
    let plain = PlainSvd::new(ratio)
        .compress(id(LinearKind::Up), f32_of(w.as_ref()).as_ref(), &stats)
        .unwrap();
    assert_eq!(llm.rank(), plain.rank());
    let e_llm = out_err(w.as_ref(), dense(&llm).as_ref(), x.as_ref());
    let e_plain = out_err(w.as_ref(), dense(&plain).as_ref(), x.as_ref());
    assert!(
        e_llm < 0.5 * e_plain,
        "svd-llm {e_llm} vs plain svd {e_plain}"
    );
    let f = SvdLlm::new(ratio)
        .factorize(id(LinearKind::Up), f32_of(w.as_ref()).as_ref(), &stats)
        .unwrap();
    let dropped = f.dropped_energy();
    assert!(
        (e_llm - dropped).abs() / dropped < 1e-3,
        "f32 factors: {e_llm} vs {dropped}"
    );
}

// ---------------------------------------------------------------------------------------------
// §1.2: robust Cholesky

#[test]
fn dead_channel_gram_still_factors_and_result_is_finite() {
    // Channel 5 is zero on every token → zero row/column in G. Expect: one dead channel fixed,
    // no eigen-shift, L Lᵀ = G except (5,5) = 1 (1e-12 relative), finite factors, and the
    // output error on X bounded by Σ_{i>k}σ² (relative slack 1e-9; equality is lost because
    // the fixed Gram is not X Xᵀ, but X Xᵀ ≼ G_fixed keeps the bound).
    let mut rng = SplitMix64::new(21);
    let (m, n, t) = (16, 20, 80);
    let mut x = anisotropic_x(&mut rng, n, t, 1.0);
    for c in 0..t {
        x[(5, c)] = 0.0;
    }
    let g = gram(x.as_ref());
    let (l, rep) = robust_cholesky(g.as_ref(), &CholeskyOptions::default()).unwrap();
    assert_eq!(rep.dead_channels, 1);
    assert!(rep.direct && rep.shift == 0.0, "{rep:?}");
    assert!(l.as_ref().is_all_finite());
    let mut g_fixed = g.clone();
    g_fixed[(5, 5)] = 1.0;
    assert!(rel(gram(l.as_ref()).as_ref(), g_fixed.as_ref()) < 1e-12);

    let w = normal_f32(&mut rng, m, n);
    let stats = stats_of(x.as_ref(), ALL_STATS);
    let lin = SvdLlm::new(0.3)
        .compress(id(LinearKind::Down), f32_of(w.as_ref()).as_ref(), &stats)
        .unwrap();
    assert!(all_finite(&lin));

    let k = svd_llm_rank(m, n, 0.3);
    let f = whitened_svd_f64(w.as_ref(), g.as_ref(), k, &CholeskyOptions::default()).unwrap();
    let err = out_err(w.as_ref(), f.reconstruct().as_ref(), x.as_ref());
    assert!(
        err <= f.dropped_energy() * (1.0 + 1e-9),
        "{err} > {}",
        f.dropped_energy()
    );
}

#[test]
fn rank_deficient_gram_triggers_eigen_shift_and_stays_finite() {
    // T = 12 < n = 32 → G has rank 12. Expect: the direct factorisation is rejected, λ_min is
    // computed (≈ 0, |λ_min| < 1e-9·trace/n), the shift makes λ_min = ε exactly
    // (shift = ε − λ_min to 1e-12 relative), L Lᵀ = G + shift·I (1e-12 relative), finite
    // factors, and the output error on X ≤ Σ_{i>k}σ² (relative slack 1e-9).
    let mut rng = SplitMix64::new(33);
    let (m, n, t) = (24, 32, 12);
    let x = anisotropic_x(&mut rng, n, t, 1.0);
    let g = gram(x.as_ref());
    let opts = CholeskyOptions::default();
    let (l, rep) = robust_cholesky(g.as_ref(), &opts).unwrap();
    assert!(!rep.direct, "{rep:?}");
    assert!(rep.failure.is_some());
    let trace: f64 = (0..n).map(|j| g[(j, j)]).sum();
    let eps = (1e-6f64).max(1e-8 * trace / n as f64);
    assert_eq!(rep.eps, eps);
    let lmin = rep.lambda_min.unwrap();
    assert!(lmin.abs() < 1e-9 * trace / n as f64, "λ_min = {lmin}");
    assert!((rep.shift - (eps - lmin)).abs() <= 1e-12 * eps, "{rep:?}");
    assert_eq!(rep.attempts, 2);
    assert!(l.as_ref().is_all_finite());
    let mut g_shift = g.clone();
    for j in 0..n {
        g_shift[(j, j)] += rep.shift;
    }
    assert!(rel(gram(l.as_ref()).as_ref(), g_shift.as_ref()) < 1e-12);

    let w = normal_f32(&mut rng, m, n);
    let stats = stats_of(x.as_ref(), ALL_STATS);
    let lin = SvdLlm::new(0.2)
        .compress(id(LinearKind::Q), f32_of(w.as_ref()).as_ref(), &stats)
        .unwrap();
    assert!(all_finite(&lin));
    let k = svd_llm_rank(m, n, 0.2);
    let f = whitened_svd_f64(w.as_ref(), g.as_ref(), k, &opts).unwrap();
    let err = out_err(w.as_ref(), f.reconstruct().as_ref(), x.as_ref());
    assert!(
        err <= f.dropped_energy() * (1.0 + 1e-9),
        "{err} > {}",
        f.dropped_energy()
    );
}

#[test]
fn non_finite_or_misshapen_inputs_are_errors() {
    let w = Mat::<f32>::from_fn(4, 6, |i, j| (i + j) as f32);
    let mut g = Mat::<f64>::identity(6, 6);
    g[(2, 2)] = f64::INFINITY;
    assert!(matches!(
        whitened_svd(w.as_ref(), g.as_ref(), 2),
        Err(CoreError::Numerical { .. })
    ));
    let g = Mat::<f64>::identity(5, 5);
    assert!(matches!(
        whitened_svd(w.as_ref(), g.as_ref(), 2),
        Err(CoreError::Shape { .. })
    ));
    let mut wn = w.clone();
    wn[(0, 0)] = f32::NAN;
    let g = Mat::<f64>::identity(6, 6);
    assert!(matches!(
        whitened_svd(wn.as_ref(), g.as_ref(), 2),
        Err(CoreError::Numerical { .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// §2.4: budget → rank, per shape (GQA)

#[test]
fn ranks_follow_the_budget_formula_per_matrix_shape() {
    // SmolLM2-135M shapes at ratio 0.2: q 576×576 → 230, k/v 192×576 → 115, gate 1536×576 →
    // 335 (⌊m·n·0.8/(m+n)⌋), exactly; the stored parameters are ≤ 0.8·m·n.
    let mut rng = SplitMix64::new(2);
    let n = 576;
    let stats = InputStats::from_gram(Mat::<f64>::identity(n, n), n as u64);
    let svd_llm = SvdLlm::new(0.2);
    let mut ranks = Vec::new();
    for (kind, m, want) in [
        (LinearKind::Q, 576, 230),
        (LinearKind::K, 192, 115),
        (LinearKind::Gate, 1536, 335),
    ] {
        let w = Mat::<f32>::from_fn(m, n, |_, _| rng.normal() as f32);
        let lin = svd_llm.compress(id(kind), w.as_ref(), &stats).unwrap();
        assert_eq!(lin.rank(), Some(svd_llm_rank(m, n, 0.2)));
        assert_eq!(lin.rank(), Some(want), "{kind:?}");
        assert_eq!(lin.shape(), (m, n));
        assert!(lin.param_count() as f64 <= 0.8 * (m * n) as f64);
        ranks.push(want);
    }
    assert_ne!(ranks[0], ranks[1], "k must not get q's rank");
}

// ---------------------------------------------------------------------------------------------
// G ∝ I reduces SVD-LLM to plain SVD

#[test]
fn identity_gram_makes_svd_llm_equal_plain_svd() {
    // G = c·I for c over 12 decades: W'_svdllm = W'_svd to 1e-10 relative in f64, and to 1e-5
    // relative through the f32 compressors.
    let mut rng = SplitMix64::new(8);
    let (m, n) = (18, 26);
    let w = normal_f32(&mut rng, m, n);
    let k = 7;
    let plain = plain_svd_f64(w.as_ref(), k).unwrap().reconstruct();
    let plain32 = dense(
        &PlainSvd::new(0.5)
            .compress(
                id(LinearKind::O),
                f32_of(w.as_ref()).as_ref(),
                &InputStats::from_gram(Mat::identity(n, n), 1),
            )
            .unwrap(),
    );
    for c in [1e-3, 1.0, 7.5, 1e9] {
        let g = Mat::<f64>::from_fn(n, n, |i, j| if i == j { c } else { 0.0 });
        let f = whitened_svd_f64(w.as_ref(), g.as_ref(), k, &CholeskyOptions::default()).unwrap();
        assert!(f.cholesky.as_ref().unwrap().direct);
        let r = rel(f.reconstruct().as_ref(), plain.as_ref());
        assert!(r < 1e-10, "c = {c}: {r:e}");
        let lin = SvdLlm::new(0.5)
            .compress(
                id(LinearKind::O),
                f32_of(w.as_ref()).as_ref(),
                &InputStats::from_gram(g.clone(), 1),
            )
            .unwrap();
        let r32 = rel(dense(&lin).as_ref(), plain32.as_ref());
        assert!(r32 < 1e-5, "c = {c}: f32 {r32:e}");
    }
}

// ---------------------------------------------------------------------------------------------
// §2.3: the √Σ split

#[test]
fn sqrt_sigma_split_between_the_factors() {
    // second = U_k √Σ_k: secondᵀ·second = diag(σ_1..σ_k) (f32 factors: 1e-5·σ_1 absolute);
    // first = √Σ_k V_kᵀ L⁻¹: first·G·firstᵀ = diag(σ_1..σ_k) (f64 path: 1e-10·σ_1 absolute).
    let mut rng = SplitMix64::new(13);
    let (m, n, t) = (20, 28, 100);
    let x = anisotropic_x(&mut rng, n, t, 2.0);
    let g = gram(x.as_ref());
    let w = normal_f32(&mut rng, m, n);
    let stats = InputStats::from_gram(g.clone(), t as u64);
    let c = SvdLlm::new(0.3);
    let f = c
        .factorize(id(LinearKind::V), f32_of(w.as_ref()).as_ref(), &stats)
        .unwrap();
    let k = f.rank();
    let sig = &f.sigma;

    let lin = c
        .compress(id(LinearKind::V), f32_of(w.as_ref()).as_ref(), &stats)
        .unwrap();
    let (first32, second32) = factors(&lin);
    let sts = mul(second32.transpose(), second32.as_ref());
    let fgf = {
        let first = f.first();
        let fg = mul(first.as_ref(), g.as_ref());
        mul(fg.as_ref(), first.transpose())
    };
    for i in 0..k {
        for j in 0..k {
            let want = if i == j { sig[i] } else { 0.0 };
            assert!(
                (sts[(i, j)] - want).abs() <= 1e-5 * sig[0],
                "secondᵀsecond[{i},{j}] = {} vs {want}",
                sts[(i, j)]
            );
            assert!(
                (fgf[(i, j)] - want).abs() <= 1e-10 * sig[0],
                "first G firstᵀ[{i},{j}] = {} vs {want}",
                fgf[(i, j)]
            );
        }
    }
    // The f32 first factor is the f64 one, rounded (1e-5 relative).
    assert!(rel(first32.as_ref(), f.first().as_ref()) < 1e-5);
}

// ---------------------------------------------------------------------------------------------
// §2.5(a): the closed-form update

/// The SVD-LLM factors of `w` for inputs `x` (f64 path).
fn svd_llm_factors(w: &Mat<f64>, x: &Mat<f64>, k: usize) -> (Mat<f64>, Mat<f64>) {
    let f = whitened_svd_f64(
        w.as_ref(),
        gram(x.as_ref()).as_ref(),
        k,
        &CholeskyOptions::default(),
    )
    .unwrap();
    (f.first(), f.second())
}

fn lowrank_err(
    second: MatRef<'_, f64>,
    first: MatRef<'_, f64>,
    w: MatRef<'_, f64>,
    x: MatRef<'_, f64>,
) -> f64 {
    out_err(w, mul(second, first).as_ref(), x)
}

#[test]
fn closed_form_update_never_increases_error_on_its_tokens() {
    // Factors from the original inputs X; update on the compressed-prefix inputs X̃ = X + noise.
    // On X̃'s tokens: err(updated) ≤ err(original second) (relative slack 1e-9, for the ridge)
    // and strictly below, since X̃ ≠ X makes the old second suboptimal. With G̃ = G the SVD-LLM second is already the
    // least-squares optimum: the update returns it to 1e-5 relative (ridge 1e-6·trace/k).
    let mut rng = SplitMix64::new(44);
    let (m, n, t, k) = (20, 24, 120, 8);
    let x = anisotropic_x(&mut rng, n, t, 2.0);
    let w = normal_f32(&mut rng, m, n);
    let (first, second0) = svd_llm_factors(&w, &x, k);

    for (seed, noise) in [(1u64, 0.05), (2, 0.3), (3, 1.0)] {
        let mut r2 = SplitMix64::new(seed);
        let xt = Mat::<f64>::from_fn(n, t, |i, c| {
            x[(i, c)] + noise * r2.normal() / (1 + i) as f64
        });
        let gt = gram(xt.as_ref());
        let second = closed_form_update_f64(first.as_ref(), w.as_ref(), gt.as_ref()).unwrap();
        let before = lowrank_err(second0.as_ref(), first.as_ref(), w.as_ref(), xt.as_ref());
        let after = lowrank_err(second.as_ref(), first.as_ref(), w.as_ref(), xt.as_ref());
        assert!(
            after <= before * (1.0 + 1e-9),
            "noise {noise}: {after} > {before}"
        );
        assert!(after < before, "noise {noise}: {after} vs {before}");
    }

    let same =
        closed_form_update_f64(first.as_ref(), w.as_ref(), gram(x.as_ref()).as_ref()).unwrap();
    let r = rel(same.as_ref(), second0.as_ref());
    assert!(r < 1e-5, "{r:e}");
}

#[test]
fn closed_form_update_equals_direct_least_squares() {
    // Small sizes, explicit X̃: the Gram route equals a QR least-squares solve of
    // min_S ‖S·(F X̃) − W X̃‖ to 1e-5 relative (the ridge 1e-6·trace/k perturbs it by ~1e-6),
    // and the streaming
    // accumulator over 3 batches equals the Gram route to 1e-10 relative.
    let mut rng = SplitMix64::new(99);
    let (m, n, t, k) = (8, 10, 50, 4);
    let w = normal_f32(&mut rng, m, n);
    let x = anisotropic_x(&mut rng, n, t, 1.0);
    let (first, _) = svd_llm_factors(&w, &x, k);
    let first = f64_of(f32_of(first.as_ref()).as_ref()); // f32-representable
    let xt = Mat::<f64>::from_fn(n, t, |i, c| (x[(i, c)] + 0.2 * rng.normal()) as f32 as f64);

    // Direct least squares: (F X̃)ᵀ Sᵀ ≈ (W X̃)ᵀ.
    let zt = mul(first.as_ref(), xt.as_ref()).transpose().to_owned(); // T × k
    let yt = mul(w.as_ref(), xt.as_ref()).transpose().to_owned(); // T × m
    let direct = zt.qr().solve_lstsq(yt.as_ref()).transpose().to_owned(); // m × k

    let via_gram =
        closed_form_update_f64(first.as_ref(), w.as_ref(), gram(xt.as_ref()).as_ref()).unwrap();
    let r = rel(via_gram.as_ref(), direct.as_ref());
    assert!(r < 1e-5, "gram route vs lstsq: {r:e}");

    // f32 wrapper agrees (1e-5 relative).
    let via_gram32 = closed_form_update(
        f32_of(first.as_ref()).as_ref(),
        f32_of(w.as_ref()).as_ref(),
        gram(xt.as_ref()).as_ref(),
    )
    .unwrap();
    assert!(rel(f64_of(via_gram32.as_ref()).as_ref(), direct.as_ref()) < 1e-5);

    let mut acc =
        UpdateAccumulator::new(f32_of(first.as_ref()).as_ref(), f32_of(w.as_ref()).as_ref())
            .unwrap();
    let xt32 = f32_of(xt.as_ref());
    for (a, len) in [(0, 17), (17, 20), (37, 13)] {
        acc.add(xt32.as_ref().subcols(a, len)).unwrap();
    }
    assert_eq!(acc.tokens(), t as u64);
    let streamed = acc.solve_f64().unwrap();
    let r = rel(streamed.as_ref(), via_gram.as_ref());
    assert!(r < 1e-10, "streaming vs gram: {r:e}");
    assert!(
        UpdateAccumulator::new(f32_of(first.as_ref()).as_ref(), f32_of(w.as_ref()).as_ref())
            .unwrap()
            .solve()
            .is_err()
    );
}

// ---------------------------------------------------------------------------------------------
// §2.7: ASVD

#[test]
fn asvd_beats_plain_svd_with_outlier_channels() {
    // 4 of 48 input channels carry 30× larger activations (LLM-style outliers). ASVD's
    // activation-aware scaling must give a lower output error than plain SVD (here < 0.5×),
    // and SVD-LLM (optimal) must be at least as good as ASVD (1e-4 relative slack, f32).
    let mut rng = SplitMix64::new(17);
    let (m, n, t) = (40, 48, 300);
    let outliers = [3usize, 17, 30, 41];
    let x = Mat::<f64>::from_fn(n, t, |i, _| {
        let s = if outliers.contains(&i) { 30.0 } else { 1.0 };
        s * rng.normal() as f32 as f64
    });
    let w = normal_f32(&mut rng, m, n);
    let stats = stats_of(x.as_ref(), ALL_STATS);
    let w32 = f32_of(w.as_ref());
    let ratio = 0.5;
    let asvd = Asvd::new(ratio);
    assert_eq!(asvd.alpha, 0.5);
    let e_asvd = out_err(
        w.as_ref(),
        dense(
            &asvd
                .compress(id(LinearKind::Gate), w32.as_ref(), &stats)
                .unwrap(),
        )
        .as_ref(),
        x.as_ref(),
    );
    let e_plain = out_err(
        w.as_ref(),
        dense(
            &PlainSvd::new(ratio)
                .compress(id(LinearKind::Gate), w32.as_ref(), &stats)
                .unwrap(),
        )
        .as_ref(),
        x.as_ref(),
    );
    let e_llm = out_err(
        w.as_ref(),
        dense(
            &SvdLlm::new(ratio)
                .compress(id(LinearKind::Gate), w32.as_ref(), &stats)
                .unwrap(),
        )
        .as_ref(),
        x.as_ref(),
    );
    assert!(e_asvd < 0.5 * e_plain, "asvd {e_asvd} vs plain {e_plain}");
    assert!(
        e_llm <= e_asvd * (1.0 + 1e-4),
        "svd-llm {e_llm} vs asvd {e_asvd}"
    );
}

#[test]
fn asvd_with_a_dead_channel_is_finite() {
    // A channel with zero activations (abs sum 0) must not produce S⁻¹ = ∞.
    let mut rng = SplitMix64::new(3);
    let (m, n, t) = (10, 12, 40);
    let mut x = normal_f32(&mut rng, n, t);
    for c in 0..t {
        x[(4, c)] = 0.0;
    }
    let stats = stats_of(x.as_ref(), ALL_STATS);
    let w = Mat::<f32>::from_fn(m, n, |_, _| rng.normal() as f32);
    let lin = Asvd::new(0.2)
        .compress(id(LinearKind::K), w.as_ref(), &stats)
        .unwrap();
    assert!(all_finite(&lin));
}

// ---------------------------------------------------------------------------------------------
// trait plumbing

#[test]
fn needs_and_missing_statistics() {
    let none = StatsRequest::NONE;
    assert_eq!(
        SvdLlm::new(0.2).needs(),
        StatsRequest { gram: true, ..none }
    );
    assert_eq!(PlainSvd::new(0.2).needs(), none);
    assert_eq!(
        Asvd::new(0.2).needs(),
        StatsRequest {
            abs_sums: true,
            ..none
        }
    );
    assert_eq!(SvdLlm::new(0.2).name(), "svd-llm");
    assert_eq!(PlainSvd::new(0.2).name(), "svd");
    assert_eq!(Asvd::new(0.2).name(), "asvd");

    let w = Mat::<f32>::from_fn(6, 8, |i, j| ((i * 3 + j) % 5) as f32);
    let x = Mat::<f64>::from_fn(8, 20, |i, t| ((i * 7 + t * 3) % 11) as f64 - 5.0);
    let only_abs = stats_of(
        x.as_ref(),
        StatsRequest {
            abs_sums: true,
            ..none
        },
    );
    let only_gram = stats_of(x.as_ref(), StatsRequest { gram: true, ..none });
    let k = id(LinearKind::Q);
    assert!(matches!(
        SvdLlm::new(0.2).compress(k, w.as_ref(), &only_abs),
        Err(CoreError::MissingStats(_))
    ));
    assert!(matches!(
        Asvd::new(0.2).compress(k, w.as_ref(), &only_gram),
        Err(CoreError::MissingStats(_))
    ));
    assert!(matches!(
        PlainSvd::new(1.0).compress(k, w.as_ref(), &only_gram),
        Err(CoreError::Parameter { .. })
    ));
    assert!(PlainSvd::new(0.2)
        .compress(k, w.as_ref(), &only_abs)
        .is_ok());
    assert!(Asvd::new(0.2).compress(k, w.as_ref(), &only_abs).is_ok());
}
