//! Quantized weights: packed int8 / int4 codes with f16 scales, or plain f16 values
//! (ALGORITHMS.md §6.4), and a forward pass that dequantizes on the fly inside the matmul.
//!
//! A [`QuantMatrix`] stores a `d_out × d_in` weight row by row (row-major, the PyTorch layout):
//! - [`QuantFormat::Int8`]: one signed byte per value;
//! - [`QuantFormat::Int4`]: two signed 4-bit codes per byte, column `2j` in the low nibble and
//!   `2j+1` in the high nibble (two's complement, `−8..=7`); an odd row length leaves the last
//!   high nibble zero;
//! - [`QuantFormat::F16`]: IEEE half-precision values, no scales.
//!
//! Integer formats carry one f16 scale per output row and group of `group_size` consecutive
//! input columns (`group_size = d_in` is per-channel): `W[r, j] ≈ scale[r, j / group] · q[r, j]`.
//!
//! The forward pass never materialises the whole matrix: it dequantizes a tile of at most
//! [`TILE_ROWS`] × [`TILE_COLS`] values into a small buffer and multiplies it with the matching
//! rows of the input, accumulating into the output; row tiles run in parallel.

use crate::{CoreError, Mat, MatMut, MatRef};
use faer::linalg::matmul::matmul;
use faer::{Accum, Par};
use half::f16;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Output rows dequantized at once by the forward kernel.
pub const TILE_ROWS: usize = 64;
/// Input columns dequantized at once by the forward kernel.
pub const TILE_COLS: usize = 512;

/// How the values of a [`QuantMatrix`] are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuantFormat {
    /// Signed 4-bit codes, two per byte, with f16 scales.
    Int4,
    /// Signed 8-bit codes with f16 scales.
    Int8,
    /// Half-precision values (no scales).
    F16,
}

impl QuantFormat {
    /// Bits per stored value.
    pub fn bits(self) -> u32 {
        match self {
            QuantFormat::Int4 => 4,
            QuantFormat::Int8 => 8,
            QuantFormat::F16 => 16,
        }
    }

    /// Largest code magnitude of the symmetric grid, `2^{b−1} − 1` (integer formats).
    pub fn qmax(self) -> i32 {
        match self {
            QuantFormat::Int4 => 7,
            QuantFormat::Int8 => 127,
            QuantFormat::F16 => 0,
        }
    }

    /// Smallest code, `−2^{b−1}` (integer formats).
    pub fn qmin(self) -> i32 {
        match self {
            QuantFormat::Int4 => -8,
            QuantFormat::Int8 => -128,
            QuantFormat::F16 => 0,
        }
    }

    /// `int4`, `int8`, `f16`.
    pub fn name(self) -> &'static str {
        match self {
            QuantFormat::Int4 => "int4",
            QuantFormat::Int8 => "int8",
            QuantFormat::F16 => "f16",
        }
    }

    /// Parse `int4`, `int8`, `f16`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "int4" => Some(QuantFormat::Int4),
            "int8" => Some(QuantFormat::Int8),
            "f16" => Some(QuantFormat::F16),
            _ => None,
        }
    }

    /// Bytes of the packed values of one row of `cols` values.
    pub fn row_bytes(self, cols: usize) -> usize {
        match self {
            QuantFormat::Int4 => cols.div_ceil(2),
            QuantFormat::Int8 => cols,
            QuantFormat::F16 => 2 * cols,
        }
    }

    /// Total bytes (values + f16 scales) of a `rows × cols` matrix with groups of `group_size`
    /// columns (ignored for f16).
    pub fn matrix_bytes(self, rows: usize, cols: usize, group_size: usize) -> usize {
        let scales = match self {
            QuantFormat::F16 => 0,
            _ => rows * cols.div_ceil(group_size.max(1)),
        };
        rows * self.row_bytes(cols) + 2 * scales
    }
}

/// A quantized `d_out × d_in` weight (see the module documentation for the layout).
#[derive(Clone, Debug, PartialEq)]
pub struct QuantMatrix {
    rows: usize,
    cols: usize,
    format: QuantFormat,
    group_size: usize,
    data: Vec<u8>,
    scales: Vec<f16>,
}

