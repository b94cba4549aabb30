//! The compact format of a compressed model (format version 2; a file that uses no version-2
//! representation is written as version 1, see [`required_version`]).
//!
//! A folder holding:
//! - `manifest.json`: [`Manifest`], the format version, the base model and its SHA-256, the
//!   method and its parameters, the calibration used, and for every decoder linear its
//!   representation as a [`LinearRepr`] tree naming the tensors that store it;
//! - `model.safetensors`: every stored tensor (f32): the factors of compressed linears, the
//!   untouched dense linears, embeddings, norms;
//! - `config.json` and `tokenizer.json` of the base model, so that the folder runs alone.
//!
//! Each file is written to a temporary file in the folder and renamed; `manifest.json` is
//! written last, so a folder without it is never taken for a complete output. The manifest
//! records the SHA-256 of `model.safetensors`, checked on load.
//! See `docs/format.md`.

use crate::atomic::write_bytes_atomic;
use crate::safetensors::{write_safetensors_with, Dtype, SafetensorsFile, TensorHeader};
use crate::IoError;
use llm_compress_core::{
    GroupAxis, Linear, Mat, MatRef, NmSparse, QuantFormat, QuantMatrix, QuantSparse,
    SparsityPattern,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, Weak};

/// Newest version this crate reads and writes; readers reject newer versions. Version 2 adds
/// [`LinearRepr::QuantizedSparse`], version 3 sharded tensor files
/// ([`Manifest::tensor_files`]); a manifest records the lowest version able to read it
/// ([`required_version`], [`SHARDED_VERSION`]).
pub const FORMAT_VERSION: u32 = 3;
/// The format version of a folder whose tensors are sharded ([`Manifest::tensor_files`]).
pub const SHARDED_VERSION: u32 = 3;
/// File name of the manifest inside an output folder.
pub const MANIFEST: &str = "manifest.json";
/// File name of the tensor file inside an output folder.
pub const TENSORS: &str = "model.safetensors";

/// How one linear is stored, naming its tensors in `model.safetensors`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LinearRepr {
    /// A dense `[d_out, d_in]` f32 tensor.
    Dense {
        /// The tensor's name.
        tensor: String,
        /// `[d_out, d_in]`.
        shape: [usize; 2],
    },
    /// `y = second(first(x))`.
    LowRank {
        /// Inner dimension `k`.
        rank: usize,
        /// The `d_in → k` factor.
        first: Box<LinearRepr>,
        /// The `k → d_out` factor.
        second: Box<LinearRepr>,
    },
    /// A pruned weight, packed ([`NmSparse`]): `values` (f32 `[nnz]`, the kept weights line
    /// by line) and `mask` (u8 `[lines, ⌈len/8⌉]`, bit set = kept), lines along `axis`
    /// (`inputs`: rows, `outputs`: columns); `pattern` is `N:M` or `unstructured`.
    Sparse {
        /// `[d_out, d_in]`.
        shape: [usize; 2],
        /// `N:M` or `unstructured`.
        pattern: String,
        /// The grouping axis: `inputs` or `outputs`.
        axis: String,
        /// Tensor of the kept values.
        values: String,
        /// Tensor of the packed keep mask.
        mask: String,
    },
    /// `y = coeff(basis(x))` with a basis shared by every linear named in `group` (Basis
    /// Sharing): all of them name the same basis tensor, stored once; loading through a
    /// [`BasisCache`] gives them one shared buffer again.
    Shared {
        /// Inner dimension `k`.
        rank: usize,
        /// The shared basis (stored once, listed under `bases`).
        basis: Box<LinearRepr>,
        /// The linears (`layers.0.q`, `layers.1.q`, ...) that read this basis.
        group: Vec<String>,
        /// This layer's coefficients.
        coeff: Box<LinearRepr>,
    },
    /// Quantized values (LSAQ): `format` is `int8` (I8 `[d_out, d_in]`), `int4` (U8
    /// `[d_out, ceil(d_in/2)]`, two codes per byte, even column in the low nibble) or `f16`
    /// (F16 `[d_out, d_in]`); integer formats have F16 `scales` `[d_out, ceil(d_in/group_size)]`.
    Quantized {
        /// `int8`, `int4` or `f16`.
        format: String,
        /// `[d_out, d_in]`.
        shape: [usize; 2],
        /// Input columns per scale (`d_in`: one scale per output row).
        group_size: usize,
        /// Tensor of the packed values.
        data: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        /// Tensor of the f16 scales (absent for f16 values).
        scales: Option<String>,
    },
    /// A pruned weight with quantized kept values (LSAQ after pruning; format version 2):
    /// `mask`, `pattern` and `axis` as in [`LinearRepr::Sparse`]; `data` holds the kept values
    /// in the same order as `int8` (I8 `[nnz]`), `int4` (U8 `[ceil(nnz/2)]`, value `2k` in the
    /// low nibble of byte `k`) or `f16` (F16 `[nnz]`); integer formats have F16 `scales`
    /// `[d_out, ceil(d_in/group_size)]` (per output row and input-column group).
    QuantizedSparse {
        /// `int8`, `int4` or `f16`.
        format: String,
        /// `[d_out, d_in]`.
        shape: [usize; 2],
        /// Input columns per scale (`d_in`: one scale per output row).
        group_size: usize,
        /// `N:M` or `unstructured`.
        pattern: String,
        /// The grouping axis: `inputs` or `outputs`.
        axis: String,
        /// Tensor of the packed kept values.
        data: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        /// Tensor of the f16 scales (absent for f16 values).
        scales: Option<String>,
        /// Tensor of the packed keep mask.
        mask: String,
    },
}

