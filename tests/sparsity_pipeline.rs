//! DaSS / Wanda pruning over the layer-streamed walk on a tiny random Llama: scopes, patterns,
//! compact and dense export round trips.

use llm_compress::export::{write_compact, write_dense};
use llm_compress::lowrank::CalibrationText;
use llm_compress::sparsity::{compress_sparse, PruneScope, SparsityOptions};
use llm_compress_core::rng::SplitMix64;
use llm_compress_core::{GroupAxis, Linear, LinearKind, SparsityPattern};
use llm_compress_eval::testing::{random_weights, write_tiny_safetensors, V};
use llm_compress_eval::{CalibrationConfig, Model};
use llm_compress_glu_sparsity::PruneMethod;
use llm_compress_tensor_io::compact::LinearRepr;
use llm_compress_tensor_io::Checkpoint;

fn tiny(dir: &std::path::Path, tied: bool) -> Checkpoint {
    write_tiny_safetensors(dir, &random_weights(31, tied), tied).unwrap();
    Checkpoint::open(dir).unwrap()
}

fn options(method: PruneMethod, pattern: &str, scope: PruneScope) -> SparsityOptions {
    let mut rng = SplitMix64::new(5);
    let text: Vec<u32> = (0..4000).map(|_| rng.below(V as u64) as u32).collect();
    let mut o = SparsityOptions::new(method, pattern.parse().unwrap());
    o.scope = scope;
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
fn scopes_prune_the_right_linears_along_the_right_axes() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = tiny(dir.path(), false);
    for (method, scope) in [
        (PruneMethod::Dass, PruneScope::Mlp),
        (PruneMethod::Dass, PruneScope::All),
        (PruneMethod::Wanda, PruneScope::Attention),
        (PruneMethod::Wanda, PruneScope::All),
        (PruneMethod::Magnitude, PruneScope::Mlp),
    ] {
        let (out, report) = compress_sparse(&ckpt, &options(method, "2:4", scope), |_| {}).unwrap();
        let pruned = scope.kinds();
        let mut pruned_params = 0;
        for layer in &out.layers {
            for kind in LinearKind::ALL {
                let lin = layer.linear(kind);
                match lin {
                    Linear::Sparse(s) => {
                        assert!(pruned.contains(&kind), "{method:?} {scope:?} {kind:?}");
                        assert_eq!(s.pattern(), SparsityPattern::NM { zeros: 2, group: 4 });
                        let dass_gate_up = method == PruneMethod::Dass
                            && matches!(kind, LinearKind::Gate | LinearKind::Up);
                        let want = if dass_gate_up {
                            GroupAxis::Outputs
                        } else {
                            GroupAxis::Inputs
                        };
                        assert_eq!(s.axis(), want, "{method:?} {kind:?}");
                        let (m, n) = s.shape();
                        pruned_params += m * n;
                        assert_eq!(s.nnz(), m * n / 2);
                    }
                    Linear::Dense(_) => assert!(!pruned.contains(&kind), "{scope:?} {kind:?}"),
                    other => panic!("unexpected {} linear", other.describe()),
                }
            }
        }
        assert_eq!(
            report.linear_params_before - report.linear_params_after,
            pruned_params / 2
        );
        assert!(report.linear_bytes_after < report.linear_bytes_before);
    }
}

#[test]
fn compact_export_stores_packed_tensors_and_reloads_to_identical_logits() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = tiny(dir.path(), false);
    for pattern in ["2:4", "4:8", "unstructured"] {
        let o = options(PruneMethod::Dass, pattern, PruneScope::All);
        let (out, report) = compress_sparse(&ckpt, &o, |_| {}).unwrap();
        let out_dir = tempfile::tempdir().unwrap();
        write_compact(
            &ckpt,
            &out,
            out_dir.path(),
            serde_json::json!({"name": "dass"}),
            serde_json::Value::Null,
            report.linear_params_before,
        )
        .unwrap();
        let model = out.into_model();
        let back = Checkpoint::open(out_dir.path()).unwrap();
        let m = back
            .manifest
            .as_ref()
            .expect("compact folder has a manifest");
        assert_eq!(m.linear_params_after, report.linear_params_after);
        assert!(m
            .linears
            .values()
            .all(|r| matches!(r, LinearRepr::Sparse { .. })));
        let reloaded = Model::load(&back).unwrap();
        for (a, b) in model.layers.iter().zip(&reloaded.layers) {
            for kind in LinearKind::ALL {
                match (a.linear(kind), b.linear(kind)) {
                    (Linear::Sparse(x), Linear::Sparse(y)) => assert_eq!(x, y),
                    _ => panic!("{kind:?} did not reload as a sparse linear"),
                }
            }
        }
        // Same packed values, same kernels: identical logits.
        assert_eq!(
            max_abs_diff(
                &model.logits(&PROBE).unwrap(),
                &reloaded.logits(&PROBE).unwrap()
            ),
            0.0,
            "{pattern}"
        );
    }
}

#[test]
fn dense_export_writes_zeros_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = tiny(dir.path(), true);
    let (out, _) = compress_sparse(
        &ckpt,
        &options(PruneMethod::Wanda, "2:4", PruneScope::Mlp),
        |_| {},
    )
    .unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    write_dense(&ckpt, &out, out_dir.path()).unwrap();
    let back = Checkpoint::open(out_dir.path()).unwrap();
    assert!(back.manifest.is_none());
    let dense = Model::load(&back).unwrap();
    for (a, b) in out.layers.iter().zip(&dense.layers) {
        assert!(matches!(b.gate, Linear::Dense(_)));
        assert_eq!(a.gate.to_dense(), b.gate.to_dense());
        let w = b.down.to_dense();
        let zeros = (0..w.nrows())
            .flat_map(|i| (0..w.ncols()).map(move |j| (i, j)))
            .filter(|&(i, j)| w[(i, j)] == 0.0)
            .count();
        assert_eq!(zeros, w.nrows() * w.ncols() / 2);
    }
    let model = out.into_model();
    let d = max_abs_diff(
        &model.logits(&PROBE).unwrap(),
        &dense.logits(&PROBE).unwrap(),
    );
    assert!(d < 1e-4, "max logit difference {d}");
}

#[test]
fn bad_options_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = tiny(dir.path(), false);
    let mut o = options(PruneMethod::Wanda, "2:4", PruneScope::Mlp);
    o.sparsity = 0.6;
    assert!(compress_sparse(&ckpt, &o, |_| {}).is_err());
    let mut o = options(PruneMethod::Wanda, "unstructured", PruneScope::Mlp);
    o.sparsity = 1.0;
    assert!(compress_sparse(&ckpt, &o, |_| {}).is_err());
    // 3:5 does not divide the tiny model's dimensions.
    let o = options(PruneMethod::Dass, "3:5", PruneScope::Mlp);
    assert!(compress_sparse(&ckpt, &o, |_| {}).is_err());
}
