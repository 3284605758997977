//! External sort: records are sorted in memory a run at a time, spilled to a
//! temporary file, and the runs merged with a heap. Frames are
//! `u32 length | postcard(Staged)`.

use super::files::{SourceError, Staged};
use crate::model::SortKey;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

pub(super) struct RunWriter {
    /// Where the runs are spilled.
    dir: PathBuf,
    /// Records per run: bounds the sorter's memory.
    limit: usize,
    /// The run being filled, encoded.
    buf: Vec<(SortKey, Vec<u8>)>,
    /// Runs spilled so far.
    files: Vec<PathBuf>,
    /// Records staged in all runs.
    total: u64,
    /// The previous run, being sorted and written on its own thread while
    /// the next one fills.
    spilling: Option<std::thread::JoinHandle<Result<PathBuf, SourceError>>>,
}

fn spill_err(path: &Path, source: io::Error) -> SourceError {
    SourceError::Spill { path: path.display().to_string(), source }
}

impl RunWriter {
    pub(super) fn new(dir: &Path, limit: usize) -> RunWriter {
        RunWriter { dir: dir.to_owned(), limit, buf: Vec::new(), files: Vec::new(), total: 0, spilling: None }
    }

    pub(super) fn push(&mut self, s: Staged) -> Result<(), SourceError> {
        let bytes = encode(&s)?;
        self.push_encoded(s.key, bytes)
    }

    /// Adds a record already encoded with [`encode`].
    pub(super) fn push_encoded(&mut self, key: SortKey, bytes: Vec<u8>) -> Result<(), SourceError> {
        self.buf.push((key, bytes));
        self.total += 1;
        if self.buf.len() >= self.limit {
            self.spill()?;
            // The next run fills as far: room for it now, not by doubling.
            self.buf.reserve(self.limit);
        }
        Ok(())
    }

    /// Hands the filled run to a thread that sorts and writes it (after
    /// the previous one is written): at most two runs are in memory.
    fn spill(&mut self) -> Result<(), SourceError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.wait_spilled()?;
        let path = self.dir.join(format!("run-{:05}.bin", self.files.len()));
        let buf = std::mem::take(&mut self.buf);
        self.spilling = Some(std::thread::spawn(move || write_run(path, buf)));
        Ok(())
    }

    fn wait_spilled(&mut self) -> Result<(), SourceError> {
        if let Some(t) = self.spilling.take() {
            let path = t.join().map_err(|_| SourceError::Damaged { path: "(sort)".into(), reason: "the sort thread panicked".into() })??;
            self.files.push(path);
        }
        Ok(())
    }

    pub(super) fn finish(mut self) -> Result<Runs, SourceError> {
        self.spill()?;
        self.wait_spilled()?;
        Ok(Runs { files: self.files, total: self.total })
    }
}

/// Sorts one run and writes it as frames.
fn write_run(path: PathBuf, mut buf: Vec<(SortKey, Vec<u8>)>) -> Result<PathBuf, SourceError> {
    buf.sort_unstable_by_key(|(k, _)| *k);
    let f = File::create(&path).map_err(|e| spill_err(&path, e))?;
    let mut w = BufWriter::with_capacity(1 << 20, f);
    for (_, bytes) in buf {
        w.write_all(&(bytes.len() as u32).to_le_bytes()).map_err(|e| spill_err(&path, e))?;
        w.write_all(&bytes).map_err(|e| spill_err(&path, e))?;
    }
    w.flush().map_err(|e| spill_err(&path, e))?;
    Ok(path)
}

/// A staged record's frame body.
pub(super) fn encode(s: &Staged) -> Result<Vec<u8>, SourceError> {
    // Room for a typical record, so encoding does not grow the buffer
    // field by field.
    postcard::to_extend(s, Vec::with_capacity(320)).map_err(|e| SourceError::Damaged { path: "(encoding)".into(), reason: e.to_string() })
}

