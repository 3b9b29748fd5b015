//! libFuzzer driver of [`ferrymq_fuzz::headers`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferrymq_fuzz::headers(data));
