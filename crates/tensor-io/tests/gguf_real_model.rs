//! The default model, SmolLM2-135M-Instruct Q4_1 (from `scripts/fetch-model.sh`), read end to
//! end. Located through `LLM_COMPRESS_MODEL`, else
//! `~/.cache/llm-compress/models/SmolLM2-135M-Instruct.Q4_1.gguf`; skipped when absent.
//!
//! Reference values come from the Python `gguf` package (`GGUFReader` + `gguf.quants.dequantize`,
//! and numpy for the inverse q/k permutation).

use llm_compress_tensor_io::config::Architecture;
use llm_compress_tensor_io::dequant::GgmlType;
use llm_compress_tensor_io::gguf::GgufFile;
use llm_compress_tensor_io::IoError;
use std::path::PathBuf;
use std::time::Instant;

fn model_path() -> Option<PathBuf> {
    let path = match std::env::var_os("LLM_COMPRESS_MODEL") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(std::env::var_os("HOME")?)
            .join(".cache/llm-compress/models/SmolLM2-135M-Instruct.Q4_1.gguf"),
    };
    if path.is_file() {
        Some(path)
    } else {
        eprintln!(
            "skipping: model not found at {} (run scripts/fetch-model.sh or set LLM_COMPRESS_MODEL)",
            path.display()
        );
        None
    }
}

fn assert_close(got: &[f32], expected: &[f64], what: &str) {
    assert_eq!(got.len(), expected.len(), "{what}");
    for (i, (&g, &e)) in got.iter().zip(expected).enumerate() {
        assert!((g as f64 - e).abs() <= 1e-6, "{what}[{i}]: {g} vs {e}");
    }
}

fn sum(x: &[f32]) -> f64 {
    x.iter().map(|&v| v as f64).sum()
}

#[test]
fn smollm2_header_and_config() {
    let Some(path) = model_path() else { return };
    let f = GgufFile::open(&path).unwrap();
    assert_eq!(f.version(), 3);
    assert_eq!(f.tensors().len(), 272);
    let count = |ty| f.tensors().iter().filter(|t| t.ggml_type == ty).count();
    assert_eq!(count(GgmlType::Q4_1), 210);
    assert_eq!(count(GgmlType::F32), 61);
    assert_eq!(count(GgmlType::Q8_0), 1);
    let emb = f.tensor_info("token_embd.weight").unwrap();
    assert_eq!(emb.ggml_type, GgmlType::Q8_0);
    assert_eq!(emb.dims, vec![576, 49152]);
    assert_eq!(f.hf_tensors().len(), 272);

    let c = f.model_config().unwrap();
    assert_eq!(c.architecture, Architecture::Llama);
    assert_eq!(c.hidden_size, 576);
    assert_eq!(c.num_layers, 30);
    assert_eq!(c.num_heads, 9);
    assert_eq!(c.num_kv_heads, 3);
    assert_eq!(c.head_dim, 64);
    assert_eq!(c.intermediate_size, 1536);
    assert_eq!(c.vocab_size, 49152);
    assert_eq!(c.rope_theta, 100_000.0);
    assert_eq!(c.rms_norm_eps, 1e-5);
    assert_eq!(c.max_position_embeddings, 8192);
    assert!(c.tie_word_embeddings);
    assert!(!c.attention_bias);
    assert_eq!((c.bos_token_id, c.eos_token_id), (Some(1), Some(2)));
    assert_eq!(
        f.get("tokenizer.ggml.tokens")
            .and_then(|v| v.as_array())
            .map(|a| a.len()),
        Some(49152)
    );
}

