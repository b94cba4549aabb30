//! [`Checkpoint`]: one model, whatever its file format, with tensors in Hugging Face names and
//! layout (`d_out × d_in` weights, HF RoPE convention), read on demand.
//!
//! Accepted paths: a `.gguf` file; a `.safetensors` file with `config.json` beside it; a
//! directory holding `config.json`, `model.safetensors` or `model.safetensors.index.json` with
//! its shards, and optionally `tokenizer.json`.

use crate::compact::{self, Manifest};
use crate::gguf::GgufFile;
use crate::safetensors::SafetensorsFile;
use crate::{IoError, ModelConfig, Tokenizer};
use llm_compress_core::{Linear, LinearId, Mat};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A dense f32 tensor in row-major order, outermost dimension first.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    /// Dimensions, outermost first (a weight is `[d_out, d_in]`).
    pub shape: Vec<usize>,
    /// The values in row-major order (`shape.iter().product()` of them).
    pub data: Vec<f32>,
}

impl Tensor {
    /// `(rows, cols)` of a 2-D tensor, or an error naming it.
    pub fn dims2(&self, name: &str) -> Result<(usize, usize), IoError> {
        match self.shape.as_slice() {
            [r, c] => Ok((*r, *c)),
            s => Err(IoError::InvalidField {
                path: PathBuf::new(),
                field: name.into(),
                detail: format!("expected a 2-D tensor, got shape {s:?}"),
            }),
        }
    }
}

/// What a tensor is stored as, for `inspect`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredTensor {
    /// Hugging Face name (e.g. `model.layers.0.self_attn.q_proj.weight`).
    pub name: String,
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// Stored element type as the file names it (`F32`, `BF16`, a GGML type such as `Q4_1`).
    pub dtype: String,
}

enum Source {
    Gguf(Box<GgufFile>),
    Safetensors {
        shards: Vec<SafetensorsFile>,
        /// HF name → index into `shards`.
        index: BTreeMap<String, usize>,
    },
}

/// A model checkpoint opened lazily.
pub struct Checkpoint {
    /// The `.gguf` file, or the directory holding `config.json` and the safetensors file(s).
    pub path: PathBuf,
    /// The architecture, from `config.json` or the GGUF metadata.
    pub config: ModelConfig,
    /// The tokenizer (`tokenizer.json` or the GGUF vocabulary), `None` when the checkpoint has
    /// none; see [`Checkpoint::require_tokenizer`].
    pub tokenizer: Option<Tokenizer>,
    /// Present when the checkpoint is a compact output folder of this project.
    pub manifest: Option<Manifest>,
    source: Source,
    /// Shared bases loaded so far (compact folders with Basis Sharing).
    basis_cache: compact::BasisCache,
}

impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoint")
            .field("path", &self.path)
            .field("config", &self.config)
            .finish()
    }
}

impl Checkpoint {
    /// Open a `.gguf`, a `.safetensors` (with `config.json` beside it) or a model directory.
    pub fn open(path: &Path) -> Result<Self, IoError> {
        let meta = std::fs::metadata(path).map_err(|e| IoError::io(path, e))?;
        if meta.is_dir() {
            return Self::open_dir(path);
        }
        match path.extension().and_then(|e| e.to_str()) {
            Some("gguf") => Self::open_gguf(path),
            Some("safetensors") => {
                let dir = path.parent().unwrap_or(Path::new("."));
                Self::open_safetensors(dir, vec![path.to_path_buf()])
            }
            _ => Err(IoError::Unsupported {
                path: path.into(),
                what: "model path",
                detail: "expected a .gguf file, a .safetensors file or a directory".into(),
            }),
        }
    }

    fn open_gguf(path: &Path) -> Result<Self, IoError> {
        let g = GgufFile::open(path)?;
        let config = g.model_config()?;
        // A GGUF without `tokenizer.ggml.*` (e.g. a test model) has no tokenizer.
        let tokenizer = match g.get("tokenizer.ggml.model") {
            Some(_) => Some(gguf_tokenizer(&g)?),
            None => None,
        };
        Ok(Self {
            path: path.into(),
            config,
            tokenizer,
            manifest: None,
            source: Source::Gguf(Box::new(g)),
            basis_cache: Default::default(),
        })
    }