impl LinearRepr {
    /// The name of one tensor this linear reads (in a sharded folder, the file holding it holds
    /// all of the linear's tensors).
    pub fn first_tensor(&self) -> &str {
        match self {
            LinearRepr::Dense { tensor, .. } => tensor,
            LinearRepr::LowRank { first, .. } => first.first_tensor(),
            LinearRepr::Sparse { values, .. } => values,
            LinearRepr::Shared { coeff, .. } => coeff.first_tensor(),
            LinearRepr::Quantized { data, .. } | LinearRepr::QuantizedSparse { data, .. } => data,
        }
    }

    /// The lowest format version that can read this representation.
    pub fn required_version(&self) -> u32 {
        match self {
            LinearRepr::QuantizedSparse { .. } => 2,
            LinearRepr::Dense { .. } | LinearRepr::Sparse { .. } | LinearRepr::Quantized { .. } => {
                1
            }
            LinearRepr::LowRank { first, second, .. } => {
                first.required_version().max(second.required_version())
            }
            LinearRepr::Shared { basis, coeff, .. } => {
                basis.required_version().max(coeff.required_version())
            }
        }
    }
}

/// The lowest format version that can read a manifest with these linears (1 unless a
/// version-2 representation is used), so that older readers keep reading what they can.
pub fn required_version<'a>(linears: impl IntoIterator<Item = &'a LinearRepr>) -> u32 {
    linears
        .into_iter()
        .map(LinearRepr::required_version)
        .max()
        .unwrap_or(1)
}

/// The base model a compressed model came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BaseModel {
    /// File name inside the folder.
    pub path: String,
    /// `safetensors`.
    pub format: String,
    /// SHA-256 of the file, hex.
    pub sha256: String,
}

/// The manifest of a compact output folder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The format version ([`FORMAT_VERSION`] or lower).
    pub format_version: u32,
    /// `llm-compress <version>`.
    pub producer: String,
    /// What the folder was compressed from.
    pub base_model: BaseModel,
    /// Method name and parameters (free-form JSON: ratio, rank rule, update, ...).
    pub method: serde_json::Value,
    /// Calibration used (text source, windows, seq_len, seed), if any.
    pub calibration: serde_json::Value,
    /// Decoder linears by name (`layers.3.q`).
    pub linears: BTreeMap<String, LinearRepr>,
    /// Decoder-linear parameters of the base model.
    pub linear_params_before: usize,
    /// Decoder-linear parameters stored (a shared basis once).
    pub linear_params_after: usize,
    /// SHA-256 of the tensor file(s) (hex): of `model.safetensors`, or of the bytes of every
    /// file in [`Manifest::tensor_files`] concatenated in that order.
    pub tensors_sha256: String,
    /// The tensor files when the tensors are sharded (format version 3; written by the
    /// layer-streamed writer, one file per decoder layer): plain file names inside the folder,
    /// in order. Empty means the single file `model.safetensors`. Every linear's tensors live
    /// in one file.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tensor_files: Vec<String>,
}

