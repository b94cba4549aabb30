//! GGUF writer → reader round trips: every metadata type (nested arrays included), tensors,
//! alignment, versions, the model configuration and the Hugging Face layout of q/k.

use llm_compress_tensor_io::config::{Architecture, ModelConfig};
use llm_compress_tensor_io::dequant::GgmlType;
use llm_compress_tensor_io::gguf::{
    gguf_name, hf_name, permute_qk_hf_to_gguf, GgufFile, GgufWriter, MetadataValue as V,
};
use llm_compress_tensor_io::IoError;
use std::collections::BTreeMap;
use std::path::Path;

fn open_bytes(dir: &Path, name: &str, bytes: &[u8]) -> Result<GgufFile, IoError> {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    GgufFile::open(&path)
}

/// HF tensors: (name, shape, row-major data).
type Weights = Vec<(String, Vec<usize>, Vec<f32>)>;

fn every_type() -> Vec<(&'static str, V)> {
    vec![
        ("t.u8", V::U8(200)),
        ("t.i8", V::I8(-100)),
        ("t.u16", V::U16(60000)),
        ("t.i16", V::I16(-30000)),
        ("t.u32", V::U32(4_000_000_000)),
        ("t.i32", V::I32(-2_000_000_000)),
        ("t.f32", V::F32(1e-5)),
        ("t.bool.true", V::Bool(true)),
        ("t.bool.false", V::Bool(false)),
        ("t.string", V::String("héllo ☃ \u{0} end".into())),
        ("t.string.empty", V::String(String::new())),
        ("t.u64", V::U64(u64::MAX)),
        ("t.i64", V::I64(i64::MIN)),
        ("t.f64", V::F64(-1.25e300)),
        ("a.u8", V::from(vec![1u8, 2, 255])),
        ("a.i8", V::from(vec![-1i8, 0, 127])),
        ("a.u16", V::from(vec![7u16, 65535])),
        ("a.i16", V::from(vec![-7i16, 7])),
        ("a.u32", V::from(vec![1u32, 2, 3])),
        ("a.i32", V::from(vec![-1i32, 1])),
        ("a.f32", V::from(vec![0.5f32, -0.0, f32::INFINITY])),
        ("a.bool", V::from(vec![true, false, true])),
        ("a.string", V::from(vec!["a", "", "ĉ"])),
        ("a.u64", V::from(vec![u64::MAX, 0])),
        ("a.i64", V::from(vec![i64::MIN, i64::MAX])),
        ("a.f64", V::from(vec![1.0f64, f64::MIN_POSITIVE])),
        ("a.empty", V::Array(vec![])),
        (
            "a.nested",
            V::Array(vec![
                V::from(vec![1u32, 2]),
                V::from(vec!["x", "y", "z"]),
                V::Array(vec![]),
                V::Array(vec![V::from(vec![true]), V::from(vec![-3i64])]),
            ]),
        ),
    ]
}

#[test]
fn metadata_round_trip_covers_every_type() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.gguf");
    let mut w = GgufWriter::new();
    for (k, v) in every_type() {
        w.add_metadata(k, v).unwrap();
    }
    w.add_tensor("x", &[2], GgmlType::F32, &[1.0, 2.0]).unwrap();
    w.write(&path).unwrap();

    let f = GgufFile::open(&path).unwrap();
    assert_eq!(f.version(), 3);
    assert_eq!(f.alignment(), 32);
    let expected: BTreeMap<String, V> = every_type()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    assert_eq!(f.metadata(), &expected);

    // Accessors.
    assert_eq!(f.get("t.u8").unwrap().as_u64(), Some(200));
    assert_eq!(f.get("t.i8").unwrap().as_u64(), None);
    assert_eq!(f.get("t.i8").unwrap().as_i64(), Some(-100));
    assert_eq!(f.get("t.u64").unwrap().as_i64(), None);
    assert_eq!(f.get("t.f32").unwrap().as_f64(), Some(1e-5f32 as f64));
    assert_eq!(f.get("t.f32").unwrap().as_f64_decimal(), Some(1e-5));
    assert_eq!(f.get("t.bool.true").unwrap().as_bool(), Some(true));
    assert_eq!(
        f.get("t.string").unwrap().as_str(),
        Some("héllo ☃ \u{0} end")
    );
    assert_eq!(f.get("a.string").unwrap().as_array().unwrap().len(), 3);
    let nested = f.get("a.nested").unwrap().as_array().unwrap();
    assert_eq!(
        nested[3].as_array().unwrap()[1].as_array().unwrap()[0],
        V::I64(-3)
    );
    assert_eq!(f.get("t.string").unwrap().as_u64(), None);
}

