// `make bench-live`: N live subscribers (GET /v1/availability/live) of one SKU,
// each counting the frames it gets, until SIGTERM; then prints
//   SUBS open=<sockets that got their snapshot> frames=<total> min=<fewest per socket> closed=<early closes>
// Usage: node live-subscribers.mjs ws://127.0.0.1:PORT SKU N
import WebSocket from "ws";

const [base, sku, n] = process.argv.slice(2);
const url = `${base}/v1/availability/live?sku=${sku}&key=pk_dev`;
const sockets = [];
let open = 0, closed = 0;
for (let i = 0; i < Number(n); i++) {
  const s = { frames: 0, snap: false };
  const ws = new WebSocket(url);
  ws.on("message", (m) => {
    const f = JSON.parse(m.toString());
    if (f.type === "snapshot" && !s.snap) { s.snap = true; open++; if (open === Number(n)) console.log("SUBS_READY"); }
    else if (f.type === "change") s.frames++;
  });
  ws.on("close", () => { closed++; });
  ws.on("error", () => {});
  sockets.push({ ws, s });
}
process.on("SIGTERM", () => {
  const frames = sockets.reduce((a, x) => a + x.s.frames, 0);
  const min = Math.min(...sockets.map((x) => x.s.frames));
  console.log(`SUBS open=${open} frames=${frames} min=${min} closed=${closed}`);
  process.exit(0);
});
