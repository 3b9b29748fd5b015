//! Tag hash codes and TAG-type subscription expressions.
//!
//! The consume queue stores `String.hashCode()` of a message's TAGS, sign-extended to 64 bits, and
//! the broker filters pulls by comparing that code with the hash codes of the subscribed tags.
//! Both sides must compute exactly Java's hash (over UTF-16 code units), so it lives here.

use std::collections::HashSet;

/// The expression that subscribes to every tag.
pub const SUBSCRIBE_ALL: &str = "*";

/// Java `String.hashCode()`: `h = 31*h + unit` over UTF-16 code units, wrapping in 32 bits.
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16().fold(0i32, |h, unit| {
        h.wrapping_mul(31).wrapping_add(i32::from(unit))
    })
}

/// The consume-queue tag code of a message: the tag's hash sign-extended, 0 without a tag.
pub fn tags_code(tags: Option<&str>) -> i64 {
    match tags {
        Some(t) if !t.is_empty() => i64::from(java_string_hash(t)),
        _ => 0,
    }
}

/// A parsed TAG subscription (Java `SubscriptionData` tagsSet + codeSet).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubscriptionTags {
    /// Exact tags; empty means "every tag" (`*` or an empty expression).
    pub tags: HashSet<String>,
    /// `java_string_hash` of every tag.
    pub codes: HashSet<i32>,
}

impl SubscriptionTags {
    /// Parses `"*"`, `""` or `"TagA || TagB"` (each tag trimmed, empty ones ignored).
    pub fn parse(expression: &str) -> SubscriptionTags {
        let expression = expression.trim();
        let mut parsed = SubscriptionTags::default();
        if expression.is_empty() || expression == SUBSCRIBE_ALL {
            return parsed;
        }
        for tag in expression
            .split("||")
            .map(str::trim)
            .filter(|t| !t.is_empty())
        {
            parsed.codes.insert(java_string_hash(tag));
            parsed.tags.insert(tag.to_owned());
        }
        parsed
    }

    pub fn is_all(&self) -> bool {
        self.tags.is_empty()
    }

    /// The broker-side check against a consume-queue tag code (compared as int32, like Java).
    pub fn matches_code(&self, tags_code: i64) -> bool {
        self.is_all() || self.codes.contains(&(tags_code as i32))
    }

    /// The client-side re-check against the message's exact tag.
    pub fn matches_tag(&self, tag: Option<&str>) -> bool {
        self.is_all() || tag.is_some_and(|t| self.tags.contains(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_hashes() {
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("TagA"), 2598919);
        assert_eq!(java_string_hash("hello"), 99162322);
        // Overflow and sign extension: "polygenelubricants".hashCode() == Integer.MIN_VALUE.
        assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
        assert_eq!(tags_code(Some("polygenelubricants")), i64::from(i32::MIN));
        // Non-BMP characters hash as their surrogate pair: "😀" = 0xD83D 0xDE00.
        assert_eq!(java_string_hash("😀"), 0xD83D * 31 + 0xDE00);
        assert_eq!(tags_code(None), 0);
    }

    #[test]
    fn subscription() {
        let s = SubscriptionTags::parse(" TagA ||TagB|| ");
        assert_eq!(s.tags.len(), 2);
        assert!(s.matches_code(tags_code(Some("TagB"))));
        assert!(!s.matches_code(tags_code(Some("TagC"))));
        assert!(s.matches_tag(Some("TagA")));
        assert!(!s.matches_tag(None));
        assert!(SubscriptionTags::parse("*").is_all());
        assert!(SubscriptionTags::parse("").matches_code(12345));
    }
}
