// The Worker's entry (wrangler.toml `main`): worker-build's bundle
// (functions/build/index.js) as it is, except that each Durable Object class
// with an `rpc` method (wire/mod.rs, `rpc_receiver!`) gets DurableObject's
// prototype: workerd only exposes RPC methods of classes that extend it,
// and worker-build's module shim does not make them (its plain shim does
// the same two calls).
//
// The var OBJECT_RPC = "off" leaves the classes as worker-build made them.
// Every object call is then refused as RPC and sent over the stub's fetch
// instead (wire::call): what a Worker of this version meets in objects of
// the version before RPC during a deploy. The e2e test
// hot_path::objects_without_rpc_are_called_over_fetch runs with it.
import { DurableObject, env } from "cloudflare:workers";
import * as worker from "./build/index.js";

if (env?.OBJECT_RPC !== "off") {
  for (const [name, cls] of Object.entries(worker)) {
    if (name !== "default" && typeof cls === "function" && typeof cls.prototype?.rpc === "function") {
      Object.setPrototypeOf(cls.prototype, DurableObject.prototype);
      Object.setPrototypeOf(cls, DurableObject);
    }
  }
}

export * from "./build/index.js";
export { default } from "./build/index.js";
