//! The defining properties of the DaSS, Wanda and magnitude masks (ALGORITHMS.md §4.3, §4.4,
//! §4.12).

use llm_compress_core::rng::SplitMix64;
use llm_compress_core::{GroupAxis, Linear, LinearKind, Mat, SparsityPattern};
use llm_compress_glu_sparsity::{PruneMethod, Pruner};

fn random(rows: usize, cols: usize, seed: u64) -> Mat<f32> {
    let mut r = SplitMix64::new(seed);
    // Nonzero weights, so that a zero in the output is a pruned position.
    Mat::from_fn(rows, cols, |_, _| {
        let v = r.normal() as f32;
        if v == 0.0 {
            0.5
        } else {
            v
        }
    })
}

fn norms(n: usize, seed: u64) -> Vec<f64> {
    let mut r = SplitMix64::new(seed);
    // Heavy-tailed, like real activation norms (outlier channels).
    (0..n).map(|_| (3.0 * r.normal()).exp()).collect()
}

fn nm(zeros: usize, group: usize) -> SparsityPattern {
    SparsityPattern::NM { zeros, group }
}

/// Zeros in each group of `group` consecutive positions along `axis`.
fn group_zero_counts(w: &Mat<f32>, axis: GroupAxis, group: usize) -> Vec<usize> {
    let (lines, len) = match axis {
        GroupAxis::Inputs => (w.nrows(), w.ncols()),
        GroupAxis::Outputs => (w.ncols(), w.nrows()),
    };
    let mut out = Vec::new();
    for line in 0..lines {
        for g in (0..len).step_by(group) {
            out.push(
                (g..g + group)
                    .filter(|&p| match axis {
                        GroupAxis::Inputs => w[(line, p)] == 0.0,
                        GroupAxis::Outputs => w[(p, line)] == 0.0,
                    })
                    .count(),
            );
        }
    }
    out
}

#[test]
fn every_group_along_the_right_axis_holds_exactly_n_zeros() {
    // A GLU MLP: gate/up are d_ff × d, down is d × d_ff.
    let (d, d_ff) = (16, 48);
    let gate = random(d_ff, d, 1);
    let down = random(d, d_ff, 2);
    let (x_norms, h_norms) = (norms(d, 3), norms(d_ff, 4));
    for (zeros, group) in [(2, 4), (4, 8), (3, 8), (1, 2)] {
        for method in [
            PruneMethod::Dass,
            PruneMethod::Wanda,
            PruneMethod::Magnitude,
        ] {
            let p = Pruner::new(method, nm(zeros, group));
            for (kind, w, inp) in [
                (LinearKind::Gate, &gate, &x_norms),
                (LinearKind::Up, &gate, &x_norms),
                (LinearKind::Down, &down, &h_norms),
            ] {
                let lin = p.prune(kind, w.as_ref(), inp, &h_norms).unwrap();
                let dense = lin.to_dense();
                let axis = p.axis(kind);
                let want_axis = if method == PruneMethod::Dass && kind != LinearKind::Down {
                    GroupAxis::Outputs
                } else {
                    GroupAxis::Inputs
                };
                assert_eq!(axis, want_axis);
                let counts = group_zero_counts(&dense, axis, group);
                assert!(
                    counts.iter().all(|&c| c == zeros),
                    "{method:?} {kind:?} {zeros}:{group}: {counts:?}"
                );
                // Kept weights are the original values.
                for i in 0..w.nrows() {
                    for j in 0..w.ncols() {
                        assert!(dense[(i, j)] == 0.0 || dense[(i, j)] == w[(i, j)]);
                    }
                }
                assert_eq!(
                    lin.param_count(),
                    w.nrows() * w.ncols() * (group - zeros) / group
                );
            }
        }
    }
}

#[test]
fn wanda_prunes_the_lowest_weight_times_input_norm_in_each_group() {
    // One row, two groups of 4; input norms ‖X_j‖ = 1, 2, 3, 4, 1, 1, 1, 10.
    let w = Mat::<f32>::from_fn(1, 8, |_, j| [4.0, -1.0, 0.5, 0.3, 1.0, -2.0, 3.0, 0.2][j]);
    let sq: Vec<f64> = [1.0f64, 2.0, 3.0, 4.0, 1.0, 1.0, 1.0, 10.0]
        .iter()
        .map(|v| v * v)
        .collect();
    // Scores: 4, 2, 1.5, 1.2 | 1, 2, 3, 2 → prune positions 2, 3 and 4, then 1 (ties: lower).
    let m = Pruner::new(PruneMethod::Wanda, nm(2, 4))
        .mask(LinearKind::Q, w.as_ref(), &sq, &[])
        .unwrap();
    let kept: Vec<bool> = (0..8).map(|j| m.is_kept(0, j)).collect();
    assert_eq!(
        kept,
        [true, true, false, false, false, false, true, true],
        "tie 2 vs 2 at positions 5 and 7: the lower position is pruned"
    );
}