impl Manifest {
    /// The tensor files of the folder, in order: [`Manifest::tensor_files`], or
    /// `model.safetensors`.
    pub fn tensor_file_names(&self) -> Vec<String> {
        if self.tensor_files.is_empty() {
            vec![TENSORS.to_string()]
        } else {
            self.tensor_files.clone()
        }
    }
}

/// A tensor to be written, borrowed from where it lives (no copy is made for f32 data).
#[derive(Clone, Debug)]
pub enum TensorSource<'a> {
    /// A matrix, written row-major as `[rows, cols]`.
    Matrix(MatRef<'a, f32>),
    /// A vector, written as `[len]`.
    Vector(&'a [f32]),
    /// Raw little-endian bytes of a tensor of another dtype (packed indices, quantized values,
    /// f16 copies): `data.len()` must equal the product of `shape` times `dtype.size()`.
    Bytes {
        /// Element type.
        dtype: Dtype,
        /// Dimensions, outermost first.
        shape: Vec<usize>,
        /// Little-endian bytes.
        data: std::borrow::Cow<'a, [u8]>,
    },
}

impl TensorSource<'_> {
    /// The tensor's dimensions.
    pub fn shape(&self) -> Vec<usize> {
        match self {
            TensorSource::Matrix(m) => vec![m.nrows(), m.ncols()],
            TensorSource::Vector(v) => vec![v.len()],
            TensorSource::Bytes { shape, .. } => shape.clone(),
        }
    }

    /// The dtype written to the file.
    pub fn dtype(&self) -> Dtype {
        match self {
            TensorSource::Matrix(_) | TensorSource::Vector(_) => Dtype::F32,
            TensorSource::Bytes { dtype, .. } => *dtype,
        }
    }

    /// Bytes this tensor occupies in the file.
    pub fn byte_len(&self) -> usize {
        self.shape().iter().product::<usize>() * self.dtype().size()
    }

    /// Write the f32 little-endian bytes, row-major.
    pub fn write_to(&self, w: &mut dyn std::io::Write) -> std::io::Result<()> {
        match self {
            TensorSource::Matrix(m) => {
                let mut row = Vec::with_capacity(4 * m.ncols());
                for i in 0..m.nrows() {
                    row.clear();
                    for j in 0..m.ncols() {
                        row.extend_from_slice(&m[(i, j)].to_le_bytes());
                    }
                    w.write_all(&row)?;
                }
                Ok(())
            }
            TensorSource::Vector(v) => {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                w.write_all(&bytes)
            }
            TensorSource::Bytes { data, .. } => {
                if data.len() != self.byte_len() {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        format!(
                            "tensor of shape {:?} {} needs {} bytes, got {}",
                            self.shape(),
                            self.dtype().name(),
                            self.byte_len(),
                            data.len()
                        ),
                    ));
                }
                w.write_all(data)
            }
        }
    }
}

/// Name the tensors that store `lin` under `prefix` (borrowing them into `out`) and return its
/// description.
pub fn linear_to_tensors<'a>(
    prefix: &str,
    lin: &'a Linear,
    out: &mut BTreeMap<String, TensorSource<'a>>,
) -> LinearRepr {
    match lin {
        Linear::Dense(w) => {
            let name = format!("{prefix}.weight");
            out.insert(name.clone(), TensorSource::Matrix(w.as_ref()));
            LinearRepr::Dense {
                tensor: name,
                shape: [w.nrows(), w.ncols()],
            }
        }
        Linear::LowRank { first, second } => LinearRepr::LowRank {
            rank: first.shape().0,
            first: Box::new(linear_to_tensors(&format!("{prefix}.first"), first, out)),
            second: Box::new(linear_to_tensors(&format!("{prefix}.second"), second, out)),
        },
        Linear::Sparse(sp) => {
            let (values, mask) = (format!("{prefix}.values"), format!("{prefix}.mask"));
            out.insert(values.clone(), TensorSource::Vector(sp.values()));
            out.insert(
                mask.clone(),
                TensorSource::Bytes {
                    dtype: Dtype::U8,
                    shape: sp.mask_shape().to_vec(),
                    data: std::borrow::Cow::Borrowed(sp.mask()),
                },
            );
            let (m, n) = sp.shape();
            LinearRepr::Sparse {
                shape: [m, n],
                pattern: sp.pattern().to_string(),
                axis: sp.axis().name().into(),
                values,
                mask,
            }
        }
        Linear::Shared { basis, coeff } => {
            shared_to_tensors(prefix, &format!("{prefix}.basis"), &[], basis, coeff, out)
        }
        Linear::Quantized(q) => quantized_to_tensors(prefix, q, out),
        Linear::QuantizedSparse(q) => quantized_sparse_to_tensors(prefix, q, out),
    }
}

