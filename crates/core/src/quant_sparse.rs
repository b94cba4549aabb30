//! Quantized sparse weights: the keep mask of an [`NmSparse`] with its kept values stored as
//! int8 / int4 codes and f16 scales, or as f16 values (LSAQ composed with pruning,
//! ALGORITHMS.md §6.4 on the packed form of §4.4).
//!
//! Layout ([`QuantSparse`]):
//! - the **mask** is the [`NmSparse`] mask, unchanged (lines along the group axis, one bit per
//!   weight, set = kept), so the packed indices are kept as they are;
//! - the **codes** of the kept values follow in the [`NmSparse`] value order (line by line, in
//!   position order) as one flat sequence: int8 one signed byte each; int4 two per byte, value
//!   `2k` in the low nibble and `2k+1` in the high nibble of byte `k` (two's complement,
//!   `−8..=7`; an odd count leaves the last high nibble zero); f16 two bytes each;
//! - integer formats carry one f16 **scale per output row and group** of `group_size`
//!   consecutive input columns, as a dense [`crate::QuantMatrix`] does (`group_size = d_in`:
//!   per output channel): the kept weight `(i, j)` is `scale[i, j / group_size] · q`. The
//!   scales do not depend on the axis the mask runs along.
//!
//! The forward pass reads this form directly: like [`NmSparse::forward`] it transposes a block
//! of 64 tokens and spends one multiply-add over the block per kept weight, the weight being
//! dequantized on the fly from its code and scale. No dense copy is made.

use crate::{CoreError, GroupAxis, Mat, MatMut, MatRef, NmSparse, QuantFormat, SparsityPattern};
use half::f16;
use rayon::prelude::*;

/// Tokens per block of the forward kernel.
const TOKEN_BLOCK: usize = 64;

/// A pruned weight whose kept values are quantized (see the module documentation).
#[derive(Clone, Debug, PartialEq)]
pub struct QuantSparse {
    d_out: usize,
    d_in: usize,
    axis: GroupAxis,
    pattern: SparsityPattern,
    mask: Vec<u8>,
    /// Offset of each line's first kept value (`lines + 1` entries; derived from `mask`).
    line_start: Vec<usize>,
    format: QuantFormat,
    group_size: usize,
    data: Vec<u8>,
    scales: Vec<f16>,
}

/// `(lines, positions per line)` of a mask along `axis`.
fn lines_and_len(d_out: usize, d_in: usize, axis: GroupAxis) -> (usize, usize) {
    match axis {
        GroupAxis::Inputs => (d_out, d_in),
        GroupAxis::Outputs => (d_in, d_out),
    }
}

/// Calls `f(k, i, j)` for every kept weight `(i, j)` of a mask, `k` being its index in the
/// value order of [`NmSparse::values`].
pub fn for_each_kept(
    d_out: usize,
    d_in: usize,
    axis: GroupAxis,
    mask: &[u8],
    mut f: impl FnMut(usize, usize, usize),
) {
    let (lines, len) = lines_and_len(d_out, d_in, axis);
    let lb = len.div_ceil(8);
    let mut k = 0;
    for line in 0..lines {
        for (b, &byte) in mask[line * lb..(line + 1) * lb].iter().enumerate() {
            let mut bits = byte;
            while bits != 0 {
                let p = b * 8 + bits.trailing_zeros() as usize;
                let (i, j) = match axis {
                    GroupAxis::Inputs => (line, p),
                    GroupAxis::Outputs => (p, line),
                };
                f(k, i, j);
                k += 1;
                bits &= bits - 1;
            }
        }
    }
}

fn param(detail: String) -> CoreError {
    CoreError::Parameter {
        name: "quantized sparse weight".into(),
        detail,
    }
}

/// Bytes of `n` packed values of `format` (int4: two per byte).
pub fn packed_bytes(format: QuantFormat, n: usize) -> usize {
    match format {
        QuantFormat::Int4 => n.div_ceil(2),
        QuantFormat::Int8 => n,
        QuantFormat::F16 => 2 * n,
    }
}

