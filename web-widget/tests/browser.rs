//! The widget in headless Chromium against a running `wrangler dev`.
//!
//! Run by `make widget-test` (web-widget/widget.mk), which needs a running Worker
//! (`make widget-e2e` starts one with `scripts/with-wrangler.sh`). Before
//! compiling this test, `web-widget/seed.sh` creates, through the public API, three
//! locations and a fresh product whose two SKUs are passed here at compile time:
//!
//! | SKU                      | Downtown | Riverside | Central warehouse |
//! |--------------------------|----------|-----------|-------------------|
//! | `OMNISTOCK_WIDGET_SKU`   | 7        | 2         | 0                 |
//! | `OMNISTOCK_WIDGET_SKU_B` | 0        | 0         | 5                 |
//!
//! (The Worker answers cross-origin reads only, so the writes happen there, not
//! in the page.) A fresh product per run keeps the expected text independent of
//! what earlier runs left in the state directory.
#![cfg(target_arch = "wasm32")]

use std::time::Duration;

use js_sys::{Date, Promise};
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;
use web_sys::{Element, HtmlElement};

wasm_bindgen_test_configure!(run_in_browser);

const PUBLISHABLE_KEY: &str = "pk_dev";
const DOWNTOWN: &str = "widget-downtown";
const RIVERSIDE: &str = "widget-riverside";
const WAREHOUSE: &str = "widget-warehouse";
/// How long a widget may take to show something other than "loading".
const RENDER_TIMEOUT: Duration = Duration::from_secs(20);

/// Compile-time settings from web-widget/browser-test.sh.
macro_rules! seeded {
    ($name:literal) => {
        match option_env!($name) {
            Some(value) => value,
            None => panic!(concat!(
                $name,
                " was not set when this test was compiled: run `make widget-e2e` \
                 (or `make widget-test` with OMNISTOCK_API pointing at a running Worker)"
            )),
        }
    };
}

fn api() -> &'static str {
    seeded!("OMNISTOCK_API").trim_end_matches('/')
}

fn sku() -> &'static str {
    seeded!("OMNISTOCK_WIDGET_SKU")
}

fn sku_b() -> &'static str {
    seeded!("OMNISTOCK_WIDGET_SKU_B")
}

async fn sleep(ms: i32) {
    let promise = Promise::new(&mut |resolve, _| {
        web_sys::window()
            .unwrap()
            .set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms)
            .unwrap();
    });
    JsFuture::from(promise).await.unwrap();
}

/// Adds `<omnistock-availability>` with these attributes to the page.
fn mount(attributes: &[(&str, &str)]) -> HtmlElement {
    omnistock_widget::define();
    let element = document()
        .create_element(omnistock_widget::TAG_NAME)
        .unwrap();
    for (name, value) in attributes {
        element.set_attribute(name, value).unwrap();
    }
    document().body().unwrap().append_child(&element).unwrap();
    element.unchecked_into()
}

fn status_of(element: &HtmlElement) -> Element {
    element
        .shadow_root()
        .expect("the widget renders into an open shadow root")
        .get_element_by_id("status")
        .expect("the widget has a status element")
}

/// What a person sees: the tone (`data-state`) and the sentence.
fn shown(element: &HtmlElement) -> (String, String) {
    let status = status_of(element);
    (
        status.get_attribute("data-state").unwrap_or_default(),
        status.text_content().unwrap_or_default(),
    )
}

/// Waits until the widget shows something other than `previous` (and not "loading").
async fn wait_for_change(element: &HtmlElement, previous: Option<&str>) -> (String, String) {
    let deadline = Date::now() + RENDER_TIMEOUT.as_millis() as f64;
    loop {
        let (state, text) = shown(element);
        if state != "loading" && Some(text.as_str()) != previous {
            return (state, text);
        }
        assert!(
            Date::now() < deadline,
            "the widget still shows {state:?} {text:?} after {RENDER_TIMEOUT:?}"
        );
        sleep(50).await;
    }
}

async fn rendered(element: &HtmlElement) -> (String, String) {
    wait_for_change(element, None).await
}

fn pair(state: &str, text: &str) -> (String, String) {
    (state.to_string(), text.to_string())
}

fn document() -> web_sys::Document {
    web_sys::window().unwrap().document().unwrap()
}

