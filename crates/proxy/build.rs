//! Generates the `apache.rocketmq.v2` message types and the MessagingService server from our
//! own .proto files with `protox` (a Rust protobuf compiler), so building needs no `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/apache/rocketmq/v2/service.proto"];
    for f in [
        "proto/apache/rocketmq/v2/service.proto",
        "proto/apache/rocketmq/v2/definition.proto",
    ] {
        println!("cargo:rerun-if-changed={f}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        // The client is only used by the crate's own tests; generic over the transport, so it
        // costs no dependency.
        .build_client(true)
        .build_transport(false)
        .compile_fds(descriptors)?;
    Ok(())
}
