//! Compress SmolLM2 with SVD-LLM at ratio 0.2 and compare perplexity before and after.
//!
//! ```text
//! cargo run --release --example quickstart -- [MODEL] [CALIB_WINDOWS] [EVAL_WINDOWS]
//! ```
use llm_compress::prelude::*;
use llm_compress::{Pipeline, Recipe, Step};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let model = args
        .get(1)
        .map_or_else(llm_compress::default_model_path, Into::into);
    let mut recipe = Recipe::new(vec![Step::svd_llm(0.2)]);
    recipe.calibration.windows = args.get(2).map_or(Ok(16), |s| s.parse())?;
    let eval = PerplexityOptions {
        max_windows: Some(args.get(3).map_or(Ok(4), |s| s.parse())?),
        ..Default::default()
    };
    let ckpt = Checkpoint::open(&model)?;
    let text = TextSource::WikiText2Test.tokens(ckpt.require_tokenizer()?)?;
    let before = perplexity(&Model::load(&ckpt)?, &text, &eval, |_| {})?;
    let (out, report) = Pipeline::new(recipe)?.run(&ckpt, |_| {})?;
    let after = perplexity(&out.into_model(), &text, &eval, |_| {})?;
    let kept = report.linear_params_after as f64 / report.linear_params_before as f64;
    println!("dense        ppl {:.2}", before.ppl);
    println!(
        "svd-llm 0.2  ppl {:.2} ({:.1}% of the linear parameters)",
        after.ppl,
        100.0 * kept
    );
    Ok(())
}
