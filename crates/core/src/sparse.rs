//! Packed sparse weights (N:M or unstructured) and their forward kernel (ALGORITHMS.md §4.4).
//!
//! A pruned weight `W` (`d_out × d_in`) is stored as its kept values plus a one-bit-per-weight
//! keep mask, organised in **lines** along the axis its comparison groups run:
//!
//! - [`GroupAxis::Inputs`] (Wanda, DaSS's `down_proj`): a line is a row `i`; groups of `M`
//!   consecutive input columns within it;
//! - [`GroupAxis::Outputs`] (DaSS's `gate_proj`/`up_proj`): a line is a column `j`; groups of `M`
//!   consecutive output rows within it.
//!
//! The mask is `lines × ⌈len/8⌉` bytes (bit `p % 8` of byte `p / 8` of a line is position `p`,
//! set = kept) and the values follow line by line in position order. For `2:4` this is
//! `2·4 + 4/8 = 8.5` bytes per 4 weights, 0.53 of dense f32 (2-bit indices would cost the same for
//! 2:4 and more for 4:8; one byte per index would be 0.625). The forward reads this packed form
//! directly: no dense copy is ever made.

use crate::{CoreError, Mat, MatMut, MatRef};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The direction along which a weight's comparison groups run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupAxis {
    /// Within each output row, along the input columns (the GEMM reduction dimension).
    Inputs,
    /// Within each input column, along the output rows.
    Outputs,
}

impl GroupAxis {
    /// Stable name (`inputs`, `outputs`).
    pub fn name(self) -> &'static str {
        match self {
            GroupAxis::Inputs => "inputs",
            GroupAxis::Outputs => "outputs",
        }
    }

    /// Parse [`GroupAxis::name`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "inputs" => Some(GroupAxis::Inputs),
            "outputs" => Some(GroupAxis::Outputs),
            _ => None,
        }
    }
}

/// A sparsity pattern. `N:M` means **N zeros** in every group of M consecutive weights along the
/// group axis (`2:4`: 2 zeros per 4, the notation of the DaSS and Wanda code).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SparsityPattern {
    /// `zeros` zeros in every group of `group` weights, `0 < zeros < group`.
    NM {
        /// Zeros per group (`N`).
        zeros: usize,
        /// Group length (`M`).
        group: usize,
    },
    /// Any positions; the sparsity is chosen separately.
    Unstructured,
}

impl SparsityPattern {
    /// Check `0 < zeros < group`.
    pub fn validate(self) -> Result<Self, CoreError> {
        if let SparsityPattern::NM { zeros, group } = self {
            if zeros == 0 || zeros >= group || group > 256 {
                return Err(CoreError::Parameter {
                    name: "pattern".into(),
                    detail: format!("{zeros}:{group}: need 0 < N < M <= 256"),
                });
            }
        }
        Ok(self)
    }

    /// Kept weights per group (`M − N`), `None` when unstructured.
    pub fn kept_per_group(self) -> Option<usize> {
        match self {
            SparsityPattern::NM { zeros, group } => Some(group - zeros),
            SparsityPattern::Unstructured => None,
        }
    }
}

impl fmt::Display for SparsityPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SparsityPattern::NM { zeros, group } => write!(f, "{zeros}:{group}"),
            SparsityPattern::Unstructured => write!(f, "unstructured"),
        }
    }
}

impl FromStr for SparsityPattern {
    type Err = CoreError;
    /// `N:M` (e.g. `2:4`) or `unstructured`.
    fn from_str(s: &str) -> Result<Self, CoreError> {
        let bad = || CoreError::Parameter {
            name: "pattern".into(),
            detail: format!("`{s}`: expected N:M (e.g. 2:4, 4:8) or `unstructured`"),
        };
        if s == "unstructured" {
            return Ok(SparsityPattern::Unstructured);
        }
        let (n, m) = s.split_once(':').ok_or_else(bad)?;
        let zeros = n.trim().parse().map_err(|_| bad())?;
        let group = m.trim().parse().map_err(|_| bad())?;
        SparsityPattern::NM { zeros, group }.validate()
    }
}

/// A pruned weight in packed form: kept values plus a keep bitmask, by lines along the group
/// axis (see the module docs).
#[derive(Clone, Debug, PartialEq)]
pub struct NmSparse {
    d_out: usize,
    d_in: usize,
    axis: GroupAxis,
    pattern: SparsityPattern,
    /// `lines × line_bytes` bits, set = kept.
    mask: Vec<u8>,
    /// Kept values, line by line.
    values: Vec<f32>,
    /// Offset of each line's first value in `values` (`lines + 1` entries; derived from `mask`).
    line_start: Vec<usize>,
}

