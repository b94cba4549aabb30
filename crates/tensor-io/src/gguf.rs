//! GGUF v2/v3: reader (by mmap, tensors dequantized on demand), Hugging Face name and layout
//! mapping, and a minimal atomic writer.
//!
//! # Format
//! As specified in ggml's `docs/gguf.md` and implemented by `ggml/src/gguf.cpp`; everything is
//! little-endian:
//!
//! ```text
//! magic "GGUF" | version: u32 | tensor_count: u64 | kv_count: u64
//! kv_count × { key: string | value_type: u32 | value }
//! tensor_count × { name: string | n_dims: u32 | dims: u64[n_dims] | ggml_type: u32 | offset: u64 }
//! padding to `general.alignment` (default 32)
//! tensor data; each tensor at data_start + offset, offset a multiple of the alignment
//! string = { len: u64 | UTF-8 bytes }    array = { elem_type: u32 | len: u64 | elements }
//! ```
//!
//! `dims` are stored innermost first (ggml's `ne[0]` is the row length); [`TensorInfo::shape`]
//! and [`GgufFile::tensor_f32`] give the PyTorch order (outermost first). The block layouts of
//! the quantized types are documented in [`crate::dequant`] (from ggml-common.h /
//! ggml-quants.c).
//!
//! Version 1 (32-bit counts) and big-endian files are refused with [`IoError::Unsupported`].
//!
//! # Hostile files
//! Every length read from the file is checked against the bytes that remain *before* anything
//! is allocated: string and array lengths, the key/value and tensor counts (each entry has a
//! minimum encoded size), array nesting depth, the number of dimensions (at most 4), the
//! element count (checked products), and each tensor's data range, which must lie inside the
//! file. Structural damage gives [`IoError::Malformed`]; a ggml type id this crate does not
//! know gives [`IoError::Unsupported`]. File bytes are only read through bounds-checked
//! accessors; nothing here panics on input.
//!
//! # Hugging Face layout
//! llama.cpp's `convert_hf_to_gguf.py` permutes the rows of the q and k projections of
//! Llama-family models (not Qwen2) for its RoPE convention:
//! `w.reshape(n_head, 2, head_dim/2, n_in).swapaxes(1, 2).reshape(w.shape)`, i.e.
//! `gguf_row[h*hd + 2*i + j] = hf_row[h*hd + j*hd/2 + i]`. [`GgufFile::tensor_hf`] undoes it
//! ([`unpermute_qk_gguf_to_hf`]) and [`GgufWriter::add_hf_tensor`] applies it
//! ([`permute_qk_hf_to_gguf`]).

use crate::config::{Architecture, ModelConfig};
use crate::dequant::{self, GgmlType};
use crate::IoError;
use memmap2::Mmap;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

const FORMAT: &str = "gguf";

/// The four magic bytes at the start of every GGUF file.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// Alignment of the tensor data when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml's `GGML_MAX_DIMS`.
pub const MAX_DIMS: usize = 4;
/// Deepest nesting of metadata arrays accepted (arrays of arrays of ...).
pub const MAX_ARRAY_DEPTH: usize = 8;
/// Total metadata array elements accepted in one file (bounds the memory a small file can make
/// the reader allocate; the largest real vocabularies use a few million).
pub const MAX_METADATA_ELEMENTS: u64 = 1 << 24;

/// Minimum encoded size of one key/value pair (empty key, type, 1-byte value).
const MIN_KV_BYTES: usize = 8 + 4 + 1;
/// Minimum encoded size of one tensor info (empty name, 0 dims, type, offset).
const MIN_TENSOR_INFO_BYTES: usize = 8 + 4 + 4 + 8;

// ---------------------------------------------------------------------------------------------
// Metadata values
// ---------------------------------------------------------------------------------------------

/// The type tag of a GGUF metadata value (`enum gguf_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MetadataType {
    /// Unsigned 8-bit integer.
    U8 = 0,
    /// Signed 8-bit integer.
    I8 = 1,
    /// Unsigned 16-bit integer.
    U16 = 2,
    /// Signed 16-bit integer.
    I16 = 3,
    /// Unsigned 32-bit integer.
    U32 = 4,
    /// Signed 32-bit integer.
    I32 = 5,
    /// 32-bit float.
    F32 = 6,
    /// Boolean (one byte, 0 or 1).
    Bool = 7,
    /// UTF-8 string (u64 length, then bytes).
    String = 8,
    /// Array (element type, u64 count, then the elements).
    Array = 9,
    /// Unsigned 64-bit integer.
    U64 = 10,
    /// Signed 64-bit integer.
    I64 = 11,
    /// 64-bit float.
    F64 = 12,
}

