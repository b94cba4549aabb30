//! The compact format's manifest: a valid compressed folder (a tiny random Llama compressed with
//! SVD-LLM) whose `manifest.json` is replaced by the input, then opened and every linear loaded.
#![no_main]
use libfuzzer_sys::fuzz_target;
use llm_compress_core::{LinearId, LinearKind};
use llm_compress_fuzz::scratch_dir;
use llm_compress_tensor_io::compact::MANIFEST;
use llm_compress_tensor_io::Checkpoint;
use std::path::PathBuf;
use std::sync::OnceLock;

fn fixture() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = scratch_dir().join("compact");
        llm_compress_fuzz::corpus::write_tiny_compact(&d).expect("fixture");
        d
    })
}

fuzz_target!(|data: &[u8]| {
    let dir = fixture();
    std::fs::write(dir.join(MANIFEST), data).expect("scratch manifest");
    if let Ok(c) = Checkpoint::open(dir) {
        let layers = c.config.num_layers.min(64);
        for layer in 0..layers {
            for kind in LinearKind::ALL {
                if let Ok(lin) = c.linear(LinearId { layer, kind }) {
                    let _ = lin.param_count();
                }
            }
        }
    }
});