/// Tokens per block of the forward kernel.
const TOKEN_BLOCK: usize = 64;

impl NmSparse {
    /// Pack `w` keeping the weights where `keep(i, j)` is true.
    ///
    /// For an N:M `pattern`, every group of `M` consecutive weights along `axis` must hold
    /// exactly `M − N` kept weights and the line length must be a multiple of `M`.
    pub fn from_dense(
        w: MatRef<'_, f32>,
        keep: impl Fn(usize, usize) -> bool,
        axis: GroupAxis,
        pattern: SparsityPattern,
    ) -> Result<Self, CoreError> {
        let (d_out, d_in) = (w.nrows(), w.ncols());
        let (lines, len) = lines_and_len(d_out, d_in, axis);
        let lb = len.div_ceil(8);
        let mut mask = vec![0u8; lines * lb];
        let mut values = Vec::new();
        for line in 0..lines {
            for p in 0..len {
                let (i, j) = match axis {
                    GroupAxis::Inputs => (line, p),
                    GroupAxis::Outputs => (p, line),
                };
                if keep(i, j) {
                    mask[line * lb + p / 8] |= 1 << (p % 8);
                    values.push(w[(i, j)]);
                }
            }
        }
        Self::from_parts(d_out, d_in, axis, pattern, mask, values)
    }

    /// Assemble from the packed parts (as stored on disk), checking their sizes and the pattern.
    pub fn from_parts(
        d_out: usize,
        d_in: usize,
        axis: GroupAxis,
        pattern: SparsityPattern,
        mask: Vec<u8>,
        values: Vec<f32>,
    ) -> Result<Self, CoreError> {
        let pattern = pattern.validate()?;
        let (lines, len) = lines_and_len(d_out, d_in, axis);
        let lb = len.div_ceil(8);
        let param = |detail: String| CoreError::Parameter {
            name: "sparse weight".into(),
            detail,
        };
        if mask.len() != lines * lb {
            return Err(param(format!(
                "mask has {} bytes, {lines} lines of {len} need {}",
                mask.len(),
                lines * lb
            )));
        }
        let mut line_start = Vec::with_capacity(lines + 1);
        let mut total = 0usize;
        line_start.push(0);
        for line in 0..lines {
            let bytes = &mask[line * lb..(line + 1) * lb];
            if len % 8 != 0 && bytes[lb - 1] >> (len % 8) != 0 {
                return Err(param(format!("mask bits set past the end of line {line}")));
            }
            if let SparsityPattern::NM { group, .. } = pattern {
                let kept = pattern.kept_per_group().unwrap_or(group);
                if len % group != 0 {
                    return Err(param(format!(
                        "line length {len} is not a multiple of the group size {group}"
                    )));
                }
                for g in 0..len / group {
                    let n = (g * group..(g + 1) * group)
                        .filter(|&p| bytes[p / 8] >> (p % 8) & 1 == 1)
                        .count();
                    if n != kept {
                        return Err(param(format!(
                            "group {g} of line {line} keeps {n} weights, pattern {pattern} keeps {kept}"
                        )));
                    }
                }
            }
            total += bytes.iter().map(|b| b.count_ones() as usize).sum::<usize>();
            line_start.push(total);
        }
        if values.len() != total {
            return Err(param(format!(
                "{} values for {total} kept positions",
                values.len()
            )));
        }
        Ok(Self {
            d_out,
            d_in,
            axis,
            pattern,
            mask,
            values,
            line_start,
        })
    }

    /// `(d_out, d_in)`.
    pub fn shape(&self) -> (usize, usize) {
        (self.d_out, self.d_in)
    }
    /// The axis the groups (and the stored lines) run along.
    pub fn axis(&self) -> GroupAxis {
        self.axis
    }
    /// The pattern the mask satisfies.
    pub fn pattern(&self) -> SparsityPattern {
        self.pattern
    }
    /// The keep bitmask, `lines × ⌈line_len/8⌉` bytes (see [`NmSparse::mask_shape`]).
    pub fn mask(&self) -> &[u8] {
        &self.mask
    }
    /// `[lines, bytes per line]` of the mask.
    pub fn mask_shape(&self) -> [usize; 2] {
        let (lines, len) = lines_and_len(self.d_out, self.d_in, self.axis);
        [lines, len.div_ceil(8)]
    }
    /// The kept values, line by line.
    pub fn values(&self) -> &[f32] {
        &self.values
    }
    /// Number of kept (stored) weights.
    pub fn nnz(&self) -> usize {
        self.values.len()
    }
    /// Bytes of the packed form: f32 values plus the mask.
    pub fn storage_bytes(&self) -> usize {
        4 * self.values.len() + self.mask.len()
    }

