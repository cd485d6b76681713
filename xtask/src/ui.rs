//! `build-ui` and `serve`: the web UI's browser half, built without cargo-leptos.
//!
//! The web crate is compiled for `wasm32-unknown-unknown` with its `hydrate` feature, then the
//! `wasm-bindgen` step runs in-process through `wasm-bindgen-cli-support` (the same version as
//! the `wasm-bindgen` crate, which the schema check requires). The output lands in
//! `<target dir>/site/pkg` under the names Leptos's `HydrationScripts` asks for, which is where
//! the server looks by default (`<exe dir>/../site`) or wherever `FLEETPLANE_SITE_DIR` points.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;
use std::{env, fs};

use anyhow::{Context, Result, bail, ensure};

const WASM_TARGET: &str = "wasm32-unknown-unknown";
const WEB_PACKAGE: &str = "fleetplane-web";
/// Leptos's `output_name`: the page loads `/pkg/<name>.js` and `/pkg/<name>_bg.wasm`.
const OUTPUT_NAME: &str = "fleetplane_web";
/// The cargo profile for `--release` wasm builds (size-optimised, defined in the workspace).
const RELEASE_PROFILE: &str = "wasm-release";

pub struct BuildOptions {
    pub release: bool,
}

impl BuildOptions {
    pub fn parse(args: &[String]) -> Result<Self> {
        let mut options = Self { release: false };
        for arg in args {
            match arg.as_str() {
                "--release" | "-r" => options.release = true,
                other => bail!("build-ui: unexpected argument `{other}`"),
            }
        }
        Ok(options)
    }
}

pub struct ServeOptions {
    pub build: BuildOptions,
    /// Passed to `fleetplane serve` as they are.
    pub server_args: Vec<String>,
}

impl ServeOptions {
    pub fn parse(args: &[String]) -> Result<Self> {
        let (ours, server_args) = match args.iter().position(|arg| arg == "--") {
            Some(split) => (&args[..split], args[split + 1..].to_vec()),
            None => (args, Vec::new()),
        };
        let build = BuildOptions::parse(ours).context("serve")?;
        Ok(Self { build, server_args })
    }
}

/// Builds the UI; returns the site directory (the parent of `pkg/`).
pub fn build_ui(options: &BuildOptions) -> Result<PathBuf> {
    let started = Instant::now();
    let root = workspace_root();
    let target_dir = target_dir(&root)?;
    ensure_target(WASM_TARGET)?;

    let profile = if options.release { RELEASE_PROFILE } else { "dev" };
    eprintln!("    Building {WEB_PACKAGE} for {WASM_TARGET} (profile {profile})");
    let status = Command::new(cargo())
        .current_dir(&root)
        .args(["build", "--package", WEB_PACKAGE, "--lib", "--target", WASM_TARGET])
        .args(["--no-default-features", "--features", "hydrate", "--profile", profile])
        .env("CARGO_TARGET_DIR", &target_dir)
        .status()
        .context("could not run cargo")?;
    ensure!(status.success(), "building the web crate for wasm failed");

    // Cargo's output folder for a profile: `dev` builds into `debug/`.
    let profile_dir = if options.release { RELEASE_PROFILE } else { "debug" };
    let wasm = target_dir.join(WASM_TARGET).join(profile_dir).join(format!("{}.wasm", WEB_PACKAGE.replace('-', "_")));
    ensure!(wasm.is_file(), "the wasm build produced no {}", wasm.display());

    let site = target_dir.join("site");
    // The bundle is assembled next to `pkg/` and swapped in when complete, so that a running
    // server never serves half of it, nor a stale snippet next to new files.
    let staging = site.join("pkg.new");
    if staging.exists() {
        fs::remove_dir_all(&staging).with_context(|| format!("could not clear {}", staging.display()))?;
    }
    fs::create_dir_all(&staging).with_context(|| format!("could not create {}", staging.display()))?;

    eprintln!("     Binding {}", wasm.display());
    wasm_bindgen_cli_support::Bindgen::new()
        .input_path(&wasm)
        .out_name(OUTPUT_NAME)
        .web(true)?
        .typescript(false)
        .debug(!options.release)
        .keep_debug(!options.release)
        .generate(&staging)
        .context("wasm-bindgen failed")?;

    let js = staging.join(format!("{OUTPUT_NAME}.js"));
    let bg_wasm = staging.join(format!("{OUTPUT_NAME}_bg.wasm"));
    ensure!(js.is_file() && bg_wasm.is_file(), "wasm-bindgen did not write {} and {}", js.display(), bg_wasm.display());
    if options.release {
        optimize(&bg_wasm);
    }
    for file in [&js, &bg_wasm] {
        gzip(file, options.release)?;
    }

    let pkg = site.join("pkg");
    if pkg.exists() {
        fs::remove_dir_all(&pkg).with_context(|| format!("could not remove the old {}", pkg.display()))?;
    }
    fs::rename(&staging, &pkg).with_context(|| format!("could not move the bundle to {}", pkg.display()))?;
    eprintln!(
        "    Finished UI in {:.1}s: {} (js {}, wasm {})",
        started.elapsed().as_secs_f64(),
        pkg.display(),
        size(&pkg.join(format!("{OUTPUT_NAME}.js"))),
        size(&pkg.join(format!("{OUTPUT_NAME}_bg.wasm"))),
    );
    Ok(site)
}

