//! llm-compress: shrink large language models on a plain CPU, as a library or a command.
//!
//! This facade re-exports the workspace's crates:
//! - [`core`]: the shared vocabulary ([`core::Linear`], [`core::InputStats`], the compressor traits);
//! - [`tensor_io`]: safetensors, GGUF, `config.json`, tokenizers, atomic writers;
//! - [`eval`]: the Llama-family runtime, calibration walk, perplexity;
//! - [`whitening_svd`]: SVD-LLM, plain SVD, ASVD;
//! - [`glu_sparsity`]: DaSS, Wanda and magnitude pruning (N:M and unstructured);
//! - [`shared_basis`]: Basis Sharing (one basis per group of layers);
//! - [`basis_select`]: training-free Basis Selection;
//! - [`layer_quant`]: LSAQ importance, budget allocation, RTN / GPTQ ([`quant`] runs it on a model).
//!
//! [`Pipeline`] composes the methods: a [`Recipe`] (TOML or code) lists [`Step`]s that run in
//! one layer-streamed calibration walk where their statistics allow it (see [`pipeline`]).
//!
//! # Example
//! ```no_run
//! use llm_compress::prelude::*;
//! let ckpt = Checkpoint::open("SmolLM2-135M-Instruct.Q4_1.gguf".as_ref())?;
//! let model = Model::load(&ckpt)?;
//! let tokens = TextSource::WikiText2Test.tokens(ckpt.require_tokenizer()?)?;
//! let opts = PerplexityOptions { max_windows: Some(1), ..Default::default() };
//! println!("{:.2}", perplexity(&model, &tokens, &opts, |_| {})?.ppl);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]
pub mod basis_select;
pub mod basis_sharing;
pub mod export;
pub mod lowrank;
pub mod pipeline;
pub mod quant;
pub mod sparsity;
pub mod streaming;
pub mod synth;
#[doc(hidden)]
pub mod testing;

pub use pipeline::{Pipeline, Recipe, Step};

pub use llm_compress_basis_select as basis_select_core;
pub use llm_compress_core as core;
pub use llm_compress_eval as eval;
pub use llm_compress_glu_sparsity as glu_sparsity;
pub use llm_compress_layer_quant as layer_quant;
pub use llm_compress_shared_basis as shared_basis;
pub use llm_compress_tensor_io as tensor_io;
pub use llm_compress_whitening_svd as whitening_svd;

/// Where the default model is: `$LLM_COMPRESS_MODEL` if set, else the file
/// `scripts/fetch-model.sh` downloads (SmolLM2-135M-Instruct, GGUF) under `~/.cache`.
pub fn default_model_path() -> std::path::PathBuf {
    match std::env::var_os("LLM_COMPRESS_MODEL") {
        Some(p) => p.into(),
        None => std::path::PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| ".".into()))
            .join(".cache/llm-compress/models/SmolLM2-135M-Instruct.Q4_1.gguf"),
    }
}

/// Keep peak memory close to the live data on glibc: its mmap threshold rises after large
/// frees, so the many short-lived multi-MiB activation buffers of the forward pass end up held
/// in per-thread heaps and are never returned. Measured: SVD-LLM 0.2 on SmolLM2 (4 calibration
/// windows) peaks at 1146 MiB by default, 809 MiB with the threshold fixed at 1 MiB. Call once,
/// at the start of `main`, before threads start. A no-op elsewhere.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

/// The names most programs need.
pub mod prelude {
    pub use llm_compress_core::{InputStats, Linear, LinearId, LinearKind, MatrixCompressor};
    pub use llm_compress_eval::{perplexity, Model, PerplexityOptions, TextSource};
    pub use llm_compress_tensor_io::{Checkpoint, ModelConfig, Tokenizer};
}
