//! Java `.properties` text: the format of RocketMQ's `broker.conf`/`namesrv.conf` and of the
//! GET/UPDATE_BROKER_CONFIG and GET/UPDATE_NAMESRV_CONFIG bodies.
//!
//! [`properties_struct!`](crate::properties_struct) declares a configuration struct once — field,
//! type, RocketMQ key, default — and generates reading a key, listing all keys and rendering, so
//! config files, admin updates and config dumps share one definition.

/// Parses properties text into (key, value) pairs in file order.
///
/// Follows `java.util.Properties.load`: `#`/`!` comment lines, `=`, `:` or whitespace as the
/// separator, backslash line continuations and escapes (`\t \n \r \f \uXXXX`, any other escaped
/// character stands for itself).
pub fn parse(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut logical = String::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        if logical.is_empty()
            && (trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with('!'))
        {
            continue;
        }
        logical.push_str(trimmed);
        if ends_with_odd_backslashes(&logical) {
            logical.pop();
            continue;
        }
        if let Some(pair) = split_pair(&logical) {
            out.push(pair);
        }
        logical.clear();
    }
    // A final line ending in a continuation still counts.
    if !logical.is_empty() {
        if let Some(pair) = split_pair(&logical) {
            out.push(pair);
        }
    }
    out
}

fn ends_with_odd_backslashes(s: &str) -> bool {
    s.bytes().rev().take_while(|&b| b == b'\\').count() % 2 == 1
}

fn split_pair(line: &str) -> Option<(String, String)> {
    let mut key_end = line.len();
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '=' | ':' | ' ' | '\t' | '\x0c' => {
                key_end = i;
                break;
            }
            _ => {}
        }
    }
    let key = unescape(&line[..key_end]);
    let mut rest = line[key_end..].trim_start_matches([' ', '\t', '\x0c']);
    if rest.starts_with('=') || rest.starts_with(':') {
        rest = rest[1..].trim_start_matches([' ', '\t', '\x0c']);
    }
    if key.is_empty() {
        return None;
    }
    Some((key, unescape(rest)))
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\x0c'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    Some(ch) => out.push(ch),
                    None => out.push_str(&hex),
                }
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

/// Renders pairs as `key=value` lines (the form RocketMQ's admin bodies use).
pub fn render<'a>(pairs: impl IntoIterator<Item = (&'a str, String)>) -> String {
    let mut out = String::new();
    for (k, v) in pairs {
        out.push_str(k);
        out.push('=');
        for c in v.chars() {
            match c {
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\\' => out.push_str("\\\\"),
                c => out.push(c),
            }
        }
        out.push('\n');
    }
    out
}

/// A configuration value read from its properties text.
pub trait ConfigValue: Sized {
    fn parse_value(s: &str) -> Option<Self>;
    fn render_value(&self) -> String;
}

impl ConfigValue for String {
    fn parse_value(s: &str) -> Option<Self> {
        Some(s.trim().to_owned())
    }
    fn render_value(&self) -> String {
        self.clone()
    }
}

impl ConfigValue for bool {
    /// Strict, unlike header booleans: a typo in a config file must not silently become false.
    fn parse_value(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        }
    }
    fn render_value(&self) -> String {
        self.to_string()
    }
}

macro_rules! numeric_config {
    ($($t:ty),*) => {$(
        impl ConfigValue for $t {
            fn parse_value(s: &str) -> Option<Self> {
                s.trim().parse().ok()
            }
            fn render_value(&self) -> String {
                self.to_string()
            }
        }
    )*};
}
numeric_config!(i32, i64, u16, u32, u64, usize, f64);

impl<T: ConfigValue> ConfigValue for Option<T> {
    fn parse_value(s: &str) -> Option<Self> {
        if s.trim().is_empty() {
            return Some(None);
        }
        T::parse_value(s).map(Some)
    }
    fn render_value(&self) -> String {
        self.as_ref().map(T::render_value).unwrap_or_default()
    }
}

/// Why a configuration key could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("unknown configuration key `{0}`")]
    UnknownKey(String),
    #[error("invalid value `{value}` for configuration key `{key}`")]
    InvalidValue { key: String, value: String },
    #[error("`{key}={value}` is not supported by ferrymq: {why}")]
    Unsupported {
        key: String,
        value: String,
        why: &'static str,
    },
}

/// A RocketMQ key whose other values ferrymq does not implement and which changes what is safe
/// (replication, access control, encryption): a file that asks for one of them must stop
/// start-up rather than run without it.
#[derive(Debug, Clone, Copy)]
pub struct Unsupported {
    pub key: &'static str,
    /// Values that are fine (compared trimmed, ignoring ASCII case); the default among them.
    pub accepted: &'static [&'static str],
    pub why: &'static str,
}