#[test]
fn tensors_round_trip_with_shapes_and_alignment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.gguf");
    let a: Vec<f32> = (0..6).map(|i| i as f32 * 0.5 - 1.0).collect();
    let b: Vec<f32> = (0..32).map(|i| (i as f32 - 16.0) / 8.0).collect();
    let c = [1.5f32, -2.0, 0.25, 3.0];
    // A raw Q8_0 tensor of 2 rows of 32: d = 1.0, q = row * 10 + j - 16.
    let mut q8 = Vec::new();
    for row in 0..2i32 {
        q8.extend(half::f16::from_f32(1.0).to_bits().to_le_bytes());
        q8.extend((0..32).map(|j| (row * 10 + j - 16) as i8 as u8));
    }
    let mut w = GgufWriter::new();
    w.add_metadata("general.alignment", 64u32).unwrap();
    w.add_tensor("a", &[2, 3], GgmlType::F32, &a).unwrap();
    w.add_tensor("b", &[4, 8], GgmlType::F16, &b).unwrap();
    w.add_tensor("c", &[2, 2], GgmlType::BF16, &c).unwrap();
    w.add_tensor_raw("q", &[32, 2], GgmlType::Q8_0, q8).unwrap();
    w.write(&path).unwrap();

    let f = GgufFile::open(&path).unwrap();
    assert_eq!(f.alignment(), 64);
    assert_eq!(f.data_start() % 64, 0);
    let names: Vec<&str> = f.tensors().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "c", "q"]);
    for t in f.tensors() {
        assert_eq!(t.offset % 64, 0, "{}", t.name);
    }
    let info = f.tensor_info("a").unwrap();
    assert_eq!(info.dims, vec![3, 2]); // innermost first
    assert_eq!(info.shape(), vec![2, 3]);
    assert_eq!(info.ggml_type, GgmlType::F32);
    assert_eq!(f.tensor_f32("a").unwrap(), (vec![2, 3], a));
    assert_eq!(f.tensor_f32("b").unwrap(), (vec![4, 8], b)); // exact in f16
    assert_eq!(f.tensor_f32("c").unwrap(), (vec![2, 2], c.to_vec())); // exact in bf16
    let (shape, q) = f.tensor_f32("q").unwrap();
    assert_eq!(shape, vec![2, 32]);
    assert_eq!(q[0], -16.0);
    assert_eq!(q[32 + 31], 25.0);
    assert!(matches!(
        f.tensor_f32("nope"),
        Err(IoError::NoTensor { .. })
    ));
}

#[test]
fn version_2_reads_version_1_and_big_endian_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = GgufWriter::new();
    w.add_metadata("k", 1u32).unwrap();
    w.add_tensor("x", &[3], GgmlType::F32, &[1.0, 2.0, 3.0])
        .unwrap();
    let mut bytes = w.to_bytes();
    bytes[4..8].copy_from_slice(&2u32.to_le_bytes());
    let f = open_bytes(dir.path(), "v2.gguf", &bytes).unwrap();
    assert_eq!(f.version(), 2);
    assert_eq!(f.tensor_f32("x").unwrap().1, vec![1.0, 2.0, 3.0]);

    bytes[4..8].copy_from_slice(&1u32.to_le_bytes());
    let e = open_bytes(dir.path(), "v1.gguf", &bytes).unwrap_err();
    assert!(matches!(e, IoError::Unsupported { .. }), "{e}");
    assert!(e.to_string().contains("version 1"), "{e}");

    bytes[4..8].copy_from_slice(&3u32.to_be_bytes());
    let e = open_bytes(dir.path(), "be.gguf", &bytes).unwrap_err();
    assert!(matches!(e, IoError::Unsupported { .. }), "{e}");
    assert!(e.to_string().contains("big-endian"), "{e}");

    bytes[4..8].copy_from_slice(&4u32.to_le_bytes());
    let e = open_bytes(dir.path(), "v4.gguf", &bytes).unwrap_err();
    assert!(matches!(e, IoError::Unsupported { .. }), "{e}");
}

fn tiny_cfg(architecture: Architecture) -> ModelConfig {
    ModelConfig {
        architecture,
        vocab_size: 16,
        hidden_size: 16,
        intermediate_size: 12,
        num_layers: 2,
        num_heads: 2,
        num_kv_heads: 1,
        // 8, not 4: with head_dim 4 the permutation is its own inverse and a test could not
        // tell the two directions apart.
        head_dim: 8,
        rms_norm_eps: 1e-5,
        rope_theta: 100_000.0,
        max_position_embeddings: 128,
        tie_word_embeddings: true,
        attention_bias: architecture == Architecture::Qwen2,
        bos_token_id: Some(1),
        eos_token_id: Some(2),
    }
}

