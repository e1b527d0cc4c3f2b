//! The edge availability cache (issue 13): SKU positions kept in one Worker
//! isolate's memory for storefront and publishable reads, never older than
//! [`READ_STALENESS_MS`] (API.md's bound), measured from the owning object's
//! clock (`ReadAnswer::now`, the item's `as_of`).
//!
//! - Bounded: at most [`MAX_ENTRIES`] SKUs and [`MAX_BYTES`] (estimated), the
//!   least recently used out first.
//! - Expiry: an entry older than the bound is never served, whether or not
//!   anything pushed or wrote since (missed pushes, a restarted object).
//! - Push: a read that hits (the SKU was read again within the bound)
//!   claims a listener for the SKU unless one is alive ([`listen`], in the
//!   request's `waitUntil`; a miss claims none, so a page read once costs no
//!   subscription): a live subscription to the SKU object (`objects/live.rs`,
//!   `full=1`), kept [`LISTEN_MS`], that applies every pushed change to its
//!   own copy and pings every [`PING_MS`] while reads take the entry (a SKU
//!   nobody read since the last proof is not pinged); each `pong` (after
//!   every change sent before it) stores the copy as of the ping, so a
//!   listened SKU stays fresh with no object call.
//! - Refresh ahead: the first read that finds an entry older than
//!   [`REFRESH_AFTER_MS`] (no listener kept it fresh) claims its refresh,
//!   made in `waitUntil` by an object call; it and every other read go on
//!   serving the entry meanwhile.
//! - Writes through this isolate drop the SKU at once ([`PositionCache::written`]),
//!   and an answer (or pong) from before such a write is never stored after it.
//! - Misses fan out to the SKU objects in parallel, at most [`MAX_IN_FLIGHT`]
//!   calls per read, and concurrent misses of one SKU are coalesced: the first
//!   is the leader (its call fills a [`Slot`]); the others are followers. workerd
//!   does not let one request await I/O another request started (measured: a
//!   shared future got reads cancelled as hung), so a follower never awaits
//!   the leader's call: it sleeps on timers of its own ([`FOLLOW_POLL_MS`]) and
//!   reads the slot's memory when it wakes, and after [`FOLLOW_MAX_MS`] makes
//!   its own call. A leader whose request goes away marks its slot abandoned
//!   (followers then call at once). Listeners and refreshes write memory
//!   only; no request awaits them.
//!
//! Every entry may vanish at any time (isolates are evicted): nothing here is
//! the truth, only a shortcut to it. Each isolate (and, in production, each
//! colo's isolates) has its own cache; the bound holds per cache.
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use std::time::Duration;

use futures_util::future::{join, join_all, select, Either, LocalBoxFuture};
use futures_util::stream::{self, StreamExt};
use omnistock_core::{Channel, LocationId, Position, Sku};
use serde::Deserialize;
use worker::{Delay, Env, Headers, Method, Request, RequestInit, WebSocket, WebsocketEvent};

use crate::http::Problem;
use crate::objects::live;
use crate::wire::sku_stock::ReadAnswer;
use crate::wire::Namespace;

/// The oldest cached position a read may show (API.md: at most 1 s stale).
pub const READ_STALENESS_MS: i64 = 1_000;
/// An entry this old is refreshed in the background by the first read that sees it.
pub const REFRESH_AFTER_MS: i64 = 700;
/// A refresh claimed this long ago without an answer may be claimed again.
pub const REFRESH_RETRY_MS: i64 = 250;
/// Most SKUs cached.
pub const MAX_ENTRIES: usize = 10_000;
/// Most bytes cached (estimated: see [`entry_bytes`]).
pub const MAX_BYTES: usize = 8 << 20;
/// A SKU whose answer is bigger than this is not cached (read each time).
pub const MAX_ENTRY_BYTES: usize = 256 << 10;
/// Most SKU object calls one read (or one background refresh) has in flight.
pub const MAX_IN_FLIGHT: usize = 24;
/// How often a follower looks at its leader's slot.
pub const FOLLOW_POLL_MS: u64 = 10;
/// How long a follower waits for a leader before it makes its own call; a
/// slot older than this is not followed. (A leader's 100 calls take 0.3-3 s
/// in `wrangler dev` on a busy 2-core machine; a follower that gave up sooner
/// would double the load that made the leader slow.)
pub const FOLLOW_MAX_MS: i64 = 2_000;
/// Most misses in flight at once (slots) per isolate.
pub const MAX_SLOTS: usize = 10_000;
/// Most SKUs whose last write through this isolate is remembered.
pub const MAX_WRITTEN: usize = 10_000;

/// How often a listener asks its SKU object whether anything changed,
/// when a read took the entry since its last proof (otherwise it waits).
pub const PING_MS: u64 = 300;
/// A listener whose SKU was not read for this long stops (its pings cost the
/// isolate and the object; the next read starts another).
pub const LISTEN_IDLE_MS: i64 = 3_000;
/// A listener whose `pong` is this late gives up (its entries then age out).
pub const PONG_LATE_MS: i64 = 1_000;
/// How long one listener lives (a `waitUntil` in production is bounded:
/// 30 s after the answer); the next read after it ends starts another.
pub const LISTEN_MS: i64 = 25_000;
/// Most SKUs listened to at once per isolate.
pub const MAX_LISTENERS: usize = 2_000;

