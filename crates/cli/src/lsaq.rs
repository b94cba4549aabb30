//! `compress --method lsaq` and `compress --method M --then-lsaq` (M = svd-llm, svd, asvd,
//! basis-sharing, dass, wanda, magnitude): layer-specific bit widths from a byte budget
//! (docs/lsaq.md), and the per-layer precision summary of `inspect`.

use crate::commands::{CliResult, CompressArgs, Ui};
use llm_compress::basis_sharing::compress_basis_sharing;
use llm_compress::export::OutputLayers;
use llm_compress::lowrank::{compress_low_rank, CalibrationText, LowRankMethod, LowRankOptions};
use llm_compress::quant::{
    method_json, parse_bytes, parse_ladder, quantize_to_budget, LsaqOptions, LsaqProgress,
};
use llm_compress::sparsity::compress_sparse;
use llm_compress_eval::{EvalError, TextSource};
use llm_compress_glu_sparsity::PruneMethod;
use llm_compress_layer_quant::{Quantizer, RankingKind};
use llm_compress_tensor_io::compact::{LinearRepr, Manifest, TENSORS};
use llm_compress_tensor_io::Checkpoint;
use serde_json::json;
use std::collections::BTreeMap;

fn calibration_text(name: &str) -> CalibrationText {
    CalibrationText::Source(match name {
        "wikitext2" | "wikitext2-train" => TextSource::WikiText2Train,
        other => TextSource::File(other.into()),
    })
}

fn lsaq_options(a: &CompressArgs) -> Result<LsaqOptions, EvalError> {
    let budget = a.budget.as_deref().ok_or_else(|| {
        EvalError::Input("--method lsaq and --then-lsaq need --budget (e.g. 120MB)".into())
    })?;
    let mut o = LsaqOptions::new(parse_bytes(budget)?);
    o.ladder = parse_ladder(&a.ladder)?;
    // After basis-sharing, --group-size is its layers per group: the int4 group is
    // --quant-group-size only.
    o.group_size = match (
        a.quant_group_size,
        a.then_lsaq && a.method == "basis-sharing",
    ) {
        (Some(g), _) => Some(g),
        (None, true) => None,
        (None, false) => a.group_size,
    };
    if let Some(g) = o.group_size {
        if ![32, 64, 128].contains(&g) {
            return Err(EvalError::Input(format!(
                "the int4 group size must be 32, 64 or 128, got {g}"
            )));
        }
    }
    o.quantizer = Quantizer::parse(&a.quantizer)
        .ok_or_else(|| EvalError::Input(format!("unknown quantizer `{}`", a.quantizer)))?;
    o.importance = RankingKind::parse(&a.importance)
        .ok_or_else(|| EvalError::Input(format!("unknown importance `{}`", a.importance)))?;
    o.top_k = a.top_k;
    o.position_stride = a.position_stride;
    o.seed = a.ranking_seed;
    o.f16_embeddings = !a.f32_embeddings;
    o.calibration.windows = a.calib_windows;
    o.calibration.seq_len = a.seq_len;
    o.calibration.seed = a.seed;
    o.calibration_text = calibration_text(&a.calib);
    if a.whiten_from == "original" && a.method == "lsaq" {
        o.gptq_stats_from = llm_compress_eval::StatsFrom::Original;
    }
    Ok(o)
}

