//! Minifies the OpenAPI document the Worker serves (the committed,
//! readable `openapi.json` is the source): ~40 KB less wasm for every cold
//! isolate to load.
fn main() {
    println!("cargo:rerun-if-changed=openapi.json");
    let src = std::fs::read_to_string("openapi.json").expect("functions/openapi.json");
    let doc: serde_json::Value = serde_json::from_str(&src).expect("openapi.json is JSON");
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    std::fs::write(
        out.join("openapi.min.json"),
        serde_json::to_string(&doc).expect("encode"),
    )
    .expect("write openapi.min.json");
}
