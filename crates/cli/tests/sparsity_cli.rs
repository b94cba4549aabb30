//! `compress --method dass|wanda|magnitude` on bad options: a clear message, exit code 3.

use llm_compress_eval::testing::{random_weights, write_tiny_safetensors};
use std::process::Command;

fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_llm-compress"))
        .args(args)
        .output()
        .expect("the binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_pattern_and_sparsity_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_safetensors(dir.path(), &random_weights(3, false), false).unwrap();
    let model = dir.path().to_str().unwrap();
    let out = dir.path().join("out");
    let out = out.to_str().unwrap();
    for (extra, needle) in [
        (&["--pattern", "4:4"][..], "pattern"),
        (&["--pattern", "two:four"][..], "pattern"),
        (&["--pattern", "2:4", "--sparsity", "0.3"][..], "sparsity"),
        (
            &["--pattern", "unstructured", "--sparsity", "1.5"][..],
            "sparsity",
        ),
    ] {
        let mut args = vec!["compress", model, "--method", "wanda", "--out", out];
        args.extend_from_slice(extra);
        let (code, err) = run(&args);
        assert_eq!(code, 3, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let (code, _) = run(&[
        "compress",
        model,
        "--method",
        "dass",
        "--scope",
        "everything",
        "--out",
        out,
    ]);
    assert_eq!(code, 2, "clap rejects an unknown scope");
}
