//! Finding the `herald` binary under test. The chaos tests run the real binary as processes and
//! never link herald-node: `cargo test --workspace` builds it (it is herald-node's `[[bin]]`),
//! and when it is missing the harness builds it once with `cargo build -p herald-node --bin herald`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::SystemTime;

use anyhow::Context;

/// The environment variable naming the binary explicitly.
pub const HERALD_BIN_ENV: &str = "HERALD_BIN";

/// The binary's file name.
const BINARY_NAME: &str = "herald";

/// Held while the binary is located (and perhaps built), so that parallel tests build it once.
static LOCATE: Mutex<Option<PathBuf>> = Mutex::new(None);

/// The `herald` binary: `HERALD_BIN`, else `<target>/debug/herald`, built when missing.
pub fn herald_binary() -> anyhow::Result<PathBuf> {
    let mut located = LOCATE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(path) = located.as_ref() {
        return Ok(path.clone());
    }
    let path = locate()?;
    *located = Some(path.clone());
    Ok(path)
}

fn locate() -> anyhow::Result<PathBuf> {
    if let Ok(explicit) = std::env::var(HERALD_BIN_ENV) {
        let path = PathBuf::from(&explicit);
        anyhow::ensure!(
            path.is_file(),
            "{HERALD_BIN_ENV}={explicit} is not a file; build it with `cargo build -p herald-node --bin herald`"
        );
        return Ok(path);
    }
    let target_dir = target_dir()?;
    let path = target_dir.join("debug").join(BINARY_NAME);
    if !path.is_file() {
        build(&target_dir)?;
        anyhow::ensure!(
            path.is_file(),
            "`cargo build -p herald-node --bin herald` succeeded but {} does not exist",
            path.display()
        );
    }
    warn_if_stale(&path);
    Ok(path)
}

/// `CARGO_TARGET_DIR`, else the directory two levels above this test binary
/// (`<target>/debug/deps/<test>`), else the workspace's `target/`.
fn target_dir() -> anyhow::Result<PathBuf> {
    if let Ok(dir) = std::env::var("CARGO_TARGET_DIR") {
        let dir = PathBuf::from(dir);
        return Ok(if dir.is_absolute() {
            dir
        } else {
            workspace_dir().join(dir)
        });
    }
    let exe = std::env::current_exe().context("cannot find the test binary's path")?;
    for ancestor in exe.ancestors() {
        if ancestor.file_name().is_some_and(|name| name == "deps")
            && let Some(profile_dir) = ancestor.parent()
            && let Some(target) = profile_dir.parent()
        {
            return Ok(target.to_path_buf());
        }
    }
    Ok(workspace_dir().join("target"))
}

/// The workspace root: this crate's parent directory.
fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("chaos-tests lives inside the workspace")
        .to_path_buf()
}

fn build(target_dir: &Path) -> anyhow::Result<()> {
    eprintln!(
        "chaos: {} is missing; running `cargo build -p herald-node --bin herald`",
        target_dir.join("debug").join(BINARY_NAME).display()
    );
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let status = Command::new(cargo)
        .args(["build", "-p", "herald-node", "--bin", BINARY_NAME])
        .env("CARGO_TARGET_DIR", target_dir)
        .current_dir(workspace_dir())
        .status()
        .context("cannot run cargo to build the herald binary")?;
    anyhow::ensure!(
        status.success(),
        "`cargo build -p herald-node --bin herald` failed ({status}); the chaos tests need the binary"
    );
    Ok(())
}

/// Says so when node sources changed after the binary was built: `cargo test -p
/// herald-chaos-tests` alone does not rebuild it, `cargo test --workspace` does.
fn warn_if_stale(binary: &Path) {
    let Ok(built) = binary.metadata().and_then(|meta| meta.modified()) else {
        return;
    };
    let sources = [
        workspace_dir().join("node/src"),
        workspace_dir().join("proto"),
    ];
    if let Some(newest) = sources.iter().filter_map(|dir| newest_mtime(dir, 6)).max()
        && newest > built
    {
        eprintln!(
            "chaos: warning: {} is older than the node sources; `cargo build -p herald-node --bin herald` refreshes it",
            binary.display()
        );
    }
}

/// The newest modification time under `dir`, at most `depth` levels down.
fn newest_mtime(dir: &Path, depth: u32) -> Option<SystemTime> {
    let mut newest = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        let candidate = if meta.is_dir() {
            if depth == 0 {
                continue;
            }
            newest_mtime(&entry.path(), depth - 1)
        } else {
            meta.modified().ok()
        };
        newest = newest.max(candidate);
    }
    newest
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tests run from `<target>/debug/deps/`, so the target directory is found without
    /// configuration.
    #[test]
    fn target_dir_is_above_the_test_binary() {
        if std::env::var("CARGO_TARGET_DIR").is_ok() {
            return;
        }
        let dir = target_dir().unwrap();
        assert!(dir.join("debug").join("deps").is_dir(), "{}", dir.display());
    }
}