    /// Whether weight `(i, j)` is kept.
    pub fn is_kept(&self, i: usize, j: usize) -> bool {
        let (line, p) = match self.axis {
            GroupAxis::Inputs => (i, j),
            GroupAxis::Outputs => (j, i),
        };
        let lb = self.mask_shape()[1];
        self.mask[line * lb + p / 8] >> (p % 8) & 1 == 1
    }

    /// Calls `f(position, value)` for the kept weights of `line`, in position order.
    #[inline(always)]
    fn for_each_kept(&self, line: usize, mut f: impl FnMut(usize, f32)) {
        let lb = self.mask_shape()[1];
        let bytes = &self.mask[line * lb..(line + 1) * lb];
        let vals = &self.values[self.line_start[line]..self.line_start[line + 1]];
        let mut k = 0;
        for (b, &byte) in bytes.iter().enumerate() {
            let mut bits = byte;
            while bits != 0 {
                let p = b * 8 + bits.trailing_zeros() as usize;
                f(p, vals[k]);
                k += 1;
                bits &= bits - 1;
            }
        }
    }

    /// The dense matrix (zeros where pruned).
    pub fn to_dense(&self) -> Mat<f32> {
        let mut w = Mat::<f32>::zeros(self.d_out, self.d_in);
        let lines = self.line_start.len() - 1;
        for line in 0..lines {
            self.for_each_kept(line, |p, v| match self.axis {
                GroupAxis::Inputs => w[(line, p)] = v,
                GroupAxis::Outputs => w[(p, line)] = v,
            });
        }
        w
    }

    /// `y = W x` for `x` (`d_in × T`, one token per column) into `y` (`d_out × T`), reading the
    /// packed form.
    ///
    /// Tokens are processed in blocks of 64, in parallel. Each block is transposed so that a
    /// channel's tokens are contiguous; then every kept weight costs one vectorised
    /// multiply-add over the block (a row gathers `acc += w_ij · x_j` for [`GroupAxis::Inputs`],
    /// a column scatters `y_i += w_ij · x_j` for [`GroupAxis::Outputs`]).
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

    /// One token block: returns `y` row-major (`d_out × tb`, tokens contiguous).
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
}

fn lines_and_len(d_out: usize, d_in: usize, axis: GroupAxis) -> (usize, usize) {
    match axis {
        GroupAxis::Inputs => (d_out, d_in),
        GroupAxis::Outputs => (d_in, d_out),
    }
}

#[inline(always)]
fn axpy(acc: &mut [f32], a: f32, x: &[f32]) {
    for (o, v) in acc.iter_mut().zip(x) {
        *o += a * v;
    }
}

