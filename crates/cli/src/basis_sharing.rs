//! `compress --method basis-sharing`: the Basis Sharing pipeline.

use crate::commands::{CliResult, CompressArgs, CompressSummary, Ui};
use llm_compress::basis_sharing::{
    compress_basis_sharing, predicted_params, BasisSharingOptions, Progress,
};
use llm_compress_eval::{EvalError, StatsFrom};
use llm_compress_shared_basis::SharingPlan;
use llm_compress_tensor_io::Checkpoint;
use serde_json::json;

/// The Basis Sharing options of the flags (also used by `--then-lsaq`).
pub fn options(a: &CompressArgs) -> Result<BasisSharingOptions, EvalError> {
    let mut opts = BasisSharingOptions::new(a.ratio);
    opts.group_size = a.group_size.unwrap_or(opts.group_size);
    opts.shared =
        SharingPlan::parse_kinds(&a.share).map_err(|e| EvalError::Input(e.to_string()))?;
    opts.update = a.update;
    if a.whiten_from == "original" {
        opts.stats_from = StatsFrom::Original;
    }
    (opts.calibration, opts.calibration_text) = a.calibration();
    opts.svd_solver = a.solver()?;
    Ok(opts)
}

/// Run Basis Sharing with the options of `a`, write the result and report (kept parameters
/// count each shared basis once).
pub fn compress(ui: &Ui, a: CompressArgs) -> CliResult {
    let ckpt = Checkpoint::open(&a.model)?;
    let opts = options(&a)?;
    let group_size = opts.group_size;
    let pb = ui.bar(ckpt.config.num_layers.div_ceil(group_size) as u64, "groups");
    let (out, report) =
        compress_basis_sharing(&ckpt, &opts, |Progress::Group { done, .. }| {
            pb.set_position(done as u64)
        })?;
    pb.finish_and_clear();
    let shared: Vec<&str> = opts.shared.iter().map(|k| k.short()).collect();
    if !ui.json && !ui.quiet {
        println!(
            "groups       {} of up to {} layers, shared: {}",
            report.groups.len(),
            group_size,
            shared.join(",")
        );
    }
    let mut method = json!({
        "name": "basis-sharing", "ratio": a.ratio, "group_size": group_size,
        "shared": shared, "update": a.update, "stats_from": a.whiten_from,
    });
    if opts.svd_solver != llm_compress_whitening_svd::SvdSolver::Exact {
        method["svd_solver"] = json!(opts.svd_solver);
    }
    let summary = CompressSummary {
        method,
        linear_params_before: report.linear_params_before,
        linear_params_after: report.linear_params_after,
        seconds: [
            report.wall_s,
            report.prepare_s,
            report.walk_s,
            report.factorize_s,
        ],
        extra: json!({
            "linear_params_predicted": predicted_params(&ckpt.config, &opts)?,
            "ranks": report.ranks,
        }),
    };
    a.write_and_report(ui, &ckpt, &out, summary)
}
