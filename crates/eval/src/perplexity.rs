//! Perplexity with the protocol of `data/SOURCES.md`: non-overlapping windows of `seq_len`
//! tokens (remainder dropped), each window's `seq_len − 1` predicted tokens, perplexity =
//! `exp(Σ NLL / Σ predicted)` over all windows (token-weighted, as SVD-LLM's evaluation).

use crate::{EvalError, Model};
use serde::Serialize;
use std::time::Instant;

/// Options of a perplexity run.
#[derive(Clone, Debug)]
pub struct PerplexityOptions {
    /// Tokens per window (default 2048); each window predicts `seq_len − 1` tokens.
    pub seq_len: usize,
    /// Evaluate only the first `n` windows ("wt2-20w" is 20).
    pub max_windows: Option<usize>,
}

impl Default for PerplexityOptions {
    fn default() -> Self {
        Self {
            seq_len: 2048,
            max_windows: None,
        }
    }
}

/// Result of a perplexity run.
#[derive(Clone, Debug, Serialize)]
pub struct PerplexityReport {
    /// Perplexity, `exp(nll_sum / predicted_tokens)`.
    pub ppl: f64,
    /// Sum of the negative log-likelihoods (natural log) of all predicted tokens.
    pub nll_sum: f64,
    /// Number of windows evaluated.
    pub windows: usize,
    /// Number of predicted tokens (`windows × (seq_len − 1)`).
    pub predicted_tokens: usize,
    /// Tokens per window.
    pub seq_len: usize,
    /// Wall time of the run in seconds.
    pub wall_s: f64,
    /// Tokens run through the model per second (all window tokens, not only predicted ones).
    pub tokens_per_s: f64,
}

/// Perplexity of `model` on `tokens`. `progress(done_windows)` is called after each window.
pub fn perplexity(
    model: &Model,
    tokens: &[u32],
    opts: &PerplexityOptions,
    mut progress: impl FnMut(usize),
) -> Result<PerplexityReport, EvalError> {
    let windows = window_count(tokens, opts)?;
    let start = Instant::now();
    let (mut nll, mut count) = (0.0f64, 0usize);
    for w in 0..windows {
        let win = &tokens[w * opts.seq_len..(w + 1) * opts.seq_len];
        let (s, n) = model.window_nll(win)?;
        if !s.is_finite() {
            return Err(EvalError::Input(format!(
                "window {w}: non-finite log-likelihood"
            )));
        }
        nll += s;
        count += n;
        tracing::debug!(window = w, nll = s / n as f64, "window done");
        progress(w + 1);
    }
    let wall = start.elapsed().as_secs_f64();
    Ok(PerplexityReport {
        ppl: (nll / count as f64).exp(),
        nll_sum: nll,
        windows,
        predicted_tokens: count,
        seq_len: opts.seq_len,
        wall_s: wall,
        tokens_per_s: (windows * opts.seq_len) as f64 / wall,
    })
}

/// The number of evaluation windows of `tokens` under `opts`, or an error if there is none.
fn window_count(tokens: &[u32], opts: &PerplexityOptions) -> Result<usize, EvalError> {
    if opts.seq_len < 2 {
        return Err(EvalError::Input(format!("seq_len {} < 2", opts.seq_len)));
    }
    let mut windows = tokens.len() / opts.seq_len;
    if let Some(m) = opts.max_windows {
        windows = windows.min(m);
    }
    if windows == 0 {
        return Err(EvalError::Input(format!(
            "{} tokens do not fill one window of {}",
            tokens.len(),
            opts.seq_len
        )));
    }
    Ok(windows)
}

/// [`perplexity`] with the decoder layers read from `ckpt` one at a time
/// ([`Model::hidden_states_streamed`]): the same windows and the same figure, for a model whose
/// layers do not fit in memory together. `base` comes from [`Model::load_without_layers`].
pub fn perplexity_streamed(
    base: &Model,
    ckpt: &llm_compress_tensor_io::Checkpoint,
    tokens: &[u32],
    opts: &PerplexityOptions,
) -> Result<PerplexityReport, EvalError> {
    let windows = window_count(tokens, opts)?;
    let start = Instant::now();
    let wins: Vec<Vec<u32>> = (0..windows)
        .map(|w| tokens[w * opts.seq_len..(w + 1) * opts.seq_len].to_vec())
        .collect();
    let hs = base.hidden_states_streamed(ckpt, &wins)?;
    let (mut nll, mut count) = (0.0f64, 0usize);
    for (w, (h, win)) in hs.iter().zip(&wins).enumerate() {
        let (s, n) = base.nll_from_hidden(h.as_ref(), win);
        if !s.is_finite() {
            return Err(EvalError::Input(format!(
                "window {w}: non-finite log-likelihood"
            )));
        }
        nll += s;
        count += n;
    }
    let wall = start.elapsed().as_secs_f64();
    Ok(PerplexityReport {
        ppl: (nll / count as f64).exp(),
        nll_sum: nll,
        windows,
        predicted_tokens: count,
        seq_len: opts.seq_len,
        wall_s: wall,
        tokens_per_s: (windows * opts.seq_len) as f64 / wall,
    })
}
