//! Write the seed corpus: `make_corpus OUT_DIR TOKENIZER_JSON`.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        return Err("usage: make_corpus OUT_DIR TOKENIZER_JSON".into());
    }
    llm_compress_fuzz::corpus::write_seed_corpus(args[1].as_ref(), args[2].as_ref())
}