impl MetadataType {
    /// The type with GGUF id `id`.
    pub fn from_id(id: u32) -> Option<Self> {
        use MetadataType::*;
        Some(match id {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => String,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }

    /// The GGUF id.
    pub fn id(self) -> u32 {
        self as u32
    }

    /// Smallest number of bytes one value of this type takes in a file.
    fn min_encoded_size(self) -> usize {
        use MetadataType::*;
        match self {
            U8 | I8 | Bool => 1,
            U16 | I16 => 2,
            U32 | I32 | F32 => 4,
            U64 | I64 | F64 | String => 8,
            Array => 12,
        }
    }
}

/// One GGUF metadata value. Arrays may hold any type, including arrays (each nested array has
/// its own element type); the elements of one array all have the same type.
#[derive(Clone, Debug, PartialEq)]
pub enum MetadataValue {
    /// A value of type `u8`.
    U8(u8),
    /// A value of type `i8`.
    I8(i8),
    /// A value of type `u16`.
    U16(u16),
    /// A value of type `i16`.
    I16(i16),
    /// A value of type `u32`.
    U32(u32),
    /// A value of type `i32`.
    I32(i32),
    /// A value of type `f32`.
    F32(f32),
    /// A boolean.
    Bool(bool),
    /// A UTF-8 string.
    String(String),
    /// An array; every element has the same type (arrays may nest).
    Array(Vec<MetadataValue>),
    /// A value of type `u64`.
    U64(u64),
    /// A value of type `i64`.
    I64(i64),
    /// A value of type `f64`.
    F64(f64),
}

impl MetadataValue {
    /// The type tag of this value.
    pub fn value_type(&self) -> MetadataType {
        use MetadataValue as V;
        match self {
            V::U8(_) => MetadataType::U8,
            V::I8(_) => MetadataType::I8,
            V::U16(_) => MetadataType::U16,
            V::I16(_) => MetadataType::I16,
            V::U32(_) => MetadataType::U32,
            V::I32(_) => MetadataType::I32,
            V::F32(_) => MetadataType::F32,
            V::Bool(_) => MetadataType::Bool,
            V::String(_) => MetadataType::String,
            V::Array(_) => MetadataType::Array,
            V::U64(_) => MetadataType::U64,
            V::I64(_) => MetadataType::I64,
            V::F64(_) => MetadataType::F64,
        }
    }

    /// Any integer value that is non-negative, as `u64`.
    pub fn as_u64(&self) -> Option<u64> {
        use MetadataValue as V;
        match *self {
            V::U8(x) => Some(x.into()),
            V::U16(x) => Some(x.into()),
            V::U32(x) => Some(x.into()),
            V::U64(x) => Some(x),
            V::I8(x) => u64::try_from(x).ok(),
            V::I16(x) => u64::try_from(x).ok(),
            V::I32(x) => u64::try_from(x).ok(),
            V::I64(x) => u64::try_from(x).ok(),
            _ => None,
        }
    }

    /// Any integer value that fits, as `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        use MetadataValue as V;
        match *self {
            V::U8(x) => Some(x.into()),
            V::U16(x) => Some(x.into()),
            V::U32(x) => Some(x.into()),
            V::U64(x) => i64::try_from(x).ok(),
            V::I8(x) => Some(x.into()),
            V::I16(x) => Some(x.into()),
            V::I32(x) => Some(x.into()),
            V::I64(x) => Some(x),
            _ => None,
        }
    }

    /// A non-negative integer that fits in `usize`.
    pub fn as_usize(&self) -> Option<usize> {
        self.as_u64().and_then(|x| usize::try_from(x).ok())
    }

    /// A non-negative integer that fits in `u32`.
    pub fn as_u32(&self) -> Option<u32> {
        self.as_u64().and_then(|x| u32::try_from(x).ok())
    }

    /// A float (F32 widened exactly, F64) or an integer (converted), as `f64`.
    pub fn as_f64(&self) -> Option<f64> {
        use MetadataValue as V;
        match *self {
            V::F32(x) => Some(x.into()),
            V::F64(x) => Some(x),
            _ => self.as_i64().map(|x| x as f64),
        }
    }

    /// Like [`as_f64`](Self::as_f64), but an F32 is widened through its shortest decimal
    /// representation, so that `1e-5f32` gives `1e-5` rather than `9.99999974737875e-6`: GGUF
    /// stores hyper-parameters as F32 while `config.json` has the decimal value.
    pub fn as_f64_decimal(&self) -> Option<f64> {
        match *self {
            MetadataValue::F32(x) => Some(f32_to_f64_decimal(x)),
            _ => self.as_f64(),
        }
    }

    /// The value of a `Bool`, `None` for any other type.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            MetadataValue::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// The value of a `String`, `None` for any other type.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetadataValue::String(s) => Some(s),
            _ => None,
        }
    }

    /// The elements of an `Array`, `None` for any other type.
    pub fn as_array(&self) -> Option<&[MetadataValue]> {
        match self {
            MetadataValue::Array(a) => Some(a),
            _ => None,
        }
    }

    /// A short description for error messages (arrays and long strings abbreviated).
    pub fn brief(&self) -> String {
        match self {
            MetadataValue::Array(items) => match items.first() {
                Some(first) => format!("array of {} {:?}", items.len(), first.value_type()),
                None => "empty array".into(),
            },
            MetadataValue::String(s) if s.chars().count() > 64 => {
                let head: String = s.chars().take(64).collect();
                format!("{head:?}... ({} bytes)", s.len())
            }
            other => format!("{other:?}"),
        }
    }

    /// Check that every array (recursively) is homogeneous, as the format requires.
    fn check_homogeneous(&self) -> Result<(), String> {
        if let MetadataValue::Array(items) = self {
            if let Some(first) = items.first() {
                let t = first.value_type();
                for (i, v) in items.iter().enumerate() {
                    if v.value_type() != t {
                        return Err(format!(
                            "array element {i} is {:?} but element 0 is {t:?}; GGUF arrays are \
                             homogeneous",
                            v.value_type()
                        ));
                    }
                    v.check_homogeneous()?;
                }
            }
        }
        Ok(())
    }
}

fn f32_to_f64_decimal(x: f32) -> f64 {
    if x.is_finite() {
        format!("{x}").parse::<f64>().unwrap_or(f64::from(x))
    } else {
        f64::from(x)
    }
}

macro_rules! from_scalar {
    ($($t:ty => $v:ident),*) => {$(
        impl From<$t> for MetadataValue {
            fn from(x: $t) -> Self {
                MetadataValue::$v(x)
            }
        }
    )*};
}
from_scalar!(u8 => U8, i8 => I8, u16 => U16, i16 => I16, u32 => U32, i32 => I32, f32 => F32,
    bool => Bool, String => String, u64 => U64, i64 => I64, f64 => F64);

impl From<&str> for MetadataValue {
    fn from(s: &str) -> Self {
        MetadataValue::String(s.to_owned())
    }
}

impl<T: Into<MetadataValue>> From<Vec<T>> for MetadataValue {
    fn from(v: Vec<T>) -> Self {
        MetadataValue::Array(v.into_iter().map(Into::into).collect())
    }
}

// ---------------------------------------------------------------------------------------------
// Reader
// ---------------------------------------------------------------------------------------------

/// One tensor as described in the file's header.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    /// Tensor name as stored (GGUF names, e.g. `blk.0.attn_q.weight`).
    pub name: String,
    /// Dimensions as stored: innermost (row length, ggml `ne[0]`) first.
    pub dims: Vec<u64>,
    /// Encoding of the data (F32, F16, a quantized block type, …).
    pub ggml_type: GgmlType,
    /// Offset of the data from the start of the data section, as stored.
    pub offset: u64,
    /// Number of elements (product of `dims`).
    pub n_elements: usize,
    /// Number of bytes of data.
    pub n_bytes: usize,
}

impl TensorInfo {
    /// The shape in PyTorch order (outermost first): `dims` reversed.
    pub fn shape(&self) -> Vec<usize> {
        // Each dim divides n_elements (checked at open), so it fits in usize unless zero-sized.
        self.dims
            .iter()
            .rev()
            .map(|&d| usize::try_from(d).unwrap_or(usize::MAX))
            .collect()
    }
}

/// An open GGUF file: header parsed, tensor data left in the memory map until asked for.
pub struct GgufFile {
    path: PathBuf,
    mmap: Mmap,
    version: u32,
    alignment: u64,
    /// Absolute file offset of the data section.
    data_start: usize,
    metadata: BTreeMap<String, MetadataValue>,
    tensors: Vec<TensorInfo>,
    index: HashMap<String, usize>,
}

impl fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("alignment", &self.alignment)
            .field("metadata_keys", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

/// Bounds-checked little-endian reader over the file bytes.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    path: &'a Path,
    /// Array elements still allowed (see [`MAX_METADATA_ELEMENTS`]).
    element_budget: u64,
}

impl<'a> Cursor<'a> {
    fn malformed(&self, detail: String) -> IoError {
        IoError::Malformed {
            path: self.path.into(),
            format: FORMAT,
            detail,
        }
    }

    fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    fn take(&mut self, n: usize, what: &dyn Fn() -> String) -> Result<&'a [u8], IoError> {
        let bytes = self
            .pos
            .checked_add(n)
            .and_then(|end| self.buf.get(self.pos..end));
        match bytes {
            Some(b) => {
                self.pos += n;
                Ok(b)
            }
            None => Err(self.malformed(format!(
                "truncated: {} needs {n} bytes at offset {}, but the file has {} bytes",
                what(),
                self.pos,
                self.buf.len()
            ))),
        }
    }

    fn array<const N: usize>(&mut self, what: &dyn Fn() -> String) -> Result<[u8; N], IoError> {
        let b = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(b);
        Ok(a)
    }

    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32, IoError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64, IoError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn string(&mut self, what: &dyn Fn() -> String) -> Result<String, IoError> {
        let at = self.pos;
        let len = self.u64(&|| format!("length of {}", what()))?;
        if len > self.remaining() as u64 {
            return Err(self.malformed(format!(
                "{}: string length {len} at offset {at} exceeds the {} bytes left in the file",
                what(),
                self.remaining()
            )));
        }
        let bytes = self.take(len as usize, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|e| {
            self.malformed(format!(
                "{}: string at offset {at} is not valid UTF-8 ({e})",
                what()
            ))
        })
    }

    fn value(
        &mut self,
        ty: MetadataType,
        key: &str,
        depth: usize,
    ) -> Result<MetadataValue, IoError> {
        use MetadataValue as V;
        let what = || format!("value of key `{key}`");
        Ok(match ty {
            MetadataType::U8 => V::U8(self.array::<1>(&what)?[0]),
            MetadataType::I8 => V::I8(i8::from_le_bytes(self.array(&what)?)),
            MetadataType::U16 => V::U16(u16::from_le_bytes(self.array(&what)?)),
            MetadataType::I16 => V::I16(i16::from_le_bytes(self.array(&what)?)),
            MetadataType::U32 => V::U32(u32::from_le_bytes(self.array(&what)?)),
            MetadataType::I32 => V::I32(i32::from_le_bytes(self.array(&what)?)),
            MetadataType::F32 => V::F32(f32::from_le_bytes(self.array(&what)?)),
            MetadataType::U64 => V::U64(u64::from_le_bytes(self.array(&what)?)),
            MetadataType::I64 => V::I64(i64::from_le_bytes(self.array(&what)?)),
            MetadataType::F64 => V::F64(f64::from_le_bytes(self.array(&what)?)),
            MetadataType::Bool => {
                let at = self.pos;
                match self.array::<1>(&what)?[0] {
                    0 => V::Bool(false),
                    1 => V::Bool(true),
                    b => {
                        return Err(self.malformed(format!(
                            "key `{key}`: bool at offset {at} has byte value {b} (must be 0 or 1)"
                        )))
                    }
                }
            }
            MetadataType::String => V::String(self.string(&what)?),
            MetadataType::Array => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(IoError::Unsupported {
                        path: self.path.into(),
                        what: "GGUF metadata",
                        detail: format!(
                            "key `{key}`: arrays nested deeper than {MAX_ARRAY_DEPTH} levels"
                        ),
                    });
                }
                let at = self.pos;
                let elem_id = self.u32(&|| format!("array element type of key `{key}`"))?;
                let elem = MetadataType::from_id(elem_id).ok_or_else(|| {
                    self.malformed(format!(
                        "key `{key}`: unknown array element type {elem_id} at offset {at}"
                    ))
                })?;
                let n = self.u64(&|| format!("array length of key `{key}`"))?;
                let fit = (self.remaining() / elem.min_encoded_size()) as u64;
                if n > fit {
                    return Err(self.malformed(format!(
                        "key `{key}`: array of {n} {elem:?} at offset {at} cannot fit in the {} \
                         bytes left in the file",
                        self.remaining()
                    )));
                }
                if n > self.element_budget {
                    return Err(IoError::Unsupported {
                        path: self.path.into(),
                        what: "GGUF metadata",
                        detail: format!(
                            "key `{key}`: more than {MAX_METADATA_ELEMENTS} array elements in all"
                        ),
                    });
                }
                self.element_budget -= n;
                // n ≤ bytes left, so this cannot be made huge by a lying length.
                let mut items = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    items.push(self.value(elem, key, depth + 1)?);
                }
                V::Array(items)
            }
        })
    }
}

fn invalid_field(path: &Path, field: &str, detail: String) -> IoError {
    IoError::InvalidField {
        path: path.into(),
        field: field.into(),
        detail,
    }
}

impl GgufFile {
    /// Open and parse the header of a GGUF v2/v3 file. The tensor data stay in the memory map
    /// (the file must not be modified while it is open) and are decoded by
    /// [`tensor_f32`](Self::tensor_f32) / [`tensor_hf`](Self::tensor_hf).
    pub fn open(path: &Path) -> Result<GgufFile, IoError> {
        let file = File::open(path).map_err(|e| IoError::io(path, e))?;
        let len = file.metadata().map_err(|e| IoError::io(path, e))?.len();
        if len < 24 {
            return Err(IoError::Malformed {
                path: path.into(),
                format: FORMAT,
                detail: format!("truncated: {len} bytes is shorter than the 24-byte GGUF header"),
            });
        }
        // SAFETY: the map is read-only and every access is bounds-checked against its length;
        // as with any mmap, the file must not be truncated by another process while open.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| IoError::io(path, e))?;
        Self::parse(path.to_path_buf(), mmap)
    }

    fn parse(path: PathBuf, mmap: Mmap) -> Result<GgufFile, IoError> {
        let mut c = Cursor {
            buf: &mmap,
            pos: 0,
            path: &path,
            element_budget: MAX_METADATA_ELEMENTS,
        };
        let magic = c.array::<4>(&|| "magic".into())?;
        if magic != GGUF_MAGIC {
            return Err(c.malformed(format!(
                "not a GGUF file: magic is {magic:02x?}, expected \"GGUF\""
            )));
        }
        let version = c.u32(&|| "version".into())?;
        match version {
            2 | 3 => {}
            1 => {
                return Err(IoError::Unsupported {
                    path: path.clone(),
                    what: "GGUF version",
                    detail: "version 1 (32-bit counts, 2023); convert the model again with a \
                             current llama.cpp (v2 and v3 are supported)"
                        .into(),
                })
            }
            v if (1..=3).contains(&v.swap_bytes()) => {
                return Err(IoError::Unsupported {
                    path: path.clone(),
                    what: "GGUF byte order",
                    detail: format!(
                        "big-endian GGUF (version {}); only little-endian files are supported",
                        v.swap_bytes()
                    ),
                })
            }
            v => {
                return Err(IoError::Unsupported {
                    path: path.clone(),
                    what: "GGUF version",
                    detail: format!("version {v}; supported: 2, 3"),
                })
            }
        }
        let tensor_count = c.u64(&|| "tensor count".into())?;
        let kv_count = c.u64(&|| "metadata key/value count".into())?;
        if kv_count > (c.remaining() / MIN_KV_BYTES) as u64 {
            return Err(c.malformed(format!(
                "{kv_count} metadata key/value pairs cannot fit in the {} bytes left in the file",
                c.remaining()
            )));
        }

        let mut metadata = BTreeMap::new();
        for i in 0..kv_count {
            let key = c.string(&|| format!("key of metadata pair {i}"))?;
            let at = c.pos;
            let ty_id = c.u32(&|| format!("type of key `{key}`"))?;
            let ty = MetadataType::from_id(ty_id).ok_or_else(|| {
                c.malformed(format!(
                    "key `{key}`: unknown metadata value type {ty_id} at offset {at}"
                ))
            })?;
            let value = c.value(ty, &key, 0)?;
            if metadata.contains_key(&key) {
                return Err(c.malformed(format!("duplicate metadata key `{key}`")));
            }
            metadata.insert(key, value);
        }

        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(v) => match v.as_u64() {
                Some(a) if a.is_power_of_two() && a <= 1 << 30 => a,
                _ => {
                    return Err(invalid_field(
                        &path,
                        "general.alignment",
                        format!("{} is not a power of two (at most 2^30)", v.brief()),
                    ))
                }
            },
        };

