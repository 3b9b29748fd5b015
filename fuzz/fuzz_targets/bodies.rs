//! libFuzzer driver of [`ferrymq_fuzz::bodies`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferrymq_fuzz::bodies(data));