/// HF tensors of a tiny model, values distinct so any misplaced row shows.
fn tiny_weights(cfg: &ModelConfig) -> Weights {
    let (h, f, v) = (cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size);
    let (q, kv) = (
        cfg.num_heads * cfg.head_dim,
        cfg.num_kv_heads * cfg.head_dim,
    );
    let mut shapes: Vec<(String, Vec<usize>)> = vec![
        ("model.embed_tokens.weight".into(), vec![v, h]),
        ("model.norm.weight".into(), vec![h]),
    ];
    for l in 0..cfg.num_layers {
        let p = format!("model.layers.{l}");
        shapes.push((format!("{p}.input_layernorm.weight"), vec![h]));
        shapes.push((format!("{p}.post_attention_layernorm.weight"), vec![h]));
        shapes.push((format!("{p}.self_attn.q_proj.weight"), vec![q, h]));
        shapes.push((format!("{p}.self_attn.k_proj.weight"), vec![kv, h]));
        shapes.push((format!("{p}.self_attn.v_proj.weight"), vec![kv, h]));
        shapes.push((format!("{p}.self_attn.o_proj.weight"), vec![h, q]));
        shapes.push((format!("{p}.mlp.gate_proj.weight"), vec![f, h]));
        shapes.push((format!("{p}.mlp.up_proj.weight"), vec![f, h]));
        shapes.push((format!("{p}.mlp.down_proj.weight"), vec![h, f]));
        if cfg.attention_bias {
            shapes.push((format!("{p}.self_attn.q_proj.bias"), vec![q]));
            shapes.push((format!("{p}.self_attn.k_proj.bias"), vec![kv]));
            shapes.push((format!("{p}.self_attn.v_proj.bias"), vec![kv]));
        }
    }
    let mut seed = 0x1234_5678u32;
    shapes
        .into_iter()
        .map(|(n, s)| {
            let len: usize = s.iter().product();
            let data = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
                })
                .collect();
            (n, s, data)
        })
        .collect()
}

fn write_tiny(dir: &Path, cfg: &ModelConfig) -> (GgufFile, Weights) {
    let weights = tiny_weights(cfg);
    let mut w = GgufWriter::new();
    w.add_model_config(cfg).unwrap();
    for (n, s, d) in &weights {
        w.add_hf_tensor(cfg, n, s, GgmlType::F32, d).unwrap();
    }
    let path = dir.join(format!("{:?}.gguf", cfg.architecture));
    w.write(&path).unwrap();
    (GgufFile::open(&path).unwrap(), weights)
}

#[test]
fn tiny_llama_round_trips_config_and_hf_layout() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_cfg(Architecture::Llama);
    let (f, weights) = write_tiny(dir.path(), &cfg);
    assert_eq!(f.model_config().unwrap(), cfg);
    assert_eq!(f.architecture(), Some("llama"));
    assert_eq!(f.hf_tensors().len(), weights.len());
    for (n, s, d) in &weights {
        let (shape, data) = f.tensor_hf(n).unwrap();
        assert_eq!(&shape, s, "{n}");
        assert_eq!(&data, d, "{n}");
    }
    // The stored q rows follow llama.cpp's order: gguf_row[h*hd + 2i + j] = hf_row[h*hd + j*hd/2 + i].
    let (n, _, hf_q) = &weights[4];
    assert_eq!(n, "model.layers.0.self_attn.q_proj.weight");
    let (shape, gguf_q) = f.tensor_f32("blk.0.attn_q.weight").unwrap();
    assert_eq!(shape, vec![16, 16]);
    let (hd, cols) = (8, 16);
    for h in 0..2 {
        for i in 0..hd / 2 {
            for j in 0..2 {
                let g = h * hd + 2 * i + j;
                let r = h * hd + j * hd / 2 + i;
                assert_eq!(
                    gguf_q[g * cols..(g + 1) * cols],
                    hf_q[r * cols..(r + 1) * cols]
                );
            }
        }
    }
    assert_ne!(&gguf_q, hf_q);
    // k uses the kv head count: 1 head of 8 rows, stored in the order 0 4 1 5 2 6 3 7.
    let (_, _, hf_k) = &weights[5];
    let (_, gguf_k) = f.tensor_f32("blk.0.attn_k.weight").unwrap();
    assert_eq!(
        gguf_k,
        permute_qk_hf_to_gguf(hf_k, 8, 16, 1).unwrap(),
        "k permuted with num_kv_heads"
    );
    for (g, r) in [0, 4, 1, 5, 2, 6, 3, 7].into_iter().enumerate() {
        assert_eq!(
            gguf_k[g * 16..(g + 1) * 16],
            hf_k[r * 16..(r + 1) * 16],
            "k row {g}"
        );
    }
    // Tied: no lm_head.
    assert!(matches!(
        f.tensor_hf("lm_head.weight"),
        Err(IoError::NoTensor { ref name, .. }) if name == "lm_head.weight"
    ));
    assert!(matches!(
        f.tensor_hf("model.nonsense"),
        Err(IoError::NoTensor { .. })
    ));
}