impl QuantMatrix {
    /// Build from integer codes (`rows × cols`, row-major, each in `qmin..=qmax`) and f16
    /// scales (`rows × ceil(cols / group_size)`, row-major), packing int4 two per byte.
    pub fn from_codes(
        rows: usize,
        cols: usize,
        format: QuantFormat,
        group_size: usize,
        codes: &[i8],
        scales: Vec<f16>,
    ) -> Result<Self, CoreError> {
        if format == QuantFormat::F16 {
            return Err(param("format", "f16 matrices have no integer codes"));
        }
        if group_size == 0 {
            return Err(param("group_size", "must be positive"));
        }
        if codes.len() != rows * cols {
            return Err(shape("codes", (rows, cols), (codes.len(), 1)));
        }
        let ng = cols.div_ceil(group_size);
        if scales.len() != rows * ng {
            return Err(shape("scales", (rows, ng), (scales.len(), 1)));
        }
        let (lo, hi) = (format.qmin(), format.qmax());
        if let Some(c) = codes.iter().find(|&&c| (c as i32) < lo || (c as i32) > hi) {
            return Err(param(
                "codes",
                &format!("code {c} outside {lo}..={hi} of {}", format.name()),
            ));
        }
        let data = match format {
            QuantFormat::Int8 => codes.iter().map(|&c| c as u8).collect(),
            QuantFormat::Int4 => {
                let rb = format.row_bytes(cols);
                let mut d = vec![0u8; rows * rb];
                for r in 0..rows {
                    for j in 0..cols {
                        let nib = (codes[r * cols + j] as u8) & 0x0f;
                        d[r * rb + j / 2] |= if j % 2 == 0 { nib } else { nib << 4 };
                    }
                }
                d
            }
            QuantFormat::F16 => unreachable!("rejected above"),
        };
        Ok(Self {
            rows,
            cols,
            format,
            group_size,
            data,
            scales,
        })
    }

    /// A half-precision copy of `w`.
    pub fn f16_from(w: MatRef<'_, f32>) -> Self {
        let (rows, cols) = (w.nrows(), w.ncols());
        let mut data = Vec::with_capacity(2 * rows * cols);
        for r in 0..rows {
            for j in 0..cols {
                data.extend_from_slice(&f16::from_f32(w[(r, j)]).to_le_bytes());
            }
        }
        Self {
            rows,
            cols,
            format: QuantFormat::F16,
            group_size: cols.max(1),
            data,
            scales: Vec::new(),
        }
    }

    /// Rebuild from stored parts (packed bytes as written by [`Self::data`], scales as written
    /// by [`Self::scales`]); every length is checked.
    pub fn from_parts(
        rows: usize,
        cols: usize,
        format: QuantFormat,
        group_size: usize,
        data: Vec<u8>,
        scales: Vec<f16>,
    ) -> Result<Self, CoreError> {
        if group_size == 0 {
            return Err(param("group_size", "must be positive"));
        }
        let want = rows * format.row_bytes(cols);
        if data.len() != want {
            return Err(shape("packed data", (want, 1), (data.len(), 1)));
        }
        let ns = match format {
            QuantFormat::F16 => 0,
            _ => rows * cols.div_ceil(group_size),
        };
        if scales.len() != ns {
            return Err(shape("scales", (ns, 1), (scales.len(), 1)));
        }
        if scales.iter().any(|s| !s.to_f32().is_finite()) {
            return Err(param("scales", "non-finite scale"));
        }
        Ok(Self {
            rows,
            cols,
            format,
            group_size,
            data,
            scales,
        })
    }

    /// `(d_out, d_in)`.
    pub fn shape(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }
    /// The storage format of the values.
    pub fn format(&self) -> QuantFormat {
        self.format
    }
    /// Columns per scale group (`d_in` for per-channel scales).
    pub fn group_size(&self) -> usize {
        self.group_size
    }
    /// Packed values, row-major (`rows × row_bytes`).
    pub fn data(&self) -> &[u8] {
        &self.data
    }
    /// Scales, row-major (`rows × groups`); empty for f16.
    pub fn scales(&self) -> &[f16] {
        &self.scales
    }
    /// Number of scale groups per row (0 for f16).
    pub fn groups_per_row(&self) -> usize {
        match self.format {
            QuantFormat::F16 => 0,
            _ => self.cols.div_ceil(self.group_size),
        }
    }

    /// Bytes stored: packed values plus two per scale.
    pub fn storage_bytes(&self) -> usize {
        self.data.len() + 2 * self.scales.len()
    }

