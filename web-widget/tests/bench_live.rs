//! `make bench-live` (scripts/bench-live.sh): the live push's latency as a
//! shopper sees it. The widget watches OMNISTOCK_WIDGET_SKU_LIVE at Downtown
//! in headless Chromium while web-widget/live-driver.sh posts POS sales; each
//! time the widget's text changes this prints `LIVE_DOM <units> <epoch ms>`
//! (checked every 4 ms or so: a timer loop), and the script joins these lines
//! with the driver's post times (same machine, same clock). Not part of
//! `make test` (browser-test.sh runs only `--test browser`).
#![cfg(target_arch = "wasm32")]

use js_sys::{Date, Promise};
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;
use web_sys::HtmlElement;

wasm_bindgen_test_configure!(run_in_browser);

fn env(name: &str, value: Option<&'static str>) -> &'static str {
    value.unwrap_or_else(|| panic!("{name} was not set at compile time: run `make bench-live`"))
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

fn text(w: &HtmlElement) -> String {
    w.shadow_root()
        .and_then(|r| r.get_element_by_id("text"))
        .and_then(|t| t.text_content())
        .unwrap_or_default()
}

#[wasm_bindgen_test]
async fn push_latency_pos_sale_to_widget_dom() {
    let api = env("OMNISTOCK_API", option_env!("OMNISTOCK_API"));
    let sku = env(
        "OMNISTOCK_WIDGET_SKU_LIVE",
        option_env!("OMNISTOCK_WIDGET_SKU_LIVE"),
    );
    let want: u32 = option_env!("LIVE_BENCH_SALES")
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    omnistock_widget::define();
    let doc = web_sys::window().unwrap().document().unwrap();
    let w: HtmlElement = doc
        .create_element(omnistock_widget::TAG_NAME)
        .unwrap()
        .unchecked_into();
    for (k, v) in [
        ("sku", sku),
        ("api", api.trim_end_matches('/')),
        ("key", "pk_dev"),
        ("location", "widget-downtown"),
    ] {
        w.set_attribute(k, v).unwrap();
    }
    doc.body().unwrap().append_child(&w).unwrap();
    let start = Date::now();
    while w.get_attribute("data-live").as_deref() != Some("open") {
        assert!(Date::now() - start < 30_000.0, "never connected");
        sleep(10).await;
    }
    web_sys::console::log_1(&"LIVE_READY".into());
    let mut last = text(&w);
    let mut seen = 0;
    let deadline = Date::now() + 180_000.0;
    while seen < want && Date::now() < deadline {
        sleep(0).await;
        let now = text(&w);
        if now != last {
            let units = now
                .split_whitespace()
                .find_map(|x| x.parse::<i64>().ok())
                .unwrap_or(-1);
            console_log!("LIVE_DOM {} {}", units, Date::now() as i64);
            seen += 1;
            last = now;
        }
    }
    assert!(seen >= want, "saw {seen} changes of {want}");
}
