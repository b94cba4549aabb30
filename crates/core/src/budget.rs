//! Budget → rank formulas (ALGORITHMS.md §2.4 and §3.5).
//!
//! SVD-LLM keeps `k = ⌊m·n·keep / (m+n)⌋` singular triplets of an `m × n` weight, with
//! `keep = 1 − ratio`, so the two factors hold `k(m+n) ≈ keep·m·n` parameters. Basis Sharing
//! with a group of `g` layers keeps `k = ⌊g·n·m·keep / (n + g·m)⌋` (basis `n×k` once, `g`
//! coefficient blocks `k×m`). Both are evaluated in exact integer arithmetic.

use crate::CoreError;

/// Fraction of linear-layer parameters **removed** (SVD-LLM's `--ratio`), validated to `[0, 1)`.
pub fn check_ratio(ratio: f64) -> Result<f64, CoreError> {
    if !(0.0..1.0).contains(&ratio) || !ratio.is_finite() {
        return Err(CoreError::Parameter {
            name: "ratio".into(),
            detail: format!("must be in [0, 1), got {ratio}"),
        });
    }
    Ok(ratio)
}

/// Exact `⌊num·keep⌋` with `keep = 1 − ratio` given to 1e-9, avoiding float error in the
/// product of large dimensions (`4096·4096·0.8/8192` must be 1638, not 1637).
fn floor_scaled(num: u128, den: u128, ratio: f64) -> usize {
    const SCALE: u128 = 1_000_000_000;
    let keep = ((1.0 - ratio) * SCALE as f64).round() as u128;
    (num * keep / (den * SCALE)) as usize
}

/// SVD-LLM rank for a `d_out × d_in` weight at `ratio` removed: `⌊m·n·(1−ratio)/(m+n)⌋`.
pub fn svd_llm_rank(d_out: usize, d_in: usize, ratio: f64) -> usize {
    let (m, n) = (d_out as u128, d_in as u128);
    floor_scaled(m * n, m + n, ratio).min(d_out.min(d_in))
}

/// Basis Sharing rank for a group of `g` layers sharing one basis of a `d_out × d_in` weight:
/// `⌊g·n·m·(1−ratio)/(n + g·m)⌋`.
pub fn shared_basis_rank(d_out: usize, d_in: usize, group: usize, ratio: f64) -> usize {
    let (m, n, g) = (d_out as u128, d_in as u128, group as u128);
    floor_scaled(g * n * m, n + g * m, ratio).min(d_in.min(group * d_out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svd_llm_rank_table_of_the_spec() {
        // ALGORITHMS.md §2.4, LLaMA-7B and Mistral shapes.
        assert_eq!(svd_llm_rank(4096, 4096, 0.2), 1638);
        assert_eq!(svd_llm_rank(11008, 4096, 0.2), 2388);
        assert_eq!(svd_llm_rank(4096, 11008, 0.2), 2388);
        assert_eq!(svd_llm_rank(1024, 4096, 0.2), 655);
        assert_eq!(svd_llm_rank(14336, 4096, 0.2), 2548);
        assert_eq!(svd_llm_rank(4096, 4096, 0.6), 819);
        assert_eq!(svd_llm_rank(11008, 4096, 0.4), 1791);
        assert_eq!(svd_llm_rank(1024, 4096, 0.5), 409);
    }

    #[test]
    fn shared_basis_rank_table_of_the_spec() {
        // ALGORITHMS.md §3.5.
        assert_eq!(shared_basis_rank(4096, 4096, 2, 0.2), 2184);
        assert_eq!(shared_basis_rank(11008, 4096, 2, 0.2), 2762);
        assert_eq!(shared_basis_rank(1024, 4096, 2, 0.2), 1092);
        assert_eq!(shared_basis_rank(4096, 4096, 2, 0.5), 1365);
        assert_eq!(
            shared_basis_rank(4096, 4096, 1, 0.2),
            svd_llm_rank(4096, 4096, 0.2)
        );
    }

    #[test]
    fn ratio_is_validated() {
        assert!(check_ratio(1.0).is_err());
        assert!(check_ratio(-0.1).is_err());
        assert!(check_ratio(f64::NAN).is_err());
        assert!(check_ratio(0.2).is_ok());
    }
}