#[test]
fn dass_scores_gate_rows_by_the_intermediate_norm_to_the_power_alpha() {
    // gate: 4 intermediate channels × 1 input column, one group of 4 along the column.
    let w = Mat::<f32>::from_fn(4, 1, |i, _| [1.0, 2.0, 3.0, 4.0][i]);
    // ‖h_i‖ = 16, 1, 1, 1: with α = 0.5 the scores are 4, 2, 3, 4 → prune rows 1 and 2.
    let h_sq = [256.0, 1.0, 1.0, 1.0];
    let p = Pruner::new(PruneMethod::Dass, nm(2, 4));
    let m = p.mask(LinearKind::Up, w.as_ref(), &[1.0], &h_sq).unwrap();
    assert_eq!(
        (0..4).map(|i| m.is_kept(i, 0)).collect::<Vec<_>>(),
        [true, false, false, true]
    );
    // α = 0 is plain magnitude along the column: prune rows 0 and 1.
    let p0 = Pruner { alpha: 0.0, ..p };
    let m0 = p0.mask(LinearKind::Up, w.as_ref(), &[1.0], &h_sq).unwrap();
    assert_eq!(
        (0..4).map(|i| m0.is_kept(i, 0)).collect::<Vec<_>>(),
        [false, false, true, true]
    );
    // No input-activation factor: the input norm does not matter.
    let m1 = p.mask(LinearKind::Up, w.as_ref(), &[1e6], &h_sq).unwrap();
    assert_eq!(m, m1);
}

#[test]
fn scaling_the_activation_norms_leaves_the_masks_unchanged() {
    let (d, d_ff) = (32, 64);
    let gate = random(d_ff, d, 11);
    let down = random(d, d_ff, 12);
    let (x_norms, h_norms) = (norms(d, 13), norms(d_ff, 14));
    let scale = |v: &[f64], c: f64| v.iter().map(|x| x * c).collect::<Vec<_>>();
    for pattern in [nm(2, 4), nm(4, 8), SparsityPattern::Unstructured] {
        for method in [PruneMethod::Dass, PruneMethod::Wanda] {
            let p = Pruner::new(method, pattern);
            for (kind, w, inp) in [
                (LinearKind::Gate, &gate, &x_norms),
                (LinearKind::Down, &down, &h_norms),
            ] {
                let base = p.mask(kind, w.as_ref(), inp, &h_norms).unwrap();
                // 1/128: the reference's division by the number of sequences; and odd factors.
                for c in [1.0 / 128.0, 1.0 / 3.0, 1234.5] {
                    let (inp_c, h_c) = (scale(inp, c), scale(&h_norms, c));
                    let m = p.mask(kind, w.as_ref(), &inp_c, &h_c).unwrap();
                    assert_eq!(m, base, "{method:?} {kind:?} {pattern} c = {c}");
                }
            }
        }
    }
}

#[test]
fn dass_down_proj_mask_equals_wanda_mask() {
    let (d, d_ff) = (24, 96);
    let down = random(d, d_ff, 21);
    let h_norms = norms(d_ff, 22);
    for pattern in [nm(2, 4), nm(4, 8), SparsityPattern::Unstructured] {
        let dass = Pruner::new(PruneMethod::Dass, pattern)
            .mask(LinearKind::Down, down.as_ref(), &h_norms, &h_norms)
            .unwrap();
        let wanda = Pruner::new(PruneMethod::Wanda, pattern)
            .mask(LinearKind::Down, down.as_ref(), &h_norms, &[])
            .unwrap();
        assert_eq!(dass, wanda, "{pattern}");
        // ... while on gate the two metrics differ (different axis and factor).
        let gate = random(d_ff, d, 23);
        let x_norms = norms(d, 24);
        let dg = Pruner::new(PruneMethod::Dass, pattern)
            .mask(LinearKind::Gate, gate.as_ref(), &x_norms, &h_norms)
            .unwrap();
        let wg = Pruner::new(PruneMethod::Wanda, pattern)
            .mask(LinearKind::Gate, gate.as_ref(), &x_norms, &h_norms)
            .unwrap();
        assert_ne!(dg, wg, "{pattern}");
    }
}