    /// The integer code of `(r, j)` (integer formats).
    pub fn code(&self, r: usize, j: usize) -> i8 {
        match self.format {
            QuantFormat::Int8 => self.data[r * self.cols + j] as i8,
            QuantFormat::Int4 => {
                let b = self.data[r * self.format.row_bytes(self.cols) + j / 2];
                let nib = if j % 2 == 0 { b & 0x0f } else { b >> 4 };
                ((nib << 4) as i8) >> 4
            }
            QuantFormat::F16 => 0,
        }
    }

    /// Dequantize rows `r0..r0+nr`, columns `c0..c0+nc` into `out` (`nr × nc`).
    pub fn dequantize_tile(&self, r0: usize, c0: usize, mut out: MatMut<'_, f32>) {
        let (nr, nc) = (out.nrows(), out.ncols());
        let ng = self.groups_per_row();
        for i in 0..nr {
            let r = r0 + i;
            match self.format {
                QuantFormat::F16 => {
                    let row = &self.data[2 * r * self.cols..2 * (r + 1) * self.cols];
                    for j in 0..nc {
                        let c = c0 + j;
                        out[(i, j)] = f16::from_le_bytes([row[2 * c], row[2 * c + 1]]).to_f32();
                    }
                }
                QuantFormat::Int8 => {
                    let row = &self.data[r * self.cols..(r + 1) * self.cols];
                    let sc = &self.scales[r * ng..(r + 1) * ng];
                    for j in 0..nc {
                        let c = c0 + j;
                        out[(i, j)] = sc[c / self.group_size].to_f32() * (row[c] as i8) as f32;
                    }
                }
                QuantFormat::Int4 => {
                    let rb = self.format.row_bytes(self.cols);
                    let row = &self.data[r * rb..(r + 1) * rb];
                    let sc = &self.scales[r * ng..(r + 1) * ng];
                    for j in 0..nc {
                        let c = c0 + j;
                        let b = row[c / 2];
                        let nib = if c % 2 == 0 { b & 0x0f } else { b >> 4 };
                        let q = ((nib << 4) as i8) >> 4;
                        out[(i, j)] = sc[c / self.group_size].to_f32() * q as f32;
                    }
                }
            }
        }
    }

    /// The dense matrix this represents.
    pub fn to_dense(&self) -> Mat<f32> {
        let mut w = Mat::<f32>::zeros(self.rows, self.cols);
        self.dequantize_tile(0, 0, w.as_mut());
        w
    }

    /// `y = W x` (`x`: `d_in × T`, `y`: `d_out × T`), dequantizing one
    /// [`TILE_ROWS`] × [`TILE_COLS`] tile at a time; row tiles in parallel.
    pub fn forward(&self, x: MatRef<'_, f32>, y: MatMut<'_, f32>) {
        assert_eq!(
            x.nrows(),
            self.cols,
            "quantized forward: input rows != d_in"
        );
        assert_eq!(
            (y.nrows(), y.ncols()),
            (self.rows, x.ncols()),
            "quantized forward: output shape"
        );
        y.par_row_chunks_mut(TILE_ROWS)
            .enumerate()
            .for_each(|(t, mut yt)| {
                let r0 = t * TILE_ROWS;
                let nr = yt.nrows();
                let mut tile = Mat::<f32>::zeros(nr, TILE_COLS.min(self.cols));
                let mut c0 = 0;
                while c0 < self.cols {
                    let nc = TILE_COLS.min(self.cols - c0);
                    let mut tv = tile.as_mut().subcols_mut(0, nc);
                    self.dequantize_tile(r0, c0, tv.as_mut());
                    let accum = if c0 == 0 { Accum::Replace } else { Accum::Add };
                    matmul(
                        yt.as_mut(),
                        accum,
                        tile.as_ref().subcols(0, nc),
                        x.subrows(c0, nc),
                        1.0f32,
                        Par::Seq,
                    );
                    c0 += nc;
                }
                if self.cols == 0 {
                    yt.fill(0.0);
                }
            });
    }

    /// A short description (`int4(g=128)`, `int8(per-channel)`, `f16`).
    pub fn describe(&self) -> String {
        match self.format {
            QuantFormat::F16 => "f16".into(),
            f if self.group_size >= self.cols => format!("{}(per-channel)", f.name()),
            f => format!("{}(g={})", f.name(), self.group_size),
        }
    }
}

fn param(name: &str, detail: &str) -> CoreError {
    CoreError::Parameter {
        name: name.into(),
        detail: detail.into(),
    }
}