    fn open_dir(dir: &Path) -> Result<Self, IoError> {
        if dir.join(compact::MANIFEST).exists() {
            let manifest = compact::read_manifest(dir, true)?;
            let files = manifest
                .tensor_file_names()
                .iter()
                .map(|n| dir.join(n))
                .collect();
            let mut ck = Self::open_safetensors(dir, files)?;
            ck.manifest = Some(manifest);
            return Ok(ck);
        }
        let index = dir.join("model.safetensors.index.json");
        let files = if index.exists() {
            let text = std::fs::read_to_string(&index).map_err(|e| IoError::io(&index, e))?;
            let v: serde_json::Value =
                serde_json::from_str(&text).map_err(|source| IoError::Json {
                    path: index.clone(),
                    source,
                })?;
            let map = v
                .get("weight_map")
                .and_then(|m| m.as_object())
                .ok_or_else(|| IoError::MissingField {
                    path: index.clone(),
                    field: "weight_map".into(),
                })?;
            let mut shards: Vec<String> = map
                .values()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect();
            shards.sort();
            shards.dedup();
            for s in &shards {
                if s.contains('/') || s.contains('\\') || s.starts_with('.') {
                    return Err(IoError::InvalidField {
                        path: index.clone(),
                        field: "weight_map".into(),
                        detail: format!("shard name `{s}` is not a plain file name"),
                    });
                }
            }
            shards.into_iter().map(|s| dir.join(s)).collect()
        } else {
            let single = dir.join("model.safetensors");
            if single.exists() {
                vec![single]
            } else {
                let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
                    .map_err(|e| IoError::io(dir, e))?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
                    .collect();
                v.sort();
                if v.is_empty() {
                    let gguf: Vec<PathBuf> = std::fs::read_dir(dir)
                        .map_err(|e| IoError::io(dir, e))?
                        .filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|p| p.extension().is_some_and(|e| e == "gguf"))
                        .collect();
                    if let [one] = gguf.as_slice() {
                        return Self::open_gguf(one);
                    }
                    return Err(IoError::MissingField {
                        path: dir.into(),
                        field: "model.safetensors".into(),
                    });
                }
                v
            }
        };
        Self::open_safetensors(dir, files)
    }

    fn open_safetensors(dir: &Path, files: Vec<PathBuf>) -> Result<Self, IoError> {
        let cfg_path = dir.join("config.json");
        if !cfg_path.exists() {
            return Err(IoError::MissingField {
                path: dir.into(),
                field: "config.json".into(),
            });
        }
        let config = ModelConfig::from_hf_json_file(&cfg_path)?;
        let tok_path = dir.join("tokenizer.json");
        let tokenizer = if tok_path.exists() {
            Some(Tokenizer::from_tokenizer_json_file(&tok_path)?)
        } else {
            None
        };
        let mut shards = Vec::new();
        let mut index = BTreeMap::new();
        for (i, f) in files.iter().enumerate() {
            let s = SafetensorsFile::open(f)?;
            for name in s.tensors().keys() {
                index.insert(name.clone(), i);
            }
            shards.push(s);
        }
        Ok(Self {
            path: dir.into(),
            config,
            tokenizer,
            manifest: None,
            source: Source::Safetensors { shards, index },
            basis_cache: Default::default(),
        })
    }

    /// The format of the underlying file(s).
    pub fn format(&self) -> &'static str {
        match self.source {
            Source::Gguf(_) => "gguf",
            Source::Safetensors { .. } => "safetensors",
        }
    }

    /// Read a tensor by its Hugging Face name, as f32 in HF layout.
    pub fn tensor(&self, name: &str) -> Result<Tensor, IoError> {
        let (shape, data) = match &self.source {
            Source::Gguf(g) => g.tensor_hf(name)?,
            Source::Safetensors { shards, index } => {
                let i = index.get(name).ok_or_else(|| IoError::NoTensor {
                    path: self.path.clone(),
                    name: name.into(),
                })?;
                shards[*i].tensor_f32(name)?
            }
        };
        check_finite(&self.path, name, &data)?;
        Ok(Tensor { shape, data })
    }

    /// Decoder linear `id` in its stored representation: the manifest's (low-rank, ...) for a
    /// compact output folder, a dense matrix otherwise.
    pub fn linear(&self, id: LinearId) -> Result<Linear, IoError> {
        if let (Some(m), Source::Safetensors { shards, index }) = (&self.manifest, &self.source) {
            if let Some(repr) = m.linears.get(&id.to_string()) {
                let shard = index.get(repr.first_tensor()).copied().unwrap_or(0);
                let lin =
                    compact::linear_from_tensors_cached(repr, &shards[shard], &self.basis_cache)?;
                let want = self.config.linear_shape(id.kind);
                if lin.shape() != want {
                    return Err(IoError::InvalidField {
                        path: self.path.join(compact::MANIFEST),
                        field: format!("linears.{id}"),
                        detail: format!(
                            "describes a {:?} linear, the config implies {want:?}",
                            lin.shape()
                        ),
                    });
                }
                return Ok(lin);
            }
        }
        let name = format!("model.layers.{}.{}.weight", id.layer, id.kind.hf_name());
        let t = self.tensor(&name)?;
        let (m, n) = t.dims2(&name)?;
        let want = self.config.linear_shape(id.kind);
        if (m, n) != want {
            return Err(IoError::InvalidField {
                path: self.path.clone(),
                field: name,
                detail: format!("shape [{m}, {n}], the config implies {want:?}"),
            });
        }
        Ok(Linear::Dense(Mat::from_fn(m, n, |i, j| t.data[i * n + j])))
    }

    /// Whether a tensor exists (by HF name).
    pub fn has_tensor(&self, name: &str) -> bool {
        match &self.source {
            Source::Gguf(g) => crate::gguf::gguf_name(name).is_some_and(|n| g.contains(&n)),
            Source::Safetensors { index, .. } => index.contains_key(name),
        }
    }

    /// Every stored tensor with its HF name, shape (outermost first) and stored dtype.
    pub fn stored_tensors(&self) -> Vec<StoredTensor> {
        match &self.source {
            Source::Gguf(g) => g
                .tensors()
                .iter()
                .filter_map(|t| {
                    crate::gguf::hf_name(&t.name).map(|name| StoredTensor {
                        name,
                        shape: t.shape(),
                        dtype: t.ggml_type.name().to_string(),
                    })
                })
                .collect(),
            Source::Safetensors { shards, .. } => shards
                .iter()
                .flat_map(|s| {
                    s.tensors().values().map(|t| StoredTensor {
                        name: t.name.clone(),
                        shape: t.shape.clone(),
                        dtype: t.dtype.name().to_string(),
                    })
                })
                .collect(),
        }
    }

    /// The files that make up this checkpoint.
    pub fn files(&self) -> Vec<PathBuf> {
        match &self.source {
            Source::Gguf(_) => vec![self.path.clone()],
            Source::Safetensors { shards, .. } => {
                shards.iter().map(|s| s.path().to_path_buf()).collect()
            }
        }
    }

    /// SHA-256 over the bytes of the checkpoint's tensor files, in order (hex).
    pub fn sha256(&self) -> Result<String, IoError> {
        compact::files_sha256(&self.files())
    }

    /// The tokenizer, or an error saying the checkpoint has none.
    pub fn require_tokenizer(&self) -> Result<&Tokenizer, IoError> {
        self.tokenizer
            .as_ref()
            .ok_or_else(|| IoError::MissingField {
                path: self.path.clone(),
                field: "tokenizer.json".into(),
            })
    }
}

