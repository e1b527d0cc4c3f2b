//! SkuStock snapshots and `ops` pruning, end to end: a SKU with well over
//! `SNAPSHOT_EVERY` (256) events loads the same after restarts, the snapshot
//! is really what a load starts from, a stale or unsound snapshot falls back to
//! the whole log, and old non-sale `ops` rows are pruned in batches of 100,
//! by an instance's first write and every 16th after it.
//!
//! The storage checks open the object's SQLite file with the `sqlite3` CLI
//! while the server is stopped (Debian: `apt-get install sqlite3`).
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::harness::*;

/// Mirrors `functions/src/objects/sku_stock.rs`.
const SNAPSHOT_EVERY: i64 = 256;
const SNAPSHOT_FORMAT: i64 = 2;
const OPS_PRUNE_BATCH: i64 = 100;
/// `sku_stock::PRUNE_EVERY`: an instance prunes on its first write and every
/// this many writes after it.
const OPS_PRUNE_EVERY: i64 = 16;
const HOUR_MS: i64 = 3_600_000;

/// The SQLite file of the server's only SkuStock object.
fn sku_db(server: &Server) -> PathBuf {
    let sku = object_files(server, "SkuStock");
    assert_eq!(sku.len(), 1, "SkuStock files: {sku:?}");
    sku[0].clone()
}

/// What a client can see of the SKU: every availability row and the whole ledger.
fn observe(api: &Api, sku: &str) -> (Vec<Value>, Value, Vec<Value>) {
    let rows = ["store-1", "store-2"]
        .iter()
        .map(|l| api.stock(sku, l))
        .collect();
    let all = api.get(&format!("/v1/availability?sku={sku}"), ADMIN);
    assert_eq!(all.status, 200, "{}", all.body);
    (
        rows,
        without_as_of(all.json()["items"].clone()),
        ledger(api, sku),
    )
}

/// Writes `rounds` rounds of traffic on `sku`: a receipt, a reservation and
/// its release (every seventh kept active), and a POS sale; four events per
/// round (three when the hold stays). Returns the reservations kept.
fn traffic(api: &Api, sku: &str, rounds: u64, seq: &mut u64) -> Vec<String> {
    let mut kept = Vec::new();
    for i in 0..rounds {
        let at = if i % 3 == 0 { "store-2" } else { "store-1" };
        api.receive(sku, at, 3);
        let cart = unique("cart");
        let r = api.reserve(&cart, &[(sku, 1)], "store-1", 3600);
        assert_eq!(r.status, 201, "{}", r.body);
        if i % 7 == 0 {
            kept.push(cart);
        } else {
            let d = api.send(
                "DELETE",
                &format!("/v1/reservations/{cart}"),
                STOREFRONT,
                "",
            );
            assert_eq!(d.status, 200, "{}", d.body);
        }
        *seq += 1;
        let s = api.send(
            "POST",
            "/v1/pos/sales",
            POS1,
            &format!(
                r#"{{"sale_id":"{}","terminal_id":"snap-t1","device_seq":{},"location":"store-1","occurred_at":"{}","lines":[{{"sku":"{sku}","qty":1,"unit_price":{{"amount":"9.99","currency":"EUR"}}}}],"payments":[{{"method":"card","amount":{{"amount":"9.99","currency":"EUR"}}}}]}}"#,
                unique("sale"),
                *seq,
                rfc3339_ago(1000)
            ),
        );
        assert_eq!(s.status, 201, "{}", s.body);
    }
    kept
}

/// Runs `check` against the server's state as `tamper` left it (the server
/// is stopped before and after), then puts the state back as it was.
fn on_a_tampered_copy(server: &mut Server, tamper: impl FnOnce(), check: impl FnOnce(&Api)) {
    let backup = server.state_dir.with_extension("backup");
    let cp = Command::new("cp")
        .arg("-a")
        .arg(&server.state_dir)
        .arg(&backup)
        .status()
        .expect("cp");
    assert!(cp.success());
    tamper();
    server.start_again();
    check(&server.api());
    server.stop();
    fs::remove_dir_all(&server.state_dir).expect("remove tampered state");
    fs::rename(&backup, &server.state_dir).expect("restore state");
}

