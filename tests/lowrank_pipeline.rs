//! SVD-LLM over the layer-streamed walk on a tiny random Llama: budget, export round trips.

use llm_compress::export::{write_compact, write_dense};
use llm_compress::lowrank::{compress_low_rank, CalibrationText, LowRankMethod, LowRankOptions};
use llm_compress_core::rng::SplitMix64;
use llm_compress_eval::testing::{random_weights, write_tiny_safetensors, V};
use llm_compress_eval::{CalibrationConfig, Model};
use llm_compress_tensor_io::Checkpoint;

fn tiny(dir: &std::path::Path, tied: bool) -> Checkpoint {
    write_tiny_safetensors(dir, &random_weights(21, tied), tied).unwrap();
    Checkpoint::open(dir).unwrap()
}

fn options(method: LowRankMethod, ratio: f64, update: bool) -> LowRankOptions {
    let mut rng = SplitMix64::new(9);
    let text: Vec<u32> = (0..4000).map(|_| rng.below(V as u64) as u32).collect();
    let mut o = LowRankOptions::new(method, ratio);
    o.update = update;
    o.calibration = CalibrationConfig {
        windows: 4,
        seq_len: 64,
        seed: 1,
    };
    o.calibration_text = CalibrationText::Tokens(text);
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

const PROBE: [u32; 10] = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3];

#[test]
fn budget_is_met_and_compact_export_reloads_to_identical_logits() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = tiny(dir.path(), false);
    let (out, report) =
        compress_low_rank(&ckpt, &options(LowRankMethod::SvdLlm, 0.4, false), |_| {}).unwrap();
    // Every linear is low-rank with the formula rank of its shape.
    for layer in &out.layers {
        for kind in llm_compress_core::LinearKind::ALL {
            let lin = layer.linear(kind);
            let (m, n) = lin.shape();
            assert_eq!(
                lin.rank(),
                Some(llm_compress_core::budget::svd_llm_rank(m, n, 0.4)),
                "{kind:?}"
            );
        }
    }
    let kept = report.linear_params_after as f64 / report.linear_params_before as f64;
    assert!(kept <= 0.6 && kept > 0.5, "kept fraction {kept}");
    let model = out.into_model();
    let logits = model.logits(&PROBE).unwrap();

    let out_dir = tempfile::tempdir().unwrap();
    let (out2, report2) =
        compress_low_rank(&ckpt, &options(LowRankMethod::SvdLlm, 0.4, false), |_| {}).unwrap();
    write_compact(
        &ckpt,
        &out2,
        out_dir.path(),
        serde_json::json!({"name": "svd-llm"}),
        serde_json::Value::Null,
        report2.linear_params_before,
    )
    .unwrap();
    let back = Checkpoint::open(out_dir.path()).unwrap();
    let m = back
        .manifest
        .as_ref()
        .expect("a compact folder has a manifest");
    assert_eq!(m.linear_params_after, report2.linear_params_after);
    let reloaded = Model::load(&back).unwrap();
    assert_eq!(reloaded.linear_params(), report.linear_params_after);
    // Factors are stored as f32 exactly and the same kernels run: identical logits.
    assert_eq!(
        max_abs_diff(&logits, &reloaded.logits(&PROBE).unwrap()),
        0.0
    );
}

#[test]
fn dense_export_loads_as_a_plain_checkpoint_with_the_same_logits() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = tiny(dir.path(), true);
    let (out, _) =
        compress_low_rank(&ckpt, &options(LowRankMethod::SvdLlm, 0.3, false), |_| {}).unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    write_dense(&ckpt, &out, out_dir.path()).unwrap();
    assert!(!out_dir.path().join("manifest.json").exists());
    let back = Checkpoint::open(out_dir.path()).unwrap();
    assert!(back.manifest.is_none());
    let dense = Model::load(&back).unwrap();
    let model = out.into_model();
    // Product materialised in f32: differences are rounding only.
    let d = max_abs_diff(
        &model.logits(&PROBE).unwrap(),
        &dense.logits(&PROBE).unwrap(),
    );
    assert!(d < 1e-4, "max logit difference {d}");
}

#[test]
fn update_and_baselines_run_and_whitening_beats_plain_svd() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = tiny(dir.path(), false);
    let base = Model::load(&ckpt).unwrap();
    let mut rng = SplitMix64::new(77);
    let probe: Vec<u32> = (0..64).map(|_| rng.below(V as u64) as u32).collect();
    let reference = base.logits(&probe).unwrap();
    let err = |method, update| {
        let (out, _) = compress_low_rank(&ckpt, &options(method, 0.4, update), |_| {}).unwrap();
        let m = out.into_model();
        let l = m.logits(&probe).unwrap();
        let mut s = 0.0f64;
        for j in 0..l.ncols() {
            for i in 0..l.nrows() {
                s += ((l[(i, j)] - reference[(i, j)]) as f64).powi(2);
            }
        }
        s
    };
    let (whitened, plain, asvd, updated) = (
        err(LowRankMethod::SvdLlm, false),
        err(LowRankMethod::Svd, false),
        err(LowRankMethod::Asvd, false),
        err(LowRankMethod::SvdLlm, true),
    );
    assert!(whitened.is_finite() && plain.is_finite() && asvd.is_finite() && updated.is_finite());
    for update in [false, true] {
        let mut o = options(LowRankMethod::SvdLlm, 0.4, update);
        o.whiten_from = llm_compress_eval::StatsFrom::Compressed;
        let (out, _) = compress_low_rank(&ckpt, &o, |_| {}).unwrap();
        assert!(out.layers.iter().all(|l| l.q.rank().is_some()));
    }
    assert!(whitened < plain, "svd-llm {whitened} vs plain {plain}");
}

#[test]
fn bad_ratio_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = tiny(dir.path(), false);
    assert!(compress_low_rank(&ckpt, &options(LowRankMethod::SvdLlm, 1.5, false), |_| {}).is_err());
}
