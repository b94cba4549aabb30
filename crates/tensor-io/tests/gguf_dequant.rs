//! Dequantizers checked against blocks built by hand from the format definitions
//! (ggml-common.h / ggml-quants.c), with the expected values computed independently here
//! (element by element from the bit layout, plus literals worked out by hand), and against
//! reference values of the Python `gguf` package (`gguf.quants.dequantize`) for random blocks.

use llm_compress_tensor_io::dequant::{byte_size, dequantize, get_scale_min_k4, GgmlType};

// f16 bit patterns of exact values.
const H_0_125: u16 = 0x3000;
const H_0_25: u16 = 0x3400;
const H_0_5: u16 = 0x3800;
const H_1: u16 = 0x3C00;
const H_M1: u16 = 0xBC00;

fn h(bits: u16) -> [u8; 2] {
    bits.to_le_bytes()
}

fn f16_value(bits: u16) -> f32 {
    half::f16::from_bits(bits).to_f32()
}

fn deq(ty: GgmlType, bytes: &[u8]) -> Vec<f32> {
    let n = bytes.len() / ty.type_size() * ty.block_size();
    assert_eq!(
        byte_size(ty, n),
        Some(bytes.len()),
        "test block size for {ty}"
    );
    let mut out = vec![f32::NAN; n];
    dequantize(ty, bytes, &mut out).unwrap();
    out
}

fn assert_all_eq(ty: GgmlType, got: &[f32], expected: &[f32]) {
    assert_eq!(got.len(), expected.len());
    for (i, (g, e)) in got.iter().zip(expected).enumerate() {
        assert_eq!(
            g.to_bits(),
            e.to_bits(),
            "{ty} element {i}: got {g}, expected {e}"
        );
    }
}

/// Element `e` (0..32) of a 32-element block: low nibble of qs[e] for e < 16, high nibble of
/// qs[e - 16] otherwise.
fn nibble32(qs: &[u8], e: usize) -> u8 {
    if e < 16 {
        qs[e] & 0x0F
    } else {
        qs[e - 16] >> 4
    }
}

#[test]
fn q4_0_two_blocks() {
    // Block 0: d = 0.5, qs[j] = j | (15 - j) << 4  → y[j] = (j - 8) / 2, y[j+16] = (7 - j) / 2.
    // Block 1: d = -1, every byte 0x9A → low 10, high 9 → y = -2 (first half), -1 (second).
    let mut b = Vec::new();
    b.extend(h(H_0_5));
    b.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
    b.extend(h(H_M1));
    b.extend([0x9Au8; 16]);
    let y = deq(GgmlType::Q4_0, &b);
    assert_eq!(y.len(), 64);
    assert_eq!(y[0], -4.0);
    assert_eq!(y[15], 3.5);
    assert_eq!(y[16], 3.5);
    assert_eq!(y[31], -4.0);
    assert_eq!(&y[32..48], &[-2.0; 16]);
    assert_eq!(&y[48..64], &[-1.0; 16]);
    let expected: Vec<f32> = (0..32)
        .map(|e| (nibble32(&b[2..18], e) as f32 - 8.0) * 0.5)
        .collect();
    assert_all_eq(GgmlType::Q4_0, &y[..32], &expected);
}

#[test]
fn q4_1_block() {
    // d = 0.25, m = -1, qs[j] = j | (j ^ 5) << 4 → y[j] = j/4 - 1, y[j+16] = (j^5)/4 - 1.
    let mut b = Vec::new();
    b.extend(h(H_0_25));
    b.extend(h(H_M1));
    b.extend((0..16u8).map(|j| j | ((j ^ 5) << 4)));
    let y = deq(GgmlType::Q4_1, &b);
    assert_eq!(y[0], -1.0);
    assert_eq!(y[15], 2.75);
    assert_eq!(y[16], 0.25); // (0 ^ 5) = 5 → 1.25 - 1
    assert_eq!(y[21], -1.0); // (5 ^ 5) = 0
    let expected: Vec<f32> = (0..32)
        .map(|e| nibble32(&b[4..20], e) as f32 * 0.25 - 1.0)
        .collect();
    assert_all_eq(GgmlType::Q4_1, &y, &expected);
}

