//! LSAQ end to end: allocation, quantization, compact export and reload, on a tiny random Llama
//! (always) and on SmolLM2 (see tests/smollm2.rs for how the model is located).

use llm_compress::export::{write_compact_with, write_dense};
use llm_compress::lowrank::{compress_low_rank, CalibrationText, LowRankMethod, LowRankOptions};
use llm_compress::prelude::*;
use llm_compress::quant::{quantize_to_budget, LsaqOptions};
use llm_compress_core::rng::SplitMix64;
use llm_compress_core::{LinearKind, QuantFormat};
use llm_compress_eval::testing::{random_weights, write_tiny_safetensors, V};
use llm_compress_eval::CalibrationConfig;
use llm_compress_layer_quant::{Quantizer, RankingKind};
use llm_compress_tensor_io::compact::TENSORS;
use std::path::PathBuf;

const PROBE: [u32; 12] = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8];

fn tiny_text() -> CalibrationText {
    let mut rng = SplitMix64::new(9);
    CalibrationText::Tokens((0..4000).map(|_| rng.below(V as u64) as u32).collect())
}

fn tiny_options(budget: usize) -> LsaqOptions {
    let mut o = LsaqOptions::new(budget);
    o.calibration = CalibrationConfig {
        windows: 4,
        seq_len: 64,
        seed: 1,
    };
    o.calibration_text = tiny_text();
    o.position_stride = 4;
    o.top_k = 5;
    o
}

fn max_abs_diff(a: &faer::Mat<f32>, b: &faer::Mat<f32>) -> f32 {
    let mut m = 0.0f32;
    for j in 0..a.ncols() {
        for i in 0..a.nrows() {
            m = m.max((a[(i, j)] - b[(i, j)]).abs());
        }
    }
    m
}

/// Both quantizers, a budget between all-int4 and all-int8: the budget holds, the folder
/// reloads to the same quantized linears and logits, `--dense` gives the same logits, and the
/// manifest keeps the ranking.
#[test]
fn tiny_model_round_trips_through_the_compact_folder() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_safetensors(dir.path(), &random_weights(21, false), false).unwrap();
    let ckpt = Checkpoint::open(dir.path()).unwrap();
    // Infeasible budget: a clear error naming the smallest size.
    let e = quantize_to_budget(&ckpt, None, &tiny_options(1000), |_| {})
        .err()
        .expect("1000 bytes cannot hold the model")
        .to_string();
    assert!(e.contains("smallest feasible size"), "{e}");
    for quantizer in [Quantizer::Rtn, Quantizer::Gptq] {
        let mut probe = tiny_options(usize::MAX);
        probe.group_size = Some(32);
        probe.ladder = vec![QuantFormat::Int4];
        let (_, all4) = quantize_to_budget(&ckpt, None, &probe, |_| {}).unwrap();
        probe.ladder = vec![QuantFormat::Int8];
        let (_, all8) = quantize_to_budget(&ckpt, None, &probe, |_| {}).unwrap();
        let budget = (all4.allocation.bytes + all8.allocation.bytes) / 2;
        let mut o = tiny_options(budget);
        o.quantizer = quantizer;
        o.group_size = Some(32);
        let (out, report) = quantize_to_budget(&ckpt, None, &o, |_| {}).unwrap();
        assert!(report.allocation.bytes <= budget);
        assert!(
            report.formats.contains(&QuantFormat::Int8),
            "{:?}",
            report.formats
        );
        assert!(
            report.formats.contains(&QuantFormat::Int4),
            "{:?}",
            report.formats
        );
        let imp = report.importance.as_ref().unwrap();
        assert!(imp.jaccard.iter().all(|j| (0.0..=1.0).contains(j)));
        // The more important layer (by Jaccard) got the int8.
        assert_eq!(report.formats[report.order[0]], QuantFormat::Int8);
        let out_dir = tempfile::tempdir().unwrap();
        let method = llm_compress::quant::method_json(&o, &report);
        write_compact_with(
            &ckpt,
            &out,
            out_dir.path(),
            method,
            serde_json::Value::Null,
            ckpt.config.linear_params(),
            true,
        )
        .unwrap();
        let written = std::fs::metadata(out_dir.path().join(TENSORS))
            .unwrap()
            .len() as f64;
        let rel = written / report.allocation.bytes as f64 - 1.0;
        // The header estimate is coarse on a model this small (tensors of a few hundred
        // bytes); on SmolLM2 the prediction is within 0.1% (test below).
        assert!(
            rel.abs() < 0.05,
            "written {written}, predicted {}",
            report.allocation.bytes
        );
        let back = Checkpoint::open(out_dir.path()).unwrap();
        let m = back.manifest.as_ref().unwrap();
        assert_eq!(m.method["ranking"], serde_json::json!(report.order));
        let reloaded = Model::load(&back).unwrap();
        let model = out.into_model();
        for (a, b) in model.layers.iter().zip(&reloaded.layers) {
            for k in llm_compress_core::LinearKind::ALL {
                let (la, lb) = (a.linear(k), b.linear(k));
                assert!(
                    matches!(lb, Linear::Quantized(_)),
                    "{k:?}: {}",
                    lb.describe()
                );
                assert_eq!(la.storage_bytes(), lb.storage_bytes());
                assert_eq!(la.to_dense(), lb.to_dense());
            }
        }
        // Embeddings went through f16: logits agree to f16 precision of the embedding.
        let (la, lb) = (
            model.logits(&PROBE).unwrap(),
            reloaded.logits(&PROBE).unwrap(),
        );
        assert!(max_abs_diff(&la, &lb) < 2e-2, "{}", max_abs_diff(&la, &lb));
        let dense_dir = tempfile::tempdir().unwrap();
        let out2 = llm_compress::export::OutputLayers {
            base: Model::load_without_layers(&ckpt).unwrap(),
            layers: model.layers.clone(),
        };
        write_dense(&ckpt, &out2, dense_dir.path()).unwrap();
        let dense = Model::load(&Checkpoint::open(dense_dir.path()).unwrap()).unwrap();
        let ld = dense.logits(&PROBE).unwrap();
        assert!(max_abs_diff(&la, &ld) < 1e-4, "{}", max_abs_diff(&la, &ld));
    }
}

