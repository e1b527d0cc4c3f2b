// omnistock widget loader: the one file a page includes.
//   <script type="module" src="https://HOST/widget/omnistock-widget.js"></script>
// It loads the wasm that sits next to it and defines <omnistock-availability>.
// (Copied into public/widget/ by `make widget-build`; wasm-bindgen writes the rest.)
import init, { define } from "./omnistock-widget-bindings.js";

init().then(define, (error) => console.error("<omnistock-availability>: could not load", error));
