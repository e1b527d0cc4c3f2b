// Reads the stock of the bench's SKUs at store-1 through the HTTP API (admin
// key), for scripts/bench-http.sh. Only HTTP, so it works on any version of
// the Worker that keeps API.md.
//
//   node state.mjs API avail SKU...
//     one line per SKU: "SKU on_hand reserved available" (channel=pos, consistency=strong)
//   node state.mjs API ledger SKU
//     pages the whole ledger of SKU at store-1 (limit=1000, after=N) and prints
//     "SKU entries=N received=R held=H held_entries=E sold=S sold_entries=F other=O"
//     (quantities summed per event kind; O counts entries of other kinds)
// Exits 1 (message on stderr) on any non-200 answer or malformed body.
const [api, what, ...skus] = process.argv.slice(2);
const KEY = process.env.BENCH_ADMIN_KEY || "sk_dev_admin";
const LOCATION = "store-1";

async function get(path) {
  let last;
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      const r = await fetch(api + path, {
        headers: { Authorization: `Bearer ${KEY}` },
        signal: AbortSignal.timeout(30000),
      });
      const text = await r.text();
      if (r.status !== 200) throw new Error(`GET ${path}: HTTP ${r.status}: ${text.slice(0, 300)}`);
      return JSON.parse(text);
    } catch (e) {
      last = e;
      // A refused or dropped connection right after a load run: try again shortly.
      await new Promise((res) => setTimeout(res, 500));
    }
  }
  throw last;
}

function num(v, what) {
  const n = typeof v === "string" ? Number(v) : v;
  if (!Number.isFinite(n)) throw new Error(`${what}: not a number: ${JSON.stringify(v)}`);
  return n;
}

async function avail() {
  const q = `sku=${skus.map(encodeURIComponent).join(",")}&location=${LOCATION}&channel=pos&consistency=strong`;
  const body = await get(`/v1/availability?${q}`);
  for (const sku of skus) {
    const row = (body.items || []).find((i) => i.sku === sku && i.location === LOCATION);
    if (!row) throw new Error(`availability: no row for ${sku} at ${LOCATION}: ${JSON.stringify(body).slice(0, 300)}`);
    console.log(`${sku} ${num(row.on_hand, "on_hand")} ${num(row.reserved, "reserved")} ${num(row.available, "available")}`);
  }
}

async function ledger() {
  const sku = skus[0];
  const sums = { received: 0, held: 0, sold: 0 };
  const counts = { received: 0, held: 0, sold: 0 };
  let entries = 0;
  let other = 0;
  let after = 0;
  // Bounded: 2,000 pages of 1,000 entries.
  for (let page = 0; page < 2000; page++) {
    const body = await get(`/v1/skus/${encodeURIComponent(sku)}/ledger?location=${LOCATION}&limit=1000&after=${after}`);
    const items = body.items || [];
    if (items.length === 0) {
      console.log(
        `${sku} entries=${entries} received=${sums.received} held=${sums.held} held_entries=${counts.held}` +
          ` sold=${sums.sold} sold_entries=${counts.sold} other=${other}`,
      );
      return;
    }
    for (const e of items) {
      entries++;
      if (e.event in sums) {
        counts[e.event]++;
        sums[e.event] += num(e.qty, `ledger ${e.event} qty`);
      } else {
        other++;
      }
    }
    const last = num(items[items.length - 1].seq, "ledger seq");
    if (last <= after) throw new Error(`ledger: seq did not advance past ${after}`);
    after = last;
  }
  throw new Error(`ledger of ${sku}: more than 2,000 pages`);
}

try {
  if (what === "avail") await avail();
  else if (what === "ledger") await ledger();
  else throw new Error(`usage: node state.mjs API avail SKU... | ledger SKU`);
} catch (e) {
  console.error(`state.mjs: ${e.message}`);
  process.exit(1);
}
