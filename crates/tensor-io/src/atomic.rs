//! Atomic file output: write to a temporary file in the target folder, flush, then rename.
//!
//! A run killed at any point leaves either the previous file or no file at the target path,
//! never a truncated one (the temporary file, named `.<name>.tmp*`, is removed on drop).

use crate::IoError;
use std::io::{BufWriter, Write};
use std::path::Path;

/// Write the file at `path` through `fill`, atomically.
pub fn write_atomic<F>(path: &Path, fill: F) -> Result<(), IoError>
where
    F: FnOnce(&mut dyn Write) -> std::io::Result<()>,
{
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let prefix = format!(".{name}.");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".tmp");
    // The output is an ordinary file: created with mode 0644 minus the umask, not the 0600 of
    // a temporary file.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o644));
    }
    let tmp = builder.tempfile_in(dir).map_err(|e| IoError::io(dir, e))?;
    {
        let mut w = BufWriter::new(tmp.as_file());
        fill(&mut w).map_err(|e| IoError::io(path, e))?;
        w.flush().map_err(|e| IoError::io(path, e))?;
    }
    tmp.as_file().sync_all().map_err(|e| IoError::io(path, e))?;
    tmp.persist(path).map_err(|e| IoError::io(path, e.error))?;
    Ok(())
}

/// Write `bytes` to `path` atomically.
pub fn write_bytes_atomic(path: &Path, bytes: &[u8]) -> Result<(), IoError> {
    write_atomic(path, |w| w.write_all(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn outputs_are_readable_by_others_like_ordinary_files() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.json");
        write_bytes_atomic(&p, b"{}").unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        // 0644 minus whatever umask the test runs under, never the 0600 of a temporary file.
        assert_eq!(mode & 0o600, 0o600);
        assert_ne!(mode, 0o600, "mode {mode:o}");
    }

    #[test]
    fn failed_write_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.bin");
        let r = write_atomic(&p, |w| {
            w.write_all(b"partial")?;
            Err(std::io::Error::other("killed"))
        });
        assert!(r.is_err());
        assert!(!p.exists());
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "temp file left behind"
        );
        write_bytes_atomic(&p, b"done").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"done");
    }
}
