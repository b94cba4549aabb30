//! Exact byte-level BPE tokenizer of the GPT-2 family (SmolLM2, GPT-2, StarCoder, ...), giving
//! the same ids as the Hugging Face `tokenizers` library.
//!
//! # Sources
//! - [`Tokenizer::from_tokenizer_json_file`] / [`Tokenizer::from_tokenizer_json`]: a Hugging Face
//!   `tokenizer.json` with a `BPE` model (`byte_fallback` false), its `added_tokens`, no
//!   normalizer, and a pre-tokenizer that is `ByteLevel` alone or
//!   `Sequence[Digits{individual_digits}, ByteLevel{add_prefix_space, use_regex}]` (SmolLM2's).
//!   A `Split` with exactly the GPT-2 pattern followed by `ByteLevel{use_regex: false}` is the
//!   same thing and is accepted too; any other `Split` (such as Llama 3's pattern) is rejected.
//!   Merges may be `"a b"` strings or `["a", "b"]` pairs.
//! - [`Tokenizer::from_vocab`]: the GGUF metadata `tokenizer.ggml.tokens`,
//!   `tokenizer.ggml.token_type`, `tokenizer.ggml.merges` and `tokenizer.ggml.pre` (`"smollm"`,
//!   `"gpt2"` or `"default"`). Control tokens (type 3) become special added tokens and
//!   user-defined tokens (type 4) plain added tokens, both matched in the raw text.
//!
//! [`Tokenizer::to_hf_json`] writes the tokenizer back as a `tokenizer.json` that `tokenizers`
//! loads and that encodes identically.
//!
//! # Algorithm
//! [`Tokenizer::encode`] follows the `tokenizers` pipeline step by step:
//! 1. **Added tokens.** The text is cut on added tokens, leftmost-longest and without overlap
//!    (as its Aho-Corasick automaton does), first those with `normalized: false` and then, in
//!    the remaining pieces, those with `normalized: true` (there is no normalizer, so both are
//!    matched in the raw text). `lstrip`/`rstrip` pull the neighbouring whitespace into the
//!    token, and `single_word` drops a match that touches a word character (regex `\w`,
//!    approximated here as alphanumeric or `_`). A match yields its id directly.
//! 2. **Digits** (when configured): every other piece is cut around each numeric character
//!    (`individual_digits`), or around each run of them.
//! 3. **ByteLevel pre-tokenizer**: each piece (with a space in front if `add_prefix_space` and
//!    it does not start with one) is cut by the GPT-2 pattern
//!    `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`, evaluated by
//!    hand as the regex engine would: at each position the first alternative that matches wins,
//!    each run is greedy, and `\s+(?!\S)` takes a whitespace run but its last character when a
//!    non-space follows it (so `"a   b"` gives `a`, `␣␣`, `␣b`). `\s` is Unicode `White_Space`
//!    ([`char::is_whitespace`]), `\p{N}` is [`char::is_numeric`], and `\p{L}` comes from a table
//!    (`LETTER_RANGES`) probed from the `tokenizers` library itself, because Rust's
//!    [`char::is_alphabetic`] also accepts combining marks (Devanagari vowel signs, ...) and
//!    letter numbers that `\p{L}` does not.
//! 4. **Byte-level BPE** on each pre-token: its UTF-8 bytes start as the ids of the 256
//!    byte tokens (GPT-2's byte-to-printable-character map; a byte without a token is dropped,
//!    or becomes the unknown token if there is one), then the adjacent pair of lowest
//!    merge rank is merged, leftmost first, until no pair has a merge; this is the min-heap
//!    over (rank, position) of `tokenizers`, including its handling of stale entries. Merges are
//!    ranked by a `HashMap<(u32, u32), (rank, merged id)>` and the result of each distinct
//!    pre-token is cached for the duration of one `encode` call.
//!
//! [`Tokenizer::decode`] maps every character of every token back to its byte (a token with a
//! character outside the map, such as an added token with a space, contributes its own UTF-8
//! bytes, as the ByteLevel decoder does) and decodes the bytes as UTF-8, lossily.
//!
//! No BOS/EOS is ever added. No input, however malformed, makes this module panic: bad files
//! give an [`IoError`] naming the file and the field at fault.

use crate::IoError;
use serde_json::{json, Map, Value};
use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

/// The GPT-2 pre-tokenizer pattern, as `tokenizers` writes it in a `Split` pre-tokenizer.
const GPT2_PATTERN: &str =
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

const JSON_FORMAT: &str = "tokenizer.json";
const GGUF_TOKENS: &str = "tokenizer.ggml.tokens";
const GGUF_TOKEN_TYPE: &str = "tokenizer.ggml.token_type";
const GGUF_MERGES: &str = "tokenizer.ggml.merges";

/// GGUF token types that are matched as whole tokens in the text.
const GGUF_TYPE_CONTROL: i32 = 3;
const GGUF_TYPE_USER_DEFINED: i32 = 4;

/// A byte-level BPE tokenizer with the exact behaviour of the Hugging Face `tokenizers` library.
/// See the [module documentation](self) for the algorithm.
#[derive(Clone)]
pub struct Tokenizer {
    /// Model vocabulary: token → id.
    vocab: HashMap<String, u32>,
    /// Model vocabulary: id → token.
    vocab_r: HashMap<u32, String>,
    /// (left id, right id) → (rank, merged id).
    merges: HashMap<(u32, u32), (u32, u32)>,
    /// The merges as given, in rank order (for [`Tokenizer::to_hf_json`]).
    merge_list: Vec<(String, String)>,
    /// Added tokens by ascending id.
    added: Vec<(u32, AddedToken)>,
    /// Added tokens: content → id.
    added_ids: HashMap<String, u32>,
    /// Added tokens: id → index into `added`.
    added_r: HashMap<u32, usize>,
    /// Added tokens with `normalized: false`, matched first.
    raw_matcher: Matcher,
    /// Added tokens with `normalized: true`, matched in what the first pass left.
    normalized_matcher: Matcher,
    pre: PreTokenizer,
    /// Model id of the token of each byte, if the vocabulary has it.
    byte_ids: [Option<u32>; 256],
    /// The unknown token and its id.
    unk: Option<(String, u32)>,
    fuse_unk: bool,
    ignore_merges: bool,
    vocab_size: usize,
}

impl fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.vocab_size)
            .field("merges", &self.merge_list.len())
            .field("added_tokens", &self.added.len())
            .field("pre_tokenizer", &self.pre)
            .finish_non_exhaustive()
    }
}

/// The pre-tokenizer: optional `Digits`, then `ByteLevel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PreTokenizer {
    /// `Some(individual_digits)` when a `Digits` pre-tokenizer comes first.
    digits: Option<bool>,
    add_prefix_space: bool,
    trim_offsets: bool,
    use_regex: bool,
}

impl PreTokenizer {
    const GPT2: PreTokenizer = PreTokenizer {
        digits: None,
        add_prefix_space: false,
        trim_offsets: true,
        use_regex: true,
    };
    const SMOLLM: PreTokenizer = PreTokenizer {
        digits: Some(true),
        ..PreTokenizer::GPT2
    };
}

/// An added token, with the options of `tokenizers`' `AddedToken`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct AddedToken {
    content: String,
    single_word: bool,
    lstrip: bool,
    rstrip: bool,
    normalized: bool,
    special: bool,
}

/// Leftmost-longest matcher of a few literal strings.
#[derive(Debug, Clone, Default)]
struct Matcher {
    /// (content, id, index into `Tokenizer::added`).
    patterns: Vec<(String, u32, usize)>,
    /// For each first byte, indices into `patterns`, longest first; empty when no pattern.
    by_first_byte: Vec<Vec<usize>>,
}

impl Matcher {
    fn new(patterns: Vec<(String, u32, usize)>) -> Self {
        if patterns.is_empty() {
            return Matcher::default();
        }
        let mut by_first_byte = vec![Vec::new(); 256];
        for (k, (content, _, _)) in patterns.iter().enumerate() {
            if let Some(&b) = content.as_bytes().first() {
                by_first_byte[b as usize].push(k);
            }
        }
        for bucket in &mut by_first_byte {
            bucket.sort_by_key(|&k| std::cmp::Reverse(patterns[k].0.len()));
        }
        Matcher {
            patterns,
            by_first_byte,
        }
    }

    fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Non-overlapping leftmost-longest matches: (start, end, pattern index).
    fn find_all(&self, text: &str) -> Vec<(usize, usize, usize)> {
        let mut found = Vec::new();
        if self.is_empty() {
            return found;
        }
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let candidates = &self.by_first_byte[bytes[i] as usize];
            let hit = candidates
                .iter()
                .copied()
                .find(|&k| bytes[i..].starts_with(self.patterns[k].0.as_bytes()));
            match hit {
                Some(k) => {
                    let end = i + self.patterns[k].0.len();
                    found.push((i, end, k));
                    i = end;
                }
                None => i += 1,
            }
        }
        found
    }
}

/// Merge candidate of the BPE min-heap: lowest rank first, then leftmost.
#[derive(Debug, Clone, Copy)]
struct Merge {
    pos: usize,
    rank: u32,
    new_id: u32,
}