fn quant_dtype(format: QuantFormat) -> Dtype {
    match format {
        QuantFormat::Int8 => Dtype::I8,
        QuantFormat::Int4 => Dtype::U8,
        QuantFormat::F16 => Dtype::F16,
    }
}

fn quantized_sparse_to_tensors<'a>(
    prefix: &str,
    q: &'a QuantSparse,
    out: &mut BTreeMap<String, TensorSource<'a>>,
) -> LinearRepr {
    let (rows, cols) = q.shape();
    let format = q.format();
    let (data, mask) = (format!("{prefix}.qvalues"), format!("{prefix}.mask"));
    let len = match format {
        QuantFormat::Int4 => q.nnz().div_ceil(2),
        _ => q.nnz(),
    };
    out.insert(
        data.clone(),
        TensorSource::Bytes {
            dtype: quant_dtype(format),
            shape: vec![len],
            data: std::borrow::Cow::Borrowed(q.data()),
        },
    );
    out.insert(
        mask.clone(),
        TensorSource::Bytes {
            dtype: Dtype::U8,
            shape: q.mask_shape().to_vec(),
            data: std::borrow::Cow::Borrowed(q.mask()),
        },
    );
    let scales = (format != QuantFormat::F16).then(|| {
        let name = format!("{prefix}.scales");
        let bytes: Vec<u8> = q.scales().iter().flat_map(|s| s.to_le_bytes()).collect();
        out.insert(
            name.clone(),
            TensorSource::Bytes {
                dtype: Dtype::F16,
                shape: vec![rows, q.groups_per_row()],
                data: std::borrow::Cow::Owned(bytes),
            },
        );
        name
    });
    LinearRepr::QuantizedSparse {
        format: format.name().into(),
        shape: [rows, cols],
        group_size: q.group_size(),
        pattern: q.pattern().to_string(),
        axis: q.axis().name().into(),
        data,
        scales,
        mask,
    }
}

fn quantized_to_tensors<'a>(
    prefix: &str,
    q: &'a QuantMatrix,
    out: &mut BTreeMap<String, TensorSource<'a>>,
) -> LinearRepr {
    let (rows, cols) = q.shape();
    let format = q.format();
    let data = format!("{prefix}.qweight");
    let dtype = match format {
        QuantFormat::Int8 => Dtype::I8,
        QuantFormat::Int4 => Dtype::U8,
        QuantFormat::F16 => Dtype::F16,
    };
    let width = match format {
        QuantFormat::Int4 => cols.div_ceil(2),
        _ => cols,
    };
    out.insert(
        data.clone(),
        TensorSource::Bytes {
            dtype,
            shape: vec![rows, width],
            data: std::borrow::Cow::Borrowed(q.data()),
        },
    );
    let scales = (format != QuantFormat::F16).then(|| {
        let name = format!("{prefix}.scales");
        let bytes: Vec<u8> = q.scales().iter().flat_map(|s| s.to_le_bytes()).collect();
        out.insert(
            name.clone(),
            TensorSource::Bytes {
                dtype: Dtype::F16,
                shape: vec![rows, q.groups_per_row()],
                data: std::borrow::Cow::Owned(bytes),
            },
        );
        name
    });
    LinearRepr::Quantized {
        format: format.name().into(),
        shape: [rows, cols],
        group_size: q.group_size(),
        data,
        scales,
    }
}

/// Name the tensors of a shared linear: its basis under `basis_prefix` (the same for every
/// member of `group`, so the basis is stored once), its coefficient under `{prefix}.coeff`.
pub fn shared_to_tensors<'a>(
    prefix: &str,
    basis_prefix: &str,
    group: &[String],
    basis: &'a Linear,
    coeff: &'a Linear,
    out: &mut BTreeMap<String, TensorSource<'a>>,
) -> LinearRepr {
    LinearRepr::Shared {
        rank: basis.shape().0,
        basis: Box::new(linear_to_tensors(basis_prefix, basis, out)),
        group: group.to_vec(),
        coeff: Box::new(linear_to_tensors(&format!("{prefix}.coeff"), coeff, out)),
    }
}

