//! Writing a compressed model: the compact folder (factors + manifest, runs natively) or a
//! dense Hugging Face checkpoint (`config.json`, `model.safetensors`, `tokenizer.json`) with
//! every product materialised, loadable unchanged by transformers or candle.

use llm_compress_core::{Linear, LinearId, LinearKind, Mat};
use llm_compress_eval::{DecoderLayer, EvalError, Model};
use llm_compress_tensor_io::compact::{
    self, linear_to_tensors, write_json_atomic, write_tensor_sources, BaseModel, Manifest,
    TensorSource,
};
use llm_compress_tensor_io::{Checkpoint, IoError};
use std::collections::BTreeMap;
use std::path::Path;

/// A compressed model held in memory: the base's embedding/norm/head and the decoder layers.
pub struct OutputLayers {
    /// The original model's embedding, final norm, head and RoPE table, as
    /// [`Model::load_without_layers`] returns them (its own `layers` are not used).
    pub base: Model,
    /// The compressed decoder layers, in order.
    pub layers: Vec<DecoderLayer>,
}

impl OutputLayers {
    /// The runnable model.
    pub fn into_model(self) -> Model {
        let mut m = self.base;
        m.layers = self.layers;
        m
    }
}

fn vec_tensor(v: &[f32]) -> TensorSource<'_> {
    TensorSource::Vector(v)
}

fn common_tensors<'a>(
    model: &'a Model,
    layers: &'a [DecoderLayer],
) -> BTreeMap<String, TensorSource<'a>> {
    let mut t = BTreeMap::new();
    t.insert(
        "model.embed_tokens.weight".into(),
        TensorSource::Matrix(model.embed.as_ref()),
    );
    t.insert("model.norm.weight".into(), vec_tensor(&model.norm));
    if let Some(h) = &model.lm_head {
        t.insert("lm_head.weight".into(), TensorSource::Matrix(h.as_ref()));
    }
    for (l, layer) in layers.iter().enumerate() {
        layer_norm_tensors(l, layer, &mut t);
    }
    t
}

/// The norm weights (and q/k/v biases) of decoder layer `l`, under their HF names.
pub(crate) fn layer_norm_tensors<'a>(
    l: usize,
    layer: &'a DecoderLayer,
    t: &mut BTreeMap<String, TensorSource<'a>>,
) {
    let p = format!("model.layers.{l}.");
    t.insert(
        format!("{p}input_layernorm.weight"),
        vec_tensor(&layer.attn_norm),
    );
    t.insert(
        format!("{p}post_attention_layernorm.weight"),
        vec_tensor(&layer.mlp_norm),
    );
    if let Some([bq, bk, bv]) = &layer.qkv_bias {
        t.insert(format!("{p}self_attn.q_proj.bias"), vec_tensor(bq));
        t.insert(format!("{p}self_attn.k_proj.bias"), vec_tensor(bk));
        t.insert(format!("{p}self_attn.v_proj.bias"), vec_tensor(bv));
    }
}

/// The embedding, final norm and untied head of `model`, under their HF names.
pub(crate) fn base_tensors(model: &Model) -> BTreeMap<String, TensorSource<'_>> {
    common_tensors(model, &[])
}

/// Write the compact folder.
pub fn write_compact(
    ckpt: &Checkpoint,
    out: &OutputLayers,
    dir: &Path,
    method: serde_json::Value,
    calibration: serde_json::Value,
    linear_params_before: usize,
) -> Result<(), EvalError> {
    write_compact_with(
        ckpt,
        out,
        dir,
        method,
        calibration,
        linear_params_before,
        false,
    )
}

/// Half-precision little-endian bytes of a matrix, row-major.
fn f16_bytes(m: &Mat<f32>) -> Vec<u8> {
    let mut b = Vec::with_capacity(2 * m.nrows() * m.ncols());
    for i in 0..m.nrows() {
        for j in 0..m.ncols() {
            b.extend_from_slice(&half::f16::from_f32(m[(i, j)]).to_le_bytes());
        }
    }
    b
}