impl PartialEq for Merge {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Merge {}
impl PartialOrd for Merge {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Merge {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed, so that `BinaryHeap` (a max-heap) pops the lowest (rank, pos).
        other
            .rank
            .cmp(&self.rank)
            .then_with(|| other.pos.cmp(&self.pos))
    }
}

const NONE: usize = usize::MAX;

/// A symbol of the word being merged, in a doubly linked list; `len == 0` marks a symbol that
/// was merged into its left neighbour.
#[derive(Debug, Clone, Copy)]
struct Symbol {
    id: u32,
    prev: usize,
    next: usize,
    len: usize,
}

/// BPE results of the distinct pre-tokens seen during one `encode` call.
#[derive(Default)]
struct WordCache {
    map: HashMap<Vec<u8>, (usize, usize)>,
    arena: Vec<u32>,
}

/// What the model part of a source gives, before validation.
struct Parts {
    vocab: Vec<(String, u32)>,
    merges: Vec<(String, String)>,
    added: Vec<AddedToken>,
    pre: PreTokenizer,
    unk_token: Option<String>,
    fuse_unk: bool,
    ignore_merges: bool,
}

/// Names of the fields that errors report, which differ between the two sources.
struct Fields {
    vocab: &'static str,
    merges: &'static str,
    unk: &'static str,
}

impl Tokenizer {
    /// Reads a Hugging Face `tokenizer.json`.
    pub fn from_tokenizer_json_file(path: &Path) -> Result<Tokenizer, IoError> {
        let bytes = std::fs::read(path).map_err(|e| IoError::io(path, e))?;
        let text = String::from_utf8(bytes).map_err(|e| IoError::Malformed {
            path: path.to_path_buf(),
            format: JSON_FORMAT,
            detail: format!("not UTF-8: {e}"),
        })?;
        Tokenizer::from_tokenizer_json(&text, path)
    }

    /// Parses the text of a Hugging Face `tokenizer.json`; `path_for_errors` only names the
    /// source in errors.
    pub fn from_tokenizer_json(text: &str, path_for_errors: &Path) -> Result<Tokenizer, IoError> {
        let path = path_for_errors;
        let root: Value = serde_json::from_str(text).map_err(|source| IoError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        let root = root.as_object().ok_or_else(|| IoError::Malformed {
            path: path.to_path_buf(),
            format: JSON_FORMAT,
            detail: "the top level is not a JSON object".into(),
        })?;

        if let Some(version) = root.get("version") {
            if version.as_str() != Some("1.0") {
                return Err(unsupported(
                    path,
                    "tokenizer.json version",
                    format!("{version} (only \"1.0\")"),
                ));
            }
        }
        match root.get("normalizer") {
            None | Some(Value::Null) => {}
            Some(v) => {
                return Err(unsupported(
                    path,
                    "normalizer",
                    format!("{} (only null)", type_of(v)),
                ))
            }
        }
        let pre = parse_pre_tokenizer(root.get("pre_tokenizer"), path)?;
        match root.get("decoder") {
            None | Some(Value::Null) => {}
            Some(v) if type_of(v) == "ByteLevel" => {}
            Some(v) => {
                return Err(unsupported(
                    path,
                    "decoder",
                    format!("{} (only ByteLevel)", type_of(v)),
                ))
            }
        }

        let model = root
            .get("model")
            .ok_or_else(|| missing(path, "model"))?
            .as_object()
            .ok_or_else(|| invalid(path, "model", "not an object"))?;
        match model.get("type") {
            Some(Value::String(t)) if t == "BPE" => {}
            None if model.contains_key("merges") => {}
            None => return Err(missing(path, "model.type")),
            Some(t) => return Err(unsupported(path, "model.type", format!("{t} (only BPE)"))),
        }
        if get_bool(model, "byte_fallback", false, path, "model.byte_fallback")? {
            return Err(unsupported(
                path,
                "model.byte_fallback",
                "true (only false: byte-level BPE needs no fallback)".into(),
            ));
        }
        match model.get("dropout") {
            None | Some(Value::Null) => {}
            Some(Value::Number(n)) if n.as_f64() == Some(0.0) => {}
            Some(v) => {
                return Err(unsupported(
                    path,
                    "model.dropout",
                    format!("{v} (only null: encoding must be deterministic)"),
                ))
            }
        }
        for field in ["continuing_subword_prefix", "end_of_word_suffix"] {
            match model.get(field) {
                None | Some(Value::Null) => {}
                Some(Value::String(s)) if s.is_empty() => {}
                Some(v) => {
                    return Err(unsupported(
                        path,
                        "model option",
                        format!("model.{field} = {v} (only null)"),
                    ))
                }
            }
        }
        let unk_token = match model.get("unk_token") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(v) => {
                return Err(invalid(
                    path,
                    "model.unk_token",
                    format!("{v} is not a string"),
                ))
            }
        };
        let fuse_unk = get_bool(model, "fuse_unk", false, path, "model.fuse_unk")?;
        let ignore_merges = get_bool(model, "ignore_merges", false, path, "model.ignore_merges")?;

        let vocab_obj = model
            .get("vocab")
            .ok_or_else(|| missing(path, "model.vocab"))?
            .as_object()
            .ok_or_else(|| invalid(path, "model.vocab", "not an object"))?;
        let mut vocab = Vec::with_capacity(vocab_obj.len());
        for (token, id) in vocab_obj {
            let id = id
                .as_u64()
                .and_then(|id| u32::try_from(id).ok())
                .ok_or_else(|| {
                    invalid(
                        path,
                        "model.vocab",
                        format!("id of {token:?} is {id}, not a u32"),
                    )
                })?;
            vocab.push((token.clone(), id));
        }
        // Ascending ids, so that a duplicated id resolves the same way on every run.
        vocab.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));

