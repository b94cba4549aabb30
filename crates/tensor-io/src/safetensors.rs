//! safetensors: read by mmap, list without reading data, write atomically.
//!
//! Format: 8-byte little-endian header length `N`, `N` bytes of JSON mapping each tensor name to
//! `{dtype, shape, data_offsets: [begin, end]}` (offsets relative to the byte after the header),
//! an optional `__metadata__` string map, then the data. Every offset, length and shape is
//! checked against the file before any data is touched.

use crate::atomic::write_atomic;
use crate::IoError;
use memmap2::Mmap;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

/// Largest header accepted (the format's own reference implementation uses 100 MB).
pub const MAX_HEADER_BYTES: u64 = 100_000_000;

/// Element type of a stored tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    /// IEEE 754 single precision.
    F32,
    /// IEEE 754 half precision (converted to f32 on read).
    F16,
    /// bfloat16 (converted to f32 on read).
    BF16,
    /// Stored by the compact format for packed indices and integer weights.
    U8,
    /// Signed bytes (int8 quantized weights of the compact format).
    I8,
    /// 32-bit signed integers.
    I32,
}

impl Dtype {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::F32 | Dtype::I32 => 4,
            Dtype::F16 | Dtype::BF16 => 2,
            Dtype::U8 | Dtype::I8 => 1,
        }
    }
    /// The dtype's name in the safetensors header (`F32`, `BF16`, …).
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "F32",
            Dtype::F16 => "F16",
            Dtype::BF16 => "BF16",
            Dtype::U8 => "U8",
            Dtype::I8 => "I8",
            Dtype::I32 => "I32",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "F32" => Dtype::F32,
            "F16" => Dtype::F16,
            "BF16" => Dtype::BF16,
            "U8" => Dtype::U8,
            "I8" => Dtype::I8,
            "I32" => Dtype::I32,
            _ => return None,
        })
    }
}

/// Name, dtype, shape and byte range (absolute, within the file) of one tensor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    /// Tensor name as stored in the header.
    pub name: String,
    /// Element type.
    pub dtype: Dtype,
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// First byte of the data, from the start of the file.
    pub begin: usize,
    /// One past the last byte of the data, from the start of the file.
    pub end: usize,
}

impl TensorInfo {
    /// Number of elements (the product of `shape`; 1 for a scalar).
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// A safetensors file opened by mmap; tensors are read on demand.
pub struct SafetensorsFile {
    path: PathBuf,
    map: Mmap,
    tensors: BTreeMap<String, TensorInfo>,
    metadata: BTreeMap<String, String>,
}

impl std::fmt::Debug for SafetensorsFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SafetensorsFile")
            .field("path", &self.path)
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

fn malformed(path: &Path, detail: impl Into<String>) -> IoError {
    IoError::Malformed {
        path: path.into(),
        format: "safetensors",
        detail: detail.into(),
    }
}

impl SafetensorsFile {
    /// Open and validate the header; no tensor data is read.
    pub fn open(path: &Path) -> Result<Self, IoError> {
        let file = File::open(path).map_err(|e| IoError::io(path, e))?;
        // SAFETY: the map is read-only; a file truncated by another process while mapped is
        // outside what this crate can defend against (as for every mmap reader).
        let map = unsafe { Mmap::map(&file) }.map_err(|e| IoError::io(path, e))?;
        let (tensors, metadata) = parse_header(&map, path)?;
        Ok(Self {
            path: path.into(),
            map,
            tensors,
            metadata,
        })
    }

    /// The path the file was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Tensor infos by name.
    pub fn tensors(&self) -> &BTreeMap<String, TensorInfo> {
        &self.tensors
    }

    /// The `__metadata__` map.
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    /// The info of tensor `name`, or [`IoError::NoTensor`].
    pub fn info(&self, name: &str) -> Result<&TensorInfo, IoError> {
        self.tensors.get(name).ok_or_else(|| IoError::NoTensor {
            path: self.path.clone(),
            name: name.into(),
        })
    }

    /// The raw bytes of a tensor.
    pub fn bytes(&self, name: &str) -> Result<&[u8], IoError> {
        let info = self.info(name)?;
        Ok(&self.map[info.begin..info.end])
    }

