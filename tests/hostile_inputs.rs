//! Hostile inputs across the formats a user hands us: compact folders (manifest and tensors),
//! `config.json`, `tokenizer.json`, safetensors checkpoints, sharded indexes and non-finite
//! weights. Each malformation must be refused with the expected error kind and a message naming
//! the field; none may panic. GGUF malformations are in `crates/tensor-io/tests/gguf_hostile.rs`,
//! safetensors header ones in `crates/tensor-io/src/safetensors.rs`; docs/limits.md lists all.

use llm_compress::testing::write_tiny_compact;
use llm_compress_core::{LinearId, LinearKind};
use llm_compress_eval::testing::{config_json, random_weights, write_tiny_safetensors};
use llm_compress_eval::{EvalError, Model};
use llm_compress_tensor_io::compact::{MANIFEST, TENSORS};
use llm_compress_tensor_io::{Checkpoint, IoError, ModelConfig, Tokenizer};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// The error kinds of `IoError`, for matching.
#[derive(Debug, PartialEq)]
enum Kind {
    Io,
    Malformed,
    Unsupported,
    MissingField,
    InvalidField,
    NoTensor,
    Json,
}

fn kind(e: &IoError) -> Kind {
    match e {
        IoError::Io { .. } => Kind::Io,
        IoError::Malformed { .. } => Kind::Malformed,
        IoError::Unsupported { .. } => Kind::Unsupported,
        IoError::MissingField { .. } => Kind::MissingField,
        IoError::InvalidField { .. } => Kind::InvalidField,
        IoError::NoTensor { .. } => Kind::NoTensor,
        IoError::Json { .. } => Kind::Json,
    }
}

fn expect(r: Result<impl std::fmt::Debug, IoError>, want: Kind, needle: &str, case: &str) {
    let e = match r {
        Ok(v) => panic!("{case}: accepted ({v:?})"),
        Err(e) => e,
    };
    let msg = e.to_string();
    assert_eq!(kind(&e), want, "{case}: {msg}");
    assert!(msg.contains(needle), "{case}: `{needle}` not in: {msg}");
}

/// A fresh valid compact folder (tiny random Llama, SVD-LLM 0.2) and its manifest as JSON.
fn compact_folder() -> (tempfile::TempDir, PathBuf, Value) {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("out");
    write_tiny_compact(&t.path().join("src"), &dir, 11).unwrap();
    let m: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(MANIFEST)).unwrap()).unwrap();
    (t, dir, m)
}

/// Open `dir` with `manifest` and load every decoder linear.
fn load_all(dir: &Path, manifest: &Value) -> Result<usize, IoError> {
    std::fs::write(dir.join(MANIFEST), manifest.to_string()).unwrap();
    let c = Checkpoint::open(dir)?;
    let mut n = 0;
    for layer in 0..c.config.num_layers {
        for kind in LinearKind::ALL {
            n += c.linear(LinearId { layer, kind })?.param_count();
        }
    }
    Ok(n)
}

#[test]
fn the_valid_compact_folder_loads() {
    let (_t, dir, m) = compact_folder();
    assert!(load_all(&dir, &m).unwrap() > 0);
}

