//! `images`: the Docker images built from this machine's files, offline.
//!
//! - `local`: the provisioner of the `local` target (static busybox, terraform, the
//!   `terraform/local` module and the entrypoint), `fleetplane/provisioner-local:latest`;
//! - `fleet-telemetry`: the fleet service as a static musl binary,
//!   `fleetplane/fleet-telemetry:latest` and `:<crate version>`;
//! - `helm`: the provisioner of deployments onto clusters (static helm, kubectl and busybox,
//!   the workspace's charts and the entrypoint), `fleetplane/provisioner-helm:latest`.
//!
//! Every one is `FROM scratch` with no `RUN` step. Its build context is assembled in a temporary
//! directory and built with `docker build --network none`, so nothing is pulled or downloaded
//! during the build; `DOCKER_HOST` chooses the engine as it does for the docker CLI. The cloud
//! targets' Terraform images pre-install their providers from the registry and are built where
//! there is network (`provisioners/README.md`).

mod fleet_telemetry;
mod helm;
mod local;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::{env, fs};

use anyhow::{Context, Result, bail, ensure};

use crate::ui;

/// The images, in the order they are built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Image {
    Local,
    FleetTelemetry,
    Helm,
}

impl Image {
    const ALL: [Image; 3] = [Image::Local, Image::FleetTelemetry, Image::Helm];

    fn name(self) -> &'static str {
        match self {
            Image::Local => "local",
            Image::FleetTelemetry => "fleet-telemetry",
            Image::Helm => "helm",
        }
    }

    fn parse(name: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|image| image.name() == name)
            .with_context(|| format!("images: no image `{name}` (images: {})", Self::ALL.map(Image::name).join(", ")))
    }
}

const USAGE: &str = "options: --only local|fleet-telemetry|helm (repeatable, or comma-separated), \
                     --tag <image:tag> (the local image's tag)";

pub fn run(args: &[String]) -> Result<()> {
    let mut only = Vec::new();
    let mut tag = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--tag" | "-t" => tag = Some(args.next().context("images: --tag needs a value")?.clone()),
            "--only" => {
                let names = args.next().context("images: --only needs an image name")?;
                for name in names.split(',').filter(|name| !name.is_empty()) {
                    let image = Image::parse(name)?;
                    if !only.contains(&image) {
                        only.push(image);
                    }
                }
            }
            other => bail!("images: unexpected argument `{other}` ({USAGE})"),
        }
    }
    let images: Vec<Image> = if only.is_empty() {
        Image::ALL.to_vec()
    } else {
        Image::ALL.into_iter().filter(|i| only.contains(i)).collect()
    };
    ensure!(
        tag.is_none() || images.contains(&Image::Local),
        "images: --tag names the local provisioner image, which --only leaves out"
    );
    require_command("docker", "docker.io", "building the images")?;

    let root = ui::workspace_root();
    for image in images {
        match image {
            Image::Local => local::build(&root, tag.as_deref().unwrap_or(local::DEFAULT_TAG))?,
            Image::FleetTelemetry => fleet_telemetry::build(&root)?,
            Image::Helm => helm::build(&root)?,
        }
    }
    Ok(())
}

/// Fails, naming the Debian package to install, when `program` is not on `PATH`.
pub(crate) fn require_command(program: &str, package: &str, purpose: &str) -> Result<PathBuf> {
    env::split_paths(&env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .with_context(|| {
            format!(
                "{purpose} needs `{program}`, which is not on PATH: install Debian's `{package}` package \
                 (apt-get install {package})"
            )
        })
}

/// Fails, naming the package to install, unless `path` is a static executable: a FROM-scratch
/// image has no dynamic loader.
fn require_static(path: &Path, install: &str) -> Result<()> {
    ensure!(path.is_file(), "{} not found: {install}", path.display());
    ensure!(
        is_static(path)?,
        "{} is dynamically linked and would not run in a FROM-scratch image: {install}",
        path.display()
    );
    Ok(())
}

/// `docker build --network none` of `context`, tagged with every one of `tags`, under a title,
/// timed; then says how large the image is.
fn docker_build(context: &Path, tags: &[&str]) -> Result<()> {
    let started = std::time::Instant::now();
    let engine = env::var("DOCKER_HOST").unwrap_or_else(|_| "the default docker engine".to_owned());
    let mut command = Command::new("docker");
    command.args(["build", "--network", "none"]);
    for tag in tags {
        command.args(["--tag", tag]);
    }
    crate::test::step(&format!("Building {} on {engine} (--network none)", tags.join(", ")), command.arg(context))?;
    eprintln!("    Finished {} in {:.1}s ({})", tags.join(", "), started.elapsed().as_secs_f64(), image_size(tags[0]));
    Ok(())
}

/// The uid and gid the services run as, non-root (distroless' `nonroot`); the chart's
/// securityContext says the same.
const NONROOT: u32 = 65532;

/// The files of a FROM-scratch image's root that are not the program: `etc/passwd` and
/// `etc/group` naming root and [`NONROOT`], `etc/hosts` (without which "localhost" does not
/// resolve) and an empty `tmp/` anyone may write to, under `rootfs`.
fn write_base_files(rootfs: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;

    let files = [
        (
            "etc/passwd",
            format!(
                "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:{NONROOT}:{NONROOT}:nonroot:/home/nonroot:/sbin/nologin\n"
            ),
        ),
        ("etc/group", format!("root:x:0:\nnonroot:x:{NONROOT}:\n")),
        ("etc/hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n".to_owned()),
    ];
    for (path, content) in files {
        let path = rootfs.join(path);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        fs::write(&path, content).with_context(|| format!("writing {}", path.display()))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644))?;
    }
    let tmp = rootfs.join("tmp");
    fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o1777)).context("making tmp/ writable by all")?;
    Ok(())
}

/// The version of the workspace package `name`, as cargo reads it.
fn package_version(root: &Path, name: &str) -> Result<String> {
    let output = crate::test::cargo(root)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .context("could not run cargo metadata")?;
    ensure!(output.status.success(), "cargo metadata failed");
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("cargo metadata printed something unexpected")?;
    let package = metadata["packages"]
        .as_array()
        .and_then(|packages| packages.iter().find(|package| package["name"] == name))
        .with_context(|| format!("cargo metadata lists no package {name}"))?;
    package["version"].as_str().map(str::to_owned).with_context(|| format!("cargo metadata gives {name} no version"))
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

/// Copies the directory `from` to `to`, with the files and directories whose name `keep` accepts.
fn copy_tree(from: &Path, to: &Path, keep: fn(&str) -> bool) -> Result<()> {
    fs::create_dir_all(to).with_context(|| format!("could not create {}", to.display()))?;
    let entries = fs::read_dir(from).with_context(|| format!("could not read {}", from.display()))?;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        if !keep(&name.to_string_lossy()) {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target, keep)?;
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

/// A temporary directory for one image's build context, removed on drop.
struct ContextDir(PathBuf);

impl ContextDir {
    fn create(image: &str) -> Result<Self> {
        let path = env::temp_dir().join(format!("fleetplane-image-{image}-{}", std::process::id()));
        if path.exists() {
            fs::remove_dir_all(&path).with_context(|| format!("removing a stale {}", path.display()))?;
        }
        fs::create_dir_all(&path).with_context(|| format!("could not create {}", path.display()))?;
        eprintln!("    Assembling the {image} build context in {}", path.display());
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