impl QuantSparse {
    /// The line offsets of a mask, checked against the shape and pattern by the same rules as
    /// [`NmSparse::from_parts`].
    fn layout(
        d_out: usize,
        d_in: usize,
        axis: GroupAxis,
        pattern: SparsityPattern,
        mask: &[u8],
    ) -> Result<Vec<usize>, CoreError> {
        let nnz = mask.iter().map(|b| b.count_ones() as usize).sum();
        // Reuse the checks of the f32 form (mask size, bits past the end, N:M per group).
        NmSparse::from_parts(d_out, d_in, axis, pattern, mask.to_vec(), vec![0.0; nnz])?;
        let (lines, len) = lines_and_len(d_out, d_in, axis);
        let lb = len.div_ceil(8);
        let mut line_start = Vec::with_capacity(lines + 1);
        line_start.push(0);
        let mut total = 0;
        for line in 0..lines {
            total += mask[line * lb..(line + 1) * lb]
                .iter()
                .map(|b| b.count_ones() as usize)
                .sum::<usize>();
            line_start.push(total);
        }
        Ok(line_start)
    }

    /// Quantized form of `sparse` from integer codes of its kept values (in value order, each
    /// in `qmin..=qmax`) and f16 scales (`d_out × ceil(d_in / group_size)`, row-major).
    pub fn from_codes(
        sparse: &NmSparse,
        format: QuantFormat,
        group_size: usize,
        codes: &[i8],
        scales: Vec<f16>,
    ) -> Result<Self, CoreError> {
        if format == QuantFormat::F16 {
            return Err(param("f16 values have no integer codes".into()));
        }
        if codes.len() != sparse.nnz() {
            return Err(param(format!(
                "{} codes for {} kept weights",
                codes.len(),
                sparse.nnz()
            )));
        }
        let (lo, hi) = (format.qmin(), format.qmax());
        if let Some(c) = codes.iter().find(|&&c| (c as i32) < lo || (c as i32) > hi) {
            return Err(param(format!(
                "code {c} outside {lo}..={hi} of {}",
                format.name()
            )));
        }
        let data = match format {
            QuantFormat::Int8 => codes.iter().map(|&c| c as u8).collect(),
            _ => {
                let mut d = vec![0u8; packed_bytes(format, codes.len())];
                for (k, &c) in codes.iter().enumerate() {
                    let nib = (c as u8) & 0x0f;
                    d[k / 2] |= if k % 2 == 0 { nib } else { nib << 4 };
                }
                d
            }
        };
        let (d_out, d_in) = sparse.shape();
        Self::from_parts(
            d_out,
            d_in,
            sparse.axis(),
            sparse.pattern(),
            sparse.mask().to_vec(),
            format,
            group_size,
            data,
            scales,
        )
    }

    /// The kept values of `sparse` as f16.
    pub fn f16_from(sparse: &NmSparse) -> Result<Self, CoreError> {
        let data = sparse
            .values()
            .iter()
            .flat_map(|v| f16::from_f32(*v).to_le_bytes())
            .collect();
        let (d_out, d_in) = sparse.shape();
        Self::from_parts(
            d_out,
            d_in,
            sparse.axis(),
            sparse.pattern(),
            sparse.mask().to_vec(),
            QuantFormat::F16,
            d_in.max(1),
            data,
            Vec::new(),
        )
    }

    /// Assemble from the stored parts, checking the mask (as [`NmSparse::from_parts`] does),
    /// the packed length and the number of scales.
    #[allow(clippy::too_many_arguments)]
    pub fn from_parts(
        d_out: usize,
        d_in: usize,
        axis: GroupAxis,
        pattern: SparsityPattern,
        mask: Vec<u8>,
        format: QuantFormat,
        group_size: usize,
        data: Vec<u8>,
        scales: Vec<f16>,
    ) -> Result<Self, CoreError> {
        if group_size == 0 {
            return Err(param("group size must be positive".into()));
        }
        let line_start = Self::layout(d_out, d_in, axis, pattern, &mask)?;
        let nnz = *line_start.last().unwrap_or(&0);
        let want = packed_bytes(format, nnz);
        if data.len() != want {
            return Err(param(format!(
                "{} bytes of {} values for {nnz} kept weights (need {want})",
                data.len(),
                format.name()
            )));
        }
        let ns = match format {
            QuantFormat::F16 => 0,
            _ => d_out * d_in.div_ceil(group_size),
        };
        if scales.len() != ns {
            return Err(param(format!("{} scales, need {ns}", scales.len())));
        }
        if scales.iter().any(|s| !s.to_f32().is_finite()) {
            return Err(param("non-finite scale".into()));
        }
        Ok(Self {
            d_out,
            d_in,
            axis,
            pattern,
            mask,
            line_start,
            format,
            group_size,
            data,
            scales,
        })
    }

