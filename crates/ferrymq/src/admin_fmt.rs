//! Presentation helpers of `ferrymq admin`: aligned tables, local times the way mqadmin prints
//! and reads them, version names, and one-line descriptions of client errors.

use std::time::{SystemTime, UNIX_EPOCH};

use ferrymq_client::ClientError;
use ferrymq_protocol::ResponseCode;

/// A table printed with every column as wide as its widest cell, two spaces apart.
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with this header row (mqadmin's `#Name` style).
    pub fn new(header: &[&str]) -> Table {
        Table {
            rows: vec![header.iter().map(|h| (*h).to_owned()).collect()],
        }
    }

    /// Appends a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as text, one line per row, no trailing spaces.
    pub fn render(&self) -> String {
        let cols = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut widths = vec![0usize; cols];
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                line.push_str(cell);
                let pad = widths[i].saturating_sub(cell.chars().count());
                line.extend(std::iter::repeat_n(' ', pad));
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Wall-clock milliseconds since the epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Broken-down local time of an epoch-millisecond time: (year, month, day, hour, min, sec, ms).
fn local_parts(ms: i64) -> Option<(i32, i32, i32, i32, i32, i32, i64)> {
    let secs = ms.div_euclid(1000) as libc::time_t;
    // SAFETY: localtime_r only writes the caller-provided struct; both pointers are valid.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let ok = unsafe { !libc::localtime_r(&secs, &mut tm).is_null() };
    ok.then_some((
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        ms.rem_euclid(1000),
    ))
}

/// `yyyy-MM-dd HH:mm:ss,SSS` in local time (mqadmin's timeMillisToHumanString2); empty for 0.
pub fn human_ms(ms: i64) -> String {
    if ms <= 0 {
        return String::new();
    }
    match local_parts(ms) {
        Some((y, mo, d, h, mi, s, milli)) => {
            format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02},{milli:03}")
        }
        None => ms.to_string(),
    }
}

/// `yyyy-MM-dd HH:mm:ss` in local time; `N/A` for 0 (consumerProgress's #LastTime).
pub fn human_secs(ms: i64) -> String {
    if ms <= 0 {
        return "N/A".to_owned();
    }
    match local_parts(ms) {
        Some((y, mo, d, h, mi, s, _)) => format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}"),
        None => ms.to_string(),
    }
}

/// Reads a time the way `resetOffsetByTime -s` takes it: `now`, epoch milliseconds, or local
/// `yyyy-MM-dd#HH:mm:ss:SSS`.
pub fn parse_timestamp(s: &str) -> Result<i64, String> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("now") {
        return Ok(now_ms());
    }
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    let bad = || {
        format!(
            "invalid timestamp `{s}`: expected now, epoch milliseconds or yyyy-MM-dd#HH:mm:ss:SSS"
        )
    };
    let (date, time) = s.split_once('#').ok_or_else(bad)?;
    let d: Vec<&str> = date.split('-').collect();
    let t: Vec<&str> = time.split(':').collect();
    if d.len() != 3 || t.len() != 4 {
        return Err(bad());
    }
    let num = |x: &str| x.parse::<i32>().map_err(|_| bad());
    let (year, month, day) = (num(d[0])?, num(d[1])?, num(d[2])?);
    let (hour, min, sec, milli) = (num(t[0])?, num(t[1])?, num(t[2])?, num(t[3])?);
    if !(1970..=9999).contains(&year)
        || !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || !(0..=23).contains(&hour)
        || !(0..=59).contains(&min)
        || !(0..=60).contains(&sec)
        || !(0..=999).contains(&milli)
    {
        return Err(bad());
    }
    // SAFETY: mktime reads and normalizes the caller-provided struct only.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    tm.tm_year = year - 1900;
    tm.tm_mon = month - 1;
    tm.tm_mday = day;
    tm.tm_hour = hour;
    tm.tm_min = min;
    tm.tm_sec = sec;
    tm.tm_isdst = -1;
    let secs = unsafe { libc::mktime(&mut tm) };
    if secs == -1 {
        return Err(bad());
    }
    Ok(secs as i64 * 1000 + i64::from(milli))
}

