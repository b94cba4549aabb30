//! `compress --streaming` on the real model, killed (SIGKILL) after a few layers and finished
//! with `--resume`: the result equals the in-memory run's, and `eval --streaming` gives the
//! in-memory evaluation's figure.

use llm_compress_core::{LinearId, LinearKind};
use llm_compress_eval::testing::real_model_path;
use llm_compress_tensor_io::Checkpoint;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn compress(model: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_llm-compress"));
    c.args(["compress", model.to_str().unwrap(), "--method", "svd-llm"])
        .args(["--ratio", "0.2", "--calib-windows", "2", "--seq-len", "128"])
        .args(["--quiet", "--out"])
        .arg(out)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

fn next_layer(out: &Path) -> usize {
    std::fs::read_to_string(out.join("progress.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["next_layer"].as_u64())
        .unwrap_or(0) as usize
}

fn ppl(dir: &Path, streaming: bool) -> f64 {
    let mut c = Command::new(env!("CARGO_BIN_EXE_llm-compress"));
    c.args([
        "--json",
        "eval",
        dir.to_str().unwrap(),
        "--max-windows",
        "1",
    ])
    .args(["--seq-len", "256"]);
    if streaming {
        c.arg("--streaming");
    }
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["ppl"].as_f64().unwrap()
}

#[test]
fn a_killed_streamed_run_resumes_to_the_in_memory_result() {
    let Some(model) = real_model_path() else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let (mem, stream) = (t.path().join("mem"), t.path().join("stream"));
    let o = compress(&model, &mem, &[]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // Kill the streamed run once 3 layers are written.
    let mut child = compress(&model, &stream, &["--streaming"]).spawn().unwrap();
    let t0 = Instant::now();
    while next_layer(&stream) < 3 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "finished before it could be killed"
        );
        assert!(t0.elapsed() < Duration::from_secs(300), "no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!stream.join("manifest.json").exists());
    let done = next_layer(&stream);
    assert!(done >= 3);

    // Resuming with other options is refused (exit 3), and the folder stays resumable.
    let o = compress(&model, &stream, &["--resume", "--seed", "4"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&o.stderr).contains("other options"));

    let o = compress(&model, &stream, &["--resume"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!stream.join("progress.json").exists());

    let (a, b) = (
        Checkpoint::open(&mem).unwrap(),
        Checkpoint::open(&stream).unwrap(),
    );
    assert_eq!(b.manifest.as_ref().unwrap().tensor_files.len(), 31);
    for layer in 0..a.config.num_layers {
        for kind in LinearKind::ALL {
            let id = LinearId { layer, kind };
            let (x, y) = (a.linear(id).unwrap(), b.linear(id).unwrap());
            assert_eq!(x.rank(), y.rank(), "{id}");
            // Same walk and factorisations, run across two processes: the same values.
            assert_eq!(
                x.to_dense(),
                y.to_dense(),
                "{id} (resumed after layer {done})"
            );
        }
    }
    let (p_mem, p_stream) = (ppl(&mem, false), ppl(&stream, true));
    assert!(
        (p_mem - p_stream).abs() <= 1e-6 * p_mem,
        "{p_mem} vs {p_stream}"
    );
}
