//! The state directory on a small tmpfs that fills up mid-replay.

use super::common::kafka::{free_port, Service};
use super::{applied, same_ids, wait_applied, Fixture};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Unmounts on drop.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the file system holding `dir` with one file; returns its size.
fn fill(file: &Path) -> u64 {
    let mut f = std::fs::File::create(file).expect("filler");
    let chunk = vec![0u8; 1 << 20];
    let mut n = 0u64;
    while f.write_all(&chunk).is_ok() {
        n += chunk.len() as u64;
    }
    // The last partial chunk, byte-exact.
    while f.write_all(&chunk[..4096]).is_ok() {
        n += 4096;
    }
    let _ = f.sync_all();
    n
}

pub fn full_disk(fx: &Fixture) -> Result<String, String> {
    let name = "disk";
    let mnt = fx.dir.join(name).join("fs");
    std::fs::create_dir_all(&mnt).unwrap();
    let o = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256m", "paywatch-faults"])
        .arg(&mnt)
        .output()
        .map_err(|e| format!("mount: {e}"))?;
    if !o.status.success() {
        return Err(format!("cannot mount a tmpfs for the state (run as root): {}", String::from_utf8_lossy(&o.stderr).trim()));
    }
    let _mounted = Mounted(mnt.clone());
    let state = mnt.join("state");
    let http = free_port();
    let cfg = fx.config(name, &state, http, "");
    let mut svc = Service::start(&cfg, http, &fx.dir.join(name));
    let before = wait_applied(&svc, fx.records / 4);
    let filler = mnt.join("filler");
    let filled = fill(&filler);
    let full_at = Instant::now();
    let end = full_at + Duration::from_secs(60);
    let why = loop {
        if let Some((503, body)) = svc.get("/readyz") {
            if body.contains("cannot be written") {
                break body;
            }
        }
        if Instant::now() > end {
            let s = svc.status();
            return Err(format!("/readyz did not report the full disk within 60 s (filled {filled} bytes); status {s:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let red_after = full_at.elapsed();
    let held = svc.status().map(|s| applied(&s)).unwrap_or(0);
    std::thread::sleep(Duration::from_secs(3));
    let still = svc.status().ok_or("the service died with the disk full")?;
    if applied(&still) != held || still["store_error"].is_null() {
        return Err(format!("went on while the disk was full: {held} → {}; status {still}", applied(&still)));
    }
    let log = svc.log_text();
    if !log.contains("cannot write the state directory") {
        return Err("no log line says why consuming stopped".into());
    }
    std::fs::remove_file(&filler).unwrap();
    let freed = Instant::now();
    let s = svc.wait_idle();
    let resumed = freed.elapsed();
    let ready = svc.get("/readyz").map(|(c, _)| c);
    if ready != Some(200) {
        return Err(format!("/readyz answered {ready:?} after space returned"));
    }
    if !svc.log_text().contains("can be written again") {
        return Err("no log line says consuming resumed".into());
    }
    if !svc.terminate().success() {
        return Err("did not exit cleanly on SIGTERM".into());
    }
    same_ids("published alerts", &fx.published(name), &fx.want)?;
    let why = why.trim().trim_start_matches("not ready: ");
    Ok(format!(
        "filled after {before} records: not ready within {red_after:.1?} (\"{why}\"), stopped at {held} records;\n\
         space freed: idle again {resumed:.1?} later with {} records, {} alerts equal to the clean audit",
        applied(&s),
        fx.want.len()
    ))
}