#[wasm_bindgen_test]
async fn shows_per_store_availability_from_the_worker() {
    let base = [("sku", sku()), ("api", api()), ("key", PUBLISHABLE_KEY)];
    let at = |location: &'static str| {
        let mut attributes = base.to_vec();
        attributes.push(("location", location));
        mount(&attributes)
    };

    let downtown = at(DOWNTOWN);
    let riverside = at(RIVERSIDE);
    let warehouse = at(WAREHOUSE);
    let everywhere = mount(&base);

    // The server's location names ("Downtown"), the low-stock threshold (3), and
    // the other stores that still have it.
    assert_eq!(
        rendered(&downtown).await,
        pair("in-stock", "7 in stock at Downtown")
    );
    assert_eq!(
        rendered(&riverside).await,
        pair("low-stock", "Low stock: 2 left at Riverside")
    );
    assert_eq!(
        rendered(&warehouse).await,
        pair(
            "out-of-stock",
            "Out of stock here, available at 2 other stores"
        )
    );
    assert_eq!(
        rendered(&everywhere).await,
        pair("in-stock", "9 in stock at 2 stores")
    );

    // Accessible: a polite live region that assistive technology reads out, not busy.
    let status = status_of(&downtown);
    assert_eq!(status.get_attribute("role").as_deref(), Some("status"));
    assert_eq!(status.get_attribute("aria-live").as_deref(), Some("polite"));
    assert_eq!(status.get_attribute("aria-busy").as_deref(), Some("false"));
    // Styleable from the page: `::part(status)`, `::part(in-stock)`.
    assert_eq!(
        status.get_attribute("part").as_deref(),
        Some("status in-stock")
    );

    // The page changes its mind: the same elements follow their attributes.
    downtown
        .set_attribute("location-name", "Main Street")
        .unwrap();
    downtown.set_attribute("threshold", "10").unwrap();
    assert_eq!(
        wait_for_change(&downtown, Some("7 in stock at Downtown")).await,
        pair("low-stock", "Low stock: 7 left at Main Street")
    );
    warehouse.set_attribute("sku", sku_b()).unwrap();
    assert_eq!(
        wait_for_change(
            &warehouse,
            Some("Out of stock here, available at 2 other stores")
        )
        .await,
        pair("in-stock", "5 in stock at Central warehouse")
    );

    // Taken out of the page and put back: it fetches again and shows the same.
    riverside.remove();
    document().body().unwrap().append_child(&riverside).unwrap();
    assert_eq!(
        rendered(&riverside).await,
        pair("low-stock", "Low stock: 2 left at Riverside")
    );
    let b_at_downtown = mount(&[
        ("sku", sku_b()),
        ("api", api()),
        ("key", PUBLISHABLE_KEY),
        ("location", DOWNTOWN),
    ]);
    assert_eq!(
        rendered(&b_at_downtown).await,
        pair(
            "out-of-stock",
            "Out of stock here, available at 1 other store"
        )
    );

    for element in [downtown, riverside, warehouse, everywhere, b_at_downtown] {
        element.remove();
    }
}

#[wasm_bindgen_test]
async fn shows_the_error_state_when_availability_cannot_be_read() {
    let unavailable = pair("error", "Availability unavailable");
    let reason = |element: &HtmlElement| status_of(element).get_attribute("data-reason");

    // A key the Worker does not know: 401, shown at once, not retried.
    let bad_key = mount(&[
        ("sku", sku()),
        ("api", api()),
        ("key", "pk_not_a_real_key"),
        ("location", DOWNTOWN),
    ]);
    assert_eq!(rendered(&bad_key).await, unavailable);
    assert_eq!(reason(&bad_key).as_deref(), Some("unauthorized"));

    // A SKU the catalog does not know: the Worker says 404.
    let unknown = mount(&[
        ("sku", "NO-SUCH-SKU-ANYWHERE"),
        ("api", api()),
        ("key", PUBLISHABLE_KEY),
    ]);
    assert_eq!(rendered(&unknown).await, unavailable);
    assert_eq!(reason(&unknown).as_deref(), Some("not-found"));

    // A secret key is refused before any request leaves the page.
    let secret = mount(&[("sku", sku()), ("api", api()), ("key", "sk_dev_admin")]);
    assert_eq!(rendered(&secret).await, unavailable);
    assert_eq!(reason(&secret).as_deref(), Some("config"));

    // Nobody listening: a bounded number of retries, then the error state.
    let down = mount(&[
        ("sku", sku()),
        ("api", "http://127.0.0.1:1"),
        ("key", PUBLISHABLE_KEY),
    ]);
    assert_eq!(rendered(&down).await, unavailable);
    assert_eq!(reason(&down).as_deref(), Some("network"));

    for element in [bad_key, unknown, secret, down] {
        element.remove();
    }
}

// ------------------------------------------------------------------ live
// web-widget/live-driver.sh sells OMNISTOCK_WIDGET_SKU_LIVE at Downtown, one
// unit a second, while these run: any change a widget shows without a
// `refresh` came through the live socket.

fn sku_live() -> &'static str {
    seeded!("OMNISTOCK_WIDGET_SKU_LIVE")
}

fn live_at_downtown(extra: &[(&'static str, &'static str)]) -> HtmlElement {
    let mut attributes = vec![
        ("sku", sku_live()),
        ("api", api()),
        ("key", PUBLISHABLE_KEY),
        ("location", DOWNTOWN),
    ];
    attributes.extend_from_slice(extra);
    mount(&attributes)
}

