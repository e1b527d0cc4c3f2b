// The edge cache's points of `make bench-http` (issue 13), for
// scripts/bench-http.sh. Only HTTP; the SKUs EDGE-001..EDGE-100 at store-1
// are seeded by the script.
//
//   node edge.mjs API cold ROUNDS CONNECTIONS
//     ROUNDS times: wait 1.3 s (longer than the 1 s bound, no reads meanwhile,
//     so every cached position has expired), then CONNECTIONS concurrent reads
//     of the 100 SKUs (pk_dev). Prints
//     "EDGE mode=cold samples=N ok=N bad=N p50_ms=.. p99_ms=.. max_ms=.. calls_per_round=.."
//     (calls: SKU object calls the Worker made, from its Omnistock-Cache header).
//   node edge.mjs API stale SECONDS CONNECTIONS
//     For SECONDS: one writer adjusts EDGE-001 by +1 (admin key) as fast as it
//     is answered, while CONNECTIONS readers read the 100 SKUs (pk_dev). Prints
//     "EDGE mode=stale reads=N writes=N bad=N max_age_ms=.. p99_age_ms=.. max_seen_ms=.. p99_seen_ms=.."
//     where age is (the reader's clock when the answer arrived) - (the item's
//     as_of), over every item, and seen is, per write, (the arrival of the
//     first read answer showing its version or a later one) - (the arrival of
//     the write's answer), 0 when a read that showed it arrived first.
// Exits 1 (message on stderr) on a malformed answer.
const [api, mode, a, b] = process.argv.slice(2);
const LOCATION = "store-1";
const SKUS = Array.from({ length: 100 }, (_, i) => `EDGE-${String(i + 1).padStart(3, "0")}`);
const READ = `${api}/v1/availability?sku=${SKUS.join(",")}&location=${LOCATION}`;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const pct = (xs, p) => {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((x, y) => x - y);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
};
const fmt = (x) => x.toFixed(3);

async function read() {
  const t0 = performance.now();
  const r = await fetch(READ, { headers: { Authorization: "Bearer pk_dev" } });
  const text = await r.text();
  const arrived = Date.now();
  const ms = performance.now() - t0;
  const calls = Number((/call=(\d+)/.exec(r.headers.get("omnistock-cache") || "") || [])[1] || 0);
  return { status: r.status, text, arrived, ms, calls };
}

async function cold(rounds, conns) {
  const lat = [];
  let ok = 0;
  let bad = 0;
  let calls = 0;
  for (let i = 0; i < rounds; i++) {
    await sleep(1300);
    const rs = await Promise.all(Array.from({ length: conns }, read));
    for (const r of rs) {
      lat.push(r.ms);
      calls += r.calls;
      if (r.status === 200) ok++;
      else bad++;
    }
  }
  console.log(
    `EDGE mode=cold samples=${lat.length} ok=${ok} bad=${bad} p50_ms=${fmt(pct(lat, 50))} ` +
      `p99_ms=${fmt(pct(lat, 99))} max_ms=${fmt(Math.max(...lat))} calls_per_round=${(calls / rounds).toFixed(1)}`,
  );
}

async function stale(seconds, conns) {
  const end = Date.now() + seconds * 1000;
  const writes = []; // {version, answered}
  const seen = []; // per write: first arrival showing it
  let maxSeenVersion = -1;
  const ages = [];
  let reads = 0;
  let bad = 0;
  let n = 0;
  const shown = (version, arrived) => {
    // Reads may show a write before its answer arrived: those count as 0.
    if (version > maxSeenVersion) maxSeenVersion = version;
    for (const w of writes) {
      if (w.seen === undefined && w.version <= version) w.seen = arrived;
    }
  };
  const writer = async () => {
    while (Date.now() < end) {
      n++;
      const r = await fetch(`${api}/v1/inventory/adjustments`, {
        method: "POST",
        headers: {
          Authorization: "Bearer sk_dev_admin",
          "Content-Type": "application/json",
          "Idempotency-Key": `edge-stale-${process.pid}-${n}`,
        },
        body: JSON.stringify({ location: LOCATION, sku: "EDGE-001", delta: 1, reason: "found" }),
      });
      const text = await r.text();
      const answered = Date.now();
      if (r.status !== 200) {
        bad++;
        continue;
      }
      const body = JSON.parse(text);
      const version = body.item?.version ?? body.version;
      if (typeof version !== "number") throw new Error(`no version in the adjustment's answer: ${text.slice(0, 300)}`);
      const w = { version, answered };
      if (maxSeenVersion >= version) w.seen = answered;
      writes.push(w);
      await sleep(20);
    }
  };
  const reader = async () => {
    while (Date.now() < end) {
      const r = await read();
      reads++;
      if (r.status !== 200) {
        bad++;
        continue;
      }
      const body = JSON.parse(r.text);
      for (const it of body.items) {
        const asOf = Date.parse(it.as_of);
        if (Number.isNaN(asOf)) throw new Error(`item without as_of: ${JSON.stringify(it)}`);
        ages.push(r.arrived - asOf);
        if (it.sku === "EDGE-001") shown(it.version, r.arrived);
      }
    }
  };
  await Promise.all([writer(), ...Array.from({ length: conns }, reader)]);
  // A write whose first showing read came after the load: not measured.
  const delays = writes.filter((w) => w.seen !== undefined).map((w) => Math.max(0, w.seen - w.answered));
  const unseen = writes.length - delays.length;
  console.log(
    `EDGE mode=stale reads=${reads} writes=${writes.length} unseen=${unseen} bad=${bad} ` +
      `max_age_ms=${Math.max(...ages)} p99_age_ms=${pct(ages, 99)} ` +
      `max_seen_ms=${delays.length ? Math.max(...delays) : 0} p99_seen_ms=${pct(delays, 99)}`,
  );
}

const main = async () => {
  if (mode === "cold") await cold(Number(a) || 10, Number(b) || 8);
  else if (mode === "stale") await stale(Number(a) || 5, Number(b) || 8);
  else throw new Error(`unknown mode ${mode}`);
};
main().catch((e) => {
  console.error(`edge.mjs: ${e.message}`);
  process.exit(1);
});