/// SVD-LLM then LSAQ: the factors are quantized, the budget holds.
#[test]
fn tiny_model_low_rank_then_lsaq() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_safetensors(dir.path(), &random_weights(21, true), true).unwrap();
    let ckpt = Checkpoint::open(dir.path()).unwrap();
    let mut lo = LowRankOptions::new(LowRankMethod::SvdLlm, 0.2);
    lo.calibration = CalibrationConfig {
        windows: 4,
        seq_len: 64,
        seed: 1,
    };
    lo.calibration_text = tiny_text();
    let (lr, _) = compress_low_rank(&ckpt, &lo, |_| {}).unwrap();
    let lr_model = Model {
        layers: lr.layers.clone(),
        ..Model::load_without_layers(&ckpt).unwrap()
    };
    let mut o = tiny_options(usize::MAX);
    o.ladder = vec![QuantFormat::Int8];
    let (out, report) = quantize_to_budget(&ckpt, Some(lr.layers), &o, |_| {}).unwrap();
    for layer in &out.layers {
        let Linear::LowRank { first, second } = &layer.q else {
            panic!("q is {}", layer.q.describe())
        };
        assert!(matches!(**first, Linear::Quantized(_)));
        assert!(matches!(**second, Linear::Quantized(_)));
    }
    let stored: usize = out
        .layers
        .iter()
        .flat_map(|l| llm_compress_core::LinearKind::ALL.map(|k| l.linear(k).storage_bytes()))
        .sum();
    assert!(stored < report.allocation.bytes);
    let q = out.into_model();
    let (a, b) = (lr_model.logits(&PROBE).unwrap(), q.logits(&PROBE).unwrap());
    assert!(
        max_abs_diff(&a, &b) < 0.05 * a.norm_max(),
        "{}",
        max_abs_diff(&a, &b)
    );
    o.quantizer = Quantizer::Gptq;
    let lr2 = compress_low_rank(&ckpt, &lo, |_| {}).unwrap().0;
    assert!(quantize_to_budget(&ckpt, Some(lr2.layers), &o, |_| {}).is_err());
}

fn model_path() -> Option<PathBuf> {
    llm_compress_eval::testing::real_model_path()
}

