//! `compress --recipe`, `bench` and `report`: recipe pipelines, their timings against the dense
//! model in one run, and the Markdown / JSON / plot report of several compressed outputs.

use crate::commands::{text_source, CliResult, CompressArgs, Ui};
use clap::Args;
use indicatif::ProgressBar;
use llm_compress::export::{write_dense, OutputLayers};
use llm_compress::pipeline::{Pipeline, PipelineProgress, PipelineReport, Recipe};
use llm_compress_eval::report::{Report, RunResult};
use llm_compress_eval::{perplexity, sys, EvalError, Model, PerplexityOptions};
use llm_compress_tensor_io::atomic::write_bytes_atomic;
use llm_compress_tensor_io::compact::TENSORS;
use llm_compress_tensor_io::{Checkpoint, IoError};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Progress bars for the stages of a pipeline, one at a time.
struct StageBars<'a> {
    ui: &'a Ui,
    current: Option<(String, ProgressBar)>,
}

impl<'a> StageBars<'a> {
    fn new(ui: &'a Ui) -> Self {
        Self { ui, current: None }
    }
    fn update(&mut self, p: &PipelineProgress) {
        if self.current.as_ref().map(|(s, _)| s.as_str()) != Some(p.stage) {
            if let Some((_, pb)) = self.current.take() {
                pb.finish_and_clear();
            }
            self.current = Some((p.stage.to_string(), self.ui.bar(p.total as u64, p.stage)));
        }
        if let Some((_, pb)) = &self.current {
            pb.set_position(p.done as u64);
        }
    }
    fn finish(&mut self) {
        if let Some((_, pb)) = self.current.take() {
            pb.finish_and_clear();
        }
    }
}

/// Load and validate a recipe file.
pub fn load_pipeline(path: &Path) -> Result<Pipeline, EvalError> {
    Pipeline::new(Recipe::from_file(path)?)
}

/// Run `pipeline` on `ckpt` with progress bars.
fn run(
    ui: &Ui,
    pipeline: &Pipeline,
    ckpt: &Checkpoint,
) -> Result<(OutputLayers, PipelineReport), EvalError> {
    let mut bars = StageBars::new(ui);
    let r = pipeline.run(ckpt, |p| bars.update(p));
    bars.finish();
    r
}

/// Write the pipeline's output to `dir` (compact, or dense HF with `dense`).
fn write(
    pipeline: &Pipeline,
    ckpt: &Checkpoint,
    out: &OutputLayers,
    report: &PipelineReport,
    dir: &Path,
    dense: bool,
) -> Result<(), EvalError> {
    if dense {
        write_dense(ckpt, out, dir)
    } else {
        pipeline.write_compact(ckpt, out, report, dir)
    }
}

fn file_len(path: &Path) -> Result<u64, IoError> {
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|source| IoError::Io {
            path: path.into(),
            source,
        })
}

/// Bytes of a model's tensors: the tensor file of a compact folder, else its stored
/// parameters at 4 bytes each (f32, as the runtime holds them).
pub fn model_bytes(ckpt: &Checkpoint) -> Result<u64, IoError> {
    if ckpt.manifest.is_some() {
        file_len(&ckpt.path.join(TENSORS))
    } else {
        Ok(ckpt
            .stored_tensors()
            .iter()
            .map(|t| 4 * t.shape.iter().product::<usize>() as u64)
            .sum())
    }
}

