//! A Llama-family decoder in f32 that runs dense and compressed linears alike.
//!
//! Activations hold one token per column (`hidden × T`), so every step reads like the math:
//! `h ← h + W_o · attn(RoPE(W_q x), RoPE(W_k x), W_v x)` with `x = RMSNorm(h)`, then
//! `h ← h + W_down (silu(W_gate x) ⊙ W_up x)` with `x = RMSNorm(h)`.

use crate::EvalError;
use faer::linalg::matmul::matmul;
use faer::reborrow::{Reborrow, ReborrowMut};
use faer::{Accum, Mat, MatMut, MatRef, Par};
use llm_compress_core::{par, Linear, LinearId, LinearInput, LinearKind};
use llm_compress_tensor_io::{Checkpoint, ModelConfig};
use rayon::prelude::*;

/// Sees the inputs of the linears of one decoder layer during a forward pass (calibration).
pub trait LayerObserver {
    /// `x` (`d_in × T`) is about to be read by the linears of `input`.
    fn observe(&mut self, input: LinearInput, x: MatRef<'_, f32>);
}

/// One decoder layer.
#[derive(Clone, Debug)]
pub struct DecoderLayer {
    /// RMSNorm weight before attention (`input_layernorm`, `hidden` values).
    pub attn_norm: Vec<f32>,
    /// RMSNorm weight before the MLP (`post_attention_layernorm`, `hidden` values).
    pub mlp_norm: Vec<f32>,
    /// Query projection, `heads·head_dim × hidden`.
    pub q: Linear,
    /// Key projection, `kv_heads·head_dim × hidden`.
    pub k: Linear,
    /// Value projection, `kv_heads·head_dim × hidden`.
    pub v: Linear,
    /// Attention output projection, `hidden × heads·head_dim`.
    pub o: Linear,
    /// MLP gate projection, `intermediate × hidden` (through SiLU).
    pub gate: Linear,
    /// MLP up projection, `intermediate × hidden`.
    pub up: Linear,
    /// MLP down projection, `hidden × intermediate`.
    pub down: Linear,
    /// q/k/v biases (Qwen2), `None` elsewhere.
    pub qkv_bias: Option<[Vec<f32>; 3]>,
}

impl DecoderLayer {
    /// The linear of kind `kind`.
    pub fn linear(&self, kind: LinearKind) -> &Linear {
        match kind {
            LinearKind::Q => &self.q,
            LinearKind::K => &self.k,
            LinearKind::V => &self.v,
            LinearKind::O => &self.o,
            LinearKind::Gate => &self.gate,
            LinearKind::Up => &self.up,
            LinearKind::Down => &self.down,
        }
    }

    /// The linear of kind `kind`, mutably (a compression step replaces it in place).
    pub fn linear_mut(&mut self, kind: LinearKind) -> &mut Linear {
        match kind {
            LinearKind::Q => &mut self.q,
            LinearKind::K => &mut self.k,
            LinearKind::V => &mut self.v,
            LinearKind::O => &mut self.o,
            LinearKind::Gate => &mut self.gate,
            LinearKind::Up => &mut self.up,
            LinearKind::Down => &mut self.down,
        }
    }

    /// Read layer `l` of a checkpoint as dense linears.
    pub fn load(ckpt: &Checkpoint, l: usize) -> Result<Self, EvalError> {
        let cfg = &ckpt.config;
        let p = format!("model.layers.{l}.");
        let vec = |name: &str, len: usize| -> Result<Vec<f32>, EvalError> {
            let t = ckpt.tensor(&format!("{p}{name}"))?;
            if t.data.len() != len {
                return Err(EvalError::Shape(format!(
                    "{p}{name}: {:?}, expected [{len}]",
                    t.shape
                )));
            }
            Ok(t.data)
        };
        let lin = |kind: LinearKind| -> Result<Linear, EvalError> {
            let lin = ckpt.linear(LinearId { layer: l, kind })?;
            let want = cfg.linear_shape(kind);
            if lin.shape() != want {
                return Err(EvalError::Shape(format!(
                    "layer {l} {}: {:?}, expected {want:?}",
                    kind.short(),
                    lin.shape()
                )));
            }
            Ok(lin)
        };
        let qkv_bias = if cfg.attention_bias {
            let (q, _) = cfg.linear_shape(LinearKind::Q);
            let (kv, _) = cfg.linear_shape(LinearKind::K);
            Some([
                vec("self_attn.q_proj.bias", q)?,
                vec("self_attn.k_proj.bias", kv)?,
                vec("self_attn.v_proj.bias", kv)?,
            ])
        } else {
            None
        };
        Ok(Self {
            attn_norm: vec("input_layernorm.weight", cfg.hidden_size)?,
            mlp_norm: vec("post_attention_layernorm.weight", cfg.hidden_size)?,
            q: lin(LinearKind::Q)?,
            k: lin(LinearKind::K)?,
            v: lin(LinearKind::V)?,
            o: lin(LinearKind::O)?,
            gate: lin(LinearKind::Gate)?,
            up: lin(LinearKind::Up)?,
            down: lin(LinearKind::Down)?,
            qkv_bias,
        })
    }

