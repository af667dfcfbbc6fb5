//! `resolver::fuzzing::corefile` under libFuzzer (see that function for what is checked).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| resolver::fuzzing::corefile(data));