/// SmolLM2, cheap settings (RTN; importance on 4 x 512 tokens; 2 eval windows): the predicted
/// size equals the written file within 1% at several budgets; all-int8 is within 1% of dense;
/// a Jaccard allocation between all-int4 and all-int8 lands between the two.
#[test]
fn smollm2_budget_is_real_and_int8_is_lossless() {
    let Some(path) = model_path() else { return };
    let ckpt = Checkpoint::open(&path).unwrap();
    let tokens = TextSource::WikiText2Test
        .tokens(ckpt.require_tokenizer().unwrap())
        .unwrap();
    let popts = PerplexityOptions {
        max_windows: Some(2),
        ..Default::default()
    };
    let dense = perplexity(&Model::load(&ckpt).unwrap(), &tokens, &popts, |_| {})
        .unwrap()
        .ppl;
    let run = |ladder: Vec<QuantFormat>, budget: usize, importance: RankingKind| {
        let mut o = LsaqOptions::new(budget);
        o.ladder = ladder;
        o.group_size = Some(128);
        o.importance = importance;
        o.calibration = CalibrationConfig {
            windows: 4,
            seq_len: 512,
            seed: 3,
        };
        let (out, report) = quantize_to_budget(&ckpt, None, &o, |_| {}).unwrap();
        assert!(report.allocation.bytes <= budget);
        let dir = tempfile::tempdir().unwrap();
        write_compact_with(
            &ckpt,
            &out,
            dir.path(),
            serde_json::Value::Null,
            serde_json::Value::Null,
            0,
            true,
        )
        .unwrap();
        let written = std::fs::metadata(dir.path().join(TENSORS)).unwrap().len() as f64;
        let rel = written / report.allocation.bytes as f64 - 1.0;
        assert!(
            rel.abs() < 0.01,
            "written {written} vs {}",
            report.allocation.bytes
        );
        let ppl = perplexity(&out.into_model(), &tokens, &popts, |_| {})
            .unwrap()
            .ppl;
        (report, ppl)
    };
    use QuantFormat::*;
    let (r8, p8) = run(vec![Int8], usize::MAX, RankingKind::Random);
    assert!((p8 / dense - 1.0).abs() < 0.01, "int8 {p8} dense {dense}");
    let (r4, p4) = run(vec![Int4], usize::MAX, RankingKind::Random);
    let mid = (r4.allocation.bytes + r8.allocation.bytes) / 2;
    let (rm, pm) = run(vec![Int4, Int8, F16], mid, RankingKind::Jaccard);
    eprintln!("2-window ppl: dense {dense:.3} int8 {p8:.3} int4-g128 {p4:.3} mixed {pm:.3}");
    let n8 = rm.formats.iter().filter(|f| **f == Int8).count();
    assert!((10..=20).contains(&n8), "{n8} int8 layers at the midpoint");
    assert!(p4 > p8 && pm < p4 && pm > p8 * 0.999, "{p4} {pm} {p8}");
}

/// Writes `out` as a compact folder (f16 embeddings) and returns the folder and the size of
/// its tensor file.
fn write_lsaq(
    ckpt: &Checkpoint,
    out: &llm_compress::export::OutputLayers,
    method: serde_json::Value,
) -> (tempfile::TempDir, f64) {
    let dir = tempfile::tempdir().unwrap();
    write_compact_with(
        ckpt,
        out,
        dir.path(),
        method,
        serde_json::Value::Null,
        ckpt.config.linear_params(),
        true,
    )
    .unwrap();
    let written = std::fs::metadata(dir.path().join(TENSORS)).unwrap().len() as f64;
    (dir, written)
}

/// The budget halfway between every layer at the lowest and every layer at the highest level
/// of `ladder`, for already compressed `layers` (each shared basis counted once).
fn midpoint_budget(
    ckpt: &Checkpoint,
    layers: &[llm_compress_eval::DecoderLayer],
    ladder: Vec<QuantFormat>,
    group_size: Option<usize>,
) -> usize {
    let mut o = LsaqOptions::new(usize::MAX);
    o.ladder = ladder;
    o.group_size = group_size;
    let base = Model::load_without_layers(ckpt).unwrap();
    let model = llm_compress::quant::cost_model(
        layers,
        llm_compress::quant::base_fixed_bytes(&base, true),
        &o,
    )
    .unwrap();
    let n = layers.len();
    (model.bytes(&vec![0; n]) + model.bytes(&vec![o.ladder.len() - 1; n])) / 2
}

