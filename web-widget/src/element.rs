//! The browser shell: registers `<omnistock-availability>`, fetches with a timeout
//! and bounded retries, refreshes on a bounded period, and renders a [`View`] into
//! an open shadow root. All decisions are made by the pure modules.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use js_sys::{Array, Function, Promise};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::{spawn_local, JsFuture};
use web_sys::{
    AbortController, Element, Headers, HtmlElement, Request, RequestInit, RequestMode, Response,
    ShadowRoot, ShadowRootInit, ShadowRootMode,
};

use crate::availability::Availability;
use crate::config::{Config, OBSERVED_ATTRIBUTES};
use crate::hub::{self, Hub};
use crate::live::{LiveRow, FALLBACK_POLL_SECONDS};
use crate::view::{
    keeps_refreshing, retry_delay_ms, view, Failure, Phase, View, WidgetState, MAX_ATTEMPTS,
    REQUEST_TIMEOUT_MS,
};
use crate::TAG_NAME;

// The only JavaScript: a class extending HTMLElement whose callbacks call into Rust.
#[wasm_bindgen(inline_js = r#"
export function define_element(name, observed, connected, disconnected, changed) {
  if (customElements.get(name)) return;
  customElements.define(name, class extends HTMLElement {
    static get observedAttributes() { return observed; }
    connectedCallback() { connected(this); }
    disconnectedCallback() { disconnected(this); }
    attributeChangedCallback(_name, before, after) { if (before !== after) changed(this); }
  });
}
"#)]
extern "C" {
    fn define_element(
        name: &str,
        observed: &Array,
        connected: &Function,
        disconnected: &Function,
        changed: &Function,
    );
}

/// Registers `<omnistock-availability>`. Safe to call more than once.
#[wasm_bindgen]
pub fn define() {
    thread_local!(static DEFINED: Cell<bool> = const { Cell::new(false) });
    if DEFINED.with(|d| d.replace(true)) {
        return;
    }
    let observed: Array = OBSERVED_ATTRIBUTES
        .iter()
        .map(|a| JsValue::from_str(a))
        .collect();
    // The class lives as long as the page, so its callbacks do too.
    let connected = Closure::<dyn Fn(HtmlElement)>::new(connected);
    let disconnected = Closure::<dyn Fn(HtmlElement)>::new(disconnected);
    let changed = Closure::<dyn Fn(HtmlElement)>::new(changed);
    define_element(
        TAG_NAME,
        &observed,
        connected.as_ref().unchecked_ref(),
        disconnected.as_ref().unchecked_ref(),
        changed.as_ref().unchecked_ref(),
    );
    connected.forget();
    disconnected.forget();
    changed.forget();
}