        let merges_json = model
            .get("merges")
            .ok_or_else(|| missing(path, "model.merges"))?
            .as_array()
            .ok_or_else(|| invalid(path, "model.merges", "not an array"))?;
        let mut merges = Vec::with_capacity(merges_json.len());
        for (i, m) in merges_json.iter().enumerate() {
            let pair = match m {
                Value::String(s) => s
                    .split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string())),
                Value::Array(items) => match items.as_slice() {
                    [Value::String(a), Value::String(b)] => Some((a.clone(), b.clone())),
                    _ => None,
                },
                _ => None,
            };
            let pair = pair.ok_or_else(|| {
                invalid(
                    path,
                    "model.merges",
                    format!("entry {i} is {m}, neither \"a b\" nor [\"a\", \"b\"]"),
                )
            })?;
            merges.push(pair);
        }

        let mut added = Vec::new();
        match root.get("added_tokens") {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    added.push(parse_added_token(item, i, path)?);
                }
            }
            Some(_) => return Err(invalid(path, "added_tokens", "not an array")),
        }

        let parts = Parts {
            vocab,
            merges,
            added,
            pre,
            unk_token,
            fuse_unk,
            ignore_merges,
        };
        let fields = Fields {
            vocab: "model.vocab",
            merges: "model.merges",
            unk: "model.unk_token",
        };
        Tokenizer::build(parts, &fields, path)
    }

    /// Builds the tokenizer of a GGUF file from its metadata: `tokens` is
    /// `tokenizer.ggml.tokens` (the id of a token is its index), `token_types` is
    /// `tokenizer.ggml.token_type` (3 = control, 4 = user-defined: both are matched as whole
    /// tokens in the text, control ones as special tokens), `merges` is
    /// `tokenizer.ggml.merges` (`"a b"` strings, in rank order) and `pre` is
    /// `tokenizer.ggml.pre`: `"smollm"` (individual digits, then the GPT-2 byte-level pattern)
    /// or `"gpt2"`/`"default"` (the GPT-2 byte-level pattern). `path_for_errors` only names the
    /// source in errors. The caller checks that `tokenizer.ggml.model` is `"gpt2"`.
    pub fn from_vocab(
        tokens: Vec<String>,
        token_types: Option<Vec<i32>>,
        merges: Vec<String>,
        pre: &str,
        path_for_errors: &Path,
    ) -> Result<Tokenizer, IoError> {
        let path = path_for_errors;
        let pre = match pre {
            "smollm" => PreTokenizer::SMOLLM,
            "gpt2" | "default" => PreTokenizer::GPT2,
            other => {
                return Err(unsupported(
                    path,
                    "tokenizer.ggml.pre",
                    format!("{other:?} (supported: \"smollm\", \"gpt2\", \"default\")"),
                ))
            }
        };
        if u32::try_from(tokens.len()).is_err() {
            return Err(invalid(path, GGUF_TOKENS, "more than 2^32 tokens"));
        }
        let mut added = Vec::new();
        if let Some(types) = &token_types {
            if types.len() != tokens.len() {
                return Err(invalid(
                    path,
                    GGUF_TOKEN_TYPE,
                    format!("{} types for {} tokens", types.len(), tokens.len()),
                ));
            }
            for (token, &t) in tokens.iter().zip(types) {
                if t == GGUF_TYPE_CONTROL || t == GGUF_TYPE_USER_DEFINED {
                    added.push(AddedToken {
                        content: token.clone(),
                        single_word: false,
                        lstrip: false,
                        rstrip: false,
                        normalized: false,
                        special: t == GGUF_TYPE_CONTROL,
                    });
                }
            }
        }
        let mut pairs = Vec::with_capacity(merges.len());
        for (i, m) in merges.iter().enumerate() {
            let (a, b) = m.split_once(' ').ok_or_else(|| {
                invalid(
                    path,
                    GGUF_MERGES,
                    format!("entry {i} is {m:?}, not \"a b\""),
                )
            })?;
            pairs.push((a.to_string(), b.to_string()));
        }
        let vocab = tokens
            .into_iter()
            .enumerate()
            .map(|(id, token)| (token, id as u32))
            .collect();
        let parts = Parts {
            vocab,
            merges: pairs,
            added,
            pre,
            unk_token: None,
            fuse_unk: false,
            ignore_merges: false,
        };
        let fields = Fields {
            vocab: GGUF_TOKENS,
            merges: GGUF_MERGES,
            unk: "tokenizer.ggml.unknown_token_id",
        };
        Tokenizer::build(parts, &fields, path)
    }

    fn build(parts: Parts, fields: &Fields, path: &Path) -> Result<Tokenizer, IoError> {
        if parts.vocab.is_empty() {
            return Err(invalid(path, fields.vocab, "the vocabulary is empty"));
        }
        let mut vocab = HashMap::with_capacity(parts.vocab.len());
        let mut vocab_r = HashMap::with_capacity(parts.vocab.len());
        // A token given twice keeps its last id (as a GGUF reader's map would); an id given
        // twice keeps its first token.
        for (token, id) in parts.vocab {
            vocab_r.entry(id).or_insert_with(|| token.clone());
            vocab.insert(token, id);
        }

        let mut merges = HashMap::with_capacity(parts.merges.len());
        for (rank, (a, b)) in parts.merges.iter().enumerate() {
            let id_of = |token: &str| {
                vocab.get(token).copied().ok_or_else(|| {
                    invalid(
                        path,
                        fields.merges,
                        format!("merge {rank} ({a:?}, {b:?}): {token:?} is not in the vocabulary"),
                    )
                })
            };
            let a_id = id_of(a)?;
            let b_id = id_of(b)?;
            let new_id = id_of(&format!("{a}{b}"))?;
            let rank = u32::try_from(rank)
                .map_err(|_| invalid(path, fields.merges, "more than 2^32 merges"))?;
            // A pair listed twice keeps its last rank, as in `tokenizers`.
            merges.insert((a_id, b_id), (rank, new_id));
        }

        let unk = match parts.unk_token {
            None => None,
            Some(token) => match vocab.get(&token) {
                Some(&id) => Some((token, id)),
                None => {
                    return Err(invalid(
                        path,
                        fields.unk,
                        format!("{token:?} is not in the vocabulary"),
                    ))
                }
            },
        };

        // Ids of added tokens, assigned the way `tokenizers` does when it loads a file: the
        // id of the content if it already has one, otherwise the next id after the model
        // vocabulary and the added tokens so far. (The ids written in the file are ignored.)
        let model_len = vocab.len() as u64;
        let mut added_ids: HashMap<String, u32> = HashMap::new();
        let mut added_by_id: HashMap<u32, AddedToken> = HashMap::new();
        let mut seen: HashSet<AddedToken> = HashSet::new();
        let mut max_added: Option<u32> = None;
        for token in parts.added {
            if token.content.is_empty() || seen.contains(&token) {
                continue;
            }
            let id = match added_ids
                .get(&token.content)
                .or_else(|| vocab.get(&token.content))
            {
                Some(&id) => id,
                None => {
                    let next = match max_added {
                        Some(max) if u64::from(max) >= model_len || model_len == 0 => {
                            u64::from(max) + 1
                        }
                        _ => model_len,
                    };
                    u32::try_from(next)
                        .map_err(|_| invalid(path, "added_tokens", "ids past 2^32"))?
                }
            };
            max_added = Some(max_added.map_or(id, |m| m.max(id)));
            added_ids.insert(token.content.clone(), id);
            if let Some(old) = added_by_id.insert(id, token.clone()) {
                seen.remove(&old);
            }
            seen.insert(token);
        }
        // An id whose token was replaced must not keep its old content.
        added_ids.retain(|content, id| added_by_id.get(id).is_some_and(|t| &t.content == content));
        let mut added: Vec<(u32, AddedToken)> = added_by_id.into_iter().collect();
        added.sort_by_key(|(id, _)| *id);
        let added_r = added
            .iter()
            .enumerate()
            .map(|(k, (id, _))| (*id, k))
            .collect();
        let mut raw = Vec::new();
        let mut normalized = Vec::new();
        for (k, (id, token)) in added.iter().enumerate() {
            let entry = (token.content.clone(), *id, k);
            if token.normalized {
                normalized.push(entry);
            } else {
                raw.push(entry);
            }
        }

        let mut byte_ids = [None; 256];
        for (b, slot) in byte_ids.iter_mut().enumerate() {
            *slot = vocab.get(BYTE_CHARS[b].to_string().as_str()).copied();
        }

        let max_id = vocab_r
            .keys()
            .chain(added.iter().map(|(id, _)| id))
            .copied()
            .max()
            .unwrap_or(0);
        Ok(Tokenizer {
            vocab,
            vocab_r,
            merges,
            merge_list: parts.merges,
            added,
            added_ids,
            added_r,
            raw_matcher: Matcher::new(raw),
            normalized_matcher: Matcher::new(normalized),
            pre: parts.pre,
            byte_ids,
            unk,
            fuse_unk: parts.fuse_unk,
            ignore_merges: parts.ignore_merges,
            vocab_size: (max_id as usize).saturating_add(1),
        })
    }

    /// Number of token ids: one more than the largest id of the vocabulary and added tokens
    /// (the number of embedding rows the model needs).
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// Id of a token (an added token first, then the model vocabulary), as `tokenizers` does.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.added_ids
            .get(token)
            .or_else(|| self.vocab.get(token))
            .copied()
    }

    /// The token of an id, in its byte-level form (`"Ġthe"` for `" the"`).
    pub fn id_to_token(&self, id: u32) -> Option<&str> {
        match self.added_r.get(&id) {
            Some(&k) => self.added.get(k).map(|(_, t)| t.content.as_str()),
            None => self.vocab_r.get(&id).map(String::as_str),
        }
    }

    /// Encodes `text` into token ids, exactly as `tokenizers` does with
    /// `add_special_tokens=False`: special tokens written in the text are matched, but no
    /// BOS/EOS is added.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut ids = Vec::with_capacity(text.len() / 3 + 1);
        let mut cache = WordCache::default();
        for (start, end, id) in self.split_added(text, &self.raw_matcher) {
            if let Some(id) = id {
                ids.push(id);
                continue;
            }
            let piece = &text[start..end];
            for (s2, e2, id2) in self.split_added(piece, &self.normalized_matcher) {
                match id2 {
                    Some(id) => ids.push(id),
                    None => self.encode_piece(&piece[s2..e2], &mut cache, &mut ids),
                }
            }
        }
        ids
    }

    /// Decodes ids back to text; unknown ids are skipped, special tokens are kept, and bytes
    /// that are not valid UTF-8 become U+FFFD. `decode(encode(s)) == s` whenever the vocabulary
    /// has a token for every byte of `s` (SmolLM2's lacks 21 bytes that are rare or invalid in
    /// UTF-8, such as 0x04 or 0xF1, which `encode` drops as `tokenizers` does).
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::with_capacity(ids.len() * 4);
        for &id in ids {
            let Some(token) = self.id_to_token(id) else {
                continue;
            };
            let start = bytes.len();
            for c in token.chars() {
                match char_to_byte(c) {
                    Some(b) => bytes.push(b),
                    None => {
                        bytes.truncate(start);
                        bytes.extend_from_slice(token.as_bytes());
                        break;
                    }
                }
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// This tokenizer as a Hugging Face `tokenizer.json` value, which `tokenizers` loads and
    /// which encodes identically. The vocabulary is written in id order (when `serde_json`
    /// preserves order), the merges in rank order (as `"a b"` strings, or as pairs if a token
    /// contains a space). A GGUF vocabulary with the same token at two ids keeps only one of
    /// them, since the format maps tokens to ids.
    pub fn to_hf_json(&self) -> Value {
        let added: Vec<Value> = self
            .added
            .iter()
            .map(|(id, t)| {
                json!({
                    "id": id,
                    "content": t.content,
                    "single_word": t.single_word,
                    "lstrip": t.lstrip,
                    "rstrip": t.rstrip,
                    "normalized": t.normalized,
                    "special": t.special,
                })
            })
            .collect();
        let byte_level = json!({
            "type": "ByteLevel",
            "add_prefix_space": self.pre.add_prefix_space,
            "trim_offsets": self.pre.trim_offsets,
            "use_regex": self.pre.use_regex,
        });
        let pre_tokenizer = match self.pre.digits {
            Some(individual_digits) => json!({
                "type": "Sequence",
                "pretokenizers": [
                    {"type": "Digits", "individual_digits": individual_digits},
                    byte_level,
                ],
            }),
            None => byte_level,
        };
        let mut entries: Vec<(&String, u32)> = self.vocab.iter().map(|(t, &id)| (t, id)).collect();
        entries.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(b.0)));
        let mut vocab = Map::new();
        for (token, id) in entries {
            vocab.insert(token.clone(), json!(id));
        }
        let as_pairs = self
            .merge_list
            .iter()
            .any(|(a, b)| a.contains(' ') || b.contains(' '));
        let merges: Vec<Value> = self
            .merge_list
            .iter()
            .map(|(a, b)| {
                if as_pairs {
                    json!([a, b])
                } else {
                    Value::String(format!("{a} {b}"))
                }
            })
            .collect();
        json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added,
            "normalizer": null,
            "pre_tokenizer": pre_tokenizer,
            "post_processor": {
                "type": "ByteLevel",
                "add_prefix_space": true,
                "trim_offsets": false,
                "use_regex": true,
            },
            "decoder": {
                "type": "ByteLevel",
                "add_prefix_space": true,
                "trim_offsets": true,
                "use_regex": true,
            },
            "model": {
                "type": "BPE",
                "dropout": null,
                "unk_token": self.unk.as_ref().map(|(t, _)| t.clone()),
                "continuing_subword_prefix": null,
                "end_of_word_suffix": null,
                "fuse_unk": self.fuse_unk,
                "byte_fallback": false,
                "ignore_merges": self.ignore_merges,
                "vocab": vocab,
                "merges": merges,
            },
        })
    }

    /// Cuts `text` on the added tokens of `matcher` as `tokenizers`' `find_matches` does:
    /// (start, end, Some(id)) for a token, (start, end, None) for the text between.
    fn split_added(&self, text: &str, matcher: &Matcher) -> Vec<(usize, usize, Option<u32>)> {
        let mut splits = Vec::new();
        let mut offset = 0;
        for (mut start, mut stop, k) in matcher.find_all(text) {
            let Some(&(_, id, index)) = matcher.patterns.get(k) else {
                continue;
            };
            let Some((_, token)) = self.added.get(index) else {
                continue;
            };
            if token.single_word {
                let start_ok = !text[..start].chars().next_back().is_some_and(is_word_char);
                let stop_ok = !text[stop..].chars().next().is_some_and(is_word_char);
                if !start_ok || !stop_ok {
                    continue;
                }
            }
            if token.lstrip {
                let trimmed = text[..start].trim_end_matches(char::is_whitespace).len();
                start = trimmed.max(offset);
            }
            if token.rstrip {
                let rest = &text[stop..];
                stop += rest.len() - rest.trim_start_matches(char::is_whitespace).len();
            }
            // Only an `rstrip` token followed by a token that starts with whitespace can
            // overlap; `tokenizers` would emit the overlap twice, here it goes to the first.
            start = start.max(offset);
            if offset < start {
                splits.push((offset, start, None));
            }
            splits.push((start, stop, Some(id)));
            offset = stop;
        }
        if offset < text.len() {
            splits.push((offset, text.len(), None));
        }
        splits
    }

    /// Pre-tokenizes and BPE-encodes a piece of text that holds no added token.
    fn encode_piece(&self, piece: &str, cache: &mut WordCache, ids: &mut Vec<u32>) {
        let Some(individual) = self.pre.digits else {
            self.byte_level_piece(piece, cache, ids);
            return;
        };
        let mut start = 0;
        let mut prev_numeric = None;
        for (i, c) in piece.char_indices() {
            let numeric = c.is_numeric();
            if let Some(prev) = prev_numeric {
                if prev != numeric || (numeric && individual) {
                    self.byte_level_piece(&piece[start..i], cache, ids);
                    start = i;
                }
            }
            prev_numeric = Some(numeric);
        }
        self.byte_level_piece(&piece[start..], cache, ids);
    }

    /// The ByteLevel pre-tokenizer on one piece, then BPE on each pre-token.
    fn byte_level_piece(&self, piece: &str, cache: &mut WordCache, ids: &mut Vec<u32>) {
        if piece.is_empty() {
            return;
        }
        let prefixed;
        let piece = if self.pre.add_prefix_space && !piece.starts_with(' ') {
            prefixed = format!(" {piece}");
            prefixed.as_str()
        } else {
            piece
        };
        if self.pre.use_regex {
            split_gpt2(piece, &mut |word| {
                self.bpe_cached(word.as_bytes(), cache, ids)
            });
        } else {
            self.bpe_cached(piece.as_bytes(), cache, ids);
        }
    }

    fn bpe_cached(&self, word: &[u8], cache: &mut WordCache, ids: &mut Vec<u32>) {
        if let Some(&(start, len)) = cache.map.get(word) {
            if let Some(cached) = cache.arena.get(start..start + len) {
                ids.extend_from_slice(cached);
                return;
            }
        }
        let first = ids.len();
        self.bpe(word, ids);
        let start = cache.arena.len();
        cache.arena.extend_from_slice(&ids[first..]);
        cache.map.insert(word.to_vec(), (start, ids.len() - first));
    }

    /// Byte-level BPE of one pre-token (its raw UTF-8 bytes), appended to `ids`.
    fn bpe(&self, word: &[u8], ids: &mut Vec<u32>) {
        if self.ignore_merges {
            let mapped: String = word.iter().map(|&b| BYTE_CHARS[b as usize]).collect();
            if let Some(&id) = self.vocab.get(&mapped) {
                ids.push(id);
                return;
            }
        }
        let mut symbols: Vec<Symbol> = Vec::with_capacity(word.len());
        let push = |symbols: &mut Vec<Symbol>, id: u32| {
            let n = symbols.len();
            if let Some(last) = symbols.last_mut() {
                last.next = n;
            }
            symbols.push(Symbol {
                id,
                prev: if n == 0 { NONE } else { n - 1 },
                next: NONE,
                len: 1,
            });
        };
        let mut pending_unk: Option<u32> = None;
        for &b in word {
            match self.byte_ids[b as usize] {
                Some(id) => {
                    if let Some(unk) = pending_unk.take() {
                        push(&mut symbols, unk);
                    }
                    push(&mut symbols, id);
                }
                None => {
                    if let Some((_, unk)) = self.unk {
                        if let Some(prev) = pending_unk {
                            if !self.fuse_unk {
                                push(&mut symbols, prev);
                            }
                        }
                        pending_unk = Some(unk);
                    }
                }
            }
        }
        if let Some(unk) = pending_unk {
            push(&mut symbols, unk);
        }
        if symbols.len() > 1 {
            self.merge_symbols(&mut symbols);
        }
        ids.extend(symbols.iter().filter(|s| s.len != 0).map(|s| s.id));
    }

    /// The merge loop of `tokenizers`' `Word::merge_all`, without dropout.
    fn merge_symbols(&self, symbols: &mut [Symbol]) {
        let mut heap = BinaryHeap::with_capacity(symbols.len());
        for (pos, pair) in symbols.windows(2).enumerate() {
            if let Some(&(rank, new_id)) = self.merges.get(&(pair[0].id, pair[1].id)) {
                heap.push(Merge { pos, rank, new_id });
            }
        }
        while let Some(top) = heap.pop() {
            let Some(&current) = symbols.get(top.pos) else {
                continue;
            };
            if current.len == 0 || current.next == NONE {
                continue;
            }
            let Some(&right) = symbols.get(current.next) else {
                continue;
            };
            // Skip an entry made stale by an earlier merge.
            match self.merges.get(&(current.id, right.id)) {
                Some(&(_, new_id)) if new_id == top.new_id => {}
                _ => continue,
            }
            let merged = Symbol {
                id: top.new_id,
                prev: current.prev,
                next: right.next,
                len: current.len + right.len,
            };
            symbols[top.pos] = merged;
            symbols[current.next].len = 0;
            if let Some(after) = symbols.get_mut(right.next) {
                after.prev = top.pos;
            }
            if let Some(prev) = symbols.get(merged.prev) {
                if let Some(&(rank, new_id)) = self.merges.get(&(prev.id, merged.id)) {
                    heap.push(Merge {
                        pos: merged.prev,
                        rank,
                        new_id,
                    });
                }
            }
            if let Some(next) = symbols.get(merged.next) {
                if let Some(&(rank, new_id)) = self.merges.get(&(merged.id, next.id)) {
                    heap.push(Merge {
                        pos: top.pos,
                        rank,
                        new_id,
                    });
                }
            }
        }
    }
}