fn shape(what: &str, expected: (usize, usize), got: (usize, usize)) -> CoreError {
    CoreError::Shape {
        what: what.into(),
        expected,
        got,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes_for(rows: usize, cols: usize, f: QuantFormat) -> Vec<i8> {
        let span = (f.qmax() - f.qmin() + 1) as usize;
        (0..rows * cols)
            .map(|i| (f.qmin() + ((i * 7 + 3) % span) as i32) as i8)
            .collect()
    }

    #[test]
    fn int4_packing_round_trips_every_code_including_odd_rows() {
        for cols in [1, 5, 8, 13] {
            let (rows, f) = (3, QuantFormat::Int4);
            let codes = codes_for(rows, cols, f);
            let ng = cols.div_ceil(4);
            let scales = vec![f16::from_f32(0.5); rows * ng];
            let q = QuantMatrix::from_codes(rows, cols, f, 4, &codes, scales).unwrap();
            assert_eq!(q.data().len(), rows * cols.div_ceil(2));
            for r in 0..rows {
                for j in 0..cols {
                    assert_eq!(q.code(r, j), codes[r * cols + j]);
                }
            }
            let w = q.to_dense();
            assert_eq!(w[(1, cols - 1)], 0.5 * codes[2 * cols - 1] as f32);
        }
    }

    #[test]
    fn codes_out_of_range_and_bad_lengths_are_refused() {
        let f = QuantFormat::Int4;
        assert!(QuantMatrix::from_codes(1, 2, f, 2, &[8, 0], vec![f16::ONE]).is_err());
        assert!(QuantMatrix::from_codes(1, 2, f, 2, &[7], vec![f16::ONE]).is_err());
        assert!(QuantMatrix::from_parts(2, 3, f, 3, vec![0; 3], vec![f16::ONE; 2]).is_err());
        assert!(QuantMatrix::from_parts(2, 3, f, 3, vec![0; 4], vec![f16::ONE; 2]).is_ok());
    }

    /// The tiled forward equals the dense product of the dequantized matrix, for shapes that
    /// are not multiples of the tile sizes.
    #[test]
    fn tiled_forward_equals_dequantized_dense_forward() {
        for f in [QuantFormat::Int4, QuantFormat::Int8] {
            let (rows, cols, g) = (TILE_ROWS + 7, TILE_COLS + 45, 32);
            let codes = codes_for(rows, cols, f);
            let ng = cols.div_ceil(g);
            let scales = (0..rows * ng)
                .map(|i| f16::from_f32(0.01 + (i % 13) as f32 * 0.003))
                .collect();
            let q = QuantMatrix::from_codes(rows, cols, f, g, &codes, scales).unwrap();
            let x = Mat::<f32>::from_fn(cols, 9, |i, t| ((i * 5 + t * 11) % 17) as f32 - 8.0);
            let mut y = Mat::<f32>::zeros(rows, 9);
            q.forward(x.as_ref(), y.as_mut());
            let w = q.to_dense();
            let yd = &w * &x;
            for t in 0..9 {
                for i in 0..rows {
                    let tol = 1e-5 * yd[(i, t)].abs().max(1.0);
                    assert!((y[(i, t)] - yd[(i, t)]).abs() <= tol, "{f:?} {i} {t}");
                }
            }
        }
        let w = Mat::<f32>::from_fn(70, 600, |i, j| ((i * 3 + j) % 11) as f32 * 0.25 - 1.0);
        let q = QuantMatrix::f16_from(w.as_ref());
        assert_eq!(q.to_dense(), w, "these values are exact in f16");
        let x = Mat::<f32>::from_fn(600, 3, |i, t| ((i + t) % 5) as f32);
        let mut y = Mat::<f32>::zeros(70, 3);
        q.forward(x.as_ref(), y.as_mut());
        let yd = &w * &x;
        for t in 0..3 {
            for i in 0..70 {
                assert!((y[(i, t)] - yd[(i, t)]).abs() <= 1e-4 * yd[(i, t)].abs().max(1.0));
            }
        }
    }

    #[test]
    fn byte_counts_match_the_stored_buffers() {
        let f = QuantFormat::Int4;
        let codes = codes_for(5, 11, f);
        let q = QuantMatrix::from_codes(5, 11, f, 4, &codes, vec![f16::ONE; 15]).unwrap();
        assert_eq!(q.storage_bytes(), f.matrix_bytes(5, 11, 4));
        assert_eq!(q.storage_bytes(), 5 * 6 + 2 * 15);
    }
}
