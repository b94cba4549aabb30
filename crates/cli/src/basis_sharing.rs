//! `compress --method basis-sharing`: the Basis Sharing pipeline and its report.

use crate::commands::{CliResult, CompressArgs, Ui};
use llm_compress::basis_sharing::{
    compress_basis_sharing, predicted_params, BasisSharingOptions, Progress,
};
use llm_compress::lowrank::CalibrationText;
use llm_compress_eval::{EvalError, StatsFrom, TextSource};
use llm_compress_shared_basis::SharingPlan;
use llm_compress_tensor_io::Checkpoint;
use serde_json::json;

/// Run Basis Sharing with the options of `a` and write the result.
pub fn compress(ui: &Ui, a: CompressArgs) -> CliResult {
    let ckpt = Checkpoint::open(&a.model)?;
    let mut opts = BasisSharingOptions::new(a.ratio);
    opts.group_size = a.group_size;
    opts.shared =
        SharingPlan::parse_kinds(&a.share).map_err(|e| EvalError::Input(e.to_string()))?;
    opts.update = a.update;
    if a.whiten_from == "original" {
        opts.stats_from = StatsFrom::Original;
    }
    opts.calibration.windows = a.calib_windows;
    opts.calibration.seq_len = a.seq_len;
    opts.calibration.seed = a.seed;
    opts.calibration_text = CalibrationText::Source(match a.calib.as_str() {
        "wikitext2" | "wikitext2-train" => TextSource::WikiText2Train,
        other => TextSource::File(other.into()),
    });
    let n_groups = ckpt.config.num_layers.div_ceil(a.group_size);
    let pb = ui.bar(n_groups as u64, "groups");
    let (out, report) =
        compress_basis_sharing(&ckpt, &opts, |Progress::Group { done, .. }| {
            pb.set_position(done as u64)
        })?;
    pb.finish_and_clear();
    let calibration = json!({
        "text": a.calib, "windows": a.calib_windows, "seq_len": a.seq_len, "seed": a.seed,
    });
    let shared: Vec<&str> = opts.shared.iter().map(|k| k.short()).collect();
    let method = json!({
        "name": "basis-sharing", "ratio": a.ratio, "group_size": a.group_size,
        "shared": shared, "update": a.update, "stats_from": a.whiten_from,
    });
    if a.dense {
        llm_compress::export::write_dense(&ckpt, &out, &a.out)?;
    } else {
        llm_compress::export::write_compact(
            &ckpt,
            &out,
            &a.out,
            method.clone(),
            calibration.clone(),
            report.linear_params_before,
        )?;
    }
    let predicted = predicted_params(&ckpt.config, &opts)?;
    let peak = llm_compress_eval::sys::peak_rss_bytes();
    let kept = report.linear_params_after as f64 / report.linear_params_before as f64;
    if ui.json {
        println!(
            "{}",
            json!({
                "out": a.out, "method": method, "calibration": calibration, "dense": a.dense,
                "linear_params_before": report.linear_params_before,
                "linear_params_after": report.linear_params_after,
                "linear_params_predicted": predicted,
                "kept_fraction": kept,
                "wall_s": report.wall_s, "prepare_s": report.prepare_s, "walk_s": report.walk_s,
                "factorize_s": report.factorize_s, "peak_rss_bytes": peak,
                "ranks": report.ranks,
            })
        );
    } else {
        println!("wrote        {}", a.out.display());
        println!(
            "linear params {} -> {} ({:.1}% kept, each basis counted once)",
            report.linear_params_before,
            report.linear_params_after,
            100.0 * kept
        );
        println!(
            "groups       {} of up to {} layers, shared: {}",
            report.groups.len(),
            a.group_size,
            shared.join(",")
        );
        println!(
            "time         {:.1} s (prepare {:.1}, walk {:.1}, factorize {:.1})",
            report.wall_s, report.prepare_s, report.walk_s, report.factorize_s
        );
        if let Some(p) = peak {
            println!("peak RSS     {:.0} MiB", p as f64 / (1 << 20) as f64);
        }
    }
    Ok(())
}
