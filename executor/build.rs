//! Embeds the provisioner entrypoint and every Terraform module, so that the process executor
//! runs exactly the files the images contain, from an installed binary with no checkout.

use std::{
    env, fs,
    io::Write,
    path::{Path, PathBuf},
};

fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    let mut entries: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name.starts_with('.') || name.ends_with(".tfstate") || name.ends_with(".tfstate.backup") {
            continue;
        }
        if path.is_dir() {
            println!("cargo:rerun-if-changed={}", path.display());
            collect(&path, files);
        } else {
            files.push(path);
        }
    }
}

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest.parent().expect("the crate sits in the workspace").to_owned();
    let mut files = Vec::new();
    for dir in ["terraform", "provisioners"] {
        let dir = root.join(dir);
        println!("cargo:rerun-if-changed={}", dir.display());
        collect(&dir, &mut files);
    }
    files.retain(|f| {
        let relative = f.strip_prefix(&root).unwrap_or(f);
        relative.starts_with("terraform") && relative.extension().is_some_and(|e| e == "tf" || e == "tfvars")
            || relative == Path::new("provisioners/entrypoint.sh")
    });

    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("embedded.rs");
    let mut code = fs::File::create(&out).expect("create embedded.rs");
    writeln!(code, "/// Provisioner files by path from the workspace root.").expect("write");
    writeln!(code, "pub static FILES: &[(&str, &[u8])] = &[").expect("write");
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
        let relative = file.strip_prefix(&root).expect("under root").to_string_lossy().replace('\\', "/");
        writeln!(code, "    ({relative:?}, include_bytes!({:?})),", file.display().to_string()).expect("write");
    }
    writeln!(code, "];").expect("write");
}
