//! The agent config (`berth.yaml`) from arbitrary bytes: a config or diagnostics, never a
//! panic or a hang.
#![no_main]

use berth::core::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = Config::parse("berth.yaml", &text);
});