    /// A floating-point tensor converted to f32 (row-major, shape as stored).
    pub fn tensor_f32(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>), IoError> {
        let info = self.info(name)?;
        let bytes = &self.map[info.begin..info.end];
        let data = match info.dtype {
            Dtype::F32 => bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::F16 => bytes
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Dtype::BF16 => bytes
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            other => {
                return Err(IoError::Unsupported {
                    path: self.path.clone(),
                    what: "dtype for a float tensor",
                    detail: format!("{name} is {}", other.name()),
                })
            }
        };
        self.release(info.begin, info.end);
        Ok((info.shape.clone(), data))
    }

    /// Drop the mapped pages of bytes `begin..end` from this process's resident set once they
    /// have been copied out (`madvise(MADV_DONTNEED)`; the kernel's page cache keeps them).
    /// Without this, a layer-streamed walk over a 13 GB checkpoint would end with every page it
    /// ever read counted in its RSS. Best effort: a failure only leaves the pages resident.
    fn release(&self, begin: usize, end: usize) {
        #[cfg(unix)]
        {
            const PAGE: usize = 4096;
            // Whole pages inside the range only: a page shared with a neighbouring tensor stays.
            let first = begin.div_ceil(PAGE) * PAGE;
            let last = end / PAGE * PAGE;
            if last > first {
                // SAFETY: the map is read-only and file-backed, so discarding its pages loses
                // nothing: a later read faults them in again from the file, with the same bytes.
                let _ = unsafe {
                    self.map.unchecked_advise_range(
                        memmap2::UncheckedAdvice::DontNeed,
                        first,
                        last - first,
                    )
                };
            }
        }
        #[cfg(not(unix))]
        let _ = (begin, end);
    }
}

/// Tensor infos and `__metadata__` of a parsed header.
type Header = (BTreeMap<String, TensorInfo>, BTreeMap<String, String>);

fn parse_header(map: &[u8], path: &Path) -> Result<Header, IoError> {
    if map.len() < 8 {
        return Err(malformed(
            path,
            format!(
                "file is {} bytes, shorter than the 8-byte header length",
                map.len()
            ),
        ));
    }
    let n = u64::from_le_bytes([
        map[0], map[1], map[2], map[3], map[4], map[5], map[6], map[7],
    ]);
    if n > MAX_HEADER_BYTES {
        return Err(malformed(
            path,
            format!("header length {n} exceeds the limit {MAX_HEADER_BYTES}"),
        ));
    }
    let n = n as usize;
    if 8 + n > map.len() {
        return Err(malformed(
            path,
            format!(
                "header length {n} runs past the end of the file ({} bytes): truncated header",
                map.len()
            ),
        ));
    }
    let header: Value = serde_json::from_slice(&map[8..8 + n])
        .map_err(|e| malformed(path, format!("header is not valid JSON: {e}")))?;
    let obj = header
        .as_object()
        .ok_or_else(|| malformed(path, "header is not a JSON object"))?;
    let data_start = 8 + n;
    let data_len = map.len() - data_start;
    let mut tensors = BTreeMap::new();
    let mut metadata = BTreeMap::new();
    let mut ranges = Vec::new();
    for (name, v) in obj {
        if name == "__metadata__" {
            let m = v
                .as_object()
                .ok_or_else(|| malformed(path, "__metadata__ is not an object"))?;
            for (k, v) in m {
                let s = v
                    .as_str()
                    .ok_or_else(|| malformed(path, format!("__metadata__.{k} is not a string")))?;
                metadata.insert(k.clone(), s.to_string());
            }
            continue;
        }
        let bad = |d: &str| malformed(path, format!("tensor `{name}`: {d}"));
        let dtype_s = v
            .get("dtype")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("missing dtype"))?;
        let dtype = Dtype::parse(dtype_s).ok_or_else(|| IoError::Unsupported {
            path: path.into(),
            what: "safetensors dtype",
            detail: format!("tensor `{name}` has dtype {dtype_s}"),
        })?;
        let shape: Vec<usize> = v
            .get("shape")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("missing shape"))?
            .iter()
            .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
            .collect::<Option<_>>()
            .ok_or_else(|| bad("shape has a non-integer dimension"))?;
        let offs = v
            .get("data_offsets")
            .and_then(Value::as_array)
            .filter(|a| a.len() == 2)
            .ok_or_else(|| bad("data_offsets must be [begin, end]"))?;
        let (b, e) = match (offs[0].as_u64(), offs[1].as_u64()) {
            (Some(b), Some(e)) => (b as usize, e as usize),
            _ => return Err(bad("data_offsets are not integers")),
        };
        let numel = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| bad("shape product overflows"))?;
        let nbytes = numel
            .checked_mul(dtype.size())
            .ok_or_else(|| bad("byte size overflows"))?;
        if b > e || e > data_len {
            return Err(bad(&format!(
                "data_offsets [{b}, {e}] outside the data section of {data_len} bytes"
            )));
        }
        if e - b != nbytes {
            return Err(bad(&format!(
                "data_offsets span {} bytes, shape {shape:?} of {dtype_s} needs {nbytes}",
                e - b
            )));
        }
        ranges.push((b, e, name.clone()));
        tensors.insert(
            name.clone(),
            TensorInfo {
                name: name.clone(),
                dtype,
                shape,
                begin: data_start + b,
                end: data_start + e,
            },
        );
    }
    ranges.sort();
    for w in ranges.windows(2) {
        if w[1].0 < w[0].1 {
            return Err(malformed(
                path,
                format!("tensors `{}` and `{}` overlap", w[0].2, w[1].2),
            ));
        }
    }
    Ok((tensors, metadata))
}