#[test]
fn hostile_manifests() {
    let (_t, dir, valid) = compact_folder();
    let q = "layers.0.q";
    let edit = |f: &dyn Fn(&mut Value)| {
        let mut m = valid.clone();
        f(&mut m);
        m
    };
    // 1. Not JSON at all.
    std::fs::write(dir.join(MANIFEST), b"{\"format_version\": 1,").unwrap();
    expect(
        Checkpoint::open(&dir),
        Kind::Json,
        "manifest.json",
        "truncated manifest",
    );
    // 2. A newer format version.
    let m = edit(&|m| m["format_version"] = json!(99));
    expect(
        load_all(&dir, &m),
        Kind::Unsupported,
        "99",
        "newer format version",
    );
    // 3. A representation type this build does not know.
    let m = edit(&|m| m["linears"][q] = json!({"type": "hologram", "tensor": "x"}));
    expect(
        load_all(&dir, &m),
        Kind::Json,
        "hologram",
        "unknown representation",
    );
    // 4. A manifest whose tensor-file hash does not match.
    let m = edit(&|m| m["tensors_sha256"] = json!("00".repeat(32)));
    expect(
        load_all(&dir, &m),
        Kind::InvalidField,
        "tensors_sha256",
        "hash mismatch",
    );
    // 4b. Sharded tensor files that escape the folder, or do not exist.
    let m = edit(&|m| m["tensor_files"] = json!(["../model.safetensors"]));
    expect(
        load_all(&dir, &m),
        Kind::InvalidField,
        "tensor_files",
        "tensor file outside the folder",
    );
    let m = edit(&|m| m["tensor_files"] = json!(["model.safetensors", "gone.safetensors"]));
    expect(load_all(&dir, &m), Kind::Io, "gone", "missing tensor file");
    // 5. A factor whose manifest shape differs from the file's.
    let m = edit(&|m| m["linears"][q]["first"]["shape"] = json!([3, 32]));
    expect(
        load_all(&dir, &m),
        Kind::InvalidField,
        "shape",
        "factor shape",
    );
    // 6. A rank that disagrees with the factors.
    let m = edit(&|m| m["linears"][q]["rank"] = json!(1));
    expect(
        load_all(&dir, &m),
        Kind::InvalidField,
        "rank",
        "rank mismatch",
    );
    // 7. A representation naming a tensor that is not in the file.
    let m = edit(&|m| m["linears"][q]["first"]["tensor"] = json!("model.nothing.weight"));
    expect(
        load_all(&dir, &m),
        Kind::NoTensor,
        "model.nothing.weight",
        "missing tensor",
    );
    // 8. The representation of another kind (k's factors for q): loads, but not as q's shape.
    let m = edit(&|m| m["linears"][q] = m["linears"]["layers.0.k"].clone());
    expect(
        load_all(&dir, &m),
        Kind::InvalidField,
        "layers.0.q",
        "wrong linear shape",
    );
    // 9. Nesting deep enough to overflow a naive recursive reader's stack: serde_json's
    // recursion limit refuses it.
    let open = r#"{"type":"low_rank","rank":1,"second":null,"first":"#;
    let deep = format!("{}null{}", open.repeat(50_000), "}".repeat(50_000));
    let text = valid.to_string().replacen(
        "\"linears\":{",
        &format!("\"linears\":{{\"layers.0.zz\":{deep},"),
        1,
    );
    std::fs::write(dir.join(MANIFEST), text).unwrap();
    expect(
        Checkpoint::open(&dir),
        Kind::Json,
        "recursion",
        "deep nesting",
    );
    // 10. The tensor file is gone.
    std::fs::write(dir.join(MANIFEST), valid.to_string()).unwrap();
    std::fs::remove_file(dir.join(TENSORS)).unwrap();
    expect(
        Checkpoint::open(&dir),
        Kind::Io,
        TENSORS,
        "missing tensor file",
    );
}

#[test]
fn hostile_configs() {
    let base: Value = serde_json::from_str(&config_json(true)).unwrap();
    let p = Path::new("config.json");
    let with = |k: &str, v: Value| {
        let mut c = base.clone();
        c[k] = v;
        c.to_string()
    };
    let cases: Vec<(String, Kind, &str, &str)> = vec![
        (
            {
                let mut c = base.clone();
                c.as_object_mut().unwrap().remove("hidden_size");
                c.to_string()
            },
            Kind::MissingField,
            "hidden_size",
            "missing field",
        ),
        (
            with("model_type", json!("gpt2")),
            Kind::Unsupported,
            "gpt2",
            "unknown architecture",
        ),
        (
            with("num_key_value_heads", json!(3)),
            Kind::InvalidField,
            "num_key_value_heads",
            "kv heads do not divide heads",
        ),
        (
            with("hidden_size", json!(-4)),
            Kind::InvalidField,
            "hidden_size",
            "negative size",
        ),
        (
            with("vocab_size", json!(1u64 << 39)),
            Kind::InvalidField,
            "vocab_size",
            "vocabulary beyond the limit",
        ),
        (
            with("num_hidden_layers", json!(1_000_000)),
            Kind::InvalidField,
            "num_hidden_layers",
            "layers beyond the limit",
        ),
        (
            with("rms_norm_eps", json!("tiny")),
            Kind::InvalidField,
            "rms_norm_eps",
            "string for a number",
        ),
        (
            "{\"hidden_size\": 4".into(),
            Kind::Json,
            "config.json",
            "truncated JSON",
        ),
    ];
    for (text, want, needle, case) in cases {
        expect(ModelConfig::from_hf_json(&text, p), want, needle, case);
    }
}

#[test]
fn hostile_tokenizers() {
    let p = Path::new("tokenizer.json");
    let fixture = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("crates/tensor-io/tests/data/smollm2-tokenizer.json"),
    )
    .unwrap();
    let valid: Value = serde_json::from_str(&fixture).unwrap();
    assert!(Tokenizer::from_tokenizer_json(&fixture, p).is_ok());
    let edit = |f: &dyn Fn(&mut Value)| {
        let mut v = valid.clone();
        f(&mut v);
        v.to_string()
    };
    let cases: Vec<(String, &str)> = vec![
        ("[1, 2, 3]".into(), "array instead of an object"),
        (
            edit(&|v| v["model"]["type"] = json!("Unigram")),
            "a model type other than BPE",
        ),
        (
            edit(&|v| {
                v["model"].as_object_mut().unwrap().remove("vocab");
            }),
            "no vocabulary",
        ),
        (
            edit(&|v| v["model"]["merges"] = json!(["Ġ qqqqqqzzzz"])),
            "a merge of unknown tokens",
        ),
        (
            edit(&|v| v["model"]["vocab"]["Ġthe"] = json!(-1)),
            "a negative token id",
        ),
        (
            edit(&|v| v["added_tokens"] = json!([{"id": 0, "content": 5}])),
            "an added token whose content is not a string",
        ),
    ];
    for (text, case) in cases {
        match Tokenizer::from_tokenizer_json(&text, p) {
            Ok(_) => panic!("{case}: accepted"),
            Err(e) => {
                let k = kind(&e);
                assert!(
                    matches!(
                        k,
                        Kind::Json
                            | Kind::Malformed
                            | Kind::Unsupported
                            | Kind::MissingField
                            | Kind::InvalidField
                    ),
                    "{case}: {e}"
                );
                assert!(e.to_string().contains("tokenizer.json"), "{case}: {e}");
            }
        }
    }
}