/// Calls `f` on each match of the GPT-2 pattern
/// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+` in `s`, in
/// order. Every character matches some alternative, so the matches cover `s`.
fn split_gpt2<'a>(s: &'a str, f: &mut impl FnMut(&'a str)) {
    let mut i = 0;
    while let Some(c) = s[i..].chars().next() {
        let end = gpt2_match_end(s, i, c);
        f(&s[i..end]);
        i = end;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// `\s`
    Space,
    /// `\p{L}`
    Letter,
    /// `\p{N}`
    Number,
    /// `[^\s\p{L}\p{N}]`
    Other,
}

fn classify(c: char) -> Class {
    if c.is_ascii() {
        match c {
            'a'..='z' | 'A'..='Z' => Class::Letter,
            '0'..='9' => Class::Number,
            '\t' | '\n' | '\x0b' | '\x0c' | '\r' | ' ' => Class::Space,
            _ => Class::Other,
        }
    } else if c.is_whitespace() {
        Class::Space
    } else if is_letter(c) {
        Class::Letter
    } else if c.is_numeric() {
        Class::Number
    } else {
        Class::Other
    }
}

/// End of the match of the GPT-2 pattern that starts at `i`, where `s[i..]` starts with `c`.
fn gpt2_match_end(s: &str, i: usize, c: char) -> usize {
    let after = i + c.len_utf8();
    // 's|'t|'re|'ve|'m|'ll|'d
    if c == '\'' {
        match s.as_bytes().get(after..) {
            Some([b's' | b't' | b'm' | b'd', ..]) => return after + 1,
            Some([b'r', b'e', ..] | [b'v', b'e', ..] | [b'l', b'l', ..]) => return after + 2,
            _ => {}
        }
    }
    // ' ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+'
    let class = classify(c);
    if class != Class::Space {
        return run_end(s, after, class);
    }
    if c == ' ' {
        if let Some(c2) = s[after..].chars().next() {
            let class2 = classify(c2);
            if class2 != Class::Space {
                return run_end(s, after + c2.len_utf8(), class2);
            }
        }
    }
    // \s+(?!\S)|\s+
    let mut last_start = i;
    let mut end = after;
    for ch in s[after..].chars() {
        if classify(ch) != Class::Space {
            break;
        }
        last_start = end;
        end += ch.len_utf8();
    }
    if end == s.len() || last_start == i {
        // The run ends the piece, or it is one character before a non-space (`\s+`).
        end
    } else {
        // Leave the last whitespace character to the word that follows.
        last_start
    }
}

/// End of the run of characters of `class` that starts at `j`.
fn run_end(s: &str, mut j: usize, class: Class) -> usize {
    for ch in s[j..].chars() {
        if classify(ch) != class {
            break;
        }
        j += ch.len_utf8();
    }
    j
}

/// Regex `\w`, for `single_word` added tokens, approximated as alphanumeric, `_` or a joiner.
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '\u{200c}' || c == '\u{200d}'
}

