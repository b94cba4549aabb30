//! `compress --method dass|wanda|magnitude`: N:M or unstructured pruning.

use crate::commands::{CliResult, CompressArgs, Ui};
use llm_compress::lowrank::{CalibrationText, Progress};
use llm_compress::sparsity::{compress_sparse, PruneScope, SparsityOptions};
use llm_compress_core::SparsityPattern;
use llm_compress_eval::{EvalError, TextSource};
use llm_compress_glu_sparsity::PruneMethod;
use llm_compress_tensor_io::Checkpoint;
use serde_json::json;

/// Run a pruning method; `method` is already parsed from `--method`.
pub fn compress_sparse_cmd(ui: &Ui, a: CompressArgs, method: PruneMethod) -> CliResult {
    let opts = sparsity_options(&a, method)?;
    let ckpt = Checkpoint::open(&a.model)?;
    let pb = ui.bar(ckpt.config.num_layers as u64, "layers");
    let (out, report) = compress_sparse(&ckpt, &opts, |Progress::Layer { done, .. }| {
        pb.set_position(done as u64)
    })?;
    pb.finish_and_clear();
    let calibration = json!({
        "text": a.calib, "windows": a.calib_windows, "seq_len": a.seq_len, "seed": a.seed,
    });
    let mut method_json = serde_json::to_value(&opts)?;
    method_json["name"] = json!(method.name());
    if let Some(m) = method_json.as_object_mut() {
        m.remove("calibration");
    }
    a.write_output(
        &ckpt,
        &out,
        &method_json,
        &calibration,
        report.linear_params_before,
    )?;
    let peak = llm_compress_eval::sys::peak_rss_bytes();
    let kept = report.linear_params_after as f64 / report.linear_params_before as f64;
    let bytes = report.linear_bytes_after as f64 / report.linear_bytes_before as f64;
    if ui.json {
        println!(
            "{}",
            json!({
                "out": a.out, "method": method_json, "calibration": calibration, "dense": a.dense,
                "linear_params_before": report.linear_params_before,
                "linear_params_after": report.linear_params_after,
                "kept_fraction": kept,
                "linear_bytes_before": report.linear_bytes_before,
                "linear_bytes_after": report.linear_bytes_after,
                "bytes_fraction": bytes,
                "wall_s": report.wall_s, "prepare_s": report.prepare_s, "walk_s": report.walk_s,
                "prune_s": report.prune_s, "peak_rss_bytes": peak,
            })
        );
    } else {
        println!("wrote        {}", a.out.display());
        println!(
            "linear weights {} -> {} kept ({:.1}%), packed bytes {:.1}% of dense f32",
            report.linear_params_before,
            report.linear_params_after,
            100.0 * kept,
            100.0 * bytes
        );
        println!(
            "time         {:.1} s (prepare {:.1}, walk {:.1}, prune {:.1})",
            report.wall_s, report.prepare_s, report.walk_s, report.prune_s
        );
        if let Some(p) = peak {
            println!("peak RSS     {:.0} MiB", p as f64 / (1 << 20) as f64);
        }
    }
    Ok(())
}

/// The pruning options of the flags (also used by `--then-lsaq`).
pub fn sparsity_options(
    a: &CompressArgs,
    method: PruneMethod,
) -> Result<SparsityOptions, EvalError> {
    let pattern: SparsityPattern = a
        .pattern
        .parse()
        .map_err(|e: llm_compress_core::CoreError| EvalError::Input(e.to_string()))?;
    let scope = PruneScope::parse(&a.scope).ok_or_else(|| {
        EvalError::Input(format!(
            "unknown scope `{}`; expected mlp, attention or all",
            a.scope
        ))
    })?;
    let mut opts = SparsityOptions::new(method, pattern);
    if let Some(s) = a.sparsity {
        opts.sparsity = s;
    }
    opts.alpha = a.alpha;
    opts.scope = scope;
    opts.calibration.windows = a.calib_windows;
    opts.calibration.seq_len = a.seq_len;
    opts.calibration.seed = a.seed;
    opts.calibration_text = CalibrationText::Source(match a.calib.as_str() {
        "wikitext2" | "wikitext2-train" => TextSource::WikiText2Train,
        other => TextSource::File(other.into()),
    });
    opts.validate()?;
    Ok(opts)
}
