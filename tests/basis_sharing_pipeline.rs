//! Basis Sharing over the group-streamed walk on a tiny random Llama (2 layers, GQA): budget,
//! sharing restored on load, file size, dense export, g = 1 against SVD-LLM.

use llm_compress::basis_sharing::{compress_basis_sharing, predicted_params, BasisSharingOptions};
use llm_compress::export::{write_compact, write_dense, OutputLayers};
use llm_compress::lowrank::{compress_low_rank, CalibrationText, LowRankMethod, LowRankOptions};
use llm_compress_core::rng::SplitMix64;
use llm_compress_core::{Linear, LinearKind};
use llm_compress_eval::testing::{random_weights, write_tiny_safetensors, V};
use llm_compress_eval::{CalibrationConfig, Model, StatsFrom};
use llm_compress_tensor_io::compact::LinearRepr;
use llm_compress_tensor_io::Checkpoint;
use std::path::Path;
use std::sync::Arc;

fn tiny(dir: &Path, tied: bool) -> Checkpoint {
    write_tiny_safetensors(dir, &random_weights(33, tied), tied).unwrap();
    Checkpoint::open(dir).unwrap()
}

fn calibration() -> (CalibrationConfig, CalibrationText) {
    let mut rng = SplitMix64::new(9);
    let text: Vec<u32> = (0..4000).map(|_| rng.below(V as u64) as u32).collect();
    let cfg = CalibrationConfig {
        windows: 4,
        seq_len: 64,
        seed: 1,
    };
    (cfg, CalibrationText::Tokens(text))
}

fn options(ratio: f64, group_size: usize) -> BasisSharingOptions {
    let mut o = BasisSharingOptions::new(ratio);
    o.group_size = group_size;
    (o.calibration, o.calibration_text) = calibration();
    o
}

fn max_abs_diff(a: &faer::Mat<f32>, b: &faer::Mat<f32>) -> f32 {
    assert_eq!(a.shape(), b.shape());
    let mut m = 0.0f32;
    for j in 0..a.ncols() {
        for i in 0..a.nrows() {
            m = m.max((a[(i, j)] - b[(i, j)]).abs());
        }
    }
    m
}

/// Bytes of tensor data in a safetensors file (the file minus its length prefix and header).
fn tensor_data_bytes(path: &Path) -> u64 {
    let bytes = std::fs::read(path).unwrap();
    let header = u64::from_le_bytes(bytes[..8].try_into().unwrap());
    bytes.len() as u64 - 8 - header
}

fn write(ckpt: &Checkpoint, out: &OutputLayers, dir: &Path, before: usize) {
    write_compact(
        ckpt,
        out,
        dir,
        serde_json::json!({"name": "test"}),
        serde_json::Value::Null,
        before,
    )
    .unwrap();
}

const PROBE: [u32; 10] = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3];

#[test]
fn shared_export_stores_each_basis_once_and_reloads_the_sharing() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = tiny(dir.path(), false);
    let opts = options(0.3, 2);
    let (out, report) = compress_basis_sharing(&ckpt, &opts, |_| {}).unwrap();
    assert_eq!(report.groups, vec![0..2]);
    // Shared kinds read one basis per group; private ones are SVD-LLM factors.
    for kind in LinearKind::ALL {
        let (a, b) = (out.layers[0].linear(kind), out.layers[1].linear(kind));
        if opts.shared.contains(&kind) {
            assert!(Arc::ptr_eq(
                a.shared_basis().unwrap(),
                b.shared_basis().unwrap()
            ));
        } else {
            assert!(matches!(a, Linear::LowRank { .. }), "{kind:?}");
        }
    }
    let predicted = predicted_params(&ckpt.config, &opts).unwrap();
    assert_eq!(report.linear_params_after, predicted);
    let kept = report.linear_params_after as f64 / report.linear_params_before as f64;
    assert!(kept <= 0.7 && kept > 0.6, "kept {kept}");
    let model_logits = {
        let out_dir = tempfile::tempdir().unwrap();
        write(&ckpt, &out, out_dir.path(), report.linear_params_before);
        let model = out.into_model();
        assert_eq!(model.linear_params(), predicted);
        let logits = model.logits(&PROBE).unwrap();

        let back = Checkpoint::open(out_dir.path()).unwrap();
        let m = back.manifest.as_ref().unwrap();
        assert_eq!(m.linear_params_after, predicted);
        match &m.linears["layers.1.q"] {
            LinearRepr::Shared { group, basis, .. } => {
                assert_eq!(group, &["layers.0.q".to_string(), "layers.1.q".to_string()]);
                assert_eq!(
                    Some(basis.as_ref()),
                    match &m.linears["layers.0.q"] {
                        LinearRepr::Shared { basis, .. } => Some(basis.as_ref()),
                        _ => None,
                    }
                );
            }
            other => panic!("layers.1.q stored as {other:?}"),
        }
        let reloaded = Model::load(&back).unwrap();
        for kind in opts.shared.iter().copied() {
            let (a, b) = (
                reloaded.layers[0].linear(kind),
                reloaded.layers[1].linear(kind),
            );
            assert!(
                Arc::ptr_eq(a.shared_basis().unwrap(), b.shared_basis().unwrap()),
                "{kind:?}: one buffer after loading, not copies"
            );
        }
        assert_eq!(reloaded.linear_params(), predicted);
        assert_eq!(
            max_abs_diff(&logits, &reloaded.logits(&PROBE).unwrap()),
            0.0
        );
        tensor_data_bytes(&out_dir.path().join("model.safetensors"))
    };
    // The file is smaller than SVD-LLM's at the same ratio by exactly the parameters sharing
    // saves (4 bytes each): every other tensor is the same.
    let mut lo = LowRankOptions::new(LowRankMethod::SvdLlm, 0.3);
    (lo.calibration, lo.calibration_text) = calibration();
    let (svd_out, svd_report) = compress_low_rank(&ckpt, &lo, |_| {}).unwrap();
    let svd_dir = tempfile::tempdir().unwrap();
    write(
        &ckpt,
        &svd_out,
        svd_dir.path(),
        svd_report.linear_params_before,
    );
    let svd_bytes = tensor_data_bytes(&svd_dir.path().join("model.safetensors"));
    assert!(svd_report.linear_params_after > predicted);
    assert_eq!(
        svd_bytes - model_logits,
        4 * (svd_report.linear_params_after - predicted) as u64
    );
}

