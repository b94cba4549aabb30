//! What a model or compressed folder holds: the method (or recipe) that made it and, for every
//! decoder linear, its representation, parameters and bytes.
//!
//! ```text
//! cargo run --release --example inspect -- [MODEL_OR_FOLDER]
//! ```
use llm_compress::prelude::*;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .map_or_else(llm_compress::default_model_path, Into::into);
    let ckpt = Checkpoint::open(&path)?;
    let cfg = &ckpt.config;
    println!(
        "{}: {} layers, hidden {}, {} decoder linear parameters dense",
        path.display(),
        cfg.num_layers,
        cfg.hidden_size,
        cfg.linear_params()
    );
    if let Some(m) = &ckpt.manifest {
        let label = m.method.get("label").or_else(|| m.method.get("name"));
        println!(
            "compressed by {}",
            label.map_or("?".into(), |v| v.to_string())
        );
    }
    let (mut params, mut bytes) = (0, 0);
    for l in 0..cfg.num_layers {
        let row: Vec<String> = LinearKind::ALL
            .iter()
            .map(|&kind| -> Result<String, Box<dyn std::error::Error>> {
                let lin = ckpt.linear(LinearId { layer: l, kind })?;
                params += lin.param_count();
                bytes += lin.storage_bytes();
                Ok(format!("{}={}", kind.short(), lin.describe()))
            })
            .collect::<Result<_, _>>()?;
        println!("layer {l:>2}: {}", row.join(" "));
    }
    // A shared basis is counted once per layer that reads it here; `llm-compress inspect`
    // counts it once.
    println!(
        "decoder linears: {params} parameters, {:.1} MB in memory",
        bytes as f64 / 1e6
    );
    Ok(())
}
