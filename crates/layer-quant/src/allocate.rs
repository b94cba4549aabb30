//! Bit widths from a byte budget (ALGORITHMS.md §6.3).
//!
//! Every decoder layer gets one level of a precision ladder (e.g. int4 < int8 < f16; all seven
//! linears of a layer share it). The file size is `fixed + Σ_ℓ cost_ℓ(level_ℓ)` with exact byte
//! costs (packed values and f16 scales, see [`crate::layer_bytes`]).
//!
//! Start with every layer at the lowest level; if that exceeds the budget the budget is
//! infeasible and the error names the smallest feasible size. Then sweep the layers from the
//! most to the least important, promoting each one level (int4 → int8), and again for each
//! further level (int8 → f16). The sweeps form one fixed **promotion sequence**; the allocation
//! applies the longest prefix of it that fits the budget.
//!
//! Stopping at the first promotion that does not fit (instead of skipping it and trying the
//! next layer, as the spec's pseudo-code reads) is what makes the allocator **monotone**: a
//! larger budget applies a longer prefix, so no layer ever loses bits. With the skip rule, a
//! budget that just misses a large layer's promotion can promote a smaller later layer that a
//! slightly larger budget (which takes the large one) cannot afford. When all promotions of a
//! sweep cost the same (every decoder layer of a Llama model has the same shapes) the two rules
//! give the same allocation.

use llm_compress_core::CoreError;
use serde::Serialize;

/// The result of [`allocate`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Allocation {
    /// Ladder level of each layer (0 = lowest precision).
    pub levels: Vec<usize>,
    /// Predicted total bytes (`fixed + Σ cost`).
    pub bytes: usize,
    /// Smallest feasible size (every layer at the lowest level).
    pub min_bytes: usize,
    /// Size with every layer at the highest level.
    pub max_bytes: usize,
}

/// Allocate ladder levels. `costs[ℓ][v]` = bytes of layer `ℓ` at level `v` (levels ascending in
/// precision), `fixed` = bytes outside the decoder linears, `order` = layers from most to least
/// important (a permutation of `0..costs.len()`).
pub fn allocate(
    costs: &[Vec<usize>],
    fixed: usize,
    budget: usize,
    order: &[usize],
) -> Result<Allocation, CoreError> {
    let n = costs.len();
    let levels_n = costs.first().map_or(0, Vec::len);
    if levels_n == 0 || costs.iter().any(|c| c.len() != levels_n) {
        return Err(CoreError::Parameter {
            name: "ladder".into(),
            detail: "every layer needs a cost for every ladder level (at least one)".into(),
        });
    }
    let mut seen = vec![false; n];
    if order.len() != n
        || order
            .iter()
            .any(|&l| l >= n || std::mem::replace(&mut seen[l], true))
    {
        return Err(CoreError::Parameter {
            name: "order".into(),
            detail: format!("must be a permutation of the {n} layers"),
        });
    }
    let min_bytes = fixed + costs.iter().map(|c| c[0]).sum::<usize>();
    let max_bytes = fixed + costs.iter().map(|c| c[levels_n - 1]).sum::<usize>();
    if min_bytes > budget {
        return Err(CoreError::Parameter {
            name: "budget".into(),
            detail: format!(
                "{budget} bytes ({:.2} MB) is infeasible: the smallest feasible size, every layer \
                 at the lowest precision of the ladder, is {min_bytes} bytes ({:.2} MB)",
                budget as f64 / 1e6,
                min_bytes as f64 / 1e6
            ),
        });
    }
    let mut levels = vec![0usize; n];
    let mut bytes = min_bytes;
    'sweeps: for v in 1..levels_n {
        for &l in order {
            let step = costs[l][v].saturating_sub(costs[l][v - 1]);
            if bytes + step > budget {
                break 'sweeps;
            }
            bytes = bytes + costs[l][v] - costs[l][v - 1];
            levels[l] = v;
        }
    }
    Ok(Allocation {
        levels,
        bytes,
        min_bytes,
        max_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::importance::random_order;
    use llm_compress_core::rng::SplitMix64;

    fn random_costs(n: usize, seed: u64) -> Vec<Vec<usize>> {
        let mut rng = SplitMix64::new(seed);
        (0..n)
            .map(|_| {
                let p = 1000 + rng.below(5000) as usize;
                vec![p / 2 + 40, p + 40, 2 * p]
            })
            .collect()
    }

    /// Never over budget, monotone in the budget, and the most important layers are promoted
    /// first — on unequal layer sizes, where the skip rule would not be monotone.
    #[test]
    fn allocation_fits_is_monotone_and_follows_the_order() {
        for seed in 0..20 {
            let costs = random_costs(12, seed);
            let order = random_order(12, seed + 100);
            let fixed = 777;
            let lo = fixed + costs.iter().map(|c| c[0]).sum::<usize>();
            let hi = fixed + costs.iter().map(|c| c[2]).sum::<usize>();
            let mut prev: Option<Allocation> = None;
            let mut b = lo;
            while b <= hi + 100 {
                let a = allocate(&costs, fixed, b, &order).unwrap();
                assert!(a.bytes <= b);
                let recount = fixed + (0..12).map(|l| costs[l][a.levels[l]]).sum::<usize>();
                assert_eq!(recount, a.bytes);
                // The first sweep promotes a prefix of the order.
                let promoted: Vec<bool> = order.iter().map(|&l| a.levels[l] >= 1).collect();
                assert!(promoted.windows(2).all(|w| w[0] || !w[1]));
                if let Some(p) = &prev {
                    assert!(
                        p.levels.iter().zip(&a.levels).all(|(x, y)| x <= y),
                        "not monotone at {b}"
                    );
                }
                prev = Some(a);
                b += 97;
            }
            let top = allocate(&costs, fixed, hi, &order).unwrap();
            assert!(top.levels.iter().all(|&v| v == 2));
        }
    }

    #[test]
    fn infeasible_budget_names_the_smallest_size() {
        let costs = vec![vec![10, 20], vec![10, 20]];
        let e = allocate(&costs, 5, 24, &[0, 1]).unwrap_err().to_string();
        assert!(e.contains("25 bytes"), "{e}");
        assert!(allocate(&costs, 5, 25, &[0, 1]).is_ok());
        assert!(allocate(&costs, 5, 100, &[0, 0]).is_err());
        assert_eq!(allocate(&costs, 5, 35, &[1, 0]).unwrap().levels, vec![0, 1]);
    }
}
