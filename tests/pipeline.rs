//! The recipe pipeline on a tiny random Llama: a one-step pipeline is the method itself, a
//! combined pipeline applies each step to its own linears within one walk, and the written
//! folder records the recipe and reloads to the same logits.

use llm_compress::lowrank::{compress_low_rank, CalibrationText, LowRankMethod, LowRankOptions};
use llm_compress::pipeline::{Pipeline, Recipe, Step};
use llm_compress::sparsity::{compress_sparse, PruneScope, SparsityOptions};
use llm_compress_core::rng::SplitMix64;
use llm_compress_core::{Linear, LinearKind, SparsityPattern};
use llm_compress_eval::testing::{random_weights, write_tiny_safetensors, V};
use llm_compress_eval::{CalibrationConfig, DecoderLayer, Model};
use llm_compress_glu_sparsity::PruneMethod;
use llm_compress_tensor_io::Checkpoint;

fn tiny(dir: &std::path::Path) -> Checkpoint {
    write_tiny_safetensors(dir, &random_weights(5, false), false).unwrap();
    Checkpoint::open(dir).unwrap()
}

fn text() -> CalibrationText {
    let mut rng = SplitMix64::new(11);
    CalibrationText::Tokens((0..3000).map(|_| rng.below(V as u64) as u32).collect())
}

fn calib() -> CalibrationConfig {
    CalibrationConfig {
        windows: 3,
        seq_len: 48,
        seed: 2,
    }
}

fn recipe(toml_steps: &str) -> Recipe {
    let c = calib();
    Recipe::from_toml(&format!(
        "[calibration]\nwindows = {}\nseq_len = {}\nseed = {}\n{toml_steps}",
        c.windows, c.seq_len, c.seed
    ))
    .unwrap()
}

fn same(a: &Linear, b: &Linear) -> bool {
    let (x, y) = (a.to_dense(), b.to_dense());
    x.shape() == y.shape()
        && (0..x.nrows())
            .all(|i| (0..x.ncols()).all(|j| x[(i, j)].to_bits() == y[(i, j)].to_bits()))
}

fn low_rank(ckpt: &Checkpoint, kinds: Vec<LinearKind>) -> Vec<DecoderLayer> {
    let mut o = LowRankOptions::new(LowRankMethod::SvdLlm, 0.3);
    o.kinds = kinds;
    o.calibration = calib();
    o.calibration_text = text();
    compress_low_rank(ckpt, &o, |_| {}).unwrap().0.layers
}

#[test]
fn a_one_step_pipeline_is_the_method_itself() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = tiny(dir.path());
    let p = Pipeline::new(recipe("[[step]]\nmethod = \"svd-llm\"\nratio = 0.3"))
        .unwrap()
        .with_calibration_text(text());
    let (out, report) = p.run(&ckpt, |_| {}).unwrap();
    let direct = low_rank(&ckpt, LinearKind::ALL.to_vec());
    for (a, b) in out.layers.iter().zip(&direct) {
        for k in LinearKind::ALL {
            assert!(same(a.linear(k), b.linear(k)), "{k:?}");
        }
    }
    let kept = report.linear_params_after as f64 / report.linear_params_before as f64;
    assert!((0.6..0.75).contains(&kept), "kept {kept}");
}

