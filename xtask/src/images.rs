//! `images`: the provisioner image of the `local` target, built from this machine's files.
//!
//! The image is `FROM scratch`: static busybox, the terraform binary, the `terraform/local`
//! module and the entrypoint. The build context is assembled in a temporary directory and
//! built with `docker build --network none`, so nothing is pulled or downloaded; `DOCKER_HOST`
//! chooses the engine as it does for the docker CLI. The cloud targets' images pre-install
//! their providers from the registry and are built where there is network
//! (`provisioners/README.md`).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;
use std::{env, fs};

use anyhow::{Context, Result, bail, ensure};

use crate::ui;

pub const DEFAULT_TAG: &str = "fleetplane/provisioner-local:latest";
/// Where Debian's `busybox-static` installs it (the `busybox` package's binary is dynamic).
const BUSYBOX: &str = "/bin/busybox";
/// The host's CA bundle, for a state backend behind https; the image works without it.
const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

pub fn run(args: &[String]) -> Result<()> {
    let mut tag = DEFAULT_TAG.to_owned();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--tag" | "-t" => tag = args.next().context("images: --tag needs a value")?.clone(),
            other => bail!("images: unexpected argument `{other}` (options: --tag <image:tag>)"),
        }
    }
    build_local_image(&ui::workspace_root(), &tag)
}

/// Builds the `local` provisioner image from the workspace at `root` and tags it `tag`.
pub fn build_local_image(root: &Path, tag: &str) -> Result<()> {
    let started = Instant::now();
    let busybox = Path::new(BUSYBOX);
    ensure!(
        busybox.is_file(),
        "{BUSYBOX} not found: the provisioner image needs a static busybox; install Debian's \
         `busybox-static` package (apt-get install busybox-static)"
    );
    ensure!(
        is_static(busybox)?,
        "{BUSYBOX} is dynamically linked and would not run in a FROM-scratch image; install \
         Debian's `busybox-static` package (apt-get install busybox-static), which replaces it"
    );
    let terraform = terraform_binary()?;
    ensure!(
        is_static(&terraform)?,
        "{} is dynamically linked and would not run in a FROM-scratch image; use HashiCorp's \
         release binary (or point TERRAFORM at one)",
        terraform.display()
    );

    let context = ContextDir::create()?;
    let dir = context.path();
    eprintln!("    Assembling the build context in {}", dir.display());
    link_or_copy(busybox, &dir.join("busybox"))?;
    link_or_copy(&terraform, &dir.join("terraform"))?;
    fs::copy(root.join("provisioners/entrypoint.sh"), dir.join("entrypoint.sh"))
        .context("copying provisioners/entrypoint.sh")?;
    fs::copy(root.join("provisioners/local/Dockerfile"), dir.join("Dockerfile"))
        .context("copying provisioners/local/Dockerfile")?;
    copy_module(&root.join("terraform/local"), &dir.join("module"))?;
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

    let engine = env::var("DOCKER_HOST").unwrap_or_else(|_| "the default docker engine".to_owned());
    crate::test::step(
        &format!("Building {tag} on {engine} (--network none)"),
        Command::new("docker").args(["build", "--network", "none", "--tag", tag]).arg(dir),
    )?;
    eprintln!("    Finished {tag} in {:.1}s ({})", started.elapsed().as_secs_f64(), image_size(tag));
    Ok(())
}

/// Runs `command` under a title, timed, the way `cargo xtask test` shows its steps.
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

