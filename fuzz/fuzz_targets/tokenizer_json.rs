//! `tokenizer.json`: the BPE model, merges, added tokens, pre-tokenizer; then an encode/decode
//! round of a fixed text and of the input itself.
#![no_main]
use libfuzzer_sys::fuzz_target;
use llm_compress_tensor_io::Tokenizer;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(tok) = Tokenizer::from_tokenizer_json(text, Path::new("tokenizer.json")) {
            for s in [
                "Hello, world!\n\n 12 345 éè <|endoftext|>",
                &text[..text.len().min(256)],
            ] {
                let ids = tok.encode(s);
                let _ = tok.decode(&ids);
            }
            let _ = tok.to_hf_json();
        }
    }
});