/// Asserts that the SKU's stock is `before`'s on a copy of the state whose
/// log lacks every event up to the snapshot's `seq` (a full replay would
/// find almost nothing), then puts the state back.
fn loads_from_the_snapshot_alone(
    server: &mut Server,
    db: &Path,
    seq: i64,
    sku: &str,
    before: &(Vec<Value>, Value, Vec<Value>),
) {
    on_a_tampered_copy(
        server,
        || {
            sqlite(db, &format!("DELETE FROM events WHERE seq <= {seq}"));
        },
        |api| {
            let (rows, all, _) = observe(api, sku);
            assert_eq!((rows, all), (before.0.clone(), before.1.clone()));
        },
    );
}

/// Asserts the stored snapshot is current: its format, its seq within
/// `SNAPSHOT_EVERY` of the log's end, and its state built from exactly `seq` events.
fn check_snapshot(db: &Path) -> (i64, i64) {
    let events = sqlite_i64(db, "SELECT count(*) FROM events");
    let last = sqlite_i64(db, "SELECT max(seq) FROM events");
    assert_eq!(events, last, "the log has gaps");
    let seq = sqlite_i64(db, "SELECT seq FROM snapshot WHERE id = 0");
    assert_eq!(
        sqlite_i64(db, "SELECT format FROM snapshot WHERE id = 0"),
        SNAPSHOT_FORMAT
    );
    assert!(seq > 0 && seq <= last, "snapshot seq {seq}, log {last}");
    assert!(
        last - seq < SNAPSHOT_EVERY,
        "a load would replay {} events",
        last - seq
    );
    assert_eq!(
        sqlite_i64(
            db,
            "SELECT json_extract(state, '$.events_applied') FROM snapshot WHERE id = 0"
        ),
        seq
    );
    (seq, last)
}

#[test]
fn a_busy_sku_loads_from_its_snapshot_after_restarts() {
    let mut server = Server::start();
    let api = server.api();
    seed_locations(&api);
    let sku = api.new_sku("store-1", 50);
    let mut seq = 0;

    // Phase 1: well over SNAPSHOT_EVERY events, then a restart.
    let mut kept = traffic(&api, &sku, 110, &mut seq);
    let before = observe(&api, &sku);
    assert!(
        before.2.len() as i64 > 400,
        "only {} events",
        before.2.len()
    );
    server.stop();
    let db = sku_db(&server);
    let (snap1, last1) = check_snapshot(&db);
    assert!(snap1 >= SNAPSHOT_EVERY, "snapshot at {snap1} of {last1}");
    server.start_again();
    let api = server.api();
    assert_eq!(observe(&api, &sku), before, "changed by a restart");

    // Phase 2: more writes on the loaded state, past another snapshot.
    kept.extend(traffic(&api, &sku, 80, &mut seq));
    let before = observe(&api, &sku);
    let reserved = kept.len() as i64;
    assert_eq!(before.0[0]["reserved"], reserved);
    server.restart();
    let api = server.api();
    assert_eq!(observe(&api, &sku), before, "changed by a second restart");
    server.stop();
    let (snap2, last2) = check_snapshot(&db);
    assert!(
        snap2 > snap1 && last2 > last1,
        "no newer snapshot: {snap1}/{last1} then {snap2}/{last2}"
    );

    // The snapshot is what a load starts from: on a copy whose log lacks
    // every event the snapshot covers, the state is still the same (a full
    // replay would find almost nothing).
    loads_from_the_snapshot_alone(&mut server, &db, snap2, &sku, &before);

    // A snapshot of another format is ignored: the whole log is replayed.
    sqlite(&db, "UPDATE snapshot SET format = 99");
    server.start_again();
    let api = server.api();
    assert_eq!(observe(&api, &sku), before, "after a stale snapshot");
    server.stop();
    assert!(
        fs::read_to_string(&server.log)
            .unwrap_or_default()
            .contains(&format!(
                "has format 99 (expected {SNAPSHOT_FORMAT}); replaying the whole log"
            )),
        "log: {}",
        server.log_tail()
    );

    // A snapshot that breaks core's invariants (reserved no longer the sum
    // of the holds) is ignored too.
    sqlite(
        &db,
        &format!(
            r#"UPDATE snapshot SET format = {SNAPSHOT_FORMAT}, state = json_set(state, '$.sites."store-1".pos.reserved',
             json_extract(state, '$.sites."store-1".pos.reserved') + 7)"#
        ),
    );
    server.start_again();
    let api = server.api();
    assert_eq!(observe(&api, &sku), before, "after an unsound snapshot");
    // The full replay counted every event since the snapshot: the next write
    // writes a sound one again.
    api.receive(&sku, "store-2", 1);
    let after = observe(&api, &sku);
    assert_eq!(after.2.len(), before.2.len() + 1);
    assert_eq!(after.2[..before.2.len()], before.2[..]);
    server.stop();
    assert!(
        fs::read_to_string(&server.log)
            .unwrap_or_default()
            .contains("breaks an invariant (reserved differs from the sum of active holds)"),
        "log: {}",
        server.log_tail()
    );
    let (snap3, last3) = check_snapshot(&db);
    assert_eq!(
        snap3, last3,
        "the first write after a full replay snapshots"
    );

    // More traffic after all that, and a last restart.
    server.start_again();
    let api = server.api();
    traffic(&api, &sku, 40, &mut seq);
    let before = observe(&api, &sku);
    server.restart();
    assert_eq!(
        observe(&server.api(), &sku),
        before,
        "after the last restart"
    );
    server.stop();
    check_snapshot(&db);
}

