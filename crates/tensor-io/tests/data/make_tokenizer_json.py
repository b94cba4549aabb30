#!/usr/bin/env python3
"""Build the reference data of the tokenizer parity tests from the SmolLM2 GGUF.

Needs `pip install gguf tokenizers`. Sub-commands:

  make GGUF OUT.json
      Read `tokenizer.ggml.tokens`, `tokenizer.ggml.token_type` and `tokenizer.ggml.merges`
      from GGUF and write a Hugging Face `tokenizer.json` with SmolLM2's configuration:
      byte-level BPE, pre-tokenizer Sequence[Digits(individual_digits=True),
      ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)], ByteLevel decoder
      and post-processor, and the control tokens (token_type 3) as special added tokens.

  reference TOKENIZER.json WIKI.TEST.RAW
      Print the number of ids and the first and last 16 ids of the WikiText-2 test text under
      the evaluation protocol (rows keep their "\\n", a row " \\n" becomes "", rows joined
      with "\\n\\n", no special tokens added).

  letter-table
      Print the Rust table `LETTER_RANGES` of `src/tokenizer.rs`: the non-ASCII code points
      that the `tokenizers` library's ByteLevel regex matches with `\\p{L}` (probed one code
      point at a time, so the table follows the library's own Unicode version).

  check-export REFERENCE.json EXPORTED.json WIKI.TEST.RAW
      Dev-time check that a `tokenizer.json` written by `Tokenizer::to_hf_json` loads in the
      `tokenizers` library and encodes some samples and the WikiText-2 test text exactly as
      the reference does.
"""
import sys


def wikitext_protocol_text(path):
    with open(path, encoding="utf-8", newline="") as f:
        text = f.read()
    # Rows end at "\n" only (not at the other separators of str.splitlines).
    rows = [row + "\n" for row in text.split("\n")]
    rows[-1] = rows[-1][:-1]
    if rows[-1] == "":
        rows.pop()
    rows = ["" if row == " \n" else row for row in rows]
    return "\n\n".join(rows)


def make(gguf_path, out_path):
    from gguf import GGUFReader
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

    reader = GGUFReader(gguf_path)

    def strings(key):
        field = reader.fields[key]
        return [bytes(field.parts[i]).decode("utf-8") for i in field.data]

    tokens = strings("tokenizer.ggml.tokens")
    merges = strings("tokenizer.ggml.merges")
    field = reader.fields["tokenizer.ggml.token_type"]
    types = [int(field.parts[i][0]) for i in field.data]
    assert len(types) == len(tokens)

    vocab = {token: i for i, token in enumerate(tokens)}
    assert len(vocab) == len(tokens), "duplicate tokens"
    pairs = [tuple(m.split(" ", 1)) for m in merges]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=pairs, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    specials = [tokens[i] for i, t in enumerate(types) if t == 3]
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    for s in specials:
        assert tok.token_to_id(s) == vocab[s]
    tok.save(out_path, pretty=False)
    print(f"{out_path}: {len(tokens)} tokens, {len(merges)} merges, {len(specials)} special tokens")


def reference(tokenizer_path, wiki_path):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(tokenizer_path)
    ids = tok.encode(wikitext_protocol_text(wiki_path), add_special_tokens=False).ids
    print("count", len(ids))
    print("first16", ids[:16])
    print("last16", ids[-16:])
    print(f"fnv1a 0x{fnv1a_ids(ids):016x}")


def fnv1a_ids(ids):
    """FNV-1a over the ids (one step per id, not per byte), as the parity test computes it."""
    h = 0xCBF29CE484222325
    for i in ids:
        h = ((h ^ i) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


SAMPLES = [
    "Hello world",
    "a   b",
    "don't stop, we'll see; I'm sure he'd've",
    "12345 + 0.5 = 12345.5",
    "naïve café 中文字符 😀🎉 Ⅻ २०२४ हिन्दी",
    "<|im_start|>user\nHi there!<|im_end|>\n<|im_start|>assistant\n",
    "\n\n\t  tabs\t\tand   spaces   \n",
    "",
]


def check_export(reference_path, exported_path, wiki_path):
    from tokenizers import Tokenizer

    ref = Tokenizer.from_file(reference_path)
    exp = Tokenizer.from_file(exported_path)
    for s in SAMPLES + [wikitext_protocol_text(wiki_path)]:
        a = ref.encode(s, add_special_tokens=False).ids
        b = exp.encode(s, add_special_tokens=False).ids
        assert a == b, f"mismatch on {s[:40]!r}"
        assert exp.decode(b, skip_special_tokens=False) == s
    assert ref.get_vocab_size() == exp.get_vocab_size()
    print(f"ok: {exported_path} loads and encodes {len(SAMPLES) + 1} texts like {reference_path}")


def letter_table():
    from tokenizers import pre_tokenizers

    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    ranges = []
    for cp in range(0x80, 0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        # "a" + c is one pre-token exactly when c continues the `\p{L}+` run.
        if len(byte_level.pre_tokenize_str("a" + chr(cp))) == 1:
            if ranges and ranges[-1][1] == cp - 1:
                ranges[-1][1] = cp
            else:
                ranges.append([cp, cp])
    items = [f"(0x{a:04X}, 0x{b:04X})," for a, b in ranges]
    print("#[rustfmt::skip]")
    print(f"const LETTER_RANGES: [(u32, u32); {len(ranges)}] = [")
    for k in range(0, len(items), 4):
        print("    " + " ".join(items[k : k + 4]))
    print("];")


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    commands = {
        "make": make,
        "reference": reference,
        "letter-table": letter_table,
        "check-export": check_export,
    }
    commands[cmd](*args)
