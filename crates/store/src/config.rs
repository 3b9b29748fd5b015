//! Store settings, named after RocketMQ's `MessageStoreConfig` keys so broker.conf values map one
//! to one. Defaults are RocketMQ's; tests shrink the file sizes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// RocketMQ's `brokerRole`: whether this store takes writes and how it replicates them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum BrokerRole {
    /// Takes writes; slaves replicate in the background (the default).
    #[default]
    AsyncMaster,
    /// Takes writes; a put with WAIT is acknowledged once a slave has it.
    SyncMaster,
    /// Refuses writes; its commit log is a copy of the master's, fed by replication.
    Slave,
}

impl BrokerRole {
    /// Parses `ASYNC_MASTER`, `SYNC_MASTER` or `SLAVE`.
    pub fn parse(s: &str) -> Option<BrokerRole> {
        match s {
            "ASYNC_MASTER" => Some(BrokerRole::AsyncMaster),
            "SYNC_MASTER" => Some(BrokerRole::SyncMaster),
            "SLAVE" => Some(BrokerRole::Slave),
            _ => None,
        }
    }

    /// The `brokerRole` spelling.
    pub fn name(self) -> &'static str {
        match self {
            BrokerRole::AsyncMaster => "ASYNC_MASTER",
            BrokerRole::SyncMaster => "SYNC_MASTER",
            BrokerRole::Slave => "SLAVE",
        }
    }

    fn code(self) -> u8 {
        match self {
            BrokerRole::AsyncMaster => 0,
            BrokerRole::SyncMaster => 1,
            BrokerRole::Slave => 2,
        }
    }

    fn from_code(code: u8) -> BrokerRole {
        match code {
            1 => BrokerRole::SyncMaster,
            2 => BrokerRole::Slave,
            _ => BrokerRole::AsyncMaster,
        }
    }
}

/// The role a running store has now: fixed by `brokerRole`, or switched by the controller.
#[derive(Debug)]
pub(crate) struct RoleCell(std::sync::atomic::AtomicU8);

impl RoleCell {
    pub fn new(role: BrokerRole) -> RoleCell {
        RoleCell(std::sync::atomic::AtomicU8::new(role.code()))
    }
    pub fn get(&self) -> BrokerRole {
        BrokerRole::from_code(self.0.load(std::sync::atomic::Ordering::Acquire))
    }
    pub fn set(&self, role: BrokerRole) {
        self.0
            .store(role.code(), std::sync::atomic::Ordering::Release)
    }
}

