//! A minimal, independent RocketMQ remoting client (JSON headers) written from the public wire
//! format. Used to look at what the broker itself answers where the crates.io client would
//! validate or filter locally (bad topic names, oversize bodies, server-side tag filtering,
//! committed offsets), and to report exact response codes and remarks.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

pub mod code {
    // request codes
    pub const SEND_MESSAGE: i32 = 10;
    pub const PULL_MESSAGE: i32 = 11;
    pub const QUERY_CONSUMER_OFFSET: i32 = 14;
    pub const UPDATE_AND_CREATE_TOPIC: i32 = 17;
    pub const GET_MAX_OFFSET: i32 = 30;
    pub const GET_ROUTEINFO_BY_TOPIC: i32 = 105;
    pub const GET_BROKER_CLUSTER_INFO: i32 = 106;
    // response codes
    pub const SUCCESS: i32 = 0;
    pub const SYSTEM_ERROR: i32 = 1;
    pub const MESSAGE_ILLEGAL: i32 = 13;
    pub const TOPIC_NOT_EXIST: i32 = 17;
    pub const PULL_NOT_FOUND: i32 = 19;
    pub const PULL_RETRY_IMMEDIATELY: i32 = 20;
    pub const PULL_OFFSET_MOVED: i32 = 21;
    pub const QUERY_NOT_FOUND: i32 = 22;
}

static OPAQUE: AtomicI32 = AtomicI32::new(1);

#[derive(Debug, Clone)]
pub struct RawResponse {
    pub code: i32,
    pub remark: Option<String>,
    pub ext: HashMap<String, String>,
    pub body: Vec<u8>,
    pub header_json: String,
}

impl RawResponse {
    pub fn ext_i64(&self, k: &str) -> Option<i64> {
        self.ext.get(k).and_then(|v| v.parse().ok())
    }
}

pub struct RawConn {
    stream: TcpStream,
    addr: String,
}

impl RawConn {
    pub fn connect(addr: &str) -> std::io::Result<RawConn> {
        let stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(15)))?;
        stream.set_write_timeout(Some(Duration::from_secs(15)))?;
        stream.set_nodelay(true)?;
        Ok(RawConn {
            stream,
            addr: addr.to_owned(),
        })
    }

    /// Sends one request and reads its response (responses are matched by opaque; anything
    /// else on the connection is skipped).
    pub fn request(
        &mut self,
        code: i32,
        ext: &[(&str, String)],
        body: &[u8],
    ) -> std::io::Result<RawResponse> {
        let opaque = OPAQUE.fetch_add(1, Ordering::Relaxed);
        let mut fields = Map::new();
        for (k, v) in ext {
            fields.insert((*k).to_owned(), Value::String(v.clone()));
        }
        let header = json!({
            "code": code,
            "language": "JAVA",
            "version": 401,
            "opaque": opaque,
            "flag": 0,
            "extFields": Value::Object(fields),
            "serializeTypeCurrentRPC": "JSON",
        });
        let header = serde_json::to_vec(&header).expect("json");
        let total = 4 + header.len() + body.len();
        let mut frame = Vec::with_capacity(4 + total);
        frame.extend_from_slice(&(total as u32).to_be_bytes());
        frame.extend_from_slice(&(header.len() as u32).to_be_bytes()); // serialize type 0 = JSON
        frame.extend_from_slice(&header);
        frame.extend_from_slice(body);
        self.stream.write_all(&frame)?;
        loop {
            let resp = self.read_frame()?;
            let is_response = resp.0.get("flag").and_then(Value::as_i64).unwrap_or(0) & 1 == 1;
            let op = resp.0.get("opaque").and_then(Value::as_i64).unwrap_or(-1);
            if is_response && op == i64::from(opaque) {
                return Ok(to_response(resp.0, resp.1, resp.2));
            }
        }
    }

    fn read_frame(&mut self) -> std::io::Result<(Value, Vec<u8>, String)> {
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len)?;
        let total = u32::from_be_bytes(len) as usize;
        let mut buf = vec![0u8; total];
        self.stream.read_exact(&mut buf)?;
        let hl = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        let ser = (hl >> 24) & 0xff;
        let hlen = (hl & 0x00ff_ffff) as usize;
        let header = &buf[4..4 + hlen];
        let body = buf[4 + hlen..].to_vec();
        if ser != 0 {
            return Err(std::io::Error::other(format!(
                "{}: response uses serialize type {ser}, this raw client reads JSON only",
                self.addr
            )));
        }
        let text = String::from_utf8_lossy(header).into_owned();
        let v: Value = serde_json::from_slice(header).map_err(|e| {
            std::io::Error::other(format!("bad JSON header from {}: {e}: {text}", self.addr))
        })?;
        Ok((v, body, text))
    }
}

