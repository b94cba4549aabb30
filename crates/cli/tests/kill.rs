//! A compress run killed (SIGKILL) at random points never leaves an output that looks complete:
//! a compact folder has `manifest.json` only once everything it describes is written (and its
//! hash is checked on load); a dense folder has `config.json` only once its tensors are in place.
//! Half of the kill points are uniform over a whole run; the other half fall inside the write
//! phase (from the moment the first temporary file appears), where a torn file could be left.
//!
//! The runs are magnitude 2:4 pruning: every method writes through the same atomic writer, and
//! this one spends seconds, not half a minute of SVDs, before it writes, so twelve runs cost
//! little and a larger share of the uniform kill points land in the write phase.

use llm_compress_core::rng::SplitMix64;
use llm_compress_core::{LinearId, LinearKind};
use llm_compress_eval::testing::real_model_path;
use llm_compress_eval::Model;
use llm_compress_tensor_io::Checkpoint;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

fn start(model: &Path, out: &Path, dense: bool) -> Child {
    let mut c = Command::new(env!("CARGO_BIN_EXE_llm-compress"));
    c.args(["compress", model.to_str().unwrap(), "--method", "magnitude"])
        .args([
            "--pattern",
            "2:4",
            "--calib-windows",
            "1",
            "--seq-len",
            "64",
        ])
        .args(["--quiet", "--out"])
        .arg(out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    if dense {
        c.arg("--dense");
    }
    c.spawn().unwrap()
}

/// Whether a temporary output file exists in `dir` (the write phase has begun).
fn writing(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|rd| {
        rd.filter_map(Result::ok)
            .any(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
    })
}

/// A folder that looks complete must load and verify; one that does not must not claim to.
fn check(out: &Path, dense: bool, what: &str) -> bool {
    let marker = out.join(if dense {
        "config.json"
    } else {
        "manifest.json"
    });
    if !marker.exists() {
        return false;
    }
    let ckpt = Checkpoint::open(out)
        .unwrap_or_else(|e| panic!("{what}: complete-looking output does not open: {e}"));
    if dense {
        Model::load(&ckpt).unwrap_or_else(|e| panic!("{what}: dense output does not load: {e}"));
    } else {
        for layer in 0..ckpt.config.num_layers {
            for kind in LinearKind::ALL {
                ckpt.linear(LinearId { layer, kind })
                    .unwrap_or_else(|e| panic!("{what}: {layer}.{kind:?} does not load: {e}"));
            }
        }
    }
    true
}

#[test]
fn killed_compress_runs_never_leave_a_complete_looking_output() {
    let Some(model) = real_model_path() else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    // One whole run of each kind, for the durations and as the positive control.
    let mut full = [Duration::ZERO; 2];
    for (i, dense) in [false, true].into_iter().enumerate() {
        let out = t.path().join(format!("full-{i}"));
        let t0 = Instant::now();
        let status = start(&model, &out, dense).wait().unwrap();
        full[i] = t0.elapsed();
        assert!(status.success());
        assert!(check(&out, dense, "uninterrupted run"), "no output");
    }
    let mut rng = SplitMix64::new(2026);
    let mut complete = 0;
    for k in 0..10 {
        let dense = k % 2 == 1;
        let out = t.path().join(format!("kill-{k}"));
        let mut child = start(&model, &out, dense);
        let t0 = Instant::now();
        if k < 5 {
            let at = full[dense as usize].mul_f64(rng.uniform());
            while t0.elapsed() < at && child.try_wait().unwrap().is_none() {
                std::thread::sleep(Duration::from_millis(5));
            }
        } else {
            while !writing(&out) && child.try_wait().unwrap().is_none() {
                std::thread::sleep(Duration::from_millis(1));
            }
            std::thread::sleep(Duration::from_millis((rng.uniform() * 1500.0) as u64));
        }
        let _ = child.kill();
        let _ = child.wait();
        let what = format!("try {k} (dense: {dense}, killed after {:?})", t0.elapsed());
        if check(&out, dense, &what) {
            complete += 1;
        }
    }
    // The kill points are meant to interrupt runs, not to follow finished ones.
    assert!(complete < 10, "every run finished before its kill");
}
