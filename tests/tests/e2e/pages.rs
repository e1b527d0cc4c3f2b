//! The demo pages (`/`, `/pos`, `/admin`) driven in headless Chromium as a
//! person would, through WebDriver (chromedriver, the `fantoccini` client):
//! sell at the till, hold a cart and check out online, pay, and work the
//! order through the back office's queue to collected; the stock the API
//! shows follows each step, and a storefront page left open shows a receipt
//! booked in the back office without a reload (the live push). Screenshots of the three pages are written to
//! `target/pages/` (committed copies live in `docs/`).
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

use crate::harness::*;

/// chromedriver on a free loopback port, killed when dropped.
pub(crate) struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    pub(crate) fn start() -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let bin = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        // Its own process group: dropping the driver kills chromedriver and
        // every Chromium it started, even when a test panicked mid-session.
        let child = Command::new(bin)
            .process_group(0)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver (apt-get install chromium-driver)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Driver { child, port }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Ok(pgid) = i32::try_from(self.child.id()) {
            // SAFETY: signals the process group this driver created.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) async fn browser(driver: &Driver) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--window-size=1200,900"],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a Chromium session")
}

/// Waits until `script` (a JS expression) is truthy; returns its value.
pub(crate) async fn until(c: &Client, what: &str, script: &str) -> Value {
    until_within(c, what, script, 30).await
}

