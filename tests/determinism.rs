//! The same command with the same seed gives bit-identical output files whatever the thread
//! count (issue: reliability). faer's SVD and eigen solvers split their work by the parallel
//! degree they are given, so the workspace fixes that degree
//! (`llm_compress_core::DETERMINISTIC_DEGREE`); matmul, SYRK and Cholesky do not depend on it.

use llm_compress::export::write_compact;
use llm_compress::lowrank::{compress_low_rank, LowRankMethod, LowRankOptions};
use llm_compress_eval::testing::real_model_path;
use llm_compress_eval::CalibrationConfig;
use llm_compress_tensor_io::compact::{MANIFEST, TENSORS};
use llm_compress_tensor_io::Checkpoint;
use std::path::Path;

fn compress_with_threads(ckpt: &Checkpoint, threads: usize, dir: &Path) {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(|| {
        let mut opts = LowRankOptions::new(LowRankMethod::SvdLlm, 0.2);
        // Small calibration: rank-deficient Grams, so the regularised Cholesky path (with its
        // eigenvalue solve) is exercised too.
        opts.calibration = CalibrationConfig {
            windows: 2,
            seq_len: 128,
            seed: 5,
        };
        let (out, _) = compress_low_rank(ckpt, &opts, |_| {}).unwrap();
        write_compact(
            ckpt,
            &out,
            dir,
            serde_json::json!({"name": "svd-llm"}),
            serde_json::Value::Null,
            ckpt.config.linear_params(),
        )
        .unwrap();
    });
}

#[test]
fn svd_llm_output_is_bit_identical_with_one_and_two_threads() {
    let Some(path) = real_model_path() else {
        return;
    };
    let ckpt = Checkpoint::open(&path).unwrap();
    let t = tempfile::tempdir().unwrap();
    let (a, b) = (t.path().join("one"), t.path().join("two"));
    compress_with_threads(&ckpt, 1, &a);
    compress_with_threads(&ckpt, 2, &b);
    for f in [TENSORS, MANIFEST, "config.json", "tokenizer.json"] {
        let (x, y) = (
            std::fs::read(a.join(f)).unwrap(),
            std::fs::read(b.join(f)).unwrap(),
        );
        assert!(x == y, "{f} differs between 1 and 2 threads");
    }
}
