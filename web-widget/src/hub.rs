//! The page's live connections: ONE WebSocket per (api, key, channel), shared
//! by every widget with those attributes, subscribed to the union of their
//! SKUs. Frames go to the widgets of their SKU (`element::apply_live`).
//! Decisions are `live`'s (gap detection, reconnect schedule); this module
//! only wires them to the browser.
//!
//! - A new SKU joins: the socket is reopened with the union (snapshots follow).
//! - A drop: reconnect after `backoff_ms(attempt, random)`; every new socket
//!   starts from snapshots, so nothing missed while away stays missed.
//! - A gap: `{"type":"resync","sku"}`; the SKU's changes wait for its snapshot.
//! - A close 1008 or [`MAX_RECONNECTS`] failures in a row, or no `WebSocket`
//!   in this browser: the hub gives up and its widgets poll.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{CloseEvent, MessageEvent, WebSocket};

use crate::config::Config;
use crate::element;
use crate::live::{
    backoff_ms, live_url, reconnects_after, resync_message, Frame, Seqs, Verdict,
    MAX_SKUS_PER_SOCKET,
};

type Handlers = (
    Closure<dyn FnMut(MessageEvent)>,
    Closure<dyn FnMut(CloseEvent)>,
);

/// The connection of one (api, key, channel).
pub struct Hub {
    pub api: String,
    pub key: String,
    pub channel: &'static str,
    skus: RefCell<Vec<String>>,
    socket: RefCell<Option<WebSocket>>,
    handlers: RefCell<Option<Handlers>>,
    seqs: RefCell<Seqs>,
    attempt: Cell<u32>,
    gave_up: Cell<bool>,
    /// Bumped per socket: callbacks of an older socket are ignored.
    generation: Cell<u32>,
    connect_queued: Cell<bool>,
    resyncs: Cell<u32>,
}

thread_local! {
    static HUBS: RefCell<Vec<Rc<Hub>>> = const { RefCell::new(Vec::new()) };
}

fn find(config: &Config) -> Option<Rc<Hub>> {
    HUBS.with(|h| h.borrow().iter().find(|x| x.matches(config)).cloned())
}

fn has_websocket() -> bool {
    web_sys::window()
        .and_then(|w| js_sys::Reflect::get(&w, &JsValue::from_str("WebSocket")).ok())
        .is_some_and(|v| v.is_function())
}

/// Whether widgets with this config can be live (else they poll).
pub fn usable(config: &Config) -> bool {
    has_websocket() && find(config).is_none_or(|h| !h.gave_up.get())
}

/// Subscribes the widget's SKU on the shared connection.
pub fn join(config: &Config) {
    let hub = match find(config) {
        Some(h) => h,
        None => {
            let h = Rc::new(Hub {
                api: config.api.clone(),
                key: config.key.clone(),
                channel: config.channel.as_str(),
                skus: RefCell::new(Vec::new()),
                socket: RefCell::new(None),
                handlers: RefCell::new(None),
                seqs: RefCell::new(Seqs::default()),
                attempt: Cell::new(0),
                gave_up: Cell::new(false),
                generation: Cell::new(0),
                connect_queued: Cell::new(false),
                resyncs: Cell::new(0),
            });
            HUBS.with(|hs| hs.borrow_mut().push(h.clone()));
            h
        }
    };
    let new = !hub.skus.borrow().contains(&config.sku);
    if new {
        if hub.skus.borrow().len() >= MAX_SKUS_PER_SOCKET {
            // Over the server's bound: this widget polls (its restart sees the give-up
            // only for the whole hub, so say it here).
            web_sys::console::warn_1(
                &format!("omnistock: more than {MAX_SKUS_PER_SOCKET} live SKUs on one page").into(),
            );
            return;
        }
        hub.skus.borrow_mut().push(config.sku.clone());
    }
    if new || hub.socket.borrow().is_none() {
        hub.queue_connect(0);
    } else {
        // Already subscribed: ask for the SKU's snapshot so this widget is current.
        hub.send(&resync_message(&config.sku));
    }
}

impl Hub {
    fn matches(&self, c: &Config) -> bool {
        self.api == c.api && self.key == c.key && self.channel == c.channel.as_str()
    }

    fn send(&self, text: &str) {
        if let Some(ws) = self.socket.borrow().as_ref() {
            if ws.ready_state() == WebSocket::OPEN {
                let _ = ws.send_with_str(text);
            }
        }
    }

