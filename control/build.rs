fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/shoal.proto");
    tonic_prost_build::configure().compile_protos(&["proto/shoal.proto"], &["proto"])?;
    Ok(())
}
