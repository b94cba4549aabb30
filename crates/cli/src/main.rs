//! `llm-compress`: inspect, evaluate and compress Llama-family checkpoints.
//!
//! Exit codes: 0 success; 1 a failure while running (numerical, I/O while writing);
//! 2 bad command line; 3 bad input (a malformed, truncated or unsupported model, data or recipe
//! file, or an option value out of range).

mod basis_select;
mod basis_sharing;
mod commands;
mod lsaq;
mod pipeline;
mod sparsity;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "llm-compress",
    version,
    about = "Compress large language models on a CPU",
    after_help = "Exit codes: 0 success; 1 failure while running (numerics, I/O while writing); \
                  2 bad command line; 3 bad input (malformed, truncated or unsupported model, \
                  data or recipe file, or an option value out of range)."
)]
struct Cli {
    /// No progress bars or logs on stderr (errors are still printed).
    #[arg(long, short, global = true)]
    quiet: bool,
    /// Print one JSON object on stdout instead of a human-readable report.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Architecture, layers, parameter counts by kind and dtypes of a model.
    Inspect(commands::InspectArgs),
    /// Perplexity and throughput of a model (or of a compressed output folder).
    Eval(commands::EvalArgs),
    /// Compress a model and write the result (compact folder, or dense with --dense).
    Compress(Box<commands::CompressArgs>),
    /// Compress with a recipe, then evaluate the dense and the compressed model in one run:
    /// compress time and peak RSS, perplexity, tokens/s, bytes, side by side.
    Bench(pipeline::BenchArgs),
    /// Evaluate the dense model and compressed folders; write a Markdown table, JSON and a plot
    /// (SVG and PNG) of perplexity against size.
    Report(pipeline::ReportArgs),
}

fn main() -> ExitCode {
    llm_compress::tune_allocator();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let filter = if cli.quiet { "error" } else { "warn" };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LLM_COMPRESS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter)),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let ui = commands::Ui {
        quiet: cli.quiet,
        json: cli.json,
    };
    let result = match cli.command {
        Command::Inspect(a) => commands::inspect(&ui, a),
        Command::Eval(a) => commands::eval(&ui, a),
        Command::Compress(a) => commands::compress(&ui, *a),
        Command::Bench(a) => pipeline::bench(&ui, a),
        Command::Report(a) => pipeline::report(&ui, a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            let mut src = std::error::Error::source(&*e);
            while let Some(s) = src {
                eprintln!("  caused by: {s}");
                src = s.source();
            }
            ExitCode::from(commands::exit_code(&*e))
        }
    }
}
