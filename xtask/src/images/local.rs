//! The `local` target's provisioner image: static busybox, the terraform binary, the
//! `terraform/local` module and the entrypoint (`provisioners/local/Dockerfile`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;
use std::{env, fs};

use anyhow::{Context, Result, ensure};

use super::{ContextDir, copy_tree, docker_build, is_static, link_or_copy, require_static};

pub const DEFAULT_TAG: &str = "fleetplane/provisioner-local:latest";
/// Where Debian's `busybox-static` installs it (the `busybox` package's binary is dynamic).
pub const BUSYBOX: &str = "/bin/busybox";
/// What to do when [`BUSYBOX`] is missing or dynamic.
pub const BUSYBOX_PACKAGE: &str = "the image needs a static busybox: install Debian's `busybox-static` package (apt-get install busybox-static), \
     which replaces a dynamic one";
/// The host's CA bundle, for a state backend behind https; the image works without it.
pub const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Builds the `local` provisioner image from the workspace at `root` and tags it `tag`.
pub fn build(root: &Path, tag: &str) -> Result<()> {
    let started = Instant::now();
    let busybox = Path::new(BUSYBOX);
    require_static(busybox, BUSYBOX_PACKAGE)?;
    let terraform = terraform_binary()?;
    ensure!(
        is_static(&terraform)?,
        "{} is dynamically linked and would not run in a FROM-scratch image; use HashiCorp's \
         release binary (or point TERRAFORM at one)",
        terraform.display()
    );

    let context = ContextDir::create("local")?;
    let dir = context.path();
    link_or_copy(busybox, &dir.join("busybox"))?;
    link_or_copy(&terraform, &dir.join("terraform"))?;
    fs::copy(root.join("provisioners/entrypoint.sh"), dir.join("entrypoint.sh"))
        .context("copying provisioners/entrypoint.sh")?;
    fs::copy(root.join("provisioners/local/Dockerfile"), dir.join("Dockerfile"))
        .context("copying provisioners/local/Dockerfile")?;
    copy_tree(&root.join("terraform/local"), &dir.join("module"), module_file)?;
    let certs = dir.join("certs");
    fs::create_dir(&certs).context("creating certs/ in the build context")?;
    if Path::new(CA_BUNDLE).is_file() {
        fs::copy(CA_BUNDLE, certs.join("ca-certificates.crt")).context("copying the CA bundle")?;
    } else {
        eprintln!("        Note: no {CA_BUNDLE}; the image will not trust https state backends");
    }
    eprintln!(
        "    Assembled in {:.1}s (terraform: {}, {})",
        started.elapsed().as_secs_f64(),
        terraform.display(),
        terraform_version(&terraform)
    );

    docker_build(dir, &[tag])
}

/// `TERRAFORM` when set, else the first `terraform` on `PATH`.
fn terraform_binary() -> Result<PathBuf> {
    if let Some(path) = env::var_os("TERRAFORM").filter(|path| !path.is_empty()) {
        let path = PathBuf::from(path);
        ensure!(path.is_file(), "TERRAFORM={} is not a file", path.display());
        return Ok(path);
    }
    env::split_paths(&env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join("terraform"))
        .find(|candidate| candidate.is_file())
        .context("no terraform on PATH; install it or set TERRAFORM to the binary")
}

fn terraform_version(terraform: &Path) -> String {
    Command::new(terraform)
        .arg("version")
        .env("CHECKPOINT_DISABLE", "1")
        .output()
        .ok()
        .and_then(|output| String::from_utf8_lossy(&output.stdout).lines().next().map(str::to_owned))
        .unwrap_or_else(|| "version unknown".to_owned())
}

/// Whether a file of the module goes into the image: not what a developer's `terraform init` or
/// `apply` in the source directory may have left there (`.terraform/`, state files, plans).
fn module_file(name: &str) -> bool {
    !((name.starts_with(".terraform") && name != ".terraform.lock.hcl")
        || name.contains(".tfstate")
        || name.ends_with(".tfplan"))
}
