//! Synthetic 7B-shaped checkpoints: test inputs with the shapes of LLaMA-2-7B or Mistral-7B
//! and random weights whose singular values decay like a trained model's.
//!
//! They exist to exercise the pipeline at scale (memory, time, sharded I/O); they are **not**
//! models, and a perplexity measured on one means nothing.
//!
//! # How a decoder linear is made
//! Each `W` (`d_out × d_in`, rank `r = min(d_out, d_in)`) is `U diag(s) Vᵀ` with orthonormal
//! `U` (`d_out × r`), `V` (`d_in × r`), so its singular values are exactly `s` (up to f32
//! GEMM rounding, then bf16 rounding of the stored entries):
//! - **profile**: `s_i / s_0` follows [`SingularProfile::measured`], the spectrum of each
//!   linear kind of SmolLM2-135M (`log σ` as a function of the relative index
//!   `x = i / (r - 1)`, averaged over its 30 layers, tabulated at 33 points of `x`),
//!   interpolated linearly in `x` to the target `r`;
//! - **scale**: `s` is scaled so that the entries' RMS (`‖s‖₂ / √(d_out·d_in)`) is
//!   [`ENTRY_RMS`] (0.02, the standard deviation LLaMA initialises its linears with), times a
//!   seeded per-matrix jitter of ±[`LAYER_JITTER`];
//! - **bases**: a pool of [`BASIS_POOL`] Haar-random orthonormal bases per `(rows, r)`, each
//!   the Q factor of a seeded Gaussian matrix (signs fixed by `R`'s diagonal, which makes it
//!   exactly Haar-distributed), is drawn once; each matrix takes one pool member and makes
//!   it its own by a random row permutation, random row sign flips and a random column
//!   permutation (all three keep the columns orthonormal). Then one f32 GEMM forms `W`.
//!
//! Norm weights are 1; the embedding and the (untied) LM head are Gaussian with standard
//! deviation [`EMBED_STD`]. Every random number comes from [`SplitMix64`] seeded by the run's
//! seed and the tensor's identity, so a tensor does not depend on the order of generation and
//! two runs with the same seed write identical bytes.
//!
//! # Layout
//! Exactly a Hugging Face sharded checkpoint: `model-00001-of-0000N.safetensors` (bf16; the
//! embedding in the first shard, whole decoder layers, the final norm and the head in the
//! last), `model.safetensors.index.json` and `config.json`, the last two written after every
//! shard so that an interrupted run never looks complete. Each tensor is generated inside the
//! streaming writer's callback: memory stays at about one matrix plus the basis pool.
//!
//! # Example
//! ```no_run
//! use llm_compress::synth::{write_synthetic_checkpoint, SynthOptions, SynthShape};
//! let cfg = SynthShape::Tiny.config();
//! let report = write_synthetic_checkpoint("tiny-model".as_ref(), &cfg, &SynthOptions::default(), |_| {})?;
//! println!("{} bytes in {} shards", report.total_bytes, report.shards);
//! # Ok::<(), llm_compress::eval::EvalError>(())
//! ```

mod profile;

use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::householder::{
    apply_block_householder_sequence_on_the_left_in_place_scratch,
    apply_block_householder_sequence_on_the_left_in_place_with_conj,
};
use faer::linalg::matmul::matmul;
use faer::linalg::qr::no_pivoting::factor::{
    qr_in_place, qr_in_place_scratch, recommended_block_size,
};
use faer::{Accum, Conj, Mat};
use llm_compress_core::rng::SplitMix64;
use llm_compress_core::{par, par_deterministic, LinearId, LinearKind};
use llm_compress_eval::EvalError;
use llm_compress_tensor_io::compact::write_json_atomic;
use llm_compress_tensor_io::config::{Architecture, MAX_LAYERS};
use llm_compress_tensor_io::safetensors::{write_safetensors_with, Dtype, TensorHeader};
use llm_compress_tensor_io::{Checkpoint, ModelConfig};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

/// Number of points of the relative index `x = k / 32`, `k = 0..=32`, at which a
/// [`SingularProfile`] is tabulated.
pub const PROFILE_POINTS: usize = 33;