fn to_response(v: Value, body: Vec<u8>, text: String) -> RawResponse {
    let code = v.get("code").and_then(Value::as_i64).unwrap_or(-1) as i32;
    let remark = v.get("remark").and_then(Value::as_str).map(str::to_owned);
    let mut ext = HashMap::new();
    if let Some(Value::Object(m)) = v.get("extFields") {
        for (k, val) in m {
            let s = match val {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            ext.insert(k.clone(), s);
        }
    }
    RawResponse {
        code,
        remark,
        ext,
        body,
        header_json: text,
    }
}

pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as i64
}

/// `SEND_MESSAGE` (code 10) with a v1 `SendMessageRequestHeader`.
pub fn send_message(
    conn: &mut RawConn,
    group: &str,
    topic: &str,
    queue_id: i32,
    properties: &str,
    body: &[u8],
) -> std::io::Result<RawResponse> {
    conn.request(
        code::SEND_MESSAGE,
        &[
            ("producerGroup", group.to_owned()),
            ("topic", topic.to_owned()),
            ("defaultTopic", "TBW102".to_owned()),
            ("defaultTopicQueueNums", "4".to_owned()),
            ("queueId", queue_id.to_string()),
            ("sysFlag", "0".to_owned()),
            ("bornTimestamp", now_millis().to_string()),
            ("flag", "0".to_owned()),
            ("properties", properties.to_owned()),
            ("reconsumeTimes", "0".to_owned()),
            ("unitMode", "false".to_owned()),
            ("batch", "false".to_owned()),
        ],
        body,
    )
}

/// `PULL_MESSAGE` (code 11) without suspension, with the subscription carried in the request
/// (sysFlag FLAG_SUBSCRIPTION), so the broker filters by exactly `expression`.
pub fn pull_message(
    conn: &mut RawConn,
    group: &str,
    topic: &str,
    queue_id: i32,
    offset: i64,
    max: i32,
    expression: &str,
) -> std::io::Result<RawResponse> {
    const FLAG_SUBSCRIPTION: i32 = 0x4;
    conn.request(
        code::PULL_MESSAGE,
        &[
            ("consumerGroup", group.to_owned()),
            ("topic", topic.to_owned()),
            ("queueId", queue_id.to_string()),
            ("queueOffset", offset.to_string()),
            ("maxMsgNums", max.to_string()),
            ("sysFlag", FLAG_SUBSCRIPTION.to_string()),
            ("commitOffset", "0".to_owned()),
            ("suspendTimeoutMillis", "0".to_owned()),
            ("subscription", expression.to_owned()),
            ("subVersion", now_millis().to_string()),
            ("expressionType", "TAG".to_owned()),
        ],
        &[],
    )
}

/// `QUERY_CONSUMER_OFFSET` (code 14): `Ok(Some(offset))` on SUCCESS, `Ok(None)` on
/// QUERY_NOT_FOUND, `Err` otherwise.
pub fn query_consumer_offset(
    conn: &mut RawConn,
    group: &str,
    topic: &str,
    queue_id: i32,
) -> Result<Option<i64>, String> {
    let r = conn
        .request(
            code::QUERY_CONSUMER_OFFSET,
            &[
                ("consumerGroup", group.to_owned()),
                ("topic", topic.to_owned()),
                ("queueId", queue_id.to_string()),
            ],
            &[],
        )
        .map_err(|e| e.to_string())?;
    match r.code {
        code::SUCCESS => r
            .ext_i64("offset")
            .map(Some)
            .ok_or_else(|| format!("no offset in {}", r.header_json)),
        code::QUERY_NOT_FOUND => Ok(None),
        _ => Err(format!(
            "QUERY_CONSUMER_OFFSET answered {} {:?}",
            r.code, r.remark
        )),
    }
}