/// A snapshot larger than one piece (`STORAGE_PIECE_BYTES`; 512 KiB by
/// default, since SQLite refuses a string over 2 MB in Cloudflare's runtime,
/// which a SKU with ~15,000 active holds exceeds) is written in pieces and
/// loaded from them; one with a piece missing is ignored and the log replayed.
#[test]
fn a_snapshot_larger_than_a_piece_is_written_and_loaded_in_pieces() {
    let mut server = Server::start_with_vars(&[("STORAGE_PIECE_BYTES", "1024")]);
    let api = server.api();
    seed_locations(&api);
    let sku = api.new_sku("store-1", 50);
    let mut seq = 0;
    traffic(&api, &sku, 90, &mut seq);
    let before = observe(&api, &sku);
    server.stop();
    let db = sku_db(&server);
    let seq_at = sqlite_i64(&db, "SELECT seq FROM snapshot WHERE id = 0");
    let parts = sqlite_i64(&db, "SELECT parts FROM snapshot WHERE id = 0");
    assert!(parts > 2, "{parts} parts");
    assert_eq!(
        sqlite_i64(&db, "SELECT count(*) FROM snapshot_part WHERE n > 0"),
        parts - 1,
        "one row per piece after the first"
    );
    assert!(sqlite_i64(&db, "SELECT max(length(state)) FROM snapshot") <= 1024);
    assert!(
        sqlite_i64(
            &db,
            "SELECT max(length(CAST(text AS BLOB))) FROM snapshot_part"
        ) <= 1024
    );
    let joined = "(SELECT state FROM snapshot WHERE id = 0) ||
        (SELECT group_concat(text, '') FROM (SELECT text FROM snapshot_part ORDER BY n))";
    assert_eq!(
        sqlite_i64(
            &db,
            &format!("SELECT json_extract({joined}, '$.events_applied')")
        ),
        seq_at
    );

    // Loaded from the pieces: on a copy whose log lacks every event the
    // snapshot covers, the state is still the same.
    loads_from_the_snapshot_alone(&mut server, &db, seq_at, &sku, &before);

    // A piece missing: the snapshot is ignored, the whole log replayed.
    sqlite(&db, "DELETE FROM snapshot_part WHERE n = 1");
    server.start_again();
    assert_eq!(observe(&server.api(), &sku), before, "after a lost piece");
    server.stop();
    assert!(
        fs::read_to_string(&server.log)
            .unwrap_or_default()
            .contains(&format!(
                "snapshot at seq {seq_at} has {} of its {parts} parts; replaying the whole log",
                parts - 1
            )),
        "log: {}",
        server.log_tail()
    );
}

