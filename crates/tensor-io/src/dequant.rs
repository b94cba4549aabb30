//! ggml tensor types and their dequantizers.
//!
//! The block layouts are those of llama.cpp's `ggml/src/ggml-common.h` and the dequantizers
//! reproduce `dequantize_row_*` of `ggml/src/ggml-quants.c` operation for operation (same
//! products in the same order, no fused multiply-add), so that the values agree with ggml's
//! reference path and with `gguf.quants.dequantize` of the Python `gguf` package.
//!
//! | type  | elements / block | bytes / block | layout (little-endian)                                   |
//! |-------|------------------|---------------|----------------------------------------------------------|
//! | F32   | 1                | 4             | `f32`                                                    |
//! | F16   | 1                | 2             | IEEE half                                                |
//! | BF16  | 1                | 2             | upper 16 bits of an `f32`                                |
//! | Q4_0  | 32               | 18            | `d: f16, qs[16]` ; `y = (q - 8) * d`                     |
//! | Q4_1  | 32               | 20            | `d: f16, m: f16, qs[16]` ; `y = q * d + m`               |
//! | Q5_0  | 32               | 22            | `d: f16, qh[4], qs[16]` ; `y = (q - 16) * d`             |
//! | Q5_1  | 32               | 24            | `d: f16, m: f16, qh[4], qs[16]` ; `y = q * d + m`        |
//! | Q8_0  | 32               | 34            | `d: f16, qs: i8[32]` ; `y = q * d`                       |
//! | Q4_K  | 256              | 144           | `d, dmin: f16, scales[12], qs[128]`                      |
//! | Q5_K  | 256              | 176           | `d, dmin: f16, scales[12], qh[32], qs[128]`              |
//! | Q6_K  | 256              | 210           | `ql[128], qh[64], scales: i8[16], d: f16`                |
//!
//! In the 32-element types, byte `j` of `qs` holds element `j` in its low nibble and element
//! `j + 16` in its high nibble; for Q5_0/Q5_1 bit `j` of the little-endian `u32` `qh` is the fifth
//! bit of element `j`. The K-quants split a 256-element super-block into sub-blocks with 6-bit
//! (Q4_K, Q5_K: 8 scales and 8 mins packed into 12 bytes, see [`get_scale_min_k4`]) or 8-bit
//! (Q6_K: 16 signed) scales.
//!
//! Every other ggml type is known (id, block size, type size, so that a GGUF file containing it
//! can still be listed) but [`dequantize`] refuses it with an explicit message.

use half::f16;
use rayon::prelude::*;
use std::fmt;

/// Elements per super-block of the K-quants.
pub const QK_K: usize = 256;