/// The shared bases already loaded from one tensor file, by their description, so that every
/// linear of a group gets the same [`Arc`] buffer. Holds weak references: a basis lives as long
/// as a linear reading it.
#[derive(Debug, Default)]
pub struct BasisCache(Mutex<BTreeMap<String, Weak<Linear>>>);

/// [`linear_from_tensors`] that restores basis sharing through `cache`.
pub fn linear_from_tensors_cached(
    repr: &LinearRepr,
    file: &SafetensorsFile,
    cache: &BasisCache,
) -> Result<Linear, IoError> {
    match repr {
        LinearRepr::Shared {
            rank, basis, coeff, ..
        } => shared_from_tensors(*rank, basis, coeff, file, Some(cache)),
        other => linear_from_tensors(other, file),
    }
}

fn shared_from_tensors(
    rank: usize,
    basis: &LinearRepr,
    coeff: &LinearRepr,
    file: &SafetensorsFile,
    cache: Option<&BasisCache>,
) -> Result<Linear, IoError> {
    let invalid = |detail: String| IoError::InvalidField {
        path: file.path().into(),
        field: "shared".into(),
        detail,
    };
    let key = serde_json::to_string(basis).map_err(|e| invalid(e.to_string()))?;
    let cached = cache.and_then(|c| {
        c.0.lock()
            .ok()
            .and_then(|m| m.get(&key).and_then(Weak::upgrade))
    });
    let b = match cached {
        Some(b) => b,
        None => {
            let b = Arc::new(linear_from_tensors(basis, file)?);
            if let Some(c) = cache {
                let mut m =
                    c.0.lock()
                        .map_err(|_| invalid("basis cache poisoned".into()))?;
                m.insert(key, Arc::downgrade(&b));
            }
            b
        }
    };
    let c = linear_from_tensors(coeff, file)?;
    if b.shape().0 != rank || c.shape().1 != rank {
        return Err(invalid(format!(
            "manifest rank {rank}, basis {:?} and coefficient {:?}",
            b.shape(),
            c.shape()
        )));
    }
    Linear::shared(b, c).map_err(|e| invalid(e.to_string()))
}

/// Write `tensors` (f32) to a safetensors file atomically, streaming from their sources.
pub fn write_tensor_sources(
    path: &Path,
    tensors: &BTreeMap<String, TensorSource<'_>>,
) -> Result<(), IoError> {
    let headers: Vec<TensorHeader> = tensors
        .iter()
        .map(|(name, t)| TensorHeader {
            name: name.clone(),
            dtype: t.dtype(),
            shape: t.shape(),
        })
        .collect();
    // Never write NaN or ±inf silently: a method that produced them failed.
    for (name, t) in tensors {
        let bad = match t {
            TensorSource::Matrix(m) => (0..m.ncols())
                .flat_map(|j| (0..m.nrows()).map(move |i| m[(i, j)]))
                .find(|v| !v.is_finite()),
            TensorSource::Vector(v) => v.iter().copied().find(|v| !v.is_finite()),
            TensorSource::Bytes { .. } => None,
        };
        if let Some(v) = bad {
            return Err(IoError::InvalidField {
                path: path.into(),
                field: name.clone(),
                detail: format!("refusing to write a tensor holding {v} (not finite)"),
            });
        }
    }
    let sources: Vec<&TensorSource> = tensors.values().collect();
    let mut meta = BTreeMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    write_safetensors_with(path, &headers, &meta, |i, w| sources[i].write_to(w))
}

