//! (in progress)
pub struct Checkpoint; pub struct Tensor;
