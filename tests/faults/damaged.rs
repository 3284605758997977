//! State directories paywatch must refuse to start on, leaving them as
//! they were.

use super::common::kafka::{free_port, Service};
use super::Fixture;
use sha2::Digest;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// Name → (size, sha256) of every file but RocksDB's info logs (which a
/// refused open may rotate; they hold no data).
fn snapshot(dir: &Path) -> BTreeMap<String, (u64, String)> {
    let mut m = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with("LOG") || e.path().is_dir() {
            continue;
        }
        let bytes = std::fs::read(e.path()).unwrap();
        m.insert(n, (bytes.len() as u64, hex::encode(sha2::Sha256::digest(&bytes))));
    }
    m
}

/// `paywatch run` on `state` after `damage`: it must exit 2 with a message
/// that says it refuses, within 30 s, and change nothing.
fn refused(fx: &Fixture, name: &str, damage: impl FnOnce(&Path)) -> Result<String, String> {
    let state = fx.dir.join(name).join("state");
    let cfg = fx.config(name, &state, free_port(), "");
    damage(&state);
    let before = snapshot(&state);
    let mut child = Command::new(super::common::bin())
        .args(["run", "--config"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let Some(status) = super::common::exit_within(&mut child, Duration::from_secs(30)) else {
        return Err("paywatch started on it".into());
    };
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    if status.code() != Some(2) {
        return Err(format!("exit {status:?}, want 2: {err}"));
    }
    let said = err.lines().map(str::trim).collect::<Vec<_>>().join(" ");
    let line = said.find("paywatch:").map(|i| &said[i..]).filter(|l| l.contains("refusing"));
    let line = line.ok_or_else(|| format!("no refusal in: {err}"))?;
    let after = snapshot(&state);
    if after != before {
        return Err(format!("the directory changed: {before:?} → {after:?}"));
    }
    Ok(format!("exit 2, nothing changed: {}", line.trim()))
}

/// A state directory a clean `paywatch run` left, flushed so that it has
/// table files; copied for each case.
fn pristine(fx: &Fixture) -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let state = fx.dir.join("pristine").join("state");
        let http = free_port();
        let cfg = fx.config("pristine", &state, http, "");
        let mut svc = Service::start(&cfg, http, &fx.dir.join("pristine"));
        svc.wait_idle();
        assert!(svc.terminate().success());
        let opts = rocksdb::Options::default();
        let cfs = rocksdb::DB::list_cf(&opts, &state).unwrap();
        let db = rocksdb::DB::open_cf(&opts, &state, &cfs).unwrap();
        for cf in &cfs {
            db.flush_cf(db.cf_handle(cf).unwrap()).unwrap();
        }
        state
    })
}

fn copy_state(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.path().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

pub fn foreign_rocksdb(fx: &Fixture) -> Result<String, String> {
    refused(fx, "foreign-rocksdb", |state| {
        let mut o = rocksdb::Options::default();
        o.create_if_missing(true);
        let db = rocksdb::DB::open(&o, state).unwrap();
        db.put(b"someone else's", b"data").unwrap();
    })
}

pub fn foreign_files(fx: &Fixture) -> Result<String, String> {
    refused(fx, "foreign-files", |state| {
        std::fs::create_dir_all(state).unwrap();
        std::fs::write(state.join("budget-2026.xlsx"), b"not ours").unwrap();
    })
}

pub fn lost_current(fx: &Fixture) -> Result<String, String> {
    let from = pristine(fx);
    refused(fx, "lost-current", |state| {
        copy_state(from, state);
        std::fs::remove_file(state.join("CURRENT")).unwrap();
    })
}

pub fn garbled_manifest(fx: &Fixture) -> Result<String, String> {
    let from = pristine(fx);
    refused(fx, "garbled-manifest", |state| {
        copy_state(from, state);
        let manifest = state.join(std::fs::read_to_string(state.join("CURRENT")).unwrap().trim());
        let len = std::fs::metadata(&manifest).unwrap().len() as usize;
        std::fs::write(&manifest, vec![0x5a; len]).unwrap();
    })
}

pub fn truncated_sst(fx: &Fixture) -> Result<String, String> {
    let from = pristine(fx);
    refused(fx, "truncated-sst", |state| {
        copy_state(from, state);
        let biggest = std::fs::read_dir(state)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "sst"))
            .max_by_key(|p| std::fs::metadata(p).unwrap().len())
            .expect("the flushed state has table files");
        let bytes = std::fs::read(&biggest).unwrap();
        std::fs::write(&biggest, &bytes[..bytes.len() / 2]).unwrap();
    })
}