/// qh = 0xA5A5_0F0F: elements 0-3, 8-11, 16, 18, 21, 23, 24, 26, 29, 31 have the fifth bit.
const QH5: u32 = 0xA5A5_0F0F;

fn q5_value(qs: &[u8], e: usize) -> u8 {
    nibble32(qs, e) | ((((QH5 >> e) & 1) as u8) << 4)
}

#[test]
fn q5_0_block() {
    let mut b = Vec::new();
    b.extend(h(H_0_5));
    b.extend(QH5.to_le_bytes());
    b.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
    let y = deq(GgmlType::Q5_0, &b);
    assert_eq!(y[0], 0.0); // q = 0 | 16 → (16 - 16) * 0.5
    assert_eq!(y[4], -6.0); // q = 4 → (4 - 16) * 0.5
    assert_eq!(y[16], 7.5); // q = 15 | 16 = 31
    assert_eq!(y[17], -1.0); // q = 14
    let expected: Vec<f32> = (0..32)
        .map(|e| (q5_value(&b[6..22], e) as f32 - 16.0) * 0.5)
        .collect();
    assert_all_eq(GgmlType::Q5_0, &y, &expected);
}

#[test]
fn q5_1_block() {
    let mut b = Vec::new();
    b.extend(h(H_0_25));
    b.extend(h(H_0_5));
    b.extend(QH5.to_le_bytes());
    b.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
    let y = deq(GgmlType::Q5_1, &b);
    assert_eq!(y[0], 4.5); // q = 16 → 16 * 0.25 + 0.5
    assert_eq!(y[16], 8.25); // q = 31
    assert_eq!(y[17], 4.0); // q = 14
    let expected: Vec<f32> = (0..32)
        .map(|e| q5_value(&b[8..24], e) as f32 * 0.25 + 0.5)
        .collect();
    assert_all_eq(GgmlType::Q5_1, &y, &expected);
}

#[test]
fn q8_0_block() {
    // d = 0.125, qs[j] = 8j - 128 (as i8) → y[j] = j - 16.
    let mut b = Vec::new();
    b.extend(h(H_0_125));
    b.extend((0..32i32).map(|j| (8 * j - 128) as i8 as u8));
    let y = deq(GgmlType::Q8_0, &b);
    let expected: Vec<f32> = (0..32).map(|j| j as f32 - 16.0).collect();
    assert_all_eq(GgmlType::Q8_0, &y, &expected);
}

// K-quants: 8 sub-blocks of 32 with 6-bit scales and mins.
const SC: [u8; 8] = [1, 2, 3, 4, 37, 50, 63, 16];
const MN: [u8; 8] = [0, 5, 10, 63, 33, 8, 1, 48];
/// SC/MN packed by hand: bytes 0-3 = sc[0..4] | (sc[4..8] >> 4) << 6, bytes 4-7 =
/// mn[0..4] | (mn[4..8] >> 4) << 6, bytes 8-11 = (sc[4..8] & 15) | (mn[4..8] & 15) << 4.
const PACKED: [u8; 12] = [
    0x81, 0xC2, 0xC3, 0x44, 0x80, 0x05, 0x0A, 0xFF, 0x15, 0x82, 0x1F, 0x00,
];

fn pack_k4(sc: &[u8; 8], mn: &[u8; 8]) -> [u8; 12] {
    let mut q = [0u8; 12];
    for j in 0..4 {
        q[j] = (sc[j] & 63) | ((sc[j + 4] >> 4) << 6);
        q[j + 4] = (mn[j] & 63) | ((mn[j + 4] >> 4) << 6);
        q[j + 8] = (sc[j + 4] & 15) | ((mn[j + 4] & 15) << 4);
    }
    q
}

#[test]
fn k4_scale_packing() {
    assert_eq!(pack_k4(&SC, &MN), PACKED);
    for j in 0..8 {
        assert_eq!(
            get_scale_min_k4(j, &PACKED),
            (SC[j], MN[j]),
            "sub-block {j}"
        );
    }
}