/// Root-mean-square of a generated linear's entries before the jitter: 0.02, the standard
/// deviation LLaMA (and most of its descendants) initialise linear layers with. Trained 7B
/// weights sit in the same range; the value only sets the scale of activations, which matters
/// for nothing here but finite arithmetic.
pub const ENTRY_RMS: f32 = 0.02;

/// Relative half-width of the seeded per-matrix jitter of the entry RMS: a matrix's RMS is
/// `ENTRY_RMS · (1 + LAYER_JITTER · u)`, `u` uniform in `[-1, 1)`, so that layers differ in
/// scale as a trained model's do.
pub const LAYER_JITTER: f32 = 0.1;

/// Standard deviation of the Gaussian embedding and LM head entries.
pub const EMBED_STD: f32 = 0.02;

/// Haar-random bases drawn per `(rows, rank)`; each matrix picks one and permutes it.
pub const BASIS_POOL: usize = 2;

/// Default shard size target: as many whole decoder layers per shard as fit in 3.5 GB (8 for
/// both 7B shapes, giving 4 shards of about 3.3–3.8 GB).
pub const SHARD_TARGET_BYTES: u64 = 3_500_000_000;

/// The shapes the generator knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SynthShape {
    /// LLaMA-2-7B: hidden 4096, MLP 11008, 32 layers, 32 heads (no GQA), vocab 32000.
    Llama7b,
    /// Mistral-7B-v0.2: hidden 4096, MLP 14336, 32 layers, 32 query heads and 8 key/value
    /// heads (GQA), vocab 32000, RoPE θ = 10⁶.
    Mistral7b,
    /// A tiny model for tests: hidden 64, MLP 160, 2 layers, 4 heads, 2 key/value heads,
    /// vocab 256.
    Tiny,
}

impl SynthShape {
    /// Every shape.
    pub const ALL: [SynthShape; 3] = [SynthShape::Llama7b, SynthShape::Mistral7b, SynthShape::Tiny];

    /// The command-line name (`llama-7b`, `mistral-7b`, `tiny`).
    pub fn name(self) -> &'static str {
        match self {
            SynthShape::Llama7b => "llama-7b",
            SynthShape::Mistral7b => "mistral-7b",
            SynthShape::Tiny => "tiny",
        }
    }

    /// The shape called `name`, if any.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The model configuration (the fields of the Hugging Face `config.json` of LLaMA-2-7B /
    /// Mistral-7B-v0.2).
    pub fn config(self) -> ModelConfig {
        let (architecture, hidden, inter, layers, heads, kv_heads, vocab, theta, max_pos) =
            match self {
                SynthShape::Llama7b => (
                    Architecture::Llama,
                    4096,
                    11008,
                    32,
                    32,
                    32,
                    32000,
                    1e4,
                    4096,
                ),
                SynthShape::Mistral7b => (
                    Architecture::Mistral,
                    4096,
                    14336,
                    32,
                    32,
                    8,
                    32000,
                    1e6,
                    32768,
                ),
                SynthShape::Tiny => (Architecture::Llama, 64, 160, 2, 4, 2, 256, 1e4, 512),
            };
        ModelConfig {
            architecture,
            vocab_size: vocab,
            hidden_size: hidden,
            intermediate_size: inter,
            num_layers: layers,
            num_heads: heads,
            num_kv_heads: kv_heads,
            head_dim: hidden / heads,
            rms_norm_eps: 1e-5,
            rope_theta: theta,
            max_position_embeddings: max_pos,
            tie_word_embeddings: false,
            attention_bias: false,
            bos_token_id: Some(1),
            eos_token_id: Some(2),
        }
    }
}

/// `log₁₀(σ(x) / σ₁)` per linear kind at `x = k / (PROFILE_POINTS - 1)`: the shape of a
/// singular spectrum as a function of the relative index.
#[derive(Clone, Debug, PartialEq)]
pub struct SingularProfile {
    /// One row per kind, in [`LinearKind::ALL`] order.
    pub log10_ratio: [[f64; PROFILE_POINTS]; 7],
}

fn kind_index(kind: LinearKind) -> usize {
    LinearKind::ALL
        .iter()
        .position(|&k| k == kind)
        .unwrap_or_default()
}