#[test]
fn group_of_one_is_svd_llm_in_both_statistics_modes() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = tiny(dir.path(), true);
    for (stats_from, svd_from) in [
        (StatsFrom::Compressed, StatsFrom::Compressed),
        (StatsFrom::Original, StatsFrom::Original),
    ] {
        let mut o = options(0.4, 1);
        o.stats_from = stats_from;
        let (bs, report) = compress_basis_sharing(&ckpt, &o, |_| {}).unwrap();
        let mut lo = LowRankOptions::new(LowRankMethod::SvdLlm, 0.4);
        (lo.calibration, lo.calibration_text) = calibration();
        lo.whiten_from = svd_from;
        let (svd, svd_report) = compress_low_rank(&ckpt, &lo, |_| {}).unwrap();
        assert_eq!(report.linear_params_after, svd_report.linear_params_after);
        for (a, b) in bs.layers.iter().zip(&svd.layers) {
            for kind in LinearKind::ALL {
                let d = max_abs_diff(&a.linear(kind).to_dense(), &b.linear(kind).to_dense());
                assert!(d < 1e-5, "{kind:?} {stats_from:?}: {d}");
            }
        }
    }
}

#[test]
fn dense_export_update_and_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = tiny(dir.path(), true);
    let base = Model::load(&ckpt).unwrap();
    let mut rng = SplitMix64::new(77);
    let probe: Vec<u32> = (0..64).map(|_| rng.below(V as u64) as u32).collect();
    let reference = base.logits(&probe).unwrap();
    let err = |m: &Model| {
        let l = m.logits(&probe).unwrap();
        let d = &l - &reference;
        d.norm_l2() / reference.norm_l2()
    };

    // Dense export: the products materialised, same logits up to rounding.
    let (out, _) = compress_basis_sharing(&ckpt, &options(0.3, 2), |_| {}).unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    write_dense(&ckpt, &out, out_dir.path()).unwrap();
    let dense = Model::load(&Checkpoint::open(out_dir.path()).unwrap()).unwrap();
    let model = out.into_model();
    let d = max_abs_diff(
        &model.logits(&PROBE).unwrap(),
        &dense.logits(&PROBE).unwrap(),
    );
    assert!(d < 1e-4, "max logit difference {d}");
    let plain = err(&model);
    assert!(plain.is_finite() && plain > 0.0);

    // The update (both streams with one-pass statistics) changes the coefficients only.
    for stats_from in [StatsFrom::Compressed, StatsFrom::Original] {
        let mut o = options(0.3, 2);
        o.update = true;
        o.stats_from = stats_from;
        let (upd, report) = compress_basis_sharing(&ckpt, &o, |_| {}).unwrap();
        assert_eq!(
            report.linear_params_after,
            predicted_params(&ckpt.config, &o).unwrap()
        );
        // Still one basis per group, and the layer-0 coefficients moved (G̃ of layer 0 is its
        // own Gram, not the group's sum).
        let (a, b) = (
            upd.layers[0].linear(LinearKind::Q),
            upd.layers[1].linear(LinearKind::Q),
        );
        assert!(Arc::ptr_eq(
            a.shared_basis().unwrap(),
            b.shared_basis().unwrap()
        ));
        o.update = false;
        let (no_update, _) = compress_basis_sharing(&ckpt, &o, |_| {}).unwrap();
        let moved = max_abs_diff(&a.to_dense(), &no_update.layers[0].q.to_dense());
        assert!(moved > 1e-4, "{stats_from:?}: the update changed nothing");
        // A random tiny model is far from any low-rank structure (relative logit error ~1 at
        // 0.3 either way): the update only has to stay in the same range.
        let e = err(&upd.into_model());
        assert!(
            e.is_finite() && e < 1.5 * plain,
            "{stats_from:?}: {e} vs {plain}"
        );
    }

    // Only the listed kinds share; a group larger than the model is one shorter group.
    let mut o = options(0.3, 3);
    o.shared = vec![LinearKind::Up];
    let (out, report) = compress_basis_sharing(&ckpt, &o, |_| {}).unwrap();
    assert_eq!(report.groups, vec![0..2]);
    for kind in LinearKind::ALL {
        let shared = out.layers[0].linear(kind).shared_basis().is_some();
        assert_eq!(shared, kind == LinearKind::Up, "{kind:?}");
    }
    assert_eq!(
        report.linear_params_after,
        predicted_params(&ckpt.config, &o).unwrap()
    );

    // Bad options are errors.
    assert!(compress_basis_sharing(&ckpt, &options(1.0, 2), |_| {}).is_err());
    assert!(compress_basis_sharing(&ckpt, &options(0.3, 0), |_| {}).is_err());
}
