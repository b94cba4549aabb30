//! The layer-streamed low-rank run (`llm_compress::streaming`): it writes what the in-memory run
//! writes, an interrupted run resumes to the same bytes, and bad resumes are refused.

use llm_compress::export::write_compact;
use llm_compress::lowrank::{compress_low_rank, CalibrationText, LowRankMethod, LowRankOptions};
use llm_compress::streaming::{
    compress_low_rank_streaming, layer_file_name, StreamOutcome, StreamingOptions, BASE_TENSORS,
    PROGRESS,
};
use llm_compress_core::{LinearId, LinearKind};
use llm_compress_eval::testing::{random_weights, write_tiny_safetensors, L, V};
use llm_compress_eval::{
    perplexity, perplexity_streamed, CalibrationConfig, Model, PerplexityOptions, StatsFrom,
};
use llm_compress_tensor_io::Checkpoint;
use std::ops::ControlFlow;
use std::path::Path;

fn options(whiten_from: StatsFrom) -> LowRankOptions {
    let mut opts = LowRankOptions::new(LowRankMethod::SvdLlm, 0.3);
    opts.calibration = CalibrationConfig {
        windows: 3,
        seq_len: 16,
        seed: 1,
    };
    opts.calibration_text = CalibrationText::Tokens((0..300).map(|i| (i * 7 % V) as u32).collect());
    opts.whiten_from = whiten_from;
    opts
}

fn run(ckpt: &Checkpoint, opts: &LowRankOptions, out: &Path, resume: bool) -> StreamOutcome {
    let s = StreamingOptions {
        resume,
        ..Default::default()
    };
    compress_low_rank_streaming(ckpt, opts, out, &s, |_| ControlFlow::Continue(())).unwrap()
}

fn tiny() -> (tempfile::TempDir, Checkpoint) {
    let d = tempfile::tempdir().unwrap();
    write_tiny_safetensors(d.path(), &random_weights(11, false), false).unwrap();
    let ckpt = Checkpoint::open(d.path()).unwrap();
    (d, ckpt)
}

#[test]
fn streamed_output_equals_the_in_memory_one_and_runs_streamed() {
    let (_src, ckpt) = tiny();
    for mode in [StatsFrom::Compressed, StatsFrom::Original] {
        let opts = options(mode);
        let dir = tempfile::tempdir().unwrap();
        let (mem, stream) = (dir.path().join("mem"), dir.path().join("stream"));
        let (out, report) = compress_low_rank(&ckpt, &opts, |_| {}).unwrap();
        write_compact(
            &ckpt,
            &out,
            &mem,
            serde_json::json!({}),
            serde_json::Value::Null,
            report.linear_params_before,
        )
        .unwrap();
        let StreamOutcome::Finished(sr) = run(&ckpt, &opts, &stream, false) else {
            panic!("the run did not finish");
        };
        assert_eq!(sr.linear_params_before, report.linear_params_before);
        assert_eq!(sr.linear_params_after, report.linear_params_after);
        assert_eq!(sr.ranks, report.ranks);
        // Only the output is left: no progress file, no walk state.
        assert!(!stream.join(PROGRESS).exists());
        let leftovers: Vec<_> = std::fs::read_dir(&stream)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("walk-state"))
            .collect();
        assert!(leftovers.is_empty());

        let a = Checkpoint::open(&mem).unwrap();
        let b = Checkpoint::open(&stream).unwrap();
        let m = b.manifest.as_ref().unwrap();
        assert_eq!(m.format_version, 3);
        assert_eq!(m.tensor_files.len(), L + 1);
        assert_eq!(m.tensor_files[0], BASE_TENSORS);
        for l in 0..L {
            for kind in LinearKind::ALL {
                let id = LinearId { layer: l, kind };
                let (x, y) = (a.linear(id).unwrap(), b.linear(id).unwrap());
                assert_eq!(x.rank(), y.rank(), "{id}");
                assert!(x.rank().is_some(), "{id} was compressed");
                // Same walk, same factorisation: the same bits.
                assert_eq!(x.to_dense(), y.to_dense(), "{id}");
            }
        }
        // The streamed forward (one layer in memory at a time) gives the in-memory figure.
        let tokens: Vec<u32> = (0..96).map(|i| (i * 5 % V) as u32).collect();
        let po = PerplexityOptions {
            seq_len: 32,
            max_windows: None,
        };
        let full = perplexity(&Model::load(&a).unwrap(), &tokens, &po, |_| {}).unwrap();
        let base = Model::load_without_layers(&b).unwrap();
        let streamed = perplexity_streamed(&base, &b, &tokens, &po).unwrap();
        assert_eq!(streamed.windows, 3);
        let rel = (streamed.ppl - full.ppl).abs() / full.ppl;
        assert!(rel < 1e-6, "streamed {} vs {}", streamed.ppl, full.ppl);
    }
}