impl SingularProfile {
    /// The profile measured on SmolLM2-135M-Instruct (Q4_1 GGUF), baked into the source (see
    /// `src/synth/profile.rs` for the command that printed it).
    pub fn measured() -> Self {
        Self {
            log10_ratio: profile::MEASURED_LOG10_RATIO,
        }
    }

    /// Measure the profile of a checkpoint: for every linear of every layer, the singular
    /// values (f64 SVD of the dense matrix), `log₁₀(σ_i / σ_0)` read at the 33 relative indices
    /// (linear interpolation between neighbouring indices), averaged over the layers.
    pub fn measure(
        ckpt: &Checkpoint,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<Self, EvalError> {
        let layers = ckpt.config.num_layers;
        let mut log10_ratio = [[0.0f64; PROFILE_POINTS]; 7];
        for layer in 0..layers {
            for (k, &kind) in LinearKind::ALL.iter().enumerate() {
                let id = LinearId { layer, kind };
                let w = ckpt.linear(id)?.to_dense();
                let w64 = Mat::<f64>::from_fn(w.nrows(), w.ncols(), |i, j| w[(i, j)] as f64);
                let sigma = w64.singular_values().map_err(|e| {
                    EvalError::Input(format!("{id}: singular values did not converge: {e:?}"))
                })?;
                let top = sigma.first().copied().unwrap_or(0.0);
                if !(top.is_finite() && top > 0.0) {
                    return Err(EvalError::Input(format!(
                        "{id}: largest singular value is {top}; the profile needs a non-zero matrix"
                    )));
                }
                let r = sigma.len();
                for (p, acc) in log10_ratio[k].iter_mut().enumerate() {
                    let pos = p as f64 / (PROFILE_POINTS - 1) as f64 * (r - 1) as f64;
                    let (lo, frac) = (pos.floor() as usize, pos - pos.floor());
                    let hi = (lo + 1).min(r - 1);
                    let at = |i: usize| (sigma[i].max(top * 1e-12) / top).log10();
                    *acc += (1.0 - frac) * at(lo) + frac * at(hi);
                }
            }
            progress(layer + 1, layers);
        }
        for row in &mut log10_ratio {
            for v in row.iter_mut() {
                *v /= layers as f64;
            }
        }
        Ok(Self { log10_ratio })
    }

    /// `σ(x) / σ₁` of `kind` at relative index `x ∈ [0, 1]`: the table interpolated linearly
    /// in `x`, in log.
    pub fn ratio(&self, kind: LinearKind, x: f64) -> f64 {
        let row = &self.log10_ratio[kind_index(kind)];
        let pos = x.clamp(0.0, 1.0) * (PROFILE_POINTS - 1) as f64;
        let lo = (pos.floor() as usize).min(PROFILE_POINTS - 2);
        let frac = pos - lo as f64;
        10f64.powf((1.0 - frac) * row[lo] + frac * row[lo + 1])
    }

    /// The profile as Rust source: the constant `src/synth/profile.rs` holds, headed by a
    /// comment naming `command`, the command that produced it.
    pub fn to_rust_source(&self, command: &str, model: &str) -> String {
        let mut s = String::new();
        s.push_str("//! The singular-value profile of a trained model, baked in (see `SingularProfile`).\n//!\n");
        s.push_str(&format!(
            "//! Measured on {model} by:\n//! ```text\n//! {command}\n//! ```\n"
        ));
        s.push_str("//! Rows: q, k, v, o, gate, up, down. Entry k: log10(σ(x)/σ₁) at x = k/32, averaged over the layers.\n\n");
        s.push_str("// Measured data: a value close to π/6 is not π/6.\n");
        s.push_str("#![allow(clippy::approx_constant)]\n\n");
        s.push_str(
            "/// `log₁₀(σ(x) / σ₁)` per linear kind at `x = k / 32` (see the module comment).\n",
        );
        s.push_str(
            "pub(super) const MEASURED_LOG10_RATIO: [[f64; super::PROFILE_POINTS]; 7] = [\n",
        );
        for (k, row) in self.log10_ratio.iter().enumerate() {
            s.push_str(&format!("    // {}\n    [\n", LinearKind::ALL[k].short()));
            for chunk in row.chunks(8) {
                let vals: Vec<String> = chunk.iter().map(|v| format!("{v:.4}")).collect();
                s.push_str(&format!("        {},\n", vals.join(", ")));
            }
            s.push_str("    ],\n");
        }
        s.push_str("];\n");
        s
    }
}

/// Options of [`write_synthetic_checkpoint`].
#[derive(Clone, Debug, Default)]
pub struct SynthOptions {
    /// Seed of every random number (default 0).
    pub seed: u64,
    /// Decoder layers per shard; `None` picks as many as fit in [`SHARD_TARGET_BYTES`].
    pub layers_per_shard: Option<usize>,
}

/// One tensor of a synthetic checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SynthTensor {
    /// `model.embed_tokens.weight` (`vocab × hidden`).
    Embedding,
    /// `model.layers.{layer}.input_layernorm.weight`.
    AttnNorm(usize),
    /// `model.layers.{layer}.post_attention_layernorm.weight`.
    MlpNorm(usize),
    /// A decoder linear.
    Linear(LinearId),
    /// `model.norm.weight`.
    FinalNorm,
    /// `lm_head.weight` (`vocab × hidden`).
    LmHead,
}

