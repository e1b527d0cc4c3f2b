// The Worker's entry (wrangler.toml `main`): worker-build's bundle
// (functions/build/index.js) as it is, except that each Durable Object class
// with an `rpc` method (wire/mod.rs, `rpc_receiver!`) gets DurableObject's
// prototype: workerd only exposes RPC methods of classes that extend it,
// and worker-build's module shim does not make them (its plain shim does
// the same two calls).
import { DurableObject } from "cloudflare:workers";
import * as worker from "./build/index.js";

for (const [name, cls] of Object.entries(worker)) {
  if (name !== "default" && typeof cls === "function" && typeof cls.prototype?.rpc === "function") {
    Object.setPrototypeOf(cls.prototype, DurableObject.prototype);
    Object.setPrototypeOf(cls, DurableObject);
  }
}

export * from "./build/index.js";
export { default } from "./build/index.js";