#[inline(always)]
fn kernel_impl(s: &NmSparse, xt: &[f32], yt: &mut [f32], tb: usize) {
    let lines = s.line_start.len() - 1;
    match s.axis {
        GroupAxis::Inputs => {
            for i in 0..lines {
                let acc = &mut yt[i * tb..(i + 1) * tb];
                s.for_each_kept(i, |j, v| axpy(acc, v, &xt[j * tb..(j + 1) * tb]));
            }
        }
        GroupAxis::Outputs => {
            for j in 0..lines {
                let xr = &xt[j * tb..(j + 1) * tb];
                s.for_each_kept(j, |i, v| axpy(&mut yt[i * tb..(i + 1) * tb], v, xr));
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn kernel_avx2(s: &NmSparse, xt: &[f32], yt: &mut [f32], tb: usize) {
    kernel_impl(s, xt, yt, tb)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn kernel_avx512(s: &NmSparse, xt: &[f32], yt: &mut [f32], tb: usize) {
    kernel_impl(s, xt, yt, tb)
}

/// The block kernel, compiled for AVX-512, AVX2+FMA and generic targets, chosen at run time.
fn kernel(s: &NmSparse, xt: &[f32], yt: &mut [f32], tb: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F (checked just above).
            return unsafe { kernel_avx512(s, xt, yt, tb) };
        }
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

    fn masked(d_out: usize, d_in: usize, axis: GroupAxis) -> (Mat<f32>, NmSparse) {
        let w = Mat::<f32>::from_fn(d_out, d_in, |i, j| {
            ((i * 31 + j * 17) % 23) as f32 * 0.1 - 1.1
        });
        // 2:4 along the axis: keep positions 1 and 3 of each group, shifted by the line.
        let keep = |i: usize, j: usize| {
            let (line, p) = match axis {
                GroupAxis::Inputs => (i, j),
                GroupAxis::Outputs => (j, i),
            };
            let q = (p + line) % 4;
            q == 1 || q == 2
        };
        let s = NmSparse::from_dense(
            w.as_ref(),
            keep,
            axis,
            SparsityPattern::NM { zeros: 2, group: 4 },
        )
        .unwrap();
        let wm = Mat::<f32>::from_fn(d_out, d_in, |i, j| if keep(i, j) { w[(i, j)] } else { 0.0 });
        (wm, s)
    }

    #[test]
    fn packed_forward_equals_dense_forward_of_the_masked_matrix() {
        for axis in [GroupAxis::Inputs, GroupAxis::Outputs] {
            let (wm, s) = masked(24, 40, axis);
            assert_eq!(s.to_dense(), wm);
            assert_eq!(s.nnz(), 24 * 40 / 2);
            for t in [1, 5, 64, 131] {
                let x = Mat::<f32>::from_fn(40, t, |i, c| ((i * 7 + c * 13) % 11) as f32 - 5.0);
                let y = Linear::Sparse(s.clone()).apply(x.as_ref());
                let yd = Linear::Dense(wm.clone()).apply(x.as_ref());
                for c in 0..t {
                    for i in 0..24 {
                        assert!((y[(i, c)] - yd[(i, c)]).abs() <= 1e-4 * yd[(i, c)].abs().max(1.0));
                    }
                }
            }
        }
    }

    #[test]
    fn two_four_storage_is_below_0_6_of_dense() {
        let (_, s) = masked(64, 128, GroupAxis::Outputs);
        let ratio = s.storage_bytes() as f64 / (4.0 * 64.0 * 128.0);
        assert!((ratio - 8.5 / 16.0).abs() < 1e-12, "{ratio}");
    }

    #[test]
    fn from_parts_checks_sizes_and_pattern() {
        let (_, s) = masked(8, 16, GroupAxis::Inputs);
        let p = s.pattern();
        let ok = NmSparse::from_parts(
            8,
            16,
            GroupAxis::Inputs,
            p,
            s.mask().to_vec(),
            s.values().to_vec(),
        );
        assert_eq!(ok.unwrap(), s);
        let mut short = s.values().to_vec();
        short.pop();
        assert!(
            NmSparse::from_parts(8, 16, GroupAxis::Inputs, p, s.mask().to_vec(), short).is_err()
        );
        let mut bad = s.mask().to_vec();
        bad[0] |= 1; // position 0 of line 0 was pruned: its group now keeps 3
        assert!(
            NmSparse::from_parts(8, 16, GroupAxis::Inputs, p, bad, s.values().to_vec()).is_err()
        );
        assert!(NmSparse::from_parts(8, 16, GroupAxis::Inputs, p, vec![0; 3], vec![]).is_err());
        // The same bits read as unstructured are fine.
        let u = NmSparse::from_parts(
            8,
            16,
            GroupAxis::Inputs,
            SparsityPattern::Unstructured,
            s.mask().to_vec(),
            s.values().to_vec(),
        );
        assert_eq!(u.unwrap().to_dense(), s.to_dense());
    }

    #[test]
    fn patterns_parse() {
        assert_eq!(
            "2:4".parse::<SparsityPattern>().unwrap(),
            SparsityPattern::NM { zeros: 2, group: 4 }
        );
        assert_eq!(
            "unstructured".parse::<SparsityPattern>().unwrap(),
            SparsityPattern::Unstructured
        );
        for bad in ["4:4", "0:4", "2", "a:b", "5:4"] {
            assert!(bad.parse::<SparsityPattern>().is_err(), "{bad}");
        }
        assert_eq!(
            SparsityPattern::NM { zeros: 4, group: 8 }.to_string(),
            "4:8"
        );
    }
}
