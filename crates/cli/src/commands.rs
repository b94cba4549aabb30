//! The subcommands.

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use llm_compress_core::{CoreError, LinearKind};
use llm_compress_eval::{perplexity, EvalError, Model, PerplexityOptions, TextSource};
use llm_compress_tensor_io::{Checkpoint, IoError};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::PathBuf;

pub type CliResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// Output preferences shared by every command.
pub struct Ui {
    pub quiet: bool,
    pub json: bool,
}

impl Ui {
    pub fn bar(&self, len: u64, what: &str) -> ProgressBar {
        if self.quiet {
            return ProgressBar::hidden();
        }
        let pb = ProgressBar::new(len);
        pb.set_style(
            ProgressStyle::with_template(
                "{msg:>12} [{bar:30}] {pos}/{len} {elapsed_precise} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        pb.set_message(what.to_string());
        pb
    }
}

/// Map an error to the documented exit code.
pub fn exit_code(e: &(dyn std::error::Error + 'static)) -> u8 {
    let io = e
        .downcast_ref::<IoError>()
        .or_else(|| match e.downcast_ref::<EvalError>() {
            Some(EvalError::Io(io)) => Some(io),
            _ => None,
        });
    match io {
        Some(IoError::Io { .. }) => 1,
        Some(_) => 3,
        None => match e.downcast_ref::<EvalError>() {
            Some(EvalError::Shape(_))
            | Some(EvalError::Input(_))
            | Some(EvalError::Data { .. })
            | Some(EvalError::Core(CoreError::Parameter { .. })) => 3,
            _ => match e.downcast_ref::<CoreError>() {
                Some(CoreError::Parameter { .. }) => 3,
                _ => 1,
            },
        },
    }
}

#[derive(Args)]
pub struct InspectArgs {
    /// A .gguf file, a .safetensors file, or a folder with config.json + safetensors.
    pub model: PathBuf,
}

pub fn inspect(ui: &Ui, a: InspectArgs) -> CliResult {
    let ckpt = Checkpoint::open(&a.model)?;
    let cfg = &ckpt.config;
    let stored = ckpt.stored_tensors();
    let mut by_kind: BTreeMap<String, usize> = BTreeMap::new();
    let mut dtypes: BTreeMap<String, usize> = BTreeMap::new();
    let mut total = 0usize;
    for t in &stored {
        let n: usize = t.shape.iter().product();
        total += n;
        *dtypes.entry(t.dtype.clone()).or_default() += 1;
        let kind = LinearKind::ALL
            .iter()
            .find(|k| t.name.contains(k.hf_name()))
            .map(|k| k.short().to_string())
            .unwrap_or_else(|| {
                if t.name.contains("embed_tokens") {
                    "embedding".into()
                } else if t.name.contains("lm_head") {
                    "lm_head".into()
                } else {
                    "norm/other".into()
                }
            });
        *by_kind.entry(kind).or_default() += n;
    }
    let compact = ckpt
        .manifest
        .as_ref()
        .map(|m| crate::lsaq::inspect_manifest(ui, m));
    if ui.json {
        let v = json!({
            "compact": compact,
            "path": ckpt.path,
            "format": ckpt.format(),
            "config": cfg,
            "tensors": stored.len(),
            "parameters": total,
            "linear_parameters": cfg.linear_params(),
            "parameters_by_kind": by_kind,
            "dtypes": dtypes,
            "tokenizer": ckpt.tokenizer.as_ref().map(|t| t.vocab_size()),
        });
        println!("{v}");
        return Ok(());
    }
    println!("model        {}", ckpt.path.display());
    println!("format       {}", ckpt.format());
    println!("architecture {:?}", cfg.architecture);
    println!(
        "layers       {} (hidden {}, mlp {}, heads {} / kv {}, head dim {})",
        cfg.num_layers,
        cfg.hidden_size,
        cfg.intermediate_size,
        cfg.num_heads,
        cfg.num_kv_heads,
        cfg.head_dim
    );
    println!(
        "vocab        {} (tied head: {})",
        cfg.vocab_size, cfg.tie_word_embeddings
    );
    println!(
        "rope theta   {}  rms eps {}",
        cfg.rope_theta, cfg.rms_norm_eps
    );
    println!("tensors      {}  parameters {}", stored.len(), total);
    println!("decoder linear parameters {}", cfg.linear_params());
    println!("parameters by kind:");
    for (k, n) in &by_kind {
        println!("  {k:<12} {n:>12}");
    }
    println!("stored dtypes:");
    for (d, n) in &dtypes {
        println!("  {d:<12} {n:>5} tensors");
    }
    Ok(())
}

#[derive(Args)]
pub struct EvalArgs {
    /// A model (.gguf, .safetensors, folder) or a compressed output folder.
    pub model: PathBuf,
    /// Evaluate only the first N windows of the test text.
    #[arg(long)]
    pub max_windows: Option<usize>,
    /// Window length in tokens.
    #[arg(long, default_value_t = 2048)]
    pub seq_len: usize,
    /// Text to evaluate on: `wikitext2` (the test split), `gsm8k` (the test split), a `.jsonl`
    /// corpus (documents joined with blank lines), a path to a text file, or `random` (seeded
    /// random token ids, for models without a tokenizer: checks the model runs).
    #[arg(long, default_value = "wikitext2")]
    pub data: String,
    /// Read the decoder layers one at a time (all windows go through a layer before the next
    /// is read): for models larger than memory. Same windows and figure as without.
    #[arg(long)]
    pub streaming: bool,
}

pub fn text_source(name: &str) -> TextSource {
    match name {
        "wikitext2" | "wikitext2-test" => TextSource::WikiText2Test,
        "wikitext2-train" => TextSource::WikiText2Train,
        "gsm8k" | "gsm8k-test" => TextSource::Gsm8kTest,
        "gsm8k-train" => TextSource::Gsm8kTrain,
        other if other.ends_with(".jsonl") => TextSource::Jsonl(other.into()),
        other => TextSource::File(other.into()),
    }
}

pub fn eval(ui: &Ui, a: EvalArgs) -> CliResult {
    let ckpt = Checkpoint::open(&a.model)?;
    let tokens = if a.data == "random" {
        // Models without a tokenizer (the synthetic 7B-shaped ones): the figure means nothing,
        // the run checks that the model loads and runs.
        llm_compress::lowrank::CalibrationText::RandomTokens { seed: 1 }.tokens(&ckpt)?
    } else {
        text_source(&a.data).tokens(ckpt.require_tokenizer()?)?
    };
    let opts = PerplexityOptions {
        seq_len: a.seq_len,
        max_windows: a.max_windows,
    };
    let (r, linear_params) = if a.streaming {
        let base = Model::load_without_layers(&ckpt)?;
        let r = llm_compress_eval::perplexity_streamed(&base, &ckpt, &tokens, &opts)?;
        let stored = match &ckpt.manifest {
            Some(m) => m.linear_params_after,
            None => ckpt.config.linear_params(),
        };
        (r, stored)
    } else {
        let model = Model::load(&ckpt)?;
        let n = (tokens.len() / a.seq_len).min(a.max_windows.unwrap_or(usize::MAX));
        let pb = ui.bar(n as u64, "perplexity");
        let r = perplexity(&model, &tokens, &opts, |w| pb.set_position(w as u64))?;
        pb.finish_and_clear();
        (r, model.linear_params())
    };
    if ui.json {
        let mut v = serde_json::to_value(&r)?;
        v["model"] = json!(a.model);
        v["data"] = json!(a.data);
        v["linear_params"] = json!(linear_params);
        v["peak_rss_bytes"] = json!(llm_compress_eval::sys::peak_rss_bytes());
        println!("{v}");
    } else {
        println!("model             {}", a.model.display());
        println!("perplexity        {:.4}", r.ppl);
        println!("windows           {} x {} tokens", r.windows, r.seq_len);
        println!("predicted tokens  {}", r.predicted_tokens);
        println!("tokens/s          {:.1}", r.tokens_per_s);
    }
    Ok(())
}

#[derive(Args)]
pub struct CompressArgs {
    /// The model to compress (.gguf, .safetensors, or a folder).
    pub model: PathBuf,
    /// Run a recipe (TOML: calibration and steps; see recipes/ and docs/recipes.md) instead of
    /// one `--method`.
    #[arg(long, conflicts_with = "method")]
    pub recipe: Option<PathBuf>,
    /// svd-llm | svd | asvd | dass | wanda | magnitude | basis-select | basis-sharing
    #[arg(long, default_value = "svd-llm")]
    pub method: String,
    /// Fraction of decoder-linear parameters removed, in [0, 1).
    #[arg(long, default_value_t = 0.2)]
    pub ratio: f64,
    /// Closed-form update of the second factor on the compressed prefix (SVD-LLM §2.5a).
    #[arg(long)]
    pub update: bool,
    /// Whitening statistics from the `compressed` prefix (sequential, default) or from the
    /// `original` model (one pass, as the reference code; about half the time).
    #[arg(long, default_value = "compressed", value_parser = ["original", "compressed"])]
    pub whiten_from: String,
    /// Number of calibration windows.
    #[arg(long, default_value_t = 16)]
    pub calib_windows: usize,
    /// Tokens per calibration window.
    #[arg(long, default_value_t = 2048)]
    pub seq_len: usize,
    /// Seed of the calibration window offsets.
    #[arg(long, default_value_t = 3)]
    pub seed: u64,
    /// Calibration text: `wikitext2` (train prefix), `gsm8k` (train split), `random` (seeded
    /// random token ids: models without a tokenizer), a `.jsonl` corpus, or a path to a text
    /// file.
    #[arg(long, default_value = "wikitext2")]
    pub calib: String,
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
    /// Write a dense Hugging Face checkpoint (products materialised) instead of the compact form.
    #[arg(long)]
    pub dense: bool,
    /// Pruning pattern (dass, wanda, magnitude): N:M (N zeros per M, e.g. 2:4, 4:8) or
    /// `unstructured`.
    #[arg(long, default_value = "2:4")]
    pub pattern: String,
    /// Pruned fraction for `--pattern unstructured` (default 0.5; N:M fixes it to N/M).
    #[arg(long)]
    pub sparsity: Option<f64>,
    /// Linears pruned: `mlp` (gate/up/down), `attention` (q/k/v/o, Wanda) or `all`.
    #[arg(long, default_value = "mlp", value_parser = ["mlp", "attention", "all"])]
    pub scope: String,
    /// DaSS exponent of the intermediate activation norm.
    #[arg(long, default_value_t = 0.5)]
    pub alpha: f64,
    /// basis-select: `global` (one budget, ranks differ per matrix) or `per-matrix`.
    #[arg(long, default_value = "global", value_parser = ["global", "per-matrix"])]
    pub allocation: String,
    /// basis-select: `plain` (SVD of W, Basel's bases) or `whitened` (SVD-LLM's bases).
    #[arg(long, default_value = "plain", value_parser = ["plain", "whitened"])]
    pub bases: String,
    /// basis-select, per-matrix: Basel's mass rule, keep the fewest bases carrying this fraction
    /// of the score (the ratio is then not a target).
    #[arg(long)]
    pub mass: Option<f64>,
    /// basis-select: residual bases per matrix (whitened SVD of what was dropped), in budget.
    #[arg(long, default_value_t = 0)]
    pub residual_rank: usize,
    /// basis-select: closed-form refit of the kept coefficients.
    #[arg(long)]
    pub refit: bool,
    /// basis-select, global: file of pass-1 scores; read if it exists (and matches the
    /// calibration), else written. Scores do not depend on the ratio.
    #[arg(long)]
    pub scores: Option<PathBuf>,
    /// basis-sharing: kinds sharing one basis per group (comma-separated; the others are
    /// compressed per layer).
    #[arg(long, default_value = "q,k,v,up,gate")]
    pub share: String,
    /// LSAQ (`--method lsaq` or `--then-lsaq`): byte budget of the tensor file (`120MB`, `110MiB`).
    #[arg(long)]
    pub budget: Option<String>,
    /// LSAQ: precisions a layer may get.
    #[arg(long, default_value = "f16,int8,int4")]
    pub ladder: String,
    /// basis-sharing: layers per group (consecutive, the last group may be shorter; default 2).
    /// lsaq: int4 scale group size (32, 64 or 128; per output channel when omitted).
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub group_size: Option<usize>,
    /// LSAQ: quantizer.
    #[arg(long, default_value = "rtn", value_parser = ["rtn", "gptq"])]
    pub quantizer: String,
    /// LSAQ: layer ranking (jaccard = LSAQ; cosine, random, reversed = baselines).
    #[arg(long, default_value = "jaccard", value_parser = ["jaccard", "cosine", "random", "reversed"])]
    pub importance: String,
    /// LSAQ: size of the logit-lens top-k token sets.
    #[arg(long, default_value_t = 10)]
    pub top_k: usize,
    /// LSAQ: score every N-th position of each calibration window.
    #[arg(long, default_value_t = 16)]
    pub position_stride: usize,
    /// LSAQ: seed of the random ranking.
    #[arg(long, default_value_t = 0)]
    pub ranking_seed: u64,
    /// LSAQ: keep embeddings in f32 (default f16).
    #[arg(long)]
    pub f32_embeddings: bool,
    /// After the method (svd-llm, svd, asvd, basis-sharing, dass, wanda, magnitude), quantize
    /// what it stores with LSAQ to --budget (one command).
    #[arg(long)]
    pub then_lsaq: bool,
    /// LSAQ: int4 scale group size (32, 64 or 128); overrides --group-size, which after
    /// `--method basis-sharing --then-lsaq` means layers per group.
    #[arg(long)]
    pub quant_group_size: Option<usize>,
    /// svd-llm / svd / asvd: write each layer to the output folder as soon as it is compressed
    /// and save the walk after every layer, never holding the model: for models larger than
    /// memory. An interrupted run continues with `--resume`.
    #[arg(long)]
    pub streaming: bool,
    /// Continue the streamed run recorded in `--out` from its last finished layer (implies
    /// `--streaming`; the options must be the same).
    #[arg(long)]
    pub resume: bool,
    /// svd-llm, svd, asvd, basis-sharing: `exact` thin SVD (default) or `randomized` (computes
    /// only the kept rank: faster on 7B-sized matrices; accuracy in docs/scale.md).
    #[arg(long, default_value = "exact", value_parser = ["exact", "randomized"])]
    pub svd_solver: String,
    /// svd-llm, svd, asvd: store the two factors of each linear in `f32` (default) or `f16`
    /// (half the bytes; the runtime reads both).
    #[arg(long, value_parser = ["f32", "f16"])]
    pub factor_dtype: Option<String>,
}

pub fn compress(ui: &Ui, a: CompressArgs) -> CliResult {
    let low_rank = llm_compress::lowrank::LowRankMethod::parse(&a.method).is_some();
    if a.factor_dtype.is_some() && (!low_rank || a.recipe.is_some() || a.then_lsaq) {
        return Err(EvalError::Input(
            "--factor-dtype applies to --method svd-llm, svd or asvd (without --recipe or \
             --then-lsaq)"
                .into(),
        )
        .into());
    }
    if let Some(r) = a.recipe.clone() {
        return crate::pipeline::compress(ui, a, &r);
    }
    if a.method == "lsaq" || a.then_lsaq {
        return crate::lsaq::compress(ui, a);
    }
    if a.method == "basis-select" {
        return crate::basis_select::compress(ui, a);
    }
    use llm_compress::lowrank::{
        compress_low_rank, FactorDtype, LowRankMethod, LowRankOptions, Progress,
    };
    if let Some(m) = llm_compress_glu_sparsity::PruneMethod::parse(&a.method) {
        return crate::sparsity::compress_sparse_cmd(ui, a, m);
    }
    if a.method == "basis-sharing" {
        return crate::basis_sharing::compress(ui, a);
    }
    let method = LowRankMethod::parse(&a.method).ok_or_else(|| {
        EvalError::Input(format!(
            "unknown method `{}`; expected svd-llm, svd, asvd, dass, wanda, magnitude, basis-select, basis-sharing or lsaq",
            a.method
        ))
    })?;
    let ckpt = Checkpoint::open(&a.model)?;
    let mut opts = LowRankOptions::new(method, a.ratio);
    opts.update = a.update;
    if a.whiten_from == "original" {
        opts.whiten_from = llm_compress_eval::StatsFrom::Original;
    }
    (opts.calibration, opts.calibration_text) = a.calibration();
    opts.svd_solver = a.solver()?;
    if let Some(d) = &a.factor_dtype {
        opts.factor_dtype = FactorDtype::parse(d)
            .ok_or_else(|| EvalError::Input(format!("unknown --factor-dtype `{d}`")))?;
    }
    if a.streaming || a.resume {
        return compress_streaming(ui, &a, &ckpt, &opts);
    }
    let pb = ui.bar(ckpt.config.num_layers as u64, "layers");
    let (out, report) = compress_low_rank(&ckpt, &opts, |Progress::Layer { done, .. }| {
        pb.set_position(done as u64)
    })?;
    pb.finish_and_clear();
    let mut method_json = json!({"name": method.name(), "ratio": a.ratio, "update": a.update, "whiten_from": a.whiten_from});
    if opts.svd_solver != llm_compress_whitening_svd::SvdSolver::Exact {
        method_json["svd_solver"] = json!(opts.svd_solver);
    }
    let method_json = llm_compress::lowrank::with_factor_dtype(method_json, opts.factor_dtype);
    a.write_and_report(
        ui,
        &ckpt,
        &out,
        CompressSummary {
            method: method_json,
            linear_params_before: report.linear_params_before,
            linear_params_after: report.linear_params_after,
            seconds: [
                report.wall_s,
                report.prepare_s,
                report.walk_s,
                report.factorize_s,
            ],
            extra: json!({}),
        },
    )
}

/// `compress --streaming`: the low-rank run writing layer by layer (resumable).
fn compress_streaming(
    ui: &Ui,
    a: &CompressArgs,
    ckpt: &Checkpoint,
    opts: &llm_compress::lowrank::LowRankOptions,
) -> CliResult {
    use llm_compress::streaming::{
        compress_low_rank_streaming, StreamOutcome, StreamProgress, StreamingOptions,
    };
    if a.dense {
        return Err(EvalError::Input(
            "--streaming writes the compact form only, not --dense".into(),
        )
        .into());
    }
    let stream = StreamingOptions {
        resume: a.resume,
        method_json: Some(llm_compress::lowrank::with_factor_dtype(
            json!({
                "name": opts.method.name(), "ratio": a.ratio, "update": a.update,
                "whiten_from": a.whiten_from, "svd_solver": opts.svd_solver,
            }),
            opts.factor_dtype,
        )),
        calibration_json: Some(json!({
            "text": a.calib, "windows": a.calib_windows, "seq_len": a.seq_len, "seed": a.seed,
        })),
    };
    let pb = ui.bar(ckpt.config.num_layers as u64, "layers");
    pb.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {elapsed_precise}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    // The message carries the run's own ETA (this process's mean time per layer times the
    // layers left): the bar's rate estimate is wrong after `--resume` jumps the position.
    let outcome = compress_low_rank_streaming(ckpt, opts, &a.out, &stream, |p: StreamProgress| {
        pb.set_position(p.done as u64);
        let left = std::time::Duration::from_secs(p.eta_s.round() as u64);
        pb.set_message(format!(
            "{:.0} s/layer, {} left",
            p.layer_s,
            indicatif::HumanDuration(left)
        ));
        std::ops::ControlFlow::Continue(())
    })?;
    pb.finish_and_clear();
    let StreamOutcome::Finished(report) = outcome else {
        return Err(
            EvalError::Input("the streamed run stopped before the last layer".into()).into(),
        );
    };
    let peak = llm_compress_eval::sys::peak_rss_bytes();
    let kept = report.linear_params_after as f64 / report.linear_params_before as f64;
    if ui.json {
        println!(
            "{}",
            json!({
                "out": a.out, "method": opts.method.name(), "ratio": a.ratio, "streaming": true,
                "linear_params_before": report.linear_params_before,
                "linear_params_after": report.linear_params_after, "kept_fraction": kept,
                "wall_s": report.wall_s, "walk_s": report.walk_s,
                "factorize_s": report.factorize_s, "peak_rss_bytes": peak,
            })
        );
    } else {
        println!("wrote        {}", a.out.display());
        println!(
            "linear params {} -> {} ({:.1}% kept)",
            report.linear_params_before,
            report.linear_params_after,
            100.0 * kept
        );
        println!(
            "time         {:.1} s (walk {:.1} s, factorise {:.1} s; this process)",
            report.wall_s, report.walk_s, report.factorize_s
        );
        if let Some(p) = peak {
            println!("peak RSS     {} MiB", p >> 20);
        }
    }
    Ok(())
}

/// What a compression produced, for [`CompressArgs::write_and_report`].
pub struct CompressSummary {
    /// The manifest's method record.
    pub method: serde_json::Value,
    pub linear_params_before: usize,
    pub linear_params_after: usize,
    /// Wall, prepare, walk and factorise seconds.
    pub seconds: [f64; 4],
    /// Method-specific fields added to the JSON report.
    pub extra: serde_json::Value,
}

impl CompressArgs {
    /// The SVD solver of `--svd-solver`.
    pub fn solver(&self) -> Result<llm_compress_whitening_svd::SvdSolver, EvalError> {
        llm_compress_whitening_svd::SvdSolver::parse(&self.svd_solver)
            .ok_or_else(|| EvalError::Input(format!("unknown --svd-solver `{}`", self.svd_solver)))
    }

    /// Calibration windows and text from the flags.
    pub fn calibration(
        &self,
    ) -> (
        llm_compress_eval::CalibrationConfig,
        llm_compress::lowrank::CalibrationText,
    ) {
        let cfg = llm_compress_eval::CalibrationConfig {
            windows: self.calib_windows,
            seq_len: self.seq_len,
            seed: self.seed,
        };
        let text = llm_compress::lowrank::CalibrationText::named(&self.calib);
        (cfg, text)
    }

    /// Write `out` (compact folder, or dense with `--dense`) and print the report.
    /// Write `out` to `--out`: a dense Hugging Face checkpoint with `--dense`, else the compact
    /// folder whose manifest records `method` and `calibration`.
    pub fn write_output(
        &self,
        ckpt: &Checkpoint,
        out: &llm_compress::export::OutputLayers,
        method: &serde_json::Value,
        calibration: &serde_json::Value,
        linear_params_before: usize,
    ) -> CliResult {
        if self.dense {
            llm_compress::export::write_dense(ckpt, out, &self.out)?;
        } else {
            llm_compress::export::write_compact(
                ckpt,
                out,
                &self.out,
                method.clone(),
                calibration.clone(),
                linear_params_before,
            )?;
        }
        Ok(())
    }

    pub fn write_and_report(
        &self,
        ui: &Ui,
        ckpt: &Checkpoint,
        out: &llm_compress::export::OutputLayers,
        s: CompressSummary,
    ) -> CliResult {
        let a = self;
        let calibration = json!({
            "text": a.calib, "windows": a.calib_windows, "seq_len": a.seq_len, "seed": a.seed,
        });
        a.write_output(ckpt, out, &s.method, &calibration, s.linear_params_before)?;
        let peak = llm_compress_eval::sys::peak_rss_bytes();
        let kept = s.linear_params_after as f64 / s.linear_params_before as f64;
        let [wall_s, prepare_s, walk_s, factorize_s] = s.seconds;
        if ui.json {
            let mut v = json!({
                "out": a.out, "method": s.method, "calibration": calibration, "dense": a.dense,
                "linear_params_before": s.linear_params_before,
                "linear_params_after": s.linear_params_after,
                "kept_fraction": kept,
                "wall_s": wall_s, "prepare_s": prepare_s, "walk_s": walk_s,
                "factorize_s": factorize_s, "peak_rss_bytes": peak,
            });
            if let (Some(v), Some(extra)) = (v.as_object_mut(), s.extra.as_object()) {
                v.extend(extra.clone());
            }
            println!("{v}");
        } else {
            println!("wrote        {}", a.out.display());
            println!(
                "linear params {} -> {} ({:.1}% kept)",
                s.linear_params_before,
                s.linear_params_after,
                100.0 * kept
            );
            println!(
                "time         {wall_s:.1} s (prepare {prepare_s:.1}, walk {walk_s:.1}, factorize {factorize_s:.1})"
            );
            if let Some(p) = peak {
                println!("peak RSS     {:.0} MiB", p as f64 / (1 << 20) as f64);
            }
        }
        Ok(())
    }
}