const STYLE_AND_MARKUP: &str = r#"<style>
:host { display: inline-block; font: var(--omnistock-font, inherit); }
:host([hidden]) { display: none; }
.status { display: inline-flex; align-items: center; gap: var(--omnistock-gap, 0.45em);
  color: var(--omnistock-loading-color, #57606a); }
.indicator { flex: none; width: var(--omnistock-indicator-size, 0.6em);
  height: var(--omnistock-indicator-size, 0.6em); border-radius: 50%; background: currentColor; }
.status[data-state="in-stock"] { color: var(--omnistock-in-stock-color, #1a7f37); }
.status[data-state="low-stock"] { color: var(--omnistock-low-stock-color, #9a6700); }
.status[data-state="out-of-stock"] { color: var(--omnistock-out-of-stock-color, #cf222e); }
.status[data-state="error"] { color: var(--omnistock-error-color, #57606a); }
.text { color: var(--omnistock-text-color, inherit); }
</style><div class="status" id="status" part="status loading" role="status" aria-live="polite" data-state="loading"><span class="indicator" part="indicator" aria-hidden="true"></span><span class="text" id="text" part="text"></span></div>"#;

/// One connected element.
struct Widget {
    host: HtmlElement,
    status: Element,
    text: Element,
    state: RefCell<WidgetState>,
    /// Bumped on every restart and on disconnect; a task whose generation is stale stops.
    generation: Cell<u32>,
    /// The request in flight, aborted on restart and disconnect.
    in_flight: RefCell<Option<AbortController>>,
    restart_queued: Cell<bool>,
}

thread_local! {
    static WIDGETS: RefCell<Vec<Rc<Widget>>> = const { RefCell::new(Vec::new()) };
}

fn find(host: &HtmlElement) -> Option<Rc<Widget>> {
    WIDGETS.with(|ws| {
        ws.borrow()
            .iter()
            .find(|w| JsValue::from(&w.host) == JsValue::from(host))
            .cloned()
    })
}

fn connected(host: HtmlElement) {
    let widget = match find(&host) {
        Some(widget) => widget,
        None => match Widget::new(host) {
            Ok(widget) => {
                WIDGETS.with(|ws| ws.borrow_mut().push(widget.clone()));
                widget
            }
            Err(_) => return,
        },
    };
    widget.queue_restart();
}

fn changed(host: HtmlElement) {
    // Attributes set before the element is connected are read when it connects.
    if let Some(widget) = find(&host) {
        widget.queue_restart();
    }
}

fn disconnected(host: HtmlElement) {
    if let Some(widget) = find(&host) {
        widget.stop();
        WIDGETS.with(|ws| ws.borrow_mut().retain(|w| !Rc::ptr_eq(w, &widget)));
    }
}

impl Widget {
    fn new(host: HtmlElement) -> Result<Rc<Widget>, JsValue> {
        let root: ShadowRoot = match host.shadow_root() {
            Some(root) => root,
            None => host.attach_shadow(&ShadowRootInit::new(ShadowRootMode::Open))?,
        };
        root.set_inner_html(STYLE_AND_MARKUP);
        let status = root.get_element_by_id("status").ok_or(JsValue::NULL)?;
        let text = root.get_element_by_id("text").ok_or(JsValue::NULL)?;
        Ok(Rc::new(Widget {
            host,
            status,
            text,
            state: RefCell::new(WidgetState {
                config: Err(crate::config::ConfigError::Missing("sku")),
                phase: Phase::Loading,
            }),
            generation: Cell::new(0),
            in_flight: RefCell::new(None),
            restart_queued: Cell::new(false),
        }))
    }

    /// Restarts once after the current task: setting several attributes in a row
    /// gives one fetch, not one per attribute.
    fn queue_restart(self: &Rc<Self>) {
        if self.restart_queued.replace(true) {
            return;
        }
        let widget = self.clone();
        spawn_local(async move {
            widget.restart_queued.set(false);
            widget.run().await;
        });
    }

    fn stop(&self) -> u32 {
        let generation = self.generation.get().wrapping_add(1);
        self.generation.set(generation);
        if let Some(controller) = self.in_flight.borrow_mut().take() {
            controller.abort();
        }
        generation
    }

    fn current(&self, generation: u32) -> bool {
        self.generation.get() == generation
    }

    fn set_phase(&self, phase: Phase) {
        self.state.borrow_mut().phase = phase;
        self.render();
    }

    /// The one render function: state -> view -> DOM.
    fn render(&self) {
        let v: View = view(&self.state.borrow());
        let tone = v.tone.as_str();
        let _ = self.status.set_attribute("data-state", tone);
        let _ = self.status.set_attribute("part", &format!("status {tone}"));
        let _ = self.status.set_attribute(
            "aria-busy",
            if v.tone == crate::view::Tone::Loading {
                "true"
            } else {
                "false"
            },
        );
        match v.reason {
            Some(reason) => {
                let _ = self.status.set_attribute("data-reason", reason);
            }
            None => {
                let _ = self.status.remove_attribute("data-reason");
            }
        }
        // Rewriting the same text would make some screen readers announce it again.
        if self.text.text_content().as_deref() != Some(v.text.as_str()) {
            self.text.set_text_content(Some(&v.text));
        }
    }

    async fn run(self: Rc<Self>) {
        let generation = self.stop();
        let config = Config::from_attributes(|name| self.host.get_attribute(name));
        if let Err(error) = &config {
            web_sys::console::warn_1(&format!("<{TAG_NAME}>: {error}").into());
        }
        *self.state.borrow_mut() = WidgetState {
            config: config.clone(),
            phase: Phase::Loading,
        };
        self.render();
        let Ok(config) = config else { return };

        loop {
            let phase = match self.fetch_with_retries(generation, &config).await {
                None => return, // restarted or disconnected meanwhile
                Some(Ok(data)) => Phase::Loaded(data),
                Some(Err(failure)) => {
                    // For the page's developer; the shopper sees "Availability unavailable".
                    web_sys::console::warn_1(
                        &format!(
                            "<{TAG_NAME}>: availability of {} could not be read ({})",
                            config.sku,
                            failure.reason()
                        )
                        .into(),
                    );
                    Phase::Failed(failure)
                }
            };
            let go_on = keeps_refreshing(&phase);
            let loaded = matches!(phase, Phase::Loaded(_));
            self.set_phase(phase);
            if loaded && hub::usable(&config) {
                // Live from now on: the shared connection's snapshot and changes
                // update this widget (element::apply_live); no polling.
                hub::join(&config);
                return;
            }
            // No live updates (no WebSocket, or the connection gave up): poll.
            let period = config.refresh_seconds.unwrap_or(FALLBACK_POLL_SECONDS);
            let Some(seconds) = Some(period).filter(|_| go_on) else {
                return;
            };
            sleep_ms(seconds.saturating_mul(1_000)).await;
            if !self.current(generation) {
                return;
            }
        }
    }

    /// `None` when the widget was restarted or disconnected while waiting.
    async fn fetch_with_retries(
        &self,
        generation: u32,
        config: &Config,
    ) -> Option<Result<Availability, Failure>> {
        let mut attempt = 0;
        loop {
            let result = self.fetch_once(config).await;
            if !self.current(generation) {
                return None;
            }
            let failure = match result {
                Ok(data) => return Some(Ok(data)),
                Err(failure) => failure,
            };
            match retry_delay_ms(attempt, &failure) {
                Some(delay) if attempt + 1 < MAX_ATTEMPTS => {
                    sleep_ms(delay).await;
                    if !self.current(generation) {
                        return None;
                    }
                    attempt += 1;
                }
                _ => return Some(Err(failure)),
            }
        }
    }

    async fn fetch_once(&self, config: &Config) -> Result<Availability, Failure> {
        let controller = AbortController::new().map_err(|_| Failure::Network)?;
        let timed_out = Rc::new(Cell::new(false));
        {
            let (controller, timed_out) = (controller.clone(), timed_out.clone());
            let on_timeout = Closure::once_into_js(move || {
                timed_out.set(true);
                controller.abort();
            });
            window()
                .set_timeout_with_callback_and_timeout_and_arguments_0(
                    on_timeout.unchecked_ref(),
                    REQUEST_TIMEOUT_MS as i32,
                )
                .map_err(|_| Failure::Network)?;
        }
        *self.in_flight.borrow_mut() = Some(controller.clone());

        let headers = Headers::new().map_err(|_| Failure::Network)?;
        headers
            .set("Authorization", &format!("Bearer {}", config.key))
            .map_err(|_| Failure::Network)?;
        headers
            .set("Accept", "application/json")
            .map_err(|_| Failure::Network)?;
        let init = RequestInit::new();
        init.set_method("GET");
        init.set_mode(RequestMode::Cors);
        init.set_headers(&headers);
        init.set_signal(Some(&controller.signal()));
        let request = Request::new_with_str_and_init(&config.availability_url(), &init)
            .map_err(|_| Failure::Network)?;

        let lost = |timed_out: &Cell<bool>| {
            if timed_out.get() {
                Failure::Timeout
            } else {
                Failure::Network
            }
        };
        let response: Response = JsFuture::from(window().fetch_with_request(&request))
            .await
            .map_err(|_| lost(&timed_out))?
            .unchecked_into();
        let status = response.status();
        if !(200..300).contains(&status) {
            return Err(Failure::from_status(status));
        }
        let body = JsFuture::from(response.text().map_err(|_| Failure::BadResponse)?)
            .await
            .map_err(|_| lost(&timed_out))?;
        let body = body.as_string().ok_or(Failure::BadResponse)?;
        Availability::parse(&body).map_err(|_| Failure::BadResponse)
    }
}

fn window() -> web_sys::Window {
    // The element only exists in a page, and a page has a window.
    web_sys::window().expect("omnistock-widget runs in a browser window")
}

/// Resolves after `ms` milliseconds; nothing is leaked if it is never awaited again.
async fn sleep_ms(ms: u32) {
    let promise = Promise::new(&mut |resolve, _reject| {
        let _ = window().set_timeout_with_callback_and_timeout_and_arguments_0(
            &resolve,
            ms.min(i32::MAX as u32) as i32,
        );
    });
    let _ = JsFuture::from(promise).await;
}

/// The widgets a live connection feeds.
fn fed_by(hub: &Hub) -> Vec<Rc<Widget>> {
    WIDGETS.with(|ws| {
        ws.borrow()
            .iter()
            .filter(|w| {
                w.state.borrow().config.as_ref().is_ok_and(|c| {
                    c.api == hub.api && c.key == hub.key && c.channel.as_str() == hub.channel
                })
            })
            .cloned()
            .collect()
    })
}

/// Live rows of `sku`: every widget of that SKU on this connection shows them.
pub(crate) fn apply_live(hub: &Hub, sku: &str, rows: &[LiveRow]) {
    for w in fed_by(hub) {
        let changed = {
            let mut state = w.state.borrow_mut();
            let of_sku = state.config.as_ref().is_ok_and(|c| c.sku == sku);
            match &mut state.phase {
                Phase::Loaded(data) if of_sku => {
                    for r in rows {
                        data.set_available(&r.sku, &r.location, r.available);
                    }
                    true
                }
                _ => false,
            }
        };
        if changed {
            w.render();
        }
    }
}

/// `data-live` on the host: connecting, open, reconnecting or polling (for the page and tests).
pub(crate) fn mark_live(hub: &Hub, state: &str) {
    for w in fed_by(hub) {
        let _ = w.host.set_attribute("data-live", state);
    }
}

/// `data-resyncs` on the host: how many gaps this connection has resynced.
pub(crate) fn mark_resyncs(hub: &Hub, n: u32) {
    for w in fed_by(hub) {
        let _ = w.host.set_attribute("data-resyncs", &n.to_string());
    }
}

/// The connection gave up: its widgets restart, see it unusable, and poll.
pub(crate) fn restart_live(hub: &Hub) {
    for w in fed_by(hub) {
        w.queue_restart();
    }
}