impl SynthTensor {
    /// The Hugging Face name.
    pub fn name(self) -> String {
        match self {
            SynthTensor::Embedding => "model.embed_tokens.weight".into(),
            SynthTensor::AttnNorm(l) => format!("model.layers.{l}.input_layernorm.weight"),
            SynthTensor::MlpNorm(l) => format!("model.layers.{l}.post_attention_layernorm.weight"),
            SynthTensor::Linear(id) => {
                format!("model.layers.{}.{}.weight", id.layer, id.kind.hf_name())
            }
            SynthTensor::FinalNorm => "model.norm.weight".into(),
            SynthTensor::LmHead => "lm_head.weight".into(),
        }
    }

    /// The shape (outermost first) under `cfg`.
    pub fn shape(self, cfg: &ModelConfig) -> Vec<usize> {
        match self {
            SynthTensor::Embedding | SynthTensor::LmHead => vec![cfg.vocab_size, cfg.hidden_size],
            SynthTensor::AttnNorm(_) | SynthTensor::MlpNorm(_) | SynthTensor::FinalNorm => {
                vec![cfg.hidden_size]
            }
            SynthTensor::Linear(id) => {
                let (m, n) = cfg.linear_shape(id.kind);
                vec![m, n]
            }
        }
    }

    /// Bytes of its bf16 data under `cfg`.
    pub fn bytes(self, cfg: &ModelConfig) -> u64 {
        self.shape(cfg).iter().map(|&d| d as u64).product::<u64>() * 2
    }
}

/// The tensors of decoder layer `layer`, in the order they are written.
fn layer_tensors(layer: usize) -> impl Iterator<Item = SynthTensor> {
    let attn = [LinearKind::Q, LinearKind::K, LinearKind::V, LinearKind::O];
    let mlp = [LinearKind::Gate, LinearKind::Up, LinearKind::Down];
    std::iter::once(SynthTensor::AttnNorm(layer))
        .chain(
            attn.into_iter()
                .map(move |kind| SynthTensor::Linear(LinearId { layer, kind })),
        )
        .chain(std::iter::once(SynthTensor::MlpNorm(layer)))
        .chain(
            mlp.into_iter()
                .map(move |kind| SynthTensor::Linear(LinearId { layer, kind })),
        )
}

/// One shard file: its name and the tensors it holds, in write order.
#[derive(Clone, Debug, PartialEq)]
pub struct ShardPlan {
    /// File name, `model-0000i-of-0000n.safetensors`.
    pub file: String,
    /// The tensors, in write order.
    pub tensors: Vec<SynthTensor>,
}