/// A ggml tensor type, with its numeric id as stored in GGUF files.
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GgmlType {
    /// 32-bit float (id 0, 4 bytes per element).
    F32,
    /// IEEE half-precision float (id 1, 2 bytes per element).
    F16,
    /// 4-bit, one f16 scale per block (id 2, 32 elements in 18 bytes per block).
    Q4_0,
    /// 4-bit, an f16 scale and minimum per block (id 3, 32 elements in 20 bytes per block).
    Q4_1,
    /// 5-bit, one f16 scale per block (id 6, 32 elements in 22 bytes per block).
    Q5_0,
    /// 5-bit, an f16 scale and minimum per block (id 7, 32 elements in 24 bytes per block).
    Q5_1,
    /// 8-bit, one f16 scale per block (id 8, 32 elements in 34 bytes per block).
    Q8_0,
    /// 8-bit with block sums (ggml's matmul intermediate; id 9, 32 elements in 36 bytes per block;
    /// listed, not dequantized).
    Q8_1,
    /// 2-bit K-quant (id 10, 256 elements in 84 bytes per block; listed, not dequantized).
    Q2_K,
    /// 3-bit K-quant (id 11, 256 elements in 110 bytes per block; listed, not dequantized).
    Q3_K,
    /// 4-bit K-quant (6-bit sub-block scales and mins; id 12, 256 elements in 144 bytes per
    /// block).
    Q4_K,
    /// 5-bit K-quant (6-bit sub-block scales and mins; id 13, 256 elements in 176 bytes per
    /// block).
    Q5_K,
    /// 6-bit K-quant (8-bit sub-block scales; id 14, 256 elements in 210 bytes per block).
    Q6_K,
    /// 8-bit K-quant (ggml's matmul intermediate; id 15, 256 elements in 292 bytes per block;
    /// listed, not dequantized).
    Q8_K,
    /// 2.06-bit i-quant (id 16, 256 elements in 66 bytes per block; listed, not dequantized).
    IQ2_XXS,
    /// 2.31-bit i-quant (id 17, 256 elements in 74 bytes per block; listed, not dequantized).
    IQ2_XS,
    /// 3.06-bit i-quant (id 18, 256 elements in 98 bytes per block; listed, not dequantized).
    IQ3_XXS,
    /// 1.56-bit i-quant (id 19, 256 elements in 50 bytes per block; listed, not dequantized).
    IQ1_S,
    /// 4-bit non-linear i-quant (id 20, 32 elements in 18 bytes per block; listed, not
    /// dequantized).
    IQ4_NL,
    /// 3.44-bit i-quant (id 21, 256 elements in 110 bytes per block; listed, not dequantized).
    IQ3_S,
    /// 2.56-bit i-quant (id 22, 256 elements in 82 bytes per block; listed, not dequantized).
    IQ2_S,
    /// 4.25-bit non-linear i-quant (id 23, 256 elements in 136 bytes per block; listed, not
    /// dequantized).
    IQ4_XS,
    /// 8-bit integer (id 24, 1 byte per element; listed, not dequantized).
    I8,
    /// 16-bit integer (id 25, 2 bytes per element; listed, not dequantized).
    I16,
    /// 32-bit integer (id 26, 4 bytes per element; listed, not dequantized).
    I32,
    /// 64-bit integer (id 27, 8 bytes per element; listed, not dequantized).
    I64,
    /// 64-bit float (id 28, 8 bytes per element; listed, not dequantized).
    F64,
    /// 1.75-bit i-quant (id 29, 256 elements in 56 bytes per block; listed, not dequantized).
    IQ1_M,
    /// bfloat16 (upper 16 bits of an f32; id 30, 2 bytes per element).
    BF16,
    /// Ternary quant (1.69 bits; id 34, 256 elements in 54 bytes per block; listed, not
    /// dequantized).
    TQ1_0,
    /// Ternary quant (2.06 bits; id 35, 256 elements in 66 bytes per block; listed, not
    /// dequantized).
    TQ2_0,
    /// 4-bit microscaling float (MXFP4; id 39, 32 elements in 17 bytes per block; listed, not
    /// dequantized).
    MXFP4,
}

/// (type, ggml id, name, elements per block, bytes per block), from `ggml.c`'s `type_traits`.
const TYPES: &[(GgmlType, u32, &str, usize, usize)] = &[
    (GgmlType::F32, 0, "F32", 1, 4),
    (GgmlType::F16, 1, "F16", 1, 2),
    (GgmlType::Q4_0, 2, "Q4_0", 32, 18),
    (GgmlType::Q4_1, 3, "Q4_1", 32, 20),
    (GgmlType::Q5_0, 6, "Q5_0", 32, 22),
    (GgmlType::Q5_1, 7, "Q5_1", 32, 24),
    (GgmlType::Q8_0, 8, "Q8_0", 32, 34),
    (GgmlType::Q8_1, 9, "Q8_1", 32, 36),
    (GgmlType::Q2_K, 10, "Q2_K", 256, 84),
    (GgmlType::Q3_K, 11, "Q3_K", 256, 110),
    (GgmlType::Q4_K, 12, "Q4_K", 256, 144),
    (GgmlType::Q5_K, 13, "Q5_K", 256, 176),
    (GgmlType::Q6_K, 14, "Q6_K", 256, 210),
    (GgmlType::Q8_K, 15, "Q8_K", 256, 292),
    (GgmlType::IQ2_XXS, 16, "IQ2_XXS", 256, 66),
    (GgmlType::IQ2_XS, 17, "IQ2_XS", 256, 74),
    (GgmlType::IQ3_XXS, 18, "IQ3_XXS", 256, 98),
    (GgmlType::IQ1_S, 19, "IQ1_S", 256, 50),
    (GgmlType::IQ4_NL, 20, "IQ4_NL", 32, 18),
    (GgmlType::IQ3_S, 21, "IQ3_S", 256, 110),
    (GgmlType::IQ2_S, 22, "IQ2_S", 256, 82),
    (GgmlType::IQ4_XS, 23, "IQ4_XS", 256, 136),
    (GgmlType::I8, 24, "I8", 1, 1),
    (GgmlType::I16, 25, "I16", 1, 2),
    (GgmlType::I32, 26, "I32", 1, 4),
    (GgmlType::I64, 27, "I64", 1, 8),
    (GgmlType::F64, 28, "F64", 1, 8),
    (GgmlType::IQ1_M, 29, "IQ1_M", 256, 56),
    (GgmlType::BF16, 30, "BF16", 1, 2),
    (GgmlType::TQ1_0, 34, "TQ1_0", 256, 54),
    (GgmlType::TQ2_0, 35, "TQ2_0", 256, 66),
    (GgmlType::MXFP4, 39, "MXFP4", 32, 17),
];

