//! JSON bodies of requests and responses, in the shapes Java clients and tools parse.

pub mod consumer;

pub use consumer::*;