/// `GET_MAX_OFFSET` (code 30).
pub fn max_offset(conn: &mut RawConn, topic: &str, queue_id: i32) -> Result<i64, String> {
    let r = conn
        .request(
            code::GET_MAX_OFFSET,
            &[
                ("topic", topic.to_owned()),
                ("queueId", queue_id.to_string()),
            ],
            &[],
        )
        .map_err(|e| e.to_string())?;
    if r.code != code::SUCCESS {
        return Err(format!("GET_MAX_OFFSET answered {} {:?}", r.code, r.remark));
    }
    r.ext_i64("offset")
        .ok_or_else(|| format!("no offset in {}", r.header_json))
}

/// `GET_ROUTEINFO_BY_TOPIC` (code 105) to a name server; returns the response.
pub fn route_info(conn: &mut RawConn, topic: &str) -> std::io::Result<RawResponse> {
    conn.request(
        code::GET_ROUTEINFO_BY_TOPIC,
        &[("topic", topic.to_owned())],
        &[],
    )
}

/// `UPDATE_AND_CREATE_TOPIC` (code 17) to a broker: a plain (SINGLE_TAG, non-order) topic with
/// `queues` read and write queues and permission `perm` (6 = read + write).
pub fn create_topic(
    conn: &mut RawConn,
    topic: &str,
    queues: i32,
    perm: i32,
) -> std::io::Result<RawResponse> {
    conn.request(
        code::UPDATE_AND_CREATE_TOPIC,
        &[
            ("topic", topic.to_owned()),
            ("defaultTopic", "TBW102".to_owned()),
            ("readQueueNums", queues.to_string()),
            ("writeQueueNums", queues.to_string()),
            ("perm", perm.to_string()),
            ("topicFilterType", "SINGLE_TAG".to_owned()),
            ("topicSysFlag", "0".to_owned()),
            ("order", "false".to_owned()),
        ],
        &[],
    )
}

/// `GET_BROKER_CLUSTER_INFO` (code 106) to a name server; returns the response.
pub fn broker_cluster_info(conn: &mut RawConn) -> std::io::Result<RawResponse> {
    conn.request(code::GET_BROKER_CLUSTER_INFO, &[], &[])
}

/// Parses a name server body into a JSON value. Java's fastjson writes maps with integer keys
/// such as `brokerAddrs` with bare keys (`{0:"host:port"}`); those are quoted first, so strict
/// JSON and fastjson output are both accepted.
pub fn parse_java_json(body: &[u8]) -> Result<Value, String> {
    let text = std::str::from_utf8(body).map_err(|e| format!("body is not UTF-8: {e}"))?;
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len() + 16);
    let (mut in_str, mut escaped, mut expect_key) = (false, false, false);
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if in_str {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_str = false;
            }
            i += 1;
            continue;
        }
        match c {
            '"' => {
                in_str = true;
                expect_key = false;
                out.push(c);
            }
            '{' | ',' => {
                expect_key = true;
                out.push(c);
            }
            c if c.is_whitespace() => out.push(c),
            c if expect_key && (c.is_ascii_digit() || c == '-') => {
                let start = i;
                while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '-') {
                    i += 1;
                }
                let token: String = chars[start..i].iter().collect();
                let mut j = i;
                while j < chars.len() && chars[j].is_whitespace() {
                    j += 1;
                }
                if chars.get(j) == Some(&':') {
                    out.push('"');
                    out.push_str(&token);
                    out.push('"');
                } else {
                    out.push_str(&token);
                }
                expect_key = false;
                continue;
            }
            _ => {
                expect_key = false;
                out.push(c);
            }
        }
        i += 1;
    }
    serde_json::from_str(&out).map_err(|e| format!("{e} in {text}"))
}

/// Number of read queues of `topic` as routed by the name server (`None` if no route).
pub fn route_queue_count(namesrv: &str, topic: &str) -> Option<i32> {
    let mut c = RawConn::connect(namesrv).ok()?;
    let r = route_info(&mut c, topic).ok()?;
    if r.code != code::SUCCESS {
        return None;
    }
    // The body is fastjson output (`brokerAddrs` has bare integer keys), not strict JSON:
    // sum the `readQueueNums` fields textually.
    let text = String::from_utf8_lossy(&r.body);
    let mut total = 0i32;
    let mut found = false;
    for part in text.split("\"readQueueNums\":").skip(1) {
        let digits: String = part.chars().take_while(|c| c.is_ascii_digit()).collect();
        total += digits.parse::<i32>().ok()?;
        found = true;
    }
    found.then_some(total)
}

