//! Synthetic checkpoints for tests, examples and benches: a tiny random Llama written as
//! safetensors + `config.json`, so that every loader and method can be exercised without
//! downloading a model.

use llm_compress_core::rng::SplitMix64;
use llm_compress_tensor_io::safetensors::{write_safetensors, TensorData};
use std::collections::BTreeMap;
use std::path::Path;

/// Vocabulary size of the tiny Llama.
pub const V: usize = 64;
/// Hidden size of the tiny Llama.
pub const H: usize = 32;
/// MLP size of the tiny Llama.
pub const F: usize = 48;
/// Decoder layers of the tiny Llama.
pub const L: usize = 2;
/// Attention heads of the tiny Llama.
pub const NH: usize = 4;
/// Key/value heads of the tiny Llama.
pub const NKV: usize = 2;
/// Head dimension of the tiny Llama.
pub const HD: usize = H / NH;
/// RoPE base of the tiny Llama.
pub const THETA: f64 = 10000.0;
/// RMSNorm epsilon of the tiny Llama.
pub const EPS: f64 = 1e-5;

/// Tensors by HF name: (shape, row-major data).
pub type Weights = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

/// Random weights of the tiny Llama (norm gains near 1, weights N(0, 0.3²)).
pub fn random_weights(seed: u64, tied: bool) -> Weights {
    let mut rng = SplitMix64::new(seed);
    let mut w = Weights::new();
    let mut put = |name: &str, shape: Vec<usize>, scale: f64, offset: f64| {
        let n = shape.iter().product();
        let data = (0..n)
            .map(|_| (offset + scale * rng.normal()) as f32)
            .collect();
        w.insert(name.to_string(), (shape, data));
    };
    put("model.embed_tokens.weight", vec![V, H], 1.0, 0.0);
    put("model.norm.weight", vec![H], 0.1, 1.0);
    if !tied {
        put("lm_head.weight", vec![V, H], 0.3, 0.0);
    }
    for l in 0..L {
        let p = format!("model.layers.{l}.");
        put(&format!("{p}input_layernorm.weight"), vec![H], 0.1, 1.0);
        put(
            &format!("{p}post_attention_layernorm.weight"),
            vec![H],
            0.1,
            1.0,
        );
        put(
            &format!("{p}self_attn.q_proj.weight"),
            vec![NH * HD, H],
            0.3,
            0.0,
        );
        put(
            &format!("{p}self_attn.k_proj.weight"),
            vec![NKV * HD, H],
            0.3,
            0.0,
        );
        put(
            &format!("{p}self_attn.v_proj.weight"),
            vec![NKV * HD, H],
            0.3,
            0.0,
        );
        put(
            &format!("{p}self_attn.o_proj.weight"),
            vec![H, NH * HD],
            0.3,
            0.0,
        );
        put(&format!("{p}mlp.gate_proj.weight"), vec![F, H], 0.3, 0.0);
        put(&format!("{p}mlp.up_proj.weight"), vec![F, H], 0.3, 0.0);
        put(&format!("{p}mlp.down_proj.weight"), vec![H, F], 0.3, 0.0);
    }
    w
}

/// The tiny Llama's `config.json`.
pub fn config_json(tied: bool) -> String {
    serde_json::json!({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": V,
        "hidden_size": H, "intermediate_size": F, "num_hidden_layers": L,
        "num_attention_heads": NH, "num_key_value_heads": NKV, "rms_norm_eps": EPS,
        "rope_theta": THETA, "max_position_embeddings": 512, "tie_word_embeddings": tied,
    })
    .to_string()
}

/// Write `w` as `model.safetensors` + `config.json` into `dir`.
pub fn write_tiny_safetensors(dir: &Path, w: &Weights, tied: bool) -> std::io::Result<()> {
    let tensors: BTreeMap<String, TensorData> = w
        .iter()
        .map(|(k, (s, d))| (k.clone(), TensorData::f32(s.clone(), d)))
        .collect();
    write_safetensors(&dir.join("model.safetensors"), &tensors, &BTreeMap::new())
        .map_err(std::io::Error::other)?;
    std::fs::write(dir.join("config.json"), config_json(tied))
}

/// The real default model (SmolLM2-135M-Instruct GGUF) for end-to-end tests: `$LLM_COMPRESS_MODEL`,
/// else the cache path `scripts/fetch-model.sh` downloads to. `None` (the test says so and
/// passes) only when `LLM_COMPRESS_SKIP_MODEL_TESTS=1`; otherwise a missing model fails the test.
pub fn real_model_path() -> Option<std::path::PathBuf> {
    use std::path::PathBuf;
    if std::env::var("LLM_COMPRESS_SKIP_MODEL_TESTS").is_ok_and(|v| v == "1") {
        eprintln!("LLM_COMPRESS_SKIP_MODEL_TESTS=1: real-model test skipped");
        return None;
    }
    let p = std::env::var("LLM_COMPRESS_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            let home = std::env::var("HOME").unwrap_or_else(|_| ".".into());
            PathBuf::from(home).join(".cache/llm-compress/models/SmolLM2-135M-Instruct.Q4_1.gguf")
        });
    assert!(
        p.exists(),
        "{} not found: run scripts/fetch-model.sh (or set LLM_COMPRESS_SKIP_MODEL_TESTS=1)",
        p.display()
    );
    Some(p)
}