    /// `(d_out, d_in)`.
    pub fn shape(&self) -> (usize, usize) {
        (self.d_out, self.d_in)
    }
    /// The axis the mask lines run along.
    pub fn axis(&self) -> GroupAxis {
        self.axis
    }
    /// The pattern the mask satisfies.
    pub fn pattern(&self) -> SparsityPattern {
        self.pattern
    }
    /// The keep bitmask (as [`NmSparse::mask`]).
    pub fn mask(&self) -> &[u8] {
        &self.mask
    }
    /// `[lines, bytes per line]` of the mask.
    pub fn mask_shape(&self) -> [usize; 2] {
        let (lines, len) = lines_and_len(self.d_out, self.d_in, self.axis);
        [lines, len.div_ceil(8)]
    }
    /// The storage format of the kept values.
    pub fn format(&self) -> QuantFormat {
        self.format
    }
    /// Input columns per scale group (`d_in` for per-channel scales).
    pub fn group_size(&self) -> usize {
        self.group_size
    }
    /// Packed codes (or f16 values) of the kept weights, in value order.
    pub fn data(&self) -> &[u8] {
        &self.data
    }
    /// Scales, row-major (`d_out × groups`); empty for f16.
    pub fn scales(&self) -> &[f16] {
        &self.scales
    }
    /// Scale groups per output row (0 for f16).
    pub fn groups_per_row(&self) -> usize {
        match self.format {
            QuantFormat::F16 => 0,
            _ => self.d_in.div_ceil(self.group_size),
        }
    }
    /// Number of kept weights.
    pub fn nnz(&self) -> usize {
        *self.line_start.last().unwrap_or(&0)
    }
    /// Bytes stored: packed values, two per scale, and the mask.
    pub fn storage_bytes(&self) -> usize {
        self.data.len() + 2 * self.scales.len() + self.mask.len()
    }

    /// The value of kept weight number `k`, at `(i, j)`.
    #[inline(always)]
    fn value(&self, k: usize, i: usize, j: usize) -> f32 {
        match self.format {
            QuantFormat::F16 => {
                f16::from_le_bytes([self.data[2 * k], self.data[2 * k + 1]]).to_f32()
            }
            QuantFormat::Int8 => {
                let s = self.scales[i * self.groups_per_row() + j / self.group_size];
                s.to_f32() * (self.data[k] as i8) as f32
            }
            QuantFormat::Int4 => {
                let b = self.data[k / 2];
                let nib = if k % 2 == 0 { b & 0x0f } else { b >> 4 };
                let s = self.scales[i * self.groups_per_row() + j / self.group_size];
                s.to_f32() * (((nib << 4) as i8) >> 4) as f32
            }
        }
    }

    /// Calls `f(position, value)` for the kept weights of `line`, dequantized, in order.
    #[inline(always)]
    fn for_each_kept_in(&self, line: usize, mut f: impl FnMut(usize, f32)) {
        let lb = self.mask_shape()[1];
        let mut k = self.line_start[line];
        for (b, &byte) in self.mask[line * lb..(line + 1) * lb].iter().enumerate() {
            let mut bits = byte;
            while bits != 0 {
                let p = b * 8 + bits.trailing_zeros() as usize;
                let (i, j) = match self.axis {
                    GroupAxis::Inputs => (line, p),
                    GroupAxis::Outputs => (p, line),
                };
                f(p, self.value(k, i, j));
                k += 1;
                bits &= bits - 1;
            }
        }
    }