        if tensor_count > (c.remaining() / MIN_TENSOR_INFO_BYTES) as u64 {
            return Err(c.malformed(format!(
                "{tensor_count} tensor infos cannot fit in the {} bytes left in the file",
                c.remaining()
            )));
        }
        let mut tensors = Vec::with_capacity(tensor_count as usize);
        let mut index = HashMap::with_capacity(tensor_count as usize);
        for i in 0..tensor_count {
            let name = c.string(&|| format!("name of tensor {i}"))?;
            let n_dims = c.u32(&|| format!("n_dims of tensor `{name}`"))?;
            if n_dims as usize > MAX_DIMS {
                return Err(c.malformed(format!(
                    "tensor `{name}` has {n_dims} dimensions (at most {MAX_DIMS})"
                )));
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for d in 0..n_dims {
                dims.push(c.u64(&|| format!("dimension {d} of tensor `{name}`"))?);
            }
            let type_id = c.u32(&|| format!("type of tensor `{name}`"))?;
            let offset = c.u64(&|| format!("offset of tensor `{name}`"))?;
            let ggml_type = GgmlType::from_id(type_id).ok_or_else(|| IoError::Unsupported {
                path: path.clone(),
                what: "ggml type",
                detail: format!("tensor `{name}` has type id {type_id}, unknown to this crate"),
            })?;
            let n_elements = dims
                .iter()
                .try_fold(1u64, |acc, &d| acc.checked_mul(d))
                .filter(|&n| n <= i64::MAX as u64)
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| {
                    c.malformed(format!(
                        "tensor `{name}`: the element count of dims {dims:?} overflows"
                    ))
                })?;
            if dims
                .first()
                .is_some_and(|&d0| d0 % ggml_type.block_size() as u64 != 0)
            {
                return Err(c.malformed(format!(
                    "tensor `{name}`: row length {} is not a multiple of the {ggml_type} block \
                     size {}",
                    dims[0],
                    ggml_type.block_size()
                )));
            }
            let n_bytes = dequant::byte_size(ggml_type, n_elements).ok_or_else(|| {
                c.malformed(format!(
                    "tensor `{name}`: {n_elements} elements of {ggml_type} do not make whole \
                     blocks or overflow"
                ))
            })?;
            if offset % alignment != 0 {
                return Err(c.malformed(format!(
                    "tensor `{name}`: offset {offset} is not a multiple of the alignment \
                     {alignment}"
                )));
            }
            if index.insert(name.clone(), tensors.len()).is_some() {
                return Err(c.malformed(format!("duplicate tensor name `{name}`")));
            }
            tensors.push(TensorInfo {
                name,
                dims,
                ggml_type,
                offset,
                n_elements,
                n_bytes,
            });
        }

        let data_start = (c.pos as u64)
            .checked_next_multiple_of(alignment)
            .and_then(|s| usize::try_from(s).ok())
            .ok_or_else(|| c.malformed("data section offset overflows".into()))?;
        let file_len = c.buf.len();
        for t in &tensors {
            let range = usize::try_from(t.offset)
                .ok()
                .and_then(|o| data_start.checked_add(o))
                .and_then(|s| s.checked_add(t.n_bytes).map(|e| (s, e)));
            match range {
                Some((_, end)) if end <= file_len => {}
                _ => {
                    return Err(c.malformed(format!(
                        "tensor `{}`: data at offset {} + {} bytes (data section at {data_start}) \
                         lies outside the file ({file_len} bytes)",
                        t.name, t.offset, t.n_bytes
                    )))
                }
            }
        }
        // Overlapping tensors: two names for the same bytes is never a valid file.
        let mut spans: Vec<(u64, u64, &str)> = tensors
            .iter()
            .filter(|t| t.n_bytes > 0)
            .map(|t| (t.offset, t.offset + t.n_bytes as u64, t.name.as_str()))
            .collect();
        spans.sort_unstable();
        if let Some(w) = spans.windows(2).find(|w| w[1].0 < w[0].1) {
            return Err(c.malformed(format!(
                "tensors `{}` and `{}` overlap (bytes {}..{} and {}..{} of the data section)",
                w[0].2, w[1].2, w[0].0, w[0].1, w[1].0, w[1].1
            )));
        }

