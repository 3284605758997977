//! JSON Lines output (alerts file, dead-letter file, or stdout).

use serde::Serialize;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// One JSON object per line, flushed after every committed batch.
pub struct JsonlSink {
    /// The file or stdout, buffered.
    out: BufWriter<Box<dyn Write + Send>>,
    /// Where it goes, for messages: a path or `stdout`.
    pub target: String,
    /// Lines written, for the summary.
    pub lines: u64,
}

impl JsonlSink {
    /// Creates (truncates) a file: the file is rewritten from the committed
    /// state on every run, so it never holds a line twice.
    pub fn create(path: &Path) -> io::Result<JsonlSink> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        // Alerts and dead letters carry full identity and account numbers:
        // owner only, whatever the umask (and for a file that existed).
        let f = {
            use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
            let f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
            f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            f
        };
        Ok(JsonlSink { out: BufWriter::new(Box::new(f)), target: path.display().to_string(), lines: 0 })
    }

    pub fn stdout() -> JsonlSink {
        JsonlSink { out: BufWriter::new(Box::new(io::stdout())), target: "stdout".into(), lines: 0 }
    }

    pub fn open(path: Option<&PathBuf>) -> io::Result<JsonlSink> {
        match path {
            Some(p) => JsonlSink::create(p),
            None => Ok(JsonlSink::stdout()),
        }
    }

    pub fn write<T: Serialize>(&mut self, value: &T) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, value)?;
        self.out.write_all(b"\n")?;
        self.lines += 1;
        Ok(())
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}