/// When an acknowledged append is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushDiskType {
    /// Acknowledge after the append; a background thread flushes every `flush_interval_commit_log`.
    AsyncFlush,
    /// Acknowledge after the data is on disk (group commit), unless the message says `WAIT=false`.
    SyncFlush,
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// `storePathRootDir`: holds commitlog/, consumequeue/, index/, checkpoint, abort, lock, config/.
    pub store_path_root_dir: PathBuf,
    /// `mappedFileSizeCommitLog` (1 GiB).
    pub mapped_file_size_commit_log: usize,
    /// `mappedFileSizeConsumeQueue`: 300 000 entries × 20 bytes. Must be a multiple of 20.
    pub mapped_file_size_consume_queue: usize,
    pub flush_disk_type: FlushDiskType,
    /// `flushIntervalCommitLog` (500 ms).
    pub flush_interval_commit_log: Duration,
    /// `flushCommitLogLeastPages` (4 pages of 4 KiB) for the async flusher.
    pub flush_commit_log_least_pages: usize,
    /// `flushCommitLogThoroughInterval` (10 s): flush everything at least this often.
    pub flush_commit_log_thorough_interval: Duration,
    /// `syncFlushTimeout` (5 s).
    pub sync_flush_timeout: Duration,
    /// `flushIntervalConsumeQueue` (1 s); also when index files and the checkpoint are flushed.
    pub flush_interval_consume_queue: Duration,
    /// `maxMessageSize` (4 MiB) of a message body.
    pub max_message_size: usize,
    /// `messageIndexEnable`.
    pub message_index_enable: bool,
    /// `maxHashSlotNum` (5 000 000).
    pub max_hash_slot_num: usize,
    /// `maxIndexNum` (20 000 000).
    pub max_index_num: usize,
    /// `checkCRCOnRecover`.
    pub check_crc_on_recover: bool,
    /// `warmMapedFileEnable`: keep the page cache warm a little ahead of the append position
    /// (read, never written), so the appender's first touch of a page is a minor fault.
    pub warm_mapped_file_enable: bool,
    /// `fileReservedTime` (72 h).
    pub file_reserved_time: Duration,
    /// `deleteWhen` ("04"): hours of day, `;`-separated, when expired files are deleted.
    pub delete_when: String,
    /// `diskMaxUsedSpaceRatio` (75 %): above it expired files are deleted at any hour.
    pub disk_max_used_space_ratio: f64,
    /// `diskSpaceCleanForciblyRatio` (85 %): above it the oldest files go even if not expired.
    pub disk_space_clean_forcibly_ratio: f64,
    /// `diskSpaceWarningLevelRatio` (90 %): above it writes are refused.
    pub disk_space_warning_level_ratio: f64,
    /// `cleanResourceInterval` (10 s).
    pub clean_resource_interval: Duration,
    /// `deleteFileBatchMax` (10).
    pub delete_file_batch_max: usize,
    /// `maxTransferBytesOnMessageInMemory` (256 KiB).
    pub max_transfer_bytes_on_message_in_memory: usize,
    /// `maxTransferCountOnMessageInMemory` (32).
    pub max_transfer_count_on_message_in_memory: usize,
    /// `maxTransferBytesOnMessageInDisk` (64 KiB).
    pub max_transfer_bytes_on_message_in_disk: usize,
    /// `maxTransferCountOnMessageInDisk` (8).
    pub max_transfer_count_on_message_in_disk: usize,
    /// `accessMessageInMemoryMaxRatio` (40 % of RAM): older data counts as "on disk".
    pub access_message_in_memory_max_ratio: f64,
    /// `messageDelayLevel`: delivery delays of the 18 levels (for SCHEDULE_TOPIC_XXXX tag codes).
    pub message_delay_level: String,
    /// `waitTimeMillsInSendQueue` (200 ms): appends queued longer are refused (flow control).
    pub wait_time_in_queue: Duration,
    /// `osPageCacheBusyTimeOutMills` (1 s): while one append has held the commit-log lock
    /// longer than this (a stalled page cache or disk), new appends are refused at once
    /// instead of queueing behind it.
    pub os_page_cache_busy_timeout: Duration,
    /// `brokerRole`.
    pub broker_role: BrokerRole,
    /// Where a master accepts slaves (`haListenPort`; port 0 = any free port). `None` runs no
    /// HA server (tools, tests).
    pub ha_listen_addr: Option<SocketAddr>,
    /// `haMasterAddress`: the master's HA `host:port` for a slave; usually learned at run time
    /// from the NameServer instead ([`crate::MessageStore::set_ha_master_address`]).
    pub ha_master_address: Option<String>,
    /// `haSendHeartbeatInterval` (5 s): how often a slave reports its offset when idle, and a
    /// master sends an empty frame to an idle slave.
    pub ha_send_heartbeat_interval: Duration,
    /// `haHousekeepingInterval` (20 s): a connection silent this long is closed.
    pub ha_housekeeping_interval: Duration,
    /// `haTransferBatchSize` (32 KiB): the largest frame body a master sends.
    pub ha_transfer_batch_size: usize,
    /// `haMaxGapNotInSync` (256 MiB): a SYNC_MASTER answers SLAVE_NOT_AVAILABLE at once when
    /// its best slave is further behind than this.
    pub ha_max_gap_not_in_sync: i64,
    /// Controller mode: this broker's id as the controller assigned it. Then the store starts
    /// with no replication (the broker switches roles as the controller decides), a slave
    /// names itself to its master on connecting, and the master tracks acknowledgements per
    /// SyncStateSet member.
    pub controller_broker_id: Option<u64>,
    /// `allAckInSyncStateSet`: a SYNC_MASTER put in controller mode waits for every member of
    /// the SyncStateSet, not just one slave.
    pub all_ack_in_sync_state_set: bool,
    /// `haMaxTimeSlaveNotCatchup` (15 s): a replica that has not caught up with the master
    /// for this long leaves the SyncStateSet.
    pub ha_max_time_slave_not_catchup: Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            store_path_root_dir: default_root(),
            mapped_file_size_commit_log: 1024 * 1024 * 1024,
            mapped_file_size_consume_queue: 300_000 * crate::consume_queue::CQ_ENTRY_SIZE,
            flush_disk_type: FlushDiskType::AsyncFlush,
            flush_interval_commit_log: Duration::from_millis(500),
            flush_commit_log_least_pages: 4,
            flush_commit_log_thorough_interval: Duration::from_secs(10),
            sync_flush_timeout: Duration::from_secs(5),
            flush_interval_consume_queue: Duration::from_secs(1),
            max_message_size: 4 * 1024 * 1024,
            message_index_enable: true,
            max_hash_slot_num: 5_000_000,
            max_index_num: 20_000_000,
            check_crc_on_recover: true,
            warm_mapped_file_enable: true,
            file_reserved_time: Duration::from_secs(72 * 3600),
            delete_when: "04".to_owned(),
            disk_max_used_space_ratio: 0.75,
            disk_space_clean_forcibly_ratio: 0.85,
            disk_space_warning_level_ratio: 0.90,
            clean_resource_interval: Duration::from_secs(10),
            delete_file_batch_max: 10,
            max_transfer_bytes_on_message_in_memory: 256 * 1024,
            max_transfer_count_on_message_in_memory: 32,
            max_transfer_bytes_on_message_in_disk: 64 * 1024,
            max_transfer_count_on_message_in_disk: 8,
            access_message_in_memory_max_ratio: 0.40,
            message_delay_level: "1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h"
                .to_owned(),
            wait_time_in_queue: Duration::from_millis(200),
            os_page_cache_busy_timeout: Duration::from_millis(1000),
            broker_role: BrokerRole::AsyncMaster,
            ha_listen_addr: None,
            ha_master_address: None,
            ha_send_heartbeat_interval: Duration::from_secs(5),
            ha_housekeeping_interval: Duration::from_secs(20),
            ha_transfer_batch_size: 32 * 1024,
            ha_max_gap_not_in_sync: 256 * 1024 * 1024,
            controller_broker_id: None,
            all_ack_in_sync_state_set: false,
            ha_max_time_slave_not_catchup: Duration::from_secs(15),
        }
    }
}