    /// Apply the layer to the residual stream `h` (`hidden × T`, positions `0..T`) in place.
    pub fn forward(
        &self,
        cfg: &ModelConfig,
        rope: &Rope,
        h: &mut Mat<f32>,
        mut observer: Option<&mut dyn LayerObserver>,
    ) {
        let t = h.ncols();
        // Attention block.
        let x = rms_norm(h.as_ref(), &self.attn_norm, cfg.rms_norm_eps as f32);
        if let Some(o) = observer.as_deref_mut() {
            o.observe(LinearInput::Attn, x.as_ref());
        }
        let mut q = self.q.apply(x.as_ref());
        let mut k = self.k.apply(x.as_ref());
        let mut v = self.v.apply(x.as_ref());
        if let Some([bq, bk, bv]) = &self.qkv_bias {
            add_bias(q.as_mut(), bq);
            add_bias(k.as_mut(), bk);
            add_bias(v.as_mut(), bv);
        }
        drop(x);
        rope.apply(q.as_mut(), cfg.num_heads, cfg.head_dim);
        rope.apply(k.as_mut(), cfg.num_kv_heads, cfg.head_dim);
        let a = causal_attention(q.as_ref(), k.as_ref(), v.as_ref(), cfg);
        if let Some(o) = observer.as_deref_mut() {
            o.observe(LinearInput::AttnOut, a.as_ref());
        }
        let mut out = Mat::<f32>::zeros(cfg.hidden_size, t);
        self.o.forward(a.as_ref(), out.as_mut());
        *h += &out;
        // MLP block.
        let x = rms_norm(h.as_ref(), &self.mlp_norm, cfg.rms_norm_eps as f32);
        if let Some(o) = observer.as_deref_mut() {
            o.observe(LinearInput::Mlp, x.as_ref());
        }
        let mut g = self.gate.apply(x.as_ref());
        let u = self.up.apply(x.as_ref());
        drop(x);
        g.par_col_chunks_mut(64)
            .zip(u.par_col_chunks(64))
            .for_each(|(mut gc, uc)| {
                for j in 0..gc.ncols() {
                    let gcol = gc
                        .rb_mut()
                        .col_mut(j)
                        .try_as_col_major_mut()
                        .expect("contiguous");
                    let ucol = uc.col(j).try_as_col_major().expect("contiguous");
                    crate::simd::silu_mul(gcol.as_slice_mut(), ucol.as_slice());
                }
            });
        if let Some(o) = observer {
            o.observe(LinearInput::MlpHidden, g.as_ref());
        }
        self.down.forward(g.as_ref(), out.as_mut());
        *h += &out;
    }