/// An answer's clock may run this far ahead of the Worker's (two clocks of
/// one colo); an answer further ahead is not trusted.
pub const MAX_CLOCK_AHEAD_MS: i64 = READ_STALENESS_MS;

/// Estimated memory of one entry.
pub fn entry_bytes(sku: &Sku, a: &ReadAnswer) -> usize {
    let per = std::mem::size_of::<omnistock_core::Position>() + 48;
    128 + sku.as_str().len()
        + a.positions
            .iter()
            .map(|(l, _)| per + l.as_str().len())
            .sum::<usize>()
}

/// Whether an answer read at `as_of` may be shown at `now`.
pub fn fresh(now: i64, as_of: i64) -> bool {
    now - as_of <= READ_STALENESS_MS && as_of <= now + MAX_CLOCK_AHEAD_MS
}

struct Entry {
    answer: ReadAnswer,
    bytes: usize,
    stamp: u64,
    /// When a read last took it.
    read_at: i64,
    /// When a background refresh was claimed (none pending: `None`).
    refreshing: Option<i64>,
}

/// A miss being read by its leader; followers look at it.
pub struct Slot {
    started: i64,
    state: RefCell<SlotState>,
}

#[derive(Clone)]
enum SlotState {
    Pending,
    Done(Option<ReadAnswer>),
}

impl Slot {
    /// Whether the leader is done (answered, failed or went away).
    pub fn settled(&self) -> bool {
        matches!(*self.state.borrow(), SlotState::Done(_))
    }
    /// The leader's answer, if it had one.
    pub fn answer(&self) -> Option<ReadAnswer> {
        match &*self.state.borrow() {
            SlotState::Done(a) => a.clone(),
            SlotState::Pending => None,
        }
    }
}

/// What a read of one SKU that missed does.
pub enum Begin {
    /// Call the object; hand the answer to [`PositionCache::finish`].
    Lead(Ticket),
    /// Another read is calling: watch its slot.
    Follow(Rc<Slot>),
}

/// A call's claim: the write epoch when it started and its slot, if it leads one.
pub struct Ticket {
    epoch: u64,
    slot: Option<Rc<Slot>>,
}

/// The cache of one isolate (pure: every time is given).
pub struct PositionCache {
    max_entries: usize,
    max_bytes: usize,
    entries: HashMap<Sku, Entry>,
    lru: BTreeMap<u64, Sku>,
    bytes: usize,
    next: u64,
    slots: HashMap<Sku, Rc<Slot>>,
    /// Bumped by every write through this isolate.
    epoch: u64,
    /// The epoch of each SKU's last write (bounded: the oldest out, and
    /// `forgotten` says up to which epoch records were dropped).
    written: HashMap<Sku, u64>,
    written_order: BTreeMap<u64, Sku>,
    forgotten: u64,
    /// SKUs with a listener, and when it started.
    listeners: HashMap<Sku, i64>,
}

impl Default for PositionCache {
    fn default() -> Self {
        Self::new(MAX_ENTRIES, MAX_BYTES)
    }
}

