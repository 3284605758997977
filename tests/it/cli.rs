//! The command line's contract: outputs, defaults and exit codes.

use crate::common::*;
use paywatch::generate::OutFormat;
use std::process::Command;

#[test]
fn alerts_go_to_stdout_and_dead_letters_to_the_current_folder_without_out() {
    let dir = tempfile::tempdir().unwrap();
    let g = ledger(&dir.path().join("l"), 100, OutFormat::Jsonl, 3);
    let o = run_ok(
        Command::new(bin())
            .current_dir(dir.path())
            .args(["audit", "--roster"])
            .arg(&g.roster)
            .arg("--deaths")
            .arg(&g.deaths)
            .arg("--payments")
            .arg(&g.payments)
            .arg("--decisions")
            .arg(&g.decisions)
            .arg("--vulnerable")
            .arg(&g.vulnerable),
    );
    let lines = String::from_utf8_lossy(&o.stdout).lines().count();
    assert_eq!(lines, g.truth.expected.len());
    assert!(dir.path().join("deadletter.jsonl").exists());
}

/// Hardening item 15: the outputs carry full identity numbers, so they are
/// created owner-only (0600) whatever the umask, also when they existed.
#[test]
fn outputs_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let g = ledger(&dir.path().join("l"), 100, OutFormat::Jsonl, 3);
    let (out, dead, cases) = (dir.path().join("alerts.jsonl"), dir.path().join("dead.jsonl"), dir.path().join("cases.jsonl"));
    std::fs::write(&out, "old").unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o644)).unwrap();
    run_ok(audit(&g, &out, &["--deadletter", dead.to_str().unwrap(), "--cases", cases.to_str().unwrap()]));
    for f in [&out, &dead, &cases] {
        let mode = std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", f.display());
    }
    let unit = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/systemd/paywatch-audit.service")).unwrap();
    assert!(unit.contains("\nUMask=0077\n"), "the audit's unit writes nothing world-readable");
}

/// Hardening item 10: a config holding secrets that others can read is
/// warned about at start.
#[test]
fn a_config_with_secrets_readable_by_others_is_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let g = ledger(&dir.path().join("l"), 100, OutFormat::Jsonl, 3);
    let cfg = config(
        dir.path(),
        "[[webhooks.routes]]\nname = \"r\"\nurl = \"https://hooks.example.cn/h\"\nsecrets = [\"0123456789abcdef-secret\"]\n",
    );
    let out = dir.path().join("alerts.jsonl");
    for (mode, warned) in [(0o644, true), (0o640, true), (0o600, false)] {
        std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(mode)).unwrap();
        let o = run_ok(audit(&g, &out, &["--config", cfg.to_str().unwrap()]));
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(stderr.contains("holds secrets and is readable by"), warned, "{mode:o}: {stderr}");
        assert!(!stderr.contains("0123456789abcdef-secret"));
    }
}

#[test]
fn dead_letters_default_beside_out() {
    let dir = tempfile::tempdir().unwrap();
    let g = ledger(&dir.path().join("l"), 100, OutFormat::Jsonl, 3);
    std::fs::create_dir(dir.path().join("o")).unwrap();
    run_ok(&mut audit(&g, &dir.path().join("o/alerts.jsonl"), &[]));
    assert!(dir.path().join("o/deadletter.jsonl").exists());
}

fn exit_code(c: &mut Command) -> (i32, String) {
    let o = c.output().unwrap();
    (o.status.code().unwrap_or(-1), String::from_utf8_lossy(&o.stderr).into_owned())
}

#[test]
fn exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let g = ledger(&dir.path().join("l"), 100, OutFormat::Jsonl, 3);
    let out = dir.path().join("a.jsonl");

    let bad = config(dir.path(), "[rules.large_amount]\nregular_multipel = 4\n");
    let (code, err) = exit_code(&mut audit(&g, &out, &["--config", bad.to_str().unwrap()]));
    assert_eq!(code, 2);
    assert!(err.contains("regular_multipel"), "{err}");

    let (code, _) = exit_code(Command::new(bin()).args(["audit", "--roster", "x.jsonl"]));
    assert_eq!(code, 2, "missing arguments");

    let txt = dir.path().join("payments.txt");
    std::fs::write(&txt, "").unwrap();
    let (code, err) = exit_code(
        Command::new(bin())
            .args(["audit", "--roster"])
            .arg(&g.roster)
            .arg("--deaths")
            .arg(&g.deaths)
            .arg("--payments")
            .arg(&txt)
            .arg("--out")
            .arg(&out),
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(".jsonl"), "{err}");

    let (code, err) = exit_code(
        Command::new(bin())
            .args(["audit", "--roster"])
            .arg(&g.roster)
            .arg("--deaths")
            .arg(dir.path().join("missing.jsonl"))
            .arg("--payments")
            .arg(&g.payments)
            .arg("--out")
            .arg(&out),
    );
    assert_eq!(code, 1, "{err}");

    let foreign = dir.path().join("foreign");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("notes.txt"), "not paywatch").unwrap();
    let (code, err) = exit_code(&mut audit(&g, &out, &["--state", foreign.to_str().unwrap()]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("refusing"), "{err}");
    assert_eq!(std::fs::read_to_string(foreign.join("notes.txt")).unwrap(), "not paywatch");
}

#[test]
fn identity_numbers_are_masked_in_logs() {
    let dir = tempfile::tempdir().unwrap();
    let g = ledger(&dir.path().join("l"), 100, OutFormat::Jsonl, 3);
    let state = dir.path().join("s");
    let mut c = audit(&g, &dir.path().join("a.jsonl"), &["--state", state.to_str().unwrap()]);
    let o = run_ok(c.env("PAYWATCH_LOG", "debug"));
    let o2 = run_ok(audit(&g, &dir.path().join("a.jsonl"), &["--state", state.to_str().unwrap()]).env("PAYWATCH_LOG", "debug"));
    for text in [String::from_utf8_lossy(&o.stderr), String::from_utf8_lossy(&o2.stderr)] {
        let digits: Vec<&str> = text.split(|c: char| !c.is_ascii_digit() && c != 'X').filter(|w| w.len() >= 18).collect();
        assert!(digits.is_empty(), "unmasked numbers in logs: {digits:?}");
    }
}