/// Basis Sharing then LSAQ on the tiny model at the midpoint budget: one layer of the group
/// gets int8, the other int4; the shared bases are quantized once (at int8) and stay one
/// buffer in memory and after export and reload (`Arc::ptr_eq`); reloaded logits are those of
/// the in-memory model; `--dense` gives the same logits; the format version stays 1.
#[test]
fn tiny_model_basis_sharing_then_lsaq_keeps_one_basis_buffer() {
    use llm_compress::basis_sharing::{compress_basis_sharing, BasisSharingOptions};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    write_tiny_safetensors(dir.path(), &random_weights(21, false), false).unwrap();
    let ckpt = Checkpoint::open(dir.path()).unwrap();
    let mut bo = BasisSharingOptions::new(0.2);
    bo.calibration = CalibrationConfig {
        windows: 4,
        seq_len: 64,
        seed: 1,
    };
    bo.calibration_text = tiny_text();
    let (bs, _) = compress_basis_sharing(&ckpt, &bo, |_| {}).unwrap();
    // A budget for one int8 layer: promoting the first layer of the group also lifts the
    // bases, which the second promotion then gets for free (it must not fit both).
    let mut probe = LsaqOptions::new(usize::MAX);
    probe.ladder = vec![QuantFormat::Int4, QuantFormat::Int8];
    probe.group_size = Some(32);
    let base = Model::load_without_layers(&ckpt).unwrap();
    let fixed = llm_compress::quant::base_fixed_bytes(&base, true);
    let costs = llm_compress::quant::cost_model(&bs.layers, fixed, &probe).unwrap();
    assert_eq!(
        costs.shared.len(),
        bo.shared.len(),
        "one basis per shared kind"
    );
    let budget = costs.bytes(&[1, 0]).max(costs.bytes(&[0, 1]));
    assert!(budget < costs.bytes(&[1, 1]));
    let mut o = tiny_options(budget);
    o.ladder = vec![QuantFormat::Int4, QuantFormat::Int8];
    o.group_size = Some(32);
    let (out, report) = quantize_to_budget(&ckpt, Some(bs.layers), &o, |_| {}).unwrap();
    assert!(report.allocation.bytes <= budget);
    assert_eq!(
        report
            .formats
            .iter()
            .filter(|f| **f == QuantFormat::Int8)
            .count(),
        1,
        "{:?}",
        report.formats
    );
    let check_shared = |layers: &[llm_compress_eval::DecoderLayer]| {
        for k in bo.shared.iter().copied() {
            let (a, b) = (layers[0].linear(k), layers[1].linear(k));
            let (ba, bb) = (a.shared_basis().unwrap(), b.shared_basis().unwrap());
            assert!(Arc::ptr_eq(ba, bb), "{k:?}: two basis buffers");
            let Linear::Quantized(q) = &**ba else {
                panic!("{k:?} basis is {}", ba.describe())
            };
            assert_eq!(
                q.format(),
                QuantFormat::Int8,
                "{k:?}: basis at the higher level"
            );
        }
    };
    check_shared(&out.layers);
    let method = llm_compress::quant::method_json(&o, &report);
    let (folder, written) = write_lsaq(&ckpt, &out, method);
    let rel = written / report.allocation.bytes as f64 - 1.0;
    assert!(
        rel.abs() < 0.05,
        "written {written}, predicted {}",
        report.allocation.bytes
    );
    let back = Checkpoint::open(folder.path()).unwrap();
    assert_eq!(back.manifest.as_ref().unwrap().format_version, 1);
    let reloaded = Model::load(&back).unwrap();
    check_shared(&reloaded.layers);
    let model = out.into_model();
    for (a, b) in model.layers.iter().zip(&reloaded.layers) {
        for k in llm_compress_core::LinearKind::ALL {
            assert_eq!(a.linear(k).to_dense(), b.linear(k).to_dense(), "{k:?}");
        }
    }
    let (la, lb) = (
        model.logits(&PROBE).unwrap(),
        reloaded.logits(&PROBE).unwrap(),
    );
    assert!(max_abs_diff(&la, &lb) < 2e-2, "{}", max_abs_diff(&la, &lb));
    let dense_dir = tempfile::tempdir().unwrap();
    let out2 = llm_compress::export::OutputLayers {
        base: Model::load_without_layers(&ckpt).unwrap(),
        layers: model.layers.clone(),
    };
    write_dense(&ckpt, &out2, dense_dir.path()).unwrap();
    let dense = Model::load(&Checkpoint::open(dense_dir.path()).unwrap()).unwrap();
    let ld = dense.logits(&PROBE).unwrap();
    assert!(max_abs_diff(&la, &ld) < 1e-4, "{}", max_abs_diff(&la, &ld));
}

