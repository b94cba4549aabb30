//! The GGUF reader: header, metadata, tensor infos, the model config and tokenizer built from
//! the metadata, and every tensor dequantized.
#![no_main]
use libfuzzer_sys::fuzz_target;
use llm_compress_fuzz::{scratch_file, MAX_DECODE_ELEMENTS};
use llm_compress_tensor_io::gguf::GgufFile;
use llm_compress_tensor_io::Checkpoint;

fuzz_target!(|data: &[u8]| {
    let p = scratch_file("input.gguf", data);
    if let Ok(g) = GgufFile::open(&p) {
        let _ = g.model_config();
        let names: Vec<String> = g.tensors().iter().map(|t| t.name.clone()).collect();
        for n in names {
            if g.tensor_info(&n)
                .is_some_and(|t| t.n_elements <= MAX_DECODE_ELEMENTS)
            {
                let _ = g.tensor_f32(&n);
            }
        }
    }
    // The whole checkpoint path: config, tokenizer, HF names.
    if let Ok(c) = Checkpoint::open(&p) {
        for t in c.stored_tensors() {
            if t.shape.iter().product::<usize>() <= MAX_DECODE_ELEMENTS {
                let _ = c.tensor(&t.name);
            }
        }
        if let Some(tok) = &c.tokenizer {
            let ids = tok.encode("Hello, world! 12 éè\n\n");
            let _ = tok.decode(&ids);
        }
    }
});
