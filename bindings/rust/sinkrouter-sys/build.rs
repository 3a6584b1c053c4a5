//! Links libsinkrouter. SINKROUTER_LIB_DIR names the folder holding libsinkrouter.so when it is
//! not on the linker's default search path (a build tree: build/default/lib).

fn main() {
    println!("cargo:rerun-if-env-changed=SINKROUTER_LIB_DIR");
    if let Some(dir) = std::env::var_os("SINKROUTER_LIB_DIR") {
        let dir = std::path::PathBuf::from(dir);
        println!("cargo:rustc-link-search=native={}", dir.display());
        // Dependent build scripts can read it back as DEP_SINKROUTER_LIB_DIR.
        println!("cargo:lib_dir={}", dir.display());
    }
    println!("cargo:rustc-link-lib=dylib=sinkrouter");
}