impl PositionCache {
    pub fn new(max_entries: usize, max_bytes: usize) -> Self {
        PositionCache {
            max_entries,
            max_bytes,
            entries: HashMap::new(),
            lru: BTreeMap::new(),
            bytes: 0,
            next: 0,
            slots: HashMap::new(),
            epoch: 0,
            written: HashMap::new(),
            written_order: BTreeMap::new(),
            forgotten: 0,
            listeners: HashMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    fn stamp(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    /// A fresh entry (touched: most recently used) and whether the caller
    /// claimed its background refresh. A stale entry is dropped.
    pub fn get(&mut self, now: i64, sku: &Sku) -> Option<(ReadAnswer, bool)> {
        let stamp = self.stamp();
        let e = self.entries.get_mut(sku)?;
        if !fresh(now, e.answer.now) {
            self.remove(sku);
            return None;
        }
        self.lru.remove(&e.stamp);
        e.stamp = stamp;
        e.read_at = e.read_at.max(now);
        self.lru.insert(stamp, sku.clone());
        let due = now - e.answer.now >= REFRESH_AFTER_MS
            && e.refreshing.is_none_or(|at| now - at >= REFRESH_RETRY_MS);
        if due {
            e.refreshing = Some(now);
        }
        Some((e.answer.clone(), due))
    }

    fn remove(&mut self, sku: &Sku) {
        if let Some(e) = self.entries.remove(sku) {
            self.lru.remove(&e.stamp);
            self.bytes -= e.bytes;
        }
    }

    /// A read of `sku` missed at `now`: lead a call, or follow a young one.
    pub fn begin(&mut self, now: i64, sku: &Sku) -> Begin {
        if let Some(s) = self.slots.get(sku) {
            if !s.settled() && now - s.started <= FOLLOW_MAX_MS && s.started <= now {
                return Begin::Follow(s.clone());
            }
        }
        Begin::Lead(self.lead(now, sku))
    }

    /// A call of `sku` that others may follow (a background refresh, a miss).
    pub fn lead(&mut self, now: i64, sku: &Sku) -> Ticket {
        let slot = Rc::new(Slot {
            started: now,
            state: RefCell::new(SlotState::Pending),
        });
        if self.slots.len() >= MAX_SLOTS && !self.slots.contains_key(sku) {
            self.slots.retain(|_, s| !s.settled());
            if self.slots.len() >= MAX_SLOTS {
                // Too many misses at once: this one is not followed.
                return Ticket {
                    epoch: self.epoch,
                    slot: None,
                };
            }
        }
        self.slots.insert(sku.clone(), slot.clone());
        Ticket {
            epoch: self.epoch,
            slot: Some(slot),
        }
    }

    /// A call that nobody follows (a follower's own call after its wait).
    pub fn alone(&self) -> Ticket {
        Ticket {
            epoch: self.epoch,
            slot: None,
        }
    }

    /// Whether `sku` was written through this isolate after `epoch`.
    fn written_since(&self, sku: &Sku, epoch: u64) -> bool {
        epoch < self.forgotten || self.written.get(sku).is_some_and(|w| *w > epoch)
    }

    /// The call of `ticket` answered: kept (unless a write through this
    /// isolate came after the call began, or a newer answer is kept), and its
    /// followers told.
    pub fn finish(&mut self, sku: &Sku, ticket: Ticket, r: Option<&ReadAnswer>) {
        if let Some(slot) = &ticket.slot {
            *slot.state.borrow_mut() = SlotState::Done(r.cloned());
            if self.slots.get(sku).is_some_and(|s| Rc::ptr_eq(s, slot)) {
                self.slots.remove(sku);
            }
        }
        let Some(a) = r else {
            return;
        };
        if self.written_since(sku, ticket.epoch) {
            return;
        }
        if let Some(e) = self.entries.get(sku) {
            if e.answer.now > a.now {
                return;
            }
        }
        self.insert(sku, a.clone());
    }

    fn insert(&mut self, sku: &Sku, a: ReadAnswer) {
        let read_at = self.entries.get(sku).map_or(a.now, |e| e.read_at);
        self.remove(sku);
        let bytes = entry_bytes(sku, &a);
        if bytes > MAX_ENTRY_BYTES || bytes > self.max_bytes {
            return;
        }
        let stamp = self.stamp();
        self.lru.insert(stamp, sku.clone());
        self.bytes += bytes;
        self.entries.insert(
            sku.clone(),
            Entry {
                answer: a,
                bytes,
                stamp,
                read_at,
                refreshing: None,
            },
        );
        while self.entries.len() > self.max_entries || self.bytes > self.max_bytes {
            let Some((_, old)) = self.lru.pop_first() else {
                break;
            };
            if let Some(e) = self.entries.remove(&old) {
                self.bytes -= e.bytes;
            }
        }
    }

    /// The current write epoch (for [`PositionCache::store`]).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Keeps an answer known at `epoch` (a listener's): as [`PositionCache::finish`].
    pub fn store(&mut self, sku: &Sku, a: ReadAnswer, epoch: u64) {
        self.finish(sku, Ticket { epoch, slot: None }, Some(&a));
    }

    /// Whether the caller starts a listener for `sku` (none alive, room left).
    pub fn claim_listen(&mut self, now: i64, sku: &Sku) -> bool {
        if let Some(at) = self.listeners.get(sku) {
            if now - at <= LISTEN_MS + PONG_LATE_MS {
                return false;
            }
        }
        if self.listeners.len() >= MAX_LISTENERS && !self.listeners.contains_key(sku) {
            self.listeners
                .retain(|_, at| now - *at <= LISTEN_MS + PONG_LATE_MS);
            if self.listeners.len() >= MAX_LISTENERS {
                return false;
            }
        }
        self.listeners.insert(sku.clone(), now);
        true
    }

    /// Whether `sku` was read within [`LISTEN_IDLE_MS`] of `now` (a listener
    /// of a SKU nobody reads stops).
    pub fn read_lately(&self, now: i64, sku: &Sku) -> bool {
        self.entries
            .get(sku)
            .is_some_and(|e| now - e.read_at <= LISTEN_IDLE_MS)
    }

    /// Whether a read took `sku`'s entry after the moment its answer is as
    /// of: only then is a newer proof worth a ping (a SKU read once, say by
    /// a cold category page, costs its listener no pings at all).
    pub fn read_since_proof(&self, sku: &Sku) -> bool {
        self.entries
            .get(sku)
            .is_some_and(|e| e.read_at > e.answer.now)
    }

    /// The listener of `sku` started at `started` ended.
    pub fn listen_ended(&mut self, sku: &Sku, started: i64) {
        if self.listeners.get(sku) == Some(&started) {
            self.listeners.remove(sku);
        }
    }

    /// This isolate changed `sku`'s stock: its entry is gone, a call begun
    /// before is not stored, and a miss after does not follow one begun before.
    pub fn written(&mut self, sku: &Sku) {
        self.epoch += 1;
        self.remove(sku);
        self.slots.remove(sku);
        if let Some(old) = self.written.insert(sku.clone(), self.epoch) {
            self.written_order.remove(&old);
        }
        self.written_order.insert(self.epoch, sku.clone());
        while self.written.len() > MAX_WRITTEN {
            let Some((e, old)) = self.written_order.pop_first() else {
                break;
            };
            self.written.remove(&old);
            self.forgotten = self.forgotten.max(e);
        }
    }
}

thread_local! {
    static CACHE: RefCell<PositionCache> = RefCell::new(PositionCache::default());
}

fn with<T>(f: impl FnOnce(&mut PositionCache) -> T) -> T {
    CACHE.with(|c| f(&mut c.borrow_mut()))
}

/// This isolate changed `sku`'s stock (see [`PositionCache::written`]).
pub fn written(sku: &Sku) {
    with(|c| c.written(sku))
}

/// Reads one SKU object (the answer at every location).
pub type Fetch = Rc<dyn Fn(Sku) -> LocalBoxFuture<'static, Result<ReadAnswer, Problem>>>;
/// Sleeps this many milliseconds on a timer of the calling request.
pub type Sleep = Rc<dyn Fn(u64) -> LocalBoxFuture<'static, ()>>;

/// A leader's call: its slot is settled even if the request goes away.
struct Lead {
    sku: Sku,
    ticket: Option<Ticket>,
}

impl Lead {
    fn finish(mut self, r: Option<&ReadAnswer>) {
        if let Some(t) = self.ticket.take() {
            with(|c| c.finish(&self.sku, t, r));
        }
    }
}

impl Drop for Lead {
    fn drop(&mut self) {
        if let Some(t) = self.ticket.take() {
            // The leader went away (its request was cancelled) before the answer.
            CACHE.with(|c| {
                if let Ok(mut c) = c.try_borrow_mut() {
                    c.finish(&self.sku, t, None);
                }
            });
        }
    }
}

impl Lead {
    /// A claim that is settled even if it is dropped before its call starts.
    fn new(sku: &Sku, ticket: Ticket) -> Lead {
        Lead {
            sku: sku.clone(),
            ticket: Some(ticket),
        }
    }
}

async fn call(fetch: &Fetch, lead: Lead) -> Result<ReadAnswer, Problem> {
    let r = fetch(lead.sku.clone()).await;
    lead.finish(r.as_ref().ok());
    r
}

/// What [`read`] found.
pub struct Read {
    /// One answer per SKU asked, in order.
    pub answers: Vec<Result<ReadAnswer, Problem>>,
    /// SKUs whose background refresh this read claimed (see [`refresh`]).
    pub refresh: Vec<Sku>,
    /// SKUs whose listener this read claimed (see [`listen`]).
    pub listen: Vec<Sku>,
    /// Counts, for the `Server-Timing`-style header: hits, calls, followed.
    pub hits: usize,
    pub calls: usize,
    pub followed: usize,
}

/// The positions of `skus` at `now`, each no older than [`READ_STALENESS_MS`]:
/// hits from the cache, misses from the objects (leading or following).
pub async fn read(now: i64, skus: &[Sku], fetch: Fetch, sleep: Sleep, clock: fn() -> i64) -> Read {
    let mut answers: Vec<Option<Result<ReadAnswer, Problem>>> = vec![None; skus.len()];
    let mut refresh = Vec::new();
    let mut listen = Vec::new();
    let mut leads: Vec<(usize, Lead)> = Vec::new();
    let mut follows: Vec<(usize, Sku, Rc<Slot>)> = Vec::new();
    with(|c| {
        for (i, s) in skus.iter().enumerate() {
            if let Some((a, due)) = c.get(now, s) {
                answers[i] = Some(Ok(a));
                if due {
                    refresh.push(s.clone());
                }
                // Read again within the bound: worth a listener. (A miss
                // claims none: a page read once costs no subscription.)
                if c.claim_listen(now, s) {
                    listen.push(s.clone());
                }
                continue;
            }
            match c.begin(now, s) {
                Begin::Lead(t) => leads.push((i, Lead::new(s, t))),
                Begin::Follow(slot) => follows.push((i, s.clone(), slot)),
            }
        }
    });
    let hits = skus.len() - leads.len() - follows.len();
    let followed = follows.len();
    let f = fetch.clone();
    let led = stream::iter(leads)
        .map(|(i, lead)| {
            let f = f.clone();
            async move { (i, call(&f, lead).await) }
        })
        .buffer_unordered(MAX_IN_FLIGHT)
        .collect::<Vec<_>>();
    // Bounded by the clock, not by a count of sleeps: on a busy machine a
    // timer fires late.
    let watch = async {
        let start = clock();
        let most = (FOLLOW_MAX_MS as u64).div_ceil(FOLLOW_POLL_MS);
        for _ in 0..most {
            if follows.iter().all(|(_, _, s)| s.settled()) || clock() - start >= FOLLOW_MAX_MS {
                break;
            }
            sleep(FOLLOW_POLL_MS).await;
        }
    };
    let (led, ()) = join(led, watch).await;
    let mut calls = 0;
    for (i, r) in led {
        calls += 1;
        answers[i] = Some(r);
    }
    // Followers whose leader answered in time take its answer (if still
    // fresh); the others call themselves.
    let mut own: Vec<(usize, Sku)> = Vec::new();
    for (i, s, slot) in follows {
        match slot.answer() {
            Some(a) if a.now >= now - READ_STALENESS_MS => answers[i] = Some(Ok(a)),
            _ => own.push((i, s)),
        }
    }
    let mine = stream::iter(own)
        .map(|(i, s)| {
            let f = fetch.clone();
            async move {
                let lead = Lead::new(&s, with(|c| c.alone()));
                (i, call(&f, lead).await)
            }
        })
        .buffer_unordered(MAX_IN_FLIGHT)
        .collect::<Vec<_>>()
        .await;
    for (i, r) in mine {
        calls += 1;
        answers[i] = Some(r);
    }
    Read {
        answers: answers
            .into_iter()
            .map(|a| a.unwrap_or_else(|| Err(Problem::overloaded("a SKU was not read"))))
            .collect(),
        refresh,
        listen,
        hits,
        calls,
        followed,
    }
}

/// Re-reads `skus` (claimed by [`read`]) as leaders, so misses meanwhile
/// follow these calls; run where no reader waits for it (`waitUntil`).
pub async fn refresh(now: i64, skus: Vec<Sku>, fetch: Fetch) {
    let leads: Vec<Lead> = with(|c| {
        let mut out = Vec::new();
        for s in skus {
            let busy = c
                .slots
                .get(&s)
                .is_some_and(|x| !x.settled() && now - x.started <= FOLLOW_MAX_MS);
            if !busy {
                let t = c.lead(now, &s);
                out.push(Lead::new(&s, t));
            }
        }
        out
    });
    stream::iter(leads)
        .map(|lead| {
            let f = fetch.clone();
            async move {
                let _ = call(&f, lead).await;
            }
        })
        .buffer_unordered(MAX_IN_FLIGHT)
        .collect::<Vec<()>>()
        .await;
}

/// Opens the live subscription (`full=1`) of `sku`'s object.
async fn subscribe(env: &Env, sku: &Sku, max: usize) -> Result<WebSocket, Problem> {
    let stub = env
        .durable_object(Namespace::SkuStock.binding())?
        .id_from_name(sku.as_str())?
        .get_stub()?;
    let headers = Headers::new();
    headers.set("Upgrade", "websocket")?;
    let mut init = RequestInit::new();
    init.with_method(Method::Get).with_headers(headers);
    let url = format!(
        "{}&full=1",
        live::upgrade_url(sku.as_str(), Channel::Online, &[], max)
    );
    let req = Request::new_with_init(&url, &init)?;
    let ws = stub
        .fetch_with_request(req)
        .await?
        .websocket()
        .ok_or_else(|| Problem::overloaded("a SKU object did not accept the subscription"))?;
    ws.accept()?;
    Ok(ws)
}

/// A frame of the live protocol, as a listener reads it.
#[derive(Debug, PartialEq)]
pub enum Frame {
    Snapshot(Vec<(LocationId, Position)>),
    Change(LocationId, Position),
    Pong,
}

/// Reads a frame (`None`: not one a `full=1` subscriber gets).
pub fn frame(text: &str) -> Option<Frame> {
    if text == "pong" {
        return Some(Frame::Pong);
    }
    #[derive(Deserialize)]
    struct Row {
        location: LocationId,
        position: Position,
    }
    #[derive(Deserialize)]
    struct Any {
        #[serde(rename = "type")]
        kind: String,
        #[serde(default)]
        items: Vec<Row>,
        location: Option<LocationId>,
        position: Option<Position>,
    }
    let a: Any = serde_json::from_str(text).ok()?;
    match (a.kind.as_str(), a.location, a.position) {
        ("snapshot", _, _) => Some(Frame::Snapshot(
            a.items
                .into_iter()
                .map(|r| (r.location, r.position))
                .collect(),
        )),
        ("change", Some(l), Some(p)) => Some(Frame::Change(l, p)),
        _ => None,
    }
}

/// A change pushed to a listener's own copy (newer versions only).
pub fn apply(positions: &mut Vec<(LocationId, Position)>, l: LocationId, p: Position) {
    match positions.iter_mut().find(|(x, _)| *x == l) {
        Some((_, old)) if old.version < p.version => *old = p,
        Some(_) => {}
        None => positions.push((l, p)),
    }
}

/// A listener's claim, given back however it ends.
struct Listening {
    sku: Sku,
    started: i64,
}

impl Drop for Listening {
    fn drop(&mut self) {
        CACHE.with(|c| {
            if let Ok(mut c) = c.try_borrow_mut() {
                c.listen_ended(&self.sku, self.started);
            }
        });
    }
}

/// Listens to `skus`' objects (claimed by [`read`]) for [`LISTEN_MS`]: the
/// SKU objects' push keeps this isolate's entries current. Each listener
/// keeps its own copy of the SKU's positions (the snapshot, then every
/// change) and pings every [`PING_MS`] while reads take the entry (none
/// since the last proof: no ping); a `pong` proves every change sent
/// before it arrived, so the copy is stored as of the ping's sending. A
/// listener that loses its socket or whose pong is late just stops: its
/// entries then age out (the bound holds without it). Run in `waitUntil`.
pub async fn listen(env: Env, skus: Vec<Sku>, max_subscribers: usize, now: fn() -> i64) {
    join_all(
        skus.into_iter()
            .map(|s| listen_one(env.clone(), s, max_subscribers, now)),
    )
    .await;
}

async fn listen_one(env: Env, sku: Sku, max: usize, now: fn() -> i64) {
    let started = with(|c| c.listeners.get(&sku).copied()).unwrap_or_else(now);
    let _claim = Listening {
        sku: sku.clone(),
        started,
    };
    let opened = now();
    let epoch = with(|c| c.epoch());
    let Ok(ws) = subscribe(&env, &sku, max).await else {
        return;
    };
    let Ok(mut events) = ws.events() else {
        return;
    };
    let mut mine: Option<Vec<(LocationId, Position)>> = None;
    let mut ping: Option<(i64, u64)> = None;
    let mut tick = Delay::from(Duration::from_millis(PING_MS));
    loop {
        match select(events.next(), &mut tick).await {
            Either::Left((Some(Ok(WebsocketEvent::Message(m))), _)) => {
                let Some(f) = m.text().as_deref().and_then(frame) else {
                    break;
                };
                match f {
                    Frame::Snapshot(p) => {
                        // As of the subscription's start at the latest.
                        let a = ReadAnswer {
                            now: opened,
                            positions: p.clone(),
                        };
                        with(|c| c.store(&sku, a, epoch));
                        mine = Some(p);
                    }
                    Frame::Change(l, p) => {
                        if let Some(m) = mine.as_mut() {
                            apply(m, l, p);
                        }
                    }
                    Frame::Pong => {
                        if let (Some(m), Some((at, e))) = (&mine, ping.take()) {
                            let a = ReadAnswer {
                                now: at,
                                positions: m.clone(),
                            };
                            with(|c| c.store(&sku, a, e));
                        }
                    }
                }
            }
            Either::Left(_) => break,
            Either::Right(_) => {
                let t = now();
                if t - started >= LISTEN_MS
                    || (t - opened > LISTEN_IDLE_MS && !with(|c| c.read_lately(t, &sku)))
                {
                    break;
                }
                match ping {
                    Some((at, _)) if t - at > PONG_LATE_MS => break,
                    Some(_) => {}
                    None if mine.is_some() && with(|c| c.read_since_proof(&sku)) => {
                        if ws.send_with_str("ping").is_err() {
                            break;
                        }
                        ping = Some((t, with(|c| c.epoch())));
                    }
                    None => {}
                }
                tick = Delay::from(Duration::from_millis(PING_MS));
            }
        }
    }
    let _ = ws.close(Some(1000u16), Some("done"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    fn sku(s: &str) -> Sku {
        Sku::parse(s).unwrap()
    }

    fn answer(now: i64, locations: usize) -> ReadAnswer {
        ReadAnswer {
            now,
            positions: (0..locations)
                .map(|i| {
                    (
                        LocationId::parse(&format!("store-{i}")).unwrap(),
                        Position::default(),
                    )
                })
                .collect(),
        }
    }

    fn fill(c: &mut PositionCache, now: i64, s: &Sku, a: ReadAnswer) {
        match c.begin(now, s) {
            Begin::Lead(t) => c.finish(s, t, Some(&a)),
            Begin::Follow(_) => panic!("nobody else is reading"),
        }
    }

    #[test]
    fn never_older_than_the_bound() {
        let mut c = PositionCache::default();
        let s = sku("A");
        fill(&mut c, 10_000, &s, answer(10_000, 1));
        assert!(c.get(10_000 + READ_STALENESS_MS, &s).is_some());
        assert!(c.get(10_001 + READ_STALENESS_MS, &s).is_none());
        // The stale entry is gone, not kept.
        assert_eq!(c.len(), 0);
        assert_eq!(c.bytes(), 0);
        // An answer from far ahead of this clock is not served.
        fill(&mut c, 10_000, &s, answer(12_000, 1));
        assert!(c.get(10_000, &s).is_none());
    }

    #[test]
    fn refresh_is_claimed_once_then_again_after_the_retry() {
        let mut c = PositionCache::default();
        let s = sku("A");
        fill(&mut c, 0, &s, answer(0, 1));
        assert_eq!(c.get(REFRESH_AFTER_MS - 1, &s).map(|x| x.1), Some(false));
        assert_eq!(c.get(REFRESH_AFTER_MS, &s).map(|x| x.1), Some(true));
        assert_eq!(c.get(REFRESH_AFTER_MS + 1, &s).map(|x| x.1), Some(false));
        let retry = REFRESH_AFTER_MS + REFRESH_RETRY_MS;
        assert_eq!(c.get(retry, &s).map(|x| x.1), Some(true));
        // A new answer resets the claim.
        fill(&mut c, retry, &s, answer(retry, 1));
        assert_eq!(c.get(retry + 1, &s).map(|x| x.1), Some(false));
    }

    #[test]
    fn least_recently_used_out_by_entries() {
        let mut c = PositionCache::new(3, MAX_BYTES);
        for i in 0..3 {
            fill(&mut c, 0, &sku(&format!("S{i}")), answer(0, 1));
        }
        // S0 used: S1 is now the least recently used.
        assert!(c.get(1, &sku("S0")).is_some());
        fill(&mut c, 1, &sku("S3"), answer(1, 1));
        assert_eq!(c.len(), 3);
        assert!(c.get(2, &sku("S1")).is_none());
        assert!(c.get(2, &sku("S0")).is_some());
        assert!(c.get(2, &sku("S2")).is_some());
        assert!(c.get(2, &sku("S3")).is_some());
        assert_eq!(c.lru.len(), c.entries.len());
    }

    #[test]
    fn least_recently_used_out_by_bytes() {
        let one = entry_bytes(&sku("S0"), &answer(0, 10));
        let mut c = PositionCache::new(1_000, 3 * one + one / 2);
        for i in 0..5 {
            fill(&mut c, 0, &sku(&format!("S{i}")), answer(0, 10));
            assert!(c.bytes() <= 3 * one + one / 2);
        }
        assert_eq!(c.len(), 3);
        assert!(c.get(0, &sku("S0")).is_none());
        assert!(c.get(0, &sku("S4")).is_some());
        // An entry bigger than the whole cache is not kept (nor does it
        // push the others out).
        fill(&mut c, 0, &sku("BIG"), answer(0, 100));
        assert!(c.get(0, &sku("BIG")).is_none());
        assert_eq!(c.len(), 3);
        let sum: usize = c.entries.values().map(|e| e.bytes).sum();
        assert_eq!(sum, c.bytes());
    }

    #[test]
    fn concurrent_misses_follow_one_leader() {
        let mut c = PositionCache::default();
        let s = sku("A");
        let Begin::Lead(t) = c.begin(0, &s) else {
            panic!("first miss leads")
        };
        let Begin::Follow(slot) = c.begin(10, &s) else {
            panic!("second miss follows")
        };
        assert!(!slot.settled());
        // A slot older than the follow bound is not followed.
        assert!(matches!(c.begin(FOLLOW_MAX_MS + 1, &s), Begin::Lead(_)));
        c.finish(&s, t, Some(&answer(5, 1)));
        assert!(slot.settled());
        assert_eq!(slot.answer().map(|a| a.now), Some(5));
    }

    #[test]
    fn a_write_drops_the_entry_and_reads_begun_before_it() {
        let mut c = PositionCache::default();
        let s = sku("A");
        fill(&mut c, 0, &s, answer(0, 1));
        let Begin::Lead(t) = c.begin(1, &sku("B")) else {
            panic!()
        };
        let t_a = c.alone();
        c.written(&s);
        assert!(c.get(1, &s).is_none());
        // A read of A begun before the write is not kept; B's is.
        c.finish(&s, t_a, Some(&answer(1, 1)));
        assert!(c.get(2, &s).is_none());
        c.finish(&sku("B"), t, Some(&answer(1, 1)));
        assert!(c.get(2, &sku("B")).is_some());
        // A miss after a write does not follow a call begun before it.
        let Begin::Lead(_) = c.begin(3, &s) else {
            panic!()
        };
        c.written(&s);
        let Begin::Lead(t4) = c.begin(4, &s) else {
            panic!("a miss after a write leads")
        };
        // An older answer never replaces a newer one.
        c.finish(&s, t4, Some(&answer(10, 1)));
        let t_old = c.alone();
        c.finish(&s, t_old, Some(&answer(9, 2)));
        assert_eq!(c.get(10, &s).map(|x| x.0.positions.len()), Some(1));
    }

    #[test]
    fn forgotten_writes_still_refuse_older_reads() {
        let mut c = PositionCache::default();
        let t = c.alone();
        for i in 0..=MAX_WRITTEN {
            c.written(&sku(&format!("W{i}")));
        }
        assert!(c.written.len() <= MAX_WRITTEN);
        // W0's record is gone, but a read begun before it is still refused.
        c.finish(&sku("W0"), t, Some(&answer(0, 1)));
        assert!(c.get(0, &sku("W0")).is_none());
    }

    /// The async driver, with a fetch that answers at once.
    #[test]
    fn read_fans_out_and_then_hits() {
        CACHE.with(|c| *c.borrow_mut() = PositionCache::default());
        let calls = Rc::new(std::cell::Cell::new(0));
        let n = calls.clone();
        let fetch: Fetch = Rc::new(move |_s| {
            n.set(n.get() + 1);
            Box::pin(async { Ok(answer(100, 1)) })
        });
        let sleep: Sleep = Rc::new(|_| Box::pin(async {}));
        let skus: Vec<Sku> = (0..100).map(|i| sku(&format!("R{i}"))).collect();
        let r = read(100, &skus, fetch.clone(), sleep.clone(), || 0)
            .now_or_never()
            .expect("ready");
        assert_eq!((r.hits, r.calls, r.followed), (0, 100, 0));
        assert!(r.answers.iter().all(|a| a.is_ok()));
        assert_eq!(calls.get(), 100);
        let r = read(
            100 + REFRESH_AFTER_MS,
            &skus,
            fetch.clone(),
            sleep.clone(),
            || 0,
        )
        .now_or_never()
        .expect("ready");
        assert_eq!((r.hits, r.calls), (100, 0));
        assert_eq!(r.refresh.len(), 100);
        refresh(100 + REFRESH_AFTER_MS, r.refresh, fetch.clone())
            .now_or_never()
            .expect("ready");
        assert_eq!(calls.get(), 200);
        // Past the bound, and the refresh answered at 100 (this fetch's clock):
        // nothing is served older than the bound.
        let r = read(101 + READ_STALENESS_MS, &skus, fetch, sleep, || 0)
            .now_or_never()
            .expect("ready");
        assert_eq!(r.calls, 100);
    }

    /// A follower whose leader never answers calls itself after its bound.
    #[test]
    fn a_follower_calls_itself_when_the_leader_is_slow() {
        CACHE.with(|c| *c.borrow_mut() = PositionCache::default());
        let s = sku("SLOW");
        let lead = with(|c| match c.begin(0, &s) {
            Begin::Lead(t) => t,
            Begin::Follow(_) => panic!(),
        });
        let slept = Rc::new(std::cell::Cell::new(0u64));
        let z = slept.clone();
        let sleep: Sleep = Rc::new(move |ms| {
            z.set(z.get() + ms);
            Box::pin(async {})
        });
        let fetch: Fetch = Rc::new(|_| Box::pin(async { Ok(answer(7, 1)) }));
        let r = read(1, std::slice::from_ref(&s), fetch, sleep, || 0)
            .now_or_never()
            .expect("ready");
        assert_eq!((r.followed, r.calls), (1, 1));
        assert!(slept.get() >= FOLLOW_MAX_MS as u64);
        assert_eq!(r.answers[0].as_ref().map(|a| a.now).ok(), Some(7));
        // The leader's late answer is older than the follower's: not kept.
        with(|c| c.finish(&s, lead, Some(&answer(2, 3))));
        assert_eq!(with(|c| c.get(8, &s)).map(|x| x.0.positions.len()), Some(1));
    }

    #[test]
    fn listeners_are_claimed_once_and_bounded_in_time() {
        let mut c = PositionCache::default();
        let s = sku("L");
        assert!(c.claim_listen(0, &s));
        assert!(!c.claim_listen(LISTEN_MS, &s));
        // A listener that never said it ended is presumed gone after its life.
        assert!(c.claim_listen(LISTEN_MS + PONG_LATE_MS + 1, &s));
        c.listen_ended(&s, 0); // the old one: not the current claim
        assert!(!c.claim_listen(LISTEN_MS + PONG_LATE_MS + 2, &s));
        c.listen_ended(&s, LISTEN_MS + PONG_LATE_MS + 1);
        assert!(c.claim_listen(LISTEN_MS + PONG_LATE_MS + 3, &s));
    }

    #[test]
    fn frames_of_a_full_subscription() {
        let l = LocationId::parse("store-1").unwrap();
        let p = Position {
            on_hand: 5,
            damaged: 1,
            version: 7,
            ..Position::default()
        };
        let row = serde_json::json!({"sku": "A", "location": "store-1", "available": 4,
            "seq": 7, "position": p});
        let snap = serde_json::json!({"type": "snapshot", "sku": "A", "items": [row]});
        assert_eq!(
            frame(&snap.to_string()),
            Some(Frame::Snapshot(vec![(l.clone(), p)]))
        );
        let mut change = row.clone();
        change["type"] = serde_json::json!("change");
        assert_eq!(
            frame(&change.to_string()),
            Some(Frame::Change(l.clone(), p))
        );
        assert_eq!(frame("pong"), Some(Frame::Pong));
        // A row without the whole position is not one a listener can use.
        let mut bare = change.clone();
        bare.as_object_mut().unwrap().remove("position");
        assert_eq!(frame(&bare.to_string()), None);
        assert_eq!(frame("{"), None);
        // Changes apply to the copy only when newer.
        let mut mine = vec![(l.clone(), p)];
        let older = Position {
            on_hand: 1,
            version: 6,
            ..p
        };
        apply(&mut mine, l.clone(), older);
        assert_eq!(mine[0].1, p);
        let newer = Position {
            on_hand: 9,
            version: 8,
            ..p
        };
        apply(&mut mine, l.clone(), newer);
        assert_eq!(mine[0].1, newer);
        let other = LocationId::parse("store-2").unwrap();
        apply(&mut mine, other.clone(), p);
        assert_eq!(mine.len(), 2);
    }

    #[test]
    fn a_pong_from_before_a_write_is_not_stored_after_it() {
        let mut c = PositionCache::default();
        let s = sku("P");
        let e = c.epoch();
        c.written(&s);
        c.store(&s, answer(5, 1), e);
        assert!(c.get(5, &s).is_none());
        c.store(&s, answer(6, 1), c.epoch());
        assert!(c.get(6, &s).is_some());
    }

    /// A leader dropped before its call started (its request went away)
    /// settles its slot: followers do not wait for it.
    #[test]
    fn a_dropped_leader_settles_its_slot() {
        CACHE.with(|c| *c.borrow_mut() = PositionCache::default());
        let s = sku("GONE");
        let lead = with(|c| match c.begin(0, &s) {
            Begin::Lead(t) => Lead::new(&s, t),
            Begin::Follow(_) => panic!(),
        });
        let Begin::Follow(slot) = with(|c| c.begin(1, &s)) else {
            panic!("a second miss follows")
        };
        drop(lead);
        assert!(slot.settled());
        assert!(slot.answer().is_none());
        assert!(matches!(with(|c| c.begin(2, &s)), Begin::Lead(_)));
    }

    #[test]
    fn only_a_read_after_the_last_proof_asks_for_a_ping() {
        let mut c = PositionCache::default();
        let s = sku("PING");
        // Filled by a miss: nobody has read it since.
        fill(&mut c, 100, &s, answer(100, 1));
        assert!(!c.read_since_proof(&s));
        assert!(c.get(150, &s).is_some());
        assert!(c.read_since_proof(&s));
        // A listener's proof as of 200 answers that read.
        c.store(&s, answer(200, 1), c.epoch());
        assert!(!c.read_since_proof(&s));
        assert!(c.get(250, &s).is_some());
        assert!(c.read_since_proof(&s));
        assert!(!c.read_since_proof(&sku("NEVER")));
    }

    #[test]
    fn a_sku_read_lately_is_told_apart_from_an_idle_one() {
        let mut c = PositionCache::default();
        let s = sku("IDLE");
        fill(&mut c, 0, &s, answer(0, 1));
        assert!(c.read_lately(LISTEN_IDLE_MS, &s));
        assert!(!c.read_lately(LISTEN_IDLE_MS + 1, &s));
        assert!(c.get(500, &s).is_some());
        // A listener's store keeps when it was last read.
        c.store(&s, answer(600, 1), c.epoch());
        assert!(c.read_lately(500 + LISTEN_IDLE_MS, &s));
        assert!(!c.read_lately(501 + LISTEN_IDLE_MS, &s));
        assert!(!c.read_lately(0, &sku("NEVER")));
    }
}
