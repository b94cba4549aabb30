//! Unit tests of the byte-level BPE tokenizer: encodings of tricky strings against ids computed
//! by the Hugging Face `tokenizers` library (Python) on the same `tokenizer.json`, decoding,
//! special tokens, the `to_hf_json` export and malformed inputs.

use llm_compress_tensor_io::{IoError, Tokenizer};
use std::path::{Path, PathBuf};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn smollm2() -> Tokenizer {
    Tokenizer::from_tokenizer_json_file(&data("smollm2-tokenizer.json"))
        .expect("tests/data/smollm2-tokenizer.json loads")
}

/// (text, ids from `tokenizers` 0.23: `Tokenizer.from_file("smollm2-tokenizer.json")
/// .encode(text, add_special_tokens=False).ids`).
const CASES: &[(&str, &[u32])] = &[
    // digits
    (
        "In 2024, 1,234.56 items cost $99.",
        &[
            788, 216, 34, 32, 34, 36, 28, 216, 33, 28, 34, 35, 36, 30, 37, 38, 3723, 1708, 1885,
            41, 41, 30,
        ],
    ),
    // contractions
    (
        "don't we'll I'm they've she'd it's you're 'Tis O'Neil's DON'T",
        &[
            12420, 982, 392, 3060, 339, 5248, 502, 3543, 1041, 6737, 357, 506, 346, 2316, 637, 68,
            271, 492, 23, 47917, 506, 422, 2154, 23, 68,
        ],
    ),
    // spaces_before_word
    ("a   b", &[81, 256, 278]),
    // spaces_edges
    ("  leading and trailing  ", &[216, 2899, 284, 35079, 256]),
    // newlines
    (
        "line one\nline two\n\n\nthree\r\n \n",
        &[1311, 582, 198, 1311, 827, 1116, 198, 16347, 2738, 3717],
    ),
    // tabs_and_unicode_spaces
    (
        "tabs\tand\u{a0}nbsp\u{3000}ideographic\u{2009}thin",
        &[
            100, 7366, 197, 397, 15442, 94, 32093, 12109, 218, 489, 4551, 321, 227, 39200,
        ],
    ),
    // accents
    (
        "café naïve élan Ærøskøbing Straße",
        &[
            83, 1939, 2756, 15486, 46494, 26411, 15034, 44741, 98, 21817, 5746, 21817, 7519, 19144,
            34878, 85,
        ],
    ),
    // cjk
    (
        "中文字符 and 日本語のテキスト",
        &[
            28589, 29184, 36518, 40562, 116, 284, 17097, 241, 115, 40993, 179, 120, 248, 26453,
            11100, 224, 10391, 251, 10391, 134, 11100, 226,
        ],
    ),
    // emoji
    (
        "emoji 😀🎉👍🏽 end 🏳\u{fe0f}\u{200d}🌈",
        &[
            391, 33777, 40303, 218, 10813, 232, 227, 10813, 235, 231, 10813, 233, 138, 1112, 15107,
            233, 128, 31752, 321, 231, 10813, 230, 226,
        ],
    ),
    // marks_not_letters
    (
        "hindi हिन्दी text, e\u{301} combining",
        &[
            16030, 89, 12335, 134, 27011, 30658, 16525, 44757, 37189, 1694, 28, 297, 151, 219, 9301,
        ],
    ),
    // unicode_numbers
    (
        "Ⅻ ² ½ ٣٤ ४२",
        &[
            173, 223, 121, 216, 19133, 216, 16738, 216, 164, 113, 164, 114, 216, 9310, 120, 9310,
            118,
        ],
    ),
    // special_tokens
    (
        "<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n",
        &[1, 4093, 198, 19556, 17, 2, 198, 1, 520, 9531, 198],
    ),
    // special_adjacent
    (
        "x<|endoftext|><|endoftext|>y <|im_end|>",
        &[104, 0, 0, 105, 216, 2],
    ),
    // not_special
    (
        "<|im_start |> <im_start> <|endoftext",
        &[
            44, 108, 306, 79, 3738, 2504, 46, 2067, 306, 79, 3738, 46, 2067, 108, 486, 1714, 2692,
        ],
    ),
    // punctuation
    (
        "Hello, world!!! (really?) -- yes... @-@ \"quoted\"",
        &[
            19556, 28, 905, 29646, 365, 40311, 14199, 3009, 9805, 2026, 3394, 29, 48, 476, 385,
            5036, 18,
        ],
    ),
];