/// Split `cfg`'s tensors into shards: whole decoder layers, `layers_per_shard` of them per
/// shard (default: as many as fit in [`SHARD_TARGET_BYTES`], at least one), the embedding in
/// the first shard, the final norm and the LM head in the last.
pub fn shard_plan(
    cfg: &ModelConfig,
    layers_per_shard: Option<usize>,
) -> Result<Vec<ShardPlan>, EvalError> {
    let layer_bytes: u64 = layer_tensors(0).map(|t| t.bytes(cfg)).sum();
    let per_shard = match layers_per_shard {
        Some(0) => {
            return Err(EvalError::Input(
                "layers per shard must be at least 1".into(),
            ))
        }
        Some(k) => k,
        None => (SHARD_TARGET_BYTES / layer_bytes.max(1)).max(1) as usize,
    }
    .min(cfg.num_layers);
    let count = cfg.num_layers.div_ceil(per_shard);
    let mut shards: Vec<ShardPlan> = (0..count)
        .map(|s| ShardPlan {
            file: format!("model-{:05}-of-{count:05}.safetensors", s + 1),
            tensors: (s * per_shard..((s + 1) * per_shard).min(cfg.num_layers))
                .flat_map(layer_tensors)
                .collect(),
        })
        .collect();
    shards[0].tensors.insert(0, SynthTensor::Embedding);
    let last = &mut shards[count - 1].tensors;
    last.push(SynthTensor::FinalNorm);
    if !cfg.tie_word_embeddings {
        last.push(SynthTensor::LmHead);
    }
    Ok(shards)
}

/// The configuration of `shape` with `layers` decoder layers instead of its own, if given.
pub fn synth_config(shape: SynthShape, layers: Option<usize>) -> Result<ModelConfig, EvalError> {
    let mut cfg = shape.config();
    if let Some(l) = layers {
        if l == 0 || l > MAX_LAYERS {
            return Err(EvalError::Input(format!(
                "--layers {l} is outside 1..={MAX_LAYERS}"
            )));
        }
        cfg.num_layers = l;
    }
    Ok(cfg)
}

// Domain tags of the seed derivation: one per kind of random stream.
const TAG_POOL: u64 = 1;
const TAG_LINEAR: u64 = 2;
const TAG_EMBED: u64 = 3;
const TAG_HEAD: u64 = 4;
const TAG_JITTER: u64 = 5;

/// A seed for the stream identified by `tags` under the run's `seed`: SplitMix64 folded over
/// the tags, so that distinct identities get unrelated streams.
fn derive_seed(seed: u64, tags: &[u64]) -> u64 {
    tags.iter().fold(seed, |s, &t| {
        SplitMix64::new(s ^ t.wrapping_mul(0xD6E8_FEB8_6659_FD93)).next_u64()
    })
}

/// A uniformly random permutation of `0..n` (Fisher–Yates).
fn permutation(rng: &mut SplitMix64, n: usize) -> Vec<usize> {
    let mut p: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        p.swap(i, j);
    }
    p
}

/// A Haar-random `n × r` matrix with orthonormal columns (`n ≥ r`): the Q factor of a Gaussian
/// matrix, each column's sign set by `R`'s diagonal entry so that the law is exactly Haar.
fn haar_basis(n: usize, r: usize, seed: u64) -> Mat<f32> {
    let mut rng = SplitMix64::new(seed);
    let mut a = Mat::<f32>::from_fn(n, r, |_, _| rng.normal() as f32);
    let block = recommended_block_size::<f32>(n, r);
    let mut coeff = Mat::<f32>::zeros(block, r);
    // The factorisation's rounding depends on its parallel degree: a fixed one keeps the
    // output identical on any machine.
    let p = par_deterministic();
    qr_in_place(
        a.as_mut(),
        coeff.as_mut(),
        p,
        MemStack::new(&mut MemBuffer::new(qr_in_place_scratch::<f32>(
            n,
            r,
            block,
            p,
            Default::default(),
        ))),
        Default::default(),
    );
    let signs: Vec<f32> = (0..r)
        .map(|j| if a[(j, j)] < 0.0 { -1.0 } else { 1.0 })
        .collect();
    // The Householder vectors sit below the diagonal, with an implicit unit diagonal.
    for j in 0..r {
        for i in 0..=j {
            a[(i, j)] = if i == j { 1.0 } else { 0.0 };
        }
    }
    let mut q = Mat::<f32>::identity(n, r);
    apply_block_householder_sequence_on_the_left_in_place_with_conj(
        a.as_ref(),
        coeff.as_ref(),
        Conj::No,
        q.as_mut(),
        p,
        MemStack::new(&mut MemBuffer::new(
            apply_block_householder_sequence_on_the_left_in_place_scratch::<f32>(n, block, r),
        )),
    );
    for (j, &s) in signs.iter().enumerate() {
        if s < 0.0 {
            for i in 0..n {
                q[(i, j)] = -q[(i, j)];
            }
        }
    }
    q
}

