//! Messages as RocketMQ lays them out: the commit-log record (identical to the pull wire record),
//! the properties string, tag hash codes and the two message id formats.
//!
//! Everything here is pure (no I/O) and allocation-light, because the store runs these codecs
//! on every append and every dispatched record.

pub mod batch;
pub mod flag;
pub mod msg_id;
pub mod properties;
pub mod record;
pub mod tag;

pub use batch::{BatchElement, BatchError};
pub use flag::{perm, pull_sys_flag, subscription_sys_flag, sys_flag, topic_sys_flag};
pub use msg_id::{offset_msg_id, MsgIdError, OffsetMsgId, UniqKeyGenerator};
pub use properties::keys;
pub use record::{
    body_crc, MessageRecord, RecordError, RecordHead, RecordIter, RecordVersion, RecordView,
    BLANK_MAGIC, MAGIC_V1, MAGIC_V2,
};
pub use tag::{java_string_hash, tags_code, SubscriptionTags};