/// Rebuild a linear from its description and the tensor file.
pub fn linear_from_tensors(repr: &LinearRepr, file: &SafetensorsFile) -> Result<Linear, IoError> {
    match repr {
        LinearRepr::Dense { tensor, shape } => {
            let (s, data) = file.tensor_f32(tensor)?;
            if s != shape.to_vec() {
                return Err(IoError::InvalidField {
                    path: file.path().into(),
                    field: tensor.clone(),
                    detail: format!("manifest says shape {shape:?}, file has {s:?}"),
                });
            }
            crate::checkpoint::check_finite(file.path(), tensor, &data)?;
            let [m, n] = *shape;
            Ok(Linear::Dense(Mat::from_fn(m, n, |i, j| data[i * n + j])))
        }
        LinearRepr::LowRank {
            rank,
            first,
            second,
        } => {
            let f = linear_from_tensors(first, file)?;
            let s = linear_from_tensors(second, file)?;
            if f.shape().0 != *rank || s.shape().1 != *rank {
                return Err(IoError::InvalidField {
                    path: file.path().into(),
                    field: "rank".into(),
                    detail: format!(
                        "manifest rank {rank}, factors {:?} and {:?}",
                        f.shape(),
                        s.shape()
                    ),
                });
            }
            Linear::low_rank(f, s).map_err(|e| IoError::InvalidField {
                path: file.path().into(),
                field: "low_rank".into(),
                detail: e.to_string(),
            })
        }
        LinearRepr::Sparse {
            shape,
            pattern,
            axis,
            values,
            mask,
        } => {
            let invalid = |field: &str, detail: String| IoError::InvalidField {
                path: file.path().into(),
                field: field.into(),
                detail,
            };
            let pattern: SparsityPattern = pattern
                .parse()
                .map_err(|e: llm_compress_core::CoreError| invalid("pattern", e.to_string()))?;
            let axis = GroupAxis::parse(axis)
                .ok_or_else(|| invalid("axis", format!("`{axis}`: expected inputs or outputs")))?;
            let info = file.info(mask)?;
            if info.dtype != Dtype::U8 {
                return Err(invalid(
                    mask,
                    format!("dtype {}, expected U8", info.dtype.name()),
                ));
            }
            let mask_bytes = file.bytes(mask)?.to_vec();
            let (_, vals) = file.tensor_f32(values)?;
            let sp = NmSparse::from_parts(shape[0], shape[1], axis, pattern, mask_bytes, vals)
                .map_err(|e| invalid(values, e.to_string()))?;
            if info.shape != sp.mask_shape().to_vec() {
                return Err(invalid(
                    mask,
                    format!("shape {:?}, expected {:?}", info.shape, sp.mask_shape()),
                ));
            }
            Ok(Linear::Sparse(sp))
        }
        LinearRepr::Shared {
            rank, basis, coeff, ..
        } => shared_from_tensors(*rank, basis, coeff, file, None),
        LinearRepr::Quantized {
            format,
            shape,
            group_size,
            data,
            scales,
        } => quantized_from_tensors(format, *shape, *group_size, data, scales.as_deref(), file),
        LinearRepr::QuantizedSparse {
            format,
            shape,
            group_size,
            pattern,
            axis,
            data,
            scales,
            mask,
        } => {
            let bad = |field: &str, detail: String| IoError::InvalidField {
                path: file.path().into(),
                field: field.into(),
                detail,
            };
            let fmt = QuantFormat::parse(format)
                .ok_or_else(|| bad(data, format!("unknown quantized format `{format}`")))?;
            let pattern: SparsityPattern = pattern
                .parse()
                .map_err(|e: llm_compress_core::CoreError| bad("pattern", e.to_string()))?;
            let axis = GroupAxis::parse(axis)
                .ok_or_else(|| bad("axis", format!("`{axis}`: expected inputs or outputs")))?;
            for (name, dtype) in [
                (data.as_str(), quant_dtype(fmt)),
                (mask.as_str(), Dtype::U8),
            ] {
                let got = file.info(name)?.dtype;
                if got != dtype {
                    return Err(bad(
                        name,
                        format!("dtype {}, expected {}", got.name(), dtype.name()),
                    ));
                }
            }
            let scale_vals = read_scales(fmt, scales.as_deref(), data, file)?;
            let q = QuantSparse::from_parts(
                shape[0],
                shape[1],
                axis,
                pattern,
                file.bytes(mask)?.to_vec(),
                fmt,
                *group_size,
                file.bytes(data)?.to_vec(),
                scale_vals,
            )
            .map_err(|e| bad(data, e.to_string()))?;
            let info = file.info(mask)?;
            if info.shape != q.mask_shape().to_vec() {
                return Err(bad(
                    mask,
                    format!("shape {:?}, expected {:?}", info.shape, q.mask_shape()),
                ));
            }
            Ok(Linear::QuantizedSparse(q))
        }
    }
}

/// The F16 scales named by a quantized representation (none for f16 values).
fn read_scales(
    fmt: QuantFormat,
    scales: Option<&str>,
    data: &str,
    file: &SafetensorsFile,
) -> Result<Vec<half::f16>, IoError> {
    let bad = |field: &str, detail: String| IoError::InvalidField {
        path: file.path().into(),
        field: field.into(),
        detail,
    };
    match (fmt, scales) {
        (QuantFormat::F16, _) => Ok(Vec::new()),
        (_, None) => Err(bad(data, format!("{} tensor without scales", fmt.name()))),
        (_, Some(name)) => {
            if file.info(name)?.dtype != Dtype::F16 {
                return Err(bad(name, "scales must be F16".into()));
            }
            Ok(file
                .bytes(name)?
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]))
                .collect())
        }
    }
}

