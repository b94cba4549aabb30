//! Crafted and damaged GGUF files: every one must give an `Err` of the right variant, never a
//! panic, an out-of-bounds read or a huge allocation.

use llm_compress_tensor_io::dequant::GgmlType;
use llm_compress_tensor_io::gguf::{GgufFile, GgufWriter, MetadataValue as V};
use llm_compress_tensor_io::IoError;
use std::path::Path;

/// A GGUF file written byte by byte.
#[derive(Clone, Default)]
struct Raw(Vec<u8>);

impl Raw {
    fn header(version: u32, n_tensors: u64, n_kv: u64) -> Raw {
        let mut r = Raw::default();
        r.0.extend(b"GGUF");
        r.u32(version).u64(n_tensors).u64(n_kv);
        r
    }
    fn u8(&mut self, x: u8) -> &mut Self {
        self.0.push(x);
        self
    }
    fn u32(&mut self, x: u32) -> &mut Self {
        self.0.extend(x.to_le_bytes());
        self
    }
    fn u64(&mut self, x: u64) -> &mut Self {
        self.0.extend(x.to_le_bytes());
        self
    }
    fn str(&mut self, s: &str) -> &mut Self {
        self.u64(s.len() as u64);
        self.0.extend(s.as_bytes());
        self
    }
    /// A tensor info record.
    fn tensor(&mut self, name: &str, dims: &[u64], ty: u32, offset: u64) -> &mut Self {
        self.str(name).u32(dims.len() as u32);
        for &d in dims {
            self.u64(d);
        }
        self.u32(ty).u64(offset)
    }
    fn pad(&mut self, alignment: usize) -> &mut Self {
        while self.0.len() % alignment != 0 {
            self.0.push(0);
        }
        self
    }
}

/// A valid file: one u32 key, tensor "w" F32 [4] = 1, 2, 3, 4 (no padding after the data).
fn valid() -> Raw {
    let mut r = Raw::header(3, 1, 1);
    r.str("general.architecture").u32(8).str("llama");
    r.tensor("w", &[4], 0, 0).pad(32);
    for x in [1.0f32, 2.0, 3.0, 4.0] {
        r.0.extend(x.to_le_bytes());
    }
    r
}

fn open(bytes: &[u8]) -> Result<GgufFile, IoError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.gguf");
    std::fs::write(&path, bytes).unwrap();
    GgufFile::open(&path)
}

fn malformed(bytes: &[u8], needle: &str) {
    match open(bytes) {
        Err(IoError::Malformed { detail, format, .. }) => {
            assert_eq!(format, "gguf");
            assert!(
                detail.contains(needle),
                "`{detail}` does not mention `{needle}`"
            );
        }
        Err(e) => panic!("expected Malformed ({needle}), got {e}"),
        Ok(_) => panic!("expected Malformed ({needle}), got Ok"),
    }
}

fn unsupported(bytes: &[u8], needle: &str) {
    match open(bytes) {
        Err(e @ IoError::Unsupported { .. }) => {
            assert!(
                e.to_string().contains(needle),
                "`{e}` does not mention `{needle}`"
            )
        }
        Err(e) => panic!("expected Unsupported ({needle}), got {e}"),
        Ok(_) => panic!("expected Unsupported ({needle}), got Ok"),
    }
}

#[test]
fn the_valid_baseline_opens() {
    let f = open(&valid().0).unwrap();
    assert_eq!(
        f.tensor_f32("w").unwrap(),
        (vec![4], vec![1.0, 2.0, 3.0, 4.0])
    );
}

#[test]
fn truncated_header_and_every_prefix() {
    malformed(b"", "truncated");
    malformed(b"GGUF\x03\x00\x00\x00", "truncated");
    let full = valid().0;
    malformed(&full[..20], "truncated");
    // Every strict prefix of a valid file is an error, whatever the cut.
    for len in 0..full.len() {
        match open(&full[..len]) {
            Err(IoError::Malformed { .. }) => {}
            other => panic!("prefix of {len} bytes: expected Malformed, got {other:?}"),
        }
    }
}

#[test]
fn bad_magic() {
    let mut b = valid().0;
    b[0] = b'X';
    malformed(&b, "magic");
}

#[test]
fn tensor_offset_past_end_of_file() {
    let mut r = Raw::header(3, 1, 0);
    r.tensor("w", &[4], 0, 1 << 40).pad(32);
    r.0.extend([0u8; 16]);
    malformed(&r.0, "outside the file");
    // Offset inside the file but the data running past its end.
    let mut r = Raw::header(3, 1, 0);
    r.tensor("w", &[8], 0, 0).pad(32);
    r.0.extend([0u8; 16]);
    malformed(&r.0, "outside the file");
    // Offset + size overflowing u64.
    let mut r = Raw::header(3, 1, 0);
    r.tensor("w", &[4], 0, u64::MAX - 31).pad(32);
    r.0.extend([0u8; 16]);
    malformed(&r.0, "outside the file");
}

