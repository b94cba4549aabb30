//! The safetensors reader: header JSON, dtypes, shapes, offsets, then every float tensor decoded.
#![no_main]
use libfuzzer_sys::fuzz_target;
use llm_compress_fuzz::{scratch_file, MAX_DECODE_ELEMENTS};
use llm_compress_tensor_io::safetensors::SafetensorsFile;

fuzz_target!(|data: &[u8]| {
    let p = scratch_file("input.safetensors", data);
    if let Ok(f) = SafetensorsFile::open(&p) {
        let names: Vec<String> = f.tensors().keys().cloned().collect();
        for n in names {
            let Ok(info) = f.info(&n) else { continue };
            if info.numel() <= MAX_DECODE_ELEMENTS {
                let _ = f.tensor_f32(&n);
                let _ = f.bytes(&n);
            }
        }
    }
});