/// RocketMQ's name of an `MQVersion` ordinal (`479` → `V5_3_3`).
pub fn version_desc(v: i32) -> String {
    // From V4_0_0_SNAPSHOT (212) on, every patch release has a SNAPSHOT and a release entry,
    // ten patches a minor, ten minors a major; V5_9_9 (611) is the last, HIGHER_VERSION follows.
    match v {
        212..=611 => {
            let rel = v - 212;
            let major = 4 + rel / 200;
            let minor = rel % 200 / 20;
            let patch = rel % 20 / 2;
            let snapshot = if rel % 2 == 0 { "_SNAPSHOT" } else { "" };
            format!("V{major}_{minor}_{patch}{snapshot}")
        }
        612 => "HIGHER_VERSION".to_owned(),
        _ => format!("V{v}"),
    }
}

/// `TopicNotExist` → `TOPIC_NOT_EXIST`, as RocketMQ names its response codes.
pub fn code_name(code: ResponseCode) -> String {
    if let ResponseCode::Unknown(n) = code {
        return format!("CODE_{n}");
    }
    let camel = format!("{code:?}");
    let mut out = String::new();
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// One line describing a client error for an operator.
pub fn describe(e: &ClientError) -> String {
    match e {
        ClientError::Broker { code, remark, addr } if remark.trim().is_empty() => {
            format!("{addr} answered {}", code_name(*code))
        }
        ClientError::Broker { code, remark, .. } => {
            format!("{} ({})", remark.trim(), code_name(*code))
        }
        ClientError::NoRoute(topic) => format!("topic [{topic}] not exist (TOPIC_NOT_EXIST)"),
        ClientError::Transport { addr, source } => {
            let why = source.to_string();
            if why.contains(addr.as_str()) {
                why
            } else {
                format!("request to {addr} failed: {why}")
            }
        }
        ClientError::InvalidArgument(why) => why.clone(),
        other => other.to_string(),
    }
}

/// Text as one line: line breaks become spaces.
pub fn one_line(s: &str) -> String {
    s.split(['\n', '\r'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Permission bits as mqadmin spells them (`RW-`, `R--`, `RWX`).
pub fn perm_string(perm: i32) -> String {
    let mut s = String::with_capacity(3);
    s.push(if perm & 4 != 0 { 'R' } else { '-' });
    s.push(if perm & 2 != 0 { 'W' } else { '-' });
    s.push(if perm & 1 != 0 { 'X' } else { '-' });
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let mut t = Table::new(&["#A", "#Long Header", "#C"]);
        t.row(vec!["wide cell".into(), "x".into(), "".into()]);
        let text = t.render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "#A         #Long Header  #C");
        assert_eq!(lines[1], "wide cell  x");
    }

    #[test]
    fn timestamps_parse_in_all_three_forms() {
        assert_eq!(parse_timestamp("1700000000123").unwrap(), 1_700_000_000_123);
        let now = parse_timestamp("now").unwrap();
        assert!((now - now_ms()).abs() < 5_000);
        // The date form is local time: formatting it back gives the same text.
        let ms = parse_timestamp("2024-02-29#13:45:07:089").unwrap();
        assert_eq!(human_ms(ms), "2024-02-29 13:45:07,089");
        assert_eq!(ms % 1000, 89);
        for bad in [
            "",
            "yesterday",
            "2024-02-29",
            "2024-13-01#00:00:00:000",
            "1#2:3",
        ] {
            let e = parse_timestamp(bad).unwrap_err();
            assert!(e.contains("invalid timestamp"), "{e}");
        }
    }

    #[test]
    fn versions_and_codes_have_rocketmq_names() {
        assert_eq!(version_desc(479), "V5_3_3");
        assert_eq!(version_desc(401), "V4_9_4");
        assert_eq!(version_desc(212), "V4_0_0_SNAPSHOT");
        assert_eq!(version_desc(611), "V5_9_9");
        assert_eq!(code_name(ResponseCode::TopicNotExist), "TOPIC_NOT_EXIST");
        assert_eq!(
            code_name(ResponseCode::InvalidParameter),
            "INVALID_PARAMETER"
        );
        assert_eq!(code_name(ResponseCode::Unknown(777)), "CODE_777");
        assert_eq!(perm_string(6), "RW-");
        assert_eq!(perm_string(7), "RWX");
        assert_eq!(one_line("a\n b\r\n\nc"), "a b c");
    }
}