    /// The dense matrix (zeros where pruned, dequantized values where kept).
    pub fn to_dense(&self) -> Mat<f32> {
        let mut w = Mat::<f32>::zeros(self.d_out, self.d_in);
        for line in 0..self.line_start.len() - 1 {
            self.for_each_kept_in(line, |p, v| match self.axis {
                GroupAxis::Inputs => w[(line, p)] = v,
                GroupAxis::Outputs => w[(p, line)] = v,
            });
        }
        w
    }

    /// `y = W x` (`x`: `d_in × T`, `y`: `d_out × T`) from the packed form, dequantizing each
    /// kept weight as it is used; blocks of 64 tokens in parallel.
    pub fn forward(&self, x: MatRef<'_, f32>, mut y: MatMut<'_, f32>) {
        assert_eq!(x.nrows(), self.d_in, "sparse forward: input rows != d_in");
        assert_eq!((y.nrows(), y.ncols()), (self.d_out, x.ncols()));
        let t = x.ncols();
        let blocks: Vec<(usize, Vec<f32>)> = (0..t.div_ceil(TOKEN_BLOCK))
            .into_par_iter()
            .map(|b| {
                let t0 = b * TOKEN_BLOCK;
                let tb = TOKEN_BLOCK.min(t - t0);
                (t0, self.forward_block(x.subcols(t0, tb)))
            })
            .collect();
        for (t0, yt) in blocks {
            let tb = yt.len() / self.d_out.max(1);
            for c in 0..tb {
                for i in 0..self.d_out {
                    y[(i, t0 + c)] = yt[i * tb + c];
                }
            }
        }
    }

    /// One token block: `y` row-major (`d_out × tb`, tokens contiguous).
    fn forward_block(&self, x: MatRef<'_, f32>) -> Vec<f32> {
        let tb = x.ncols();
        let mut xt = vec![0f32; self.d_in * tb];
        for c in 0..tb {
            for (j, v) in x.col(c).iter().enumerate() {
                xt[j * tb + c] = *v;
            }
        }
        let mut yt = vec![0f32; self.d_out * tb];
        kernel(self, &xt, &mut yt, tb);
        yt
    }

    /// `sparse(2:4, inputs) int4(g=128)`.
    pub fn describe(&self) -> String {
        let f = match self.format {
            QuantFormat::F16 => "f16".to_string(),
            f if self.group_size >= self.d_in => format!("{}(per-channel)", f.name()),
            f => format!("{}(g={})", f.name(), self.group_size),
        };
        format!("sparse({}, {}) {f}", self.pattern, self.axis.name())
    }
}

#[inline(always)]
fn axpy(acc: &mut [f32], a: f32, x: &[f32]) {
    for (o, v) in acc.iter_mut().zip(x) {
        *o += a * v;
    }
}

