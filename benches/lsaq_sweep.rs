//! The LSAQ measurements of docs/lsaq.md in one process: the importance pass runs once, then
//! every (budget, ranking) allocation is quantized (RTN) and evaluated on the first N windows of
//! WikiText-2 test. Allocations that coincide are evaluated once.
//!
//! ```text
//! cargo bench --bench lsaq_sweep -- MODEL [EVAL_WINDOWS] [BUDGET_MB,...] [GROUP] [CALIB_WINDOWS] [IMPORTANCE_JSONL]
//! ```
//! Prints one JSON object per line; the first holds the importance scores, and a file of this
//! output can be given as IMPORTANCE_JSONL to reuse them instead of measuring again.

use llm_compress::quant::{quantize_to_budget, LsaqOptions};
use llm_compress_core::QuantFormat;
use llm_compress_eval::{perplexity, PerplexityOptions, TextSource};
use llm_compress_layer_quant::{LayerImportance, Quantizer, RankingKind};
use llm_compress_tensor_io::Checkpoint;
use std::collections::BTreeMap;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    llm_compress::tune_allocator();
    let args: Vec<String> = std::env::args().collect();
    let model = args
        .get(1)
        .ok_or("usage: lsaq_sweep MODEL [WINDOWS] [BUDGETS_MB] [GROUP]")?;
    let windows: usize = args.get(2).map_or(Ok(20), |s| s.parse())?;
    let budgets: Vec<f64> = args
        .get(3)
        .map_or("125,137.5,150", String::as_str)
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let group: Option<usize> = match args.get(4).map(String::as_str) {
        None | Some("none") => None,
        Some(g) => Some(g.parse()?),
    };
    let calib_windows: usize = args.get(5).map_or(Ok(16), |s| s.parse())?;
    let ckpt = Checkpoint::open(model.as_ref())?;
    let test = TextSource::WikiText2Test.tokens(ckpt.require_tokenizer()?)?;
    let popts = PerplexityOptions {
        max_windows: Some(windows),
        ..Default::default()
    };
    // The importance pass, once.
    let t = Instant::now();
    let importance: LayerImportance = match args.get(6) {
        Some(path) => {
            let text = std::fs::read_to_string(path)?;
            let first: serde_json::Value =
                serde_json::from_str(text.lines().next().ok_or("empty importance file")?)?;
            serde_json::from_value(first["importance"].clone())?
        }
        None => {
            let mut probe = LsaqOptions::new(usize::MAX);
            probe.ladder = vec![QuantFormat::Int8];
            probe.calibration.windows = calib_windows;
            let (_, rep) = quantize_to_budget(&ckpt, None, &probe, |_| {})?;
            rep.importance.ok_or("no importance")?
        }
    };
    println!(
        "{}",
        serde_json::json!({"importance": importance, "importance_s": t.elapsed().as_secs_f64(),
            "calib_windows": calib_windows,
            "jaccard_order": llm_compress_layer_quant::ranking(RankingKind::Jaccard, importance.jaccard.len(), Some(&importance), 0)?,
            "cosine_order": llm_compress_layer_quant::ranking(RankingKind::Cosine, importance.jaccard.len(), Some(&importance), 0)?})
    );
    let mut seen: BTreeMap<Vec<QuantFormat>, f64> = BTreeMap::new();
    for &mb in &budgets {
        for kind in [
            RankingKind::Jaccard,
            RankingKind::Cosine,
            RankingKind::Random,
            RankingKind::Reversed,
        ] {
            let mut o = LsaqOptions::new((mb * 1e6) as usize);
            o.ladder = vec![QuantFormat::Int4, QuantFormat::Int8, QuantFormat::F16];
            o.group_size = group;
            o.quantizer = Quantizer::Rtn;
            o.importance = kind;
            o.precomputed_importance = Some(importance.clone());
            let t = Instant::now();
            let (out, r) = quantize_to_budget(&ckpt, None, &o, |_| {})?;
            let ppl = match seen.get(&r.formats) {
                Some(p) => *p,
                None => {
                    let m = out.into_model();
                    let p = perplexity(&m, &test, &popts, |_| {})?.ppl;
                    seen.insert(r.formats.clone(), p);
                    p
                }
            };
            let int8 = r
                .formats
                .iter()
                .filter(|f| **f == QuantFormat::Int8)
                .count();
            println!(
                "{}",
                serde_json::json!({
                    "budget_mb": mb, "ranking": kind.name(), "group_size": group,
                    "predicted_bytes": r.allocation.bytes, "int8_layers": int8,
                    "formats": r.formats.iter().map(|f| f.name()).collect::<Vec<_>>(),
                    "ppl": ppl, "eval_windows": windows, "wall_s": t.elapsed().as_secs_f64(),
                })
            );
        }
    }
    Ok(())
}
