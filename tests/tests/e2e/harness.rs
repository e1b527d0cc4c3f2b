//! A real `wrangler dev` (workerd, local SQLite) on a free 127.0.0.1 port
//! with a temporary state directory, in its own process group. Dropping the
//! [`Server`] stops the whole group (also when a test panics); a process exit
//! stops any server still running (an `atexit` hook). (`PR_SET_PDEATHSIG`
//! is not used: it fires when the spawning *thread* ends, and the shared
//! server outlives the test thread that started it.)
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Once, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const ADMIN: &str = "sk_dev_admin";
pub const STOREFRONT: &str = "sk_dev_storefront";
pub const POS1: &str = "sk_dev_pos_store-1";
pub const PUBLISHABLE: &str = "pk_dev";
pub const DEV_KEYS: &str =
    "sk_dev_admin:admin,sk_dev_storefront:storefront,sk_dev_pos_store-1:pos@store-1,pk_dev:publishable";

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

static RUNNING: Mutex<Vec<i32>> = Mutex::new(Vec::new());
static ATEXIT: Once = Once::new();

extern "C" fn stop_all_at_exit() {
    if let Ok(pids) = RUNNING.lock() {
        for &pgid in pids.iter() {
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
    }
    if let Ok(dirs) = EXIT_DIRS.lock() {
        for d in dirs.iter() {
            let _ = fs::remove_dir_all(d);
        }
    }
}

/// Builds the Worker once per test process if its output is missing.
fn ensure_built() {
    static BUILT: Once = Once::new();
    BUILT.call_once(|| {
        let root = repo_root();
        if !root.join("functions/build/index.js").exists() {
            let st = Command::new(root.join("scripts/build-worker.sh"))
                .arg("--release")
                .status()
                .expect("run scripts/build-worker.sh");
            assert!(st.success(), "building the Worker failed");
        }
        assert!(
            root.join("node_modules/.bin/wrangler").exists(),
            "node_modules/.bin/wrangler is missing: run `npm ci` (make test does)"
        );
    });
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

static SEQ: AtomicU64 = AtomicU64::new(0);

/// A unique suffix for ids, so tests sharing a server never collide.
pub fn unique(prefix: &str) -> String {
    let n = SEQ.fetch_add(1, Ordering::SeqCst);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() % 100_000_000)
        .unwrap_or(0);
    format!("{prefix}-{t}-{n}")
}

pub struct Server {
    child: Option<Child>,
    /// Extra `--var NAME:VALUE` for this server (the deployment's vars).
    vars: Vec<(String, String)>,
    pub port: u16,
    pub state_dir: PathBuf,
    pub log: PathBuf,
    _tmp: TempDir,
}

/// A directory removed on drop.
pub struct TempDir(pub PathBuf);
impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(unique(&format!("omnistock-e2e-{tag}")));
        fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A state directory with `migrations/` applied to the local D1, made once
/// per test run (wrangler dev does not apply them; every server starts from
/// a copy of this).
fn d1_template() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = repo_root();
        let dir =
            std::env::temp_dir().join(format!("omnistock-d1-template-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("template dir");
        let out = Command::new(root.join("node_modules/.bin/wrangler"))
            .current_dir(&root)
            .args(["d1", "migrations", "apply", "DB", "--local", "--persist-to"])
            .arg(&dir)
            .env("CI", "true")
            .env("WRANGLER_SEND_METRICS", "false")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .output()
            .expect("run wrangler d1 migrations apply");
        assert!(
            out.status.success(),
            "wrangler d1 migrations apply failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        EXIT_DIRS.lock().unwrap().push(dir.clone());
        dir
    })
}

/// Directories to remove when the test binary exits: the D1 template, and
/// the shared server's (a static is never dropped, so its `TempDir` is not).
static EXIT_DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    fs::create_dir_all(to)?;
    for e in fs::read_dir(from)? {
        let e = e?;
        let target = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &target)?;
        } else {
            fs::copy(e.path(), target)?;
        }
    }
    Ok(())
}

impl Server {
    /// Starts a server on fresh state.
    pub fn start() -> Server {
        Server::start_with_vars(&[])
    }

    /// Starts a server on fresh state with these vars overriding wrangler.toml's.
    pub fn start_with_vars(vars: &[(&str, &str)]) -> Server {
        ensure_built();
        let tmp = TempDir::new("state");
        let state_dir = tmp.0.join("state");
        copy_dir(d1_template(), &state_dir).expect("copy the migrated D1 state");
        let log = tmp.0.join("wrangler.log");
        let mut s = Server {
            child: None,
            vars: vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            port: 0,
            state_dir,
            log,
            _tmp: tmp,
        };
        s.spawn();
        s
    }

