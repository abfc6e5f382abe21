//! Lets this crate's own tests and examples run without LD_LIBRARY_PATH: they get an
//! rpath to the folder where flashsci-sys found libflashsci (DEP_FLASHSCI_LIBDIR).
//! Programs of other crates are not touched: they find the library as they choose.
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_FLASHSCI_LIBDIR");
    if let Ok(dir) = std::env::var("DEP_FLASHSCI_LIBDIR") {
        println!("cargo:rustc-link-arg-tests=-Wl,-rpath,{dir}");
        println!("cargo:rustc-link-arg-examples=-Wl,-rpath,{dir}");
    }
}