/// Whether an ELF executable is statically linked: it names no program interpreter
/// (`PT_INTERP`), so it runs without a dynamic loader, which a FROM-scratch image lacks.
fn is_static(path: &Path) -> Result<bool> {
    const PT_INTERP: u32 = 3;
    // The program headers follow the ELF header in every linker's output; the whole file is
    // read only for an unusual layout (terraform is about 90 MB).
    let mut elf = Vec::new();
    let file = fs::File::open(path).with_context(|| format!("could not open {}", path.display()))?;
    file.take(64 * 1024).read_to_end(&mut elf).with_context(|| format!("could not read {}", path.display()))?;
    ensure!(elf.len() >= 64 && elf.starts_with(b"\x7fELF"), "{} is not an ELF executable", path.display());
    ensure!(elf[5] == 1, "{} is not a little-endian ELF executable", path.display());
    let class = elf[4];
    let header = |elf: &[u8]| -> Option<(usize, usize, usize)> {
        let u16_at = |at: usize| Some(u16::from_le_bytes(elf.get(at..at + 2)?.try_into().ok()?) as usize);
        let u32_at = |at: usize| Some(u32::from_le_bytes(elf.get(at..at + 4)?.try_into().ok()?) as usize);
        let u64_at = |at: usize| Some(u64::from_le_bytes(elf.get(at..at + 8)?.try_into().ok()?) as usize);
        // e_phoff, e_phentsize and e_phnum of 32-bit (class 1) and 64-bit (class 2) files.
        match class {
            1 => Some((u32_at(0x1c)?, u16_at(0x2a)?, u16_at(0x2c)?)),
            2 => Some((u64_at(0x20)?, u16_at(0x36)?, u16_at(0x38)?)),
            _ => None,
        }
    };
    let (phoff, phentsize, phnum) = header(&elf).with_context(|| format!("{} has a bad ELF header", path.display()))?;
    if phoff + phnum * phentsize > elf.len() {
        elf = fs::read(path).with_context(|| format!("could not read {}", path.display()))?;
    }
    for index in 0..phnum {
        let at = phoff + index * phentsize;
        let p_type = elf.get(at..at + 4).with_context(|| format!("{} is truncated", path.display()))?;
        if u32::from_le_bytes([p_type[0], p_type[1], p_type[2], p_type[3]]) == PT_INTERP {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Hard-links `from` to `to` (terraform is about 90 MB), copying when they are on different
/// file systems. The copy keeps the executable bit, which `COPY` carries into the image.
fn link_or_copy(from: &Path, to: &Path) -> Result<()> {
    if fs::hard_link(from, to).is_ok() {
        return Ok(());
    }
    fs::copy(from, to).with_context(|| format!("could not copy {} to {}", from.display(), to.display()))?;
    Ok(())
}

/// Copies the module's files, leaving out what a developer's `terraform init` or `apply` in
/// the source directory may have left there (`.terraform/`, state files, plans).
fn copy_module(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to).with_context(|| format!("could not create {}", to.display()))?;
    let entries = fs::read_dir(from).with_context(|| format!("could not read {}", from.display()))?;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let name_str = name.to_string_lossy();
        if (name_str.starts_with(".terraform") && name_str != ".terraform.lock.hcl")
            || name_str.contains(".tfstate")
            || name_str.ends_with(".tfplan")
        {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type()?.is_dir() {
            copy_module(&entry.path(), &target)?;
        } else {
            fs::copy(entry.path(), &target).with_context(|| format!("could not copy {}", entry.path().display()))?;
        }
    }
    Ok(())
}

fn image_size(tag: &str) -> String {
    Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Size}}", tag])
        .output()
        .ok()
        .and_then(|output| String::from_utf8_lossy(&output.stdout).trim().parse::<u64>().ok())
        .map_or_else(|| "size unknown".to_owned(), |bytes| format!("{:.0} MB", bytes as f64 / 1e6))
}

/// A temporary directory, removed on drop.
struct ContextDir(PathBuf);

impl ContextDir {
    fn create() -> Result<Self> {
        let path = env::temp_dir().join(format!("fleetplane-provisioner-local-{}", std::process::id()));
        if path.exists() {
            fs::remove_dir_all(&path).with_context(|| format!("removing a stale {}", path.display()))?;
        }
        fs::create_dir_all(&path).with_context(|| format!("could not create {}", path.display()))?;
        Ok(Self(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ContextDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
