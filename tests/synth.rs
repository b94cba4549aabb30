//! The synthetic-checkpoint generator (`llm_compress::synth`, behind `examples/synth_model.rs`):
//! the folder is a valid sharded Hugging Face checkpoint, the linears have exactly the target
//! singular values, the model runs, and the bytes depend on the seed only.

use faer::Mat;
use llm_compress::core::{LinearId, LinearKind};
use llm_compress::eval::Model;
use llm_compress::synth::{
    shard_plan, synth_config, write_synthetic_checkpoint, LinearGenerator, SingularProfile,
    SynthEvent, SynthOptions, SynthShape, SynthTensor, ENTRY_RMS, LAYER_JITTER, PROFILE_POINTS,
};
use llm_compress::tensor_io::safetensors::{Dtype, SafetensorsFile};
use llm_compress::tensor_io::{Checkpoint, ModelConfig};
use std::collections::BTreeSet;
use std::path::Path;

fn singular_values(w: &Mat<f32>) -> Vec<f64> {
    Mat::<f64>::from_fn(w.nrows(), w.ncols(), |i, j| w[(i, j)] as f64)
        .singular_values()
        .unwrap()
}

fn write_tiny(dir: &Path, opts: &SynthOptions) {
    let cfg = SynthShape::Tiny.config();
    write_synthetic_checkpoint(dir, &cfg, opts, |_| {}).unwrap();
}

#[test]
fn tiny_folder_is_a_sharded_hf_checkpoint_with_every_tensor_in_bf16() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SynthShape::Tiny.config();
    let opts = SynthOptions {
        seed: 5,
        layers_per_shard: Some(1),
    };
    let mut shards_seen = 0;
    let report = write_synthetic_checkpoint(dir.path(), &cfg, &opts, |e| {
        if let SynthEvent::Shard { .. } = e {
            shards_seen += 1;
        }
    })
    .unwrap();
    assert_eq!(report.shards, cfg.num_layers);
    assert_eq!(shards_seen, report.shards);

    let ckpt = Checkpoint::open(dir.path()).unwrap();
    assert_eq!(ckpt.config, cfg);

    // Every tensor the configuration implies is in the index, and nothing else.
    let mut expected: BTreeSet<String> = [
        "model.embed_tokens.weight",
        "model.norm.weight",
        "lm_head.weight",
    ]
    .map(String::from)
    .into();
    for l in 0..cfg.num_layers {
        expected.insert(format!("model.layers.{l}.input_layernorm.weight"));
        expected.insert(format!("model.layers.{l}.post_attention_layernorm.weight"));
        for kind in LinearKind::ALL {
            expected.insert(format!("model.layers.{l}.{}.weight", kind.hf_name()));
        }
    }
    let index: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("model.safetensors.index.json")).unwrap(),
    )
    .unwrap();
    let map = index["weight_map"].as_object().unwrap();
    assert_eq!(map.keys().cloned().collect::<BTreeSet<_>>(), expected);
    assert_eq!(report.tensors, expected.len());

    // Each name lives in the shard the index says, in bf16, with the configuration's shape;
    // the index's total size is the sum of the tensors' bytes.
    let mut total = 0u64;
    for (name, shard) in map {
        let file = SafetensorsFile::open(&dir.path().join(shard.as_str().unwrap())).unwrap();
        let info = file.info(name).unwrap();
        assert_eq!(info.dtype, Dtype::BF16, "{name}");
        total += info.numel() as u64 * 2;
        let t = ckpt.tensor(name).unwrap();
        assert_eq!(t.shape, info.shape, "{name}");
    }
    assert_eq!(index["metadata"]["total_size"].as_u64(), Some(total));
    assert_eq!(report.total_bytes, total);
    assert_eq!(
        map["model.embed_tokens.weight"],
        "model-00001-of-00002.safetensors"
    );
    assert_eq!(map["lm_head.weight"], "model-00002-of-00002.safetensors");
    assert_eq!(
        map["model.layers.1.mlp.down_proj.weight"],
        "model-00002-of-00002.safetensors"
    );
    for l in 0..cfg.num_layers {
        for kind in LinearKind::ALL {
            let lin = ckpt.linear(LinearId { layer: l, kind }).unwrap();
            assert_eq!(lin.shape(), cfg.linear_shape(kind));
        }
    }
    let norm = ckpt.tensor("model.norm.weight").unwrap().data;
    assert!(norm.iter().all(|&v| v == 1.0));
    let embed = ckpt.tensor("model.embed_tokens.weight").unwrap().data;
    let std = (embed.iter().map(|v| (v * v) as f64).sum::<f64>() / embed.len() as f64).sqrt();
    // 16,384 Gaussian entries: the sample std is within 3% of 0.02 with overwhelming odds.
    assert!((std - 0.02).abs() < 0.02 * 0.03, "embedding std {std}");
}

