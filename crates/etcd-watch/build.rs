//! Makes cargo download `protoc-bin-vendored` before any build script runs: etcd-client's
//! build script finds that crate's protoc through `scripts/protoc` (see .cargo/config.toml),
//! so a machine with only the Rust toolchain can build Tito.

fn main() {
    // Resolving the path checks that the vendored binary exists for this platform.
    if let Err(e) = protoc_bin_vendored::protoc_bin_path() {
        println!(
            "cargo:warning=protoc-bin-vendored has no protoc for this platform ({e}); etcd-client needs protoc on the PATH"
        );
    }
    println!("cargo:rerun-if-changed=build.rs");
}
