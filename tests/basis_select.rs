//! End-to-end test of training-free Basis Selection on the real model (SmolLM2-135M), small
//! enough for CI: 2 x 512 calibration tokens of GSM8K train, one 2048-token window of GSM8K
//! test. Skips like tests/smollm2.rs with `LLM_COMPRESS_SKIP_MODEL_TESTS=1`.

use llm_compress::basis_select::{
    compress_basis_select, score_model, Allocation, BasisFamily, BasisSelectOptions,
};
use llm_compress::lowrank::CalibrationText;
use llm_compress::prelude::*;
use llm_compress_core::budget::svd_llm_rank;
use llm_compress_eval::CalibrationConfig;
use std::collections::BTreeSet;
use std::path::PathBuf;

fn model_path() -> Option<PathBuf> {
    llm_compress_eval::testing::real_model_path()
}

#[test]
fn global_basis_selection_on_gsm8k_meets_the_budget_with_heterogeneous_ranks() {
    let Some(path) = model_path() else { return };
    let ckpt = Checkpoint::open(&path).unwrap();
    let mut opts = BasisSelectOptions::new(0.2, CalibrationText::Source(TextSource::Gsm8kTrain));
    opts.bases = BasisFamily::Whitened;
    opts.allocation = Allocation::Global;
    opts.calibration = CalibrationConfig {
        windows: 2,
        seq_len: 512,
        seed: 3,
    };
    let scores = score_model(&ckpt, &opts, "test".into(), |_| {}).unwrap();
    let cfg = &ckpt.config;
    assert_eq!(scores.matrices.len(), cfg.num_layers * 7);
    // The budget is what SVD-LLM's uniform formula keeps at the same ratio.
    let budget: usize = scores
        .matrices
        .iter()
        .map(|m| svd_llm_rank(m.d_out, m.d_in, 0.2) * m.cost())
        .sum();
    let max_cost = scores.matrices.iter().map(|m| m.cost()).max().unwrap();
    let (out, report) = compress_basis_select(&ckpt, &opts, Some(&scores), |_| {}).unwrap();
    assert_eq!(report.budget_params, budget);
    let lowrank: usize = out.layers.iter().map(|l| l.linear_params()).sum();
    assert_eq!(lowrank, report.linear_params_after);
    assert!(report.linear_params_after <= budget);
    assert!(budget - report.linear_params_after < max_cost);
    // Ranks differ by layer and kind (a uniform allocation would give one rank per shape).
    let q_ranks: BTreeSet<usize> = report
        .ranks
        .iter()
        .filter(|(id, _)| id.ends_with(".q"))
        .map(|(_, k)| *k)
        .collect();
    assert!(q_ranks.len() > 3, "q ranks {q_ranks:?}");
    // A usable model on the target text.
    let model = out.into_model();
    let tokens = TextSource::Gsm8kTest
        .tokens(ckpt.require_tokenizer().unwrap())
        .unwrap();
    eprintln!(
        "GSM8K test: {} tokens, {} windows of 2048",
        tokens.len(),
        tokens.len() / 2048
    );
    let ppl = perplexity(
        &model,
        &tokens,
        &PerplexityOptions {
            max_windows: Some(1),
            ..Default::default()
        },
        |_| {},
    )
    .unwrap()
    .ppl;
    eprintln!("basis-select global whitened 0.2, GSM8K-test 1 window: ppl {ppl:.2}");
    assert!(ppl.is_finite() && ppl > 1.0 && ppl < 100.0, "ppl {ppl}");
}
