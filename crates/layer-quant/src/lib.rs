//! LSAQ — layer-specific adaptive quantization (ALGORITHMS.md §6): rank the decoder layers by
//! importance, give the important ones more bits within a byte budget, and quantize.
//!
//! - [`importance`]: the LSAQ importance `1 − mean Jaccard` of the logit-lens top-k token sets of
//!   each layer's input and output (§6.2), the cosine block-influence baseline, random and
//!   reversed control rankings;
//! - [`allocate()`]: a ladder level (int4 / int8 / f16) per layer from a byte budget for the whole
//!   file, greedy and monotone in the budget (§6.3);
//! - [`rtn`] and [`gptq`]: symmetric round-to-nearest per output channel or per group, and GPTQ
//!   on the input Gram (§6.4);
//! - [`quantize()`]: any [`llm_compress_core::Linear`] (dense, low-rank, sparse, shared-basis)
//!   into packed [`llm_compress_core::QuantMatrix`] / [`llm_compress_core::QuantSparse`]
//!   pieces, shared bases quantized once per group ([`QuantizedBases`]), and exact byte counts.
//!
//! The crate sees matrices and statistics only; the facade (`llm_compress::quant`) runs the
//! calibration walk and writes the file.
//!
//! # Example
//! ```
//! use llm_compress_core::{Linear, Mat, QuantFormat};
//! use llm_compress_layer_quant::{allocate, layer_bytes, quantize, QuantScheme, Quantizer};
//! let w = Mat::<f32>::from_fn(8, 64, |i, j| ((i * 64 + j) % 17) as f32 - 8.0);
//! let lin = Linear::Dense(w.clone());
//! let int4 = QuantScheme { format: QuantFormat::Int4, group_size: Some(32), quantizer: Quantizer::Rtn };
//! let int8 = QuantScheme { format: QuantFormat::Int8, group_size: None, quantizer: Quantizer::Rtn };
//! let q = quantize(&lin, &int4, None)?;
//! assert_eq!(q.storage_bytes(), 8 * 32 + 2 * 8 * 2); // packed nibbles + f16 scales
//! // Two identical layers, a budget for one int8 layer: the more important one (1) gets it.
//! let layer = [lin];
//! let cost = vec![layer_bytes(&layer, &int4)?, layer_bytes(&layer, &int8)?];
//! let a = allocate(&[cost.clone(), cost.clone()], 0, cost[0] + cost[1], &[1, 0])?;
//! assert_eq!(a.levels, vec![0, 1]);
//! # Ok::<(), llm_compress_core::CoreError>(())
//! ```

#![warn(missing_docs)]
pub mod allocate;
pub mod gptq;
pub mod importance;
pub mod quantize;
pub mod rtn;

pub use allocate::{allocate, allocate_model, Allocation, CostModel, SharedCost};
pub use gptq::{quantize_gptq, GptqOptions};
pub use importance::{ranking, ImportanceAccumulator, LayerImportance, LogitLens, RankingKind};
pub use quantize::{
    basis_key, basis_scheme, collect_shared_bases, quantize, quantize_with_bases, quantized_bytes,
    QuantScheme, QuantizedBases, Quantizer,
};
pub use rtn::{quantize_rtn, quantize_sparse_rtn};

use llm_compress_core::{CoreError, Linear};

/// Bytes of a layer's linears once quantized with `scheme`.
pub fn layer_bytes(linears: &[Linear], scheme: &QuantScheme) -> Result<usize, CoreError> {
    linears.iter().map(|l| quantized_bytes(l, scheme)).sum()
}
