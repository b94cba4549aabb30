//! `config.json`: every field, limits and consistency checks.
#![no_main]
use libfuzzer_sys::fuzz_target;
use llm_compress_tensor_io::ModelConfig;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(cfg) = ModelConfig::from_hf_json(text, Path::new("config.json")) {
            let _ = cfg.linear_params();
            let _ = cfg.to_hf_json();
        }
    }
});