        Ok(GgufFile {
            path,
            mmap,
            version,
            alignment,
            data_start,
            metadata,
            tensors,
            index,
        })
    }

    /// The path the file was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The data alignment (`general.alignment`, default 32).
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Absolute file offset of the tensor data section.
    pub fn data_start(&self) -> usize {
        self.data_start
    }

    /// Every metadata key and value.
    pub fn metadata(&self) -> &BTreeMap<String, MetadataValue> {
        &self.metadata
    }

    /// One metadata value.
    pub fn get(&self, key: &str) -> Option<&MetadataValue> {
        self.metadata.get(key)
    }

    /// `general.architecture`, if present and a string.
    pub fn architecture(&self) -> Option<&str> {
        self.get("general.architecture")
            .and_then(MetadataValue::as_str)
    }

    /// Tensor infos in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The info of tensor `name` (GGUF name).
    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        self.index.get(name).and_then(|&i| self.tensors.get(i))
    }

    /// Whether a tensor of this GGUF name exists.
    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    fn no_tensor(&self, name: &str) -> IoError {
        IoError::NoTensor {
            path: self.path.clone(),
            name: name.into(),
        }
    }

    /// The raw (still quantized) bytes of tensor `name`.
    pub fn tensor_bytes(&self, name: &str) -> Result<(&TensorInfo, &[u8]), IoError> {
        let info = self.tensor_info(name).ok_or_else(|| self.no_tensor(name))?;
        // The range was checked at open; `get` keeps this panic-free regardless.
        let bytes = usize::try_from(info.offset)
            .ok()
            .and_then(|o| self.data_start.checked_add(o))
            .and_then(|s| self.mmap.get(s..s.checked_add(info.n_bytes)?))
            .ok_or_else(|| IoError::Malformed {
                path: self.path.clone(),
                format: FORMAT,
                detail: format!("tensor `{name}`: data lies outside the file"),
            })?;
        Ok((info, bytes))
    }

    /// Tensor `name` (GGUF name) dequantized to f32, with its shape outermost first (PyTorch
    /// order; the data are row-major in that shape). No layout change is applied: see
    /// [`tensor_hf`](Self::tensor_hf) for Hugging Face layout.
    pub fn tensor_f32(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>), IoError> {
        let (info, bytes) = self.tensor_bytes(name)?;
        if !info.ggml_type.can_dequantize() {
            return Err(IoError::Unsupported {
                path: self.path.clone(),
                what: "ggml type",
                detail: format!(
                    "tensor `{name}` is {} (id {}), which this crate cannot dequantize",
                    info.ggml_type,
                    info.ggml_type.id()
                ),
            });
        }
        let data = dequant::dequantize_to_vec(info.ggml_type, bytes, info.n_elements).map_err(
            |detail| IoError::Malformed {
                path: self.path.clone(),
                format: FORMAT,
                detail: format!("tensor `{name}`: {detail}"),
            },
        )?;
        Ok((info.shape(), data))
    }

    fn req<'a>(&'a self, key: &str) -> Result<&'a MetadataValue, IoError> {
        self.get(key).ok_or_else(|| IoError::MissingField {
            path: self.path.clone(),
            field: key.into(),
        })
    }

    fn positive_usize(&self, key: &str, v: &MetadataValue) -> Result<usize, IoError> {
        v.as_usize()
            .filter(|&x| x > 0 && x < (1 << 40))
            .ok_or_else(|| {
                invalid_field(
                    &self.path,
                    key,
                    format!("expected a positive integer, got {}", v.brief()),
                )
            })
    }

    /// A positive integer, or an array of equal positive integers (llama.cpp's per-layer form).
    fn req_usize(&self, key: &str) -> Result<usize, IoError> {
        let v = self.req(key)?;
        match v.as_array() {
            None => self.positive_usize(key, v),
            Some(items) => {
                let mut first = None;
                for item in items {
                    let x = self.positive_usize(key, item)?;
                    if first.is_some_and(|f| f != x) {
                        return Err(IoError::Unsupported {
                            path: self.path.clone(),
                            what: "per-layer hyper-parameters",
                            detail: format!("`{key}` differs between layers"),
                        });
                    }
                    first = Some(x);
                }
                first.ok_or_else(|| invalid_field(&self.path, key, "empty array".into()))
            }
        }
    }

    fn opt_usize(&self, key: &str) -> Result<Option<usize>, IoError> {
        match self.get(key) {
            None => Ok(None),
            Some(_) => self.req_usize(key).map(Some),
        }
    }

    fn opt_f64(&self, key: &str) -> Result<Option<f64>, IoError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_f64_decimal()
                .filter(|x| x.is_finite() && *x > 0.0)
                .map(Some)
                .ok_or_else(|| {
                    invalid_field(
                        &self.path,
                        key,
                        format!("expected a positive number, got {}", v.brief()),
                    )
                }),
        }
    }

    fn opt_token(&self, key: &str) -> Result<Option<u32>, IoError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_u32().map(Some).ok_or_else(|| {
                invalid_field(
                    &self.path,
                    key,
                    format!("expected a token id, got {}", v.brief()),
                )
            }),
        }
    }

    /// `general.architecture` as (GGUF name, [`Architecture`]); errors name the field.
    fn architecture_checked(&self) -> Result<(&str, Architecture), IoError> {
        let arch_value = self.req("general.architecture")?;
        let arch = arch_value.as_str().ok_or_else(|| {
            invalid_field(
                &self.path,
                "general.architecture",
                "expected a string".into(),
            )
        })?;
        let architecture = match arch {
            "llama" => Architecture::Llama,
            "mistral" => Architecture::Mistral,
            "qwen2" => Architecture::Qwen2,
            other => {
                return Err(IoError::Unsupported {
                    path: self.path.clone(),
                    what: "architecture (field `general.architecture`)",
                    detail: format!("`{other}`; supported: llama, mistral, qwen2"),
                })
            }
        };
        Ok((arch, architecture))
    }

    /// The [`ModelConfig`] described by the metadata.
    ///
    /// `general.architecture` must be `llama`, `mistral` or `qwen2`. Required: `{arch}.block_count`,
    /// `.embedding_length`, `.feed_forward_length`, `.attention.head_count`,
    /// `.attention.layer_norm_rms_epsilon`, `.context_length`, and a vocabulary size
    /// (`{arch}.vocab_size` or the length of `tokenizer.ggml.tokens`). Defaults:
    /// `head_count_kv` = `head_count`, `rope.freq_base` = 10000, head_dim =
    /// `attention.key_length`, else `rope.dimension_count`, else embedding / heads.
    /// `tie_word_embeddings` is true when there is no `output.weight` tensor. F32 values are
    /// widened through their decimal representation (`1e-5f32` → `1e-5`). RoPE scaling
    /// (`rope.scaling.type` other than `none`, or a `rope_freqs.weight` tensor) is refused.
    /// `attention_bias` is set for Qwen2 or when `blk.0.attn_q.bias` exists.
    pub fn model_config(&self) -> Result<ModelConfig, IoError> {
        let (arch, architecture) = self.architecture_checked()?;
        let k = |suffix: &str| format!("{arch}.{suffix}");

        if let Some(v) = self.get(&k("rope.scaling.type")) {
            if v.as_str() != Some("none") {
                return Err(IoError::Unsupported {
                    path: self.path.clone(),
                    what: "RoPE scaling",
                    detail: format!(
                        "`{}` = {}; only plain RoPE is implemented",
                        k("rope.scaling.type"),
                        v.brief()
                    ),
                });
            }
        }
        if self.contains("rope_freqs.weight") {
            return Err(IoError::Unsupported {
                path: self.path.clone(),
                what: "RoPE scaling",
                detail: "tensor `rope_freqs.weight` (per-frequency factors); only plain RoPE is \
                         implemented"
                    .into(),
            });
        }

        let num_layers = self.req_usize(&k("block_count"))?;
        let hidden_size = self.req_usize(&k("embedding_length"))?;
        let intermediate_size = self.req_usize(&k("feed_forward_length"))?;
        let num_heads = self.req_usize(&k("attention.head_count"))?;
        let num_kv_heads = self
            .opt_usize(&k("attention.head_count_kv"))?
            .unwrap_or(num_heads);
        let rms_norm_eps = self
            .opt_f64(&k("attention.layer_norm_rms_epsilon"))?
            .ok_or_else(|| IoError::MissingField {
                path: self.path.clone(),
                field: k("attention.layer_norm_rms_epsilon"),
            })?;
        let rope_theta = self.opt_f64(&k("rope.freq_base"))?.unwrap_or(10_000.0);
        let max_position_embeddings = self.req_usize(&k("context_length"))?;
        let head_dim = match self.opt_usize(&k("attention.key_length"))? {
            Some(d) => d,
            None => match self.opt_usize(&k("rope.dimension_count"))? {
                Some(d) => d,
                None => {
                    if hidden_size % num_heads != 0 {
                        return Err(invalid_field(
                            &self.path,
                            &k("attention.head_count"),
                            format!(
                                "{num_heads} does not divide {} = {hidden_size}, and no head \
                                 size is given",
                                k("embedding_length")
                            ),
                        ));
                    }
                    hidden_size / num_heads
                }
            },
        };
        let vocab_size = match self.get(&k("vocab_size")) {
            Some(_) => self.req_usize(&k("vocab_size"))?,
            None => match self
                .get("tokenizer.ggml.tokens")
                .and_then(MetadataValue::as_array)
            {
                Some(tokens) if !tokens.is_empty() => tokens.len(),
                _ => {
                    return Err(IoError::MissingField {
                        path: self.path.clone(),
                        field: format!("{} (or tokenizer.ggml.tokens)", k("vocab_size")),
                    })
                }
            },
        };
        let cfg = ModelConfig {
            architecture,
            vocab_size,
            hidden_size,
            intermediate_size,
            num_layers,
            num_heads,
            num_kv_heads,
            head_dim,
            rms_norm_eps,
            rope_theta,
            max_position_embeddings,
            tie_word_embeddings: !self.contains("output.weight"),
            attention_bias: architecture == Architecture::Qwen2
                || self.contains("blk.0.attn_q.bias"),
            bos_token_id: self.opt_token("tokenizer.ggml.bos_token_id")?,
            eos_token_id: self.opt_token("tokenizer.ggml.eos_token_id")?,
        };
        cfg.validate(&self.path)?;
        Ok(cfg)
    }

    /// Hugging Face name and HF shape of every tensor that has one (see [`hf_name`]), in file
    /// order.
    pub fn hf_tensors(&self) -> Vec<(String, Vec<usize>)> {
        self.tensors
            .iter()
            .filter_map(|t| hf_name(&t.name).map(|n| (n, t.shape())))
            .collect()
    }

    /// Tensor `hf_name` (a Hugging Face name such as `model.layers.0.self_attn.q_proj.weight`)
    /// dequantized, in Hugging Face layout: shape `[out, in]` and, for Llama/Mistral q and k
    /// projections, llama.cpp's RoPE row permutation undone. `lm_head.weight` of a model with
    /// tied embeddings is [`IoError::NoTensor`] (use `model.embed_tokens.weight`).
    pub fn tensor_hf(&self, hf_name: &str) -> Result<(Vec<usize>, Vec<f32>), IoError> {
        let name = gguf_name(hf_name).ok_or_else(|| self.no_tensor(hf_name))?;
        if !self.contains(&name) {
            return Err(self.no_tensor(hf_name));
        }
        let (shape, data) = self.tensor_f32(&name)?;
        let Some(kind) = qk_kind(&name) else {
            return Ok((shape, data));
        };
        // Only the architecture and head counts are needed here, not a full valid config.
        let (arch, architecture) = self.architecture_checked()?;
        if !permutes_qk(architecture) {
            return Ok((shape, data));
        }
        let heads = match kind {
            QkKind::Q => self.req_usize(&format!("{arch}.attention.head_count"))?,
            QkKind::K => match self.opt_usize(&format!("{arch}.attention.head_count_kv"))? {
                Some(kv) => kv,
                None => self.req_usize(&format!("{arch}.attention.head_count"))?,
            },
        };
        let rows = shape.first().copied().unwrap_or(1);
        let cols = shape.iter().skip(1).product::<usize>();
        let data = unpermute_qk_gguf_to_hf(&data, rows, cols, heads).map_err(|detail| {
            IoError::Malformed {
                path: self.path.clone(),
                format: FORMAT,
                detail: format!("tensor `{name}`: {detail}"),
            }
        })?;
        Ok((shape, data))
    }
}