/// The number at the start of "N in stock at Downtown".
fn units(text: &str) -> i64 {
    text.split_whitespace()
        .find_map(|w| w.parse::<i64>().ok())
        .unwrap_or_else(|| panic!("no number in {text:?}"))
}

async fn wait_for_attribute(element: &HtmlElement, name: &str, value: &str) {
    let deadline = Date::now() + RENDER_TIMEOUT.as_millis() as f64;
    while element.get_attribute(name).as_deref() != Some(value) {
        assert!(
            Date::now() < deadline,
            "{name} is {:?}, not {value:?}",
            element.get_attribute(name)
        );
        sleep(20).await;
    }
}

/// Waits for the next sale to show: a lower number than `before`.
async fn next_sale_shown(element: &HtmlElement, before: &str) -> String {
    let (state, text) = wait_for_change(element, Some(before)).await;
    assert_eq!(state, "in-stock");
    assert!(units(&text) < units(before), "{before:?} -> {text:?}");
    text
}

#[wasm_bindgen_test]
async fn a_pos_sale_changes_the_widget_live_and_a_dropped_socket_recovers() {
    omnistock_widget::testing::reset();
    let w = live_at_downtown(&[]);
    let (_, first) = rendered(&w).await;
    wait_for_attribute(&w, "data-live", "open").await;
    let after_sale = next_sale_shown(&w, &first).await;
    // Announced politely to assistive technology, and readable without colour.
    let status = status_of(&w);
    assert_eq!(status.get_attribute("aria-live").as_deref(), Some("polite"));
    assert!(after_sale.ends_with("in stock at Downtown"), "{after_sale}");

    // The network drops the socket: the widget reconnects (backoff) and keeps up.
    omnistock_widget::testing::drop_connections();
    wait_for_attribute(&w, "data-live", "reconnecting").await;
    wait_for_attribute(&w, "data-live", "open").await;
    let (_, now) = shown(&w);
    next_sale_shown(&w, &now).await;
    w.remove();
}

#[wasm_bindgen_test]
async fn a_version_gap_triggers_a_resync() {
    omnistock_widget::testing::reset();
    let w = live_at_downtown(&[]);
    rendered(&w).await;
    wait_for_attribute(&w, "data-live", "open").await;
    // A change far ahead of the last seq seen: changes were missed. The widget
    // must not show it; it asks for a snapshot and shows the server's figure.
    omnistock_widget::testing::inject(&format!(
        r#"{{"type":"change","sku":"{}","location":"{DOWNTOWN}","available":424242,"seq":1000000000}}"#,
        sku_live()
    ));
    wait_for_attribute(&w, "data-resyncs", "1").await;
    let (_, text) = shown(&w);
    assert!(!text.contains("424242"), "{text}");
    // After the snapshot, changes apply again.
    let (_, now) = shown(&w);
    let next = next_sale_shown(&w, &now).await;
    assert!(!next.contains("424242"), "{next}");
    w.remove();
}

#[wasm_bindgen_test]
async fn several_widgets_share_one_connection() {
    omnistock_widget::testing::reset();
    let live = live_at_downtown(&[]);
    let a = mount(&[("sku", sku()), ("api", api()), ("key", PUBLISHABLE_KEY)]);
    let b = mount(&[
        ("sku", sku_b()),
        ("api", api()),
        ("key", PUBLISHABLE_KEY),
        ("location", WAREHOUSE),
    ]);
    for w in [&live, &a, &b] {
        rendered(w).await;
        wait_for_attribute(w, "data-live", "open").await;
    }
    assert_eq!(omnistock_widget::testing::open_connections(), 1);
    assert_eq!(
        shown(&b),
        pair("in-stock", "5 in stock at Central warehouse")
    );
    let (_, now) = shown(&live);
    next_sale_shown(&live, &now).await;
    for w in [live, a, b] {
        w.remove();
    }
}

#[wasm_bindgen_test]
async fn polls_when_websockets_are_unavailable() {
    omnistock_widget::testing::reset();
    let window = web_sys::window().unwrap();
    let key = wasm_bindgen::JsValue::from_str("WebSocket");
    let original = js_sys::Reflect::get(&window, &key).unwrap();
    js_sys::Reflect::set(&window, &key, &wasm_bindgen::JsValue::UNDEFINED).unwrap();
    let w = live_at_downtown(&[("refresh", "10")]);
    let (_, first) = rendered(&w).await;
    assert_eq!(w.get_attribute("data-live"), None);
    assert_eq!(omnistock_widget::testing::open_connections(), 0);
    // The next poll (10 s) shows the sales made meanwhile.
    let deadline = Date::now() + 25_000.0;
    loop {
        let (_, text) = shown(&w);
        if text != first {
            assert!(units(&text) < units(&first));
            break;
        }
        assert!(Date::now() < deadline, "no poll showed a change");
        sleep(200).await;
    }
    js_sys::Reflect::set(&window, &key, &original).unwrap();
    w.remove();
}