/// Mirrors `sku_stock::snapshot_every`.
fn snapshot_every(bytes: i64) -> i64 {
    (bytes / 1024).clamp(SNAPSHOT_EVERY, 4096)
}

/// The stored snapshot's seq and length (bytes of JSON, all its pieces).
fn snapshot_at(db: &Path) -> (i64, i64) {
    let seq = sqlite_i64(db, "SELECT seq FROM snapshot WHERE id = 0");
    let bytes = sqlite_i64(
        db,
        "SELECT length(state) + coalesce((SELECT sum(length(text)) FROM snapshot_part
           WHERE n > 0 AND n < (SELECT parts FROM snapshot WHERE id = 0)), 0)
         FROM snapshot WHERE id = 0",
    );
    (seq, bytes)
}

/// A state over 256 KiB of JSON (here: thousands of remembered sales) is
/// snapshot once per KiB of its last snapshot in events, not every 256: a
/// load that replays `d` events, then `every - d - 1` more writes (over 256
/// in all), write no snapshot; the next event does.
#[test]
fn a_large_state_is_snapshot_once_per_kib_in_events() {
    let mut server = Server::start();
    let api = server.api();
    seed_locations(&api);
    let sku = api.new_sku("store-1", 1_000_000);
    let terminal = unique("snap-big");
    let mut device_seq = 0u64;
    let mut sell = |api: &Api, n: i64| {
        let mut left = n;
        while left > 0 {
            let k = left.min(100);
            let sales: Vec<String> = (0..k)
                .map(|_| {
                    device_seq += 1;
                    format!(
                        r#"{{"sale_id":"{}","terminal_id":"{terminal}","device_seq":{device_seq},"location":"store-1","occurred_at":"{}","lines":[{{"sku":"{sku}","qty":1,"unit_price":{{"amount":"1.00","currency":"EUR"}}}}],"payments":[{{"method":"card","amount":{{"amount":"1.00","currency":"EUR"}}}}]}}"#,
                        unique("big"),
                        rfc3339_ago(1000)
                    )
                })
                .collect();
            for s in api.sale_batch(&sales) {
                assert_eq!(s["status"], 201, "{s}");
            }
            left -= k;
        }
    };
    let last = |db: &Path| sqlite_i64(db, "SELECT max(seq) FROM events");

    // Grow the state past 300 KiB.
    let mut grown = 0;
    let db = loop {
        sell(&server.api(), 1000);
        server.stop();
        let db = sku_db(&server);
        if snapshot_at(&db).1 > 300 * 1024 {
            break db;
        }
        grown += 1;
        assert!(grown < 8, "the state stays small: {:?}", snapshot_at(&db));
        server.start_again();
    };
    let (seq, bytes) = snapshot_at(&db);
    let every = snapshot_every(bytes);
    let d = last(&db) - seq;
    // (A snapshot over 300 KiB: at least 300 events apart, never 256.)
    assert!(
        every >= 300 && d < every,
        "every {every}, {d} events after the snapshot"
    );

    // A load replays d events; every - d - 1 more (> 256 - d): no snapshot.
    server.start_again();
    let before = last(&db);
    sell(&server.api(), every - d - 1);
    server.stop();
    assert_eq!(last(&db), before + every - d - 1, "one event per sale");
    assert_eq!(snapshot_at(&db).0, seq, "a snapshot within {every} events");

    // The next event reaches the interval: a snapshot of the whole log.
    server.start_again();
    sell(&server.api(), 1);
    server.stop();
    let (seq2, _) = snapshot_at(&db);
    assert_eq!(seq2, last(&db), "no snapshot after {every} events");
}