/// The defining identity: each stored linear is `U diag(s) Vᵀ` with the target `s`.
/// Tolerances: the f32 product has `s` to 1e-4·s₀ (f32 GEMM of orthonormal bases); the stored
/// bf16 matrix is the f32 one rounded entry by entry (exactly), so by Weyl's inequality its
/// singular values are within ‖E‖₂ ≤ ‖E‖_F of `s` (E the rounding); on the tiny shape that is
/// below 1e-2 relative on the leading values, checked too.
#[test]
fn linears_have_exactly_the_target_singular_values() {
    let dir = tempfile::tempdir().unwrap();
    let seed = 11;
    write_tiny(
        dir.path(),
        &SynthOptions {
            seed,
            layers_per_shard: None,
        },
    );
    let cfg = SynthShape::Tiny.config();
    let ckpt = Checkpoint::open(dir.path()).unwrap();
    let mut gen = LinearGenerator::new(&cfg, seed);
    let profile = SingularProfile::measured();
    for layer in 0..cfg.num_layers {
        for kind in LinearKind::ALL {
            let id = LinearId { layer, kind };
            let target = gen.singular_values(id);
            let (m, n) = cfg.linear_shape(kind);
            assert_eq!(target.len(), m.min(n));
            assert!(
                target.windows(2).all(|w| w[0] >= w[1]),
                "{id}: not descending"
            );
            // The relative profile is the table's (at its end points exactly).
            let ratio_end = (*target.last().unwrap() / target[0]) as f64;
            let table_end = profile.log10_ratio
                [LinearKind::ALL.iter().position(|&k| k == kind).unwrap()][PROFILE_POINTS - 1];
            assert!(
                (ratio_end.log10() - table_end).abs() < 1e-4,
                "{id}: {ratio_end}"
            );
            // The entry RMS is ENTRY_RMS within the jitter.
            let rms = (target.iter().map(|&s| (s * s) as f64).sum::<f64>() / (m * n) as f64).sqrt();
            let (lo, hi) = (
                ENTRY_RMS as f64 * (1.0 - LAYER_JITTER as f64),
                ENTRY_RMS as f64 * (1.0 + LAYER_JITTER as f64),
            );
            assert!(rms >= lo - 1e-7 && rms <= hi + 1e-7, "{id}: rms {rms}");

            let exact = gen.linear(id);
            let sigma = singular_values(&exact);
            let s0 = target[0] as f64;
            for (i, (&t, &s)) in target.iter().zip(&sigma).enumerate() {
                assert!((t as f64 - s).abs() <= 1e-4 * s0, "{id} σ{i}: {s} vs {t}");
            }

            let stored = ckpt.linear(id).unwrap().to_dense();
            let mut err_f = 0.0f64;
            for i in 0..m {
                for j in 0..n {
                    let want = half::bf16::from_f32(exact[(i, j)]).to_f32();
                    assert_eq!(stored[(i, j)], want, "{id} ({i},{j}) is not bf16(W)");
                    err_f += ((stored[(i, j)] - exact[(i, j)]) as f64).powi(2);
                }
            }
            let err_f = err_f.sqrt();
            let sigma_b = singular_values(&stored);
            for (i, (&t, &s)) in target.iter().zip(&sigma_b).enumerate() {
                assert!(
                    (t as f64 - s).abs() <= err_f + 1e-4 * s0,
                    "{id} σ{i}: {s} vs {t}, rounding ‖E‖_F {err_f}"
                );
            }
            for i in 0..4 {
                let rel = (sigma_b[i] - target[i] as f64).abs() / target[i] as f64;
                assert!(rel < 1e-2, "{id} σ{i}: relative error {rel}");
            }
        }
    }
    // Distinct matrices, even of one kind and shape.
    let q0 = gen.linear(LinearId {
        layer: 0,
        kind: LinearKind::Q,
    });
    let q1 = gen.linear(LinearId {
        layer: 1,
        kind: LinearKind::Q,
    });
    assert!((0..q0.nrows()).any(|i| q0[(i, 0)] != q1[(i, 0)]));
}

