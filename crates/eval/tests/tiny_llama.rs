//! A tiny random Llama written as safetensors (+ config.json) and as GGUF: the runtime must
//! give the logits of an independent, naive f64 implementation of the HF Llama forward, and
//! both loaders must agree.

use llm_compress_core::rng::SplitMix64;
use llm_compress_eval::testing::*;
use llm_compress_eval::Model;
use llm_compress_tensor_io::Checkpoint;

/// Naive f64 Llama forward (HF semantics: rotate_half RoPE, GQA, SwiGLU), logits `[T][V]`.
fn naive_logits(w: &Weights, tokens: &[u32], tied: bool) -> Vec<Vec<f64>> {
    let get = |n: &str| &w[n].1;
    let mv = |m: &[f32], rows: usize, cols: usize, x: &[f64]| -> Vec<f64> {
        (0..rows)
            .map(|i| (0..cols).map(|j| m[i * cols + j] as f64 * x[j]).sum())
            .collect()
    };
    let norm = |x: &[f64], g: &[f32]| -> Vec<f64> {
        let ms = x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64;
        let r = 1.0 / (ms + EPS).sqrt();
        x.iter().zip(g).map(|(v, g)| v * r * *g as f64).collect()
    };
    let rope = |v: &mut [f64], pos: usize| {
        for h in 0..v.len() / HD {
            for i in 0..HD / 2 {
                let inv = 1.0 / THETA.powf(2.0 * i as f64 / HD as f64);
                let (c, s) = ((pos as f64 * inv).cos(), (pos as f64 * inv).sin());
                let (a, b) = (v[h * HD + i], v[h * HD + i + HD / 2]);
                v[h * HD + i] = a * c - b * s;
                v[h * HD + i + HD / 2] = b * c + a * s;
            }
        }
    };
    let t = tokens.len();
    let emb = get("model.embed_tokens.weight");
    let mut hs: Vec<Vec<f64>> = tokens
        .iter()
        .map(|&tk| (0..H).map(|i| emb[tk as usize * H + i] as f64).collect())
        .collect();
    for l in 0..L {
        let p = format!("model.layers.{l}.");
        let xs: Vec<Vec<f64>> = hs
            .iter()
            .map(|h| norm(h, get(&format!("{p}input_layernorm.weight"))))
            .collect();
        let mut qs = Vec::new();
        let mut ks = Vec::new();
        let mut vs = Vec::new();
        for (pos, x) in xs.iter().enumerate() {
            let mut q = mv(get(&format!("{p}self_attn.q_proj.weight")), NH * HD, H, x);
            let mut k = mv(get(&format!("{p}self_attn.k_proj.weight")), NKV * HD, H, x);
            rope(&mut q, pos);
            rope(&mut k, pos);
            qs.push(q);
            ks.push(k);
            vs.push(mv(
                get(&format!("{p}self_attn.v_proj.weight")),
                NKV * HD,
                H,
                x,
            ));
        }
        for i in 0..t {
            let mut att = vec![0.0; NH * HD];
            for h in 0..NH {
                let kv = h / (NH / NKV);
                let scores: Vec<f64> = (0..=i)
                    .map(|j| {
                        (0..HD)
                            .map(|d| qs[i][h * HD + d] * ks[j][kv * HD + d])
                            .sum::<f64>()
                            / (HD as f64).sqrt()
                    })
                    .collect();
                let mx = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = scores.iter().map(|s| (s - mx).exp()).collect();
                let z: f64 = e.iter().sum();
                for d in 0..HD {
                    att[h * HD + d] = (0..=i).map(|j| e[j] / z * vs[j][kv * HD + d]).sum();
                }
            }
            let o = mv(
                get(&format!("{p}self_attn.o_proj.weight")),
                H,
                NH * HD,
                &att,
            );
            hs[i].iter_mut().zip(&o).for_each(|(a, b)| *a += b);
        }
        for h in hs.iter_mut() {
            let x = norm(h, get(&format!("{p}post_attention_layernorm.weight")));
            let g = mv(get(&format!("{p}mlp.gate_proj.weight")), F, H, &x);
            let u = mv(get(&format!("{p}mlp.up_proj.weight")), F, H, &x);
            let a: Vec<f64> = g
                .iter()
                .zip(&u)
                .map(|(g, u)| g / (1.0 + (-g).exp()) * u)
                .collect();
            let d = mv(get(&format!("{p}mlp.down_proj.weight")), H, F, &a);
            h.iter_mut().zip(&d).for_each(|(a, b)| *a += b);
        }
    }
    let head = if tied {
        get("model.embed_tokens.weight")
    } else {
        get("lm_head.weight")
    };
    hs.iter()
        .map(|h| mv(head, V, H, &norm(h, get("model.norm.weight"))))
        .collect()
}