/// DaSS 2:4 then LSAQ on the tiny model: the pruned linears become quantized sparse ones with
/// their masks, the dense ones plain quantized; the folder (format version 2) reloads to the
/// same linears and logits; `--dense` writes the dequantized weights with zeros in place.
#[test]
fn tiny_model_dass_then_lsaq_quantizes_kept_values() {
    use llm_compress::sparsity::{compress_sparse, SparsityOptions};
    use llm_compress_glu_sparsity::PruneMethod;
    let dir = tempfile::tempdir().unwrap();
    write_tiny_safetensors(dir.path(), &random_weights(21, false), false).unwrap();
    let ckpt = Checkpoint::open(dir.path()).unwrap();
    let mut so = SparsityOptions::new(PruneMethod::Dass, "2:4".parse().unwrap());
    so.calibration = CalibrationConfig {
        windows: 4,
        seq_len: 64,
        seed: 1,
    };
    so.calibration_text = tiny_text();
    let (sp, _) = compress_sparse(&ckpt, &so, |_| {}).unwrap();
    let sparse_model = Model {
        layers: sp.layers.clone(),
        ..Model::load_without_layers(&ckpt).unwrap()
    };
    let masks: Vec<Vec<u8>> = sp
        .layers
        .iter()
        .map(|l| match &l.gate {
            Linear::Sparse(s) => s.mask().to_vec(),
            other => panic!("gate is {}", other.describe()),
        })
        .collect();
    let budget = midpoint_budget(
        &ckpt,
        &sp.layers,
        vec![QuantFormat::Int4, QuantFormat::Int8],
        Some(32),
    );
    let mut o = tiny_options(budget);
    o.ladder = vec![QuantFormat::Int4, QuantFormat::Int8];
    o.group_size = Some(32);
    let (out, report) = quantize_to_budget(&ckpt, Some(sp.layers), &o, |_| {}).unwrap();
    assert!(report.allocation.bytes <= budget);
    for (l, layer) in out.layers.iter().enumerate() {
        for k in [LinearKind::Gate, LinearKind::Up, LinearKind::Down] {
            let Linear::QuantizedSparse(q) = layer.linear(k) else {
                panic!("{k:?} is {}", layer.linear(k).describe())
            };
            assert_eq!(q.format(), report.formats[l]);
            if k == LinearKind::Gate {
                assert_eq!(q.mask(), &masks[l][..]);
            }
        }
        assert!(matches!(layer.q, Linear::Quantized(_)));
    }
    let (folder, written) = write_lsaq(&ckpt, &out, serde_json::Value::Null);
    let rel = written / report.allocation.bytes as f64 - 1.0;
    assert!(
        rel.abs() < 0.05,
        "written {written}, predicted {}",
        report.allocation.bytes
    );
    let back = Checkpoint::open(folder.path()).unwrap();
    assert_eq!(back.manifest.as_ref().unwrap().format_version, 2);
    let reloaded = Model::load(&back).unwrap();
    let model = out.into_model();
    for (a, b) in model.layers.iter().zip(&reloaded.layers) {
        for k in LinearKind::ALL {
            assert_eq!(a.linear(k).storage_bytes(), b.linear(k).storage_bytes());
            assert_eq!(a.linear(k).to_dense(), b.linear(k).to_dense(), "{k:?}");
        }
    }
    let (la, lb) = (
        model.logits(&PROBE).unwrap(),
        reloaded.logits(&PROBE).unwrap(),
    );
    assert!(max_abs_diff(&la, &lb) < 2e-2, "{}", max_abs_diff(&la, &lb));
    // Against the unquantized pruned model: int4 g32 / int8 on a random model of width 32
    // moves the logits by ~16% (Frobenius); a broken dequantization moves them by ~100%.
    let ls = sparse_model.logits(&PROBE).unwrap();
    let rel = (&la - &ls).norm_l2() / ls.norm_l2();
    assert!(rel < 0.3, "{rel}");
    let dense_dir = tempfile::tempdir().unwrap();
    let out2 = llm_compress::export::OutputLayers {
        base: Model::load_without_layers(&ckpt).unwrap(),
        layers: model.layers.clone(),
    };
    write_dense(&ckpt, &out2, dense_dir.path()).unwrap();
    let dense = Model::load(&Checkpoint::open(dense_dir.path()).unwrap()).unwrap();
    let ld = dense.logits(&PROBE).unwrap();
    assert!(max_abs_diff(&la, &ld) < 1e-4, "{}", max_abs_diff(&la, &ld));
    let w = dense.layers[0].gate.to_dense();
    let zeros = (0..w.nrows())
        .flat_map(|i| (0..w.ncols()).map(move |j| (i, j)))
        .filter(|&(i, j)| w[(i, j)] == 0.0)
        .count();
    assert!(zeros >= w.nrows() * w.ncols() / 2);
}

