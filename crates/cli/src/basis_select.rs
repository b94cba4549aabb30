//! `compress --method basis-select`: training-free Basis Selection (ALGORITHMS.md §5.8).

use crate::commands::{CliResult, CompressArgs, Ui};
use llm_compress::basis_select::{
    calibration_description, compress_basis_select, score_model, Allocation, BasisFamily,
    BasisSelectOptions, ModelScores,
};
use llm_compress::lowrank::{CalibrationText, Progress};
use llm_compress_eval::{EvalError, StatsFrom};
use llm_compress_tensor_io::Checkpoint;
use serde_json::json;

pub fn compress(ui: &Ui, a: CompressArgs) -> CliResult {
    let ckpt = Checkpoint::open(&a.model)?;
    let mut opts = BasisSelectOptions::new(a.ratio, CalibrationText::named(&a.calib));
    opts.bases = BasisFamily::parse(&a.bases)
        .ok_or_else(|| EvalError::Input(format!("unknown --bases `{}`", a.bases)))?;
    opts.allocation = match (a.allocation.as_str(), a.mass) {
        ("global", None) => Allocation::Global,
        ("per-matrix", None) => Allocation::PerMatrix,
        ("per-matrix", Some(k)) => Allocation::Mass(k),
        ("global", Some(_)) => {
            return Err(EvalError::Input("--mass needs --allocation per-matrix".into()).into())
        }
        (other, _) => {
            return Err(EvalError::Input(format!("unknown --allocation `{other}`")).into())
        }
    };
    if a.update {
        return Err(EvalError::Input(
            "--update is an SVD-LLM option; basis-select has --refit".into(),
        )
        .into());
    }
    opts.residual_rank = a.residual_rank;
    opts.refit = a.refit;
    if a.whiten_from == "original" {
        opts.stats_from = StatsFrom::Original;
    }
    opts.calibration.windows = a.calib_windows;
    opts.calibration.seq_len = a.seq_len;
    opts.calibration.seed = a.seed;
    let description = format!(
        "{} {}",
        ckpt.path.display(),
        calibration_description(&opts, &a.calib)
    );
    let pb = ui.bar(ckpt.config.num_layers as u64, "layers");
    let mut on_progress = |Progress::Layer { done, .. }| pb.set_position(done as u64);
    // Pass-1 scores: read from --scores if present, else computed (and saved if asked).
    let t_scores = std::time::Instant::now();
    let scores = match (&a.scores, opts.allocation) {
        (Some(path), Allocation::Global) if path.exists() => {
            let raw = std::fs::read_to_string(path)?;
            let s: ModelScores = serde_json::from_str(&raw).map_err(|e| {
                EvalError::Input(format!("{}: not a scores file: {e}", path.display()))
            })?;
            if s.calibration != description || s.bases != opts.bases {
                return Err(EvalError::Input(format!(
                    "{} holds scores of `{}` ({:?} bases), this run is `{description}` ({:?} bases)",
                    path.display(),
                    s.calibration,
                    s.bases,
                    opts.bases
                ))
                .into());
            }
            Some(s)
        }
        (_, Allocation::Global) => {
            pb.set_message("scores");
            let s = score_model(&ckpt, &opts, description.clone(), &mut on_progress)?;
            if let Some(path) = &a.scores {
                llm_compress_tensor_io::compact::write_json_atomic(
                    path,
                    &serde_json::to_value(&s)?,
                )?;
            }
            pb.set_position(0);
            Some(s)
        }
        (Some(_), _) => {
            return Err(EvalError::Input("--scores needs --allocation global".into()).into())
        }
        _ => None,
    };
    let score_pass_s = t_scores.elapsed().as_secs_f64();
    pb.set_message("layers");
    let (out, report) = compress_basis_select(&ckpt, &opts, scores.as_ref(), &mut on_progress)?;
    pb.finish_and_clear();
    let calibration = json!({
        "text": a.calib, "windows": a.calib_windows, "seq_len": a.seq_len, "seed": a.seed,
    });
    let method_json = json!({
        "name": "basis-select", "ratio": a.ratio, "allocation": opts.allocation,
        "bases": opts.bases, "residual_rank": a.residual_rank, "refit": a.refit,
        "stats_from": a.whiten_from,
    });
    a.write_output(
        &ckpt,
        &out,
        &method_json,
        &calibration,
        report.linear_params_before,
    )?;
    let peak = llm_compress_eval::sys::peak_rss_bytes();
    let kept = report.linear_params_after as f64 / report.linear_params_before as f64;
    if ui.json {
        println!(
            "{}",
            json!({
                "out": a.out, "method": method_json, "calibration": calibration, "dense": a.dense,
                "linear_params_before": report.linear_params_before,
                "linear_params_after": report.linear_params_after,
                "budget_params": report.budget_params,
                "kept_fraction": kept,
                "wall_s": report.wall_s, "score_s": report.score_s, "compress_s": report.compress_s,
                "score_pass_s": score_pass_s,
                "peak_rss_bytes": peak, "ranks": report.ranks,
            })
        );
    } else {
        println!("wrote        {}", a.out.display());
        println!(
            "linear params {} -> {} ({:.2}% kept; budget {})",
            report.linear_params_before,
            report.linear_params_after,
            100.0 * kept,
            report.budget_params
        );
        println!(
            "time         {:.1} s (scores {:.1}, compress {:.1})",
            score_pass_s + report.wall_s,
            score_pass_s + report.score_s,
            report.compress_s
        );
        if let Some(p) = peak {
            println!("peak RSS     {:.0} MiB", p as f64 / (1 << 20) as f64);
        }
    }
    Ok(())
}
