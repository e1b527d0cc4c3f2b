// The edge cache's points of `make bench-http` (issue 13), for
// scripts/bench-http.sh. Only HTTP; the SKUs EDGE-001..EDGE-100 at store-1
// are seeded by the script.
//
//   node edge.mjs API cold ROUNDS CONNECTIONS FIRST_SET
//     ROUNDS times: CONNECTIONS concurrent reads (pk_dev) of 100 SKUs never read
//     before (set FIRST_SET, FIRST_SET+1, ...: COLD-<set>-001..COLD-<set>-100,
//     seeded by the script), so every read finds the cache cold and the
//     concurrent misses of each SKU can only be coalesced. Prints
//     "EDGE mode=cold samples=N ok=N bad=N p50_ms=.. p99_ms=.. max_ms=.. calls_per_round=.."
//     (calls: SKU object calls the Worker made, from its Omnistock-Cache header).
//   node edge.mjs API stale SECONDS CONNECTIONS
//     For SECONDS: one writer adjusts EDGE-001 by +1 (admin key) as fast as it
//     is answered, while CONNECTIONS readers read the 100 SKUs (pk_dev). Prints
//     "EDGE mode=stale reads=N writes=N bad=N max_age_ms=.. p99_age_ms=.. max_age_arrived_ms=.. max_seen_ms=.. p99_seen_ms=.."
//     where age is (the reader's clock when it sent the read) - (the item's
//     as_of), over every item (the bound: at most 1000), age_arrived the same
//     from the answer's arrival (the bound plus the read's own latency), and seen is, per write, (the sending of the
//     first read showing its version or a later one) - (the arrival of the
//     write's answer), 0 when a read sent before that showed it (a read's own
//     latency is not staleness).
// Exits 1 (message on stderr) on a malformed answer.
const [api, mode, a, b] = process.argv.slice(2);
const LOCATION = "store-1";
const SKUS = Array.from({ length: 100 }, (_, i) => `EDGE-${String(i + 1).padStart(3, "0")}`);
const url = (skus) => `${api}/v1/availability?sku=${skus.join(",")}&location=${LOCATION}`;
const READ = url(SKUS);
const coldSet = (n) => Array.from({ length: 100 }, (_, i) => `COLD-${n}-${String(i + 1).padStart(3, "0")}`);

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const pct = (xs, p) => {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((x, y) => x - y);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
};
const fmt = (x) => x.toFixed(3);
const max = (xs) => xs.reduce((m, x) => Math.max(m, x), xs.length ? -Infinity : 0);

async function read(target = READ) {
  const sent = Date.now();
  const t0 = performance.now();
  let r;
  let text;
  try {
    r = await fetch(target, { headers: { Authorization: "Bearer pk_dev" }, signal: AbortSignal.timeout(30000) });
    text = await r.text();
  } catch (e) {
    // No answer in 30 s (or a broken connection): a failed read.
    return { status: 0, text: String(e), sent, arrived: Date.now(), ms: performance.now() - t0, calls: 0 };
  }
  const arrived = Date.now();
  const ms = performance.now() - t0;
  const calls = Number((/call=(\d+)/.exec(r.headers.get("omnistock-cache") || "") || [])[1] || 0);
  return { status: r.status, text, sent, arrived, ms, calls };
}

async function cold(rounds, conns, first) {
  const lat = [];
  let ok = 0;
  let bad = 0;
  let calls = 0;
  for (let i = 0; i < rounds; i++) {
    await sleep(300);
    const target = url(coldSet(first + i));
    const rs = await Promise.all(Array.from({ length: conns }, () => read(target)));
    for (const r of rs) {
      lat.push(r.ms);
      calls += r.calls;
      if (r.status === 200) ok++;
      else bad++;
    }
  }
  console.log(
    `EDGE mode=cold samples=${lat.length} ok=${ok} bad=${bad} p50_ms=${fmt(pct(lat, 50))} ` +
      `p99_ms=${fmt(pct(lat, 99))} max_ms=${fmt(max(lat))} calls_per_round=${(calls / rounds).toFixed(1)}`,
  );
}

async function stale(seconds, conns) {
  const end = Date.now() + seconds * 1000;
  const writes = []; // {version, answered}
  const seen = []; // per write: first arrival showing it
  let maxSeenVersion = -1;
  const ages = [];
  const arrivedAges = [];
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
        ages.push(r.sent - asOf);
        arrivedAges.push(r.arrived - asOf);
        if (it.sku === "EDGE-001") shown(it.version, r.sent);
      }
    }
  };
  await Promise.all([writer(), ...Array.from({ length: conns }, reader)]);
  // A write whose first showing read came after the load: not measured.
  const delays = writes.filter((w) => w.seen !== undefined).map((w) => Math.max(0, w.seen - w.answered));
  const unseen = writes.length - delays.length;
  console.log(
    `EDGE mode=stale reads=${reads} writes=${writes.length} unseen=${unseen} bad=${bad} ` +
      `max_age_ms=${max(ages)} p99_age_ms=${pct(ages, 99)} max_age_arrived_ms=${max(arrivedAges)} ` +
      `max_seen_ms=${delays.length ? max(delays) : 0} p99_seen_ms=${pct(delays, 99)}`,
  );
}

const main = async () => {
  if (mode === "cold") await cold(Number(a) || 4, Number(b) || 8, Number(process.argv[6]) || 1);
  else if (mode === "stale") await stale(Number(a) || 5, Number(b) || 8);
  else throw new Error(`unknown mode ${mode}`);
};
main().catch((e) => {
  console.error(`edge.mjs: ${e.message}`);
  process.exit(1);
});