/// Refuses the first pair of `text` that asks for an unsupported value of a `rules` key.
pub fn refuse_unsupported(text: &str, rules: &[Unsupported]) -> Result<(), ConfigError> {
    for (key, value) in parse(text) {
        let Some(rule) = rules.iter().find(|r| r.key == key) else {
            continue;
        };
        if !rule
            .accepted
            .iter()
            .any(|ok| ok.eq_ignore_ascii_case(value.trim()))
        {
            return Err(ConfigError::Unsupported {
                key,
                value,
                why: rule.why,
            });
        }
    }
    Ok(())
}

/// Declares a configuration struct keyed by RocketMQ property names:
/// `field: Type = default => "propertyName"`.
#[macro_export]
macro_rules! properties_struct {
    ($(#[$meta:meta])* pub struct $name:ident {
        $($(#[$fmeta:meta])* $field:ident : $ty:ty = $default:expr => $key:literal),* $(,)?
    }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        pub struct $name {
            $($(#[$fmeta])* pub $field: $ty,)*
        }

        impl Default for $name {
            fn default() -> Self {
                $name { $($field: $default,)* }
            }
        }

        impl $name {
            /// Every property name this struct knows.
            pub const KEYS: &'static [&'static str] = &[$($key),*];

            /// Applies one `key=value`.
            pub fn set(&mut self, key: &str, value: &str) -> Result<(), $crate::java_properties::ConfigError> {
                match key {
                    $($key => {
                        self.$field = <$ty as $crate::java_properties::ConfigValue>::parse_value(value)
                            .ok_or_else(|| $crate::java_properties::ConfigError::InvalidValue {
                                key: key.to_owned(),
                                value: value.to_owned(),
                            })?;
                        Ok(())
                    })*
                    _ => Err($crate::java_properties::ConfigError::UnknownKey(key.to_owned())),
                }
            }

            /// All keys with their current values, in declaration order.
            pub fn to_pairs(&self) -> Vec<(&'static str, String)> {
                vec![$(($key, $crate::java_properties::ConfigValue::render_value(&self.$field)),)*]
            }

            /// Builds a config from properties text: bad values are errors naming the key,
            /// unknown keys are returned for the caller to warn about.
            pub fn from_properties_text(text: &str) -> Result<(Self, Vec<String>), $crate::java_properties::ConfigError> {
                let mut config = Self::default();
                let mut unknown = Vec::new();
                for (k, v) in $crate::java_properties::parse(text) {
                    match config.set(&k, &v) {
                        Ok(()) => {}
                        Err($crate::java_properties::ConfigError::UnknownKey(k)) => unknown.push(k),
                        Err(e) => return Err(e),
                    }
                }
                Ok((config, unknown))
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsupported_values_are_refused_by_name() {
        const RULES: &[Unsupported] = &[Unsupported {
            key: "enableDLegerCommitLog",
            accepted: &["false"],
            why: "no DLedger",
        }];
        assert!(refuse_unsupported("enableDLegerCommitLog = FALSE\n", RULES).is_ok());
        assert!(refuse_unsupported("other=true\n", RULES).is_ok());
        let e = refuse_unsupported("enableDLegerCommitLog=true\n", RULES).unwrap_err();
        assert_eq!(
            e.to_string(),
            "`enableDLegerCommitLog=true` is not supported by ferrymq: no DLedger"
        );
    }

    #[test]
    fn parses_java_properties() {
        let text = "# comment\n! other\nbrokerName = broker-a\nlistenPort:10911\nflag true\n\
                    path=/a\\\n    /b\nunicode=\\u0041x\n  \nempty=\n";
        let pairs = parse(text);
        assert_eq!(
            pairs,
            vec![
                ("brokerName".into(), "broker-a".into()),
                ("listenPort".into(), "10911".into()),
                ("flag".into(), "true".into()),
                ("path".into(), "/a/b".into()),
                ("unicode".into(), "Ax".into()),
                ("empty".into(), "".into()),
            ]
        );
    }

    properties_struct! {
        pub struct Sample {
            name: String = "x".to_owned() => "name",
            port: u16 = 9876 => "listenPort",
            on: bool = false => "enabled",
        }
    }

    #[test]
    fn config_struct_reads_known_and_reports_unknown_keys() {
        let (c, unknown) =
            Sample::from_properties_text("listenPort=1234\nenabled=TRUE\nmystery=1\n").unwrap();
        assert_eq!(c.port, 1234);
        assert!(c.on);
        assert_eq!(c.name, "x");
        assert_eq!(Sample::KEYS, &["name", "listenPort", "enabled"]);
        assert_eq!(unknown, vec!["mystery".to_owned()]);
        let err = Sample::from_properties_text("listenPort=abc").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid value `abc` for configuration key `listenPort`"
        );
        let text = render(c.to_pairs());
        assert_eq!(Sample::from_properties_text(&text).unwrap().0, c);
    }
}