fn assert_logits_close(model: &Model, reference: &[Vec<f64>], tokens: &[u32], tol: f64) {
    let lg = model.logits(tokens).unwrap();
    let mut worst = 0.0f64;
    for (t, row) in reference.iter().enumerate() {
        for (v, r) in row.iter().enumerate() {
            worst = worst.max((lg[(v, t)] as f64 - r).abs());
        }
    }
    assert!(worst < tol, "max |logit - reference| = {worst} >= {tol}");
}

const TOKENS: [u32; 12] = [1, 5, 63, 0, 17, 17, 42, 8, 33, 2, 60, 9];

#[test]
fn runtime_matches_naive_reference_untied() {
    let dir = tempfile::tempdir().unwrap();
    let w = random_weights(11, false);
    write_tiny_safetensors(dir.path(), &w, false).unwrap();
    let ckpt = Checkpoint::open(dir.path()).unwrap();
    let model = Model::load(&ckpt).unwrap();
    // f32 runtime against f64 reference, logits of magnitude ~10: 1e-3 absolute.
    assert_logits_close(&model, &naive_logits(&w, &TOKENS, false), &TOKENS, 1e-3);
}

#[test]
fn runtime_matches_naive_reference_tied() {
    let dir = tempfile::tempdir().unwrap();
    let w = random_weights(12, true);
    write_tiny_safetensors(dir.path(), &w, true).unwrap();
    let ckpt = Checkpoint::open(&dir.path().join("model.safetensors")).unwrap();
    let model = Model::load(&ckpt).unwrap();
    assert!(model.lm_head.is_none());
    assert_logits_close(&model, &naive_logits(&w, &TOKENS, true), &TOKENS, 1e-3);
}

#[test]
fn window_nll_equals_log_softmax_of_logits() {
    let dir = tempfile::tempdir().unwrap();
    let w = random_weights(13, false);
    write_tiny_safetensors(dir.path(), &w, false).unwrap();
    let model = Model::load(&Checkpoint::open(dir.path()).unwrap()).unwrap();
    let reference = naive_logits(&w, &TOKENS, false);
    let mut want = 0.0;
    for t in 0..TOKENS.len() - 1 {
        let row = &reference[t];
        let mx = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let lse = row.iter().map(|z| (z - mx).exp()).sum::<f64>().ln() + mx;
        want += lse - row[TOKENS[t + 1] as usize];
    }
    let (got, n) = model.window_nll(&TOKENS).unwrap();
    assert_eq!(n, TOKENS.len() - 1);
    assert!((got - want).abs() < 1e-3 * n as f64, "{got} vs {want}");
}

#[test]
fn out_of_range_token_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let w = random_weights(14, true);
    write_tiny_safetensors(dir.path(), &w, true).unwrap();
    let model = Model::load(&Checkpoint::open(dir.path()).unwrap()).unwrap();
    assert!(model.logits(&[1, 2, V as u32]).is_err());
}

#[test]
fn blocked_attention_matches_reference_past_one_query_block() {
    // 300 tokens span three query blocks of the blocked causal attention.
    let dir = tempfile::tempdir().unwrap();
    let w = random_weights(15, true);
    write_tiny_safetensors(dir.path(), &w, true).unwrap();
    let model = Model::load(&Checkpoint::open(dir.path()).unwrap()).unwrap();
    let mut rng = SplitMix64::new(5);
    let tokens: Vec<u32> = (0..300).map(|_| rng.below(V as u64) as u32).collect();
    assert_logits_close(&model, &naive_logits(&w, &tokens, true), &tokens, 2e-3);
}

#[test]
fn gguf_and_safetensors_loaders_give_the_same_logits() {
    use llm_compress_tensor_io::dequant::GgmlType;
    use llm_compress_tensor_io::gguf::GgufWriter;
    use llm_compress_tensor_io::ModelConfig;
    for tied in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let w = random_weights(16, tied);
        write_tiny_safetensors(dir.path(), &w, tied).unwrap();
        let st = Model::load(&Checkpoint::open(dir.path()).unwrap()).unwrap();
        // The same weights as GGUF: llama.cpp names, dims innermost first, q/k rows permuted
        // into llama.cpp's RoPE order (the loader must undo it).
        let cfg =
            ModelConfig::from_hf_json(&config_json(tied), std::path::Path::new("config.json"))
                .unwrap();
        let mut gw = GgufWriter::new();
        gw.add_model_config(&cfg).unwrap();
        for (name, (shape, data)) in &w {
            gw.add_hf_tensor(&cfg, name, shape, GgmlType::F32, data)
                .unwrap();
        }
        let gpath = dir.path().join("tiny.gguf");
        gw.write(&gpath).unwrap();
        let gg = Model::load(&Checkpoint::open(&gpath).unwrap()).unwrap();
        assert_eq!(gg.config.tie_word_embeddings, tied);
        let (a, b) = (st.logits(&TOKENS).unwrap(), gg.logits(&TOKENS).unwrap());
        // Same f32 weights after the round trip of the permutation: bit-identical logits.
        assert_eq!(a, b, "tied = {tied}");
    }
}
