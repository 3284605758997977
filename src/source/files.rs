//! Exported files: read each of the three inputs, decode every line, send
//! rejects to the dead-letter output, and spill the good records into sorted
//! runs (see `runs`). Memory is bounded by the run size, not the files.

use super::runs::{encode, RunWriter, Runs};
use crate::decode::{decode_json, CsvError, CsvReader, DeadLetter, Kind, Limits, LineReader, RawLine, Rejection};
use rayon::prelude::*;
use crate::model::{Record, SortKey};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// A decoded line with its merge key and encoding, or why it was refused.
type Keyed = Result<(SortKey, Vec<u8>), Rejection>;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{path}: unknown file type; use .jsonl (JSON Lines) or .csv")]
    UnknownFormat { path: String },
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: io::Error },
    #[error(transparent)]
    Csv(#[from] CsvError),
    #[error("sort spill file {path}: {source}")]
    Spill { path: String, source: io::Error },
    #[error("sort spill file {path} is damaged: {reason}")]
    Damaged { path: String, reason: String },
    #[error("dead-letter output: {0}")]
    DeadLetter(io::Error),
    #[error("stopped while reading the inputs")]
    Stopped,
}

/// The input files of an audit, in source-index order: roster 0, deaths
/// 1, payments 2, then the optional ones in the order given here.
#[derive(Clone, Debug)]
pub struct Inputs {
    pub roster: PathBuf,
    pub deaths: PathBuf,
    pub payments: PathBuf,
    /// The rectification ledger (`--decisions`, §8), when given.
    pub decisions: Option<PathBuf>,
    /// Vulnerable persons of other departments (`--vulnerable`, §10),
    /// when given.
    pub vulnerable: Option<PathBuf>,
}

impl Inputs {
    /// The three required inputs and no optional one.
    pub fn new(roster: PathBuf, deaths: PathBuf, payments: PathBuf) -> Inputs {
        Inputs { roster, deaths, payments, decisions: None, vulnerable: None }
    }

    /// Every input given, in source-index order.
    pub fn list(&self) -> Vec<(Kind, &Path)> {
        let mut l = vec![(Kind::Roster, self.roster.as_path()), (Kind::Death, &self.deaths), (Kind::Payment, &self.payments)];
        if let Some(d) = &self.decisions {
            l.push((Kind::Decision, d));
        }
        if let Some(v) = &self.vulnerable {
            l.push((Kind::Vulnerable, v));
        }
        l
    }

    /// File name and size of each input: a resumed audit must see the same.
    pub fn fingerprint(&self) -> Result<Vec<(String, u64)>, SourceError> {
        self.list()
            .iter()
            .map(|(_, p)| {
                let len = std::fs::metadata(p).map_err(|source| read_err(p, source))?.len();
                Ok((file_name(p), len))
            })
            .collect()
    }

    pub fn total_bytes(&self) -> u64 {
        self.list().iter().filter_map(|(_, p)| std::fs::metadata(p).ok()).map(|m| m.len()).sum()
    }
}

/// The file's name as dead letters show it.
pub fn file_name(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| p.display().to_string())
}

fn read_err(p: &Path, source: io::Error) -> SourceError {
    SourceError::Read { path: p.display().to_string(), source }
}

/// Input formats, chosen by file extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Jsonl,
    Csv,
}

impl Format {
    pub fn of(path: &Path) -> Result<Format, SourceError> {
        match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("jsonl" | "ndjson" | "json") => Ok(Format::Jsonl),
            Some("csv") => Ok(Format::Csv),
            _ => Err(SourceError::UnknownFormat { path: path.display().to_string() }),
        }
    }
}

/// A decoded record with its place in the merged input and in its file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Staged {
    pub key: SortKey,
    /// Byte range of the original text, to quote it in a dead letter.
    pub offset: u64,
    pub len: u64,
    pub record: Record,
}

/// Lines decoded in parallel at a time.
const CHUNK: usize = 8192;

