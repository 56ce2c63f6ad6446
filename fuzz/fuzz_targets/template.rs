//! Template parsing and expansion (`{{ .Variables["name"] }}`, `{{ .Commit }}`, …) of
//! arbitrary text: rejected with diagnostics or expanded; never a panic or a hang.
#![no_main]

use berth::core::diag::Pos;
use berth::core::spec::template::{Context, Template};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let start = Pos::new("services/x/deploy/service.yaml", 3, 12);
    if let Ok(t) = Template::parse(&text, &start) {
        let ctx = Context { service: "x", env: "pre", commit: "0123456789ab", version: "1.2.3" };
        let _ = t.expand(&ctx, |name| format!("<{name}>"));
    }
});