fn quantized_from_tensors(
    format: &str,
    [rows, cols]: [usize; 2],
    group_size: usize,
    data: &str,
    scales: Option<&str>,
    file: &SafetensorsFile,
) -> Result<Linear, IoError> {
    let bad = |field: &str, detail: String| IoError::InvalidField {
        path: file.path().into(),
        field: field.into(),
        detail,
    };
    let fmt = QuantFormat::parse(format)
        .ok_or_else(|| bad(data, format!("unknown quantized format `{format}`")))?;
    let want_dtype = match fmt {
        QuantFormat::Int8 => Dtype::I8,
        QuantFormat::Int4 => Dtype::U8,
        QuantFormat::F16 => Dtype::F16,
    };
    let info = file.info(data)?;
    if info.dtype != want_dtype {
        return Err(bad(
            data,
            format!(
                "{format} needs {}, file has {}",
                want_dtype.name(),
                info.dtype.name()
            ),
        ));
    }
    let bytes = file.bytes(data)?.to_vec();
    let scale_vals = match (fmt, scales) {
        (QuantFormat::F16, _) => Vec::new(),
        (_, None) => return Err(bad(data, format!("{format} tensor without scales"))),
        (_, Some(name)) => {
            if file.info(name)?.dtype != Dtype::F16 {
                return Err(bad(name, "scales must be F16".into()));
            }
            file.bytes(name)?
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]))
                .collect()
        }
    };
    QuantMatrix::from_parts(rows, cols, fmt, group_size, bytes, scale_vals)
        .map(Linear::Quantized)
        .map_err(|e| bad(data, e.to_string()))
}

/// SHA-256 of a file (hex).
pub fn file_sha256(path: &Path) -> Result<String, IoError> {
    files_sha256(std::slice::from_ref(&path.to_path_buf()))
}

/// SHA-256 over the bytes of `paths`, concatenated in order (hex), read in 1 MiB blocks.
pub fn files_sha256(paths: &[std::path::PathBuf]) -> Result<String, IoError> {
    use std::io::Read;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    for path in paths {
        let mut f = std::fs::File::open(path).map_err(|e| IoError::io(path, e))?;
        loop {
            let n = f.read(&mut buf).map_err(|e| IoError::io(path, e))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
    }
    Ok(format!("{:x}", h.finalize()))
}

/// Write a compact output folder: tensors, then `config.json` / `tokenizer.json`, then the
/// manifest (with the tensor file's hash) last.
pub fn write_compact(
    dir: &Path,
    tensors: &BTreeMap<String, TensorSource<'_>>,
    config_json: &serde_json::Value,
    tokenizer_json: Option<&serde_json::Value>,
    mut manifest: Manifest,
) -> Result<(), IoError> {
    std::fs::create_dir_all(dir).map_err(|e| IoError::io(dir, e))?;
    // A stale manifest must not describe the new tensors while they are being written.
    let mpath = dir.join(MANIFEST);
    if mpath.exists() {
        std::fs::remove_file(&mpath).map_err(|e| IoError::io(&mpath, e))?;
    }
    let tpath = dir.join(TENSORS);
    write_tensor_sources(&tpath, tensors)?;
    manifest.tensors_sha256 = file_sha256(&tpath)?;
    write_json_atomic(&dir.join("config.json"), config_json)?;
    if let Some(t) = tokenizer_json {
        write_json_atomic(&dir.join("tokenizer.json"), t)?;
    }
    let m = serde_json::to_value(&manifest).map_err(|source| IoError::Json {
        path: mpath.clone(),
        source,
    })?;
    write_json_atomic(&mpath, &m)
}

/// Write `value` as pretty JSON to `path`, atomically.
pub fn write_json_atomic(path: &Path, value: &serde_json::Value) -> Result<(), IoError> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|source| IoError::Json {
        path: path.into(),
        source,
    })?;
    write_bytes_atomic(path, &bytes)
}

