//! Builds the static agent binary and hands its path to `src/agent_binary.rs`.
//!
//! The agent runs inside sandboxes whose images may carry any libc or none, so
//! it is linked statically (glibc `crt-static`, static-pie). A crate-wide
//! `crt-static` flag would also hit proc-macros, which cannot be static, and an
//! explicit `--target` would move `target/release/sandpit`; so the agent is
//! built here by a nested cargo with its own target directory and the explicit
//! host target, and embedded into `sandpit` with `include_bytes!`.

use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "x86_64-unknown-linux-gnu";

fn main() {
    let manifest_dir = PathBuf::from(env("CARGO_MANIFEST_DIR"));
    let workspace = manifest_dir.ancestors().nth(2).expect("workspace root");
    for dir in ["crates/agent", "crates/api"] {
        println!("cargo:rerun-if-changed={}", workspace.join(dir).display());
    }
    println!(
        "cargo:rerun-if-changed={}",
        workspace.join("Cargo.lock").display()
    );

    let out_dir = PathBuf::from(env("OUT_DIR"));
    let target_root = out_dir
        .ancestors()
        .find(|p| p.join("CACHEDIR.TAG").exists())
        .unwrap_or(&out_dir)
        .to_path_buf();
    let agent_target = target_root.join("static-agent");
    let release = env("PROFILE") == "release";

    let mut cmd = Command::new(env("CARGO"));
    cmd.current_dir(workspace)
        .args([
            "build",
            "--locked",
            "-p",
            "sandpit-agent",
            "--bin",
            "sandpit-agent",
        ])
        .args(["--target", TARGET, "--target-dir"])
        .arg(&agent_target)
        // Not position-independent: a static-pie's loader relocates its
        // `.data.rel.ro` at every start, ~200 KiB of private dirty memory
        // in every sandbox; a fixed-address executable maps it clean from
        // the page cache, shared by all (the agent's ASLR guards nothing:
        // it runs inside the sandbox, with the sandbox's privileges).
        .env(
            "RUSTFLAGS",
            "-C target-feature=+crt-static -C relocation-model=static",
        )
        // Sandboxes map the agent from disk; symbols and debug info are dead
        // weight there (its panics still name the failing line of code).
        .env("CARGO_PROFILE_RELEASE_STRIP", "symbols")
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET");
    if release {
        cmd.arg("--release");
    }
    let status = cmd.status().expect("run cargo for the static agent");
    assert!(status.success(), "building the static agent failed");

    let profile_dir = if release { "release" } else { "debug" };
    let binary = agent_target
        .join(TARGET)
        .join(profile_dir)
        .join("sandpit-agent");
    check_exists(&binary);
    println!("cargo:rustc-env=SANDPIT_STATIC_AGENT={}", binary.display());
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"))
}

fn check_exists(path: &Path) {
    assert!(path.is_file(), "static agent missing at {}", path.display());
}