/// Builds the UI, then runs the server with it until the server exits.
pub fn serve(options: &ServeOptions) -> Result<()> {
    let site = build_ui(&options.build)?;
    let root = workspace_root();
    // The fleet services are built too, so that `cargo run -p fleet-telemetry` and
    // `cargo run -p fleet-sim` (the README's fleet section) start at once.
    let mut fleet = Command::new(cargo());
    fleet.current_dir(&root).args(["build", "--package", "fleet-telemetry", "--package", "fleet-sim"]);
    if options.build.release {
        fleet.arg("--release");
    }
    let status = fleet.env("CARGO_TARGET_DIR", target_dir(&root)?).status().context("could not run cargo")?;
    ensure!(status.success(), "building the fleet services failed");
    let mut command = Command::new(cargo());
    command.current_dir(&root).args(["run", "--package", "fleetplane"]);
    if options.build.release {
        command.arg("--release");
    }
    command
        .args(["--", "serve"])
        .args(&options.server_args)
        .env("FLEETPLANE_SITE_DIR", &site)
        .env("CARGO_TARGET_DIR", target_dir(&root)?);
    eprintln!("     Serving {} with the UI from {}", expected_url(), site.display());
    let status = command.status().context("could not run cargo")?;
    ensure!(status.success(), "fleetplane exited with {status}");
    Ok(())
}

/// Where the server will listen: `FLEETPLANE_LISTEN`, or its default. (A config file can
/// say otherwise; the server logs the address it really uses.)
fn expected_url() -> String {
    let listen = env::var("FLEETPLANE_LISTEN").unwrap_or_else(|_| "127.0.0.1:8080".to_owned());
    let listen = listen.replace("0.0.0.0", "127.0.0.1").replace("[::]", "[::1]");
    format!("http://{listen}/")
}

/// Shrinks the wasm with binaryen's `wasm-opt` when it is installed; the build is complete
/// without it, just larger.
///
/// Old releases (Debian 12's binaryen 108, for one) rewrite wasm-bindgen's `externref` table
/// as `anyref`, and the bundle then fails at start-up in the browser; 132 is known to work.
/// So the result is only kept if every exported table kept its type.
fn optimize(wasm: &Path) {
    let optimized = wasm.with_extension("opt.wasm");
    // The features rustc enables by default for wasm32-unknown-unknown; older wasm-opt
    // releases do not enable all of them on their own.
    let result = Command::new("wasm-opt")
        .args(["-Oz", "--strip-debug"])
        .args([
            "--enable-bulk-memory",
            "--enable-mutable-globals",
            "--enable-nontrapping-float-to-int",
            "--enable-sign-ext",
            "--enable-reference-types",
            "--enable-multivalue",
        ])
        .arg(wasm)
        .arg("-o")
        .arg(&optimized)
        .status();
    let outcome = match result {
        Err(_) => {
            eprintln!("        Note: wasm-opt is not installed; skipping size optimisation");
            return;
        }
        Ok(status) if !status.success() => Err(format!("wasm-opt failed ({status})")),
        Ok(_) => match (exported_tables(wasm), exported_tables(&optimized)) {
            (Ok(before), Ok(after)) if before == after => {
                fs::rename(&optimized, wasm).map_err(|error| format!("could not replace the wasm: {error}"))
            }
            (Ok(_), Ok(_)) => Err(format!(
                "{} changed the type of the exported tables (binaryen too old for wasm-bindgen's \
                 externref table; 132 works)",
                wasm_opt_version()
            )),
            (Err(error), _) | (_, Err(error)) => Err(format!("could not read the wasm back: {error:#}")),
        },
    };
    if let Err(reason) = outcome {
        eprintln!("     Warning: {reason}; keeping the unoptimised wasm");
        let _ = fs::remove_file(&optimized);
    }
}