    /// Parameters of the seven linears (a shared basis is not included: it belongs to the
    /// group, see [`Model::linear_params`]).
    pub fn linear_params(&self) -> usize {
        LinearKind::ALL
            .iter()
            .map(|&k| self.linear(k).param_count())
            .sum()
    }
}

fn add_bias(mut y: MatMut<'_, f32>, b: &[f32]) {
    for j in 0..y.ncols() {
        for (i, bi) in b.iter().enumerate() {
            y[(i, j)] += bi;
        }
    }
}

/// A column-major `Mat` from row-major data (`rows × cols`).
pub fn mat_from_row_major(rows: usize, cols: usize, data: &[f32]) -> Mat<f32> {
    Mat::from_fn(rows, cols, |i, j| data[i * cols + j])
}

/// RMSNorm of every column: `x / sqrt(mean(x²) + eps) ⊙ w`.
pub fn rms_norm(h: MatRef<'_, f32>, w: &[f32], eps: f32) -> Mat<f32> {
    let (d, t) = (h.nrows(), h.ncols());
    let mut out = Mat::<f32>::zeros(d, t);
    out.par_col_chunks_mut(64)
        .enumerate()
        .for_each(|(c, mut oc)| {
            for j in 0..oc.ncols() {
                let src = h.col(c * 64 + j);
                let ss: f32 = src.iter().map(|v| v * v).sum();
                let r = 1.0 / (ss / d as f32 + eps).sqrt();
                for i in 0..d {
                    oc[(i, j)] = src[i] * r * w[i];
                }
            }
        });
    out
}

/// Rotary position embedding in the Hugging Face convention (`rotate_half`: dimension `i`
/// pairs with `i + d/2`), angle `pos · θ^(−2i/d)`.
#[derive(Clone, Debug)]
pub struct Rope {
    head_dim: usize,
    /// `cos[pos * half + i]`, `sin[...]`.
    cos: Vec<f32>,
    sin: Vec<f32>,
}

impl Rope {
    /// Precompute the cos/sin tables for positions `0..max_pos` with base `theta`
    /// (`rope_theta`). `head_dim` must be even.
    pub fn new(head_dim: usize, theta: f64, max_pos: usize) -> Self {
        let half = head_dim / 2;
        let mut cos = Vec::with_capacity(max_pos * half);
        let mut sin = Vec::with_capacity(max_pos * half);
        for p in 0..max_pos {
            for i in 0..half {
                let inv = 1.0 / theta.powf(2.0 * i as f64 / head_dim as f64);
                // HF computes inv_freq in f32 and the angle in f32; do the same.
                let ang = (p as f32) * (inv as f32);
                cos.push(ang.cos());
                sin.push(ang.sin());
            }
        }
        Self { head_dim, cos, sin }
    }

    /// Number of positions the table covers (the longest window [`Rope::apply`] accepts).
    pub fn max_positions(&self) -> usize {
        self.cos.len() / (self.head_dim / 2)
    }

    /// Rotate every head of `x` (`heads·head_dim × T`), token `j` at position `j`.
    pub fn apply(&self, x: MatMut<'_, f32>, heads: usize, head_dim: usize) {
        assert_eq!(head_dim, self.head_dim);
        assert!(
            x.ncols() <= self.max_positions(),
            "sequence longer than the RoPE table"
        );
        let half = head_dim / 2;
        x.par_col_chunks_mut(64)
            .enumerate()
            .for_each(|(c, mut xc)| {
                for j in 0..xc.ncols() {
                    let pos = c * 64 + j;
                    let cs = &self.cos[pos * half..(pos + 1) * half];
                    let sn = &self.sin[pos * half..(pos + 1) * half];
                    for h in 0..heads {
                        let b = h * head_dim;
                        for i in 0..half {
                            let (x1, x2) = (xc[(b + i, j)], xc[(b + i + half, j)]);
                            xc[(b + i, j)] = x1 * cs[i] - x2 * sn[i];
                            xc[(b + i + half, j)] = x2 * cs[i] + x1 * sn[i];
                        }
                    }
                }
            });
    }
}

/// Query block size of the blocked causal attention.
const QBLOCK: usize = 128;

/// Grouped-query causal attention. `q` is `heads·d × T`, `k`/`v` are `kv_heads·d × T`.
/// Queries are processed in blocks of `QBLOCK` (128), each against the keys up to its end, so the
/// masked upper triangle is (almost) never computed. Heads × blocks run in parallel.
pub fn causal_attention(
    q: MatRef<'_, f32>,
    k: MatRef<'_, f32>,
    v: MatRef<'_, f32>,
    cfg: &ModelConfig,
) -> Mat<f32> {
    let (d, t) = (cfg.head_dim, q.ncols());
    let group = cfg.num_heads / cfg.num_kv_heads;
    let scale = 1.0 / (d as f32).sqrt();
    let nblocks = t.div_ceil(QBLOCK);
    let tasks: Vec<(usize, usize)> = (0..cfg.num_heads)
        .flat_map(|h| (0..nblocks).map(move |b| (h, b)))
        .collect();
    let outs: Vec<Mat<f32>> = tasks
        .par_iter()
        .map(|&(h, b)| {
            let i0 = b * QBLOCK;
            let i1 = (i0 + QBLOCK).min(t);
            let kv = h / group;
            let qh = q.subrows(h * d, d).subcols(i0, i1 - i0);
            let kh = k.subrows(kv * d, d).subcols(0, i1);
            let vh = v.subrows(kv * d, d).subcols(0, i1);
            // s[j, i] = k_j · q_i  (keys × queries)
            let mut s = Mat::<f32>::zeros(i1, i1 - i0);
            matmul(
                s.as_mut(),
                Accum::Replace,
                kh.transpose(),
                qh,
                scale,
                Par::Seq,
            );
            for c in 0..(i1 - i0) {
                let pos = i0 + c;
                let col = s.col_mut(c).try_as_col_major_mut().expect("contiguous");
                crate::simd::softmax_prefix(col.as_slice_mut(), pos + 1);
            }
            let mut o = Mat::<f32>::zeros(d, i1 - i0);
            matmul(o.as_mut(), Accum::Replace, vh, s.as_ref(), 1.0f32, Par::Seq);
            o
        })
        .collect();
    let mut out = Mat::<f32>::zeros(cfg.num_heads * d, t);
    for (&(h, b), o) in tasks.iter().zip(&outs) {
        let i0 = b * QBLOCK;
        out.as_mut()
            .subrows_mut(h * d, d)
            .subcols_mut(i0, o.ncols())
            .copy_from(o);
    }
    out
}

/// A whole model: embedding, decoder layers, final norm, head.
#[derive(Clone, Debug)]
pub struct Model {
    /// Architecture of the model (sizes, norms, RoPE, tied head).
    pub config: ModelConfig,
    /// `vocab × hidden`.
    pub embed: Mat<f32>,
    /// The decoder layers, in order (empty after [`Model::load_without_layers`]).
    pub layers: Vec<DecoderLayer>,
    /// Final RMSNorm weight (`hidden` values).
    pub norm: Vec<f32>,
    /// `vocab × hidden`; `None` when tied to `embed`.
    pub lm_head: Option<Mat<f32>>,
    /// RoPE table for up to `max_position_embeddings` positions.
    pub rope: Rope,
}

impl Model {
    /// Load every tensor of a checkpoint as dense f32.
    pub fn load(ckpt: &Checkpoint) -> Result<Self, EvalError> {
        let mut m = Self::load_without_layers(ckpt)?;
        for l in 0..ckpt.config.num_layers {
            m.layers.push(DecoderLayer::load(ckpt, l)?);
        }
        Ok(m)
    }