#[test]
fn an_interrupted_run_resumes_to_the_same_bytes() {
    let (_src, ckpt) = tiny();
    let opts = options(StatsFrom::Compressed);
    let dir = tempfile::tempdir().unwrap();
    let (whole, parts) = (dir.path().join("whole"), dir.path().join("parts"));
    assert!(matches!(
        run(&ckpt, &opts, &whole, false),
        StreamOutcome::Finished(_)
    ));

    // Stop after the first layer, as an interrupt would.
    let stopped =
        compress_low_rank_streaming(&ckpt, &opts, &parts, &StreamingOptions::default(), |p| {
            assert_eq!(p.total, L);
            ControlFlow::Break(())
        })
        .unwrap();
    assert!(matches!(stopped, StreamOutcome::Stopped { next_layer: 1 }));
    assert!(parts.join(PROGRESS).exists());
    assert!(parts.join(layer_file_name(0)).exists());
    assert!(!parts.join(layer_file_name(1)).exists());
    assert!(!parts.join("manifest.json").exists());
    assert!(
        Checkpoint::open(&parts).is_err(),
        "an unfinished folder is not a model"
    );

    // Resuming with other options is refused, and leaves the folder resumable.
    let mut other = opts.clone();
    other.ratio = 0.5;
    let err = compress_low_rank_streaming(
        &ckpt,
        &other,
        &parts,
        &StreamingOptions {
            resume: true,
            ..Default::default()
        },
        |_| ControlFlow::Continue(()),
    )
    .unwrap_err();
    assert!(err.to_string().contains("other options"), "{err}");

    let mut seen = Vec::new();
    let resumed = compress_low_rank_streaming(
        &ckpt,
        &opts,
        &parts,
        &StreamingOptions {
            resume: true,
            ..Default::default()
        },
        |p| {
            seen.push(p.done);
            ControlFlow::Continue(())
        },
    )
    .unwrap();
    assert!(matches!(resumed, StreamOutcome::Finished(_)));
    assert_eq!(seen, vec![2], "only layer 1 ran");
    for f in std::iter::once(BASE_TENSORS.to_string()).chain((0..L).map(layer_file_name)) {
        let (x, y) = (
            std::fs::read(whole.join(&f)).unwrap(),
            std::fs::read(parts.join(&f)).unwrap(),
        );
        assert!(x == y, "{f} differs after resuming");
    }
    let (ma, mb) = (
        Checkpoint::open(&whole).unwrap().manifest.unwrap(),
        Checkpoint::open(&parts).unwrap().manifest.unwrap(),
    );
    assert_eq!(ma.linears, mb.linears);
    assert_eq!(ma.tensors_sha256, mb.tensors_sha256);

    // A finished folder has nothing to resume.
    let err = compress_low_rank_streaming(
        &ckpt,
        &opts,
        &parts,
        &StreamingOptions {
            resume: true,
            ..Default::default()
        },
        |_| ControlFlow::Continue(()),
    )
    .unwrap_err();
    assert!(err.to_string().contains("nothing to resume"), "{err}");
}

#[test]
fn a_damaged_walk_state_is_an_error_not_a_panic() {
    let (_src, ckpt) = tiny();
    let opts = options(StatsFrom::Compressed);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o");
    compress_low_rank_streaming(&ckpt, &opts, &out, &StreamingOptions::default(), |_| {
        ControlFlow::Break(())
    })
    .unwrap();
    let state = std::fs::read_dir(&out)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.to_string_lossy().contains("walk-state"))
        .unwrap();
    let bytes = std::fs::read(&state).unwrap();
    std::fs::write(&state, &bytes[..bytes.len() / 2]).unwrap();
    let r = compress_low_rank_streaming(
        &ckpt,
        &opts,
        &out,
        &StreamingOptions {
            resume: true,
            ..Default::default()
        },
        |_| ControlFlow::Continue(()),
    );
    assert!(r.is_err());
}

