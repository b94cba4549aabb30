//! The binary on bad inputs: a clear message on stderr and exit code 3, never a panic.

use llm_compress_eval::testing::{config_json, random_weights, write_tiny_safetensors};
use llm_compress_tensor_io::dequant::GgmlType;
use llm_compress_tensor_io::gguf::GgufWriter;
use llm_compress_tensor_io::ModelConfig;
use std::path::Path;
use std::process::Command;

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_llm-compress"))
        .args(args)
        .output()
        .expect("the binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn assert_bad_input(args: &[&str], needle: &str) {
    let (code, _, err) = run(args);
    assert_eq!(code, 3, "exit code for {args:?}; stderr: {err}");
    assert!(err.contains("error:"), "stderr: {err}");
    assert!(
        err.contains(needle),
        "stderr should mention `{needle}`: {err}"
    );
    assert!(!err.contains("panicked"), "panic: {err}");
}

#[test]
fn truncated_safetensors_header() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_safetensors(dir.path(), &random_weights(1, true), true).unwrap();
    let p = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..40]).unwrap();
    let d = dir.path().to_str().unwrap();
    assert_bad_input(&["inspect", d], "truncated");
    assert_bad_input(&["eval", d], "truncated");
}

#[test]
fn gguf_tensor_offset_past_end_of_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = ModelConfig::from_hf_json(&config_json(true), Path::new("config.json")).unwrap();
    let mut gw = GgufWriter::new();
    gw.add_model_config(&cfg).unwrap();
    for (name, (shape, data)) in &random_weights(2, true) {
        gw.add_hf_tensor(&cfg, name, shape, GgmlType::F32, data)
            .unwrap();
    }
    let p = dir.path().join("m.gguf");
    gw.write(&p).unwrap();
    let bytes = std::fs::read(&p).unwrap();
    // Cut the data section short: the last tensors now point past the end of the file.
    std::fs::write(&p, &bytes[..bytes.len() - 4096]).unwrap();
    assert_bad_input(&["inspect", p.to_str().unwrap()], "outside the file");
}

#[test]
fn config_missing_a_field() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_safetensors(dir.path(), &random_weights(3, true), true).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&config_json(true)).unwrap();
    v.as_object_mut().unwrap().remove("num_attention_heads");
    std::fs::write(dir.path().join("config.json"), v.to_string()).unwrap();
    assert_bad_input(
        &["inspect", dir.path().to_str().unwrap()],
        "num_attention_heads",
    );
}

#[test]
fn missing_file_and_bad_arguments() {
    let (code, _, err) = run(&["inspect", "/nonexistent/model.gguf"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("/nonexistent/model.gguf"));
    let (code, _, _) = run(&["compress"]);
    assert_eq!(code, 2, "usage error");
}

#[test]
fn inspect_and_eval_json_on_a_tiny_model() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_safetensors(dir.path(), &random_weights(4, true), true).unwrap();
    let d = dir.path().to_str().unwrap();
    let (code, out, err) = run(&["inspect", d, "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["config"]["num_layers"], 2);
    assert_eq!(v["format"], "safetensors");
}

#[test]
fn basis_sharing_bad_options() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_safetensors(dir.path(), &random_weights(4, true), true).unwrap();
    let d = dir.path().to_str().unwrap();
    let out = dir.path().join("out");
    let o = out.to_str().unwrap();
    let (code, _, err) = run(&[
        "compress",
        d,
        "--method",
        "basis-sharing",
        "--group-size",
        "0",
        "--out",
        o,
    ]);
    assert_eq!(code, 2, "group size 0 is a usage error: {err}");
    assert_bad_input(
        &[
            "compress",
            d,
            "--method",
            "basis-sharing",
            "--share",
            "q,x",
            "--out",
            o,
        ],
        "unknown linear kind",
    );
    assert!(!out.exists());
}

/// `--factor-dtype` belongs to the low-rank methods: with another method it is bad input, before
/// any work; an unknown value is a usage error.
#[test]
fn factor_dtype_outside_low_rank_methods() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_safetensors(dir.path(), &random_weights(4, true), true).unwrap();
    let d = dir.path().to_str().unwrap();
    let out = dir.path().join("out");
    let o = out.to_str().unwrap();
    for method in ["wanda", "basis-sharing", "lsaq"] {
        assert_bad_input(
            &[
                "compress",
                d,
                "--method",
                method,
                "--factor-dtype",
                "f16",
                "--out",
                o,
            ],
            "--factor-dtype applies to",
        );
    }
    let (code, _, err) = run(&[
        "compress",
        d,
        "--method",
        "svd-llm",
        "--factor-dtype",
        "bf16",
        "--out",
        o,
    ]);
    assert_eq!(code, 2, "unknown value: {err}");
    assert!(!out.exists(), "nothing written");
}