    /// Starts wrangler dev; a start that fails (a port taken between
    /// choosing it and binding it, say) is retried on another port.
    fn spawn(&mut self) {
        for attempt in 1..=3 {
            match self.spawn_once() {
                Ok(()) => return,
                Err(e) if attempt < 3 => {
                    eprintln!("wrangler dev did not start (attempt {attempt}): {e}");
                    self.stop();
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    fn spawn_once(&mut self) -> Result<(), String> {
        ATEXIT.call_once(|| unsafe {
            libc::atexit(stop_all_at_exit);
        });
        let root = repo_root();
        self.port = free_port();
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open log");
        let mut cmd = Command::new(root.join("node_modules/.bin/wrangler"));
        cmd.current_dir(&root)
            .args(["dev", "--local", "--ip", "127.0.0.1", "--port"])
            .arg(self.port.to_string())
            // Not the default 9229: several servers run at once.
            .arg("--inspector-port")
            .arg(free_port().to_string())
            .arg("--persist-to")
            .arg(&self.state_dir)
            .args([
                "--show-interactive-dev-session=false",
                "--log-level",
                "warn",
                "--var",
            ])
            .arg(format!("API_KEYS:{DEV_KEYS}"))
            .args(
                self.vars
                    .iter()
                    .flat_map(|(k, v)| ["--var".to_string(), format!("{k}:{v}")]),
            )
            .env("WRANGLER_SEND_METRICS", "false")
            .env("CLOUDFLARE_CF_FETCH_ENABLED", "false")
            .env("CI", "true")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .process_group(0);
        let child = cmd.spawn().expect("start wrangler dev");
        RUNNING.lock().unwrap().push(child.id() as i32);
        self.child = Some(child);
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    return Err(format!(
                        "wrangler dev exited early ({st}); log:\n{}",
                        self.log_tail()
                    ));
                }
            }
            if let Ok(r) = raw_get(self.port, "/v1/health") {
                if r.starts_with("HTTP/1.1 200") {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "wrangler dev not ready in 90 s; log:\n{}",
                    self.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    pub fn log_tail(&self) -> String {
        let s = fs::read_to_string(&self.log).unwrap_or_default();
        let mut n = s.len().saturating_sub(4000);
        while !s.is_char_boundary(n) {
            n += 1;
        }
        s[n..].to_string()
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn api(&self) -> Api {
        Api::new(&self.url())
    }

    fn signal(&mut self, sig: i32, grace: Duration) {
        if let Some(mut c) = self.child.take() {
            let pgid = c.id() as i32;
            unsafe {
                libc::kill(-pgid, sig);
            }
            let deadline = Instant::now() + grace;
            loop {
                match c.try_wait() {
                    Ok(Some(_)) => break,
                    _ if Instant::now() > deadline => {
                        unsafe {
                            libc::kill(-pgid, libc::SIGKILL);
                        }
                        let _ = c.wait();
                        break;
                    }
                    _ => std::thread::sleep(Duration::from_millis(50)),
                }
            }
            // The workerd grandchildren are in the group too: make sure they
            // are gone (and their SQLite files free) before anyone restarts.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while unsafe { libc::kill(-pgid, 0) } == 0 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            RUNNING.lock().unwrap().retain(|&p| p != pgid);
        }
    }

    /// Stops gracefully (SIGTERM to the group).
    pub fn stop(&mut self) {
        self.signal(libc::SIGTERM, Duration::from_secs(10));
    }

    /// Kills the whole group with SIGKILL: no chance to flush anything.
    pub fn kill9(&mut self) {
        self.signal(libc::SIGKILL, Duration::from_secs(5));
    }

    /// Starts again on the same state (on a new free port).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Starts again after a stop or kill.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "still running");
        self.spawn();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One server shared by the tests that do not stop it. Every test uses its
/// own SKUs and ids, so they do not interfere. It stores JSON rows and
/// snapshots in pieces of 2 KiB (`STORAGE_PIECE_BYTES`; 512 KiB deployed),
/// so every flow these tests drive also runs with its larger rows (orders,
/// returns, transfers, carts, customers, busy SKUs) in pieces; the servers a
/// test starts itself keep the deployed size.
pub fn shared() -> &'static Server {
    static S: OnceLock<Server> = OnceLock::new();
    S.get_or_init(|| {
        let s = Server::start_with_vars(&[("STORAGE_PIECE_BYTES", "2048")]);
        EXIT_DIRS.lock().unwrap().push(s._tmp.0.clone());
        seed_locations(&s.api());
        s
    })
}

/// A minimal HTTP GET without a client library (used for readiness).
fn raw_get(port: u16, path: &str) -> std::io::Result<String> {
    raw(
        port,
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

/// Sends raw bytes and returns the raw answer (for malformed requests).
pub fn raw(port: u16, bytes: &[u8]) -> std::io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    s.write_all(bytes)?;
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    /// An answer as ureq gives it (an error status is still an answer; at most
    /// 1 MiB of body is read); a transport error (no answer) is an `Err`.
    pub fn read(r: Result<ureq::Response, ureq::Error>) -> Result<Resp, String> {
        let resp = match r {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => return Err(e.to_string()),
        };
        let status = resp.status();
        let headers = resp
            .headers_names()
            .into_iter()
            .map(|n| {
                let v = resp.header(&n).unwrap_or("").to_string();
                (n, v)
            })
            .collect();
        let mut body = String::new();
        resp.into_reader()
            .take(1 << 20)
            .read_to_string(&mut body)
            .map_err(|e| e.to_string())?;
        Ok(Resp {
            status,
            headers,
            body,
        })
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): status {} body {:?}",
                self.status, self.body
            )
        })
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    /// Asserts a problem+json with this status and code.
    pub fn assert_problem(&self, status: u16, code: &str) -> Value {
        assert_eq!(self.status, status, "body: {}", self.body);
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "body: {}",
            self.body
        );
        let v = self.json();
        assert_eq!(v["code"], code, "body: {}", self.body);
        assert_eq!(v["status"], status);
        assert!(v["type"].is_string() && v["title"].is_string() && v["detail"].is_string());
        v
    }
}

#[derive(Clone)]
pub struct Api {
    pub base: String,
    agent: ureq::Agent,
}

impl Api {
    pub fn new(base: &str) -> Api {
        Api {
            base: base.to_string(),
            agent: ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(60))
                .build(),
        }
    }

    /// Any request; `headers` are sent as given. Panics on a transport error.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Resp {
        self.try_request(method, path, headers, body)
            .unwrap_or_else(|e| panic!("{method} {path}: transport error {e}"))
    }

    /// Any request; a transport error (no answer) is an `Err`.
    pub fn try_request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<Resp, String> {
        let mut req = self
            .agent
            .request(method, &format!("{}{}", self.base, path));
        for (k, v) in headers {
            req = req.set(k, v);
        }
        let r = match body {
            Some(b) => req.send_bytes(b),
            None => req.call(),
        };
        Resp::read(r)
    }

    /// A write with an Idempotency-Key; a transport error is an `Err`.
    pub fn try_write(
        &self,
        method: &str,
        path: &str,
        key: &str,
        idem: &str,
        body: &str,
    ) -> Result<Resp, String> {
        self.try_request(
            method,
            path,
            &[
                ("Authorization", &format!("Bearer {key}")),
                ("Idempotency-Key", idem),
                ("Content-Type", "application/json"),
            ],
            Some(body.as_bytes()),
        )
    }

    pub fn get(&self, path: &str, key: &str) -> Resp {
        self.request(
            "GET",
            path,
            &[("Authorization", &format!("Bearer {key}"))],
            None,
        )
    }

    /// A write with an Idempotency-Key. Panics on a transport error.
    pub fn write(&self, method: &str, path: &str, key: &str, idem: &str, body: &str) -> Resp {
        self.try_write(method, path, key, idem, body)
            .unwrap_or_else(|e| panic!("{method} {path}: transport error {e}"))
    }

    /// A write with a fresh Idempotency-Key.
    /// Uploads POS sales (their JSON bodies) as one offline batch with the
    /// till key of store-1: the batch must be 200; its per-sale results.
    pub fn sale_batch(&self, sales: &[String]) -> Vec<Value> {
        let r = self.send(
            "POST",
            "/v1/pos/sales/batch",
            POS1,
            &format!(r#"{{"sales":[{}]}}"#, sales.join(",")),
        );
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()["results"]
            .as_array()
            .expect("a batch's results")
            .clone()
    }

    pub fn send(&self, method: &str, path: &str, key: &str, body: &str) -> Resp {
        self.write(method, path, key, &unique("idem"), body)
    }

    /// Availability row of one SKU at one location, without its `as_of`
    /// (the time of the read: rows are compared across reads).
    pub fn stock(&self, sku: &str, location: &str) -> Value {
        let r = self.get(
            &format!("/v1/availability?sku={sku}&location={location}"),
            ADMIN,
        );
        assert_eq!(r.status, 200, "{}", r.body);
        without_as_of(r.json()["items"][0].clone())
    }

    pub fn available(&self, sku: &str, location: &str) -> i64 {
        self.stock(sku, location)["available"]
            .as_i64()
            .expect("available")
    }

    pub fn receive(&self, sku: &str, location: &str, qty: i64) {
        let r = self.send(
            "POST",
            "/v1/inventory/receipts",
            ADMIN,
            &format!(r#"{{"location":"{location}","lines":[{{"sku":"{sku}","qty":{qty}}}]}}"#),
        );
        assert_eq!(r.status, 200, "{}", r.body);
    }

    /// Creates a product with these SKUs.
    pub fn product(&self, skus: &[&str]) {
        let variants: Vec<String> = skus
            .iter()
            .map(|s| {
                format!(
                    r#"{{"sku":"{s}","options":{{}},"price":{{"amount":"9.99","currency":"EUR"}}}}"#
                )
            })
            .collect();
        let id = unique("p");
        let r = self.send(
            "PUT",
            &format!("/v1/products/{id}"),
            ADMIN,
            &format!(
                r#"{{"title":"Test {id}","variants":[{}]}}"#,
                variants.join(",")
            ),
        );
        assert_eq!(r.status, 201, "{}", r.body);
    }

    /// A new SKU in the catalog, with `qty` received at `location` (if > 0).
    pub fn new_sku(&self, location: &str, qty: i64) -> String {
        let sku = unique("SKU");
        self.product(&[&sku]);
        if qty > 0 {
            self.receive(&sku, location, qty);
        }
        sku
    }

    pub fn reserve(&self, id: &str, lines: &[(&str, i64)], location: &str, ttl_s: i64) -> Resp {
        let l: Vec<String> = lines
            .iter()
            .map(|(s, q)| format!(r#"{{"sku":"{s}","qty":{q}}}"#))
            .collect();
        self.send(
            "POST",
            "/v1/reservations",
            STOREFRONT,
            &format!(
                r#"{{"id":"{id}","lines":[{}],"fulfillment":{{"type":"pickup","location":"{location}"}},"ttl_seconds":{ttl_s}}}"#,
                l.join(",")
            ),
        )
    }
}

/// The three locations of the demo catalog.
pub fn seed_locations(api: &Api) {
    for (id, name, lat, lon, ships, pickup, kind) in [
        ("store-1", "Downtown", 52.52, 13.405, true, true, "store"),
        ("store-2", "Riverside", 52.48, 13.44, false, true, "store"),
        (
            "warehouse-1",
            "Central warehouse",
            52.39,
            13.06,
            true,
            false,
            "warehouse",
        ),
    ] {
        let r = api.send(
            "PUT",
            &format!("/v1/locations/{id}"),
            ADMIN,
            &format!(
                r#"{{"name":"{name}","kind":"{kind}","lat":{lat},"lon":{lon},"ships_online":{ships},"pickup":{pickup}}}"#
            ),
        );
        assert!(r.status == 201 || r.status == 200, "{}", r.body);
    }
}

/// RFC 3339 UTC for now minus `ms` milliseconds.
pub fn rfc3339_ago(ms: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
        - ms;
    let (secs, millis) = (now.div_euclid(1000), now.rem_euclid(1000));
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    )
}

/// Every ledger entry of a SKU, oldest first (all pages).
pub fn ledger(api: &Api, sku: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let r = api.get(
            &format!("/v1/skus/{sku}/ledger?after={after}&limit=1000"),
            ADMIN,
        );
        assert_eq!(r.status, 200, "{}", r.body);
        let page = r.json()["items"].as_array().cloned().unwrap_or_default();
        if page.is_empty() {
            return out;
        }
        after = page.last().unwrap()["seq"].as_i64().expect("seq");
        out.extend(page);
    }
}

/// Runs `q` on the SQLite file `db` with the `sqlite3` CLI and returns its
/// output, trimmed (Debian: `apt-get install sqlite3`).
pub fn sqlite(db: &Path, q: &str) -> String {
    let out = Command::new("sqlite3")
        .arg(db)
        .arg(q)
        .output()
        .expect("run sqlite3 (apt-get install sqlite3)");
    assert!(
        out.status.success(),
        "sqlite3 {q}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

pub fn sqlite_i64(db: &Path, q: &str) -> i64 {
    let s = sqlite(db, q);
    s.parse()
        .unwrap_or_else(|_| panic!("{q}: not a number: {s:?}"))
}

/// The `.sqlite` files of one Durable Object class under the server's state.
pub fn object_files(server: &Server, class: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "sqlite") {
                out.push(p);
            }
        }
    }
    let mut all = Vec::new();
    walk(&server.state_dir, &mut all);
    all.into_iter()
        .filter(|p| {
            p.file_stem().is_some_and(|s| s != "metadata")
                && p.parent()
                    .and_then(|d| d.file_name())
                    .is_some_and(|n| n.to_string_lossy().ends_with(class))
        })
        .collect()
}

/// `v` without any `as_of` member (a read's time), at any depth: for
/// comparing what the API shows across reads.
pub fn without_as_of(mut v: Value) -> Value {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(m) => {
                m.remove("as_of");
                m.values_mut().for_each(strip);
            }
            Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    strip(&mut v);
    v
}