/// Makes the decoder linears of one configuration and seed, holding the pool of Haar bases
/// (drawn on first use of each `(rows, rank)`).
pub struct LinearGenerator {
    cfg: ModelConfig,
    seed: u64,
    profile: SingularProfile,
    pools: HashMap<(usize, usize), Vec<Mat<f32>>>,
}

impl LinearGenerator {
    /// A generator for `cfg` under `seed`, with the measured profile.
    pub fn new(cfg: &ModelConfig, seed: u64) -> Self {
        Self::with_profile(cfg, seed, SingularProfile::measured())
    }

    /// A generator with an explicit singular-value profile.
    pub fn with_profile(cfg: &ModelConfig, seed: u64, profile: SingularProfile) -> Self {
        Self {
            cfg: cfg.clone(),
            seed,
            profile,
            pools: HashMap::new(),
        }
    }

    /// The exact singular values of linear `id`, descending: the profile of its kind at
    /// `x = i / (r - 1)`, scaled so that the entries' RMS is `ENTRY_RMS` times the matrix's
    /// jitter.
    pub fn singular_values(&self, id: LinearId) -> Vec<f32> {
        let (m, n) = self.cfg.linear_shape(id.kind);
        let r = m.min(n);
        let ratios: Vec<f64> = (0..r)
            .map(|i| {
                let x = if r > 1 {
                    i as f64 / (r - 1) as f64
                } else {
                    0.0
                };
                self.profile.ratio(id.kind, x)
            })
            .collect();
        let norm = ratios.iter().map(|v| v * v).sum::<f64>().sqrt();
        let u = SplitMix64::new(derive_seed(
            self.seed,
            &[TAG_JITTER, id.layer as u64, kind_index(id.kind) as u64],
        ))
        .uniform();
        let rms = ENTRY_RMS as f64 * (1.0 + LAYER_JITTER as f64 * (2.0 * u - 1.0));
        let scale = rms * ((m * n) as f64).sqrt() / norm;
        ratios.iter().map(|v| (v * scale) as f32).collect()
    }

    fn pool(&mut self, rows: usize, r: usize) -> &[Mat<f32>] {
        let seed = self.seed;
        self.pools.entry((rows, r)).or_insert_with(|| {
            (0..BASIS_POOL)
                .map(|b| {
                    haar_basis(
                        rows,
                        r,
                        derive_seed(seed, &[TAG_POOL, rows as u64, r as u64, b as u64]),
                    )
                })
                .collect()
        })
    }

    /// `rows × r`: a pool basis with its rows permuted and sign-flipped and its columns
    /// permuted, each column `j` multiplied by `scale[j]`.
    fn scrambled_basis(
        &mut self,
        rows: usize,
        r: usize,
        rng: &mut SplitMix64,
        scale: &[f32],
    ) -> Mat<f32> {
        let which = rng.below(BASIS_POOL as u64) as usize;
        let row_perm = permutation(rng, rows);
        let signs: Vec<f32> = (0..rows)
            .map(|_| if rng.next_u64() >> 63 == 0 { 1.0 } else { -1.0 })
            .collect();
        let col_perm = permutation(rng, r);
        let base = &self.pool(rows, r)[which];
        let mut out = Mat::<f32>::zeros(rows, r);
        for j in 0..r {
            let src = base.col(col_perm[j]);
            let dst = out.col_mut(j);
            let s = scale[j];
            for (i, d) in dst.iter_mut().enumerate() {
                *d = signs[i] * src[row_perm[i]] * s;
            }
        }
        out
    }

