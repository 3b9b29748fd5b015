//! Bit flags carried next to messages: the record `SYSFLAG` (MessageSysFlag), the pull request
//! `sysFlag` (PullSysFlag), topic/subscription flags and the permission bits of topics and brokers.
//!
//! They are plain `i32` constants because every one of them travels as a Java `int` inside headers
//! or records; a handful of helpers cover the multi-bit fields (transaction type, compression).

/// Bits of the commit-log record `SYSFLAG` field (message-format.md §2).
pub mod sys_flag {
    pub const COMPRESSED: i32 = 0x1;
    pub const MULTI_TAGS: i32 = 0x2;
    pub const TRANSACTION_NOT_TYPE: i32 = 0x0;
    pub const TRANSACTION_PREPARED_TYPE: i32 = 0x4;
    pub const TRANSACTION_COMMIT_TYPE: i32 = 0x8;
    pub const TRANSACTION_ROLLBACK_TYPE: i32 = 0xC;
    /// Mask of the two transaction-type bits.
    pub const TRANSACTION_MASK: i32 = 0xC;
    pub const BORNHOST_V6: i32 = 0x10;
    pub const STOREHOST_V6: i32 = 0x20;
    pub const NEED_UNWRAP: i32 = 0x40;
    pub const INNER_BATCH: i32 = 0x80;
    /// Mask of the compression-type bits (8..=10).
    pub const COMPRESSION_TYPE_MASK: i32 = 0x700;
    /// Compression type value 0: legacy clients set only `COMPRESSED`, which means zlib.
    pub const COMPRESSION_LEGACY_ZLIB: i32 = 0;
    pub const COMPRESSION_LZ4: i32 = 1 << 8;
    pub const COMPRESSION_ZSTD: i32 = 2 << 8;
    pub const COMPRESSION_ZLIB: i32 = 3 << 8;

    /// The transaction type bits of `flag` (one of the `TRANSACTION_*_TYPE` values).
    pub const fn transaction_type(flag: i32) -> i32 {
        flag & TRANSACTION_MASK
    }

    /// `flag` with its transaction type replaced by `ty`.
    pub const fn with_transaction_type(flag: i32, ty: i32) -> i32 {
        (flag & !TRANSACTION_MASK) | (ty & TRANSACTION_MASK)
    }

    /// Records of these types never get a consume-queue entry.
    pub const fn is_prepared_or_rollback(flag: i32) -> bool {
        let t = transaction_type(flag);
        t == TRANSACTION_PREPARED_TYPE || t == TRANSACTION_ROLLBACK_TYPE
    }

    pub const fn has(flag: i32, bit: i32) -> bool {
        flag & bit == bit
    }
}

/// Bits of the PULL_MESSAGE request header `sysFlag`.
pub mod pull_sys_flag {
    pub const COMMIT_OFFSET: i32 = 0x1;
    pub const SUSPEND: i32 = 0x2;
    pub const SUBSCRIPTION: i32 = 0x4;
    pub const CLASS_FILTER: i32 = 0x8;
    pub const LITE_PULL: i32 = 0x10;

    /// Builds the flag the way the Java client does.
    pub const fn build(
        commit_offset: bool,
        suspend: bool,
        subscription: bool,
        class_filter: bool,
        lite_pull: bool,
    ) -> i32 {
        (if commit_offset { COMMIT_OFFSET } else { 0 })
            | (if suspend { SUSPEND } else { 0 })
            | (if subscription { SUBSCRIPTION } else { 0 })
            | (if class_filter { CLASS_FILTER } else { 0 })
            | (if lite_pull { LITE_PULL } else { 0 })
    }

    /// The flag with `COMMIT_OFFSET` cleared (the broker does this when it re-runs a woken pull).
    pub const fn clear_commit_offset(flag: i32) -> i32 {
        flag & !COMMIT_OFFSET
    }

    pub const fn has(flag: i32, bit: i32) -> bool {
        flag & bit == bit
    }
}

/// TopicSysFlag bits.
pub mod topic_sys_flag {
    pub const UNIT: i32 = 0x1;
    pub const UNIT_SUB: i32 = 0x2;
}

/// SubscriptionSysFlag bits.
pub mod subscription_sys_flag {
    pub const UNIT: i32 = 0x1;
}

/// Permission bits of topics and brokers (`perm`).
pub mod perm {
    pub const PRIORITY: i32 = 0x8;
    pub const READ: i32 = 0x4;
    pub const WRITE: i32 = 0x2;
    pub const INHERIT: i32 = 0x1;
    /// Default permission of a user topic: read + write.
    pub const DEFAULT_TOPIC: i32 = READ | WRITE;

    pub const fn is_readable(perm: i32) -> bool {
        perm & READ == READ
    }

    pub const fn is_writeable(perm: i32) -> bool {
        perm & WRITE == WRITE
    }

    pub const fn is_inherited(perm: i32) -> bool {
        perm & INHERIT == INHERIT
    }

    /// Java's `PermName.perm2String`: `"RWX"` with `-` for missing bits (X = inherit).
    pub fn to_display(perm: i32) -> String {
        let mut s = String::with_capacity(3);
        s.push(if is_readable(perm) { 'R' } else { '-' });
        s.push(if is_writeable(perm) { 'W' } else { '-' });
        s.push(if is_inherited(perm) { 'X' } else { '-' });
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transaction_type_helpers() {
        let f = sys_flag::COMPRESSED | sys_flag::TRANSACTION_PREPARED_TYPE;
        assert_eq!(
            sys_flag::transaction_type(f),
            sys_flag::TRANSACTION_PREPARED_TYPE
        );
        assert!(sys_flag::is_prepared_or_rollback(f));
        let c = sys_flag::with_transaction_type(f, sys_flag::TRANSACTION_COMMIT_TYPE);
        assert_eq!(c, sys_flag::COMPRESSED | sys_flag::TRANSACTION_COMMIT_TYPE);
        assert!(!sys_flag::is_prepared_or_rollback(c));
    }

    #[test]
    fn pull_flag_build() {
        assert_eq!(pull_sys_flag::build(true, true, false, false, false), 3);
        assert_eq!(pull_sys_flag::clear_commit_offset(3), 2);
    }

    #[test]
    fn perm_display() {
        assert_eq!(perm::to_display(6), "RW-");
        assert_eq!(perm::to_display(7), "RWX");
    }
}