/// Sorted runs on disk, ready to merge.
#[derive(Debug)]
pub struct Runs {
    /// The spilled runs, each sorted.
    files: Vec<PathBuf>,
    /// Records staged in all runs.
    pub total: u64,
}

impl Runs {
    /// Merges the runs, skipping everything up to and including `after`.
    pub fn merge(&self, after: Option<SortKey>) -> Result<Merge, SourceError> {
        let mut m = Merge { readers: Vec::new(), heads: Vec::new(), heap: BinaryHeap::new(), after };
        for path in &self.files {
            let f = File::open(path).map_err(|e| spill_err(path, e))?;
            m.readers.push((path.clone(), BufReader::with_capacity(256 << 10, f)));
            m.heads.push(None);
            let i = m.readers.len() - 1;
            m.refill(i)?;
        }
        Ok(m)
    }
}

/// The merged, ordered stream of staged records.
pub struct Merge {
    /// One reader per run.
    readers: Vec<(PathBuf, BufReader<File>)>,
    /// The next record of each run.
    heads: Vec<Option<Staged>>,
    /// Runs ordered by their next key.
    heap: BinaryHeap<Reverse<(SortKey, usize)>>,
    /// Resume point: records up to and including it are skipped.
    after: Option<SortKey>,
}

impl Merge {
    fn refill(&mut self, i: usize) -> Result<(), SourceError> {
        loop {
            let (path, r) = &mut self.readers[i];
            let mut len = [0u8; 4];
            match r.read_exact(&mut len) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(spill_err(path, e)),
            }
            let mut bytes = vec![0; u32::from_le_bytes(len) as usize];
            r.read_exact(&mut bytes).map_err(|e| spill_err(path, e))?;
            let s: Staged = postcard::from_bytes(&bytes)
                .map_err(|e| SourceError::Damaged { path: path.display().to_string(), reason: e.to_string() })?;
            if self.after.is_some_and(|a| s.key <= a) {
                continue;
            }
            self.heap.push(Reverse((s.key, i)));
            self.heads[i] = Some(s);
            return Ok(());
        }
    }
}

impl Iterator for Merge {
    type Item = Result<Staged, SourceError>;

    fn next(&mut self) -> Option<Self::Item> {
        let Reverse((_, i)) = self.heap.pop()?;
        let s = self.heads[i].take().expect("a head for every heap entry");
        Some(self.refill(i).map(|()| s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testkit::payment;
    use crate::model::{Record, Timestamp};

    fn staged(t: i64, line: u64) -> Staged {
        let p = payment(&format!("E{line}"), "2020-01", "1.00", "2020-01-01T00:00:00+08:00");
        Staged { key: SortKey { time: Timestamp(t), rank: 2, source: 2, line }, offset: 0, len: 0, record: Record::Payment(p) }
    }

    #[test]
    fn merges_runs_in_key_order_and_resumes_after_a_key() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = RunWriter::new(dir.path(), 3);
        let times = [9, 1, 7, 3, 3, 8, 2, 6, 0, 5];
        for (line, t) in times.iter().enumerate() {
            w.push(staged(*t, line as u64)).unwrap();
        }
        let runs = w.finish().unwrap();
        assert_eq!(runs.files.len(), 4);
        let keys: Vec<(i64, u64)> = runs.merge(None).unwrap().map(|s| s.unwrap().key).map(|k| (k.time.0, k.line)).collect();
        let mut expected: Vec<(i64, u64)> = times.iter().enumerate().map(|(l, t)| (*t, l as u64)).collect();
        expected.sort();
        assert_eq!(keys, expected);
        let after = SortKey { time: Timestamp(3), rank: 2, source: 2, line: 3 };
        let rest: Vec<u64> = runs.merge(Some(after)).unwrap().map(|s| s.unwrap().key.line).collect();
        assert_eq!(rest, [4, 9, 7, 2, 5, 0]);
    }
}