#[test]
fn huge_string_lengths() {
    // Key length.
    let mut r = Raw::header(3, 0, 1);
    r.u64(u64::MAX).0.extend([b'a'; 64]);
    malformed(&r.0, "string length");
    // String value length.
    let mut r = Raw::header(3, 0, 1);
    r.str("k").u32(8).u64(1 << 50).0.extend([b'a'; 64]);
    malformed(&r.0, "string length");
    // Tensor name length.
    let mut r = Raw::header(3, 1, 0);
    r.u64(1 << 40).0.extend([b'a'; 64]);
    malformed(&r.0, "string length");
}

#[test]
fn huge_array_lengths() {
    for (elem, n) in [(0u32, 1u64 << 40), (8, 1 << 30), (9, u64::MAX), (12, 100)] {
        let mut r = Raw::header(3, 0, 1);
        r.str("k").u32(9).u32(elem).u64(n).0.extend([0u8; 64]);
        malformed(&r.0, "cannot fit");
    }
}

#[test]
fn huge_counts() {
    let mut r = Raw::header(3, 0, u64::MAX);
    r.0.extend([0u8; 64]);
    malformed(&r.0, "key/value pairs cannot fit");
    let mut r = Raw::header(3, 1 << 40, 0);
    r.0.extend([0u8; 64]);
    malformed(&r.0, "tensor infos cannot fit");
}

#[test]
fn dims_product_overflow() {
    let mut r = Raw::header(3, 1, 0);
    r.tensor("w", &[1 << 32, 1 << 32, 1 << 32], 0, 0).pad(32);
    malformed(&r.0, "overflows");
    // Fits in u64 but not in i64 (ggml's limit).
    let mut r = Raw::header(3, 1, 0);
    r.tensor("w", &[1 << 32, 1 << 31], 0, 0).pad(32);
    malformed(&r.0, "overflows");
    // Element count fine, byte size overflowing.
    let mut r = Raw::header(3, 1, 0);
    r.tensor("w", &[1 << 31, 1 << 31], 0, 0).pad(32);
    assert!(matches!(open(&r.0), Err(IoError::Malformed { .. })));
}

#[test]
fn too_many_dims() {
    let mut r = Raw::header(3, 1, 0);
    r.tensor("w", &[1, 1, 1, 1, 1], 0, 0).pad(32);
    r.0.extend([0u8; 4]);
    malformed(&r.0, "dimensions");
    let mut r = Raw::header(3, 1, 0);
    r.str("w").u32(u32::MAX).0.extend([0u8; 64]);
    malformed(&r.0, "dimensions");
}

#[test]
fn unknown_ggml_type() {
    for id in [4u32, 31, 99, u32::MAX] {
        let mut r = Raw::header(3, 1, 0);
        r.tensor("w", &[32], id, 0).pad(32);
        r.0.extend([0u8; 256]);
        unsupported(&r.0, "type id");
    }
}

#[test]
fn known_type_without_dequantizer_opens_but_does_not_decode() {
    let mut r = Raw::header(3, 1, 0);
    r.tensor("w", &[256], GgmlType::Q2_K.id(), 0).pad(32);
    r.0.extend([0u8; 84]);
    let f = open(&r.0).unwrap();
    assert_eq!(f.tensor_info("w").unwrap().ggml_type, GgmlType::Q2_K);
    let e = f.tensor_f32("w").unwrap_err();
    assert!(matches!(e, IoError::Unsupported { .. }), "{e}");
    assert!(e.to_string().contains("Q2_K"), "{e}");
}

#[test]
fn row_not_whole_blocks() {
    let mut r = Raw::header(3, 1, 0);
    r.tensor("w", &[16, 2], GgmlType::Q4_0.id(), 0).pad(32);
    r.0.extend([0u8; 64]);
    malformed(&r.0, "block size");
}

#[test]
fn misaligned_offset_and_bad_alignment() {
    let mut r = Raw::header(3, 1, 0);
    r.tensor("w", &[1], 0, 4).pad(32);
    r.0.extend([0u8; 64]);
    malformed(&r.0, "alignment");

    let mut r = Raw::header(3, 0, 1);
    r.str("general.alignment").u32(4).u32(3);
    match open(&r.0) {
        Err(IoError::InvalidField { field, .. }) => assert_eq!(field, "general.alignment"),
        other => panic!("expected InvalidField, got {other:?}"),
    }
}