// ---------------------------------------------------------------------------------------------
// Names and the q/k permutation
// ---------------------------------------------------------------------------------------------

const TOP_LEVEL: &[(&str, &str)] = &[
    ("token_embd.weight", "model.embed_tokens.weight"),
    ("output_norm.weight", "model.norm.weight"),
    ("output.weight", "lm_head.weight"),
];

const PER_LAYER: &[(&str, &str)] = &[
    ("attn_norm.weight", "input_layernorm.weight"),
    ("ffn_norm.weight", "post_attention_layernorm.weight"),
    ("attn_q.weight", "self_attn.q_proj.weight"),
    ("attn_q.bias", "self_attn.q_proj.bias"),
    ("attn_k.weight", "self_attn.k_proj.weight"),
    ("attn_k.bias", "self_attn.k_proj.bias"),
    ("attn_v.weight", "self_attn.v_proj.weight"),
    ("attn_v.bias", "self_attn.v_proj.bias"),
    ("attn_output.weight", "self_attn.o_proj.weight"),
    ("attn_output.bias", "self_attn.o_proj.bias"),
    ("ffn_gate.weight", "mlp.gate_proj.weight"),
    ("ffn_up.weight", "mlp.up_proj.weight"),
    ("ffn_down.weight", "mlp.down_proj.weight"),
];

/// `prefix<N>.rest` → (N, rest), with N a canonical decimal (no sign, no leading zero).
fn split_layer<'a>(name: &'a str, prefix: &str) -> Option<(usize, &'a str)> {
    let rest = name.strip_prefix(prefix)?;
    let (num, rest) = rest.split_once('.')?;
    let canonical = !num.is_empty()
        && num.bytes().all(|b| b.is_ascii_digit())
        && (num == "0" || !num.starts_with('0'));
    if !canonical {
        return None;
    }
    Some((num.parse().ok()?, rest))
}

/// The Hugging Face name of a GGUF tensor of a Llama-family model, or `None` for a name
/// outside the mapping (e.g. `rope_freqs.weight`).
pub fn hf_name(gguf_name: &str) -> Option<String> {
    if let Some(&(_, hf)) = TOP_LEVEL.iter().find(|(g, _)| *g == gguf_name) {
        return Some(hf.to_owned());
    }
    let (layer, rest) = split_layer(gguf_name, "blk.")?;
    let &(_, hf) = PER_LAYER.iter().find(|(g, _)| *g == rest)?;
    Some(format!("model.layers.{layer}.{hf}"))
}

/// The GGUF name of a Hugging Face tensor name; the inverse of [`hf_name`].
pub fn gguf_name(hf_name: &str) -> Option<String> {
    if let Some(&(g, _)) = TOP_LEVEL.iter().find(|(_, h)| *h == hf_name) {
        return Some(g.to_owned());
    }
    let (layer, rest) = split_layer(hf_name, "model.layers.")?;
    let &(g, _) = PER_LAYER.iter().find(|(_, h)| *h == rest)?;
    Some(format!("blk.{layer}.{g}"))
}

enum QkKind {
    Q,
    K,
}

/// Whether a GGUF tensor is one llama.cpp's converter permutes (q/k weight or bias).
fn qk_kind(gguf_name: &str) -> Option<QkKind> {
    let (_, rest) = split_layer(gguf_name, "blk.")?;
    match rest {
        "attn_q.weight" | "attn_q.bias" => Some(QkKind::Q),
        "attn_k.weight" | "attn_k.bias" => Some(QkKind::K),
        _ => None,
    }
}

/// llama.cpp permutes q/k for the Llama-style converters (llama, mistral), not for Qwen2.
fn permutes_qk(arch: Architecture) -> bool {
    matches!(arch, Architecture::Llama | Architecture::Mistral)
}

fn qk_permutation(
    data: &[f32],
    rows: usize,
    cols: usize,
    n_head: usize,
    to_gguf: bool,
) -> Result<Vec<f32>, String> {
    if rows.checked_mul(cols) != Some(data.len()) {
        return Err(format!(
            "{} values do not make a {rows}x{cols} matrix",
            data.len()
        ));
    }
    if n_head == 0 || rows % n_head != 0 || (rows / n_head) % 2 != 0 {
        return Err(format!(
            "{rows} rows do not split into {n_head} heads of an even size"
        ));
    }
    let hd = rows / n_head;
    let half = hd / 2;
    let mut out = vec![0.0f32; data.len()];
    for h in 0..n_head {
        for i in 0..half {
            for j in 0..2 {
                let g = h * hd + 2 * i + j;
                let f = h * hd + j * half + i;
                let (src, dst) = if to_gguf { (f, g) } else { (g, f) };
                out[dst * cols..(dst + 1) * cols]
                    .copy_from_slice(&data[src * cols..(src + 1) * cols]);
            }
        }
    }
    Ok(out)
}

/// Apply llama.cpp's q/k row permutation (HF → GGUF) to a row-major `rows × cols` matrix
/// (`cols` = 1 for a bias): `gguf_row[h*hd + 2*i + j] = hf_row[h*hd + j*hd/2 + i]` with
/// `hd = rows / n_head`. Use the number of query heads for q, of key/value heads for k.
pub fn permute_qk_hf_to_gguf(
    data: &[f32],
    rows: usize,
    cols: usize,
    n_head: usize,
) -> Result<Vec<f32>, String> {
    qk_permutation(data, rows, cols, n_head, true)
}

/// Undo [`permute_qk_hf_to_gguf`]: GGUF row order → Hugging Face row order.
pub fn unpermute_qk_gguf_to_hf(
    data: &[f32],
    rows: usize,
    cols: usize,
    n_head: usize,
) -> Result<Vec<f32>, String> {
    qk_permutation(data, rows, cols, n_head, false)
}

// ---------------------------------------------------------------------------------------------
// Writer
// ---------------------------------------------------------------------------------------------

struct PendingTensor {
    name: String,
    dims: Vec<u64>,
    ty: GgmlType,
    data: Vec<u8>,
}