/// Element e of a Q4_K/Q5_K super-block: chunk e/64 uses qs[32*chunk .. +32]; sub-block e/32;
/// even sub-blocks take the low nibble, odd ones the high nibble.
fn k_nibble(qs: &[u8], e: usize) -> u8 {
    let byte = qs[32 * (e / 64) + e % 32];
    if (e / 32) % 2 == 0 {
        byte & 0x0F
    } else {
        byte >> 4
    }
}

fn k_qs() -> Vec<u8> {
    (0..128usize).map(|k| (k * 7 % 256) as u8).collect()
}

#[test]
fn q4_k_block() {
    // d = 0.5, dmin = 0.25.
    let mut b = Vec::new();
    b.extend(h(H_0_5));
    b.extend(h(H_0_25));
    b.extend(PACKED);
    b.extend(k_qs());
    assert_eq!(b.len(), 144);
    let y = deq(GgmlType::Q4_K, &b);
    // e = 33: sub-block 1, qs[1] = 7 → high nibble 0 → 0.5*2*0 - 0.25*5.
    assert_eq!(y[33], -1.25);
    // e = 194: sub-block 6, qs[96 + 2] = 686 % 256 = 0xAE → low nibble 14 → 0.5*63*14 - 0.25*1.
    assert_eq!(y[194], 440.75);
    let qs = &b[16..];
    let expected: Vec<f32> = (0..256)
        .map(|e| {
            let s = e / 32;
            0.5 * SC[s] as f32 * k_nibble(qs, e) as f32 - 0.25 * MN[s] as f32
        })
        .collect();
    assert_all_eq(GgmlType::Q4_K, &y, &expected);
}

#[test]
fn q5_k_block() {
    let qh: Vec<u8> = (0..32usize).map(|l| (l * 37 % 256) as u8).collect();
    let mut b = Vec::new();
    b.extend(h(H_0_5));
    b.extend(h(H_0_25));
    b.extend(PACKED);
    b.extend(&qh);
    b.extend(k_qs());
    assert_eq!(b.len(), 176);
    let y = deq(GgmlType::Q5_K, &b);
    // e = 33: qh[1] = 37 = 0b100101, bit 1 clear → q = 0 → -1.25.
    assert_eq!(y[33], -1.25);
    // e = 194: qh[2] = 74 = 0b1001010, bit 6 set → q = 14 + 16 = 30 → 0.5*63*30 - 0.25.
    assert_eq!(y[194], 944.75);
    let qs = &b[48..];
    let expected: Vec<f32> = (0..256)
        .map(|e| {
            let s = e / 32;
            let q = k_nibble(qs, e) + 16 * ((qh[e % 32] >> s) & 1);
            0.5 * SC[s] as f32 * q as f32 - 0.25 * MN[s] as f32
        })
        .collect();
    assert_all_eq(GgmlType::Q5_K, &y, &expected);
}

#[test]
fn q6_k_block() {
    let ql: Vec<u8> = (0..128usize).map(|k| (k * 11 % 256) as u8).collect();
    let qh: Vec<u8> = (0..64usize).map(|k| ((k * 29 + 3) % 256) as u8).collect();
    let sc: [i8; 16] = [
        1, -2, 3, -4, 5, -6, 7, -8, 9, -10, 11, -12, 13, -14, 15, -128,
    ];
    let mut b = Vec::new();
    b.extend(&ql);
    b.extend(&qh);
    b.extend(sc.iter().map(|&s| s as u8));
    b.extend(h(H_0_25));
    assert_eq!(b.len(), 210);
    let y = deq(GgmlType::Q6_K, &b);
    // e = 0: ql[0] = 0, qh[0] = 3 → q = 0 | 3 << 4 = 48 - 32 = 16; scale 1 → 0.25 * 16.
    assert_eq!(y[0], 4.0);
    // e = 255: half 1, quarter 3, l = 31: ql[127] = 0x75 → high 7; qh[63] = 38 → bits 6-7 = 0
    // → q = 7 - 32 = -25; scale sc[15] = -128 → 0.25 * -128 * -25.
    assert_eq!(y[255], 800.0);
    // Element e: half n = e/128, quarter k = (e%128)/32, l = e%32.
    let expected: Vec<f32> = (0..256)
        .map(|e| {
            let (n, k, l) = (e / 128, (e % 128) / 32, e % 32);
            let byte = ql[64 * n + 32 * (k % 2) + l];
            let low = if k < 2 { byte & 0x0F } else { byte >> 4 };
            let high = (qh[32 * n + l] >> (2 * k)) & 3;
            let q = (low | (high << 4)) as i32 - 32;
            let s = sc[8 * n + 2 * k + l / 16];
            0.25 * s as f32 * q as f32
        })
        .collect();
    assert_all_eq(GgmlType::Q6_K, &y, &expected);
}

