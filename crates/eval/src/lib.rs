//! The Llama-family runtime of llm-compress: a native f32 forward pass over dense and
//! compressed linears, perplexity with the project's protocol, throughput, and the text sources
//! used for calibration and evaluation.
//!
//! # Example
//! ```no_run
//! use llm_compress_eval::{perplexity, Model, PerplexityOptions, TextSource};
//! use llm_compress_tensor_io::Checkpoint;
//! let ckpt = Checkpoint::open("SmolLM2-135M-Instruct.Q4_1.gguf".as_ref())?;
//! let model = Model::load(&ckpt)?;
//! let tokens = TextSource::WikiText2Test.tokens(ckpt.require_tokenizer()?)?;
//! let r = perplexity(&model, &tokens, &PerplexityOptions { max_windows: Some(2), ..Default::default() }, |_| {})?;
//! println!("ppl {:.3} over {} tokens", r.ppl, r.predicted_tokens);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]

pub mod calibration;
mod data;
mod error;
pub mod model;
mod perplexity;
pub mod report;
mod simd;
pub mod sys;
pub mod testing;

pub use calibration::{
    calibration_windows, walk_layers, walk_layers_from, CalibrationConfig, LayerCalibration,
    StatsFrom, WalkEvent, WalkState,
};
pub use data::{data_dir, jsonl_text, wikitext_rows_text, TextSource};
pub use error::EvalError;
pub use model::{DecoderLayer, LayerObserver, Model, Rope};
pub use perplexity::{perplexity, perplexity_streamed, PerplexityOptions, PerplexityReport};