/// The element type of every exported table, by export name.
fn exported_tables(wasm: &Path) -> Result<Vec<(String, String)>> {
    let module = walrus::Module::from_file(wasm)?;
    let mut tables: Vec<(String, String)> = module
        .exports
        .iter()
        .filter_map(|export| match export.item {
            walrus::ExportItem::Table(id) => {
                Some((export.name.clone(), format!("{:?}", module.tables.get(id).element_ty)))
            }
            _ => None,
        })
        .collect();
    tables.sort();
    Ok(tables)
}

fn wasm_opt_version() -> String {
    Command::new("wasm-opt")
        .arg("--version")
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        .unwrap_or_else(|_| "wasm-opt".to_owned())
}

/// Writes `<file>.gz` next to `file`: the debug bundle is several megabytes, and even the
/// optimised one shrinks to about a third. Debug builds use a fast level.
fn gzip(file: &Path, best: bool) -> Result<()> {
    use flate2::Compression;
    use flate2::write::GzEncoder;
    use std::io::Write;

    let data = fs::read(file).with_context(|| format!("could not read {}", file.display()))?;
    let level = if best { Compression::best() } else { Compression::fast() };
    let mut encoder = GzEncoder::new(Vec::with_capacity(data.len() / 3), level);
    encoder.write_all(&data)?;
    let compressed = encoder.finish()?;
    let mut target = file.as_os_str().to_owned();
    target.push(".gz");
    fs::write(&target, compressed).with_context(|| format!("could not write {}", Path::new(&target).display()))?;
    Ok(())
}

/// Installs a compilation target (wasm for the UI, musl for the images' static binaries) with
/// rustup when it is missing (rustup downloads the standard library for it; nothing else is
/// fetched).
pub fn ensure_target(target: &str) -> Result<()> {
    let Ok(output) = Command::new("rustup").args(["target", "list", "--installed"]).output() else {
        // No rustup: a toolchain installed some other way must already have the target.
        return Ok(());
    };
    let installed = String::from_utf8_lossy(&output.stdout);
    if installed.lines().any(|line| line.trim() == target) {
        return Ok(());
    }
    eprintln!("  Installing {target} with rustup");
    let status = Command::new("rustup").args(["target", "add", target]).status().context("could not run rustup")?;
    ensure!(status.success(), "`rustup target add {target}` failed");
    Ok(())
}

/// The workspace this xtask runs for.
///
/// Taken from the environment `cargo run` sets, not from the path baked in at compile time: two
/// clones that share a `CARGO_TARGET_DIR` (a CI checkout and a working copy) share one xtask
/// binary, and each must work on its own sources.
pub fn workspace_root() -> PathBuf {
    let manifest_dir =
        env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest_dir.parent().map_or_else(|| manifest_dir.clone(), Path::to_path_buf)
}

/// `CARGO_TARGET_DIR` when set (relative to the workspace root), else what cargo reports.
pub fn target_dir(root: &Path) -> Result<PathBuf> {
    if let Some(dir) = env::var_os("CARGO_TARGET_DIR").filter(|dir| !dir.is_empty()) {
        return Ok(root.join(dir));
    }
    let output = Command::new(cargo())
        .current_dir(root)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .context("could not run cargo metadata")?;
    ensure!(output.status.success(), "cargo metadata failed");
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("cargo metadata printed something unexpected")?;
    let dir = metadata["target_directory"].as_str().context("cargo metadata did not report target_directory")?;
    Ok(PathBuf::from(dir))
}

/// The cargo that runs us, so that the same toolchain builds the UI.
pub fn cargo() -> String {
    env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

fn size(path: &Path) -> String {
    match fs::metadata(path) {
        Ok(meta) if meta.len() >= 1024 * 1024 => format!("{:.1} MB", meta.len() as f64 / (1024.0 * 1024.0)),
        Ok(meta) => format!("{} KB", meta.len().div_ceil(1024)),
        Err(_) => "?".to_owned(),
    }
}