#[test]
fn combined_steps_share_one_walk_and_touch_only_their_linears() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = tiny(dir.path());
    let p = Pipeline::new(recipe(
        "[[step]]\nmethod = \"wanda\"\npattern = \"2:4\"\nlinears = \"mlp\"\n\
         [[step]]\nmethod = \"svd-llm\"\nratio = 0.3\nlinears = \"attention\"",
    ))
    .unwrap()
    .with_calibration_text(text());
    let mut stages = Vec::new();
    let (out, _) = p
        .run(&ckpt, |e| {
            if stages.last() != Some(&e.stage.to_string()) {
                stages.push(e.stage.to_string())
            }
        })
        .unwrap();
    assert_eq!(stages, vec!["walk"], "one walk for both steps");
    for layer in &out.layers {
        for k in LinearKind::ALL {
            let lin = layer.linear(k);
            match k {
                LinearKind::Gate | LinearKind::Up | LinearKind::Down => {
                    assert!(matches!(lin, Linear::Sparse(_)), "{k:?}")
                }
                _ => assert!(lin.rank().is_some(), "{k:?}"),
            }
        }
    }
    // Layer 0 sees the same inputs in every run: its attention is SVD-LLM's on attention alone,
    // its MLP is Wanda's on the MLP alone.
    let attn = low_rank(
        &ckpt,
        vec![LinearKind::Q, LinearKind::K, LinearKind::V, LinearKind::O],
    );
    let mut so = SparsityOptions::new(
        PruneMethod::Wanda,
        SparsityPattern::NM { zeros: 2, group: 4 },
    );
    so.scope = PruneScope::Mlp;
    so.calibration = calib();
    so.calibration_text = text();
    let mlp = compress_sparse(&ckpt, &so, |_| {}).unwrap().0.layers;
    for k in LinearKind::ALL {
        let reference = match k {
            LinearKind::Gate | LinearKind::Up | LinearKind::Down => &mlp[0],
            _ => &attn[0],
        };
        assert!(same(out.layers[0].linear(k), reference.linear(k)), "{k:?}");
    }
}

#[test]
fn quantizing_pipeline_writes_a_folder_that_records_its_recipe() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = tiny(dir.path());
    let r = recipe(
        "[[step]]\nmethod = \"svd-llm\"\nratio = 0.2\n\
         [[step]]\nmethod = \"lsaq\"\nbudget = \"10MB\"\nladder = \"int8\"",
    );
    let p = Pipeline::new(r.clone())
        .unwrap()
        .with_calibration_text(text());
    let (out, report) = p.run(&ckpt, |_| {}).unwrap();
    let lsaq = report.lsaq.as_ref().expect("the recipe quantizes");
    assert!(lsaq.formats.iter().all(|f| f.name() == "int8"));
    let out_dir = tempfile::tempdir().unwrap();
    p.write_compact(&ckpt, &out, &report, out_dir.path())
        .unwrap();
    let back = Checkpoint::open(out_dir.path()).unwrap();
    let manifest = back.manifest.as_ref().expect("compact folder");
    let recorded: Recipe = serde_json::from_value(manifest.method["recipe"].clone()).unwrap();
    assert_eq!(recorded, r);
    let written = std::fs::metadata(out_dir.path().join("model.safetensors"))
        .unwrap()
        .len() as f64;
    let predicted = lsaq.allocation.bytes as f64;
    // The size model overestimates the header by a few bytes per tensor, which is 4% of this
    // tiny file (0.03% of SmolLM2's, tests/lsaq.rs): never under, and close.
    assert!(
        written <= predicted && written > 0.9 * predicted,
        "{written} vs {predicted}"
    );
    // Quantized values are stored as they are held: identical linears after the reload.
    let reloaded = Model::load(&back).unwrap();
    for (a, b) in out.layers.iter().zip(&reloaded.layers) {
        for k in LinearKind::ALL {
            assert!(same(a.linear(k), b.linear(k)), "{k:?}");
        }
    }
}

#[test]
fn steps_built_in_code_make_the_same_recipe_as_toml() {
    let code = Recipe::new(vec![
        Step::dass("2:4"),
        Step::svd_llm(0.2).on("attention"),
        Step::lsaq("100MB"),
    ]);
    let toml = Recipe::from_toml(
        "[[step]]\nmethod = \"dass\"\n\
         [[step]]\nmethod = \"svd-llm\"\nratio = 0.2\nlinears = \"attention\"\n\
         [[step]]\nmethod = \"lsaq\"\nbudget = \"100MB\"\ngroup_size = 128",
    )
    .unwrap();
    assert_eq!(code, toml);
    assert_eq!(
        code.label(),
        "dass 2:4 + svd-llm 0.2 attention + lsaq 100MB"
    );
}
