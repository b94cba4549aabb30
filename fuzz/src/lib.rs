//! Helpers shared by the fuzz targets: the parsers under test read files (by mmap), so each
//! input is written to a scratch file first.

use std::path::{Path, PathBuf};

/// A per-process scratch folder (in `/dev/shm` when it exists, to keep the disk out of it).
pub fn scratch_dir() -> PathBuf {
    let base = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let d = base.join(format!("llm-compress-fuzz-{}", std::process::id()));
    // A failure here is the harness's, not the code under test's: let it show.
    std::fs::create_dir_all(&d).expect("scratch folder");
    d
}

/// Write `bytes` to `name` inside the scratch folder and return its path.
pub fn scratch_file(name: &str, bytes: &[u8]) -> PathBuf {
    let p = scratch_dir().join(name);
    std::fs::write(&p, bytes).expect("scratch file");
    p
}

/// Largest number of elements a target decodes from one tensor (the file size bounds it
/// anyway; this keeps each run fast).
pub const MAX_DECODE_ELEMENTS: usize = 1 << 20;

pub mod corpus;
