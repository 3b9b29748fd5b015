//! Headers of the POP consumption requests (request-codes.md §10): POP_MESSAGE, ACK_MESSAGE,
//! CHANGE_MESSAGE_INVISIBLETIME and NOTIFICATION. Their codes do not fit in int16, so they only
//! ever travel with JSON headers. BATCH_ACK_MESSAGE has no header; its body is
//! [`crate::body::BatchAckMessageRequestBody`].

use crate::command_header;

/// `initMode` of a POP_MESSAGE for a group without a committed offset: start at the queue's
/// minimum offset.
pub const POP_INIT_MODE_MIN: i32 = 0;
/// `initMode`: start at the newest existing message.
pub const POP_INIT_MODE_MAX: i32 = 1;

command_header! {
    /// POP_MESSAGE (200050).
    pub struct PopMessageRequestHeader {
        consumer_group: String => "consumerGroup",
        topic: String => "topic",
        /// −1 = any read queue, starting at a random one.
        queue_id: i32 => "queueId",
        max_msg_nums: i32 => "maxMsgNums",
        /// Milliseconds the popped messages stay invisible.
        invisible_time: i64 => "invisibleTime",
        /// Milliseconds the request may wait in long polling.
        poll_time: i64 => "pollTime",
        /// Client clock (ms) when the request was sent.
        born_time: i64 => "bornTime",
        /// [`POP_INIT_MODE_MIN`] or [`POP_INIT_MODE_MAX`].
        init_mode: i32 => "initMode",
        exp_type: Option<String> => "expType",
        exp: Option<String> => "exp",
        order: Option<bool> => "order",
        attempt_id: Option<String> => "attemptId",
    }
}

impl PopMessageRequestHeader {
    /// Orderly (FIFO) pop; Java's `Boolean order` defaults to false.
    pub fn is_order(&self) -> bool {
        self.order.unwrap_or(false)
    }
}

command_header! {
    /// POP_MESSAGE response. The offset-info strings let a client build each message's receipt
    /// handle (see [`crate::pop`]).
    pub struct PopMessageResponseHeader {
        pop_time: i64 => "popTime",
        invisible_time: i64 => "invisibleTime",
        revive_qid: i32 => "reviveQid",
        /// Messages still waiting in the popped queues.
        rest_num: i64 => "restNum",
        start_offset_info: Option<String> => "startOffsetInfo",
        msg_offset_info: Option<String> => "msgOffsetInfo",
        order_count_info: Option<String> => "orderCountInfo",
    }
}

command_header! {
    /// ACK_MESSAGE (200051).
    pub struct AckMessageRequestHeader {
        consumer_group: String => "consumerGroup",
        topic: String => "topic",
        queue_id: i32 => "queueId",
        /// The receipt handle ([`crate::pop::ExtraInfo`]).
        extra_info: String => "extraInfo",
        /// Queue offset of the acked message.
        offset: i64 => "offset",
    }
}

command_header! {
    /// CHANGE_MESSAGE_INVISIBLETIME (200053).
    pub struct ChangeInvisibleTimeRequestHeader {
        consumer_group: String => "consumerGroup",
        topic: String => "topic",
        queue_id: i32 => "queueId",
        extra_info: String => "extraInfo",
        offset: i64 => "offset",
        /// New invisible time in ms, counted from now.
        invisible_time: i64 => "invisibleTime",
    }
}

command_header! {
    /// CHANGE_MESSAGE_INVISIBLETIME response: the caller builds the new handle from these
    /// (startOffset = the message's own offset).
    pub struct ChangeInvisibleTimeResponseHeader {
        pop_time: i64 => "popTime",
        invisible_time: i64 => "invisibleTime",
        revive_qid: i32 => "reviveQid",
    }
}

command_header! {
    /// NOTIFICATION (200054): long-poll until a POP would find something, without popping.
    pub struct NotificationRequestHeader {
        consumer_group: String => "consumerGroup",
        topic: String => "topic",
        queue_id: i32 => "queueId",
        poll_time: i64 => "pollTime",
        born_time: i64 => "bornTime",
        order: Option<bool> => "order",
        attempt_id: Option<String> => "attemptId",
    }
}

command_header! {
    /// NOTIFICATION response.
    pub struct NotificationResponseHeader {
        has_msg: bool => "hasMsg",
        polling_full: Option<bool> => "pollingFull",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::ExtFields;
    use crate::header::{CommandHeader, HeaderError};

    #[test]
    fn pop_request_reads_java_fields() {
        let ext: ExtFields = [
            ("consumerGroup", "G"),
            ("topic", "T"),
            ("queueId", "-1"),
            ("maxMsgNums", "32"),
            ("invisibleTime", "60000"),
            ("pollTime", "15000"),
            ("bornTime", "1700000000000"),
            ("initMode", "1"),
            ("expType", "TAG"),
            ("exp", "*"),
            ("order", "false"),
        ]
        .into_iter()
        .collect();
        let h = PopMessageRequestHeader::read(&ext).unwrap();
        assert_eq!(h.queue_id, -1);
        assert_eq!(h.init_mode, POP_INIT_MODE_MAX);
        assert!(!h.is_order());
        assert_eq!(h.attempt_id, None);
        let mut back = ExtFields::new();
        h.write(&mut back);
        assert_eq!(PopMessageRequestHeader::read(&back).unwrap(), h);
    }

    #[test]
    fn ack_requires_extra_info() {
        let ext: ExtFields = [
            ("consumerGroup", "G"),
            ("topic", "T"),
            ("queueId", "0"),
            ("offset", "3"),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            AckMessageRequestHeader::read(&ext),
            Err(HeaderError::Missing("extraInfo"))
        );
    }

    #[test]
    fn responses_round_trip() {
        let h = PopMessageResponseHeader {
            pop_time: 1,
            invisible_time: 2,
            revive_qid: 3,
            rest_num: 4,
            start_offset_info: Some("0 1 5".into()),
            msg_offset_info: Some("0 1 5,6".into()),
            order_count_info: None,
        };
        let mut ext = ExtFields::new();
        h.write(&mut ext);
        assert_eq!(PopMessageResponseHeader::read(&ext).unwrap(), h);
        let c = ChangeInvisibleTimeResponseHeader {
            pop_time: 9,
            invisible_time: 8,
            revive_qid: 7,
        };
        let mut ext = ExtFields::new();
        c.write(&mut ext);
        assert_eq!(ext.get("reviveQid"), Some("7"));
        assert_eq!(ChangeInvisibleTimeResponseHeader::read(&ext).unwrap(), c);
    }
}
