//! Every example in examples/ runs on the real model and prints what it promises.
//!
//! `cargo test` builds the examples next to the test binaries (target/<profile>/examples/);
//! these tests run those binaries with small calibration and evaluation sizes.

use std::path::PathBuf;
use std::process::Command;

fn example(name: &str) -> Command {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    let bin = dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} missing: run the whole suite (`cargo test --release`), which builds the examples, or `cargo build --release --examples`",
        bin.display()
    );
    Command::new(bin)
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("example starts");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{cmd:?} failed\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn ppl_after(line_start: &str, text: &str) -> f64 {
    let line = text
        .lines()
        .find(|l| l.starts_with(line_start))
        .unwrap_or_else(|| panic!("no `{line_start}` line in\n{text}"));
    let after = line.split("ppl ").nth(1).expect("a ppl figure");
    after
        .split_whitespace()
        .next()
        .and_then(|v| v.trim_end_matches(',').parse().ok())
        .expect("a number")
}

#[test]
fn quickstart_compresses_and_reports_both_perplexities() {
    let Some(model) = llm_compress_eval::testing::real_model_path() else {
        return;
    };
    let out = run(example("quickstart").arg(&model).args(["2", "1"]));
    let (dense, comp) = (ppl_after("dense", &out), ppl_after("svd-llm 0.2", &out));
    assert!(dense > 5.0 && dense < 40.0, "{out}");
    assert!(comp > dense && comp < 20.0 * dense, "{out}");
    assert!(out.contains("% of the linear parameters"), "{out}");
}

#[test]
fn custom_pipeline_then_embed_and_inspect_its_output() {
    let Some(model) = llm_compress_eval::testing::real_model_path() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let folder: PathBuf = dir.path().join("combined");
    let out = run(example("custom_pipeline")
        .arg(&folder)
        .arg(&model)
        .args(["2", "1"]));
    assert!(
        out.contains("method = \"dass\""),
        "prints its recipe:\n{out}"
    );
    let line = out
        .lines()
        .find(|l| l.contains(" MB, ppl "))
        .unwrap_or_else(|| panic!("{out}"));
    let mb: f64 = line
        .split(": ")
        .nth(1)
        .and_then(|s| s.split(" MB").next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!(mb <= 110.0 && mb > 50.0, "the 110MB budget holds: {line}");
    // The embed example runs the stored (sparse, quantized) MLP in its own code and checks it
    // against the dense block; it exits non-zero on disagreement.
    let emb = run(example("embed").arg(&folder).arg("5"));
    assert!(emb.contains("sparse(4:8"), "{emb}");
    let ins = run(example("inspect").arg(&folder));
    assert_eq!(
        ins.lines().filter(|l| l.starts_with("layer ")).count(),
        30,
        "{ins}"
    );
    assert!(ins.contains("compressed by"), "{ins}");
    let dense = run(example("inspect").arg(&model));
    assert!(dense.contains("q=dense"), "{dense}");
}

/// `synth_model` writes a tiny checkpoint that opens, and refuses bad arguments with exit
/// code 2 and a message naming the problem.
#[test]
fn synth_model_writes_a_checkpoint_and_refuses_bad_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let folder: PathBuf = dir.path().join("tiny");
    let out = run(example("synth_model")
        .args(["--shape", "tiny", "--layers", "3", "--seed", "9", "--out"])
        .arg(&folder));
    assert!(out.contains("wrote 30 tensors"), "{out}");
    assert!(out.contains("shard 1/1"), "{out}");
    let ckpt = llm_compress_tensor_io::Checkpoint::open(&folder).unwrap();
    assert_eq!(ckpt.config.num_layers, 3);
    let quiet = run(example("synth_model")
        .args(["--shape", "tiny", "--quiet", "--out"])
        .arg(&folder));
    assert!(quiet.is_empty(), "--quiet printed:\n{quiet}");
    for (args, says) in [
        (
            vec!["--shape", "gpt-9", "--out", "x"],
            "unknown shape `gpt-9`",
        ),
        (vec!["--shape", "tiny"], "--out is required"),
        (vec!["--out", "x"], "--shape is required"),
        (
            vec!["--shape", "tiny", "--out", "x", "--layers", "-1"],
            "--layers",
        ),
        (
            vec!["--shape", "tiny", "--out", "x", "--layers", "0"],
            "--layers 0",
        ),
        (
            vec!["--shape", "tiny", "--out", "x", "--layers-per-shard", "0"],
            "at least 1",
        ),
        (
            vec!["--shape", "tiny", "--out", "x", "--bogus"],
            "unknown argument `--bogus`",
        ),
        (vec!["--measure-profile"], "needs a model path"),
    ] {
        let o = example("synth_model")
            .current_dir(dir.path())
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    assert!(!dir.path().join("x").exists(), "a refused run wrote output");
}
