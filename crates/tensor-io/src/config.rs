//! [`ModelConfig`]: the architecture hyper-parameters of a Llama-family model.

use crate::IoError;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::Path;

/// Architecture family. All are run by the same decoder; they differ in biases and defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Architecture {
    /// Llama (`LlamaForCausalLM`; SmolLM2 is one).
    Llama,
    /// Mistral (`MistralForCausalLM`), run by the same decoder as Llama.
    Mistral,
    /// Qwen2: q/k/v projections carry biases.
    Qwen2,
}

impl Architecture {
    /// The HF `architectures[0]` string.
    pub fn hf_class(self) -> &'static str {
        match self {
            Architecture::Llama => "LlamaForCausalLM",
            Architecture::Mistral => "MistralForCausalLM",
            Architecture::Qwen2 => "Qwen2ForCausalLM",
        }
    }
    /// The HF `model_type` string.
    pub fn model_type(self) -> &'static str {
        match self {
            Architecture::Llama => "llama",
            Architecture::Mistral => "mistral",
            Architecture::Qwen2 => "qwen2",
        }
    }
}

/// Largest hidden, intermediate or head width accepted (2^20; LLaMA-70B uses 28,672).
pub const MAX_WIDTH: usize = 1 << 20;
/// Largest vocabulary accepted (2^24; the largest released vocabularies are ~256k).
pub const MAX_VOCAB: usize = 1 << 24;
/// Largest number of decoder layers accepted.
pub const MAX_LAYERS: usize = 4096;
/// Largest number of attention heads accepted.
pub const MAX_HEADS: usize = 4096;

/// Hyper-parameters of a Llama-family decoder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Model family (HF `model_type`).
    pub architecture: Architecture,
    /// Number of token ids (rows of the embedding and of the head).
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the MLP hidden layer (rows of gate/up, columns of down).
    pub intermediate_size: usize,
    /// Number of decoder layers (HF `num_hidden_layers`).
    pub num_layers: usize,
    /// Number of query heads (HF `num_attention_heads`).
    pub num_heads: usize,
    /// Number of key/value heads (HF `num_key_value_heads`; fewer than `num_heads` under GQA).
    pub num_kv_heads: usize,
    /// Width of one attention head (`hidden_size / num_heads` when the config omits it).
    pub head_dim: usize,
    /// The `eps` of every RMSNorm.
    pub rms_norm_eps: f64,
    /// RoPE base frequency θ (10,000 when the config omits it).
    pub rope_theta: f64,
    /// Longest sequence the RoPE table covers (2048 when the config omits it).
    pub max_position_embeddings: usize,
    /// The LM head is the embedding matrix.
    pub tie_word_embeddings: bool,
    /// q/k/v carry biases (Qwen2).
    pub attention_bias: bool,
    /// Beginning-of-sequence token id, if the config names one.
    pub bos_token_id: Option<u32>,
    /// End-of-sequence token id, if the config names one (the first of a list).
    pub eos_token_id: Option<u32>,
}

fn field<'a>(obj: &'a Value, name: &str, path: &Path) -> Result<&'a Value, IoError> {
    obj.get(name).ok_or_else(|| IoError::MissingField {
        path: path.into(),
        field: name.into(),
    })
}

fn as_usize(obj: &Value, name: &str, path: &Path) -> Result<usize, IoError> {
    let v = field(obj, name, path)?;
    v.as_u64()
        .filter(|&x| x > 0 && x < (1 << 40))
        .map(|x| x as usize)
        .ok_or_else(|| IoError::InvalidField {
            path: path.into(),
            field: name.into(),
            detail: format!("expected a positive integer, got {v}"),
        })
}

fn as_f64(obj: &Value, name: &str, path: &Path) -> Result<f64, IoError> {
    let v = field(obj, name, path)?;
    v.as_f64()
        .filter(|x| x.is_finite() && *x > 0.0)
        .ok_or_else(|| IoError::InvalidField {
            path: path.into(),
            field: name.into(),
            detail: format!("expected a positive number, got {v}"),
        })
}

fn opt_token(obj: &Value, name: &str) -> Option<u32> {
    match obj.get(name) {
        Some(Value::Number(n)) => n.as_u64().map(|x| x as u32),
        Some(Value::Array(a)) => a.first().and_then(|v| v.as_u64()).map(|x| x as u32),
        _ => None,
    }
}

