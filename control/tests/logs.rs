//! The log as the journal sees it, from the real binary: `--check-config` starts no DPDK, so
//! these need no lock, no root and no NIC.

use std::process::Command;

/// Runs `sheetcake --config <config> --check-config` with `env`, returning (exit code, stdout).
fn check_config(config: &str, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("logs");
    std::fs::create_dir_all(&dir).expect("target dir is writable");
    let path = dir.join(format!("check-{}.toml", env.len()));
    std::fs::write(&path, config).expect("write config");
    let out = Command::new(env!("CARGO_BIN_EXE_sheetcake"))
        .arg("--config")
        .arg(&path)
        .arg("--check-config")
        .env_remove("JOURNAL_STREAM")
        .env_remove("SHEETCAKE_LOG")
        .envs(env.iter().copied())
        .output()
        .expect("run sheetcake");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Two errors in one file: a worker on the control core, and a port that is neither PCI nor
/// a DPDK virtual device.
const BAD: &str = r#"
[workers]
cores = [0]
[[pairs]]
name = "a"
core = "eth0"
access = "net_ring1"
"#;

#[test]
fn a_refused_configuration_is_one_error_line_per_error_with_the_journal_priority() {
    let (code, out) = check_config(BAD, &[("SHEETCAKE_LOG", "journal")]);
    assert_eq!(code, Some(2), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    // sd-daemon(3): "<3>" is an error.
    assert!(lines.iter().all(|l| l.starts_with("<3>")), "{out}");
    assert!(
        lines[0].starts_with("<3>the configuration is not valid errors=2"),
        "{out}"
    );
    assert!(
        lines[1].contains(":3: workers.cores: core 0 is also control.core"),
        "{out}"
    );
    assert!(
        lines[2].contains(":6: pairs[0].core: \"eth0\" is neither"),
        "{out}"
    );
}

#[test]
fn at_a_terminal_or_in_a_pipe_the_lines_have_no_prefix() {
    let (code, out) = check_config(BAD, &[]);
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.starts_with("the configuration is not valid errors=2\n"),
        "{out}"
    );
    assert!(!out.contains("<3>"), "{out}");
}

#[test]
fn the_prefix_appears_when_stdout_is_the_stream_journal_stream_names() {
    use std::os::unix::fs::MetadataExt;
    // systemd.exec(5): JOURNAL_STREAM is "DEVICE:INODE" of the journal's stream; a file
    // stands in for it here.
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("logs");
    std::fs::create_dir_all(&dir).expect("target dir is writable");
    let (config, log) = (dir.join("journal.toml"), dir.join("journal.log"));
    std::fs::write(&config, BAD).expect("write config");
    let stream = std::fs::File::create(&log).expect("create the stand-in stream");
    let meta = stream.metadata().expect("stat");
    let status = Command::new(env!("CARGO_BIN_EXE_sheetcake"))
        .arg("--config")
        .arg(&config)
        .arg("--check-config")
        .env_remove("SHEETCAKE_LOG")
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .stdout(stream)
        .status()
        .expect("run sheetcake");
    assert_eq!(status.code(), Some(2));
    let out = std::fs::read_to_string(&log).expect("read the stream");
    assert!(
        out.starts_with("<3>the configuration is not valid errors=2\n"),
        "{out}"
    );
}
