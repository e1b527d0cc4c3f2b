//! The widget in headless Chromium against a running `wrangler dev`.
//!
//! Run by `make widget-test` (web-widget/widget.mk) through
//! `scripts/with-wrangler.sh`, which starts the Worker with seeded locations
//! (`store-1`, `store-2`, `warehouse-1`) and the dev keys of API.md, and sets
//! `OMNISTOCK_API` (read here at compile time).
//!
//! Each run receives stock for a SKU of its own, so the expected text does not
//! depend on what earlier runs left in the state directory.
#![cfg(target_arch = "wasm32")]

use std::time::Duration;

use js_sys::{Date, Math, Promise};
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;
use web_sys::{Element, Headers, HtmlElement, Request, RequestInit, Response};

wasm_bindgen_test_configure!(run_in_browser);

const ADMIN_KEY: &str = "sk_dev_admin";
const PUBLISHABLE_KEY: &str = "pk_dev";
/// How long a widget may take to show something other than "loading".
const RENDER_TIMEOUT: Duration = Duration::from_secs(20);

fn api() -> &'static str {
    match option_env!("OMNISTOCK_API") {
        Some(api) => api.trim_end_matches('/'),
        None => panic!(
            "OMNISTOCK_API was not set when this test was compiled: \
             run `make widget-e2e` (scripts/with-wrangler.sh starts wrangler dev and sets it)"
        ),
    }
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        Date::now() as u64,
        (Math::random() * 1e9) as u64
    )
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

/// `POST /v1/inventory/receipts` with the admin key, as a back-office tool would.
async fn receive(sku: &str, location: &str, qty: u32) {
    let headers = Headers::new().unwrap();
    headers
        .set("Authorization", &format!("Bearer {ADMIN_KEY}"))
        .unwrap();
    headers.set("Content-Type", "application/json").unwrap();
    headers
        .set("Idempotency-Key", &unique("widget-test"))
        .unwrap();
    let init = RequestInit::new();
    init.set_method("POST");
    init.set_headers(&headers);
    let body = format!(
        r#"{{"location":"{location}","reference":"widget-test","lines":[{{"sku":"{sku}","qty":{qty}}}]}}"#
    );
    init.set_body(&body.into());
    let url = format!("{}/v1/inventory/receipts", api());
    let request = Request::new_with_str_and_init(&url, &init).unwrap();
    let response: Response =
        JsFuture::from(web_sys::window().unwrap().fetch_with_request(&request))
            .await
            .unwrap_or_else(|e| {
                panic!("POST {url} failed (is the Worker up, does it allow CORS?): {e:?}")
            })
            .unchecked_into();
    let status = response.status();
    let text = JsFuture::from(response.text().unwrap()).await.unwrap();
    assert!(
        (200..300).contains(&status),
        "receiving {qty} x {sku} at {location}: {status} {text:?}"
    );
}

/// Adds `<omnistock-availability>` with these attributes to the page.
fn mount(attributes: &[(&str, &str)]) -> HtmlElement {
    omnistock_widget::define();
    let document = web_sys::window().unwrap().document().unwrap();
    let element = document.create_element(omnistock_widget::TAG_NAME).unwrap();
    for (name, value) in attributes {
        element.set_attribute(name, value).unwrap();
    }
    document.body().unwrap().append_child(&element).unwrap();
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

#[wasm_bindgen_test]
async fn shows_per_store_availability_from_the_worker() {
    let sku = unique("WIDGET");
    receive(&sku, "store-1", 7).await;
    receive(&sku, "store-2", 2).await;

    let base = [
        ("sku", sku.as_str()),
        ("api", api()),
        ("key", PUBLISHABLE_KEY),
    ];
    let at = |location: &'static str| {
        let mut attributes = base.to_vec();
        attributes.push(("location", location));
        mount(&attributes)
    };

    let store_1 = at("store-1");
    let store_2 = at("store-2");
    let warehouse = at("warehouse-1");
    let everywhere = mount(&base);

    assert_eq!(
        rendered(&store_1).await,
        pair("in-stock", "7 in stock at store-1")
    );
    assert_eq!(
        rendered(&store_2).await,
        pair("low-stock", "Low stock: 2 left at store-2")
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

    // Accessible: a polite live region that assistive technology reads out.
    let status = status_of(&store_1);
    assert_eq!(status.get_attribute("role").as_deref(), Some("status"));
    assert_eq!(status.get_attribute("aria-live").as_deref(), Some("polite"));
    assert_eq!(status.get_attribute("aria-busy").as_deref(), Some("false"));
    // Styleable from the page: `::part(status)`, `::part(in-stock)`...
    assert_eq!(
        status.get_attribute("part").as_deref(),
        Some("status in-stock")
    );

    // The page changes its mind: the same element follows its attributes.
    store_1.set_attribute("location-name", "Downtown").unwrap();
    store_1.set_attribute("threshold", "10").unwrap();
    assert_eq!(
        wait_for_change(&store_1, Some("7 in stock at store-1")).await,
        pair("low-stock", "Low stock: 7 left at Downtown")
    );

    // New stock arrives; a re-attached widget fetches again.
    receive(&sku, "warehouse-1", 5).await;
    warehouse.remove();
    web_sys::window()
        .unwrap()
        .document()
        .unwrap()
        .body()
        .unwrap()
        .append_child(&warehouse)
        .unwrap();
    assert_eq!(
        wait_for_change(
            &warehouse,
            Some("Out of stock here, available at 2 other stores")
        )
        .await,
        pair("in-stock", "5 in stock at warehouse-1")
    );

    for element in [store_1, store_2, warehouse, everywhere] {
        element.remove();
    }
}

#[wasm_bindgen_test]
async fn shows_the_error_state_when_availability_cannot_be_read() {
    let sku = unique("WIDGET");
    let unavailable = pair("error", "Availability unavailable");
    let reason = |element: &HtmlElement| status_of(element).get_attribute("data-reason");

    // A key the Worker does not know: 401, shown at once, not retried.
    let bad_key = mount(&[
        ("sku", sku.as_str()),
        ("api", api()),
        ("key", "pk_not_a_real_key"),
        ("location", "store-1"),
    ]);
    assert_eq!(rendered(&bad_key).await, unavailable);
    assert_eq!(reason(&bad_key).as_deref(), Some("unauthorized"));

    // A secret key is refused before any request leaves the page.
    let secret = mount(&[("sku", sku.as_str()), ("api", api()), ("key", ADMIN_KEY)]);
    assert_eq!(rendered(&secret).await, unavailable);
    assert_eq!(reason(&secret).as_deref(), Some("config"));

    // Nobody listening: a few bounded retries, then the error state.
    let down = mount(&[
        ("sku", sku.as_str()),
        ("api", "http://127.0.0.1:9"),
        ("key", PUBLISHABLE_KEY),
    ]);
    assert_eq!(rendered(&down).await, unavailable);
    assert_eq!(reason(&down).as_deref(), Some("network"));

    for element in [bad_key, secret, down] {
        element.remove();
    }
}
