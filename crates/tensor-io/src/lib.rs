//! Checkpoint I/O for llm-compress.
//!
//! - [`safetensors`]: read by mmap (F32, F16, BF16 → f32), list tensors without reading data,
//!   write atomically;
//! - [`gguf`]: GGUF v2/v3 reader (every metadata type, tensor infos, alignment) and the
//!   dequantizers of [`dequant`] (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K);
//! - [`config`]: [`ModelConfig`] from a Hugging Face `config.json` or from GGUF metadata;
//! - [`tokenizer`]: byte-level BPE from `tokenizer.json` or from GGUF metadata, with the exact
//!   ids of the Hugging Face tokenizer;
//! - [`checkpoint`]: one [`Checkpoint`] over all of these, with tensors in Hugging Face names and
//!   layout, read on demand;
//! - [`atomic`]: write-to-temporary-then-rename, so that no half-written file ever looks complete.
//!
//! # Example
//! ```no_run
//! use llm_compress_tensor_io::Checkpoint;
//! let ckpt = Checkpoint::open("SmolLM2-135M-Instruct.Q4_1.gguf".as_ref())?;
//! println!("{} layers, hidden {}", ckpt.config.num_layers, ckpt.config.hidden_size);
//! let wq = ckpt.tensor("model.layers.0.self_attn.q_proj.weight")?; // HF layout, f32
//! assert_eq!(wq.shape, vec![576, 576]);
//! # Ok::<(), llm_compress_tensor_io::IoError>(())
//! ```

#![warn(missing_docs)]
pub mod atomic;
pub mod checkpoint;
pub mod compact;
pub mod config;
pub mod dequant;
mod error;
pub mod gguf;
pub mod safetensors;
pub mod tokenizer;

pub use checkpoint::{Checkpoint, Tensor};
pub use config::ModelConfig;
pub use error::IoError;
pub use tokenizer::Tokenizer;