#[test]
fn encodes_like_hugging_face() {
    let tok = smollm2();
    for (text, expected) in CASES {
        assert_eq!(tok.encode(text), *expected, "encoding {text:?}");
    }
}

#[test]
fn digits_are_split_one_by_one() {
    let tok = smollm2();
    let ids = tok.encode("12345");
    assert_eq!(ids.len(), 5);
    let pieces: Vec<&str> = ids.iter().map(|&id| tok.id_to_token(id).unwrap()).collect();
    assert_eq!(pieces, ["1", "2", "3", "4", "5"]);
    // The space before a number is a token of its own.
    let ids = tok.encode(" 7");
    assert_eq!(
        ids,
        [tok.token_to_id("Ġ").unwrap(), tok.token_to_id("7").unwrap()]
    );
}

#[test]
fn whitespace_runs_leave_one_space_to_the_word() {
    let tok = smollm2();
    let tokens: Vec<&str> = tok
        .encode("a   b")
        .iter()
        .map(|&id| tok.id_to_token(id).unwrap())
        .collect();
    assert_eq!(tokens, ["a", "ĠĠ", "Ġb"]);
}

#[test]
fn special_tokens_match_whole() {
    let tok = smollm2();
    assert_eq!(tok.token_to_id("<|im_start|>"), Some(1));
    assert_eq!(tok.token_to_id("<|im_end|>"), Some(2));
    assert_eq!(tok.id_to_token(0), Some("<|endoftext|>"));
    let ids = tok.encode("<|im_start|>system\nHi<|im_end|>");
    assert_eq!(ids.first(), Some(&1));
    assert_eq!(ids.last(), Some(&2));
    // A broken special token is ordinary text.
    assert!(!tok.encode("<|im_start |>").contains(&1));
    assert_eq!(tok.decode(&ids), "<|im_start|>system\nHi<|im_end|>");
}

#[test]
fn decode_inverts_encode() {
    let tok = smollm2();
    let mut texts: Vec<String> = CASES.iter().map(|(t, _)| t.to_string()).collect();
    texts.extend(
        [
            "",
            " ",
            "\n",
            "x",
            "Ünïcödé ✓ — “quotes” ‘single’ …",
            "\u{0}\u{1}\u{7f} control \u{85}\u{2028}",
            "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝟙𝟚𝟛 🧑‍🤝‍🧑",
            "    indented code() {\n\treturn 0;\n}\n",
        ]
        .map(String::from),
    );
    for text in &texts {
        assert_eq!(&tok.decode(&tok.encode(text)), text);
    }
}

#[test]
fn decode_is_lossy_on_partial_utf8_and_skips_unknown_ids() {
    let tok = smollm2();
    let ids = tok.encode("😀");
    assert!(ids.len() > 1, "an emoji is several byte tokens");
    assert_eq!(tok.decode(&ids[..1]), "\u{fffd}");
    assert_eq!(tok.decode(&[u32::MAX, ids[0], 9_999_999]), "\u{fffd}");
    assert_eq!(tok.vocab_size(), 49152);
    assert_eq!(tok.id_to_token(49152), None);
    assert_eq!(tok.token_to_id("no such token"), None);
}

#[test]
fn hf_json_round_trip_keeps_the_ids() {
    let tok = smollm2();
    let json = tok.to_hf_json();
    let text = serde_json::to_string(&json).unwrap();
    let again = Tokenizer::from_tokenizer_json(&text, Path::new("exported.json")).unwrap();
    assert_eq!(again.vocab_size(), tok.vocab_size());
    for (text, expected) in CASES {
        assert_eq!(again.encode(text), *expected, "re-loaded encoding {text:?}");
    }
    assert_eq!(json["model"]["type"], "BPE");
    assert_eq!(json["pre_tokenizer"]["pretokenizers"][0]["type"], "Digits");
    assert_eq!(json["added_tokens"].as_array().unwrap().len(), 17);
    assert_eq!(json["model"]["merges"][0], "Ġ t");
}

/// A tiny tokenizer: bytes of "a", "b", "c", " " plus merges, in the given merges format.
fn tiny_json(merges: &str, pre_tokenizer: &str, added: &str) -> String {
    format!(
        r#"{{"version": "1.0", "added_tokens": [{added}], "normalizer": null,
        "pre_tokenizer": {pre_tokenizer},
        "decoder": {{"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true}},
        "model": {{"type": "BPE", "dropout": null, "unk_token": null, "byte_fallback": false,
            "vocab": {{"a": 0, "b": 1, "c": 2, "Ġ": 3, "ab": 4, "abc": 5, "Ġab": 6}},
            "merges": {merges}}}}}"#
    )
}

