//! A pipeline built in code: DaSS 4:8 on the MLP and SVD-LLM 0.2 on attention in one
//! calibration walk, then LSAQ to a byte budget; progress on stderr, the compact folder written
//! and reloaded, its size and perplexity printed.
//!
//! ```text
//! cargo run --release --example custom_pipeline -- OUT_DIR [MODEL] [CALIB_WINDOWS] [EVAL_WINDOWS]
//! ```
use llm_compress::pipeline::{Pipeline, Recipe, Step};
use llm_compress::prelude::*;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let out_dir = PathBuf::from(
        args.get(1)
            .ok_or("usage: custom_pipeline OUT_DIR [MODEL]")?,
    );
    let model = args
        .get(2)
        .map_or_else(llm_compress::default_model_path, Into::into);
    let mut recipe = Recipe::new(vec![
        Step::dass("4:8"),                  // the MLP: gate, up, down
        Step::svd_llm(0.2).on("attention"), // q, k, v, o
        Step::lsaq("110MB"),                // then int4/int8/f16 per layer to fit 110 MB
    ]);
    recipe.calibration.windows = args.get(3).map_or(Ok(16), |s| s.parse())?;
    println!("{}", recipe.to_toml()?);

    let ckpt = Checkpoint::open(&model)?;
    let pipeline = Pipeline::new(recipe)?;
    let (out, report) = pipeline.run(&ckpt, |p| {
        if p.done == p.total {
            eprintln!("{} done ({} layers)", p.stage, p.total)
        }
    })?;
    pipeline.write_compact(&ckpt, &out, &report, &out_dir)?;

    let written = std::fs::metadata(out_dir.join("model.safetensors"))?.len();
    let back = Checkpoint::open(&out_dir)?;
    let model = Model::load(&back)?;
    let text = TextSource::WikiText2Test.tokens(back.require_tokenizer()?)?;
    let eval = PerplexityOptions {
        max_windows: Some(args.get(4).map_or(Ok(4), |s| s.parse())?),
        ..Default::default()
    };
    let ppl = perplexity(&model, &text, &eval, |_| {})?.ppl;
    println!(
        "{}: {:.1} MB, ppl {ppl:.2}",
        report.label,
        written as f64 / 1e6
    );
    for s in &report.stages {
        println!("  {:<10} {:.1} s", s.stage, s.seconds);
    }
    Ok(())
}