/// The method `--then-lsaq` follows: its compressed layers and its manifest record.
fn first_stage(
    ui: &Ui,
    a: &CompressArgs,
    ckpt: &Checkpoint,
    opts: &LsaqOptions,
) -> Result<(OutputLayers, serde_json::Value), EvalError> {
    let n = ckpt.config.num_layers as u64;
    if let Some(method) = LowRankMethod::parse(&a.method) {
        let mut lo = LowRankOptions::new(method, a.ratio);
        lo.update = a.update;
        if a.whiten_from == "original" {
            lo.whiten_from = llm_compress_eval::StatsFrom::Original;
        }
        lo.calibration = opts.calibration.clone();
        lo.calibration_text = opts.calibration_text.clone();
        let pb = ui.bar(n, method.name());
        let (out, report) = compress_low_rank(ckpt, &lo, |p| match p {
            llm_compress::lowrank::Progress::Layer { done, .. } => pb.set_position(done as u64),
        })?;
        pb.finish_and_clear();
        let json = json!({
            "name": method.name(), "ratio": a.ratio, "update": a.update,
            "whiten_from": a.whiten_from,
            "linear_params_after": report.linear_params_after,
        });
        return Ok((out, json));
    }
    if a.method == "basis-sharing" {
        let bo = crate::basis_sharing::options(a)?;
        let pb = ui.bar(n.div_ceil(bo.group_size.max(1) as u64), "groups");
        let (out, report) = compress_basis_sharing(ckpt, &bo, |p| match p {
            llm_compress::basis_sharing::Progress::Group { done, .. } => {
                pb.set_position(done as u64)
            }
        })?;
        pb.finish_and_clear();
        let shared: Vec<&str> = bo.shared.iter().map(|k| k.short()).collect();
        let json = json!({
            "name": "basis-sharing", "ratio": a.ratio, "group_size": bo.group_size,
            "shared": shared, "update": a.update, "stats_from": a.whiten_from,
            "linear_params_after": report.linear_params_after,
        });
        return Ok((out, json));
    }
    if let Some(method) = PruneMethod::parse(&a.method) {
        let so = crate::sparsity::sparsity_options(a, method)?;
        let pb = ui.bar(n, method.name());
        let (out, report) = compress_sparse(ckpt, &so, |p| match p {
            llm_compress::lowrank::Progress::Layer { done, .. } => pb.set_position(done as u64),
        })?;
        pb.finish_and_clear();
        let mut json = serde_json::to_value(&so).map_err(|e| EvalError::Input(e.to_string()))?;
        json["name"] = json!(method.name());
        json["linear_params_after"] = json!(report.linear_params_after);
        if let Some(m) = json.as_object_mut() {
            m.remove("calibration");
        }
        return Ok((out, json));
    }
    Err(EvalError::Input(format!(
        "--then-lsaq follows svd-llm, svd, asvd, basis-sharing, dass, wanda or magnitude, not `{}`",
        a.method
    )))
}

/// Run LSAQ alone, or after another method (`--then-lsaq`), and write the result.
pub fn compress(ui: &Ui, a: CompressArgs) -> CliResult {
    let opts = lsaq_options(&a)?;
    let ckpt = Checkpoint::open(&a.model)?;
    let n = ckpt.config.num_layers as u64;
    let mut first_json = None;
    let layers = if a.then_lsaq {
        let (out, json) = first_stage(ui, &a, &ckpt, &opts)?;
        first_json = Some(json);
        Some(out.layers)
    } else {
        None
    };
    let pb_imp = ui.bar(n, "importance");
    let pb_q = ui.bar(n, "quantize");
    let (out, report) = quantize_to_budget(&ckpt, layers, &opts, |p| match p {
        LsaqProgress::Importance { done, .. } => pb_imp.set_position(done as u64),
        LsaqProgress::Quantize { done, .. } => {
            pb_imp.finish_and_clear();
            pb_q.set_position(done as u64)
        }
    })?;
    pb_imp.finish_and_clear();
    pb_q.finish_and_clear();
    let mut method = method_json(&opts, &report);
    if let Some(first) = first_json {
        // `first` records the first method; a low-rank one is also under `low_rank`, the key
        // of the first compositions (SVD-LLM then LSAQ).
        let name = format!("{}+lsaq", first["name"].as_str().unwrap_or("first"));
        method = json!({"name": name, "first": first, "lsaq": method});
        if LowRankMethod::parse(&a.method).is_some() {
            method["low_rank"] = method["first"].clone();
        }
    }
    let calibration = json!({
        "text": a.calib, "windows": a.calib_windows, "seq_len": a.seq_len, "seed": a.seed,
    });
    if a.dense {
        llm_compress::export::write_dense(&ckpt, &out, &a.out)?;
    } else {
        llm_compress::export::write_compact_with(
            &ckpt,
            &out,
            &a.out,
            method.clone(),
            calibration.clone(),
            ckpt.config.linear_params(),
            opts.f16_embeddings,
        )?;
    }
    let written = std::fs::metadata(a.out.join(TENSORS))
        .map(|m| m.len() as usize)
        .map_err(|source| llm_compress_tensor_io::IoError::Io {
            path: a.out.join(TENSORS),
            source,
        })?;
    let formats: Vec<&str> = report.formats.iter().map(|f| f.name()).collect();
    let peak = llm_compress_eval::sys::peak_rss_bytes();
    if ui.json {
        println!(
            "{}",
            json!({
                "out": a.out, "method": method, "calibration": calibration, "dense": a.dense,
                "predicted_bytes": report.allocation.bytes, "written_bytes": written,
                "budget_bytes": opts.budget_bytes, "layer_formats": formats,
                "ranking": report.order, "importance": report.importance,
                "wall_s": report.wall_s, "importance_s": report.importance_s,
                "quantize_s": report.quantize_s, "peak_rss_bytes": peak,
            })
        );
        return Ok(());
    }
    println!("wrote        {}", a.out.display());
    if let Some(imp) = &report.importance {
        println!(
            "importance   (1 - mean Jaccard, top-{}; 1 - mean cosine)",
            opts.top_k
        );
        for l in 0..imp.jaccard.len() {
            println!(
                "  layer {l:>2}  jaccard {:.4}  cosine {:.4}",
                imp.jaccard[l], imp.cosine[l]
            );
        }
    }
    println!(
        "ranking      ({}, most important first) {:?}",
        opts.importance.name(),
        report.order
    );
    println!("precision    {}", formats.join(" "));
    let count = |f: &str| formats.iter().filter(|x| **x == f).count();
    println!(
        "layers       {} f16, {} int8, {} int4",
        count("f16"),
        count("int8"),
        count("int4")
    );
    println!(
        "bytes        budget {} | predicted {} | written {} ({:+.3}%) | all-lowest {} | all-highest {}",
        opts.budget_bytes,
        report.allocation.bytes,
        written,
        100.0 * (written as f64 / report.allocation.bytes as f64 - 1.0),
        report.allocation.min_bytes,
        report.allocation.max_bytes
    );
    if a.dense {
        println!("note         --dense wrote dequantized f32: the file is larger than the budget");
    }
    println!(
        "time         {:.1} s (importance {:.1}, quantize {:.1})",
        report.wall_s, report.importance_s, report.quantize_s
    );
    if let Some(p) = peak {
        println!("peak RSS     {:.0} MiB", p as f64 / (1 << 20) as f64);
    }
    Ok(())
}