/// `FactorDtype::F16`: the layer files hold f16 copies of the factors (about half the bytes),
/// which differ from the f32 run's only by f16 rounding (one-pass whitening: both walks see the
/// same states), run natively, and give nearly the same perplexity.
#[test]
fn f16_factors_halve_the_layer_files_and_only_round_the_factors() {
    use llm_compress::lowrank::FactorDtype;
    use llm_compress_core::{Linear, QuantFormat};
    let (_src, ckpt) = tiny();
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("f32"), dir.path().join("f16"));
    let o32 = options(StatsFrom::Original);
    let mut o16 = o32.clone();
    o16.factor_dtype = FactorDtype::F16;
    run(&ckpt, &o32, &a, false);
    run(&ckpt, &o16, &b, false);
    let size = |dir: &Path, l: usize| {
        std::fs::metadata(dir.join(layer_file_name(l)))
            .unwrap()
            .len()
    };
    for l in 0..L {
        let ratio = size(&b, l) as f64 / size(&a, l) as f64;
        // Factors halve; the two f32 norm vectors of the layer do not.
        assert!(ratio > 0.45 && ratio < 0.56, "layer {l}: {ratio}");
    }
    let (ca, cb) = (Checkpoint::open(&a).unwrap(), Checkpoint::open(&b).unwrap());
    for l in 0..L {
        for kind in LinearKind::ALL {
            let id = LinearId { layer: l, kind };
            let lin = cb.linear(id).unwrap();
            let Linear::LowRank { first, second } = &lin else {
                panic!("{id}: {}", lin.describe());
            };
            for f in [first, second] {
                assert!(
                    matches!(&**f, Linear::Quantized(q) if q.format() == QuantFormat::F16),
                    "{id}: {}",
                    f.describe()
                );
            }
            let (wa, wb) = (ca.linear(id).unwrap().to_dense(), lin.to_dense());
            let rel = (&wb - &wa).norm_l2() / wa.norm_l2();
            // Each factor entry is rounded to 2⁻¹¹ relative; the product to about twice that.
            assert!(rel < 2e-3, "{id}: {rel}");
        }
    }
    let tokens: Vec<u32> = (0..96).map(|i| (i * 5 % V) as u32).collect();
    let po = PerplexityOptions {
        seq_len: 32,
        max_windows: None,
    };
    let ppl = |c: &Checkpoint| {
        perplexity(&Model::load(c).unwrap(), &tokens, &po, |_| {})
            .unwrap()
            .ppl
    };
    let (pa, pb) = (ppl(&ca), ppl(&cb));
    assert!((pb / pa - 1.0).abs() < 0.01, "f16 {pb} vs f32 {pa}");
    let m = cb.manifest.as_ref().unwrap();
    assert_eq!(m.method["factor_dtype"], "f16");
}

/// A factor entry beyond f16's range is a numerical error naming the linear, not an infinity
/// in the file; linears that are not low-rank pass through.
#[test]
fn f16_factors_refuse_values_beyond_the_f16_range() {
    use llm_compress::lowrank::f16_factors;
    use llm_compress_core::{Linear, Mat};
    let id = LinearId {
        layer: 3,
        kind: LinearKind::Down,
    };
    let first = Mat::<f32>::from_fn(2, 3, |i, j| if (i, j) == (1, 2) { 1e5 } else { 1.0 });
    let second = Mat::<f32>::from_fn(4, 2, |i, j| (i + j) as f32);
    let big = Linear::low_rank(Linear::Dense(first), Linear::Dense(second)).unwrap();
    let e = f16_factors(id, big).unwrap_err().to_string();
    assert!(e.contains("65504") && e.contains("layers.3.down"), "{e}");
    let dense = Linear::Dense(Mat::<f32>::from_fn(2, 2, |i, j| (i * 2 + j) as f32 * 1e6));
    let same = f16_factors(id, dense.clone()).unwrap();
    assert_eq!(same.to_dense(), dense.to_dense());
}