fn default_root() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
        .join("store")
}

impl StoreConfig {
    /// Defaults rooted at `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> StoreConfig {
        StoreConfig {
            store_path_root_dir: dir.into(),
            ..StoreConfig::default()
        }
    }

    pub fn commit_log_dir(&self) -> PathBuf {
        self.store_path_root_dir.join("commitlog")
    }
    pub fn consume_queue_dir(&self) -> PathBuf {
        self.store_path_root_dir.join("consumequeue")
    }
    pub fn index_dir(&self) -> PathBuf {
        self.store_path_root_dir.join("index")
    }
    pub fn checkpoint_path(&self) -> PathBuf {
        self.store_path_root_dir.join("checkpoint")
    }
    pub fn abort_path(&self) -> PathBuf {
        self.store_path_root_dir.join("abort")
    }
    /// Controller mode: where each master epoch of the commit log starts (RocketMQ's name).
    pub fn epoch_path(&self) -> PathBuf {
        self.store_path_root_dir.join("epochFileCheckpoint")
    }
    pub fn lock_path(&self) -> PathBuf {
        self.store_path_root_dir.join("lock")
    }
    pub fn config_dir(&self) -> PathBuf {
        self.store_path_root_dir.join("config")
    }

    /// Delay of each level in milliseconds (index 0 = level 1). Unparsable items are skipped.
    pub fn delay_levels_ms(&self) -> Vec<i64> {
        self.message_delay_level
            .split_whitespace()
            .filter_map(parse_delay_level)
            .collect()
    }
}

/// One `messageDelayLevel` item (`5s`, `1m`, `2h`, `1d`) in milliseconds; `None` if malformed.
pub fn parse_delay_level(item: &str) -> Option<i64> {
    // The unit is the last character; splitting on chars keeps a non-ASCII typo from panicking.
    let unit = item.chars().last()?;
    let n: i64 = item[..item.len() - unit.len_utf8()].parse().ok()?;
    let unit_ms = match unit {
        's' => 1000,
        'm' => 60_000,
        'h' => 3_600_000,
        'd' => 86_400_000,
        _ => return None,
    };
    n.checked_mul(unit_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_delay_items_are_rejected_not_panics() {
        assert_eq!(parse_delay_level("5é"), None);
        assert_eq!(parse_delay_level("s"), None);
        assert_eq!(parse_delay_level(""), None);
        assert_eq!(parse_delay_level("2h"), Some(7_200_000));
    }

    #[test]
    fn delay_levels() {
        let c = StoreConfig::default();
        let levels = c.delay_levels_ms();
        assert_eq!(levels.len(), 18);
        assert_eq!(levels[0], 1000);
        assert_eq!(levels[17], 7_200_000);
    }
}