#[test]
fn smollm2_values_match_python_gguf() {
    let Some(path) = model_path() else { return };
    let f = GgufFile::open(&path).unwrap();

    let (shape, q) = f.tensor_f32("blk.0.attn_q.weight").unwrap();
    assert_eq!(shape, vec![576, 576]);
    assert_close(
        &q[..8],
        &[
            -0.0963134765625,
            0.1573486328125,
            -0.0963134765625,
            -0.73046875,
            1.1719970703125,
            -0.0963134765625,
            0.030517578125,
            0.6646728515625,
        ],
        "blk.0.attn_q.weight",
    );
    assert_close(
        &q[q.len() - 4..],
        &[
            0.009185791015625,
            -0.096832275390625,
            -0.14984130859375,
            -0.255859375,
        ],
        "blk.0.attn_q.weight tail",
    );
    assert!((sum(&q) - 59.22322082519531).abs() < 1e-6 * q.len() as f64);

    let (shape, emb) = f.tensor_f32("token_embd.weight").unwrap();
    assert_eq!(shape, vec![49152, 576]);
    assert_close(
        &emb[..8],
        &[
            -0.10654449462890625,
            0.032978057861328125,
            0.048198699951171875,
            -0.022830963134765625,
            -0.06849288940429688,
            -0.04566192626953125,
            0.020294189453125,
            -0.12176513671875,
        ],
        "token_embd.weight",
    );
    assert_close(
        &emb[emb.len() - 4..],
        &[
            0.07819175720214844,
            0.12858200073242188,
            -0.11989402770996094,
            -0.0417022705078125,
        ],
        "token_embd.weight tail",
    );
    assert!((sum(&emb) - -15353.04449415207).abs() < 1e-3);

    let (shape, down) = f.tensor_f32("blk.29.ffn_down.weight").unwrap();
    assert_eq!(shape, vec![576, 1536]);
    assert_close(
        &down[..8],
        &[
            -0.2733154296875,
            0.186279296875,
            0.186279296875,
            0.04840087890625,
            0.186279296875,
            0.186279296875,
            -0.31927490234375,
            -0.181396484375,
        ],
        "blk.29.ffn_down.weight",
    );
    assert!((sum(&down) - 49.83570861816406).abs() < 1e-3);

    let (shape, norm) = f.tensor_f32("output_norm.weight").unwrap();
    assert_eq!(shape, vec![576]);
    assert_close(
        &norm[..8],
        &[
            1.7578125, 1.8203125, 1.78125, 1.6015625, 1.7421875, 1.71875, 1.828125, 1.75,
        ],
        "output_norm.weight",
    );
}

#[test]
fn smollm2_hf_layout_undoes_the_rope_permutation() {
    let Some(path) = model_path() else { return };
    let f = GgufFile::open(&path).unwrap();
    let (shape, q) = f
        .tensor_hf("model.layers.0.self_attn.q_proj.weight")
        .unwrap();
    assert_eq!(shape, vec![576, 576]);
    let row = |m: &[f32], r: usize, n: usize| m[r * 576..r * 576 + n].to_vec();
    // Row 0 is not moved by the permutation; row 1 comes from GGUF row 2, row 97 from 66.
    let (_, raw) = f.tensor_f32("blk.0.attn_q.weight").unwrap();
    assert_eq!(row(&q, 0, 576), row(&raw, 0, 576));
    assert_close(
        &row(&q, 1, 8),
        &[
            -0.1591796875,
            0.39794921875,
            -0.0198974609375,
            -1.2734375,
            0.8157958984375,
            -0.2984619140625,
            0.119384765625,
            0.2586669921875,
        ],
        "HF q row 1",
    );
    assert_close(
        &row(&q, 97, 4),
        &[
            -0.0048828125,
            0.0477294921875,
            -0.0574951171875,
            0.3634033203125,
        ],
        "HF q row 97",
    );

    let (shape, k) = f
        .tensor_hf("model.layers.0.self_attn.k_proj.weight")
        .unwrap();
    assert_eq!(shape, vec![192, 576]);
    assert_close(
        &row(&k, 1, 8),
        &[
            0.203369140625,
            0.09136962890625,
            0.203369140625,
            -0.13262939453125,
            -0.24462890625,
            0.4273681640625,
            -0.0206298828125,
            0.31536865234375,
        ],
        "HF k row 1",
    );
    assert_close(
        &row(&k, 97, 4),
        &[
            0.444091796875,
            -0.2681884765625,
            0.72900390625,
            0.0167236328125,
        ],
        "HF k row 97",
    );

    // v is not permuted; lm_head is tied.
    let (_, v) = f
        .tensor_hf("model.layers.0.self_attn.v_proj.weight")
        .unwrap();
    assert_eq!(v, f.tensor_f32("blk.0.attn_v.weight").unwrap().1);
    assert!(matches!(
        f.tensor_hf("lm_head.weight"),
        Err(IoError::NoTensor { .. })
    ));
}

#[test]
fn smollm2_dequantize_everything() {
    let Some(path) = model_path() else { return };
    let t0 = Instant::now();
    let f = GgufFile::open(&path).unwrap();
    let opened = t0.elapsed();
    let mut n = 0usize;
    for t in f.tensors() {
        let (shape, data) = f.tensor_f32(&t.name).unwrap();
        assert_eq!(shape.iter().product::<usize>(), data.len());
        assert!(data.iter().all(|x| x.is_finite()), "{}", t.name);
        n += data.len();
    }
    eprintln!(
        "open {:?}, open + dequantize all {} tensors ({n} values): {:?}",
        opened,
        f.tensors().len(),
        t0.elapsed()
    );
    assert_eq!(n, 134_515_008);
}