/// [`write_compact`], with the embeddings (and an untied head) stored as f16 when
/// `f16_embeddings` (LSAQ: the byte budget covers the whole file).
pub fn write_compact_with(
    ckpt: &Checkpoint,
    out: &OutputLayers,
    dir: &Path,
    method: serde_json::Value,
    calibration: serde_json::Value,
    linear_params_before: usize,
    f16_embeddings: bool,
) -> Result<(), EvalError> {
    let mut tensors = common_tensors(&out.base, &out.layers);
    if f16_embeddings {
        let mut mats = vec![("model.embed_tokens.weight", &out.base.embed)];
        if let Some(h) = &out.base.lm_head {
            mats.push(("lm_head.weight", h));
        }
        for (name, m) in mats {
            tensors.insert(
                name.into(),
                TensorSource::Bytes {
                    dtype: llm_compress_tensor_io::safetensors::Dtype::F16,
                    shape: vec![m.nrows(), m.ncols()],
                    data: std::borrow::Cow::Owned(f16_bytes(m)),
                },
            );
        }
    }
    let mut linears = BTreeMap::new();
    let all = || {
        out.layers.iter().enumerate().flat_map(|(l, layer)| {
            LinearKind::ALL
                .into_iter()
                .map(move |kind| (LinearId { layer: l, kind }, layer.linear(kind)))
        })
    };
    // Each shared basis is stored once, under a name of its group; the count takes it once.
    let after = llm_compress_core::shared::distinct_param_count(all().map(|(_, lin)| lin));
    let bases = shared_basis_names(all());
    for (id, lin) in all() {
        let prefix = format!("model.layers.{}.{}", id.layer, id.kind.hf_name());
        let repr = match lin {
            Linear::Shared { basis, coeff } => {
                let (name, group) = &bases[&(std::sync::Arc::as_ptr(basis) as usize)];
                compact::shared_to_tensors(&prefix, name, group, basis, coeff, &mut tensors)
            }
            _ => linear_to_tensors(&prefix, lin, &mut tensors),
        };
        linears.insert(id.to_string(), repr);
    }
    let manifest = Manifest {
        // The lowest version that reads these representations (2 only for quantized sparse).
        format_version: compact::required_version(linears.values()),
        producer: format!("llm-compress {}", env!("CARGO_PKG_VERSION")),
        base_model: BaseModel {
            path: ckpt.path.display().to_string(),
            format: ckpt.format().into(),
            sha256: ckpt.sha256()?,
        },
        method,
        calibration,
        linears,
        linear_params_before,
        linear_params_after: after,
        tensors_sha256: String::new(),
        tensor_files: Vec::new(),
    };
    let tok = ckpt.tokenizer.as_ref().map(|t| t.to_hf_json());
    compact::write_compact(
        dir,
        &tensors,
        &ckpt.config.to_hf_json(),
        tok.as_ref(),
        manifest,
    )?;
    Ok(())
}

/// For every distinct shared basis (by `Arc` pointer): its tensor prefix
/// `model.shared_bases.layers.{first}-{last}.{kind}` and the linears that read it.
fn shared_basis_names<'a>(
    linears: impl Iterator<Item = (LinearId, &'a Linear)>,
) -> BTreeMap<usize, (String, Vec<String>)> {
    let mut readers: BTreeMap<usize, Vec<LinearId>> = BTreeMap::new();
    for (id, lin) in linears {
        if let Some(b) = lin.shared_basis() {
            readers
                .entry(std::sync::Arc::as_ptr(b) as usize)
                .or_default()
                .push(id);
        }
    }
    readers
        .into_iter()
        .map(|(ptr, ids)| {
            let (first, last) = (ids[0], ids[ids.len() - 1]);
            let name = format!(
                "model.shared_bases.layers.{}-{}.{}",
                first.layer,
                last.layer,
                first.kind.short()
            );
            (ptr, (name, ids.iter().map(|id| id.to_string()).collect()))
        })
        .collect()
}

/// Write a dense Hugging Face checkpoint with every product materialised.
pub fn write_dense(ckpt: &Checkpoint, out: &OutputLayers, dir: &Path) -> Result<(), EvalError> {
    std::fs::create_dir_all(dir).map_err(|e| IoError::Io {
        path: dir.into(),
        source: e,
    })?;
    // A stale config.json must not make a half-written folder look like a model.
    let cfg_path = dir.join("config.json");
    if cfg_path.exists() {
        std::fs::remove_file(&cfg_path).map_err(|e| IoError::Io {
            path: cfg_path.clone(),
            source: e,
        })?;
    }
    // Dense layers are borrowed; compressed ones are materialised one at a time below.
    let dense: Vec<Vec<Option<Mat<f32>>>> = out
        .layers
        .iter()
        .map(|layer| {
            LinearKind::ALL
                .iter()
                .map(|&k| match layer.linear(k) {
                    Linear::Dense(_) => None,
                    other => Some(other.to_dense()),
                })
                .collect()
        })
        .collect();
    let mut tensors = common_tensors(&out.base, &out.layers);
    for (l, layer) in out.layers.iter().enumerate() {
        for (i, kind) in LinearKind::ALL.into_iter().enumerate() {
            let name = format!("model.layers.{l}.{}.weight", kind.hf_name());
            let m = match (layer.linear(kind), &dense[l][i]) {
                (Linear::Dense(w), _) => w.as_ref(),
                (_, Some(w)) => w.as_ref(),
                (_, None) => unreachable!("every non-dense linear was materialised"),
            };
            tensors.insert(name, TensorSource::Matrix(m));
        }
    }
    write_tensor_sources(&dir.join("model.safetensors"), &tensors)?;
    if let Some(t) = &ckpt.tokenizer {
        write_json_atomic(&dir.join("tokenizer.json"), &t.to_hf_json())?;
    }
    // config.json last: a folder without it does not load as a model.
    write_json_atomic(&dir.join("config.json"), &ckpt.config.to_hf_json())?;
    Ok(())
}
