//! omnistock-widget: the `<omnistock-availability>` custom element.
//!
//! ```html
//! <script type="module" src="https://HOST/widget/omnistock-widget.js"></script>
//! <omnistock-availability sku="TEE-BLK-M" api="https://HOST" key="pk_..." location="store-1">
//! </omnistock-availability>
//! ```
//!
//! The code is cut in two:
//! - pure logic, built and tested natively: [`config`] (attributes -> [`config::Config`]),
//!   [`availability`] (the API's JSON -> rows) and [`view`] (a [`view::WidgetState`] ->
//!   the text and tone to show, the retry policy);
//! - the browser shell, `element` (wasm32 only): registers the element, fetches,
//!   retries, refreshes, and renders a [`view::View`] into a shadow root;
//!   `hub` (wasm32 only) keeps one live WebSocket per (api, key, channel) shared
//!   by every widget on the page, driven by the pure [`live`] module (gap
//!   detection, reconnect backoff with jitter); polling when live is unavailable.
//!
//! Every change (a fetch, a refresh, later a live update) goes through one path:
//! update the `WidgetState`, then render it.

pub mod availability;
pub mod config;
pub mod live;
pub mod view;

#[cfg(target_arch = "wasm32")]
mod element;
#[cfg(target_arch = "wasm32")]
mod hub;

/// Hooks for the browser tests (a dropped socket, a missed change, a fresh page).
#[cfg(target_arch = "wasm32")]
pub mod testing {
    pub use crate::hub::{drop_connections, inject, open_connections, reset};
}

#[cfg(target_arch = "wasm32")]
pub use element::define;

/// The tag name of the element.
pub const TAG_NAME: &str = "omnistock-availability";
