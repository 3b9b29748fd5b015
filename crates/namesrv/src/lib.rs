//! NameServer: the broker registry and topic route table that clients and brokers talk to.