#[test]
fn bad_metadata_values() {
    // Unknown value type.
    let mut r = Raw::header(3, 0, 1);
    r.str("k").u32(13).u64(0);
    malformed(&r.0, "unknown metadata value type");
    // Unknown array element type.
    let mut r = Raw::header(3, 0, 1);
    r.str("k").u32(9).u32(77).u64(0);
    malformed(&r.0, "unknown array element type");
    // Bool that is neither 0 nor 1.
    let mut r = Raw::header(3, 0, 1);
    r.str("k").u32(7).u8(2);
    malformed(&r.0, "bool");
    // Invalid UTF-8.
    let mut r = Raw::header(3, 0, 1);
    r.str("k").u32(8).u64(2).u8(0xC3).u8(0x28);
    malformed(&r.0, "UTF-8");
    // Duplicate key.
    let mut r = Raw::header(3, 0, 2);
    r.str("k").u32(0).u8(1).str("k").u32(0).u8(2);
    malformed(&r.0, "duplicate");
}

#[test]
fn duplicate_tensor_name() {
    let mut r = Raw::header(3, 2, 0);
    r.tensor("w", &[1], 0, 0).tensor("w", &[1], 0, 32).pad(32);
    r.0.extend([0u8; 64]);
    malformed(&r.0, "duplicate");
}

#[test]
fn overlapping_tensors() {
    // "b" (16 bytes at 32) starts inside "a" (64 bytes at 0).
    let mut r = Raw::header(3, 2, 0);
    r.tensor("a", &[16], 0, 0).tensor("b", &[4], 0, 32).pad(32);
    r.0.extend([0u8; 64]);
    malformed(&r.0, "overlap");
}

#[test]
fn deeply_nested_arrays_do_not_overflow_the_stack() {
    let depth = 100_000;
    let mut r = Raw::header(3, 0, 1);
    r.str("k").u32(9);
    for _ in 0..depth {
        r.u32(9).u64(1);
    }
    r.u32(0).u64(0);
    match open(&r.0) {
        Err(IoError::Unsupported { detail, .. }) => assert!(detail.contains("nested"), "{detail}"),
        other => panic!("expected Unsupported, got {other:?}"),
    }
}

#[test]
fn big_endian_and_old_versions() {
    let mut b = valid().0;
    b[4..8].copy_from_slice(&3u32.to_be_bytes());
    unsupported(&b, "big-endian");
    b[4..8].copy_from_slice(&1u32.to_le_bytes());
    unsupported(&b, "version 1");
    b[4..8].copy_from_slice(&0u32.to_le_bytes());
    unsupported(&b, "version 0");
}

/// Deterministic mutation fuzzing of a richer valid file: whatever the damage, `open` and
/// decoding every tensor return (Ok or Err) without panicking.
#[test]
fn random_corruption_never_panics() {
    let mut w = GgufWriter::new();
    w.add_metadata("general.architecture", "llama").unwrap();
    w.add_metadata("a.strings", V::from(vec!["x", "yy", "zzz"]))
        .unwrap();
    w.add_metadata(
        "a.nested",
        V::Array(vec![V::from(vec![1u16, 2]), V::from(vec![-1.5f64])]),
    )
    .unwrap();
    w.add_metadata("b", true).unwrap();
    w.add_tensor("f32", &[2, 4], GgmlType::F32, &[1.0; 8])
        .unwrap();
    w.add_tensor("f16", &[4], GgmlType::F16, &[2.0; 4]).unwrap();
    let mut q = half::f16::from_f32(0.5).to_bits().to_le_bytes().to_vec();
    q.extend([0x37u8; 16]);
    w.add_tensor_raw("q4", &[32], GgmlType::Q4_0, q).unwrap();
    let base = w.to_bytes();
    let f = open(&base).unwrap();
    assert_eq!(f.tensors().len(), 3);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fuzz.gguf");
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let (mut ok, mut err) = (0, 0);
    for _ in 0..3000 {
        let mut b = base.clone();
        let n_mut = 1 + next() % 4;
        for _ in 0..n_mut {
            let at = (next() % b.len() as u64) as usize;
            match next() % 3 {
                0 => b[at] = next() as u8,
                1 => b[at] ^= 1 << (next() % 8),
                _ => b[at] = [0x00, 0xFF, 0x7F, 0x80][(next() % 4) as usize],
            }
        }
        if next() % 8 == 0 {
            let cut = (next() % b.len() as u64) as usize;
            b.truncate(cut);
        }
        std::fs::write(&path, &b).unwrap();
        match GgufFile::open(Path::new(&path)) {
            Ok(f) => {
                ok += 1;
                for t in f.tensors() {
                    let _ = f.tensor_f32(&t.name);
                }
                let _ = f.model_config();
            }
            Err(_) => err += 1,
        }
    }
    assert!(ok > 0 && err > 0, "ok {ok}, err {err}");
}