#[test]
fn qwen2_is_not_permuted_and_has_biases() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_cfg(Architecture::Qwen2);
    let (f, weights) = write_tiny(dir.path(), &cfg);
    assert_eq!(f.model_config().unwrap(), cfg);
    for (n, _, d) in &weights {
        assert_eq!(&f.tensor_hf(n).unwrap().1, d, "{n}");
        let raw = f.tensor_f32(&gguf_name(n).unwrap()).unwrap().1;
        assert_eq!(&raw, d, "{n} stored unpermuted");
    }
}

#[test]
fn llama_biases_are_permuted_like_their_weights() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = tiny_cfg(Architecture::Llama);
    cfg.attention_bias = true;
    let (f, weights) = write_tiny(dir.path(), &cfg);
    assert!(f.model_config().unwrap().attention_bias);
    let (_, _, hf_qb) = weights
        .iter()
        .find(|w| w.0 == "model.layers.1.self_attn.q_proj.bias")
        .unwrap();
    let raw = f.tensor_f32("blk.1.attn_q.bias").unwrap().1;
    assert_eq!(raw, permute_qk_hf_to_gguf(hf_qb, 16, 1, 2).unwrap());
    assert_eq!((raw[1], raw[9]), (hf_qb[4], hf_qb[12]));
    assert_eq!(
        &f.tensor_hf("model.layers.1.self_attn.q_proj.bias")
            .unwrap()
            .1,
        hf_qb
    );
}

fn config_file(dir: &Path, edit: impl FnOnce(&mut GgufWriter)) -> GgufFile {
    let cfg = tiny_cfg(Architecture::Llama);
    let mut w = GgufWriter::new();
    w.add_model_config(&cfg).unwrap();
    edit(&mut w);
    let bytes = w.to_bytes();
    open_bytes(dir, "cfg.gguf", &bytes).unwrap()
}

/// Rebuild a writer's metadata without some keys (the writer has no remove).
fn without(keys: &[&str], extra: &[(&str, V)]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let f = config_file(dir.path(), |_| {});
    let mut w = GgufWriter::new();
    for (k, v) in f.metadata() {
        if !keys.contains(&k.as_str()) {
            w.add_metadata(k.clone(), v.clone()).unwrap();
        }
    }
    for (k, v) in extra {
        w.add_metadata(*k, v.clone()).unwrap();
    }
    w.to_bytes()
}

