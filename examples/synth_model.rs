//! Write a 7B-shaped test checkpoint (sharded bf16 safetensors + index + `config.json`) whose
//! random weights have a trained model's singular-value profile; or measure that profile.
//! It is a test input, not a model: perplexity means nothing on it. See docs/scale.md.
//!
//! ```text
//! cargo run --release --example synth_model -- --shape llama-7b|mistral-7b|tiny --out DIR \
//!     [--layers N] [--seed S] [--layers-per-shard K] [--quiet]
//! cargo run --release --example synth_model -- --measure-profile MODEL_PATH
//! ```
use llm_compress::synth::{
    synth_config, write_synthetic_checkpoint, SingularProfile, SynthEvent, SynthOptions, SynthShape,
};
use llm_compress::tensor_io::{Checkpoint, ModelConfig};
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: synth_model --shape llama-7b|mistral-7b|tiny --out DIR [--layers N] [--seed S] [--layers-per-shard K] [--quiet]
       synth_model --measure-profile MODEL_PATH";

enum Mode {
    Generate {
        shape: SynthShape,
        cfg: ModelConfig,
        out: PathBuf,
        opts: SynthOptions,
        quiet: bool,
    },
    Measure(PathBuf),
    Help,
}

fn number<T: std::str::FromStr>(flag: &str, value: Option<String>) -> Result<T, String> {
    let v = value.ok_or_else(|| format!("{flag} needs a value"))?;
    v.parse()
        .map_err(|_| format!("{flag}: `{v}` is not a non-negative integer"))
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Mode, String> {
    let mut args = args.into_iter();
    let (mut shape, mut out, mut layers, mut measure) = (None, None, None, None);
    let mut opts = SynthOptions::default();
    let mut quiet = false;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--shape" => {
                let v = args.next().ok_or("--shape needs a value")?;
                shape = Some(SynthShape::parse(&v).ok_or_else(|| {
                    format!("--shape: unknown shape `{v}`; known: llama-7b, mistral-7b, tiny")
                })?);
            }
            "--out" => out = Some(PathBuf::from(args.next().ok_or("--out needs a folder")?)),
            "--layers" => layers = Some(number::<usize>("--layers", args.next())?),
            "--seed" => opts.seed = number("--seed", args.next())?,
            "--layers-per-shard" => {
                let k: usize = number("--layers-per-shard", args.next())?;
                if k == 0 {
                    return Err("--layers-per-shard must be at least 1".into());
                }
                opts.layers_per_shard = Some(k);
            }
            "--quiet" => quiet = true,
            "--measure-profile" => {
                measure = Some(PathBuf::from(
                    args.next().ok_or("--measure-profile needs a model path")?,
                ))
            }
            "-h" | "--help" => return Ok(Mode::Help),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    if let Some(model) = measure {
        if shape.is_some() || out.is_some() {
            return Err("--measure-profile takes no --shape or --out".into());
        }
        return Ok(Mode::Measure(model));
    }
    let shape = shape.ok_or("--shape is required")?;
    Ok(Mode::Generate {
        shape,
        cfg: synth_config(shape, layers).map_err(|e| e.to_string())?,
        out: out.ok_or("--out is required")?,
        opts,
        quiet,
    })
}

fn measure(model: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    let ckpt = Checkpoint::open(model)?;
    let profile = SingularProfile::measure(&ckpt, |done, total| {
        eprint!("\rmeasured layer {done}/{total}");
    })?;
    eprintln!();
    let name = model.file_name().map_or_else(
        || model.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let command = format!("cargo run --release --example synth_model -- --measure-profile {name}");
    let desc = format!(
        "{name} ({} layers, hidden {})",
        ckpt.config.num_layers, ckpt.config.hidden_size
    );
    print!("{}", profile.to_rust_source(&command, &desc));
    Ok(())
}

fn generate(
    shape: SynthShape,
    cfg: &ModelConfig,
    out: &std::path::Path,
    opts: &SynthOptions,
    quiet: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    if !quiet {
        println!(
            "{} shape: {} layers, hidden {}, MLP {}, {} heads / {} kv heads, vocab {}; seed {}",
            shape.name(),
            cfg.num_layers,
            cfg.hidden_size,
            cfg.intermediate_size,
            cfg.num_heads,
            cfg.num_kv_heads,
            cfg.vocab_size,
            opts.seed
        );
    }
    let report = write_synthetic_checkpoint(out, cfg, opts, |event| {
        if quiet {
            return;
        }
        match event {
            SynthEvent::Layer {
                layer,
                layers,
                elapsed,
            } => println!(
                "  layer {}/{layers} ({:.0} s)",
                layer + 1,
                elapsed.as_secs_f64()
            ),
            SynthEvent::Shard {
                index,
                count,
                file,
                bytes,
                elapsed,
            } => println!(
                "shard {}/{count} {file}: {:.2} GB ({:.0} s)",
                index + 1,
                *bytes as f64 / 1e9,
                elapsed.as_secs_f64()
            ),
        }
    })?;
    if !quiet {
        println!(
            "wrote {} tensors, {:.2} GB in {} shard(s) to {} in {:.1} s",
            report.tensors,
            report.total_bytes as f64 / 1e9,
            report.shards,
            out.display(),
            report.elapsed.as_secs_f64()
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    llm_compress::tune_allocator();
    let mode = match parse_args(std::env::args().skip(1)) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = match mode {
        Mode::Help => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Mode::Measure(model) => measure(&model),
        Mode::Generate {
            shape,
            cfg,
            out,
            opts,
            quiet,
        } => generate(shape, &cfg, &out, &opts, quiet),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
