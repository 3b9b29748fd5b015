//! libFuzzer driver of [`ferrymq_fuzz::grpc`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferrymq_fuzz::grpc(data));