#[test]
fn model_config_defaults_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    // Missing required key → MissingField naming it.
    let f = open_bytes(d, "a.gguf", &without(&["llama.block_count"], &[])).unwrap();
    let e = f.model_config().unwrap_err();
    assert!(
        matches!(e, IoError::MissingField { ref field, .. } if field == "llama.block_count"),
        "{e}"
    );
    let f = open_bytes(d, "b.gguf", &without(&["general.architecture"], &[])).unwrap();
    assert!(matches!(
        f.model_config().unwrap_err(),
        IoError::MissingField { ref field, .. } if field == "general.architecture"
    ));

    // Unknown architecture names the field and the value.
    let f = open_bytes(
        d,
        "c.gguf",
        &without(&[], &[("general.architecture", V::from("gpt2"))]),
    )
    .unwrap();
    let e = f.model_config().unwrap_err().to_string();
    assert!(
        e.contains("general.architecture") && e.contains("gpt2"),
        "{e}"
    );

    // Defaults: head_count_kv = head_count, freq_base = 10000, head_dim = embedding / heads;
    // vocab size from the token list.
    let tokens: Vec<String> = (0..16).map(|i| format!("t{i}")).collect();
    let bytes = without(
        &[
            "llama.attention.head_count_kv",
            "llama.rope.freq_base",
            "llama.attention.key_length",
            "llama.rope.dimension_count",
            "llama.vocab_size",
        ],
        &[("tokenizer.ggml.tokens", V::from(tokens))],
    );
    let c = open_bytes(d, "e.gguf", &bytes)
        .unwrap()
        .model_config()
        .unwrap();
    assert_eq!(c.num_kv_heads, 2);
    assert_eq!(c.rope_theta, 10_000.0);
    assert_eq!(c.head_dim, 8);
    assert_eq!(c.vocab_size, 16);
    assert_eq!(c.rms_norm_eps, 1e-5);

    // No vocabulary at all.
    let f = open_bytes(d, "f.gguf", &without(&["llama.vocab_size"], &[])).unwrap();
    assert!(matches!(
        f.model_config().unwrap_err(),
        IoError::MissingField { .. }
    ));

    // Wrong type.
    let f = open_bytes(
        d,
        "g.gguf",
        &without(&[], &[("llama.block_count", V::from("thirty"))]),
    )
    .unwrap();
    assert!(matches!(
        f.model_config().unwrap_err(),
        IoError::InvalidField { ref field, .. } if field == "llama.block_count"
    ));

    // mistral is accepted; an output.weight unties the embeddings.
    let mut w = GgufWriter::new();
    w.add_model_config(&tiny_cfg(Architecture::Llama)).unwrap();
    w.add_metadata("general.architecture", "mistral").unwrap();
    for (k, v) in tiny_llama_keys() {
        w.add_metadata(k.replace("llama.", "mistral."), v).unwrap();
    }
    w.add_tensor("output.weight", &[16, 16], GgmlType::F32, &[0.0; 256])
        .unwrap();
    let c = open_bytes(d, "h.gguf", &w.to_bytes())
        .unwrap()
        .model_config()
        .unwrap();
    assert_eq!(c.architecture, Architecture::Mistral);
    assert!(!c.tie_word_embeddings);
}

fn tiny_llama_keys() -> Vec<(String, V)> {
    let dir = tempfile::tempdir().unwrap();
    let f = config_file(dir.path(), |_| {});
    f.metadata()
        .iter()
        .filter(|(k, _)| k.starts_with("llama."))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[test]
fn writer_rejects_bad_input() {
    let mut w = GgufWriter::new();
    assert!(w
        .add_metadata("mixed", V::Array(vec![V::U8(1), V::U16(2)]))
        .is_err());
    assert!(w
        .add_metadata(
            "deep",
            V::Array(vec![V::Array(vec![V::U8(1), V::Bool(true)])])
        )
        .is_err());
    assert!(w.add_metadata("general.alignment", 48u32).is_err());
    assert!(w.add_metadata("general.alignment", 64u64).is_err());
    assert!(w
        .add_tensor("x", &[2, 2], GgmlType::F32, &[1.0; 3])
        .is_err());
    assert!(w
        .add_tensor("x", &[32], GgmlType::Q4_0, &[1.0; 32])
        .is_err());
    assert!(w
        .add_tensor_raw("x", &[16], GgmlType::Q4_0, vec![0; 18])
        .is_err());
    w.add_tensor("x", &[1], GgmlType::F32, &[1.0]).unwrap();
    assert!(w.add_tensor("x", &[1], GgmlType::F32, &[1.0]).is_err());
    let cfg = tiny_cfg(Architecture::Llama);
    assert!(w
        .add_hf_tensor(
            &cfg,
            "model.layers.0.self_attn.q_proj.weight",
            &[6, 16],
            GgmlType::F32,
            &[0.0; 96]
        )
        .is_err());
    assert!(w
        .add_hf_tensor(&cfg, "not.a.tensor", &[1], GgmlType::F32, &[0.0])
        .is_err());
}

#[test]
fn write_is_atomic_and_replaces() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    std::fs::write(&path, b"old contents").unwrap();
    let mut w = GgufWriter::new();
    w.add_tensor("x", &[2], GgmlType::F32, &[5.0, 6.0]).unwrap();
    w.write(&path).unwrap();
    assert_eq!(
        GgufFile::open(&path).unwrap().tensor_f32("x").unwrap().1,
        vec![5.0, 6.0]
    );
    let entries: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(entries.len(), 1, "no temporary file left behind");
    // A directory that does not exist is an Io error, not a panic.
    let e = w.write(&dir.path().join("missing/x.gguf")).unwrap_err();
    assert!(matches!(e, IoError::Io { .. }));
}

#[test]
fn name_mapping_is_exported() {
    assert_eq!(
        hf_name("blk.7.ffn_down.weight").as_deref(),
        Some("model.layers.7.mlp.down_proj.weight")
    );
    assert_eq!(
        gguf_name("model.layers.7.self_attn.o_proj.weight").as_deref(),
        Some("blk.7.attn_output.weight")
    );
}