#[inline(always)]
fn kernel_impl(s: &QuantSparse, xt: &[f32], yt: &mut [f32], tb: usize) {
    let lines = s.line_start.len() - 1;
    match s.axis {
        GroupAxis::Inputs => {
            for i in 0..lines {
                let acc = &mut yt[i * tb..(i + 1) * tb];
                s.for_each_kept_in(i, |j, v| axpy(acc, v, &xt[j * tb..(j + 1) * tb]));
            }
        }
        GroupAxis::Outputs => {
            for j in 0..lines {
                let xr = &xt[j * tb..(j + 1) * tb];
                s.for_each_kept_in(j, |i, v| axpy(&mut yt[i * tb..(i + 1) * tb], v, xr));
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn kernel_avx2(s: &QuantSparse, xt: &[f32], yt: &mut [f32], tb: usize) {
    kernel_impl(s, xt, yt, tb)
}

/// The block kernel, compiled for AVX2+FMA and generic targets, chosen at run time.
fn kernel(s: &QuantSparse, xt: &[f32], yt: &mut [f32], tb: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU supports AVX2 and FMA (checked just above).
            return unsafe { kernel_avx2(s, xt, yt, tb) };
        }
    }
    kernel_impl(s, xt, yt, tb)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Linear;

    fn sparse(d_out: usize, d_in: usize, axis: GroupAxis) -> NmSparse {
        let w = Mat::<f32>::from_fn(d_out, d_in, |i, j| {
            ((i * 31 + j * 17) % 23) as f32 * 0.1 - 1.1
        });
        let keep = move |i: usize, j: usize| {
            let (line, p) = match axis {
                GroupAxis::Inputs => (i, j),
                GroupAxis::Outputs => (j, i),
            };
            (p + line) % 4 < 2
        };
        NmSparse::from_dense(
            w.as_ref(),
            keep,
            axis,
            SparsityPattern::NM { zeros: 2, group: 4 },
        )
        .unwrap()
    }

    fn codes(n: usize, f: QuantFormat) -> Vec<i8> {
        let span = (f.qmax() - f.qmin() + 1) as usize;
        (0..n)
            .map(|k| (f.qmin() + ((k * 7 + 3) % span) as i32) as i8)
            .collect()
    }

    /// The packed forward equals the dense forward of the dequantized matrix (both axes, all
    /// formats, odd token counts); pruned positions stay zero.
    #[test]
    fn forward_equals_dense_forward_of_the_dequantized_matrix() {
        for axis in [GroupAxis::Inputs, GroupAxis::Outputs] {
            let s = sparse(20, 48, axis);
            let g = 16;
            let scales: Vec<f16> = (0..20 * 3)
                .map(|i| f16::from_f32(0.01 + (i % 7) as f32 * 0.01))
                .collect();
            let mut qs = vec![QuantSparse::f16_from(&s).unwrap()];
            for f in [QuantFormat::Int4, QuantFormat::Int8] {
                qs.push(
                    QuantSparse::from_codes(&s, f, g, &codes(s.nnz(), f), scales.clone()).unwrap(),
                );
            }
            for q in qs {
                let w = q.to_dense();
                for i in 0..20 {
                    for j in 0..48 {
                        if !s.is_kept(i, j) {
                            assert_eq!(w[(i, j)], 0.0);
                        }
                    }
                }
                for t in [1, 7, 64, 130] {
                    let x = Mat::<f32>::from_fn(48, t, |i, c| ((i * 5 + c * 3) % 13) as f32 - 6.0);
                    let y = Linear::QuantizedSparse(q.clone()).apply(x.as_ref());
                    let yd = &w * &x;
                    for c in 0..t {
                        for i in 0..20 {
                            let tol = 1e-5 * yd[(i, c)].abs().max(1.0);
                            assert!((y[(i, c)] - yd[(i, c)]).abs() <= tol, "{}", q.describe());
                        }
                    }
                }
                let bytes = packed_bytes(q.format(), s.nnz()) + 2 * q.scales().len();
                assert_eq!(q.storage_bytes(), bytes + s.mask().len());
            }
        }
    }

    #[test]
    fn int4_codes_round_trip_and_bad_parts_are_refused() {
        let s = sparse(6, 8, GroupAxis::Inputs);
        let f = QuantFormat::Int4;
        let c = codes(s.nnz(), f);
        let q = QuantSparse::from_codes(&s, f, 8, &c, vec![f16::ONE; 6]).unwrap();
        let mut got = Vec::new();
        for_each_kept(6, 8, GroupAxis::Inputs, s.mask(), |_, i, j| {
            got.push(q.to_dense()[(i, j)] as i8)
        });
        assert_eq!(got, c);
        assert!(QuantSparse::from_codes(&s, f, 8, &c[1..], vec![f16::ONE; 6]).is_err());
        assert!(QuantSparse::from_codes(&s, f, 8, &c, vec![f16::ONE; 5]).is_err());
        let mut bad = c.clone();
        bad[0] = 8;
        assert!(QuantSparse::from_codes(&s, f, 8, &bad, vec![f16::ONE; 6]).is_err());
        let mut mask = s.mask().to_vec();
        mask[0] ^= 1; // breaks the 2:4 count of the first group
        let r = QuantSparse::from_parts(
            6,
            8,
            GroupAxis::Inputs,
            s.pattern(),
            mask,
            f,
            8,
            q.data().to_vec(),
            q.scales().to_vec(),
        );
        assert!(r.is_err());
    }
}