/// Decodes all three inputs into sorted runs under `tmp`. `dead` receives
/// every rejected line; `progress` the bytes read so far, and answers
/// whether to go on.
pub fn stage(
    inputs: &Inputs,
    limits: Limits,
    run_records: usize,
    tmp: &Path,
    dead: &mut dyn FnMut(DeadLetter) -> io::Result<()>,
    progress: &mut dyn FnMut(u64) -> bool,
) -> Result<Runs, SourceError> {
    let mut runs = RunWriter::new(tmp, run_records);
    let mut done = 0u64;
    for (source, (kind, path)) in inputs.list().into_iter().enumerate() {
        let name = file_name(path);
        let source = source as u8;
        let mut reject = |line: u64, r: &Rejection, raw: String| dead(DeadLetter::new(&name, line, r, raw)).map_err(SourceError::DeadLetter);
        match Format::of(path)? {
            Format::Jsonl => {
                let file = File::open(path).map_err(|e| read_err(path, e))?;
                let mut lines = LineReader::new(BufReader::with_capacity(1 << 20, file), limits.max_record_bytes);
                // One thread reads lines a chunk at a time; the chunk in
                // hand is decoded in parallel and handed on in order.
                let read = std::thread::scope(|scope| -> Result<u64, SourceError> {
                    let (tx, rx) = std::sync::mpsc::sync_channel::<io::Result<(Vec<RawLine>, u64)>>(2);
                    scope.spawn(move || loop {
                        let next = read_chunk(&mut lines);
                        let last = !matches!(&next, Ok((c, _)) if c.len() == CHUNK);
                        if tx.send(next).is_err() || last {
                            return;
                        }
                    });
                    let mut read = 0;
                    for next in rx {
                        let (chunk, offset) = next.map_err(|e| read_err(path, e))?;
                        read = offset;
                        let staged: Vec<Result<Keyed, SourceError>> = chunk
                            .par_iter()
                            .map(|l| match decode_json(kind, l, limits) {
                                Ok(record) => {
                                    let key = SortKey { time: record.event_time(), rank: record.rank(), source, line: l.line };
                                    let s = Staged { key, offset: l.offset, len: l.bytes.len() as u64, record };
                                    Ok(Ok((key, encode(&s)?)))
                                }
                                Err(r) => Ok(Err(r)),
                            })
                            .collect();
                        for (l, s) in chunk.iter().zip(staged) {
                            match s? {
                                Ok((key, bytes)) => runs.push_encoded(key, bytes)?,
                                Err(r) => reject(l.line, &r, String::from_utf8_lossy(&l.bytes).into_owned())?,
                            }
                        }
                        if !progress(done + offset) {
                            return Err(SourceError::Stopped);
                        }
                    }
                    Ok(read)
                })?;
                done += read;
            }
            Format::Csv => {
                let mut rows = CsvReader::open(path, kind, limits)?;
                let mut n = 0u64;
                while let Some(item) = rows.next_item().map_err(|e| read_err(path, e))? {
                    match item.decoded {
                        Ok(record) => {
                            let key = SortKey { time: record.event_time(), rank: record.rank(), source, line: item.line };
                            runs.push(Staged { key, offset: item.offset, len: item.len, record })?;
                        }
                        Err(r) => reject(item.line, &r, item.raw)?,
                    }
                    n += 1;
                    if n % 4096 == 0 && !progress(done + rows.offset()) {
                        return Err(SourceError::Stopped);
                    }
                }
                done += rows.offset();
            }
        }
        if !progress(done) {
            return Err(SourceError::Stopped);
        }
    }
    runs.finish()
}

/// Up to [`CHUNK`] lines, and the bytes consumed after them.
fn read_chunk<R: io::BufRead>(lines: &mut LineReader<R>) -> io::Result<(Vec<RawLine>, u64)> {
    let mut chunk = Vec::with_capacity(CHUNK);
    while chunk.len() < CHUNK {
        match lines.next_line()? {
            Some(l) => chunk.push(l),
            None => break,
        }
    }
    Ok((chunk, lines.offset()))
}

/// Reads a record's original text back from its input file, to quote it in
/// a dead letter raised after decoding.
pub struct RawLookup {
    files: Vec<PathBuf>,
    limit: u64,
}

impl RawLookup {
    pub fn new(inputs: &Inputs, limits: Limits) -> RawLookup {
        RawLookup {
            files: inputs.list().iter().map(|(_, p)| p.to_path_buf()).collect(),
            limit: limits.max_record_bytes as u64,
        }
    }

    pub fn name(&self, source: u8) -> String {
        self.files.get(source as usize).map(|p| file_name(p)).unwrap_or_default()
    }

    pub fn raw(&self, source: u8, offset: u64, len: u64) -> String {
        let read = || -> io::Result<String> {
            let path = self.files.get(source as usize).ok_or_else(|| io::Error::other("no such source"))?;
            let mut f = File::open(path)?;
            f.seek(SeekFrom::Start(offset))?;
            let mut buf = vec![0; len.min(self.limit) as usize];
            f.read_exact(&mut buf)?;
            while matches!(buf.last(), Some(b'\n' | b'\r')) {
                buf.pop();
            }
            Ok(String::from_utf8_lossy(&buf).into_owned())
        };
        read().unwrap_or_else(|e| format!("<original text unavailable: {e}>"))
    }
}
