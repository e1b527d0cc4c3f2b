//! The OpenAPI 3.1 document of the API, served at `/v1/openapi.json`.
//! The source of truth is `functions/openapi.json`; a test checks the
//! running Worker's answers against it.
pub const DOCUMENT: &str = include_str!("../openapi.json");