/// One tensor to write: raw little-endian bytes with dtype and shape.
pub struct TensorData<'a> {
    /// Element type of `bytes`.
    pub dtype: Dtype,
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// Little-endian data, row-major (`numel × dtype.size()` bytes).
    pub bytes: std::borrow::Cow<'a, [u8]>,
}

impl<'a> TensorData<'a> {
    /// An f32 tensor.
    pub fn f32(shape: Vec<usize>, data: &[f32]) -> TensorData<'static> {
        let mut bytes = Vec::with_capacity(data.len() * 4);
        for v in data {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        TensorData {
            dtype: Dtype::F32,
            shape,
            bytes: bytes.into(),
        }
    }
    /// Raw bytes with a dtype.
    pub fn raw(dtype: Dtype, shape: Vec<usize>, bytes: Vec<u8>) -> TensorData<'static> {
        TensorData {
            dtype,
            shape,
            bytes: bytes.into(),
        }
    }
}

/// Name, dtype and shape of one tensor to be written by [`write_safetensors_with`].
#[derive(Clone, Debug)]
pub struct TensorHeader {
    /// Tensor name to store.
    pub name: String,
    /// Element type.
    pub dtype: Dtype,
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
}

/// Write a safetensors file atomically, streaming each tensor's bytes through `fill(i, w)`
/// (called once per entry of `headers`, in order; it must write exactly the bytes the
/// header's shape and dtype imply), so that no second copy of the data is ever held.
pub fn write_safetensors_with(
    path: &Path,
    headers: &[TensorHeader],
    metadata: &BTreeMap<String, String>,
    mut fill: impl FnMut(usize, &mut dyn std::io::Write) -> std::io::Result<()>,
) -> Result<(), IoError> {
    let mut header = Map::new();
    if !metadata.is_empty() {
        header.insert(
            "__metadata__".into(),
            Value::Object(
                metadata
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect(),
            ),
        );
    }
    let mut offset = 0usize;
    let mut sizes = Vec::with_capacity(headers.len());
    for t in headers {
        let n = t
            .shape
            .iter()
            .try_fold(t.dtype.size(), |a, &d| a.checked_mul(d))
            .ok_or_else(|| IoError::InvalidField {
                path: path.into(),
                field: t.name.clone(),
                detail: format!("shape {:?} overflows", t.shape),
            })?;
        header.insert(
            t.name.clone(),
            serde_json::json!({
                "dtype": t.dtype.name(),
                "shape": t.shape,
                "data_offsets": [offset, offset + n],
            }),
        );
        offset += n;
        sizes.push(n);
    }
    let mut h = serde_json::to_vec(&Value::Object(header)).map_err(|source| IoError::Json {
        path: path.into(),
        source,
    })?;
    while (8 + h.len()) % 8 != 0 {
        h.push(b' ');
    }
    write_atomic(path, |w| {
        w.write_all(&(h.len() as u64).to_le_bytes())?;
        w.write_all(&h)?;
        for (i, &n) in sizes.iter().enumerate() {
            let mut counted = CountingWriter {
                inner: &mut *w,
                n: 0,
            };
            fill(i, &mut counted)?;
            if counted.n != n {
                return Err(std::io::Error::other(format!(
                    "tensor `{}`: {} bytes written, {n} expected",
                    headers[i].name, counted.n
                )));
            }
        }
        Ok(())
    })
}

