//! `sim::file::fuzz` under libFuzzer: any text as a scenario file.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sim::file::fuzz(data));
