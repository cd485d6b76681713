//! The `fleet-telemetry` image: the fleet service as a static musl binary, `FROM scratch`
//! (`fleet/telemetry/Dockerfile`), tagged `latest` and with the crate's version, which is the
//! chart's `appVersion` and so the tag the chart deploys.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result, ensure};

use super::{ContextDir, docker_build, is_static, link_or_copy, package_version, require_command, write_base_files};
use crate::{test::step, ui};

pub const REPOSITORY: &str = "fleetplane/fleet-telemetry";
const PACKAGE: &str = "fleet-telemetry";
const TARGET: &str = "x86_64-unknown-linux-musl";
/// Release, stripped (the workspace's Cargo.toml).
const PROFILE: &str = "image";

pub fn build(root: &Path) -> Result<()> {
    ui::ensure_target(TARGET)?;
    // aws-lc and the bundled SQLite are C, compiled for musl by musl-gcc.
    require_command("musl-gcc", "musl-tools", "building fleet-telemetry as a static musl binary")?;
    let version = package_version(root, PACKAGE)?;
    step(
        &format!("Building {PACKAGE} {version} for {TARGET} (profile {PROFILE})"),
        crate::test::cargo(root).args([
            "build",
            "--package",
            PACKAGE,
            "--bin",
            PACKAGE,
            "--target",
            TARGET,
            "--profile",
            PROFILE,
        ]),
    )?;
    let binary = ui::target_dir(root)?.join(TARGET).join(PROFILE).join(PACKAGE);
    ensure!(
        is_static(&binary)?,
        "{} is dynamically linked: a FROM-scratch image has no loader to run it",
        binary.display()
    );
    let size = fs::metadata(&binary).with_context(|| format!("reading {}", binary.display()))?.len();
    eprintln!("    {PACKAGE}: {:.1} MB, static, stripped", size as f64 / 1e6);

    let context = ContextDir::create(PACKAGE)?;
    let dir = context.path();
    link_or_copy(&binary, &dir.join(PACKAGE))?;
    write_base_files(&dir.join("rootfs"))?;
    fs::create_dir(dir.join("data")).context("creating data/ in the build context")?;
    fs::copy(root.join("fleet/telemetry/Dockerfile"), dir.join("Dockerfile"))
        .context("copying fleet/telemetry/Dockerfile")?;

    docker_build(dir, &[&format!("{REPOSITORY}:latest"), &format!("{REPOSITORY}:{version}")])
}
