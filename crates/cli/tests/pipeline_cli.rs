//! `compress --recipe`, `bench` and `report` on the real model (small calibration, one
//! evaluation window).

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

const QUICK: &str = r#"
name = "quick"
[calibration]
windows = 2
seq_len = 512
[[step]]
method = "wanda"
pattern = "2:4"
linears = "mlp"
[[step]]
method = "svd-llm"
ratio = 0.3
linears = ["q", "k", "v", "o"]
"#;

fn write_recipe(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
fn bad_recipes_exit_3_without_output() {
    let Some(model) = llm_compress_eval::testing::real_model_path() else {
        return;
    };
    let m = model.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let o = out.to_str().unwrap();
    for (text, needle) in [
        ("[[step]]\nmethod = \"svd-llm\"\nratio = 2.0\n", "ratio"),
        ("[[step]]\nmethod = \"wanda\"\nlinears = \"mlp\"\n[[step]]\nmethod = \"svd\"\nratio = 0.2\n", "two steps"),
        ("[[step\n", "bad recipe"),
    ] {
        let r = write_recipe(dir.path(), "bad.toml", text);
        let (code, _, err) = run(&["compress", m, "--recipe", &r, "--out", o]);
        assert_eq!(code, 3, "{text}: {err}");
        assert!(err.contains(needle) && !err.contains("panicked"), "{err}");
        assert!(!out.exists());
    }
    let (code, _, err) = run(&["compress", m, "--recipe", "/nonexistent.toml", "--out", o]);
    assert_eq!(code, 3, "{err}");
    let r = write_recipe(dir.path(), "ok.toml", QUICK);
    let (code, _, err) = run(&["compress", m, "--recipe", &r, "--method", "svd", "--out", o]);
    assert_eq!(code, 2, "--recipe and --method conflict: {err}");
}

#[test]
fn recipe_compress_then_report_writes_table_json_and_plots() {
    let Some(model) = llm_compress_eval::testing::real_model_path() else {
        return;
    };
    let m = model.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let r = write_recipe(dir.path(), "quick.toml", QUICK);
    let out = dir.path().join("quick");
    let o = out.to_str().unwrap();
    let (code, stdout, err) = run(&["-q", "compress", m, "--recipe", &r, "--out", o, "--json"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.is_empty(), "--quiet keeps stderr empty: {err}");
    let c: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(c["label"], "quick");
    assert_eq!(c["stages"].as_array().unwrap().len(), 1, "one walk: {c}");
    let kept = c["kept_fraction"].as_f64().unwrap();
    assert!(kept > 0.4 && kept < 0.7, "{c}");

    let rep = dir.path().join("report");
    let rp = rep.to_str().unwrap();
    let args = [
        "-q",
        "report",
        m,
        o,
        "--out-dir",
        rp,
        "--max-windows",
        "1",
        "--json",
    ];
    let (code, stdout, err) = run(&args);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let runs = v["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0]["dense"], true);
    assert_eq!(runs[1]["label"], "quick");
    let (d, q) = (&runs[0], &runs[1]);
    assert!(q["bytes"].as_u64() < d["bytes"].as_u64());
    assert!(q["ppl"].as_f64() > d["ppl"].as_f64());
    let md = std::fs::read_to_string(rep.join("report.md")).unwrap();
    assert!(md.contains("| quick |") && md.contains("| dense |"), "{md}");
    let svg = std::fs::read_to_string(rep.join("plot.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("quick ("), "{svg}");
    let png = std::fs::read(rep.join("plot.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(rep.join("report.json")).unwrap()).unwrap();
    assert_eq!(saved, v);
    // A second report reuses the cached evaluations: same figures.
    let (code, again, err) = run(&args);
    assert_eq!(code, 0, "{err}");
    let w: serde_json::Value = serde_json::from_str(again.trim()).unwrap();
    assert_eq!(w["runs"][1]["ppl"], v["runs"][1]["ppl"]);
}

#[test]
fn bench_reports_dense_and_compressed_in_one_run() {
    let Some(model) = llm_compress_eval::testing::real_model_path() else {
        return;
    };
    let m = model.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let r = write_recipe(dir.path(), "quick.toml", QUICK);
    let (code, stdout, err) = run(&[
        "-q",
        "bench",
        m,
        "--recipe",
        &r,
        "--max-windows",
        "1",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    for side in ["dense", "compressed"] {
        for k in ["bytes", "ppl", "tokens_per_s", "eval_s"] {
            assert!(
                v[side][k].as_f64().is_some_and(|x| x > 0.0),
                "{side}.{k}: {v}"
            );
        }
    }
    assert!(v["compress_s"].as_f64().is_some_and(|x| x > 0.0));
    assert!(v["compressed"]["bytes"].as_u64() < v["dense"]["bytes"].as_u64());
}