/// A minimal GGUF v3 writer: metadata of every type and tensors (F32, F16, BF16 from f32, or
/// raw bytes of any type), written atomically. Everything is held in memory until
/// [`write`](Self::write); meant for tests and small exports.
///
/// ```no_run
/// # use llm_compress_tensor_io::gguf::GgufWriter;
/// # use llm_compress_tensor_io::dequant::GgmlType;
/// let mut w = GgufWriter::new();
/// w.add_metadata("general.architecture", "llama")?;
/// w.add_tensor("output_norm.weight", &[4], GgmlType::F32, &[1.0, 1.0, 1.0, 1.0])?;
/// w.write("tiny.gguf".as_ref())?;
/// # Ok::<(), llm_compress_tensor_io::IoError>(())
/// ```
pub struct GgufWriter {
    metadata: Vec<(String, MetadataValue)>,
    tensors: Vec<PendingTensor>,
    alignment: u64,
}

fn writer_error(field: &str, detail: String) -> IoError {
    invalid_field(Path::new("<GgufWriter>"), field, detail)
}

fn push_string(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(&(s.len() as u64).to_le_bytes());
    buf.extend_from_slice(s.as_bytes());
}

fn push_value(buf: &mut Vec<u8>, v: &MetadataValue) {
    use MetadataValue as V;
    match v {
        V::U8(x) => buf.push(*x),
        V::I8(x) => buf.extend_from_slice(&x.to_le_bytes()),
        V::U16(x) => buf.extend_from_slice(&x.to_le_bytes()),
        V::I16(x) => buf.extend_from_slice(&x.to_le_bytes()),
        V::U32(x) => buf.extend_from_slice(&x.to_le_bytes()),
        V::I32(x) => buf.extend_from_slice(&x.to_le_bytes()),
        V::F32(x) => buf.extend_from_slice(&x.to_le_bytes()),
        V::Bool(x) => buf.push(u8::from(*x)),
        V::String(s) => push_string(buf, s),
        V::U64(x) => buf.extend_from_slice(&x.to_le_bytes()),
        V::I64(x) => buf.extend_from_slice(&x.to_le_bytes()),
        V::F64(x) => buf.extend_from_slice(&x.to_le_bytes()),
        V::Array(items) => {
            // An empty array is written with element type U8 (it reads back as an empty array).
            let elem = items
                .first()
                .map_or(MetadataType::U8, MetadataValue::value_type);
            buf.extend_from_slice(&elem.id().to_le_bytes());
            buf.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for item in items {
                push_value(buf, item);
            }
        }
    }
}

fn pad_to(len: u64, alignment: u64) -> u64 {
    len.next_multiple_of(alignment) - len
}

impl Default for GgufWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl GgufWriter {
    /// An empty writer: no metadata, no tensors, the default alignment (32 bytes).
    pub fn new() -> Self {
        GgufWriter {
            metadata: Vec::new(),
            tensors: Vec::new(),
            alignment: DEFAULT_ALIGNMENT,
        }
    }