#[test]
fn profile_interpolates_the_table_in_log() {
    let p = SingularProfile::measured();
    for (k, &kind) in LinearKind::ALL.iter().enumerate() {
        let row = p.log10_ratio[k];
        assert_eq!(row[0], 0.0, "{kind:?}: σ₁/σ₁ must be 1");
        assert!(
            row.windows(2).all(|w| w[0] >= w[1]),
            "{kind:?}: table not descending"
        );
        for (i, &v) in row.iter().enumerate() {
            let x = i as f64 / (PROFILE_POINTS - 1) as f64;
            assert!((p.ratio(kind, x).log10() - v).abs() < 1e-12);
        }
        // Half way between two points: the mean of their logs.
        let x = 2.5 / (PROFILE_POINTS - 1) as f64;
        let want = 0.5 * (row[2] + row[3]);
        assert!((p.ratio(kind, x).log10() - want).abs() < 1e-12);
    }
}

/// The Mistral shape's GQA: k/v have 8 heads of 128 rows; the 7B plans put 8 whole layers in
/// each of 4 shards, the embedding first and the head last.
#[test]
fn seven_b_configs_and_shard_plans() {
    let m = SynthShape::Mistral7b.config();
    assert_eq!((m.num_heads, m.num_kv_heads, m.head_dim), (32, 8, 128));
    assert_eq!(m.linear_shape(LinearKind::Q), (4096, 4096));
    assert_eq!(m.linear_shape(LinearKind::K), (1024, 4096));
    assert_eq!(m.linear_shape(LinearKind::V), (1024, 4096));
    assert_eq!(m.linear_shape(LinearKind::O), (4096, 4096));
    assert_eq!(m.linear_shape(LinearKind::Gate), (14336, 4096));
    assert_eq!(m.linear_shape(LinearKind::Down), (4096, 14336));
    let l = SynthShape::Llama7b.config();
    assert_eq!(l.num_kv_heads, 32);
    assert_eq!(l.linear_shape(LinearKind::K), (4096, 4096));
    assert_eq!(l.linear_shape(LinearKind::Up), (11008, 4096));
    // LLaMA-2-7B has 6.74 B parameters.
    let params = l.linear_params()
        + 2 * l.vocab_size * l.hidden_size
        + (2 * l.num_layers + 1) * l.hidden_size;
    assert_eq!(params, 6_738_415_616);

    for cfg in [&l, &m] {
        // The config round-trips through config.json.
        let back =
            ModelConfig::from_hf_json(&cfg.to_hf_json().to_string(), Path::new("c")).unwrap();
        assert_eq!(&back, cfg);
        let plan = shard_plan(cfg, None).unwrap();
        assert_eq!(plan.len(), 4);
        assert_eq!(plan[0].file, "model-00001-of-00004.safetensors");
        assert_eq!(plan[0].tensors[0], SynthTensor::Embedding);
        assert_eq!(plan[3].tensors.last(), Some(&SynthTensor::LmHead));
        for shard in &plan {
            let layers: BTreeSet<usize> = shard
                .tensors
                .iter()
                .filter_map(|t| match t {
                    SynthTensor::Linear(id) => Some(id.layer),
                    _ => None,
                })
                .collect();
            assert_eq!(layers.len(), 8);
            let bytes: u64 = shard.tensors.iter().map(|t| t.bytes(cfg)).sum();
            assert!(
                (2e9..4e9).contains(&(bytes as f64)),
                "{}: {bytes} bytes",
                shard.file
            );
        }
        let all: usize = plan.iter().map(|s| s.tensors.len()).sum();
        assert_eq!(all, 9 * cfg.num_layers + 3);
    }
    assert_eq!(shard_plan(&l, Some(5)).unwrap().len(), 7);
    assert!(shard_plan(&l, Some(0)).is_err());
    let two = synth_config(SynthShape::Mistral7b, Some(2)).unwrap();
    assert_eq!(two.num_layers, 2);
    assert_eq!(shard_plan(&two, None).unwrap().len(), 1);
    assert!(synth_config(SynthShape::Llama7b, Some(0)).is_err());
}