/// A message decoded from a pull response body (the stored message format).
#[derive(Debug, Clone)]
pub struct RawMessage {
    pub queue_id: i32,
    pub queue_offset: i64,
    pub commit_log_offset: i64,
    pub sys_flag: i32,
    pub reconsume_times: i32,
    pub topic: String,
    pub body: Vec<u8>,
    pub properties: HashMap<String, String>,
}

impl RawMessage {
    pub fn tags(&self) -> Option<&str> {
        self.properties.get("TAGS").map(String::as_str)
    }
}

const MAGIC_V1: i32 = -626_843_481; // 0xDAA320A7
const MAGIC_V2: i32 = -626_843_477;

struct Cur<'a> {
    b: &'a [u8],
    p: usize,
}

impl<'a> Cur<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.p + n > self.b.len() {
            return Err(format!(
                "truncated at {} (+{n}) of {}",
                self.p,
                self.b.len()
            ));
        }
        let s = &self.b[self.p..self.p + n];
        self.p += n;
        Ok(s)
    }
    fn i32(&mut self) -> Result<i32, String> {
        Ok(i32::from_be_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn i64(&mut self) -> Result<i64, String> {
        Ok(i64::from_be_bytes(self.take(8)?.try_into().unwrap()))
    }
    fn i16(&mut self) -> Result<i16, String> {
        Ok(i16::from_be_bytes(self.take(2)?.try_into().unwrap()))
    }
}

/// Decodes the concatenated messages of a pull response body.
pub fn decode_messages(body: &[u8]) -> Result<Vec<RawMessage>, String> {
    const BORNHOST_V6: i32 = 0x1 << 4;
    const STOREHOST_V6: i32 = 0x1 << 5;
    const COMPRESSED: i32 = 0x1;
    let mut out = Vec::new();
    let mut c = Cur { b: body, p: 0 };
    while c.p < body.len() {
        let start = c.p;
        let total = c.i32()? as usize;
        let magic = c.i32()?;
        if magic != MAGIC_V1 && magic != MAGIC_V2 {
            return Err(format!("bad magic {magic:#x} at {start}"));
        }
        let _crc = c.i32()?;
        let queue_id = c.i32()?;
        let _flag = c.i32()?;
        let queue_offset = c.i64()?;
        let commit_log_offset = c.i64()?;
        let sys_flag = c.i32()?;
        let _born_ts = c.i64()?;
        c.take(if sys_flag & BORNHOST_V6 != 0 { 16 } else { 4 } + 4)?;
        let _store_ts = c.i64()?;
        c.take(if sys_flag & STOREHOST_V6 != 0 { 16 } else { 4 } + 4)?;
        let reconsume_times = c.i32()?;
        let _prepared = c.i64()?;
        let body_len = c.i32()? as usize;
        let mut msg_body = c.take(body_len)?.to_vec();
        if sys_flag & COMPRESSED != 0 {
            // leave compressed bodies as they are; tests only look at small bodies here
            msg_body.insert(0, 0xff);
        }
        let topic_len = if magic == MAGIC_V2 {
            c.i16()? as u16 as usize
        } else {
            c.take(1)?[0] as usize
        };
        let topic = String::from_utf8_lossy(c.take(topic_len)?).into_owned();
        let props_len = c.i16()? as u16 as usize;
        let props = String::from_utf8_lossy(c.take(props_len)?).into_owned();
        let properties = parse_properties(&props);
        if c.p - start != total {
            return Err(format!(
                "message at {start}: totalSize {total} but decoded {} bytes",
                c.p - start
            ));
        }
        out.push(RawMessage {
            queue_id,
            queue_offset,
            commit_log_offset,
            sys_flag,
            reconsume_times,
            topic,
            body: msg_body,
            properties,
        });
    }
    Ok(out)
}

pub fn parse_properties(s: &str) -> HashMap<String, String> {
    s.split('\u{2}')
        .filter(|kv| !kv.is_empty())
        .filter_map(|kv| {
            kv.split_once('\u{1}')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
        })
        .collect()
}

/// Serializes message properties the RocketMQ way.
pub fn properties_string(props: &[(&str, &str)]) -> String {
    let mut s = String::new();
    for (k, v) in props {
        s.push_str(k);
        s.push('\u{1}');
        s.push_str(v);
        s.push('\u{2}');
    }
    s
}