    /// Set (or replace) a metadata value. Arrays must be homogeneous; `general.alignment`
    /// must be a U32 power of two and sets the alignment of the data.
    pub fn add_metadata(
        &mut self,
        key: impl Into<String>,
        value: impl Into<MetadataValue>,
    ) -> Result<&mut Self, IoError> {
        let key = key.into();
        let value = value.into();
        value
            .check_homogeneous()
            .map_err(|detail| writer_error(&key, detail))?;
        if key == "general.alignment" {
            match value {
                MetadataValue::U32(a) if a.is_power_of_two() && a <= 1 << 30 => {
                    self.alignment = a.into()
                }
                _ => {
                    return Err(writer_error(
                        &key,
                        format!("{} is not a U32 power of two", value.brief()),
                    ))
                }
            }
        }
        match self.metadata.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.metadata.push((key, value)),
        }
        Ok(self)
    }

    /// Add a tensor of shape `shape` (outermost first, row-major `data`) stored as `ty`, which
    /// must be F32, F16 or BF16 (rounded to nearest even).
    pub fn add_tensor(
        &mut self,
        name: impl Into<String>,
        shape: &[usize],
        ty: GgmlType,
        data: &[f32],
    ) -> Result<&mut Self, IoError> {
        let name = name.into();
        let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if n != Some(data.len()) {
            return Err(writer_error(
                &name,
                format!("shape {shape:?} does not hold {} values", data.len()),
            ));
        }
        let bytes: Vec<u8> = match ty {
            GgmlType::F32 => data.iter().flat_map(|x| x.to_le_bytes()).collect(),
            GgmlType::F16 => data
                .iter()
                .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
                .collect(),
            GgmlType::BF16 => data
                .iter()
                .flat_map(|&x| half::bf16::from_f32(x).to_le_bytes())
                .collect(),
            other => {
                return Err(writer_error(
                    &name,
                    format!("cannot encode {other}; use F32, F16, BF16 or add_tensor_raw"),
                ))
            }
        };
        let dims: Vec<u64> = shape.iter().rev().map(|&d| d as u64).collect();
        self.add_tensor_raw(name, &dims, ty, bytes)
    }

    /// Add a tensor from its encoded bytes; `dims` innermost first, as stored in GGUF.
    pub fn add_tensor_raw(
        &mut self,
        name: impl Into<String>,
        dims: &[u64],
        ty: GgmlType,
        bytes: Vec<u8>,
    ) -> Result<&mut Self, IoError> {
        let name = name.into();
        if dims.len() > MAX_DIMS {
            return Err(writer_error(
                &name,
                format!("{} dims (at most 4)", dims.len()),
            ));
        }
        let need = dims
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d))
            .and_then(|n| usize::try_from(n).ok())
            .and_then(|n| dequant::byte_size(ty, n));
        if need != Some(bytes.len()) {
            return Err(writer_error(
                &name,
                format!(
                    "dims {dims:?} of {ty} need {need:?} bytes, got {}",
                    bytes.len()
                ),
            ));
        }
        if self.tensors.iter().any(|t| t.name == name) {
            return Err(writer_error(&name, "duplicate tensor name".into()));
        }
        self.tensors.push(PendingTensor {
            name,
            dims: dims.to_vec(),
            ty,
            data: bytes,
        });
        Ok(self)
    }

    /// Write the llama.cpp hyper-parameter keys of `cfg` (`general.architecture` is `llama`
    /// for Llama and Mistral, as llama.cpp's converter writes it, or `qwen2`). Tied
    /// embeddings are expressed by not adding `lm_head.weight`.
    pub fn add_model_config(&mut self, cfg: &ModelConfig) -> Result<&mut Self, IoError> {
        let arch = match cfg.architecture {
            Architecture::Llama | Architecture::Mistral => "llama",
            Architecture::Qwen2 => "qwen2",
        };
        let u32_of = |field: &str, x: usize| {
            u32::try_from(x).map_err(|_| writer_error(field, format!("{x} does not fit in u32")))
        };
        self.add_metadata("general.architecture", arch)?;
        let ints = [
            ("block_count", cfg.num_layers),
            ("context_length", cfg.max_position_embeddings),
            ("embedding_length", cfg.hidden_size),
            ("feed_forward_length", cfg.intermediate_size),
            ("attention.head_count", cfg.num_heads),
            ("attention.head_count_kv", cfg.num_kv_heads),
            ("attention.key_length", cfg.head_dim),
            ("attention.value_length", cfg.head_dim),
            ("rope.dimension_count", cfg.head_dim),
            ("vocab_size", cfg.vocab_size),
        ];
        for (suffix, x) in ints {
            let key = format!("{arch}.{suffix}");
            let v = u32_of(&key, x)?;
            self.add_metadata(key, v)?;
        }
        self.add_metadata(format!("{arch}.rope.freq_base"), cfg.rope_theta as f32)?;
        self.add_metadata(
            format!("{arch}.attention.layer_norm_rms_epsilon"),
            cfg.rms_norm_eps as f32,
        )?;
        if let Some(b) = cfg.bos_token_id {
            self.add_metadata("tokenizer.ggml.bos_token_id", b)?;
        }
        if let Some(e) = cfg.eos_token_id {
            self.add_metadata("tokenizer.ggml.eos_token_id", e)?;
        }
        Ok(self)
    }

    /// Add a tensor given in Hugging Face name and layout: renamed with [`gguf_name`] and, for
    /// Llama/Mistral q/k projections, rows permuted with [`permute_qk_hf_to_gguf`].
    pub fn add_hf_tensor(
        &mut self,
        cfg: &ModelConfig,
        hf_name: &str,
        shape: &[usize],
        ty: GgmlType,
        data: &[f32],
    ) -> Result<&mut Self, IoError> {
        let name = gguf_name(hf_name)
            .ok_or_else(|| writer_error(hf_name, "no GGUF name for this tensor".into()))?;
        let kind = if permutes_qk(cfg.architecture) {
            qk_kind(&name)
        } else {
            None
        };
        match kind {
            None => self.add_tensor(name, shape, ty, data),
            Some(kind) => {
                let heads = match kind {
                    QkKind::Q => cfg.num_heads,
                    QkKind::K => cfg.num_kv_heads,
                };
                let rows = shape.first().copied().unwrap_or(1);
                let cols = shape.iter().skip(1).product::<usize>();
                let permuted = permute_qk_hf_to_gguf(data, rows, cols, heads)
                    .map_err(|detail| writer_error(hf_name, detail))?;
                self.add_tensor(name, shape, ty, &permuted)
            }
        }
    }

    /// The encoded header (up to and including the padding before the data section).
    fn header(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        buf.extend_from_slice(&GGUF_MAGIC);
        buf.extend_from_slice(&3u32.to_le_bytes());
        buf.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        buf.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (k, v) in &self.metadata {
            push_string(&mut buf, k);
            buf.extend_from_slice(&v.value_type().id().to_le_bytes());
            push_value(&mut buf, v);
        }
        let mut offset = 0u64;
        for t in &self.tensors {
            push_string(&mut buf, &t.name);
            buf.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                buf.extend_from_slice(&d.to_le_bytes());
            }
            buf.extend_from_slice(&t.ty.id().to_le_bytes());
            buf.extend_from_slice(&offset.to_le_bytes());
            let len = t.data.len() as u64;
            offset += len + pad_to(len, self.alignment);
        }
        let pad = pad_to(buf.len() as u64, self.alignment);
        buf.resize(buf.len() + pad as usize, 0);
        buf
    }

    fn write_into(&self, w: &mut impl Write) -> std::io::Result<()> {
        w.write_all(&self.header())?;
        let zeros = vec![0u8; self.alignment as usize];
        for t in &self.tensors {
            w.write_all(&t.data)?;
            let pad = pad_to(t.data.len() as u64, self.alignment) as usize;
            w.write_all(&zeros[..pad])?;
        }
        Ok(())
    }

    /// The whole file as bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Writing into a Vec cannot fail.
        let _ = self.write_into(&mut out);
        out
    }

    /// Write the file atomically: to a temporary file in the target directory, synced, then
    /// renamed over `path`.
    pub fn write(&self, path: &Path) -> Result<(), IoError> {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| IoError::io(dir, e))?;
        {
            let mut w = BufWriter::new(tmp.as_file());
            self.write_into(&mut w).map_err(|e| IoError::io(path, e))?;
            w.flush().map_err(|e| IoError::io(path, e))?;
        }
        tmp.as_file().sync_all().map_err(|e| IoError::io(path, e))?;
        tmp.persist(path).map_err(|e| IoError::io(path, e.error))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_mapping_round_trips() {
        let pairs = [
            ("token_embd.weight", "model.embed_tokens.weight"),
            ("output_norm.weight", "model.norm.weight"),
            ("output.weight", "lm_head.weight"),
            (
                "blk.0.attn_norm.weight",
                "model.layers.0.input_layernorm.weight",
            ),
            (
                "blk.12.ffn_norm.weight",
                "model.layers.12.post_attention_layernorm.weight",
            ),
            (
                "blk.3.attn_q.weight",
                "model.layers.3.self_attn.q_proj.weight",
            ),
            ("blk.3.attn_k.bias", "model.layers.3.self_attn.k_proj.bias"),
            (
                "blk.3.attn_v.weight",
                "model.layers.3.self_attn.v_proj.weight",
            ),
            (
                "blk.3.attn_output.weight",
                "model.layers.3.self_attn.o_proj.weight",
            ),
            (
                "blk.29.ffn_gate.weight",
                "model.layers.29.mlp.gate_proj.weight",
            ),
            ("blk.29.ffn_up.weight", "model.layers.29.mlp.up_proj.weight"),
            (
                "blk.29.ffn_down.weight",
                "model.layers.29.mlp.down_proj.weight",
            ),
        ];
        for (g, h) in pairs {
            assert_eq!(hf_name(g).as_deref(), Some(h), "{g}");
            assert_eq!(gguf_name(h).as_deref(), Some(g), "{h}");
        }
        for bad in [
            "blk.01.attn_q.weight",
            "blk.x.attn_q.weight",
            "blk..attn_q.weight",
            "blk.1.attn_q",
            "rope_freqs.weight",
            "blk.-1.ffn_up.weight",
        ] {
            assert_eq!(hf_name(bad), None, "{bad}");
        }
        assert_eq!(gguf_name("model.layers.1.mlp.act_fn"), None);
    }

    #[test]
    fn qk_permutation_matches_definition_and_inverts() {
        // 2 heads of size 6, 3 columns; value = row * 10 + col. (Size 4 would make the
        // permutation an involution, blind to its direction.)
        let (rows, cols, heads) = (12, 3, 2);
        let hf: Vec<f32> = (0..rows * cols)
            .map(|i| ((i / cols) * 10 + i % cols) as f32)
            .collect();
        let g = permute_qk_hf_to_gguf(&hf, rows, cols, heads).unwrap();
        // gguf row 2i + j of a head = hf row j*3 + i: per head [0, 3, 1, 4, 2, 5].
        let expect_rows = [0, 3, 1, 4, 2, 5, 6, 9, 7, 10, 8, 11];
        for (r, &src) in expect_rows.iter().enumerate() {
            for c in 0..cols {
                assert_eq!(g[r * cols + c], (src * 10 + c) as f32);
            }
        }
        assert_eq!(unpermute_qk_gguf_to_hf(&g, rows, cols, heads).unwrap(), hf);
        assert!(permute_qk_hf_to_gguf(&hf, rows, cols, 4).is_err()); // odd head size 3
        assert!(permute_qk_hf_to_gguf(&hf, rows, cols + 1, heads).is_err());
    }

    #[test]
    fn decimal_widening() {
        assert_eq!(MetadataValue::F32(1e-5).as_f64_decimal(), Some(1e-5));
        assert_eq!(MetadataValue::F32(1e-5).as_f64(), Some(1e-5f32 as f64));
        assert_eq!(MetadataValue::U32(7).as_f64_decimal(), Some(7.0));
        assert_eq!(MetadataValue::I32(-1).as_u64(), None);
        assert_eq!(MetadataValue::I32(5).as_usize(), Some(5));
    }
}