const BYTE_LEVEL: &str =
    r#"{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}"#;

#[test]
fn both_merge_formats_load() {
    let p = Path::new("tiny.json");
    let strings = tiny_json(r#"["a b", "ab c", "Ġ ab"]"#, BYTE_LEVEL, "");
    let pairs = tiny_json(r#"[["a", "b"], ["ab", "c"], ["Ġ", "ab"]]"#, BYTE_LEVEL, "");
    let a = Tokenizer::from_tokenizer_json(&strings, p).unwrap();
    let b = Tokenizer::from_tokenizer_json(&pairs, p).unwrap();
    for tok in [&a, &b] {
        assert_eq!(tok.encode("abc ab cab"), [5, 6, 3, 2, 4]);
        assert_eq!(tok.decode(&[5, 6, 3, 2, 4]), "abc ab cab");
    }
}

#[test]
fn added_tokens_get_ids_like_hugging_face() {
    // `tokenizers` ignores the ids written for added tokens: a token in the vocabulary keeps
    // its id, a new one gets the next id after the vocabulary.
    let added = r#"{"id": 70, "content": "<x>", "special": true, "normalized": false},
        {"id": 3, "content": "abc", "special": false, "normalized": true},
        {"id": 71, "content": "<y>", "special": true, "normalized": false}"#;
    let json = tiny_json(r#"["a b", "ab c", "Ġ ab"]"#, BYTE_LEVEL, added);
    let tok = Tokenizer::from_tokenizer_json(&json, Path::new("tiny.json")).unwrap();
    assert_eq!(tok.token_to_id("<x>"), Some(7));
    assert_eq!(tok.token_to_id("abc"), Some(5));
    assert_eq!(tok.token_to_id("<y>"), Some(8));
    assert_eq!(tok.vocab_size(), 9);
    assert_eq!(tok.encode("<x>ab <y>abcc"), [7, 4, 3, 8, 5, 2]);
}

#[test]
fn gpt2_split_pre_tokenizer_is_accepted_and_others_rejected() {
    let gpt2 = r#"{"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"}, "behavior": "Isolated", "invert": false},
        {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]}"#;
    let tok =
        Tokenizer::from_tokenizer_json(&tiny_json(r#"["a b"]"#, gpt2, ""), Path::new("t")).unwrap();
    assert_eq!(tok.encode("ab ab"), [4, 3, 4]);

    let llama3 = r#"{"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}"}, "behavior": "Isolated", "invert": false},
        {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]}"#;
    let err = Tokenizer::from_tokenizer_json(&tiny_json(r#"["a b"]"#, llama3, ""), Path::new("t"))
        .unwrap_err();
    match &err {
        IoError::Unsupported { what, detail, .. } => {
            assert_eq!(*what, "pre_tokenizer");
            assert!(detail.contains("Split"), "{detail}");
        }
        other => panic!("expected Unsupported, got {other:?}"),
    }
    assert!(err.to_string().contains("pre_tokenizer"));
}

#[test]
fn add_prefix_space_and_no_regex_options() {
    let p = Path::new("t");
    let prefix = r#"{"type": "ByteLevel", "add_prefix_space": true, "use_regex": true}"#;
    let tok =
        Tokenizer::from_tokenizer_json(&tiny_json(r#"["a b", "Ġ ab"]"#, prefix, ""), p).unwrap();
    assert_eq!(tok.encode("ab"), [6]);
    assert_eq!(tok.encode(" ab"), [6]);
    let no_regex = r#"{"type": "ByteLevel", "add_prefix_space": false, "use_regex": false}"#;
    let tok =
        Tokenizer::from_tokenizer_json(&tiny_json(r#"["a b", "Ġ ab"]"#, no_regex, ""), p).unwrap();
    assert_eq!(tok.encode("ab ab"), [4, 6]);
}

fn err_of(json: &str) -> IoError {
    Tokenizer::from_tokenizer_json(json, Path::new("bad.json")).unwrap_err()
}

#[test]
fn malformed_json_gives_errors_not_panics() {
    assert!(matches!(err_of("{not json"), IoError::Json { .. }));
    assert!(matches!(err_of("[]"), IoError::Malformed { .. }));
    assert!(matches!(
        err_of("{}"),
        IoError::Unsupported {
            what: "pre_tokenizer",
            ..
        }
    ));
    let no_model = format!(r#"{{"pre_tokenizer": {BYTE_LEVEL}}}"#);
    assert!(matches!(err_of(&no_model), IoError::MissingField { field, .. } if field == "model"));

    let ok = tiny_json(r#"["a b"]"#, BYTE_LEVEL, "");
    let variants = [
        (r#""type": "BPE""#, r#""type": "WordPiece""#, "model.type"),
        (
            r#""byte_fallback": false"#,
            r#""byte_fallback": true"#,
            "model.byte_fallback",
        ),
        (r#""dropout": null"#, r#""dropout": 0.1"#, "model.dropout"),
        (
            r#""normalizer": null"#,
            r#""normalizer": {"type": "NFC"}"#,
            "normalizer",
        ),
        (r#""a": 0,"#, r#""a": -1,"#, "model.vocab"),
        (r#""a": 0,"#, r#""a": "zero","#, "model.vocab"),
        (r#"["a b"]"#, r#"["a b", "a z"]"#, "model.merges"),
        (r#"["a b"]"#, r#"["ab"]"#, "model.merges"),
        (r#"["a b"]"#, r#"[["a"]]"#, "model.merges"),
        (r#"["a b"]"#, r#"{"a": "b"}"#, "model.merges"),
        (
            r#""unk_token": null"#,
            r#""unk_token": "<unk>""#,
            "model.unk_token",
        ),
        (
            r#""added_tokens": []"#,
            r#""added_tokens": [{"id": 1}]"#,
            "added_tokens[0].content",
        ),
        (
            r#""added_tokens": []"#,
            r#""added_tokens": {}"#,
            "added_tokens",
        ),
        (r#""version": "1.0""#, r#""version": "2.0""#, "version"),
        (
            r#""decoder": {"type": "ByteLevel""#,
            r#""decoder": {"type": "WordPiece""#,
            "decoder",
        ),
    ];
    for (from, to, field) in variants {
        assert!(ok.contains(from), "{from}");
        let bad = ok.replacen(from, to, 1);
        let err = err_of(&bad);
        let message = err.to_string();
        assert!(message.contains("bad.json"), "{message}");
        assert!(message.contains(field), "{field}: {message}");
    }
}

#[test]
fn missing_file_is_an_io_error() {
    let err =
        Tokenizer::from_tokenizer_json_file(Path::new("/nonexistent/tokenizer.json")).unwrap_err();
    assert!(matches!(err, IoError::Io { .. }));
}

#[test]
fn from_vocab_checks_its_inputs() {
    let p = Path::new("model.gguf");
    let tokens: Vec<String> = ["a", "b", "ab", "<s>"].map(String::from).to_vec();
    let merges = vec!["a b".to_string()];
    let tok = Tokenizer::from_vocab(
        tokens.clone(),
        Some(vec![1, 1, 1, 3]),
        merges.clone(),
        "gpt2",
        p,
    )
    .unwrap();
    assert_eq!(tok.encode("ab<s>ba"), [2, 3, 1, 0]);
    assert_eq!(tok.vocab_size(), 4);

    let unsupported =
        Tokenizer::from_vocab(tokens.clone(), None, merges.clone(), "llama-bpe", p).unwrap_err();
    assert!(
        matches!(&unsupported, IoError::Unsupported { what, .. } if *what == "tokenizer.ggml.pre"),
        "{unsupported}"
    );
    let bad_types = Tokenizer::from_vocab(tokens.clone(), Some(vec![1]), merges.clone(), "gpt2", p)
        .unwrap_err();
    assert!(bad_types.to_string().contains("tokenizer.ggml.token_type"));
    let bad_merge =
        Tokenizer::from_vocab(tokens.clone(), None, vec!["a c".into()], "smollm", p).unwrap_err();
    assert!(bad_merge.to_string().contains("tokenizer.ggml.merges"));
    let no_space =
        Tokenizer::from_vocab(tokens.clone(), None, vec!["ab".into()], "smollm", p).unwrap_err();
    assert!(no_space.to_string().contains("tokenizer.ggml.merges"));
    let empty = Tokenizer::from_vocab(vec![], None, vec![], "smollm", p).unwrap_err();
    assert!(empty.to_string().contains("tokenizer.ggml.tokens"));
}