    /// Embedding, final norm, head and RoPE table, with no decoder layers (the layer-streamed
    /// calibration walk loads layers one at a time).
    pub fn load_without_layers(ckpt: &Checkpoint) -> Result<Self, EvalError> {
        let cfg = ckpt.config.clone();
        let mat = |name: &str| -> Result<Mat<f32>, EvalError> {
            let t = ckpt.tensor(name)?;
            if t.shape != [cfg.vocab_size, cfg.hidden_size] {
                return Err(EvalError::Shape(format!(
                    "{name}: {:?}, expected [{}, {}]",
                    t.shape, cfg.vocab_size, cfg.hidden_size
                )));
            }
            Ok(mat_from_row_major(cfg.vocab_size, cfg.hidden_size, &t.data))
        };
        let embed = mat("model.embed_tokens.weight")?;
        let lm_head = if cfg.tie_word_embeddings {
            None
        } else {
            Some(mat("lm_head.weight")?)
        };
        let norm = ckpt.tensor("model.norm.weight")?.data;
        if norm.len() != cfg.hidden_size {
            return Err(EvalError::Shape(format!(
                "model.norm.weight has {} values",
                norm.len()
            )));
        }
        let rope = Rope::new(
            cfg.head_dim,
            cfg.rope_theta,
            cfg.max_position_embeddings.max(1),
        );
        Ok(Self {
            config: cfg,
            embed,
            layers: Vec::new(),
            norm,
            lm_head,
            rope,
        })
    }

    /// The head matrix (`vocab × hidden`).
    pub fn head(&self) -> MatRef<'_, f32> {
        self.lm_head.as_ref().unwrap_or(&self.embed).as_ref()
    }

    /// Embeddings of `tokens` as `hidden × T`.
    pub fn embed(&self, tokens: &[u32]) -> Result<Mat<f32>, EvalError> {
        let v = self.config.vocab_size;
        if let Some(bad) = tokens.iter().find(|&&t| t as usize >= v) {
            return Err(EvalError::Input(format!(
                "token id {bad} >= vocab size {v}"
            )));
        }
        let e = self.embed.as_ref();
        Ok(Mat::from_fn(
            self.config.hidden_size,
            tokens.len(),
            |i, j| e[(tokens[j] as usize, i)],
        ))
    }