#[test]
fn unstructured_prunes_floor_s_n_per_line_and_magnitude_per_matrix() {
    let w = random(20, 30, 31);
    let (x, h) = (norms(30, 32), norms(20, 33));
    for s in [0.5, 0.3, 0.77] {
        let wanda = Pruner {
            sparsity: s,
            ..Pruner::new(PruneMethod::Wanda, SparsityPattern::Unstructured)
        };
        let d = wanda
            .prune(LinearKind::O, w.as_ref(), &x, &[])
            .unwrap()
            .to_dense();
        let per_row = (s * 30.0).floor() as usize;
        for i in 0..20 {
            assert_eq!((0..30).filter(|&j| d[(i, j)] == 0.0).count(), per_row);
        }
        let dass = Pruner {
            sparsity: s,
            ..Pruner::new(PruneMethod::Dass, SparsityPattern::Unstructured)
        };
        let d = dass
            .prune(LinearKind::Gate, w.as_ref(), &x, &h)
            .unwrap()
            .to_dense();
        let per_col = (s * 20.0).floor() as usize;
        for j in 0..30 {
            assert_eq!((0..20).filter(|&i| d[(i, j)] == 0.0).count(), per_col);
        }
        let mag = Pruner {
            sparsity: s,
            ..Pruner::new(PruneMethod::Magnitude, SparsityPattern::Unstructured)
        };
        let m = mag.mask(LinearKind::Gate, w.as_ref(), &x, &h).unwrap();
        assert_eq!(m.pruned(), (s * 600.0).floor() as usize);
        // One threshold: every kept |w| is at least every pruned |w|.
        let (mut kept_min, mut pruned_max) = (f32::INFINITY, 0f32);
        for i in 0..20 {
            for j in 0..30 {
                let a = w[(i, j)].abs();
                if m.is_kept(i, j) {
                    kept_min = kept_min.min(a);
                } else {
                    pruned_max = pruned_max.max(a);
                }
            }
        }
        assert!(kept_min >= pruned_max);
    }
}

#[test]
fn packed_forward_equals_dense_forward_of_the_masked_weight() {
    let gate = random(64, 40, 41);
    let (x, h) = (norms(40, 42), norms(64, 43));
    let xs = random(40, 70, 44);
    for method in [PruneMethod::Dass, PruneMethod::Wanda] {
        for pattern in [nm(2, 4), nm(4, 8), SparsityPattern::Unstructured] {
            let lin = Pruner::new(method, pattern)
                .prune(LinearKind::Gate, gate.as_ref(), &x, &h)
                .unwrap();
            assert!(matches!(lin, Linear::Sparse(_)));
            let y = lin.apply(xs.as_ref());
            let yd = Linear::Dense(lin.to_dense()).apply(xs.as_ref());
            for t in 0..70 {
                for i in 0..64 {
                    let tol = 1e-5 * yd[(i, t)].abs().max(1.0);
                    assert!((y[(i, t)] - yd[(i, t)]).abs() <= tol);
                }
            }
        }
    }
}

#[test]
fn bad_parameters_and_statistics_are_errors() {
    let w = random(8, 12, 51);
    let p = Pruner::new(PruneMethod::Wanda, nm(2, 4));
    // Wrong number of norms.
    assert!(p.mask(LinearKind::Q, w.as_ref(), &[1.0; 5], &[]).is_err());
    // DaSS needs the intermediate norms of gate/up.
    let dass = Pruner::new(PruneMethod::Dass, nm(2, 4));
    assert!(dass
        .mask(LinearKind::Gate, w.as_ref(), &[1.0; 12], &[])
        .is_err());
    // Negative or non-finite norms.
    let mut bad = vec![1.0; 12];
    bad[3] = f64::NAN;
    assert!(p.mask(LinearKind::Q, w.as_ref(), &bad, &[]).is_err());
    // Line length not a multiple of M.
    let p8 = Pruner::new(PruneMethod::Wanda, nm(4, 8));
    assert!(p8.mask(LinearKind::Q, w.as_ref(), &[1.0; 12], &[]).is_err());
    // N:M fixes the sparsity; unstructured needs [0, 1).
    let off = Pruner { sparsity: 0.6, ..p };
    assert!(off
        .mask(LinearKind::Q, w.as_ref(), &[1.0; 12], &[])
        .is_err());
    let u = Pruner {
        sparsity: 1.0,
        ..Pruner::new(PruneMethod::Wanda, SparsityPattern::Unstructured)
    };
    assert!(u.mask(LinearKind::Q, w.as_ref(), &[1.0; 12], &[]).is_err());
}
