//! Records when the binary was built, for `/version`'s `BuildTime` (honours SOURCE_DATE_EPOCH
//! for reproducible builds).

fn main() {
    let epoch = std::env::var("SOURCE_DATE_EPOCH").ok().filter(|s| s.parse::<i64>().is_ok()).unwrap_or_else(|| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        now.as_secs().to_string()
    });
    println!("cargo:rustc-env=SHOAL_BUILD_EPOCH={epoch}");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=build.rs");
}