    /// Linear `id`, transposed: `Wᵀ` (`d_in × d_out`, column-major), i.e. `W`'s row-major
    /// data, the order safetensors stores.
    pub fn linear_transposed(&mut self, id: LinearId) -> Mat<f32> {
        let (m, n) = self.cfg.linear_shape(id.kind);
        let r = m.min(n);
        let s = self.singular_values(id);
        let mut rng = SplitMix64::new(derive_seed(
            self.seed,
            &[TAG_LINEAR, id.layer as u64, kind_index(id.kind) as u64],
        ));
        let us = self.scrambled_basis(m, r, &mut rng, &s);
        let v = self.scrambled_basis(n, r, &mut rng, &vec![1.0; r]);
        // Wᵀ = V (U diag(s))ᵀ.
        let mut wt = Mat::<f32>::zeros(n, m);
        matmul(
            wt.as_mut(),
            Accum::Replace,
            v.as_ref(),
            us.as_ref().transpose(),
            1.0f32,
            par(),
        );
        wt
    }

    /// Linear `id` (`d_out × d_in`) in f32, before bf16 rounding.
    pub fn linear(&mut self, id: LinearId) -> Mat<f32> {
        self.linear_transposed(id).transpose().to_owned()
    }
}

/// What [`write_synthetic_checkpoint`] reports as it goes.
#[derive(Clone, Debug)]
pub enum SynthEvent {
    /// Decoder layer `layer` (0-based) of `layers` is written.
    Layer {
        /// The layer just finished.
        layer: usize,
        /// Number of layers.
        layers: usize,
        /// Time since the start.
        elapsed: Duration,
    },
    /// Shard `index` (0-based) of `count` is complete.
    Shard {
        /// The shard just finished.
        index: usize,
        /// Number of shards.
        count: usize,
        /// Its file name.
        file: String,
        /// Its tensor data bytes.
        bytes: u64,
        /// Time since the start.
        elapsed: Duration,
    },
}

/// What was written.
#[derive(Clone, Debug)]
pub struct SynthReport {
    /// Number of shard files.
    pub shards: usize,
    /// Number of tensors.
    pub tensors: usize,
    /// Tensor data bytes (the index's `metadata.total_size`).
    pub total_bytes: u64,
    /// Wall time.
    pub elapsed: Duration,
}

/// Key of `config.json` that marks a folder as this generator's output.
pub const SYNTH_MARKER: &str = "llm_compress_synthetic";

/// `v` as the shortest decimal that reads back as the same f32 (0.02, not 0.0199999995...).
fn shortest_decimal(v: f32) -> serde_json::Value {
    v.to_string()
        .parse::<f64>()
        .map_or(serde_json::Value::Null, serde_json::Value::from)
}

fn io_error(path: &Path, source: std::io::Error) -> EvalError {
    EvalError::Data {
        path: path.into(),
        source,
    }
}

fn write_bf16_rows(
    w: &mut dyn Write,
    data: impl Iterator<Item = f32>,
    buf: &mut Vec<u8>,
) -> std::io::Result<()> {
    buf.clear();
    for v in data {
        buf.extend_from_slice(&half::bf16::from_f32(v).to_le_bytes());
        if buf.len() >= 1 << 20 {
            w.write_all(buf)?;
            buf.clear();
        }
    }
    w.write_all(buf)
}