/// Whether `c` is in `\p{L}` (general category L), as the `tokenizers` library's regex sees it.
fn is_letter(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_alphabetic();
    }
    let c = c as u32;
    LETTER_RANGES
        .binary_search_by(|&(lo, hi)| {
            if hi < c {
                Ordering::Less
            } else if lo > c {
                Ordering::Greater
            } else {
                Ordering::Equal
            }
        })
        .is_ok()
}

/// GPT-2's map from bytes to printable characters: the printable Latin-1 bytes stand for
/// themselves, the other 68 bytes take U+0100.. in order (so a space is `Ġ`, a newline `Ċ`).
const BYTE_CHARS: [char; 256] = byte_chars();

const fn byte_chars() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut extra = 0u32;
    let mut b = 0u32;
    while b < 256 {
        let printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
        let code = if printable {
            b
        } else {
            extra += 1;
            255 + extra
        };
        table[b as usize] = match char::from_u32(code) {
            Some(c) => c,
            None => '\0',
        };
        b += 1;
    }
    table
}

/// Inverse of [`BYTE_CHARS`]: the byte a character stands for.
fn char_to_byte(c: char) -> Option<u8> {
    const INVERSE: [i16; 324] = {
        let mut inverse = [-1i16; 324];
        let mut b = 0;
        while b < 256 {
            inverse[BYTE_CHARS[b] as usize] = b as i16;
            b += 1;
        }
        inverse
    };
    INVERSE.get(c as usize).and_then(|&b| u8::try_from(b).ok())
}

fn parse_pre_tokenizer(value: Option<&Value>, path: &Path) -> Result<PreTokenizer, IoError> {
    let field = "pre_tokenizer";
    let value = match value {
        None | Some(Value::Null) => {
            return Err(unsupported(
                path,
                "pre_tokenizer",
                "null (a byte-level BPE needs a ByteLevel pre-tokenizer)".into(),
            ))
        }
        Some(v) => v,
    };
    let steps: Vec<&Value> = match type_of(value) {
        "Sequence" => value
            .get("pretokenizers")
            .and_then(Value::as_array)
            .ok_or_else(|| {
                invalid(
                    path,
                    "pre_tokenizer.pretokenizers",
                    "missing or not an array",
                )
            })?
            .iter()
            .collect(),
        _ => vec![value],
    };
    let types: Vec<&str> = steps.iter().map(|v| type_of(v)).collect();
    let reject = |why: &str| {
        unsupported(
            path,
            "pre_tokenizer",
            format!(
                "{} ({why}; supported: ByteLevel, or Sequence[Digits, ByteLevel])",
                types.join(", ")
            ),
        )
    };
    let (digits, gpt2_split, byte_level) = match steps.as_slice() {
        [bl] if type_of(bl) == "ByteLevel" => (None, false, *bl),
        [d, bl] if type_of(d) == "Digits" && type_of(bl) == "ByteLevel" => (Some(*d), false, *bl),
        [sp, bl] if type_of(sp) == "Split" && type_of(bl) == "ByteLevel" => {
            if !is_gpt2_split(sp) {
                return Err(reject("only a Split with the exact GPT-2 pattern"));
            }
            (None, true, *bl)
        }
        _ => return Err(reject("unsupported combination")),
    };
    let bool_of = |v: &Value, key: &str, default: bool| -> Result<bool, IoError> {
        match v.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => Err(invalid(
                path,
                format!("{field}.{key}"),
                format!("{other} is not a boolean"),
            )),
        }
    };
    let use_regex = bool_of(byte_level, "use_regex", true)?;
    if gpt2_split && use_regex {
        return Err(reject(
            "a GPT-2 Split followed by a ByteLevel that splits again",
        ));
    }
    Ok(PreTokenizer {
        digits: match digits {
            Some(d) => Some(bool_of(d, "individual_digits", false)?),
            None => None,
        },
        add_prefix_space: bool_of(byte_level, "add_prefix_space", true)?,
        trim_offsets: bool_of(byte_level, "trim_offsets", true)?,
        use_regex: use_regex || gpt2_split,
    })
}

/// A `Split` pre-tokenizer with exactly the GPT-2 pattern, isolating its matches.
fn is_gpt2_split(split: &Value) -> bool {
    let pattern = split
        .get("pattern")
        .and_then(|p| p.get("Regex"))
        .and_then(Value::as_str);
    let behavior = split.get("behavior").and_then(Value::as_str);
    let invert = split
        .get("invert")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    pattern == Some(GPT2_PATTERN) && behavior == Some("Isolated") && !invert
}

fn parse_added_token(item: &Value, i: usize, path: &Path) -> Result<AddedToken, IoError> {
    let field = format!("added_tokens[{i}]");
    let obj = item
        .as_object()
        .ok_or_else(|| invalid(path, field.clone(), "not an object"))?;
    let content = obj
        .get("content")
        .ok_or_else(|| missing(path, format!("{field}.content")))?
        .as_str()
        .ok_or_else(|| invalid(path, format!("{field}.content"), "not a string"))?
        .to_string();
    let flag =
        |key: &str, default: bool| get_bool(obj, key, default, path, &format!("{field}.{key}"));
    let special = flag("special", false)?;
    Ok(AddedToken {
        content,
        single_word: flag("single_word", false)?,
        lstrip: flag("lstrip", false)?,
        rstrip: flag("rstrip", false)?,
        normalized: flag("normalized", !special)?,
        special,
    })
}

fn get_bool(
    obj: &Map<String, Value>,
    key: &str,
    default: bool,
    path: &Path,
    field: &str,
) -> Result<bool, IoError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(v) => Err(invalid(path, field, format!("{v} is not a boolean"))),
    }
}

/// The `"type"` of a component, or a description of what stands there instead.
fn type_of(v: &Value) -> &str {
    match v.get("type").and_then(Value::as_str) {
        Some(t) => t,
        None if v.is_object() => "an object without \"type\"",
        None => "a non-object",
    }
}

fn unsupported(path: &Path, what: &'static str, detail: String) -> IoError {
    IoError::Unsupported {
        path: PathBuf::from(path),
        what,
        detail,
    }
}

fn missing(path: &Path, field: impl Into<String>) -> IoError {
    IoError::MissingField {
        path: PathBuf::from(path),
        field: field.into(),
    }
}

fn invalid(path: &Path, field: impl Into<String>, detail: impl Into<String>) -> IoError {
    IoError::InvalidField {
        path: PathBuf::from(path),
        field: field.into(),
        detail: detail.into(),
    }
}