impl ModelConfig {
    /// Read a Hugging Face `config.json`.
    pub fn from_hf_json_file(path: &Path) -> Result<Self, IoError> {
        let text = std::fs::read_to_string(path).map_err(|e| IoError::io(path, e))?;
        Self::from_hf_json(&text, path)
    }

    /// Parse the text of a Hugging Face `config.json` (`path` is used in errors only).
    pub fn from_hf_json(text: &str, path: &Path) -> Result<Self, IoError> {
        let v: Value = serde_json::from_str(text).map_err(|source| IoError::Json {
            path: path.into(),
            source,
        })?;
        if !v.is_object() {
            return Err(IoError::Malformed {
                path: path.into(),
                format: "config.json",
                detail: "top level is not an object".into(),
            });
        }
        let model_type =
            field(&v, "model_type", path)?
                .as_str()
                .ok_or_else(|| IoError::InvalidField {
                    path: path.into(),
                    field: "model_type".into(),
                    detail: "expected a string".into(),
                })?;
        let architecture = match model_type {
            "llama" => Architecture::Llama,
            "mistral" => Architecture::Mistral,
            "qwen2" => Architecture::Qwen2,
            other => {
                return Err(IoError::Unsupported {
                    path: path.into(),
                    what: "architecture (field `model_type`)",
                    detail: format!("`{other}`; supported: llama, mistral, qwen2"),
                })
            }
        };
        let hidden_size = as_usize(&v, "hidden_size", path)?;
        let num_heads = as_usize(&v, "num_attention_heads", path)?;
        let num_kv_heads = match v.get("num_key_value_heads") {
            None | Some(Value::Null) => num_heads,
            Some(_) => as_usize(&v, "num_key_value_heads", path)?,
        };
        let head_dim = match v.get("head_dim") {
            None | Some(Value::Null) => hidden_size / num_heads,
            Some(_) => as_usize(&v, "head_dim", path)?,
        };
        let rope_theta = match v.get("rope_theta") {
            None | Some(Value::Null) => 10_000.0,
            Some(_) => as_f64(&v, "rope_theta", path)?,
        };
        if let Some(scaling) = v.get("rope_scaling").filter(|s| !s.is_null()) {
            return Err(IoError::Unsupported {
                path: path.into(),
                what: "field `rope_scaling`",
                detail: format!("{scaling}; only plain RoPE is implemented"),
            });
        }
        let cfg = ModelConfig {
            architecture,
            vocab_size: as_usize(&v, "vocab_size", path)?,
            hidden_size,
            intermediate_size: as_usize(&v, "intermediate_size", path)?,
            num_layers: as_usize(&v, "num_hidden_layers", path)?,
            num_heads,
            num_kv_heads,
            head_dim,
            rms_norm_eps: as_f64(&v, "rms_norm_eps", path)?,
            rope_theta,
            max_position_embeddings: match v.get("max_position_embeddings") {
                None | Some(Value::Null) => 2048,
                Some(_) => as_usize(&v, "max_position_embeddings", path)?,
            },
            tie_word_embeddings: v
                .get("tie_word_embeddings")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            attention_bias: v
                .get("attention_bias")
                .and_then(Value::as_bool)
                .unwrap_or(architecture == Architecture::Qwen2),
            bos_token_id: opt_token(&v, "bos_token_id"),
            eos_token_id: opt_token(&v, "eos_token_id"),
        };
        cfg.validate(path)?;
        Ok(cfg)
    }