#[test]
fn tiny_model_runs_with_finite_logits() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny(dir.path(), &SynthOptions::default());
    let ckpt = Checkpoint::open(dir.path()).unwrap();
    let model = Model::load(&ckpt).unwrap();
    let tokens: Vec<u32> = (0..24).map(|i| (i * 37 % 256) as u32).collect();
    let logits = model.logits(&tokens).unwrap();
    assert_eq!(logits.shape(), (256, tokens.len()));
    let mut spread = 0.0f32;
    for j in 0..logits.ncols() {
        for i in 0..logits.nrows() {
            assert!(logits[(i, j)].is_finite());
            spread = spread.max((logits[(i, j)] - logits[(0, j)]).abs());
        }
    }
    assert!(spread > 0.0, "logits are all equal");
}

fn folder_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    files.sort();
    files
}

#[test]
fn same_seed_same_bytes_other_seed_other_weights() {
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let opts = SynthOptions {
        seed: 42,
        layers_per_shard: Some(1),
    };
    write_tiny(a.path(), &opts);
    write_tiny(b.path(), &opts);
    let fa = folder_bytes(a.path());
    assert_eq!(fa.len(), 4, "two shards, index, config");
    assert!(fa == folder_bytes(b.path()), "same seed, different bytes");
    // Re-running into a previous output folder replaces it with the same bytes.
    write_tiny(a.path(), &opts);
    assert!(fa == folder_bytes(a.path()));
    write_tiny(
        c.path(),
        &SynthOptions {
            seed: 43,
            ..opts.clone()
        },
    );
    let fc = folder_bytes(c.path());
    for ((name, x), (_, y)) in fa.iter().zip(&fc) {
        if name.ends_with(".safetensors") {
            assert_ne!(x, y, "{name}: seed does not matter");
        }
    }
}

#[test]
fn refuses_a_folder_holding_another_model() {
    let dir = tempfile::tempdir().unwrap();
    let foreign = SynthShape::Tiny.config().to_hf_json().to_string();
    std::fs::write(dir.path().join("config.json"), &foreign).unwrap();
    let err = write_synthetic_checkpoint(
        dir.path(),
        &SynthShape::Tiny.config(),
        &SynthOptions::default(),
        |_| {},
    )
    .unwrap_err();
    assert!(err.to_string().contains("did not make"), "{err}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("config.json")).unwrap(),
        foreign
    );
}

/// `--measure-profile` on the real model reproduces the baked table (printed to 4 decimals).
#[test]
fn baked_profile_is_the_real_models() {
    let Some(model) = llm_compress::eval::testing::real_model_path() else {
        return;
    };
    let ckpt = Checkpoint::open(&model).unwrap();
    let measured = SingularProfile::measure(&ckpt, |_, _| {}).unwrap();
    let baked = SingularProfile::measured();
    for (k, (a, b)) in measured
        .log10_ratio
        .iter()
        .zip(&baked.log10_ratio)
        .enumerate()
    {
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() < 2e-4,
                "{:?}[{i}]: measured {x}, baked {y}",
                LinearKind::ALL[k]
            );
        }
    }
}
