//! Valid inputs: the seed corpus of every target, and the manifest target's fixture.

use llm_compress_eval::testing::{config_json, random_weights, write_tiny_safetensors};
use llm_compress_tensor_io::dequant::GgmlType;
use llm_compress_tensor_io::gguf::GgufWriter;
use llm_compress_tensor_io::ModelConfig;
use std::error::Error;
use std::path::Path;

type Result<T> = std::result::Result<T, Box<dyn Error>>;

/// A tiny random Llama compressed with SVD-LLM at ratio 0.2, written as a compact folder.
pub fn write_tiny_compact(dir: &Path) -> Result<()> {
    Ok(llm_compress::testing::write_tiny_compact(
        &dir.with_extension("src"),
        dir,
        7,
    )?)
}

/// A tiny random Llama as GGUF, its tensors stored as `ty`.
pub fn write_tiny_gguf(path: &Path, ty: GgmlType) -> Result<()> {
    let cfg = ModelConfig::from_hf_json(&config_json(true), Path::new("config.json"))?;
    let mut gw = GgufWriter::new();
    gw.add_model_config(&cfg)?;
    for (name, (shape, data)) in &random_weights(2, true) {
        // Norms (1-D) stay f32, as llama.cpp stores them.
        let t = if shape.len() == 2 { ty } else { GgmlType::F32 };
        gw.add_hf_tensor(&cfg, name, shape, t, data)?;
    }
    gw.write(path)?;
    Ok(())
}

/// Write the seed corpus of every target under `root/<target>/`.
pub fn write_seed_corpus(root: &Path, tokenizer_json: &Path) -> Result<()> {
    let dir = |t: &str| -> Result<std::path::PathBuf> {
        let d = root.join(t);
        std::fs::create_dir_all(&d)?;
        Ok(d)
    };
    let tmp = root.join(".work");
    std::fs::create_dir_all(&tmp)?;
    // safetensors: the tiny model, and the compact folder's tensor file.
    write_tiny_safetensors(&tmp, &random_weights(3, true), true)?;
    std::fs::copy(
        tmp.join("model.safetensors"),
        dir("safetensors_header")?.join("tiny.safetensors"),
    )?;
    let compact = tmp.join("compact");
    write_tiny_compact(&compact)?;
    std::fs::copy(
        compact.join("model.safetensors"),
        dir("safetensors_header")?.join("compact.safetensors"),
    )?;
    // manifest
    std::fs::copy(
        compact.join("manifest.json"),
        dir("manifest")?.join("manifest.json"),
    )?;
    // config.json
    std::fs::write(dir("config_json")?.join("tiny.json"), config_json(false))?;
    std::fs::copy(
        compact.join("config.json"),
        dir("config_json")?.join("written.json"),
    )?;
    // tokenizer.json: the real SmolLM2 tokenizer (the test fixture) cut down, so each run is fast.
    let full: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(tokenizer_json)?)?;
    std::fs::write(
        dir("tokenizer_json")?.join("smollm2-small.json"),
        shrink_tokenizer(full, 600),
    )?;
    // GGUF: the tiny model in each float type the writer encodes.
    for (ty, name) in [
        (GgmlType::F32, "f32"),
        (GgmlType::F16, "f16"),
        (GgmlType::BF16, "bf16"),
    ] {
        write_tiny_gguf(&dir("gguf")?.join(format!("tiny-{name}.gguf")), ty)?;
    }
    std::fs::remove_dir_all(&tmp)?;
    Ok(())
}

/// Keep the first `n` vocabulary entries and the merges among them.
fn shrink_tokenizer(mut v: serde_json::Value, n: usize) -> String {
    let keep: std::collections::BTreeSet<String> = v["model"]["vocab"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(_, id)| id.as_u64().is_some_and(|i| (i as usize) < n))
                .map(|(k, _)| k.clone())
                .collect()
        })
        .unwrap_or_default();
    if let Some(m) = v["model"]["vocab"].as_object_mut() {
        m.retain(|k, _| keep.contains(k));
    }
    if let Some(merges) = v["model"]["merges"].as_array_mut() {
        merges.retain(|m| {
            let parts: Vec<String> = match m {
                serde_json::Value::String(s) => s.split(' ').map(str::to_string).collect(),
                serde_json::Value::Array(a) => a
                    .iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect(),
                _ => vec![],
            };
            parts.len() == 2
                && keep.contains(&parts[0])
                && keep.contains(&parts[1])
                && keep.contains(&format!("{}{}", parts[0], parts[1]))
        });
    }
    if let Some(a) = v["added_tokens"].as_array_mut() {
        a.retain(|t| t["id"].as_u64().is_some_and(|i| (i as usize) < n));
    }
    v.to_string()
}