/// The tokenizer stored in GGUF metadata (`tokenizer.ggml.*`, BPE models only).
fn gguf_tokenizer(g: &GgufFile) -> Result<Tokenizer, IoError> {
    let path = g.path();
    let missing = |field: &str| IoError::MissingField {
        path: path.into(),
        field: field.into(),
    };
    let invalid = |field: &str, detail: &str| IoError::InvalidField {
        path: path.into(),
        field: field.into(),
        detail: detail.into(),
    };
    let model = g
        .get("tokenizer.ggml.model")
        .ok_or_else(|| missing("tokenizer.ggml.model"))?
        .as_str()
        .ok_or_else(|| invalid("tokenizer.ggml.model", "expected a string"))?;
    if model != "gpt2" {
        return Err(IoError::Unsupported {
            path: path.into(),
            what: "tokenizer model (field `tokenizer.ggml.model`)",
            detail: format!("`{model}`; only byte-level BPE (`gpt2`) is implemented"),
        });
    }
    let strings = |field: &str| -> Result<Vec<String>, IoError> {
        g.get(field)
            .ok_or_else(|| missing(field))?
            .as_array()
            .ok_or_else(|| invalid(field, "expected an array"))?
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| invalid(field, "expected an array of strings"))
    };
    let tokens = strings("tokenizer.ggml.tokens")?;
    let merges = strings("tokenizer.ggml.merges")?;
    let types = match g.get("tokenizer.ggml.token_type") {
        None => None,
        Some(v) => Some(
            v.as_array()
                .ok_or_else(|| invalid("tokenizer.ggml.token_type", "expected an array"))?
                .iter()
                .map(|t| t.as_i64().and_then(|x| i32::try_from(x).ok()))
                .collect::<Option<Vec<i32>>>()
                .ok_or_else(|| invalid("tokenizer.ggml.token_type", "expected integers"))?,
        ),
    };
    let pre = match g.get("tokenizer.ggml.pre") {
        None => "default",
        Some(v) => v
            .as_str()
            .ok_or_else(|| invalid("tokenizer.ggml.pre", "expected a string"))?,
    };
    Tokenizer::from_vocab(tokens, types, merges, pre, path)
}

/// Refuse a tensor holding NaN or ±inf: every later stage (Grams, Cholesky, SVD, perplexity)
/// would turn it into NaN output without saying why.
pub(crate) fn check_finite(path: &Path, name: &str, data: &[f32]) -> Result<(), IoError> {
    match data.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(i) => Err(IoError::InvalidField {
            path: path.into(),
            field: name.into(),
            detail: format!(
                "value {} at flat index {i} is not finite ({} of {} values are NaN or ±inf)",
                data[i],
                data.iter().filter(|v| !v.is_finite()).count(),
                data.len()
            ),
        }),
    }
}
