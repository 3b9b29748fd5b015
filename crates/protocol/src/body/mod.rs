//! JSON bodies of requests and responses, in the shapes Java clients and tools parse.

pub mod auth;
pub mod consumer;
pub mod controller;
pub mod java_json;
pub mod pop;
pub mod route;

pub use consumer::*;
pub use controller::*;
pub use java_json::{from_java_json, object_keys_to_pairs, quote_numeric_keys, to_java_json};
pub use pop::*;
pub use route::*;