/// Read and check a manifest (version, tensor file hash).
pub fn read_manifest(dir: &Path, verify_hash: bool) -> Result<Manifest, IoError> {
    let mpath = dir.join(MANIFEST);
    let text = std::fs::read_to_string(&mpath).map_err(|e| IoError::io(&mpath, e))?;
    let m: Manifest = serde_json::from_str(&text).map_err(|source| IoError::Json {
        path: mpath.clone(),
        source,
    })?;
    if m.format_version > FORMAT_VERSION {
        return Err(IoError::Unsupported {
            path: mpath,
            what: "compact format version",
            detail: format!(
                "{} (this build reads up to {FORMAT_VERSION})",
                m.format_version
            ),
        });
    }
    let names = m.tensor_file_names();
    for name in &names {
        if name.contains('/') || name.contains('\\') || name.starts_with('.') {
            return Err(IoError::InvalidField {
                path: mpath,
                field: "tensor_files".into(),
                detail: format!("`{name}` is not a plain file name"),
            });
        }
    }
    if verify_hash {
        let paths: Vec<std::path::PathBuf> = names.iter().map(|n| dir.join(n)).collect();
        let got = files_sha256(&paths)?;
        if got != m.tensors_sha256 {
            return Err(IoError::InvalidField {
                path: paths[0].clone(),
                field: "tensors_sha256".into(),
                detail: format!(
                    "file hash {got} differs from the manifest's {}",
                    m.tensors_sha256
                ),
            });
        }
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_byte_tensors_round_trip_and_wrong_lengths_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.safetensors");
        let packed = [0b1010_0101u8, 7, 255];
        let mut tensors = BTreeMap::new();
        tensors.insert(
            "idx".to_string(),
            TensorSource::Bytes {
                dtype: Dtype::U8,
                shape: vec![3],
                data: std::borrow::Cow::Borrowed(&packed[..]),
            },
        );
        tensors.insert("v".to_string(), TensorSource::Vector(&[1.5, -2.0]));
        write_tensor_sources(&path, &tensors).unwrap();
        let f = SafetensorsFile::open(&path).unwrap();
        assert_eq!(f.info("idx").unwrap().dtype, Dtype::U8);
        assert_eq!(f.bytes("idx").unwrap(), &packed[..]);
        assert_eq!(f.tensor_f32("v").unwrap().1, vec![1.5, -2.0]);
        tensors.insert(
            "bad".to_string(),
            TensorSource::Bytes {
                dtype: Dtype::F16,
                shape: vec![3],
                data: std::borrow::Cow::Owned(vec![0u8; 5]),
            },
        );
        let bad = dir.path().join("bad.safetensors");
        assert!(write_tensor_sources(&bad, &tensors).is_err());
        assert!(!bad.exists());
    }

    #[test]
    fn low_rank_round_trip_through_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        let a = Mat::<f32>::from_fn(2, 5, |i, j| i as f32 * 0.5 - j as f32);
        let b = Mat::<f32>::from_fn(3, 2, |i, j| (i + 2 * j) as f32 / 7.0);
        let lin = Linear::low_rank(Linear::Dense(a), Linear::Dense(b)).unwrap();
        let mut tensors = BTreeMap::new();
        let repr = linear_to_tensors("model.layers.0.self_attn.q_proj", &lin, &mut tensors);
        let mut linears = BTreeMap::new();
        linears.insert("layers.0.q".to_string(), repr.clone());
        let manifest = Manifest {
            format_version: FORMAT_VERSION,
            producer: "test".into(),
            base_model: BaseModel {
                path: "x".into(),
                format: "gguf".into(),
                sha256: "0".into(),
            },
            method: serde_json::json!({"name": "svd-llm"}),
            calibration: serde_json::Value::Null,
            linears,
            linear_params_before: 15,
            linear_params_after: 16,
            tensors_sha256: String::new(),
            tensor_files: Vec::new(),
        };
        write_compact(dir.path(), &tensors, &serde_json::json!({}), None, manifest).unwrap();
        let m = read_manifest(dir.path(), true).unwrap();
        let f = SafetensorsFile::open(&dir.path().join(TENSORS)).unwrap();
        let back = linear_from_tensors(&m.linears["layers.0.q"], &f).unwrap();
        assert_eq!(back.rank(), Some(2));
        let (d0, d1) = (lin.to_dense(), back.to_dense());
        assert_eq!(d0, d1);
        // A modified tensor file is detected.
        let tp = dir.path().join(TENSORS);
        let mut bytes = std::fs::read(&tp).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&tp, bytes).unwrap();
        assert!(read_manifest(dir.path(), true).is_err());
    }
}
