//! Issue 4's bad-input battery: one table of malformed requests across every
//! endpoint, each answered with the right 4xx problem+json, none with a 5xx,
//! and nothing changed by any of them.