fn repr_format(r: &LinearRepr) -> String {
    match r {
        LinearRepr::Dense { .. } => "f32".into(),
        LinearRepr::Quantized { format, .. } => format.clone(),
        LinearRepr::LowRank { first, second, .. } => {
            let (f, s) = (repr_format(first), repr_format(second));
            if f == s {
                format!("low-rank {f}")
            } else {
                format!("low-rank {f}/{s}")
            }
        }
        LinearRepr::Sparse { pattern, .. } => format!("sparse {pattern} f32"),
        LinearRepr::QuantizedSparse {
            pattern, format, ..
        } => format!("sparse {pattern} {format}"),
        LinearRepr::Shared { basis, coeff, .. } => {
            format!("shared {}/{}", repr_format(basis), repr_format(coeff))
        }
    }
}

/// Precision of every decoder layer of a compact folder (`layers.{l}` → format, or the
/// distinct formats of its linears joined by `+`).
pub fn layer_formats(m: &Manifest) -> BTreeMap<usize, String> {
    let mut per: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for (name, repr) in &m.linears {
        let l = name
            .strip_prefix("layers.")
            .and_then(|r| r.split('.').next())
            .and_then(|x| x.parse().ok());
        if let Some(l) = l {
            let f = repr_format(repr);
            let v = per.entry(l).or_default();
            if !v.contains(&f) {
                v.push(f);
            }
        }
    }
    per.into_iter().map(|(l, v)| (l, v.join("+"))).collect()
}

/// `inspect` of a compact folder: the precision of each layer and the saved importance ranking.
pub fn inspect_manifest(ui: &Ui, m: &Manifest) -> serde_json::Value {
    let formats = layer_formats(m);
    let lsaq = m.method.get("lsaq").unwrap_or(&m.method);
    let ranking = lsaq
        .get("ranking")
        .cloned()
        .unwrap_or(serde_json::Value::Null);
    if !ui.json {
        println!("compressed   method {}", m.method["name"]);
        println!("precision per layer:");
        for (l, f) in &formats {
            println!("  layer {l:>2}  {f}");
        }
        if !ranking.is_null() {
            println!(
                "importance ranking ({}, most important first): {ranking}",
                lsaq["importance"]
            );
        }
    }
    json!({"layer_formats": formats, "ranking": ranking})
}