/// `compress MODEL --recipe FILE --out DIR`.
pub fn compress(ui: &Ui, a: CompressArgs, recipe: &Path) -> CliResult {
    let pipeline = load_pipeline(recipe)?;
    let ckpt = Checkpoint::open(&a.model)?;
    let (out, report) = run(ui, &pipeline, &ckpt)?;
    write(&pipeline, &ckpt, &out, &report, &a.out, a.dense)?;
    let written = file_len(&a.out.join(TENSORS))?;
    let peak = sys::peak_rss_bytes();
    let kept = report.linear_params_after as f64 / report.linear_params_before as f64;
    if ui.json {
        let v = json!({
            "out": a.out, "dense": a.dense, "recipe": pipeline.recipe(), "label": report.label,
            "linear_params_before": report.linear_params_before,
            "linear_params_after": report.linear_params_after,
            "kept_fraction": kept,
            "bytes_written": written,
            "predicted_bytes": report.lsaq.as_ref().map(|l| l.allocation.bytes),
            "stages": report.stages, "wall_s": report.wall_s, "peak_rss_bytes": peak,
        });
        println!("{v}");
    } else {
        println!("recipe       {}", report.label);
        println!(
            "wrote        {} ({:.1} MB)",
            a.out.display(),
            written as f64 / 1e6
        );
        println!(
            "linear params {} -> {} ({:.1}% kept)",
            report.linear_params_before,
            report.linear_params_after,
            100.0 * kept
        );
        if let Some(l) = &report.lsaq {
            let formats: Vec<&str> = l.formats.iter().map(|f| f.name()).collect();
            println!("layer bits   {}", formats.join(" "));
        }
        let stages: Vec<String> = report
            .stages
            .iter()
            .map(|s| format!("{} {:.1}", s.stage, s.seconds))
            .collect();
        println!(
            "time         {:.1} s ({})",
            report.wall_s,
            stages.join(", ")
        );
        if let Some(p) = peak {
            println!("peak RSS     {:.0} MiB", p as f64 / (1 << 20) as f64);
        }
    }
    Ok(())
}

