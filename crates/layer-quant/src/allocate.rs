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
//!
//! **Shared bases** (Basis Sharing then LSAQ): a basis read by several layers is stored once,
//! at the highest level among its readers ([`mod@crate::quantize`]). Its bytes are then not a sum
//! over layers: [`CostModel`] holds them apart and [`allocate_model`] prices every promotion as
//! the change of the whole file's size (promoting a layer whose partner already lifted the
//! basis costs only its own linears). Each promotion still costs `>= 0`, so the prefix rule
//! stays monotone.

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

/// The bytes of a model at every allocation: per-layer costs plus shared pieces (bases) stored
/// once at the highest level among the layers that read them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CostModel {
    /// Bytes outside everything that depends on the levels.
    pub fixed: usize,
    /// `layers[ℓ][v]`: bytes of layer `ℓ`'s own linears at level `v` (levels ascending).
    pub layers: Vec<Vec<usize>>,
    /// Pieces stored once for several layers.
    pub shared: Vec<SharedCost>,
}

/// A piece (a shared basis) stored once, at the highest level among its `readers`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SharedCost {
    /// The layers that read it.
    pub readers: Vec<usize>,
    /// Its bytes at each level.
    pub bytes: Vec<usize>,
}

impl CostModel {
    /// Bytes of the model with layer `ℓ` at level `levels[ℓ]`.
    pub fn bytes(&self, levels: &[usize]) -> usize {
        let own: usize = self.layers.iter().zip(levels).map(|(c, &v)| c[v]).sum();
        let shared: usize = self
            .shared
            .iter()
            .map(|s| {
                let v = s.readers.iter().map(|&l| levels[l]).max().unwrap_or(0);
                s.bytes[v]
            })
            .sum();
        self.fixed + own + shared
    }
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
    let model = CostModel {
        fixed,
        layers: costs.to_vec(),
        shared: Vec::new(),
    };
    allocate_model(&model, budget, order)
}

/// [`allocate`] over a [`CostModel`]: the same promotion sequence (every layer one level up,
/// most important first, then the next level), applied while the whole model's bytes stay
/// within `budget`.
pub fn allocate_model(
    model: &CostModel,
    budget: usize,
    order: &[usize],
) -> Result<Allocation, CoreError> {
    let costs = &model.layers;
    let n = costs.len();
    let levels_n = costs.first().map_or(0, Vec::len);
    if levels_n == 0 || costs.iter().any(|c| c.len() != levels_n) {
        return Err(CoreError::Parameter {
            name: "ladder".into(),
            detail: "every layer needs a cost for every ladder level (at least one)".into(),
        });
    }
    if model
        .shared
        .iter()
        .any(|s| s.bytes.len() != levels_n || s.readers.iter().any(|&l| l >= n))
    {
        return Err(CoreError::Parameter {
            name: "ladder".into(),
            detail: "every shared piece needs a cost per level and readers among the layers".into(),
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
    let mut levels = vec![0usize; n];
    let min_bytes = model.bytes(&levels);
    let max_bytes = model.bytes(&vec![levels_n - 1; n]);
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
    let mut bytes = min_bytes;
    'sweeps: for v in 1..levels_n {
        for &l in order {
            let prev = levels[l];
            levels[l] = v;
            let next = model.bytes(&levels);
            if next > budget {
                levels[l] = prev;
                break 'sweeps;
            }
            bytes = next;
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

    /// With shared pieces (bases read by pairs of layers, stored once at the highest level of
    /// their readers): never over budget, monotone, the predicted bytes are the model's, and a
    /// basis is counted once.
    #[test]
    fn shared_pieces_are_counted_once_and_allocation_stays_monotone() {
        for seed in 0..10 {
            let n = 10;
            let layers = random_costs(n, seed);
            let shared: Vec<SharedCost> = (0..n / 2)
                .map(|g| SharedCost {
                    readers: vec![2 * g, 2 * g + 1],
                    bytes: vec![300, 600, 1200],
                })
                .collect();
            let model = CostModel {
                fixed: 50,
                layers: layers.clone(),
                shared,
            };
            let order = random_order(n, seed + 7);
            let lo = model.bytes(&[0; 10]);
            assert_eq!(
                lo,
                50 + layers.iter().map(|c| c[0]).sum::<usize>() + 5 * 300
            );
            let mut one = vec![0; 10];
            one[3] = 1;
            assert_eq!(model.bytes(&one), lo + layers[3][1] - layers[3][0] + 300);
            one[2] = 1; // the partner: its basis is already at level 1
            assert_eq!(
                model.bytes(&one),
                lo + layers[3][1] - layers[3][0] + layers[2][1] - layers[2][0] + 300
            );
            let hi = model.bytes(&[2; 10]);
            let mut prev: Option<Allocation> = None;
            let mut b = lo;
            while b <= hi {
                let a = allocate_model(&model, b, &order).unwrap();
                assert!(a.bytes <= b);
                assert_eq!(a.bytes, model.bytes(&a.levels));
                if let Some(p) = &prev {
                    assert!(p.levels.iter().zip(&a.levels).all(|(x, y)| x <= y));
                }
                prev = Some(a);
                b += 211;
            }
            assert!(allocate_model(&model, hi, &order)
                .unwrap()
                .levels
                .iter()
                .all(|&v| v == 2));
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