struct CountingWriter<'a> {
    inner: &'a mut dyn std::io::Write,
    n: usize,
}

impl std::io::Write for CountingWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let k = self.inner.write(buf)?;
        self.n += k;
        Ok(k)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Write tensors (sorted by name) and string metadata to `path`, atomically.
pub fn write_safetensors(
    path: &Path,
    tensors: &BTreeMap<String, TensorData<'_>>,
    metadata: &BTreeMap<String, String>,
) -> Result<(), IoError> {
    let headers: Vec<TensorHeader> = tensors
        .iter()
        .map(|(name, t)| TensorHeader {
            name: name.clone(),
            dtype: t.dtype,
            shape: t.shape.clone(),
        })
        .collect();
    let data: Vec<&TensorData> = tensors.values().collect();
    write_safetensors_with(path, &headers, metadata, |i, w| w.write_all(&data[i].bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(dir: &Path) -> PathBuf {
        let p = dir.join("m.safetensors");
        let mut t = BTreeMap::new();
        t.insert(
            "a".to_string(),
            TensorData::f32(vec![2, 3], &[1.0, -2.0, 3.5, 0.0, 1e-3, 7.0]),
        );
        let h: Vec<u8> = [1.5f32, -0.25]
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
            .collect();
        t.insert("b".to_string(), TensorData::raw(Dtype::F16, vec![2], h));
        let bf: Vec<u8> = [3.0f32, -8.0]
            .iter()
            .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
            .collect();
        t.insert(
            "c".to_string(),
            TensorData::raw(Dtype::BF16, vec![1, 2], bf),
        );
        let mut meta = BTreeMap::new();
        meta.insert("format".to_string(), "pt".to_string());
        write_safetensors(&p, &t, &meta).unwrap();
        p
    }

    #[test]
    fn round_trip_f32_f16_bf16() {
        let dir = tempfile::tempdir().unwrap();
        let f = SafetensorsFile::open(&sample(dir.path())).unwrap();
        assert_eq!(f.tensors().len(), 3);
        assert_eq!(f.metadata()["format"], "pt");
        assert_eq!(
            f.tensor_f32("a").unwrap(),
            (vec![2, 3], vec![1.0, -2.0, 3.5, 0.0, 1e-3, 7.0])
        );
        assert_eq!(f.tensor_f32("b").unwrap().1, vec![1.5, -0.25]);
        assert_eq!(f.tensor_f32("c").unwrap(), (vec![1, 2], vec![3.0, -8.0]));
        assert!(matches!(f.tensor_f32("zz"), Err(IoError::NoTensor { .. })));
    }

    #[test]
    fn truncated_header_is_malformed() {
        let dir = tempfile::tempdir().unwrap();
        let p = sample(dir.path());
        let bytes = std::fs::read(&p).unwrap();
        for cut in [0, 5, 8, 20] {
            let q = dir.path().join(format!("cut{cut}.safetensors"));
            std::fs::write(&q, &bytes[..cut]).unwrap();
            let e = SafetensorsFile::open(&q).unwrap_err();
            assert!(matches!(e, IoError::Malformed { .. }), "cut {cut}: {e}");
        }
    }

    #[test]
    fn hostile_headers_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            (
                r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,800]}}"#,
                "outside",
            ),
            (
                r#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#,
                "needs",
            ),
            (
                r#"{"a":{"dtype":"F32","shape":[4611686018427387904,8],"data_offsets":[0,8]}}"#,
                "overflow",
            ),
            (
                r#"{"a":{"dtype":"Q9","shape":[2],"data_offsets":[0,8]}}"#,
                "dtype",
            ),
            (
                r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
                "overlap",
            ),
            (r#"[1,2]"#, "object"),
        ];
        for (i, (h, want)) in cases.iter().enumerate() {
            let mut bytes = (h.len() as u64).to_le_bytes().to_vec();
            bytes.extend_from_slice(h.as_bytes());
            bytes.extend_from_slice(&[0u8; 8]);
            let q = dir.path().join(format!("h{i}.safetensors"));
            std::fs::write(&q, bytes).unwrap();
            let e = SafetensorsFile::open(&q).unwrap_err().to_string();
            assert!(e.contains(want), "case {i}: {e}");
        }
    }
}
