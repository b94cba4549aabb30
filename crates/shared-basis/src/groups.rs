//! Which layers form a group and which kinds share a basis (ALGORITHMS.md §3.2, §3.3).

use llm_compress_core::{CoreError, LinearKind};
use std::ops::Range;

/// Groups of `group_size` consecutive layers out of `n_layers`: `[0, g), [g, 2g), …`, the last
/// one shorter when `n_layers` is not a multiple of `g` (§3.3).
///
/// Errors if `group_size` is 0.
pub fn layer_groups(n_layers: usize, group_size: usize) -> Result<Vec<Range<usize>>, CoreError> {
    if group_size == 0 {
        return Err(CoreError::Parameter {
            name: "group_size".into(),
            detail: "must be at least 1".into(),
        });
    }
    Ok((0..n_layers)
        .step_by(group_size)
        .map(|a| a..(a + group_size).min(n_layers))
        .collect())
}

/// How a model is grouped: the group size and the kinds that share a basis inside a group.
/// Kinds not listed are compressed per layer (a group of one: SVD-LLM's whitened SVD).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharingPlan {
    /// Layers per group (`g`, default 2 as in every released config).
    pub group_size: usize,
    /// Kinds sharing one basis per group (default `q, k, v, up, gate`, §3.2).
    pub shared: Vec<LinearKind>,
}

impl Default for SharingPlan {
    fn default() -> Self {
        Self {
            group_size: 2,
            shared: vec![
                LinearKind::Q,
                LinearKind::K,
                LinearKind::V,
                LinearKind::Up,
                LinearKind::Gate,
            ],
        }
    }
}

impl SharingPlan {
    /// Whether `kind` shares a basis across the group.
    pub fn is_shared(&self, kind: LinearKind) -> bool {
        self.shared.contains(&kind)
    }

    /// Parse a comma-separated list of kinds (`q,k,v,up,gate`; empty for none).
    pub fn parse_kinds(list: &str) -> Result<Vec<LinearKind>, CoreError> {
        let mut out = Vec::new();
        for s in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let kind = LinearKind::parse(s).ok_or_else(|| CoreError::Parameter {
                name: "share".into(),
                detail: format!("unknown linear kind {s:?} (expected q, k, v, o, gate, up, down)"),
            })?;
            if !out.contains(&kind) {
                out.push(kind);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_consecutive_with_a_shorter_last_one() {
        assert_eq!(layer_groups(5, 2).unwrap(), vec![0..2, 2..4, 4..5]);
        assert_eq!(layer_groups(6, 3).unwrap(), vec![0..3, 3..6]);
        assert_eq!(layer_groups(3, 1).unwrap(), vec![0..1, 1..2, 2..3]);
        assert_eq!(layer_groups(3, 8).unwrap(), vec![0..3]);
        assert!(layer_groups(3, 0).is_err());
    }

    #[test]
    fn kinds_parse() {
        assert_eq!(
            SharingPlan::parse_kinds("q, k,up,q").unwrap(),
            vec![LinearKind::Q, LinearKind::K, LinearKind::Up]
        );
        assert!(SharingPlan::parse_kinds("").unwrap().is_empty());
        assert!(SharingPlan::parse_kinds("q,x").is_err());
        assert!(SharingPlan::default().is_shared(LinearKind::Gate));
        assert!(!SharingPlan::default().is_shared(LinearKind::Down));
    }
}
