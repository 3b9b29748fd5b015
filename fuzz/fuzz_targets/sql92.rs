//! libFuzzer driver of [`ferrymq_fuzz::sql92`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferrymq_fuzz::sql92(data));
