//! Typed request/response headers: views over a command's extFields map.
//!
//! On the wire every header field is a string; Java parses them with `parseInt`, `parseLong`
//! and a lenient `parseBoolean`. [`HeaderField`] mirrors those rules, and the
//! [`command_header!`] macro declares a header once — field, type, wire name — so the reader and
//! the writer cannot drift apart. Required fields are plain types (missing ⇒ error); optional
//! ones are `Option<T>`.

mod broker;
mod controller;
mod namesrv;
mod pop;

pub use broker::*;
pub use controller::*;
pub use namesrv::*;
pub use pop::*;

use crate::command::ExtFields;

/// Why a header could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("the header field `{0}` is missing")]
    Missing(&'static str),
    #[error("the header field `{key}` has an invalid value `{value}`")]
    Invalid { key: &'static str, value: String },
}

/// A typed header that reads from and writes to extFields.
pub trait CommandHeader: Sized {
    fn write(&self, ext: &mut ExtFields);
    fn read(ext: &ExtFields) -> Result<Self, HeaderError>;
}

/// One header field type and its string form on the wire.
pub trait HeaderField: Sized {
    fn read_field(ext: &ExtFields, key: &'static str) -> Result<Self, HeaderError>;
    fn write_field(&self, ext: &mut ExtFields, key: &'static str);
}

/// Scalar types with a string form; `T` is required, `Option<T>` optional.
pub trait FieldValue: Sized {
    fn parse(s: &str) -> Option<Self>;
    fn render(&self) -> String;
}

impl FieldValue for String {
    fn parse(s: &str) -> Option<Self> {
        Some(s.to_owned())
    }
    fn render(&self) -> String {
        self.clone()
    }
}

macro_rules! numeric_field {
    ($($t:ty),*) => {$(
        impl FieldValue for $t {
            fn parse(s: &str) -> Option<Self> {
                s.trim().parse().ok()
            }
            fn render(&self) -> String {
                self.to_string()
            }
        }
    )*};
}
numeric_field!(i32, i64, u32, u64);

impl FieldValue for bool {
    /// Java's `Boolean.parseBoolean` is true only for "true" (any case); C++ cores also send
    /// "1", so that counts as true too. Anything else is false, never an error.
    fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        Some(s.eq_ignore_ascii_case("true") || s == "1")
    }
    fn render(&self) -> String {
        self.to_string()
    }
}

impl<T: FieldValue> HeaderField for T {
    fn read_field(ext: &ExtFields, key: &'static str) -> Result<Self, HeaderError> {
        let raw = ext.get(key).ok_or(HeaderError::Missing(key))?;
        T::parse(raw).ok_or_else(|| HeaderError::Invalid {
            key,
            value: raw.to_owned(),
        })
    }
    fn write_field(&self, ext: &mut ExtFields, key: &'static str) {
        ext.insert(key, self.render());
    }
}

impl<T: FieldValue> HeaderField for Option<T> {
    /// An empty optional value is treated as absent: clients send `""` for unset strings.
    fn read_field(ext: &ExtFields, key: &'static str) -> Result<Self, HeaderError> {
        match ext.get(key) {
            None => Ok(None),
            Some("") => Ok(None),
            Some(raw) => T::parse(raw).map(Some).ok_or_else(|| HeaderError::Invalid {
                key,
                value: raw.to_owned(),
            }),
        }
    }
    fn write_field(&self, ext: &mut ExtFields, key: &'static str) {
        if let Some(v) = self {
            ext.insert(key, v.render());
        }
    }
}

/// Declares a typed header: `field: Type => "wireName"`.
#[macro_export]
macro_rules! command_header {
    ($(#[$meta:meta])* pub struct $name:ident {
        $($(#[$fmeta:meta])* $field:ident : $ty:ty => $key:literal),* $(,)?
    }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        pub struct $name {
            $($(#[$fmeta])* pub $field: $ty,)*
        }

        impl $crate::header::CommandHeader for $name {
            fn write(&self, ext: &mut $crate::command::ExtFields) {
                $($crate::header::HeaderField::write_field(&self.$field, ext, $key);)*
            }
            #[allow(unused_variables)]
            fn read(ext: &$crate::command::ExtFields) -> Result<Self, $crate::header::HeaderError> {
                Ok($name {
                    $($field: <$ty as $crate::header::HeaderField>::read_field(ext, $key)?,)*
                })
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    command_header! {
        pub struct Sample {
            name: String => "name",
            count: i32 => "count",
            big: i64 => "big",
            on: bool => "on",
            maybe: Option<i64> => "maybe",
        }
    }

    #[test]
    fn round_trip_and_errors() {
        let h = Sample {
            name: "x".into(),
            count: -3,
            big: 1 << 40,
            on: true,
            maybe: None,
        };
        let mut ext = ExtFields::new();
        h.write(&mut ext);
        assert_eq!(ext.get("maybe"), None);
        assert_eq!(Sample::read(&ext).unwrap(), h);

        ext.insert("count", "abc");
        assert_eq!(
            Sample::read(&ext),
            Err(HeaderError::Invalid {
                key: "count",
                value: "abc".into()
            })
        );
        ext.remove("count");
        assert_eq!(Sample::read(&ext), Err(HeaderError::Missing("count")));
    }

    #[test]
    fn booleans_are_lenient() {
        for (raw, want) in [
            ("TRUE", true),
            ("1", true),
            ("false", false),
            ("yes", false),
        ] {
            assert_eq!(bool::parse(raw), Some(want), "{raw}");
        }
    }

    #[test]
    fn empty_optional_is_absent() {
        let ext: ExtFields = [("maybe", "")].into_iter().collect();
        assert_eq!(Option::<i64>::read_field(&ext, "maybe"), Ok(None));
    }
}