    /// Final hidden states (after the final norm) of one window, `hidden × T`.
    pub fn hidden_states(&self, tokens: &[u32]) -> Result<Mat<f32>, EvalError> {
        if tokens.len() > self.rope.max_positions() {
            return Err(EvalError::Input(format!(
                "window of {} tokens exceeds max_position_embeddings {}",
                tokens.len(),
                self.rope.max_positions()
            )));
        }
        let mut h = self.embed(tokens)?;
        for layer in &self.layers {
            layer.forward(&self.config, &self.rope, &mut h, None);
        }
        Ok(rms_norm(
            h.as_ref(),
            &self.norm,
            self.config.rms_norm_eps as f32,
        ))
    }

    /// Final hidden states (after the final norm) of `windows`, with the decoder layers read
    /// from `ckpt` **one at a time** and dropped after use: the forward pass of a model whose
    /// layers do not fit in memory together (a 7B checkpoint on a laptop). `self` provides the
    /// embedding, final norm and RoPE table ([`Model::load_without_layers`]); its own `layers`
    /// are not used. Each layer is loaded once for all windows.
    pub fn hidden_states_streamed(
        &self,
        ckpt: &Checkpoint,
        windows: &[Vec<u32>],
    ) -> Result<Vec<Mat<f32>>, EvalError> {
        if let Some(w) = windows.iter().find(|w| w.len() > self.rope.max_positions()) {
            return Err(EvalError::Input(format!(
                "window of {} tokens exceeds max_position_embeddings {}",
                w.len(),
                self.rope.max_positions()
            )));
        }
        let mut hs = windows
            .iter()
            .map(|w| self.embed(w))
            .collect::<Result<Vec<_>, _>>()?;
        for l in 0..ckpt.config.num_layers {
            let layer = DecoderLayer::load(ckpt, l)?;
            for h in &mut hs {
                layer.forward(&self.config, &self.rope, h, None);
            }
        }
        Ok(hs
            .iter()
            .map(|h| rms_norm(h.as_ref(), &self.norm, self.config.rms_norm_eps as f32))
            .collect())
    }

    /// Logits of one window, `vocab × T` (memory: vocab·T floats; perplexity avoids this).
    pub fn logits(&self, tokens: &[u32]) -> Result<Mat<f32>, EvalError> {
        let x = self.hidden_states(tokens)?;
        let mut out = Mat::<f32>::zeros(self.config.vocab_size, tokens.len());
        matmul(
            out.as_mut(),
            Accum::Replace,
            self.head(),
            x.as_ref(),
            1.0f32,
            par(),
        );
        Ok(out)
    }

    /// Sum of the negative log-likelihoods of `tokens[1..]` given their prefixes, and the
    /// number of predicted tokens (`T − 1`). The head is applied in chunks of columns so the
    /// full `vocab × T` logits never exist at once.
    pub fn window_nll(&self, tokens: &[u32]) -> Result<(f64, usize), EvalError> {
        let x = self.hidden_states(tokens)?;
        Ok(self.nll_from_hidden(x.as_ref(), tokens))
    }

    /// NLL of `tokens[1..]` from final (normed) hidden states `x` (`hidden × T`).
    pub fn nll_from_hidden(&self, x: MatRef<'_, f32>, tokens: &[u32]) -> (f64, usize) {
        const CHUNK: usize = 512;
        let t = tokens.len();
        if t < 2 {
            return (0.0, 0);
        }
        let v = self.config.vocab_size;
        let mut logits = Mat::<f32>::zeros(v, CHUNK);
        let mut total = 0.0f64;
        let mut c0 = 0;
        while c0 < t - 1 {
            let c1 = (c0 + CHUNK).min(t - 1);
            let n = c1 - c0;
            let mut lg = logits.as_mut().subcols_mut(0, n);
            matmul(
                lg.rb_mut(),
                Accum::Replace,
                self.head(),
                x.subcols(c0, n),
                1.0f32,
                par(),
            );
            let lg = lg.rb();
            total += (0..n)
                .into_par_iter()
                .map(|j| {
                    let col = lg.col(j).try_as_col_major().expect("contiguous");
                    let col = col.as_slice();
                    crate::simd::log_sum_exp(col) - col[tokens[c0 + j + 1] as usize] as f64
                })
                .sum::<f64>();
            c0 = c1;
        }
        (total, t - 1)
    }

    /// Parameters of all decoder linears, each shared basis counted once
    /// ([`llm_compress_core::shared::distinct_param_count`]).
    pub fn linear_params(&self) -> usize {
        llm_compress_core::shared::distinct_param_count(
            self.layers
                .iter()
                .flat_map(|l| LinearKind::ALL.into_iter().map(move |k| l.linear(k))),
        )
    }
}