/// Write the synthetic checkpoint of `cfg` into `dir` (created if missing): the shards, then
/// `model.safetensors.index.json` and `config.json`. A `config.json` already in `dir` must be
/// a previous output of this generator (it and the index are removed first, so that the
/// folder does not look complete until the new run ends); a real model's folder is refused.
pub fn write_synthetic_checkpoint(
    dir: &Path,
    cfg: &ModelConfig,
    opts: &SynthOptions,
    mut progress: impl FnMut(&SynthEvent),
) -> Result<SynthReport, EvalError> {
    let start = Instant::now();
    cfg.validate(&dir.join("config.json"))?;
    if cfg.attention_bias {
        return Err(EvalError::Input(
            "the generator does not make attention biases".into(),
        ));
    }
    let plan = shard_plan(cfg, opts.layers_per_shard)?;
    std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
    let cfg_path = dir.join("config.json");
    let index_path = dir.join("model.safetensors.index.json");
    if cfg_path.exists() {
        let text = std::fs::read_to_string(&cfg_path).map_err(|e| io_error(&cfg_path, e))?;
        let ours = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .is_some_and(|v| v.get(SYNTH_MARKER).is_some());
        if !ours {
            return Err(EvalError::Input(format!(
                "{} holds a model this generator did not make; choose an empty folder",
                dir.display()
            )));
        }
        std::fs::remove_file(&cfg_path).map_err(|e| io_error(&cfg_path, e))?;
    }
    if index_path.exists() {
        std::fs::remove_file(&index_path).map_err(|e| io_error(&index_path, e))?;
    }

    let mut gen = LinearGenerator::new(cfg, opts.seed);
    let mut weight_map = serde_json::Map::new();
    let (mut total_bytes, mut tensors) = (0u64, 0usize);
    let metadata = BTreeMap::from([("format".to_string(), "pt".to_string())]);
    let mut buf = Vec::with_capacity(1 << 20);
    for (index, shard) in plan.iter().enumerate() {
        let headers: Vec<TensorHeader> = shard
            .tensors
            .iter()
            .map(|t| TensorHeader {
                name: t.name(),
                dtype: Dtype::BF16,
                shape: t.shape(cfg),
            })
            .collect();
        let path = dir.join(&shard.file);
        write_safetensors_with(&path, &headers, &metadata, |i, w| {
            let t = shard.tensors[i];
            match t {
                SynthTensor::AttnNorm(_) | SynthTensor::MlpNorm(_) | SynthTensor::FinalNorm => {
                    write_bf16_rows(w, std::iter::repeat_n(1.0, cfg.hidden_size), &mut buf)
                }
                SynthTensor::Embedding | SynthTensor::LmHead => {
                    let tag = if t == SynthTensor::Embedding {
                        TAG_EMBED
                    } else {
                        TAG_HEAD
                    };
                    let mut rng = SplitMix64::new(derive_seed(opts.seed, &[tag]));
                    let n = cfg.vocab_size * cfg.hidden_size;
                    write_bf16_rows(w, (0..n).map(|_| EMBED_STD * rng.normal() as f32), &mut buf)
                }
                SynthTensor::Linear(id) => {
                    let wt = gen.linear_transposed(id);
                    let rows = (0..wt.ncols()).flat_map(|j| wt.col_as_slice(j).iter().copied());
                    write_bf16_rows(w, rows, &mut buf)?;
                    if id.kind == LinearKind::Down {
                        progress(&SynthEvent::Layer {
                            layer: id.layer,
                            layers: cfg.num_layers,
                            elapsed: start.elapsed(),
                        });
                    }
                    Ok(())
                }
            }
        })?;
        let bytes: u64 = shard.tensors.iter().map(|t| t.bytes(cfg)).sum();
        for t in &shard.tensors {
            weight_map.insert(t.name(), shard.file.clone().into());
        }
        total_bytes += bytes;
        tensors += shard.tensors.len();
        tracing::info!(shard = %shard.file, bytes, "synthetic shard written");
        progress(&SynthEvent::Shard {
            index,
            count: plan.len(),
            file: shard.file.clone(),
            bytes,
            elapsed: start.elapsed(),
        });
    }
    let index = serde_json::json!({
        "metadata": { "total_size": total_bytes },
        "weight_map": weight_map,
    });
    write_json_atomic(&index_path, &index)?;
    let mut config = cfg.to_hf_json();
    config["torch_dtype"] = "bfloat16".into();
    config[SYNTH_MARKER] = serde_json::json!({
        "note": "random test weights with a trained model's singular-value profile; not a model (perplexity means nothing)",
        "generator": "cargo run --release --example synth_model",
        "seed": opts.seed,
        "entry_rms": shortest_decimal(ENTRY_RMS),
        "embed_std": shortest_decimal(EMBED_STD),
        "profile": "SmolLM2-135M-Instruct (src/synth/profile.rs)",
    });
    write_json_atomic(&cfg_path, &config)?;
    Ok(SynthReport {
        shards: plan.len(),
        tensors,
        total_bytes,
        elapsed: start.elapsed(),
    })
}