impl GgmlType {
    fn entry(self) -> (GgmlType, u32, &'static str, usize, usize) {
        // Every variant has exactly one row in TYPES (checked by a unit test); the fallback is
        // never taken.
        TYPES
            .iter()
            .copied()
            .find(|e| e.0 == self)
            .unwrap_or((self, u32::MAX, "?", 1, 0))
    }

    /// The type with ggml id `id`, or `None` for an id this crate does not know (including the
    /// ids ggml has retired: 4, 5, 31-33, 36-38).
    pub fn from_id(id: u32) -> Option<GgmlType> {
        TYPES.iter().find(|e| e.1 == id).map(|e| e.0)
    }

    /// The ggml id (`enum ggml_type`).
    pub fn id(self) -> u32 {
        self.entry().1
    }

    /// The ggml name (`"Q4_K"`, `"BF16"`, ...).
    pub fn name(self) -> &'static str {
        self.entry().2
    }

    /// Elements per block (1 for the plain types).
    pub fn block_size(self) -> usize {
        self.entry().3
    }

    /// Bytes per block.
    pub fn type_size(self) -> usize {
        self.entry().4
    }

    /// Whether [`dequantize`] supports this type.
    pub fn can_dequantize(self) -> bool {
        use GgmlType::*;
        matches!(
            self,
            F32 | F16 | BF16 | Q8_0 | Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q4_K | Q5_K | Q6_K
        )
    }

    /// Every type this crate knows, in id order.
    pub fn all() -> impl Iterator<Item = GgmlType> {
        TYPES.iter().map(|e| e.0)
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Bytes taken by `n_elements` elements of type `ty`; `None` if `n_elements` is not a multiple
/// of the block size or the size overflows `usize`.
pub fn byte_size(ty: GgmlType, n_elements: usize) -> Option<usize> {
    let bs = ty.block_size();
    if bs == 0 || n_elements % bs != 0 {
        return None;
    }
    (n_elements / bs).checked_mul(ty.type_size())
}

/// Decode an IEEE half from two little-endian bytes (exact, like `GGML_FP16_TO_FP32`).
#[inline(always)]
fn f16_le(lo: u8, hi: u8) -> f32 {
    f16::from_bits(u16::from_le_bytes([lo, hi])).to_f32()
}

/// Unpack the 6-bit scale and min of sub-block `j` (0..8) from the 12 packed bytes `q` of a
/// Q4_K/Q5_K super-block (`get_scale_min_k4` in ggml-quants.c):
///
/// - `j < 4`: scale = `q[j] & 63`, min = `q[j + 4] & 63`;
/// - `j >= 4`: scale = `(q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4)`,
///   min = `(q[j + 4] >> 4) | ((q[j] >> 6) << 4)`.
#[inline(always)]
pub fn get_scale_min_k4(j: usize, q: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

#[inline(always)]
fn scales12(b: &[u8], at: usize) -> [u8; 12] {
    let mut s = [0u8; 12];
    s.copy_from_slice(&b[at..at + 12]);
    s
}

fn block_q4_0(b: &[u8; 18], y: &mut [f32; 32]) {
    let d = f16_le(b[0], b[1]);
    let qs = &b[2..18];
    for j in 0..16 {
        let x0 = (qs[j] & 0x0F) as i32 - 8;
        let x1 = (qs[j] >> 4) as i32 - 8;
        y[j] = x0 as f32 * d;
        y[j + 16] = x1 as f32 * d;
    }
}

fn block_q4_1(b: &[u8; 20], y: &mut [f32; 32]) {
    let d = f16_le(b[0], b[1]);
    let m = f16_le(b[2], b[3]);
    let qs = &b[4..20];
    for j in 0..16 {
        let x0 = (qs[j] & 0x0F) as f32;
        let x1 = (qs[j] >> 4) as f32;
        y[j] = x0 * d + m;
        y[j + 16] = x1 * d + m;
    }
}

fn block_q5_0(b: &[u8; 22], y: &mut [f32; 32]) {
    let d = f16_le(b[0], b[1]);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    let qs = &b[6..22];
    for j in 0..16 {
        let xh_0 = (((qh >> j) << 4) & 0x10) as u8;
        let xh_1 = ((qh >> (j + 12)) & 0x10) as u8;
        let x0 = ((qs[j] & 0x0F) | xh_0) as i32 - 16;
        let x1 = ((qs[j] >> 4) | xh_1) as i32 - 16;
        y[j] = x0 as f32 * d;
        y[j + 16] = x1 as f32 * d;
    }
}

fn block_q5_1(b: &[u8; 24], y: &mut [f32; 32]) {
    let d = f16_le(b[0], b[1]);
    let m = f16_le(b[2], b[3]);
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    let qs = &b[8..24];
    for j in 0..16 {
        let xh_0 = (((qh >> j) << 4) & 0x10) as u8;
        let xh_1 = ((qh >> (j + 12)) & 0x10) as u8;
        let x0 = ((qs[j] & 0x0F) | xh_0) as f32;
        let x1 = ((qs[j] >> 4) | xh_1) as f32;
        y[j] = x0 * d + m;
        y[j + 16] = x1 * d + m;
    }
}

fn block_q8_0(b: &[u8; 34], y: &mut [f32; 32]) {
    let d = f16_le(b[0], b[1]);
    for j in 0..32 {
        y[j] = (b[2 + j] as i8) as f32 * d;
    }
}

fn block_q4_k(b: &[u8; 144], y: &mut [f32; 256]) {
    let d = f16_le(b[0], b[1]);
    let min = f16_le(b[2], b[3]);
    let scales = scales12(b, 4);
    let qs = &b[16..144];
    for (n, (q, y)) in qs.chunks_exact(32).zip(y.chunks_exact_mut(64)).enumerate() {
        let (sc, m) = get_scale_min_k4(2 * n, &scales);
        let (d1, m1) = (d * sc as f32, min * m as f32);
        let (sc, m) = get_scale_min_k4(2 * n + 1, &scales);
        let (d2, m2) = (d * sc as f32, min * m as f32);
        let (lo, hi) = y.split_at_mut(32);
        for l in 0..32 {
            lo[l] = d1 * (q[l] & 0xF) as f32 - m1;
            hi[l] = d2 * (q[l] >> 4) as f32 - m2;
        }
    }
}

fn block_q5_k(b: &[u8; 176], y: &mut [f32; 256]) {
    let d = f16_le(b[0], b[1]);
    let min = f16_le(b[2], b[3]);
    let scales = scales12(b, 4);
    let qh = &b[16..48];
    let ql = &b[48..176];
    for (n, (q, y)) in ql.chunks_exact(32).zip(y.chunks_exact_mut(64)).enumerate() {
        let u1 = 1u8 << (2 * n);
        let u2 = 2u8 << (2 * n);
        let (sc, m) = get_scale_min_k4(2 * n, &scales);
        let (d1, m1) = (d * sc as f32, min * m as f32);
        let (sc, m) = get_scale_min_k4(2 * n + 1, &scales);
        let (d2, m2) = (d * sc as f32, min * m as f32);
        let (lo, hi) = y.split_at_mut(32);
        for l in 0..32 {
            let h1 = if qh[l] & u1 != 0 { 16 } else { 0 };
            let h2 = if qh[l] & u2 != 0 { 16 } else { 0 };
            lo[l] = d1 * ((q[l] & 0xF) + h1) as f32 - m1;
            hi[l] = d2 * ((q[l] >> 4) + h2) as f32 - m2;
        }
    }
}

fn block_q6_k(b: &[u8; 210], y: &mut [f32; 256]) {
    let d = f16_le(b[208], b[209]);
    for n in 0..2 {
        let ql = &b[64 * n..64 * n + 64];
        let qh = &b[128 + 32 * n..128 + 32 * n + 32];
        let sc = &b[192 + 8 * n..192 + 8 * n + 8];
        let y = &mut y[128 * n..128 * n + 128];
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i32 - 32;
            let q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
            let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
            y[l] = d * (sc[is] as i8) as f32 * q1 as f32;
            y[l + 32] = d * (sc[is + 2] as i8) as f32 * q2 as f32;
            y[l + 64] = d * (sc[is + 4] as i8) as f32 * q3 as f32;
            y[l + 96] = d * (sc[is + 6] as i8) as f32 * q4 as f32;
        }
    }
}

fn elem_f32(b: &[u8; 4], y: &mut [f32; 1]) {
    y[0] = f32::from_le_bytes(*b);
}

fn elem_f16(b: &[u8; 2], y: &mut [f32; 1]) {
    y[0] = f16_le(b[0], b[1]);
}

fn elem_bf16(b: &[u8; 2], y: &mut [f32; 1]) {
    y[0] = f32::from_bits((u16::from_le_bytes(*b) as u32) << 16);
}

/// Below this many output elements a tensor is decoded on the calling thread.
const PARALLEL_MIN_ELEMENTS: usize = 1 << 16;
/// Output elements per rayon task.
const ELEMENTS_PER_TASK: usize = 1 << 14;

/// Apply `f` to every (block bytes, block output) pair; the lengths have been checked by the
/// caller (`bytes.len() == out.len() / QK * TS`).
fn run<const QK: usize, const TS: usize>(
    bytes: &[u8],
    out: &mut [f32],
    f: fn(&[u8; TS], &mut [f32; QK]),
) {
    let serial = |bytes: &[u8], out: &mut [f32]| {
        for (b, y) in bytes.chunks_exact(TS).zip(out.chunks_exact_mut(QK)) {
            if let (Ok(b), Ok(y)) = (<&[u8; TS]>::try_from(b), <&mut [f32; QK]>::try_from(y)) {
                f(b, y);
            }
        }
    };
    if out.len() < PARALLEL_MIN_ELEMENTS {
        serial(bytes, out);
    } else {
        let blocks_per_task = (ELEMENTS_PER_TASK / QK).max(1);
        out.par_chunks_mut(blocks_per_task * QK)
            .zip(bytes.par_chunks(blocks_per_task * TS))
            .for_each(|(y, b)| serial(b, y));
    }
}

/// Decode `out.len()` elements of type `ty` from `bytes` into `out`, exactly as ggml's
/// `dequantize_row_*`. `out.len()` must be a multiple of the block size and `bytes` exactly
/// [`byte_size`]`(ty, out.len())` long. Large tensors are decoded in parallel (rayon).
///
/// Errors (as a message) for a type without a dequantizer or for inconsistent lengths.
pub fn dequantize(ty: GgmlType, bytes: &[u8], out: &mut [f32]) -> Result<(), String> {
    if !ty.can_dequantize() {
        return Err(format!(
            "dequantization of ggml type {ty} (id {}) is not implemented; supported: F32, F16, \
             BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K",
            ty.id()
        ));
    }
    let need = byte_size(ty, out.len()).ok_or_else(|| {
        format!(
            "{} elements is not a whole number of {ty} blocks of {}",
            out.len(),
            ty.block_size()
        )
    })?;
    if bytes.len() != need {
        return Err(format!(
            "{} elements of {ty} take {need} bytes, got {}",
            out.len(),
            bytes.len()
        ));
    }
    match ty {
        GgmlType::F32 => run::<1, 4>(bytes, out, elem_f32),
        GgmlType::F16 => run::<1, 2>(bytes, out, elem_f16),
        GgmlType::BF16 => run::<1, 2>(bytes, out, elem_bf16),
        GgmlType::Q4_0 => run::<32, 18>(bytes, out, block_q4_0),
        GgmlType::Q4_1 => run::<32, 20>(bytes, out, block_q4_1),
        GgmlType::Q5_0 => run::<32, 22>(bytes, out, block_q5_0),
        GgmlType::Q5_1 => run::<32, 24>(bytes, out, block_q5_1),
        GgmlType::Q8_0 => run::<32, 34>(bytes, out, block_q8_0),
        GgmlType::Q4_K => run::<256, 144>(bytes, out, block_q4_k),
        GgmlType::Q5_K => run::<256, 176>(bytes, out, block_q5_k),
        GgmlType::Q6_K => run::<256, 210>(bytes, out, block_q6_k),
        _ => return Err(format!("ggml type {ty} has no dequantizer")),
    }
    Ok(())
}

/// [`dequantize`] into a new vector of `n_elements`.
pub fn dequantize_to_vec(
    ty: GgmlType,
    bytes: &[u8],
    n_elements: usize,
) -> Result<Vec<f32>, String> {
    let mut out = vec![0.0f32; n_elements];
    dequantize(ty, bytes, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_table_is_consistent() {
        let mut ids = std::collections::HashSet::new();
        for ty in GgmlType::all() {
            assert_eq!(GgmlType::from_id(ty.id()), Some(ty));
            assert!(ids.insert(ty.id()));
            assert!(ty.block_size() > 0 && ty.type_size() > 0);
            assert_ne!(ty.name(), "?");
        }
        assert_eq!(GgmlType::from_id(4), None);
        assert_eq!(GgmlType::from_id(31), None);
        assert_eq!(GgmlType::from_id(1000), None);
        assert_eq!(GgmlType::BF16.id(), 30);
        assert_eq!(GgmlType::Q6_K.id(), 14);
    }

    #[test]
    fn byte_size_checks_blocks_and_overflow() {
        assert_eq!(byte_size(GgmlType::Q4_1, 64), Some(40));
        assert_eq!(byte_size(GgmlType::Q4_1, 33), None);
        assert_eq!(byte_size(GgmlType::Q6_K, 512), Some(420));
        assert_eq!(byte_size(GgmlType::F32, usize::MAX / 2), None);
        assert_eq!(byte_size(GgmlType::F16, 0), Some(0));
    }

    #[test]
    fn scale_min_k4_unpacks_all_eight() {
        // scales 0..8 = 1, 2, ..., 8 (the upper ones use bits 4-5); mins = 40 + j.
        let sc: [u8; 8] = [1, 2, 3, 4, 37, 50, 63, 16];
        let mn: [u8; 8] = [40, 41, 42, 43, 44, 45, 46, 47];
        let mut q = [0u8; 12];
        for j in 0..4 {
            q[j] = sc[j] | ((sc[j + 4] >> 4) << 6);
            q[j + 4] = mn[j] | ((mn[j + 4] >> 4) << 6);
            q[j + 8] = (sc[j + 4] & 0xF) | ((mn[j + 4] & 0xF) << 4);
        }
        for j in 0..8 {
            assert_eq!(get_scale_min_k4(j, &q), (sc[j], mn[j]), "sub-block {j}");
        }
    }

    #[test]
    fn parallel_and_serial_paths_agree() {
        // 4096 Q8_0 blocks = 131072 elements: over the parallel threshold.
        let n_blocks = 4096;
        let mut bytes = Vec::with_capacity(n_blocks * 34);
        for i in 0..n_blocks {
            bytes.extend_from_slice(
                &f16::from_f32(0.5 + i as f32 / 1024.0)
                    .to_bits()
                    .to_le_bytes(),
            );
            bytes.extend((0..32).map(|j| ((i * 7 + j * 13) % 256) as u8));
        }
        let par = dequantize_to_vec(GgmlType::Q8_0, &bytes, n_blocks * 32).unwrap();
        for (i, block) in bytes.chunks_exact(34).enumerate() {
            let mut y = vec![0.0; 32];
            dequantize(GgmlType::Q8_0, block, &mut y).unwrap();
            assert_eq!(&par[i * 32..i * 32 + 32], &y[..]);
        }
    }

    #[test]
    fn refuses_bad_lengths_and_types() {
        let mut out = vec![0.0; 32];
        assert!(dequantize(GgmlType::Q4_0, &[0u8; 17], &mut out).is_err());
        assert!(dequantize(GgmlType::Q4_0, &[0u8; 18], &mut out[..31]).is_err());
        let e = dequantize(GgmlType::Q2_K, &[0u8; 84], &mut [0.0; 256]).unwrap_err();
        assert!(e.contains("Q2_K"), "{e}");
    }
}