#[test]
fn f16_bf16_f32_elements() {
    let f16_bits: [u16; 6] = [H_1, 0xC000, 0x7BFF, 0x0001, 0x7C00, 0x8000];
    let b: Vec<u8> = f16_bits.iter().flat_map(|x| x.to_le_bytes()).collect();
    let y = deq(GgmlType::F16, &b);
    assert_eq!(y[..3], [1.0, -2.0, 65504.0]);
    assert_eq!(y[3], 2f32.powi(-24));
    assert_eq!(y[4], f32::INFINITY);
    assert_eq!(y[5].to_bits(), (-0.0f32).to_bits());
    assert_eq!(f16_value(H_0_125), 0.125);

    let bf16_bits: [u16; 4] = [0x3F80, 0xC040, 0x7F80, 0x0001];
    let b: Vec<u8> = bf16_bits.iter().flat_map(|x| x.to_le_bytes()).collect();
    let y = deq(GgmlType::BF16, &b);
    assert_eq!(y[..3], [1.0, -3.0, f32::INFINITY]);
    assert_eq!(y[3].to_bits(), 0x0001_0000);

    let xs = [1.5f32, -0.0, f32::MIN_POSITIVE, 3.0e38];
    let b: Vec<u8> = xs.iter().flat_map(|x| x.to_le_bytes()).collect();
    assert_all_eq(GgmlType::F32, &deq(GgmlType::F32, &b), &xs);
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

/// One random block per type (random bytes, sane f16 scales) with values from the Python
/// `gguf` package 0.x: `gguf.quants.dequantize(block, type)` at a few indices, and the sum.
#[allow(clippy::type_complexity)]
const PY_REFERENCE: &[(GgmlType, &str, &[(usize, f64)], f64)] = &[
    (GgmlType::Q4_0, "a5a4b6faf3fe08fa81ace9fcf7815461b43c", &[(0, 0.036285400390625), (5, -0.036285400390625), (15, -0.07257080078125), (16, -0.0544281005859375), (20, 0.1451416015625), (31, 0.0907135009765625)], -0.4354248046875),
    (GgmlType::Q4_1, "33a89623f7c6e570023835414d7e209c5d46a8e5", &[(0, -0.2148284912109375), (5, -0.2476348876953125), (15, -0.1492156982421875), (16, -0.4772796630859375), (20, 0.0148162841796875), (31, -0.4444732666015625)], -6.67767333984375),
    (GgmlType::Q5_0, "09260639e51e7a8caf28650f6d51b12d4d164ffa660e", &[(0, -0.141448974609375), (5, -0.0235748291015625), (15, -0.047149658203125), (16, 0.1650238037109375), (20, -0.235748291015625), (31, -0.377197265625)], -0.66009521484375),
    (GgmlType::Q5_1, "602830986bb304feb38d8d5bb44bad2e301d19da393dabf0", &[(0, 0.647369384765625), (5, 0.920806884765625), (15, 0.544830322265625), (16, 0.373931884765625), (20, 0.373931884765625), (31, 1.057525634765625)], 18.494140625),
    (GgmlType::Q8_0, "f42813fca6675c8992babb2bca11b5bb04bdf93245d1eb7275acf394664c354e0bcd", &[(0, 0.7352294921875), (5, -4.6048583984375), (15, -2.5926513671875), (16, -0.2708740234375), (20, -0.8126220703125), (31, -1.9735107421875)], -4.256591796875),
    (GgmlType::Q4_K, "dc25a5a2b885df9cf719efb6eaf2c447b2fb9e1ea3e7be73b2602d40f41afe87b306109f9d2717fdf523b0cc07c98701f316389e0ba187338a27906bb89cc241cc981d07c40d3b57d7deb3c15f89910d23a6e7fbab249553897299be7c9ac732605b2d1ea56d47d435a8418b2e671aa3d953ea6aad71df15dc19ba05366f5c38c21c5512fb8c61aebb2531591ab36822", &[(0, 3.2772445678710938), (31, 1.9955062866210938), (32, 1.5832901000976562), (63, 0.32444000244140625), (100, 0.7007904052734375), (128, 3.6885223388671875), (200, 15.060882568359375), (255, 2.252471923828125)], 1671.8668212890625),
    (GgmlType::Q5_K, "b62209a5f27a2f0b43caa49e735d8764c40f33fa40ebe8b08c97a17c64311bbadf8ec4b5a3a745abf6ec90cf8a21709782d38c211e2e06e13e6623d993eea389151b69c47ee30a19c509b9f18cf62b24e0a31a04e9fc57f601908d6f978950ccad448c367e9dba01038064c090b420f258b591054ac6c9a7041a5f23b99f22e98c53bee7cbc90f27b0cc9bd68f9bb096e847433247c8f68013303e5bd5be7e2cb3ceabe207f516100e98b30eefd61faa", &[(0, 1.3697357177734375), (31, 13.166305541992188), (32, 6.278472900390625), (63, 13.880706787109375), (100, 2.60858154296875), (128, 5.8001556396484375), (200, 1.0619964599609375), (255, 2.110565185546875)], 1776.8955535888672),
    (GgmlType::Q6_K, "e80cf1f3fdae09f17254672c1f3c3544f3055edbb44d4dbfd25254d9e6ba870083e209bacff931cf208a6f1e0e078bce780d79c853daf50de9d02fed62e353199ade808ea541a08dd351aedb201b4ec3e88c92743c4f1ebb24e6f4291f6cb6ae87002fae1b2f39c3084c1cd76b19739968b4c6a9bf3e483c6ba8f4a05a062f07191a9d16769663e91ea83a3ba92f016ae1d84a7525f134b90fd6448d405b15448a01f2452980f9faa7d56633704e972d5e9f4b6b71d8020c4518b7aca55f7e7e5192944509ffda5e6757a3a5e6b6d3a79498", &[(0, 1.44854736328125), (31, -7.86865234375), (32, 0.724273681640625), (63, 1.0797042846679688), (100, -0.33978271484375), (128, -2.3024749755859375), (200, 0.7555694580078125), (255, -3.1832275390625)], -44.75072479248047),
];

#[test]
fn matches_python_gguf_reference() {
    for &(ty, hex, spots, sum) in PY_REFERENCE {
        let y = deq(ty, &unhex(hex));
        assert_eq!(y.len(), ty.block_size());
        for &(i, v) in spots {
            assert_eq!(y[i], v as f32, "{ty} element {i}");
        }
        let s: f64 = y.iter().map(|&v| v as f64).sum();
        assert!(
            (s - sum).abs() < 1e-6 * sum.abs().max(1.0),
            "{ty}: sum {s} vs {sum}"
        );
    }
}

#[test]
fn unsupported_types_and_bad_lengths_are_errors() {
    for ty in [
        GgmlType::Q2_K,
        GgmlType::Q3_K,
        GgmlType::IQ4_NL,
        GgmlType::Q8_K,
    ] {
        assert!(!ty.can_dequantize());
        let n = ty.block_size();
        let bytes = vec![0u8; ty.type_size()];
        let err = dequantize(ty, &bytes, &mut vec![0.0; n]).unwrap_err();
        assert!(err.contains(ty.name()), "{err}");
    }
    // Wrong byte count and a partial block.
    assert!(dequantize(GgmlType::Q6_K, &[0u8; 209], &mut [0.0; 256]).is_err());
    assert!(dequantize(GgmlType::Q4_K, &[0u8; 144], &mut [0.0; 128]).is_err());
    assert!(dequantize(GgmlType::F16, &[0u8; 3], &mut [0.0; 2]).is_err());
}
