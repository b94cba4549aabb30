//! `compress --then-lsaq` on bad combinations: a clear message, exit code 3, never a panic.

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
fn then_lsaq_after_an_unsupported_method_or_without_budget_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_safetensors(dir.path(), &random_weights(3, false), false).unwrap();
    let model = dir.path().to_str().unwrap();
    let out = dir.path().join("out");
    let out = out.to_str().unwrap();
    for (extra, needle) in [
        (
            &["--method", "basis-select", "--then-lsaq", "--budget", "1GB"][..],
            "--then-lsaq follows",
        ),
        (&["--method", "dass", "--then-lsaq"][..], "--budget"),
        (
            &[
                "--method",
                "basis-sharing",
                "--then-lsaq",
                "--budget",
                "1GB",
                "--quant-group-size",
                "48",
            ][..],
            "group size",
        ),
    ] {
        let mut args = vec!["compress", model, "--out", out];
        args.extend_from_slice(extra);
        let (code, err) = run(&args);
        assert_eq!(code, 3, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}
