//! The OpenAPI 3.1 document of the API, served at `/v1/openapi.json`.
//! The source of truth is `functions/openapi.json`; a test checks the
//! running Worker's answers against it.
/// (Minified by build.rs; the same JSON value as the committed file.)
pub const DOCUMENT: &str = include_str!(concat!(env!("OUT_DIR"), "/openapi.min.json"));
