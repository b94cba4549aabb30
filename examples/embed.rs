//! Use compressed layers inside your own engine. Ask the checkpoint for each decoder linear as a
//! `Linear` (low-rank, shared, sparse, quantized or dense: whatever the folder stores) and call
//! `forward`/`apply`, which runs the stored form directly. The "engine" here is a SwiGLU MLP
//! block written by hand; its output is checked against the same block computed with plain
//! loops over the materialised dense weights.
//!
//! ```text
//! cargo run --release --example embed -- COMPRESSED_FOLDER [LAYER]
//! ```
use llm_compress::core::Mat;
use llm_compress::prelude::*;

/// The engine's own matmul, over dense weights: `y = W x`.
fn dense_matmul(w: &Mat<f32>, x: &Mat<f32>) -> Mat<f32> {
    Mat::from_fn(w.nrows(), x.ncols(), |i, t| {
        (0..w.ncols()).map(|j| w[(i, j)] * x[(j, t)]).sum()
    })
}

fn silu(v: f32) -> f32 {
    v / (1.0 + (-v).exp())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let dir = args
        .get(1)
        .ok_or("usage: embed COMPRESSED_FOLDER [LAYER]")?;
    let ckpt = Checkpoint::open(dir.as_ref())?;
    let layer: usize = args.get(2).map_or(Ok(0), |s| s.parse())?;
    if layer >= ckpt.config.num_layers {
        return Err(format!("layer {layer} >= {} layers", ckpt.config.num_layers).into());
    }
    let linear = |kind| ckpt.linear(LinearId { layer, kind });
    let (gate, up, down) = (
        linear(LinearKind::Gate)?,
        linear(LinearKind::Up)?,
        linear(LinearKind::Down)?,
    );

    // Inputs: token embeddings of a prompt, RMS-normalised with the layer's MLP norm.
    let ids = ckpt
        .require_tokenizer()?
        .encode("Compressed layers run in any engine.");
    let emb = ckpt.tensor("model.embed_tokens.weight")?;
    let norm = ckpt.tensor(&format!(
        "model.layers.{layer}.post_attention_layernorm.weight"
    ))?;
    let d = ckpt.config.hidden_size;
    let x = Mat::from_fn(d, ids.len(), |i, t| {
        let row = &emb.data[ids[t] as usize * d..][..d];
        let rms = (row.iter().map(|v| v * v).sum::<f32>() / d as f32 + 1e-5).sqrt();
        row[i] / rms * norm.data[i]
    });

    // The engine's MLP block with the stored linears: y = down(silu(gate x) * up x).
    let (g, u) = (gate.apply(x.as_ref()), up.apply(x.as_ref()));
    let h = Mat::from_fn(g.nrows(), g.ncols(), |i, t| silu(g[(i, t)]) * u[(i, t)]);
    let y = down.apply(h.as_ref());

    // The same block from dense copies, for comparison.
    let (gd, ud) = (
        dense_matmul(&gate.to_dense(), &x),
        dense_matmul(&up.to_dense(), &x),
    );
    let hd = Mat::from_fn(gd.nrows(), gd.ncols(), |i, t| silu(gd[(i, t)]) * ud[(i, t)]);
    let yd = dense_matmul(&down.to_dense(), &hd);
    let (mut err, mut scale) = (0f32, 0f32);
    for t in 0..y.ncols() {
        for i in 0..y.nrows() {
            err = err.max((y[(i, t)] - yd[(i, t)]).abs());
            scale = scale.max(yd[(i, t)].abs());
        }
    }
    for (name, lin) in [("gate", &gate), ("up", &up), ("down", &down)] {
        let (m, n) = lin.shape();
        println!(
            "layer {layer} {name:<4} {:<28} {:>9} bytes stored, {:>9} dense f32",
            lin.describe(),
            lin.storage_bytes(),
            4 * m * n
        );
    }
    println!(
        "MLP block on {} tokens: max |stored - dense| = {err:.2e} (output scale {scale:.2})",
        ids.len()
    );
    if err > 1e-3 * scale.max(1.0) {
        return Err("the stored forward disagrees with the dense one".into());
    }
    Ok(())
}
