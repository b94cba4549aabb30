//! Parity of the byte-level BPE tokenizer with the Hugging Face `tokenizers` library on the
//! WikiText-2 test set, for both sources: SmolLM2's `tokenizer.json` (tests/data) and the
//! tokenizer metadata of the default GGUF model (skipped when the model is absent).
//!
//! The reference numbers (count, first and last 16 ids, FNV-1a of all ids) come from `python3 tests/data/make_tokenizer_json.py reference
//! tests/data/smollm2-tokenizer.json data/wikitext-2-raw/wiki.test.raw` (`tokenizers` 0.23).

use llm_compress_tensor_io::gguf::GgufFile;
use llm_compress_tensor_io::Tokenizer;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Number of ids of the WikiText-2 test text under the protocol of [`wikitext_test_text`].
const WIKI_TEST_COUNT: usize = 304_978;
const WIKI_TEST_FIRST16: [u32; 16] = [
    1116, 446, 6356, 389, 9226, 352, 446, 38028, 16506, 6356, 389, 9226, 352, 314, 354, 2321,
];
const WIKI_TEST_LAST16: [u32; 16] = [
    16103, 3297, 3395, 12694, 3297, 3395, 22850, 3297, 284, 28614, 519, 19334, 2393, 1673, 216,
    16506,
];
/// FNV-1a of all the ids (one step per id), so that every id is checked, not just the ends.
const WIKI_TEST_FNV1A: u64 = 0x1510_dc78_c75a_b23d;

fn fnv1a(ids: &[u32]) -> u64 {
    ids.iter().fold(0xcbf2_9ce4_8422_2325, |h, &id| {
        (h ^ u64::from(id)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn tokenizer_json_path() -> PathBuf {
    manifest_dir().join("tests/data/smollm2-tokenizer.json")
}

/// The evaluation protocol: the rows of `wiki.test.raw` each keep their "\n", a row that is
/// exactly " \n" becomes "", and the rows are joined with "\n\n".
fn wikitext_test_text() -> String {
    let path = manifest_dir().join("../../data/wikitext-2-raw/wiki.test.raw");
    let raw = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let rows: Vec<&str> = raw
        .split_inclusive('\n')
        .map(|row| if row == " \n" { "" } else { row })
        .collect();
    rows.join("\n\n")
}

/// The default model: `$LLM_COMPRESS_MODEL`, else the cache of `scripts/fetch-model.sh`.
fn model_path() -> Option<PathBuf> {
    let path = match std::env::var_os("LLM_COMPRESS_MODEL") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(std::env::var_os("HOME")?)
            .join(".cache/llm-compress/models/SmolLM2-135M-Instruct.Q4_1.gguf"),
    };
    path.is_file().then_some(path)
}

/// Encodes the WikiText-2 test text, prints the time, and checks the ids against Python's.
fn check_wikitext(tok: &Tokenizer, source: &str) -> Vec<u32> {
    let text = wikitext_test_text();
    let start = Instant::now();
    let ids = tok.encode(&text);
    let elapsed = start.elapsed();
    eprintln!(
        "{source}: encoded WikiText-2 test ({} bytes) into {} ids in {:.3} s",
        text.len(),
        ids.len(),
        elapsed.as_secs_f64()
    );
    assert_eq!(ids.len(), WIKI_TEST_COUNT, "{source}: number of ids");
    assert_eq!(ids[..16], WIKI_TEST_FIRST16, "{source}: first 16 ids");
    assert_eq!(
        ids[ids.len() - 16..],
        WIKI_TEST_LAST16,
        "{source}: last 16 ids"
    );
    assert_eq!(
        fnv1a(&ids),
        WIKI_TEST_FNV1A,
        "{source}: checksum of all ids"
    );
    assert_eq!(tok.decode(&ids), text, "{source}: decode(encode(text))");
    // Generous bound (the target is well under 2 s in release) that only catches a blow-up.
    assert!(
        elapsed.as_secs_f64() < 20.0,
        "{source}: encoding took {elapsed:?}"
    );
    ids
}

#[test]
fn tokenizer_json_matches_hugging_face_on_wikitext() {
    let tok = Tokenizer::from_tokenizer_json_file(&tokenizer_json_path()).unwrap();
    assert_eq!(tok.vocab_size(), 49152);
    check_wikitext(&tok, "tokenizer.json");
}

#[test]
fn exported_hf_json_encodes_wikitext_identically() {
    let tok = Tokenizer::from_tokenizer_json_file(&tokenizer_json_path()).unwrap();
    let text = serde_json::to_string(&tok.to_hf_json()).unwrap();
    let again =
        Tokenizer::from_tokenizer_json(&text, Path::new("exported tokenizer.json")).unwrap();
    assert_eq!(again.vocab_size(), tok.vocab_size());
    check_wikitext(&again, "exported tokenizer.json");
}

#[test]
fn gguf_vocab_matches_hugging_face_on_wikitext() {
    let Some(path) = model_path() else {
        eprintln!("skipped: the default model is absent (run scripts/fetch-model.sh)");
        return;
    };
    let gguf = GgufFile::open(&path).unwrap();
    let strings = |key: &str| -> Vec<String> {
        gguf.get(key)
            .and_then(|v| v.as_array())
            .unwrap_or_else(|| panic!("{key} is not an array"))
            .iter()
            .map(|v| v.as_str().expect("a string").to_string())
            .collect()
    };
    let tokens = strings("tokenizer.ggml.tokens");
    let merges = strings("tokenizer.ggml.merges");
    let types: Vec<i32> = gguf
        .get("tokenizer.ggml.token_type")
        .and_then(|v| v.as_array())
        .expect("tokenizer.ggml.token_type")
        .iter()
        .map(|v| {
            v.as_i64()
                .and_then(|x| i32::try_from(x).ok())
                .expect("an i32")
        })
        .collect();
    let pre = gguf
        .get("tokenizer.ggml.pre")
        .and_then(|v| v.as_str())
        .expect("tokenizer.ggml.pre");
    assert_eq!(pre, "smollm");
    assert_eq!((tokens.len(), merges.len()), (49152, 48900));

    let tok = Tokenizer::from_vocab(tokens, Some(types), merges, pre, &path).unwrap();
    assert_eq!(tok.vocab_size(), 49152);
    let ids = check_wikitext(&tok, "GGUF");

    // Same special tokens as the tokenizer.json, matched whole in a chat prompt.
    let prompt = "<|im_start|>user\nWhat is 12+30?<|im_end|>\n<|im_start|>assistant\n";
    let ids_prompt = tok.encode(prompt);
    assert_eq!(ids_prompt[0], 1);
    let json = Tokenizer::from_tokenizer_json_file(&tokenizer_json_path()).unwrap();
    assert_eq!(ids_prompt, json.encode(prompt));
    assert_eq!(tok.decode(&ids[..64]), json.decode(&ids[..64]));

    // The GGUF-sourced tokenizer exports the same tokenizer.json content.
    let exported = tok.to_hf_json();
    let reference = json.to_hf_json();
    assert_eq!(exported["model"]["vocab"], reference["model"]["vocab"]);
    assert_eq!(exported["model"]["merges"], reference["model"]["merges"]);
    assert_eq!(exported["added_tokens"], reference["added_tokens"]);
    assert_eq!(exported["pre_tokenizer"], reference["pre_tokenizer"]);
}
