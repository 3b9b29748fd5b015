//! libFuzzer driver of [`ferrymq_fuzz::record`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferrymq_fuzz::record(data));