/// SmolLM2, cheap settings (4 x 512 calibration, RTN): Basis Sharing 0.2 then LSAQ and DaSS 2:4
/// (MLP) then LSAQ at the budget midway between their all-int4 and all-int8 sizes: the
/// predicted size equals the written file within 1%, the shared bases stay one buffer after
/// export and reload, and the model still runs (finite perplexity on one window).
#[test]
fn smollm2_composed_lsaq_budget_is_real() {
    use llm_compress::basis_sharing::{compress_basis_sharing, BasisSharingOptions};
    use llm_compress::sparsity::{compress_sparse, SparsityOptions};
    use llm_compress_glu_sparsity::PruneMethod;
    use std::sync::Arc;
    let Some(path) = model_path() else { return };
    let ckpt = Checkpoint::open(&path).unwrap();
    let calib = CalibrationConfig {
        windows: 4,
        seq_len: 512,
        seed: 3,
    };
    let tokens = TextSource::WikiText2Test
        .tokens(ckpt.require_tokenizer().unwrap())
        .unwrap();
    let popts = PerplexityOptions {
        max_windows: Some(1),
        ..Default::default()
    };
    let mut bo = BasisSharingOptions::new(0.2);
    bo.calibration = calib.clone();
    let (bs, _) = compress_basis_sharing(&ckpt, &bo, |_| {}).unwrap();
    let mut so = SparsityOptions::new(PruneMethod::Dass, "2:4".parse().unwrap());
    so.calibration = calib.clone();
    let (sp, _) = compress_sparse(&ckpt, &so, |_| {}).unwrap();
    for (name, layers) in [("basis-sharing", bs.layers), ("dass", sp.layers)] {
        let ladder = vec![QuantFormat::Int4, QuantFormat::Int8];
        let budget = midpoint_budget(&ckpt, &layers, ladder.clone(), Some(128));
        let mut o = LsaqOptions::new(budget);
        o.ladder = ladder;
        o.group_size = Some(128);
        o.calibration = calib.clone();
        let (out, report) = quantize_to_budget(&ckpt, Some(layers), &o, |_| {}).unwrap();
        assert!(report.allocation.bytes <= budget);
        let n8 = report
            .formats
            .iter()
            .filter(|f| **f == QuantFormat::Int8)
            .count();
        assert!((5..=25).contains(&n8), "{name}: {n8} int8 layers");
        let (folder, written) = write_lsaq(&ckpt, &out, serde_json::Value::Null);
        let rel = written / report.allocation.bytes as f64 - 1.0;
        eprintln!(
            "{name}: predicted {} written {written} ({:+.4}%)",
            report.allocation.bytes,
            100.0 * rel
        );
        assert!(
            rel.abs() < 0.01,
            "{name}: written {written} vs {}",
            report.allocation.bytes
        );
        let back = Model::load(&Checkpoint::open(folder.path()).unwrap()).unwrap();
        if name == "basis-sharing" {
            for k in bo.shared.iter().copied() {
                for g in 0..back.layers.len() / 2 {
                    let (a, b) = (
                        back.layers[2 * g].linear(k),
                        back.layers[2 * g + 1].linear(k),
                    );
                    assert!(Arc::ptr_eq(
                        a.shared_basis().unwrap(),
                        b.shared_basis().unwrap()
                    ));
                }
            }
        }
        let ppl = perplexity(&back, &tokens, &popts, |_| {}).unwrap().ppl;
        eprintln!("{name} then LSAQ: 1-window ppl {ppl:.2}");
        assert!(ppl.is_finite() && ppl < 1000.0, "{name}: {ppl}");
    }
}
