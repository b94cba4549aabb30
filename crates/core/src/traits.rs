//! The narrow traits a compression method implements.

use crate::{CoreError, InputStats, Linear, LinearId, MatRef, StatsRequest};

/// One weight + what calibration learned about its input → a compressed [`Linear`].
///
/// Implemented by SVD-LLM, plain SVD, ASVD, Basis Selection, DaSS, Wanda, the quantizers.
pub trait MatrixCompressor: Send + Sync {
    /// A short stable name (`"svd-llm"`), written into manifests.
    fn name(&self) -> &str;
    /// The statistics the calibration walk must collect for this method.
    fn needs(&self) -> StatsRequest;
    /// Compress `weight` (`d_out × d_in`) of linear `id`.
    fn compress(
        &self,
        id: LinearId,
        weight: MatRef<'_, f32>,
        stats: &InputStats,
    ) -> Result<Linear, CoreError>;
}

/// The same weight kind across a group of layers → one shared basis and per-layer
/// coefficients (Basis Sharing).
pub trait GroupCompressor: Send + Sync {
    /// The method's name (`svd-llm`, `wanda`, ...).
    fn name(&self) -> &str;
    /// The statistics this compressor needs from the calibration walk.
    fn needs(&self) -> StatsRequest;
    /// `members[i]` = (id, weight, stats) of the i-th layer of the group; returns one
    /// [`Linear`] per member, in order.
    fn compress_group(
        &self,
        members: &[(LinearId, MatRef<'_, f32>, &InputStats)],
    ) -> Result<Vec<Linear>, CoreError>;
}

/// A per-layer choice made from model-level signals (e.g. LSAQ bit widths from layer
/// importance and a memory budget).
pub trait LayerPolicy: Send + Sync {
    /// What the policy chooses per layer (e.g. a precision).
    type Choice;
    /// The policy's name.
    fn name(&self) -> &str;
    /// `importance[l]` of each decoder layer → one choice per layer.
    fn choose(&self, importance: &[f64]) -> Result<Vec<Self::Choice>, CoreError>;
}
