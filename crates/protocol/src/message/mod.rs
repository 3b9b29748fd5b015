//! Messages as RocketMQ lays them out: the commit-log record (identical to the pull wire record),
//! the properties string, tag hash codes and the two message id formats.
