//! libFuzzer driver of [`ferrymq_fuzz::frame`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferrymq_fuzz::frame(data));