/// Code points outside ASCII that are `\p{L}` for the regex of the `tokenizers` library
/// (general category L of its Unicode version, 16.0 for `tokenizers` 0.23). Generated by
/// `python3 tests/data/make_tokenizer_json.py letter-table`.
#[rustfmt::skip]
const LETTER_RANGES: [(u32, u32); 675] = [
    (0x00AA, 0x00AA), (0x00B5, 0x00B5), (0x00BA, 0x00BA), (0x00C0, 0x00D6),
    (0x00D8, 0x00F6), (0x00F8, 0x02C1), (0x02C6, 0x02D1), (0x02E0, 0x02E4),
    (0x02EC, 0x02EC), (0x02EE, 0x02EE), (0x0370, 0x0374), (0x0376, 0x0377),
    (0x037A, 0x037D), (0x037F, 0x037F), (0x0386, 0x0386), (0x0388, 0x038A),
    (0x038C, 0x038C), (0x038E, 0x03A1), (0x03A3, 0x03F5), (0x03F7, 0x0481),
    (0x048A, 0x052F), (0x0531, 0x0556), (0x0559, 0x0559), (0x0560, 0x0588),
    (0x05D0, 0x05EA), (0x05EF, 0x05F2), (0x0620, 0x064A), (0x066E, 0x066F),
    (0x0671, 0x06D3), (0x06D5, 0x06D5), (0x06E5, 0x06E6), (0x06EE, 0x06EF),
    (0x06FA, 0x06FC), (0x06FF, 0x06FF), (0x0710, 0x0710), (0x0712, 0x072F),
    (0x074D, 0x07A5), (0x07B1, 0x07B1), (0x07CA, 0x07EA), (0x07F4, 0x07F5),
    (0x07FA, 0x07FA), (0x0800, 0x0815), (0x081A, 0x081A), (0x0824, 0x0824),
    (0x0828, 0x0828), (0x0840, 0x0858), (0x0860, 0x086A), (0x0870, 0x0887),
    (0x0889, 0x088E), (0x08A0, 0x08C9), (0x0904, 0x0939), (0x093D, 0x093D),
    (0x0950, 0x0950), (0x0958, 0x0961), (0x0971, 0x0980), (0x0985, 0x098C),
    (0x098F, 0x0990), (0x0993, 0x09A8), (0x09AA, 0x09B0), (0x09B2, 0x09B2),
    (0x09B6, 0x09B9), (0x09BD, 0x09BD), (0x09CE, 0x09CE), (0x09DC, 0x09DD),
    (0x09DF, 0x09E1), (0x09F0, 0x09F1), (0x09FC, 0x09FC), (0x0A05, 0x0A0A),
    (0x0A0F, 0x0A10), (0x0A13, 0x0A28), (0x0A2A, 0x0A30), (0x0A32, 0x0A33),
    (0x0A35, 0x0A36), (0x0A38, 0x0A39), (0x0A59, 0x0A5C), (0x0A5E, 0x0A5E),
    (0x0A72, 0x0A74), (0x0A85, 0x0A8D), (0x0A8F, 0x0A91), (0x0A93, 0x0AA8),
    (0x0AAA, 0x0AB0), (0x0AB2, 0x0AB3), (0x0AB5, 0x0AB9), (0x0ABD, 0x0ABD),
    (0x0AD0, 0x0AD0), (0x0AE0, 0x0AE1), (0x0AF9, 0x0AF9), (0x0B05, 0x0B0C),
    (0x0B0F, 0x0B10), (0x0B13, 0x0B28), (0x0B2A, 0x0B30), (0x0B32, 0x0B33),
    (0x0B35, 0x0B39), (0x0B3D, 0x0B3D), (0x0B5C, 0x0B5D), (0x0B5F, 0x0B61),
    (0x0B71, 0x0B71), (0x0B83, 0x0B83), (0x0B85, 0x0B8A), (0x0B8E, 0x0B90),
    (0x0B92, 0x0B95), (0x0B99, 0x0B9A), (0x0B9C, 0x0B9C), (0x0B9E, 0x0B9F),
    (0x0BA3, 0x0BA4), (0x0BA8, 0x0BAA), (0x0BAE, 0x0BB9), (0x0BD0, 0x0BD0),
    (0x0C05, 0x0C0C), (0x0C0E, 0x0C10), (0x0C12, 0x0C28), (0x0C2A, 0x0C39),
    (0x0C3D, 0x0C3D), (0x0C58, 0x0C5A), (0x0C5D, 0x0C5D), (0x0C60, 0x0C61),
    (0x0C80, 0x0C80), (0x0C85, 0x0C8C), (0x0C8E, 0x0C90), (0x0C92, 0x0CA8),
    (0x0CAA, 0x0CB3), (0x0CB5, 0x0CB9), (0x0CBD, 0x0CBD), (0x0CDD, 0x0CDE),
    (0x0CE0, 0x0CE1), (0x0CF1, 0x0CF2), (0x0D04, 0x0D0C), (0x0D0E, 0x0D10),
    (0x0D12, 0x0D3A), (0x0D3D, 0x0D3D), (0x0D4E, 0x0D4E), (0x0D54, 0x0D56),
    (0x0D5F, 0x0D61), (0x0D7A, 0x0D7F), (0x0D85, 0x0D96), (0x0D9A, 0x0DB1),
    (0x0DB3, 0x0DBB), (0x0DBD, 0x0DBD), (0x0DC0, 0x0DC6), (0x0E01, 0x0E30),
    (0x0E32, 0x0E33), (0x0E40, 0x0E46), (0x0E81, 0x0E82), (0x0E84, 0x0E84),
    (0x0E86, 0x0E8A), (0x0E8C, 0x0EA3), (0x0EA5, 0x0EA5), (0x0EA7, 0x0EB0),
    (0x0EB2, 0x0EB3), (0x0EBD, 0x0EBD), (0x0EC0, 0x0EC4), (0x0EC6, 0x0EC6),
    (0x0EDC, 0x0EDF), (0x0F00, 0x0F00), (0x0F40, 0x0F47), (0x0F49, 0x0F6C),
    (0x0F88, 0x0F8C), (0x1000, 0x102A), (0x103F, 0x103F), (0x1050, 0x1055),
    (0x105A, 0x105D), (0x1061, 0x1061), (0x1065, 0x1066), (0x106E, 0x1070),
    (0x1075, 0x1081), (0x108E, 0x108E), (0x10A0, 0x10C5), (0x10C7, 0x10C7),
    (0x10CD, 0x10CD), (0x10D0, 0x10FA), (0x10FC, 0x1248), (0x124A, 0x124D),
    (0x1250, 0x1256), (0x1258, 0x1258), (0x125A, 0x125D), (0x1260, 0x1288),
    (0x128A, 0x128D), (0x1290, 0x12B0), (0x12B2, 0x12B5), (0x12B8, 0x12BE),
    (0x12C0, 0x12C0), (0x12C2, 0x12C5), (0x12C8, 0x12D6), (0x12D8, 0x1310),
    (0x1312, 0x1315), (0x1318, 0x135A), (0x1380, 0x138F), (0x13A0, 0x13F5),
    (0x13F8, 0x13FD), (0x1401, 0x166C), (0x166F, 0x167F), (0x1681, 0x169A),
    (0x16A0, 0x16EA), (0x16F1, 0x16F8), (0x1700, 0x1711), (0x171F, 0x1731),
    (0x1740, 0x1751), (0x1760, 0x176C), (0x176E, 0x1770), (0x1780, 0x17B3),
    (0x17D7, 0x17D7), (0x17DC, 0x17DC), (0x1820, 0x1878), (0x1880, 0x1884),
    (0x1887, 0x18A8), (0x18AA, 0x18AA), (0x18B0, 0x18F5), (0x1900, 0x191E),
    (0x1950, 0x196D), (0x1970, 0x1974), (0x1980, 0x19AB), (0x19B0, 0x19C9),
    (0x1A00, 0x1A16), (0x1A20, 0x1A54), (0x1AA7, 0x1AA7), (0x1B05, 0x1B33),
    (0x1B45, 0x1B4C), (0x1B83, 0x1BA0), (0x1BAE, 0x1BAF), (0x1BBA, 0x1BE5),
    (0x1C00, 0x1C23), (0x1C4D, 0x1C4F), (0x1C5A, 0x1C7D), (0x1C80, 0x1C8A),
    (0x1C90, 0x1CBA), (0x1CBD, 0x1CBF), (0x1CE9, 0x1CEC), (0x1CEE, 0x1CF3),
    (0x1CF5, 0x1CF6), (0x1CFA, 0x1CFA), (0x1D00, 0x1DBF), (0x1E00, 0x1F15),
    (0x1F18, 0x1F1D), (0x1F20, 0x1F45), (0x1F48, 0x1F4D), (0x1F50, 0x1F57),
    (0x1F59, 0x1F59), (0x1F5B, 0x1F5B), (0x1F5D, 0x1F5D), (0x1F5F, 0x1F7D),
    (0x1F80, 0x1FB4), (0x1FB6, 0x1FBC), (0x1FBE, 0x1FBE), (0x1FC2, 0x1FC4),
    (0x1FC6, 0x1FCC), (0x1FD0, 0x1FD3), (0x1FD6, 0x1FDB), (0x1FE0, 0x1FEC),
    (0x1FF2, 0x1FF4), (0x1FF6, 0x1FFC), (0x2071, 0x2071), (0x207F, 0x207F),
    (0x2090, 0x209C), (0x2102, 0x2102), (0x2107, 0x2107), (0x210A, 0x2113),
    (0x2115, 0x2115), (0x2119, 0x211D), (0x2124, 0x2124), (0x2126, 0x2126),
    (0x2128, 0x2128), (0x212A, 0x212D), (0x212F, 0x2139), (0x213C, 0x213F),
    (0x2145, 0x2149), (0x214E, 0x214E), (0x2183, 0x2184), (0x2C00, 0x2CE4),
    (0x2CEB, 0x2CEE), (0x2CF2, 0x2CF3), (0x2D00, 0x2D25), (0x2D27, 0x2D27),
    (0x2D2D, 0x2D2D), (0x2D30, 0x2D67), (0x2D6F, 0x2D6F), (0x2D80, 0x2D96),
    (0x2DA0, 0x2DA6), (0x2DA8, 0x2DAE), (0x2DB0, 0x2DB6), (0x2DB8, 0x2DBE),
    (0x2DC0, 0x2DC6), (0x2DC8, 0x2DCE), (0x2DD0, 0x2DD6), (0x2DD8, 0x2DDE),
    (0x2E2F, 0x2E2F), (0x3005, 0x3006), (0x3031, 0x3035), (0x303B, 0x303C),
    (0x3041, 0x3096), (0x309D, 0x309F), (0x30A1, 0x30FA), (0x30FC, 0x30FF),
    (0x3105, 0x312F), (0x3131, 0x318E), (0x31A0, 0x31BF), (0x31F0, 0x31FF),
    (0x3400, 0x4DBF), (0x4E00, 0xA48C), (0xA4D0, 0xA4FD), (0xA500, 0xA60C),
    (0xA610, 0xA61F), (0xA62A, 0xA62B), (0xA640, 0xA66E), (0xA67F, 0xA69D),
    (0xA6A0, 0xA6E5), (0xA717, 0xA71F), (0xA722, 0xA788), (0xA78B, 0xA7CD),
    (0xA7D0, 0xA7D1), (0xA7D3, 0xA7D3), (0xA7D5, 0xA7DC), (0xA7F2, 0xA801),
    (0xA803, 0xA805), (0xA807, 0xA80A), (0xA80C, 0xA822), (0xA840, 0xA873),
    (0xA882, 0xA8B3), (0xA8F2, 0xA8F7), (0xA8FB, 0xA8FB), (0xA8FD, 0xA8FE),
    (0xA90A, 0xA925), (0xA930, 0xA946), (0xA960, 0xA97C), (0xA984, 0xA9B2),
    (0xA9CF, 0xA9CF), (0xA9E0, 0xA9E4), (0xA9E6, 0xA9EF), (0xA9FA, 0xA9FE),
    (0xAA00, 0xAA28), (0xAA40, 0xAA42), (0xAA44, 0xAA4B), (0xAA60, 0xAA76),
    (0xAA7A, 0xAA7A), (0xAA7E, 0xAAAF), (0xAAB1, 0xAAB1), (0xAAB5, 0xAAB6),
    (0xAAB9, 0xAABD), (0xAAC0, 0xAAC0), (0xAAC2, 0xAAC2), (0xAADB, 0xAADD),
    (0xAAE0, 0xAAEA), (0xAAF2, 0xAAF4), (0xAB01, 0xAB06), (0xAB09, 0xAB0E),
    (0xAB11, 0xAB16), (0xAB20, 0xAB26), (0xAB28, 0xAB2E), (0xAB30, 0xAB5A),
    (0xAB5C, 0xAB69), (0xAB70, 0xABE2), (0xAC00, 0xD7A3), (0xD7B0, 0xD7C6),
    (0xD7CB, 0xD7FB), (0xF900, 0xFA6D), (0xFA70, 0xFAD9), (0xFB00, 0xFB06),
    (0xFB13, 0xFB17), (0xFB1D, 0xFB1D), (0xFB1F, 0xFB28), (0xFB2A, 0xFB36),
    (0xFB38, 0xFB3C), (0xFB3E, 0xFB3E), (0xFB40, 0xFB41), (0xFB43, 0xFB44),
    (0xFB46, 0xFBB1), (0xFBD3, 0xFD3D), (0xFD50, 0xFD8F), (0xFD92, 0xFDC7),
    (0xFDF0, 0xFDFB), (0xFE70, 0xFE74), (0xFE76, 0xFEFC), (0xFF21, 0xFF3A),
    (0xFF41, 0xFF5A), (0xFF66, 0xFFBE), (0xFFC2, 0xFFC7), (0xFFCA, 0xFFCF),
    (0xFFD2, 0xFFD7), (0xFFDA, 0xFFDC), (0x10000, 0x1000B), (0x1000D, 0x10026),
    (0x10028, 0x1003A), (0x1003C, 0x1003D), (0x1003F, 0x1004D), (0x10050, 0x1005D),
    (0x10080, 0x100FA), (0x10280, 0x1029C), (0x102A0, 0x102D0), (0x10300, 0x1031F),
    (0x1032D, 0x10340), (0x10342, 0x10349), (0x10350, 0x10375), (0x10380, 0x1039D),
    (0x103A0, 0x103C3), (0x103C8, 0x103CF), (0x10400, 0x1049D), (0x104B0, 0x104D3),
    (0x104D8, 0x104FB), (0x10500, 0x10527), (0x10530, 0x10563), (0x10570, 0x1057A),
    (0x1057C, 0x1058A), (0x1058C, 0x10592), (0x10594, 0x10595), (0x10597, 0x105A1),
    (0x105A3, 0x105B1), (0x105B3, 0x105B9), (0x105BB, 0x105BC), (0x105C0, 0x105F3),
    (0x10600, 0x10736), (0x10740, 0x10755), (0x10760, 0x10767), (0x10780, 0x10785),
    (0x10787, 0x107B0), (0x107B2, 0x107BA), (0x10800, 0x10805), (0x10808, 0x10808),
    (0x1080A, 0x10835), (0x10837, 0x10838), (0x1083C, 0x1083C), (0x1083F, 0x10855),
    (0x10860, 0x10876), (0x10880, 0x1089E), (0x108E0, 0x108F2), (0x108F4, 0x108F5),
    (0x10900, 0x10915), (0x10920, 0x10939), (0x10980, 0x109B7), (0x109BE, 0x109BF),
    (0x10A00, 0x10A00), (0x10A10, 0x10A13), (0x10A15, 0x10A17), (0x10A19, 0x10A35),
    (0x10A60, 0x10A7C), (0x10A80, 0x10A9C), (0x10AC0, 0x10AC7), (0x10AC9, 0x10AE4),
    (0x10B00, 0x10B35), (0x10B40, 0x10B55), (0x10B60, 0x10B72), (0x10B80, 0x10B91),
    (0x10C00, 0x10C48), (0x10C80, 0x10CB2), (0x10CC0, 0x10CF2), (0x10D00, 0x10D23),
    (0x10D4A, 0x10D65), (0x10D6F, 0x10D85), (0x10E80, 0x10EA9), (0x10EB0, 0x10EB1),
    (0x10EC2, 0x10EC4), (0x10F00, 0x10F1C), (0x10F27, 0x10F27), (0x10F30, 0x10F45),
    (0x10F70, 0x10F81), (0x10FB0, 0x10FC4), (0x10FE0, 0x10FF6), (0x11003, 0x11037),
    (0x11071, 0x11072), (0x11075, 0x11075), (0x11083, 0x110AF), (0x110D0, 0x110E8),
    (0x11103, 0x11126), (0x11144, 0x11144), (0x11147, 0x11147), (0x11150, 0x11172),
    (0x11176, 0x11176), (0x11183, 0x111B2), (0x111C1, 0x111C4), (0x111DA, 0x111DA),
    (0x111DC, 0x111DC), (0x11200, 0x11211), (0x11213, 0x1122B), (0x1123F, 0x11240),
    (0x11280, 0x11286), (0x11288, 0x11288), (0x1128A, 0x1128D), (0x1128F, 0x1129D),
    (0x1129F, 0x112A8), (0x112B0, 0x112DE), (0x11305, 0x1130C), (0x1130F, 0x11310),
    (0x11313, 0x11328), (0x1132A, 0x11330), (0x11332, 0x11333), (0x11335, 0x11339),
    (0x1133D, 0x1133D), (0x11350, 0x11350), (0x1135D, 0x11361), (0x11380, 0x11389),
    (0x1138B, 0x1138B), (0x1138E, 0x1138E), (0x11390, 0x113B5), (0x113B7, 0x113B7),
    (0x113D1, 0x113D1), (0x113D3, 0x113D3), (0x11400, 0x11434), (0x11447, 0x1144A),
    (0x1145F, 0x11461), (0x11480, 0x114AF), (0x114C4, 0x114C5), (0x114C7, 0x114C7),
    (0x11580, 0x115AE), (0x115D8, 0x115DB), (0x11600, 0x1162F), (0x11644, 0x11644),
    (0x11680, 0x116AA), (0x116B8, 0x116B8), (0x11700, 0x1171A), (0x11740, 0x11746),
    (0x11800, 0x1182B), (0x118A0, 0x118DF), (0x118FF, 0x11906), (0x11909, 0x11909),
    (0x1190C, 0x11913), (0x11915, 0x11916), (0x11918, 0x1192F), (0x1193F, 0x1193F),
    (0x11941, 0x11941), (0x119A0, 0x119A7), (0x119AA, 0x119D0), (0x119E1, 0x119E1),
    (0x119E3, 0x119E3), (0x11A00, 0x11A00), (0x11A0B, 0x11A32), (0x11A3A, 0x11A3A),
    (0x11A50, 0x11A50), (0x11A5C, 0x11A89), (0x11A9D, 0x11A9D), (0x11AB0, 0x11AF8),
    (0x11BC0, 0x11BE0), (0x11C00, 0x11C08), (0x11C0A, 0x11C2E), (0x11C40, 0x11C40),
    (0x11C72, 0x11C8F), (0x11D00, 0x11D06), (0x11D08, 0x11D09), (0x11D0B, 0x11D30),
    (0x11D46, 0x11D46), (0x11D60, 0x11D65), (0x11D67, 0x11D68), (0x11D6A, 0x11D89),
    (0x11D98, 0x11D98), (0x11EE0, 0x11EF2), (0x11F02, 0x11F02), (0x11F04, 0x11F10),
    (0x11F12, 0x11F33), (0x11FB0, 0x11FB0), (0x12000, 0x12399), (0x12480, 0x12543),
    (0x12F90, 0x12FF0), (0x13000, 0x1342F), (0x13441, 0x13446), (0x13460, 0x143FA),
    (0x14400, 0x14646), (0x16100, 0x1611D), (0x16800, 0x16A38), (0x16A40, 0x16A5E),
    (0x16A70, 0x16ABE), (0x16AD0, 0x16AED), (0x16B00, 0x16B2F), (0x16B40, 0x16B43),
    (0x16B63, 0x16B77), (0x16B7D, 0x16B8F), (0x16D40, 0x16D6C), (0x16E40, 0x16E7F),
    (0x16F00, 0x16F4A), (0x16F50, 0x16F50), (0x16F93, 0x16F9F), (0x16FE0, 0x16FE1),
    (0x16FE3, 0x16FE3), (0x17000, 0x187F7), (0x18800, 0x18CD5), (0x18CFF, 0x18D08),
    (0x1AFF0, 0x1AFF3), (0x1AFF5, 0x1AFFB), (0x1AFFD, 0x1AFFE), (0x1B000, 0x1B122),
    (0x1B132, 0x1B132), (0x1B150, 0x1B152), (0x1B155, 0x1B155), (0x1B164, 0x1B167),
    (0x1B170, 0x1B2FB), (0x1BC00, 0x1BC6A), (0x1BC70, 0x1BC7C), (0x1BC80, 0x1BC88),
    (0x1BC90, 0x1BC99), (0x1D400, 0x1D454), (0x1D456, 0x1D49C), (0x1D49E, 0x1D49F),
    (0x1D4A2, 0x1D4A2), (0x1D4A5, 0x1D4A6), (0x1D4A9, 0x1D4AC), (0x1D4AE, 0x1D4B9),
    (0x1D4BB, 0x1D4BB), (0x1D4BD, 0x1D4C3), (0x1D4C5, 0x1D505), (0x1D507, 0x1D50A),
    (0x1D50D, 0x1D514), (0x1D516, 0x1D51C), (0x1D51E, 0x1D539), (0x1D53B, 0x1D53E),
    (0x1D540, 0x1D544), (0x1D546, 0x1D546), (0x1D54A, 0x1D550), (0x1D552, 0x1D6A5),
    (0x1D6A8, 0x1D6C0), (0x1D6C2, 0x1D6DA), (0x1D6DC, 0x1D6FA), (0x1D6FC, 0x1D714),
    (0x1D716, 0x1D734), (0x1D736, 0x1D74E), (0x1D750, 0x1D76E), (0x1D770, 0x1D788),
    (0x1D78A, 0x1D7A8), (0x1D7AA, 0x1D7C2), (0x1D7C4, 0x1D7CB), (0x1DF00, 0x1DF1E),
    (0x1DF25, 0x1DF2A), (0x1E030, 0x1E06D), (0x1E100, 0x1E12C), (0x1E137, 0x1E13D),
    (0x1E14E, 0x1E14E), (0x1E290, 0x1E2AD), (0x1E2C0, 0x1E2EB), (0x1E4D0, 0x1E4EB),
    (0x1E5D0, 0x1E5ED), (0x1E5F0, 0x1E5F0), (0x1E7E0, 0x1E7E6), (0x1E7E8, 0x1E7EB),
    (0x1E7ED, 0x1E7EE), (0x1E7F0, 0x1E7FE), (0x1E800, 0x1E8C4), (0x1E900, 0x1E943),
    (0x1E94B, 0x1E94B), (0x1EE00, 0x1EE03), (0x1EE05, 0x1EE1F), (0x1EE21, 0x1EE22),
    (0x1EE24, 0x1EE24), (0x1EE27, 0x1EE27), (0x1EE29, 0x1EE32), (0x1EE34, 0x1EE37),
    (0x1EE39, 0x1EE39), (0x1EE3B, 0x1EE3B), (0x1EE42, 0x1EE42), (0x1EE47, 0x1EE47),
    (0x1EE49, 0x1EE49), (0x1EE4B, 0x1EE4B), (0x1EE4D, 0x1EE4F), (0x1EE51, 0x1EE52),
    (0x1EE54, 0x1EE54), (0x1EE57, 0x1EE57), (0x1EE59, 0x1EE59), (0x1EE5B, 0x1EE5B),
    (0x1EE5D, 0x1EE5D), (0x1EE5F, 0x1EE5F), (0x1EE61, 0x1EE62), (0x1EE64, 0x1EE64),
    (0x1EE67, 0x1EE6A), (0x1EE6C, 0x1EE72), (0x1EE74, 0x1EE77), (0x1EE79, 0x1EE7C),
    (0x1EE7E, 0x1EE7E), (0x1EE80, 0x1EE89), (0x1EE8B, 0x1EE9B), (0x1EEA1, 0x1EEA3),
    (0x1EEA5, 0x1EEA9), (0x1EEAB, 0x1EEBB), (0x20000, 0x2A6DF), (0x2A700, 0x2B739),
    (0x2B740, 0x2B81D), (0x2B820, 0x2CEA1), (0x2CEB0, 0x2EBE0), (0x2EBF0, 0x2EE5D),
    (0x2F800, 0x2FA1D), (0x30000, 0x3134A), (0x31350, 0x323AF),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn split(s: &str) -> Vec<&str> {
        let mut out = Vec::new();
        split_gpt2(s, &mut |w| out.push(w));
        out
    }

    #[test]
    fn gpt2_pattern_cases() {
        assert_eq!(split("a   b"), ["a", "  ", " b"]);
        assert_eq!(split("Hello world!"), ["Hello", " world", "!"]);
        assert_eq!(
            split("don't we'll I'm"),
            ["don", "'t", " we", "'ll", " I", "'m"]
        );
        assert_eq!(split("''s"), ["''", "s"]);
        assert_eq!(split(" 's"), [" '", "s"]);
        assert_eq!(split("\n\nword"), ["\n", "\n", "word"]);
        assert_eq!(split("a \n"), ["a", " \n"]);
        assert_eq!(split("x\t\ty"), ["x", "\t", "\t", "y"]);
        assert_eq!(split("  !?"), [" ", " !?"]);
        assert_eq!(split("abc123 456"), ["abc", "123", " 456"]);
        assert_eq!(split("café 中文"), ["café", " 中文"]);
        assert_eq!(split("  "), ["  "]);
        assert_eq!(split(""), Vec::<&str>::new());
    }

    #[test]
    fn letter_table_differs_from_alphabetic() {
        assert!(is_letter('é') && is_letter('中') && is_letter('ß'));
        // Devanagari vowel sign AA: Alphabetic, but a combining mark, not \p{L}.
        assert!('\u{93e}'.is_alphabetic() && !is_letter('\u{93e}'));
        // Roman numeral twelve: Alphabetic and \p{Nl}, not \p{L}.
        assert!('Ⅻ'.is_alphabetic() && !is_letter('Ⅻ'));
        assert!(!is_letter('😀') && !is_letter('\u{301}'));
    }

    #[test]
    fn byte_map_round_trips() {
        assert_eq!(BYTE_CHARS[b' ' as usize], 'Ġ');
        assert_eq!(BYTE_CHARS[b'\n' as usize], 'Ċ');
        assert_eq!(BYTE_CHARS[b'a' as usize], 'a');
        for b in 0..=255u8 {
            assert_eq!(char_to_byte(BYTE_CHARS[b as usize]), Some(b));
        }
        assert_eq!(char_to_byte(' '), None);
    }
}