#[test]
fn hostile_checkpoints() {
    // A tensor whose shape disagrees with config.json.
    let t = tempfile::tempdir().unwrap();
    let mut w = random_weights(5, true);
    let name = "model.layers.1.self_attn.k_proj.weight";
    let shape = &mut w.get_mut(name).unwrap().0;
    *shape = vec![shape[1], shape[0]];
    write_tiny_safetensors(t.path(), &w, true).unwrap();
    let c = Checkpoint::open(t.path()).unwrap();
    expect(
        c.linear(LinearId {
            layer: 1,
            kind: LinearKind::K,
        }),
        Kind::InvalidField,
        name,
        "transposed weight",
    );
    // A missing tensor.
    let t = tempfile::tempdir().unwrap();
    let mut w = random_weights(5, true);
    w.remove("model.norm.weight");
    write_tiny_safetensors(t.path(), &w, true).unwrap();
    let c = Checkpoint::open(t.path()).unwrap();
    match Model::load(&c) {
        Err(EvalError::Io(e)) => assert_eq!(kind(&e), Kind::NoTensor, "{e}"),
        other => panic!("missing norm: {:?}", other.map(|_| ())),
    }
    // NaN and infinite weights are refused by name, not turned into NaN perplexity.
    for bad in [f32::NAN, f32::INFINITY] {
        let t = tempfile::tempdir().unwrap();
        let mut w = random_weights(5, true);
        let name = "model.layers.0.mlp.down_proj.weight";
        w.get_mut(name).unwrap().1[17] = bad;
        write_tiny_safetensors(t.path(), &w, true).unwrap();
        let c = Checkpoint::open(t.path()).unwrap();
        match Model::load(&c) {
            Err(EvalError::Io(e)) => {
                assert_eq!(kind(&e), Kind::InvalidField, "{e}");
                assert!(
                    e.to_string().contains(name) && e.to_string().contains("index 17"),
                    "{e}"
                );
            }
            other => panic!("{bad} weight: {:?}", other.map(|_| ())),
        }
    }
    // A sharded index pointing outside its folder.
    let t = tempfile::tempdir().unwrap();
    write_tiny_safetensors(t.path(), &random_weights(5, true), true).unwrap();
    std::fs::write(
        t.path().join("model.safetensors.index.json"),
        json!({"weight_map": {"model.norm.weight": "../../etc/passwd"}}).to_string(),
    )
    .unwrap();
    expect(
        Checkpoint::open(t.path()),
        Kind::InvalidField,
        "weight_map",
        "path traversal in the index",
    );
    // A path with an extension we do not read.
    let p = t.path().join("model.bin");
    std::fs::write(&p, b"pickle").unwrap();
    expect(
        Checkpoint::open(&p),
        Kind::Unsupported,
        "model path",
        "pickle file",
    );
}

#[test]
fn all_zero_weights_compress_without_nan() {
    // A layer whose weights are all zero: its Gram downstream is zero, the robust Cholesky
    // regularises (documented fallback) and the factors are zero, never NaN.
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let mut w = random_weights(9, true);
    for kind in LinearKind::ALL {
        let name = format!("model.layers.0.{}.weight", kind.hf_name());
        w.get_mut(&name)
            .unwrap()
            .1
            .iter_mut()
            .for_each(|v| *v = 0.0);
    }
    write_tiny_safetensors(&src, &w, true).unwrap();
    let ckpt = Checkpoint::open(&src).unwrap();
    let mut opts = llm_compress::lowrank::LowRankOptions::new(
        llm_compress::lowrank::LowRankMethod::SvdLlm,
        0.2,
    );
    opts.calibration = llm_compress_eval::CalibrationConfig {
        windows: 2,
        seq_len: 16,
        seed: 1,
    };
    opts.calibration_text = llm_compress::lowrank::CalibrationText::Tokens(
        (0..200)
            .map(|i| (i * 5 % llm_compress_eval::testing::V) as u32)
            .collect(),
    );
    let (out, _) = llm_compress::lowrank::compress_low_rank(&ckpt, &opts, |_| {}).unwrap();
    for layer in &out.layers {
        for kind in LinearKind::ALL {
            let d = layer.linear(kind).to_dense();
            assert!(d.as_ref().is_all_finite(), "{kind:?}");
        }
    }
    let zero = out.layers[0].linear(LinearKind::Q).to_dense();
    assert!(zero.norm_max() == 0.0, "an all-zero weight stays zero");
}