    /// Connects after `delay_ms` (once, however often asked meanwhile).
    fn queue_connect(self: &Rc<Self>, delay_ms: u32) {
        if self.connect_queued.replace(true) {
            return;
        }
        let hub = self.clone();
        let f = Closure::once_into_js(move || {
            hub.connect_queued.set(false);
            hub.connect();
        });
        if let Some(w) = web_sys::window() {
            let _ = w.set_timeout_with_callback_and_timeout_and_arguments_0(
                f.unchecked_ref(),
                delay_ms.min(i32::MAX as u32) as i32,
            );
        }
    }

    fn drop_socket(&self) {
        if let Some(ws) = self.socket.borrow_mut().take() {
            ws.set_onmessage(None);
            ws.set_onclose(None);
            let _ = ws.close();
        }
        // Never called from inside these handlers (always from a timer or the page).
        self.handlers.borrow_mut().take();
    }

    fn connect(self: &Rc<Self>) {
        self.drop_socket();
        if self.gave_up.get() {
            return;
        }
        let generation = self.generation.get().wrapping_add(1);
        self.generation.set(generation);
        self.seqs.borrow_mut().reset();
        let skus = self.skus.borrow().clone();
        let Some(url) = live_url(&self.api, &self.key, &skus, self.channel) else {
            return self.give_up();
        };
        let ws = match WebSocket::new(&url) {
            Ok(ws) => ws,
            Err(_) => return self.closed(generation, 1006),
        };
        element::mark_live(self, "connecting");
        let on_message = {
            let hub = self.clone();
            Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
                if hub.generation.get() == generation {
                    if let Some(text) = e.data().as_string() {
                        hub.frame(&text);
                    }
                }
            })
        };
        let on_close = {
            let hub = self.clone();
            Closure::<dyn FnMut(CloseEvent)>::new(move |e: CloseEvent| {
                hub.closed(generation, e.code());
            })
        };
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        *self.socket.borrow_mut() = Some(ws);
        *self.handlers.borrow_mut() = Some((on_message, on_close));
    }

    /// One frame from the server.
    pub fn frame(&self, text: &str) {
        match Frame::parse(text) {
            Some(Frame::Snapshot { sku, items }) => {
                self.attempt.set(0);
                self.seqs.borrow_mut().snapshot(&sku, &items);
                element::mark_live(self, "open");
                element::apply_live(self, &sku, &items);
            }
            Some(Frame::Change(row)) => {
                let verdict = self.seqs.borrow_mut().change(&row);
                match verdict {
                    Verdict::Apply => {
                        element::apply_live(self, &row.sku, std::slice::from_ref(&row))
                    }
                    Verdict::Gap => {
                        self.resyncs.set(self.resyncs.get().saturating_add(1));
                        element::mark_resyncs(self, self.resyncs.get());
                        self.send(&resync_message(&row.sku));
                    }
                    Verdict::Stale | Verdict::Resyncing => {}
                }
            }
            Some(Frame::Pong) | None => {}
        }
    }

    fn closed(self: &Rc<Self>, generation: u32, code: u16) {
        if self.generation.get() != generation {
            return;
        }
        // The socket is gone; its handlers are dropped by the next connect.
        if let Some(ws) = self.socket.borrow_mut().take() {
            ws.set_onmessage(None);
        }
        if !reconnects_after(code) {
            return self.give_up();
        }
        let attempt = self.attempt.get();
        match backoff_ms(attempt, js_sys::Math::random()) {
            Some(delay) => {
                self.attempt.set(attempt + 1);
                element::mark_live(self, "reconnecting");
                self.queue_connect(delay);
            }
            None => self.give_up(),
        }
    }

    fn give_up(self: &Rc<Self>) {
        self.gave_up.set(true);
        element::mark_live(self, "polling");
        element::restart_live(self);
    }
}

/// For tests: drops every connection as a network failure would (close code 4000).
pub fn drop_connections() {
    HUBS.with(|h| {
        for hub in h.borrow().iter() {
            if let Some(ws) = hub.socket.borrow().as_ref() {
                let _ = ws.close_with_code_and_reason(4000, "dropped by test");
            }
        }
    });
}

/// For tests: handles `text` as if every connection had received it.
pub fn inject(text: &str) {
    let hubs: Vec<Rc<Hub>> = HUBS.with(|h| h.borrow().clone());
    for hub in hubs {
        hub.frame(text);
    }
}

/// For tests: closes and forgets every connection.
pub fn reset() {
    let hubs: Vec<Rc<Hub>> = HUBS.with(|h| std::mem::take(&mut *h.borrow_mut()));
    for hub in hubs {
        hub.generation.set(hub.generation.get().wrapping_add(1));
        hub.drop_socket();
    }
}

/// For tests: how many connections have a socket now.
pub fn open_connections() -> usize {
    HUBS.with(|h| {
        h.borrow()
            .iter()
            .filter(|x| x.socket.borrow().is_some())
            .count()
    })
}