    /// Check the relations between the fields (heads divide, head_dim even, ...).
    pub fn validate(&self, path: &Path) -> Result<(), IoError> {
        let bad = |field: &str, detail: String| IoError::InvalidField {
            path: path.into(),
            field: field.into(),
            detail,
        };
        if self.num_kv_heads == 0 || self.num_heads % self.num_kv_heads != 0 {
            return Err(bad(
                "num_key_value_heads",
                format!(
                    "{} does not divide num_attention_heads {}",
                    self.num_kv_heads, self.num_heads
                ),
            ));
        }
        if self.head_dim % 2 != 0 {
            return Err(bad("head_dim", format!("{} is odd", self.head_dim)));
        }
        // Hard limits, far above any released model, so that no product of sizes overflows
        // and no allocation is sized by a hostile number (docs/limits.md).
        for (field, value, limit) in [
            ("hidden_size", self.hidden_size, MAX_WIDTH),
            ("intermediate_size", self.intermediate_size, MAX_WIDTH),
            ("head_dim", self.head_dim, MAX_WIDTH),
            ("vocab_size", self.vocab_size, MAX_VOCAB),
            ("num_hidden_layers", self.num_layers, MAX_LAYERS),
            ("num_attention_heads", self.num_heads, MAX_HEADS),
        ] {
            if value == 0 || value > limit {
                return Err(bad(field, format!("{value} is outside 1..={limit}")));
            }
        }
        if self.num_heads * self.head_dim > MAX_WIDTH {
            return Err(bad(
                "num_attention_heads",
                format!(
                    "{} heads of {} exceed the width limit {MAX_WIDTH}",
                    self.num_heads, self.head_dim
                ),
            ));
        }
        if !(self.rms_norm_eps.is_finite() && self.rms_norm_eps >= 0.0) {
            return Err(bad(
                "rms_norm_eps",
                format!("{} is not finite", self.rms_norm_eps),
            ));
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 0.0) {
            return Err(bad(
                "rope_theta",
                format!("{} is not positive", self.rope_theta),
            ));
        }
        Ok(())
    }

    /// The HF `config.json` of this configuration (for `--dense` export).
    pub fn to_hf_json(&self) -> Value {
        serde_json::json!({
            "architectures": [self.architecture.hf_class()],
            "model_type": self.architecture.model_type(),
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "attention_bias": self.attention_bias,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": self.eos_token_id,
            "torch_dtype": "float32",
        })
    }

    /// Output and input dimension of each decoder linear.
    pub fn linear_shape(&self, kind: llm_compress_core::LinearKind) -> (usize, usize) {
        use llm_compress_core::LinearKind::*;
        let (h, f) = (self.hidden_size, self.intermediate_size);
        let (q, kv) = (
            self.num_heads * self.head_dim,
            self.num_kv_heads * self.head_dim,
        );
        match kind {
            Q => (q, h),
            K | V => (kv, h),
            O => (h, q),
            Gate | Up => (f, h),
            Down => (h, f),
        }
    }

    /// Parameters of all decoder linears.
    pub fn linear_params(&self) -> usize {
        let per_layer: usize = llm_compress_core::LinearKind::ALL
            .iter()
            .map(|&k| {
                let (m, n) = self.linear_shape(k);
                m * n
            })
            .sum();
        per_layer * self.num_layers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMOL: &str = r#"{"architectures":["LlamaForCausalLM"],"model_type":"llama",
      "vocab_size":49152,"hidden_size":576,"intermediate_size":1536,"num_hidden_layers":30,
      "num_attention_heads":9,"num_key_value_heads":3,"rms_norm_eps":1e-5,"rope_theta":100000,
      "max_position_embeddings":8192,"tie_word_embeddings":true,"bos_token_id":1,"eos_token_id":2}"#;

    #[test]
    fn parses_smollm2_config() {
        let c = ModelConfig::from_hf_json(SMOL, Path::new("config.json")).unwrap();
        assert_eq!(c.head_dim, 64);
        assert_eq!(c.num_kv_heads, 3);
        assert!(c.tie_word_embeddings);
        assert_eq!(c.linear_shape(llm_compress_core::LinearKind::K), (192, 576));
        let back = ModelConfig::from_hf_json(&c.to_hf_json().to_string(), Path::new("x")).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn missing_field_is_named() {
        let text = SMOL.replace("\"hidden_size\":576,", "");
        let err = ModelConfig::from_hf_json(&text, Path::new("config.json")).unwrap_err();
        assert!(matches!(err, IoError::MissingField { ref field, .. } if field == "hidden_size"));
        assert!(err.to_string().contains("hidden_size"));
    }

    #[test]
    fn unknown_architecture_is_named() {
        let text = SMOL.replace("\"llama\"", "\"gpt2\"");
        let err = ModelConfig::from_hf_json(&text, Path::new("config.json")).unwrap_err();
        assert!(err.to_string().contains("model_type"));
        assert!(err.to_string().contains("gpt2"));
    }

    #[test]
    fn qwen2_has_attention_bias_by_default() {
        let text = SMOL.replace("\"llama\"", "\"qwen2\"");
        let c = ModelConfig::from_hf_json(&text, Path::new("config.json")).unwrap();
        assert!(c.attention_bias);
    }
}