async fn until_within(c: &Client, what: &str, script: &str, secs: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let v = c
            .execute(&format!("return ({script});"), vec![])
            .await
            .unwrap_or(Value::Null);
        let truthy =
            !matches!(&v, Value::Null | Value::Bool(false)) && v != json!("") && v != json!(0);
        if truthy {
            return v;
        }
        if Instant::now() > deadline {
            let status = c
                .execute(
                    "return [...document.querySelectorAll('[role=status]')].map(e => e.textContent).join(' | ')",
                    vec![],
                )
                .await
                .unwrap_or(Value::Null);
            panic!("timed out waiting for {what} ({script}); status lines: {status}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(crate) async fn click(c: &Client, css: &str) {
    c.wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("click {css}: {e}"));
}

async fn shoot(c: &Client, name: &str) {
    let png = c.screenshot().await.expect("a screenshot");
    let dir = repo_root().join("target/pages");
    std::fs::create_dir_all(&dir).expect("target/pages");
    let path: PathBuf = dir.join(format!("{name}.png"));
    std::fs::write(&path, png).expect("write the screenshot");
}

/// The text a widget shows (in its open shadow root).
const WIDGET_TEXT: &str = "(() => { const w = document.querySelector('omnistock-availability[sku=\"TEE-BLK-L\"]'); \
     return w && w.shadowRoot && w.shadowRoot.querySelector('#text') ? w.shadowRoot.querySelector('#text').textContent : ''; })()";

fn seed(server: &Server) {
    let out = Command::new(repo_root().join("scripts/seed.sh"))
        .arg(server.url())
        .output()
        .expect("run scripts/seed.sh");
    assert!(
        out.status.success(),
        "seed failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_person_sells_at_the_till_checks_out_online_and_works_the_order_queue() {
    let server = Server::start_with_vars(&[("DEMO_PAGE_KEYS", DEV_KEYS)]);
    seed(&server);
    let api = server.api();
    let driver = Driver::start();
    let base = server.url();
    let strong = |sku: &str, loc: &str| -> Value {
        let r = api.get(
            &format!("/v1/availability?sku={sku}&location={loc}&consistency=strong"),
            ADMIN,
        );
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()["items"][0].clone()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        let c = browser(&driver).await;

        // The till: scan a barcode (TEE-BLK-L's), sell it, see it recorded.
        c.goto(&format!("{base}/pos")).await.expect("open /pos");
        until(&c, "the till's key note", "document.getElementById('key-note').textContent.includes('sk_dev_pos_store-1')").await;
        let before = strong("TEE-BLK-L", "store-1")["on_hand"].as_i64().unwrap();
        c.find(Locator::Css("#code")).await.unwrap().send_keys("4006381333948").await.unwrap();
        click(&c, "#scan button").await;
        until(&c, "the scanned line", "document.getElementById('basket').textContent.includes('TEE-BLK-L')").await;
        click(&c, "#sell").await;
        until(&c, "the sale recorded", "document.getElementById('status').textContent.includes('recorded')").await;
        assert_eq!(strong("TEE-BLK-L", "store-1")["on_hand"].as_i64().unwrap(), before - 1);
        until(&c, "the sale under recent sales", "document.getElementById('recent').children.length === 1").await;
        // The till charged what the sale recorded: its price plus its tax
        // (the dev table's prices exclude tax), to the cent.
        let paid = c
            .execute(
                "const r = JSON.parse(localStorage.getItem('omnistock.recent'))[0]; return [r.sale.payments[0].amount.amount, r.answer.totals.gross, r.answer.totals.net];",
                vec![],
            )
            .await
            .expect("the recent sale");
        assert_eq!(paid[0], paid[1], "paid, gross, net: {paid}");
        assert_ne!(paid[1], paid[2], "the dev table taxes the tee: {paid}");

        // Offline: a sale made without a connection waits in the visible
        // queue, changes nothing, and is uploaded in a batch once back.
        click(&c, "#force-offline").await;
        c.find(Locator::Css("#code")).await.unwrap().send_keys("TEE-BLK-L").await.unwrap();
        click(&c, "#scan button").await;
        until(&c, "the scanned line", "document.getElementById('basket').textContent.includes('TEE-BLK-L')").await;
        click(&c, "#sell").await;
        until(&c, "the sale queued", "document.getElementById('queue-count').textContent === '1'").await;
        assert_eq!(strong("TEE-BLK-L", "store-1")["on_hand"].as_i64().unwrap(), before - 1);
        click(&c, "#force-offline").await;
        until(&c, "the queue uploaded", "document.getElementById('queue-count').textContent === '0' && document.getElementById('status').textContent.includes('Uploaded 1')").await;
        assert_eq!(strong("TEE-BLK-L", "store-1")["on_hand"].as_i64().unwrap(), before - 2);
        until(&c, "both sales under recent sales", "document.getElementById('recent').children.length === 2").await;
        // Type-ahead (issue 11): a name prefix, not a barcode, suggests variants.
        c.find(Locator::Css("#code")).await.unwrap().send_keys("tee-b").await.unwrap();
        until(&c, "the type-ahead suggestions", "[...document.getElementById('suggest').children].some(o => o.value === 'TEE-BLK-L')").await;
        c.find(Locator::Css("#code")).await.unwrap().clear().await.unwrap();
        shoot(&c, "pos").await;

        // The shop: the widget shows the stock; add to cart holds it with a
        // countdown; checkout makes an order; pay commits it.
        c.goto(&format!("{base}/")).await.expect("open /");
        until(&c, "the widget's text", &format!("{WIDGET_TEXT}.includes('in stock')")).await;
        // Picked up at Downtown (store-1).
        click(&c, "input[name=fulfillment][value='store-1']").await;
        click(&c, "button[data-sku='TEE-BLK-L']").await;
        until(&c, "the countdown", "document.getElementById('countdown').textContent.includes('s left')").await;
        let held = strong("TEE-BLK-L", "store-1");
        assert_eq!(held["reserved"], 1, "{held}");
        shoot(&c, "shop").await;
        click(&c, "#checkout").await;
        let order_text = until(&c, "the order", "document.getElementById('order').textContent.includes('is new') && document.getElementById('order').textContent").await;
        let order_id = order_text.as_str().unwrap().split_whitespace().nth(1).unwrap().to_string();
        click(&c, "#order button").await;
        until(&c, "paid", "document.getElementById('order').textContent.includes('is paid')").await;
        let paid = strong("TEE-BLK-L", "store-1");
        assert_eq!((paid["reserved"].as_i64(), paid["committed"].as_i64()), (Some(0), Some(1)), "{paid}");

        // The back office: the order is in the queue; move it through its
        // states to collected (a pickup: packed -> ready_for_pickup), each
        // click one transition.
        c.goto(&format!("{base}/admin")).await.expect("open /admin");
        let row = format!("[...document.querySelectorAll('#orders tbody tr')].find(r => r.textContent.includes('{order_id}'))");
        until(&c, "the order in the queue", &row).await;
        shoot(&c, "admin").await;
        for to in ["ready_to_pick", "packed", "ready_for_pickup", "collected"] {
            let clicked = c
                .execute(
                    &format!("const r = {row}; const b = r && [...r.querySelectorAll('button')].find(b => b.textContent === '{to}'); if (b) {{ b.click(); return true; }} return false;"),
                    vec![],
                )
                .await
                .unwrap();
            assert_eq!(clicked, json!(true), "no {to} button for {order_id}");
            until(&c, &format!("{to} shown"), &format!("document.getElementById('status').textContent.includes('is {to}')")).await;
            until(&c, "the queue reloaded", &format!("{row} && {row}.textContent.includes(': {to}')")).await;
        }
        let collected = strong("TEE-BLK-L", "store-1");
        assert_eq!(collected["committed"], 0, "{collected}");
        assert_eq!(collected["on_hand"].as_i64().unwrap(), before - 3, "{collected}");

        // The ledger of the SKU in the back office shows the sale and the shipment.
        c.find(Locator::Css("#ledger-form input")).await.unwrap().send_keys("TEE-BLK-L").await.unwrap();
        click(&c, "#ledger-form button").await;
        until(&c, "the ledger", "document.querySelector('#ledger tbody').textContent.includes('fulfilled')").await;

        // Live: the storefront open in another window (never reloaded) shows
        // a receipt booked in the back office, pushed over its WebSocket.
        let office = c.window().await.expect("this window");
        let shop = c.new_window(false).await.expect("a second window").handle;
        c.switch_to_window(shop.clone()).await.expect("to the shop");
        c.goto(&format!("{base}/")).await.expect("open /");
        let shown = until(&c, "the widget's number", &format!("{WIDGET_TEXT}.match(/\\d+/)?.[0]")).await;
        let shown: i64 = shown.as_str().and_then(|n| n.parse().ok()).expect("a number in the widget");
        c.switch_to_window(office).await.expect("back to the office");
        c.find(Locator::Css("#receive input[name=sku]")).await.unwrap().send_keys("TEE-BLK-L").await.unwrap();
        c.find(Locator::Css("#receive input[name=qty]")).await.unwrap().clear().await.unwrap();
        c.find(Locator::Css("#receive input[name=qty]")).await.unwrap().send_keys("10").await.unwrap();
        click(&c, "#receive button").await;
        until(&c, "the receipt", "document.getElementById('status').textContent.includes('Received 10')").await;
        c.switch_to_window(shop).await.expect("to the shop");
        until(&c, "the widget updated without a reload", &format!("{WIDGET_TEXT}.includes('{}')", shown + 10)).await;

        // A cart's hold runs out: the countdown shows it and says the items
        // went back on sale; the units are available again.
        c.goto(&format!("{base}/?hold_seconds=30")).await.expect("open / with 30 s holds");
        until(&c, "the widget's text", &format!("{WIDGET_TEXT}.includes('in stock')")).await;
        click(&c, "button[data-sku='MUG-RED']").await;
        until(&c, "the countdown", "document.getElementById('countdown').textContent.includes('s left')").await;
        assert_eq!(strong("MUG-RED", "store-1")["reserved"], 1);
        until_within(&c, "the expiry", "document.getElementById('hold').textContent.includes('expired')", 45).await;
        assert_eq!(strong("MUG-RED", "store-1")["reserved"], 0);

        c.close().await.expect("close the browser");
    });
}

/// Customers and loyalty (issue 10): at the till a clerk finds a customer
/// by email, sells to them and redeems a point; the customer page shows the
/// purchase and the points.
#[test]
fn a_clerk_finds_a_customer_at_the_till_and_the_customer_page_shows_the_sale() {
    let server = Server::start_with_vars(&[("DEMO_PAGE_KEYS", DEV_KEYS)]);
    seed(&server);
    let api = server.api();
    let r = api.send(
        "PUT",
        "/v1/customers/ana",
        ADMIN,
        r#"{"name":"Ana Doe","email":"ana@example.com","phone":"555 010 2030"}"#,
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let driver = Driver::start();
    let base = server.url();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        let c = browser(&driver).await;
        c.goto(&format!("{base}/pos")).await.expect("open /pos");
        until(&c, "the till's key note", "document.getElementById('key-note').textContent.includes('sk_dev_pos_store-1')").await;
        c.find(Locator::Css("#customer input[name=q]")).await.unwrap().send_keys("ANA@example.com ").await.unwrap();
        click(&c, "#customer button").await;
        until(&c, "the customer attached", "document.getElementById('customer-info').textContent.includes('Ana Doe (ana): 0 points')").await;
        c.find(Locator::Css("#code")).await.unwrap().send_keys("4006381333948").await.unwrap();
        click(&c, "#scan button").await;
        until(&c, "the scanned line", "document.getElementById('basket').textContent.includes('TEE-BLK-L')").await;
        click(&c, "#sell").await;
        until(&c, "the sale recorded", "document.getElementById('status').textContent.includes('recorded')").await;
        // The customer is detached after the sale; found again, with points.
        until(&c, "the customer detached", "document.getElementById('customer-info').textContent === ''").await;
        click(&c, "#customer button").await;
        until(&c, "the points earned", "/Ana Doe \\(ana\\): [1-9][0-9]* points/.test(document.getElementById('customer-info').textContent)").await;
        c.find(Locator::Css("#customer-info input[name=points]")).await.unwrap().send_keys("1").await.unwrap();
        click(&c, "#customer-info form button").await;
        until(&c, "the redemption", "document.getElementById('status').textContent.includes('Redeemed 1 points')").await;

        c.goto(&format!("{base}/customers")).await.expect("open /customers");
        c.find(Locator::Css("#find input[name=q]")).await.unwrap().send_keys("(555) 010-2030").await.unwrap();
        click(&c, "#find button").await;
        until(&c, "the profile", "document.getElementById('profile').textContent.includes('ana@example.com')").await;
        until(&c, "the sale in the history", "document.querySelector('#profile table') && document.querySelector('#profile table').textContent.includes('TEE-BLK-L')").await;
        until(&c, "the redemption in the points history", "document.getElementById('profile').textContent.includes('redeemed 1')").await;
        shoot(&c, "customers").await;
        c.close().await.expect("close the browser");
    });
    let v = api.get("/v1/customers/ana", ADMIN).json();
    assert_eq!(v["purchases"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["loyalty"]["redeemed"], 1);
    assert_eq!(
        v["loyalty"]["balance"].as_i64().unwrap(),
        v["loyalty"]["earned"].as_i64().unwrap() - 1
    );
}
