//! Finds libflashsci for the linker, without any registry crate:
//!
//! 1. `FLASHSCI_DIR`: an install prefix (its `lib/`, `lib64/` or `lib/<triple>/`) or the
//!    folder that holds `libflashsci.so` itself (a build directory). An explicit setting
//!    that holds no library is an error.
//! 2. Otherwise the `pkg-config` program (or `$PKG_CONFIG`), asked for `flashsci`
//!    (set `PKG_CONFIG_PATH=<prefix>/lib/pkgconfig` for a private install).
//! 3. Otherwise plain `-lflashsci`, for a library in the linker's default paths.
//!
//! The folder found is published to dependents as `DEP_FLASHSCI_LIBDIR` (this crate
//! `links = "flashsci"`), and recorded as an rpath in this crate's own tests.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const LIBRARY_FILES: &[&str] = &["libflashsci.so", "libflashsci.dylib", "flashsci.lib"];

fn has_library(dir: &Path) -> bool {
    LIBRARY_FILES.iter().any(|f| dir.join(f).exists())
}

fn from_flashsci_dir(dir: &str) -> (PathBuf, Option<PathBuf>) {
    let root = PathBuf::from(dir);
    let target = env::var("TARGET").unwrap_or_default();
    let triple_dir = {
        // Debian's multiarch folder: x86_64-unknown-linux-gnu -> x86_64-linux-gnu.
        let mut parts = target.split('-');
        match (parts.next(), parts.nth(1), parts.next()) {
            (Some(arch), Some(os), Some(abi)) => format!("{arch}-{os}-{abi}"),
            _ => String::new(),
        }
    };
    let candidates = [
        root.join("lib"),
        root.join("lib64"),
        root.join("lib").join(triple_dir),
        root.clone(),
    ];
    for lib in candidates {
        if has_library(&lib) {
            let include = root.join("include");
            let include = include.join("flashsci.h").exists().then_some(include);
            return (lib, include);
        }
    }
    panic!(
        "FLASHSCI_DIR={dir} holds no libflashsci.so (looked in lib/, lib64/, lib/<triple>/ and the folder itself); \
         point it at an install prefix (`cmake --install build --prefix <prefix>`) or a build directory"
    );
}

/// `pkg-config --libs --cflags flashsci`, run as a program. None when pkg-config or the
/// package is missing.
fn from_pkg_config() -> Option<(Vec<PathBuf>, Vec<String>, Option<PathBuf>)> {
    let program = env::var("PKG_CONFIG").unwrap_or_else(|_| "pkg-config".into());
    let out = Command::new(&program).args(["--libs", "--cflags", "flashsci"]).output();
    let out = match out {
        Ok(out) if out.status.success() => out,
        Ok(out) => {
            println!(
                "cargo:warning=flashsci-sys: `{program} --libs flashsci` failed ({}); set PKG_CONFIG_PATH or FLASHSCI_DIR",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return None;
        }
        Err(e) => {
            println!("cargo:warning=flashsci-sys: cannot run {program} ({e}); set FLASHSCI_DIR to find libflashsci");
            return None;
        }
    };
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (mut dirs, mut libs, mut include) = (Vec::new(), Vec::new(), None);
    for token in text.split_whitespace() {
        if let Some(d) = token.strip_prefix("-L") {
            dirs.push(PathBuf::from(d));
        } else if let Some(l) = token.strip_prefix("-l") {
            libs.push(l.to_string());
        } else if let Some(i) = token.strip_prefix("-I") {
            include.get_or_insert_with(|| PathBuf::from(i));
        }
    }
    if libs.is_empty() {
        libs.push("flashsci".into());
    }
    Some((dirs, libs, include))
}

fn main() {
    for var in ["FLASHSCI_DIR", "PKG_CONFIG_PATH", "PKG_CONFIG", "PKG_CONFIG_LIBDIR", "PKG_CONFIG_SYSROOT_DIR"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    println!("cargo:rerun-if-changed=build.rs");

    let (dirs, libs, include) = match env::var("FLASHSCI_DIR") {
        Ok(dir) if !dir.is_empty() => {
            let (lib, include) = from_flashsci_dir(&dir);
            (vec![lib], vec!["flashsci".to_string()], include)
        }
        _ => from_pkg_config().unwrap_or_else(|| {
            println!("cargo:warning=flashsci-sys: linking -lflashsci from the linker's default paths");
            (Vec::new(), vec!["flashsci".to_string()], None)
        }),
    };
    for dir in &dirs {
        println!("cargo:rustc-link-search=native={}", dir.display());
    }
    for lib in &libs {
        println!("cargo:rustc-link-lib=dylib={lib}");
    }
    if let Some(lib_dir) = dirs.iter().find(|d| has_library(d)).or(dirs.first()) {
        println!("cargo:libdir={}", lib_dir.display());
        // Only this crate's own test binary is linked with it (link args do not propagate).
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib_dir.display());
    }
    if let Some(include) = include {
        println!("cargo:include={}", include.display());
    }
}