#[test]
fn old_ops_rows_are_pruned_a_batch_per_write_and_sales_kept() {
    let mut server = Server::start();
    let api = server.api();
    seed_locations(&api);
    let sku = api.new_sku("store-1", 50);
    let mut seq = 0;
    // Each round: a receipt (an `op:` row), a one-SKU reservation (a row in
    // `reservations`, homed in the SKU object) and a sale (`sale:`, forever).
    traffic(&api, &sku, 120, &mut seq);
    server.stop();
    let db = sku_db(&server);
    let count = |q: &str| sqlite_i64(&db, &format!("SELECT count(*) FROM ops WHERE {q}"));
    let sales = count("id LIKE 'sale:%'");
    let others = count("id NOT LIKE 'sale:%'");
    assert_eq!(sales, 120);
    let reservations = sqlite_i64(&db, "SELECT count(*) FROM reservations");
    assert_eq!(reservations, 120);
    assert!(others > OPS_PRUNE_BATCH + 5, "{others} non-sale rows");
    // Age every row past the 48 h window (49 h), except five fresh ones.
    sqlite(
        &db,
        &format!(
            "UPDATE ops SET at = at - {} WHERE id NOT IN
               (SELECT id FROM ops WHERE id NOT LIKE 'sale:%' ORDER BY at DESC LIMIT 5)",
            49 * HOUR_MS
        ),
    );
    // Every reservation's last deadline 49 h ago, but five.
    sqlite(
        &db,
        &format!(
            "UPDATE reservations SET deadline = deadline - {} WHERE id NOT IN
               (SELECT id FROM reservations ORDER BY deadline DESC LIMIT 5)",
            49 * HOUR_MS + 3_600_000
        ),
    );
    let old_reservations = |db: &Path| {
        sqlite_i64(
            db,
            &format!(
                "SELECT count(*) FROM reservations WHERE deadline < {}",
                now() - 48 * HOUR_MS
            ),
        )
    };
    assert_eq!(old_reservations(&db), reservations - 5);
    let old = |db: &Path| {
        sqlite_i64(
            db,
            &format!(
                "SELECT count(*) FROM ops WHERE id NOT LIKE 'sale:%' AND at < {}",
                now() - 48 * HOUR_MS
            ),
        )
    };
    assert_eq!(old(&db), others - 5);

    // One write prunes one batch, no more.
    server.start_again();
    server.api().receive(&sku, "store-1", 1);
    server.stop();
    assert_eq!(old(&db), others - 5 - OPS_PRUNE_BATCH);
    assert_eq!(count("id NOT LIKE 'sale:%'"), others + 1 - OPS_PRUNE_BATCH);
    assert_eq!(old_reservations(&db), reservations - 5 - OPS_PRUNE_BATCH);

    // A new instance prunes on its first write, then not again for
    // OPS_PRUNE_EVERY - 1 writes.
    server.start_again();
    let api = server.api();
    for _ in 0..OPS_PRUNE_EVERY {
        api.receive(&sku, "store-1", 1);
    }
    server.stop();
    let left = others - 5 - 2 * OPS_PRUNE_BATCH;
    assert_eq!(old(&db), left.max(0));
    assert_eq!(
        old_reservations(&db),
        (reservations - 5 - 2 * OPS_PRUNE_BATCH).max(0)
    );

    // Enough writes prune every old row; fresh rows and every sale stay.
    server.start_again();
    let api = server.api();
    let batches = (left.max(0) + OPS_PRUNE_BATCH - 1) / OPS_PRUNE_BATCH;
    let writes = (batches - 1).max(0) * OPS_PRUNE_EVERY + 1;
    for _ in 0..writes {
        api.receive(&sku, "store-1", 1);
    }
    let stock = api.stock(&sku, "store-1");
    server.stop();
    assert_eq!(old(&db), 0);
    assert_eq!(old_reservations(&db), 0);
    assert_eq!(
        sqlite_i64(&db, "SELECT count(*) FROM reservations"),
        5,
        "the fresh reservations stay"
    );
    assert_eq!(count("id LIKE 'sale:%'"), sales);
    assert_eq!(
        count("id NOT LIKE 'sale:%'"),
        5 + 1 + OPS_PRUNE_EVERY + writes
    );
    // Pruning results changes no stock.
    server.start_again();
    assert_eq!(server.api().stock(&sku, "store-1"), stock);
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