#[derive(Args)]
pub struct BenchArgs {
    /// The model to compress (.gguf, .safetensors, or a folder).
    pub model: PathBuf,
    /// The recipe to run (TOML; see recipes/).
    #[arg(long)]
    pub recipe: PathBuf,
    /// Evaluation windows for perplexity and tokens/s.
    #[arg(long, default_value_t = 4)]
    pub max_windows: usize,
    /// Tokens per evaluation window.
    #[arg(long, default_value_t = 2048)]
    pub seq_len: usize,
    /// Evaluation text (as `eval --data`).
    #[arg(long, default_value = "wikitext2")]
    pub data: String,
    /// Keep the compressed folder here (default: a temporary folder, removed).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(serde::Serialize)]
struct Measured {
    bytes: u64,
    linear_params: usize,
    ppl: f64,
    tokens_per_s: f64,
    eval_s: f64,
    peak_rss_bytes: Option<u64>,
}

fn measure(
    ui: &Ui,
    ckpt: &Checkpoint,
    tokens: &[u32],
    opts: &PerplexityOptions,
    what: &str,
) -> Result<Measured, EvalError> {
    sys::reset_peak_rss();
    let model = Model::load(ckpt)?;
    let pb = ui.bar(opts.max_windows.unwrap_or(0) as u64, what);
    let r = perplexity(&model, tokens, opts, |w| pb.set_position(w as u64))?;
    pb.finish_and_clear();
    Ok(Measured {
        bytes: model_bytes(ckpt)?,
        linear_params: model.linear_params(),
        ppl: r.ppl,
        tokens_per_s: r.tokens_per_s,
        eval_s: r.wall_s,
        peak_rss_bytes: sys::peak_rss_bytes(),
    })
}

/// `bench MODEL --recipe FILE`: compress, then evaluate the dense and the compressed model in
/// the same process; print the figures side by side with their ratios.
pub fn bench(ui: &Ui, a: BenchArgs) -> CliResult {
    let pipeline = load_pipeline(&a.recipe)?;
    let ckpt = Checkpoint::open(&a.model)?;
    let tmp;
    let out_dir = match &a.out {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile::tempdir().map_err(|source| IoError::Io {
                path: std::env::temp_dir(),
                source,
            })?;
            tmp.path().join("out")
        }
    };
    sys::reset_peak_rss();
    let t0 = Instant::now();
    let (out, report) = run(ui, &pipeline, &ckpt)?;
    write(&pipeline, &ckpt, &out, &report, &out_dir, false)?;
    drop(out);
    let compress_s = t0.elapsed().as_secs_f64();
    let compress_peak = sys::peak_rss_bytes();
    let tokens = text_source(&a.data).tokens(ckpt.require_tokenizer()?)?;
    let opts = PerplexityOptions {
        seq_len: a.seq_len,
        max_windows: Some(a.max_windows),
    };
    let dense = measure(ui, &ckpt, &tokens, &opts, "dense")?;
    let back = Checkpoint::open(&out_dir)?;
    let comp = measure(ui, &back, &tokens, &opts, "compressed")?;
    if ui.json {
        println!(
            "{}",
            json!({
                "recipe": pipeline.recipe(), "label": report.label, "model": a.model,
                "data": a.data, "windows": a.max_windows, "seq_len": a.seq_len,
                "compress_s": compress_s, "compress_stages": report.stages,
                "compress_peak_rss_bytes": compress_peak,
                "dense": dense, "compressed": comp,
            })
        );
        return Ok(());
    }
    let mib = |b: Option<u64>| {
        b.map_or("n/a".into(), |b| {
            format!("{:.0}", b as f64 / (1 << 20) as f64)
        })
    };
    let ratio = |x: f64, y: f64| {
        if y > 0.0 {
            format!("{:.3}", x / y)
        } else {
            "n/a".into()
        }
    };
    println!("bench: {} on {}", report.label, a.model.display());
    println!(
        "compress: {compress_s:.1} s, peak RSS {} MiB ({})",
        mib(compress_peak),
        report
            .stages
            .iter()
            .map(|s| format!("{} {:.1} s", s.stage, s.seconds))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!();
    println!(
        "| {} windows x {} tokens of {} | dense | compressed | compressed / dense |",
        a.max_windows, a.seq_len, a.data
    );
    println!("|---|---:|---:|---:|");
    println!(
        "| tensor bytes (MB) | {:.1} | {:.1} | {} |",
        dense.bytes as f64 / 1e6,
        comp.bytes as f64 / 1e6,
        ratio(comp.bytes as f64, dense.bytes as f64)
    );
    println!(
        "| decoder linear params | {} | {} | {} |",
        dense.linear_params,
        comp.linear_params,
        ratio(comp.linear_params as f64, dense.linear_params as f64)
    );
    println!(
        "| perplexity | {:.3} | {:.3} | {} |",
        dense.ppl,
        comp.ppl,
        ratio(comp.ppl, dense.ppl)
    );
    println!(
        "| tokens/s | {:.0} | {:.0} | {} |",
        dense.tokens_per_s,
        comp.tokens_per_s,
        ratio(comp.tokens_per_s, dense.tokens_per_s)
    );
    println!(
        "| eval peak RSS (MiB) | {} | {} | {} |",
        mib(dense.peak_rss_bytes),
        mib(comp.peak_rss_bytes),
        match (dense.peak_rss_bytes, comp.peak_rss_bytes) {
            (Some(d), Some(c)) => ratio(c as f64, d as f64),
            _ => "n/a".into(),
        }
    );
    Ok(())
}

#[derive(Args)]
pub struct ReportArgs {
    /// The original model: the dense point of the table and the plot.
    pub model: PathBuf,
    /// Compressed output folders (from `compress`) to evaluate and compare.
    pub runs: Vec<PathBuf>,
    /// Where report.md, report.json, plot.svg and plot.png are written.
    #[arg(long)]
    pub out_dir: PathBuf,
    /// Evaluation windows.
    #[arg(long, default_value_t = 20)]
    pub max_windows: usize,
    /// Tokens per evaluation window.
    #[arg(long, default_value_t = 2048)]
    pub seq_len: usize,
    /// Evaluation text (as `eval --data`).
    #[arg(long, default_value = "wikitext2")]
    pub data: String,
}

/// A label for a compressed folder from its manifest's method record.
fn label_of(method: &serde_json::Value) -> String {
    if let Some(l) = method.get("label").and_then(|l| l.as_str()) {
        return l.to_string();
    }
    let name = method
        .get("name")
        .and_then(|n| n.as_str())
        .unwrap_or("compressed");
    let detail = ["ratio", "pattern", "budget_bytes"].iter().find_map(|k| {
        method
            .get(*k)
            .filter(|v| !v.is_null())
            .map(|v| (*k, v.clone()))
    });
    let scope = match method.get("scope").and_then(|s| s.as_str()) {
        Some(s) if s != "mlp" => format!(" {s}"),
        _ => String::new(),
    };
    match detail {
        Some(("budget_bytes", v)) => format!("{name} {:.0}MB", v.as_f64().unwrap_or(0.0) / 1e6),
        Some(("pattern", serde_json::Value::String(p))) if p == "unstructured" => {
            let s = method
                .get("sparsity")
                .and_then(|s| s.as_f64())
                .unwrap_or(0.5);
            format!("{name} {:.0}%{scope}", 100.0 * s)
        }
        Some(("pattern", serde_json::Value::String(p))) => format!("{name} {p}{scope}"),
        Some((_, serde_json::Value::String(s))) => format!("{name} {s}"),
        Some((_, v)) => format!("{name} {v}"),
        None => name.to_string(),
    }
}

/// A key that changes when the evaluated files or the protocol change.
fn cache_key(ckpt: &Checkpoint, a: &ReportArgs) -> String {
    let file = if ckpt.manifest.is_some() {
        ckpt.path.join(TENSORS)
    } else {
        ckpt.path.clone()
    };
    let meta = std::fs::metadata(&file).ok();
    let mtime = meta
        .as_ref()
        .and_then(|m| m.modified().ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    format!(
        "{}|{}|{}|{}|{}|{}",
        std::fs::canonicalize(&file).unwrap_or(file).display(),
        meta.map_or(0, |m| m.len()),
        mtime,
        a.data,
        a.max_windows,
        a.seq_len
    )
}

/// `report MODEL RUN...`: evaluate the dense model and every run (cached in the output folder),
/// then write the Markdown table, the JSON and the plot, and print the table.
pub fn report(ui: &Ui, a: ReportArgs) -> CliResult {
    std::fs::create_dir_all(&a.out_dir).map_err(|source| IoError::Io {
        path: a.out_dir.clone(),
        source,
    })?;
    let cache_path = a.out_dir.join("evals.json");
    let mut cache: BTreeMap<String, RunResult> = std::fs::read(&cache_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let dense_ckpt = Checkpoint::open(&a.model)?;
    let tokens = text_source(&a.data).tokens(dense_ckpt.require_tokenizer()?)?;
    let opts = PerplexityOptions {
        seq_len: a.seq_len,
        max_windows: Some(a.max_windows),
    };
    let mut runs = Vec::new();
    let paths: Vec<(PathBuf, bool)> = std::iter::once((a.model.clone(), true))
        .chain(a.runs.iter().map(|p| (p.clone(), false)))
        .collect();
    for (path, dense) in paths {
        let ckpt = if dense {
            None
        } else {
            Some(Checkpoint::open(&path)?)
        };
        let ckpt = ckpt.as_ref().unwrap_or(&dense_ckpt);
        let label = if dense {
            "dense".to_string()
        } else {
            ckpt.manifest
                .as_ref()
                .map_or_else(|| "dense export".into(), |m| label_of(&m.method))
        };
        let key = cache_key(ckpt, &a);
        let r = match cache.get(&key) {
            Some(r) => RunResult { label, ..r.clone() },
            None => {
                let m = measure(ui, ckpt, &tokens, &opts, &label)?;
                if !ui.quiet {
                    eprintln!("{label}: ppl {:.3}, {:.1} MB", m.ppl, m.bytes as f64 / 1e6);
                }
                RunResult {
                    label,
                    path: path.display().to_string(),
                    bytes: m.bytes,
                    linear_params: m.linear_params,
                    ppl: m.ppl,
                    tokens_per_s: m.tokens_per_s,
                    compress_s: None,
                    dense,
                }
            }
        };
        cache.insert(key, r.clone());
        write_bytes_atomic(&cache_path, &serde_json::to_vec_pretty(&cache)?)?;
        runs.push(r);
    }
    let report = Report {
        model: a.model.display().to_string(),
        data: a.data.clone(),
        windows: a.max_windows,
        seq_len: a.seq_len,
        runs,
    };
    let md = report.to_markdown();
    write_bytes_atomic(&a.out_dir.join("report.md"), md.as_bytes())?;
    write_bytes_atomic(
        &a.out_dir.join("report.json"),
        &serde_json::to_vec_pretty(&report)?,
    )?;
    write_bytes_atomic(&a.out_dir.join("plot.svg"), report.plot_svg().as_bytes())?;
    let png = report.plot_png().map_err(|source| IoError::Io {
        path: a.out_dir.join("plot.png"),
        source,
    })?;
    write_bytes_atomic(&a.out_dir.join("plot.png"), &png)?;
    if ui.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{md}");
        println!(
            "\nreport: {0}/report.md, {0}/report.json, plot: {0}/plot.svg, {0}/plot.png",
            a.out_dir.display()
        );
    }
    Ok(())
}
