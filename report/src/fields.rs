//! The `key=value` words of a report line, and the numbers in them.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::syntax::ParseError;

/// The `key=value` words of one line, by key. Unknown keys are kept (and ignored by the line
/// types: a newer producer may add fields); a key given twice is an error.
pub(crate) struct Fields<'a> {
    map: BTreeMap<&'a str, &'a str>,
}

impl<'a> Fields<'a> {
    pub(crate) fn parse(words: &'a str) -> Result<Self, ParseError> {
        let mut map = BTreeMap::new();
        for word in words.split_whitespace() {
            let (k, v) = word
                .split_once('=')
                .ok_or_else(|| ParseError::NotKeyValue(word.to_string()))?;
            if map.insert(k, v).is_some() {
                return Err(ParseError::Duplicate(k.to_string()));
            }
        }
        Ok(Self { map })
    }

    pub(crate) fn get(&self, key: &'static str) -> Option<&'a str> {
        self.map.get(key).copied()
    }

    pub(crate) fn req(&self, key: &'static str) -> Result<&'a str, ParseError> {
        self.get(key).ok_or(ParseError::Missing(key))
    }

    /// Field `key` parsed by `f`; `what` says what it should have been.
    pub(crate) fn with<T>(
        &self,
        key: &'static str,
        what: &'static str,
        f: impl FnOnce(&str) -> Option<T>,
    ) -> Result<T, ParseError> {
        let v = self.req(key)?;
        f(v).ok_or_else(|| bad(key, v, what))
    }

    /// A field that may be `-` (none), else parsed by `f`.
    pub(crate) fn dash<T>(
        &self,
        key: &'static str,
        what: &'static str,
        f: impl FnOnce(&str) -> Option<T>,
    ) -> Result<Option<T>, ParseError> {
        match self.req(key)? {
            "-" => Ok(None),
            _ => self.with(key, what, f).map(Some),
        }
    }

    /// A number field (`0x` hex or decimal) that fits `T`.
    pub(crate) fn num<T: TryFrom<u64>>(&self, key: &'static str) -> Result<T, ParseError> {
        self.with(key, "not a number in range", num)
    }
}

/// Prints `Some(x)` as `x` and `None` as `-`.
pub(crate) struct Dash<T>(pub Option<T>);

impl<T: fmt::Display> fmt::Display for Dash<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(x) => x.fmt(f),
            None => f.write_str("-"),
        }
    }
}

/// A CRC printed as `0x` and 8 hex digits.
pub(crate) struct Crc(pub u32);

impl fmt::Display for Crc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#010x}", self.0)
    }
}

/// Prints `items` as `[a,b,...]`.
pub(crate) fn write_bracketed<T: fmt::Display>(f: &mut fmt::Formatter<'_>, items: &[T]) -> fmt::Result {
    f.write_str("[")?;
    for (i, x) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(",")?;
        }
        write!(f, "{x}")?;
    }
    f.write_str("]")
}

/// Parses `[a,b,...]` (`[]` empty); `None` when the brackets are missing.
pub(crate) fn parse_bracketed<T: FromStr<Err = ParseError>>(s: &str) -> Option<Result<Vec<T>, ParseError>> {
    let inner = s.strip_prefix('[')?.strip_suffix(']')?;
    Some(match inner {
        "" => Ok(Vec::new()),
        _ => inner.split(',').map(str::parse).collect(),
    })
}

pub(crate) fn bad(key: &'static str, value: &str, what: &'static str) -> ParseError {
    ParseError::Bad {
        key,
        value: value.to_string(),
        what,
    }
}

/// `0x` followed by hex digits, or decimal digits; nothing else (no sign, no spaces), and it
/// fits `T`.
pub fn num<T: TryFrom<u64>>(s: &str) -> Option<T> {
    let (digits, radix) = match s.strip_prefix("0x") {
        Some(h) => (h, 16),
        None => (s, 10),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    T::try_from(u64::from_str_radix(digits, radix).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_hex_with_0x_or_decimal_and_nothing_else() {
        assert_eq!(num::<u64>("0x1f"), Some(31));
        assert_eq!(num::<u64>("31"), Some(31));
        assert_eq!(num::<u64>("0"), Some(0));
        assert_eq!(num::<u64>("0xffffffffffffffff"), Some(u64::MAX));
        for bad in [
            "",
            "0x",
            "+5",
            "-1",
            "0x+5",
            "1f",
            "0X1f",
            " 1",
            "0x1_0",
            "0x10000000000000000",
        ] {
            assert_eq!(num::<u64>(bad), None, "{bad:?}");
        }
        assert_eq!(num::<u16>("65536"), None);
        assert_eq!(num::<u16>("65535"), Some(65535));
    }

    #[test]
    fn a_key_given_twice_is_an_error() {
        assert!(matches!(Fields::parse("a=1 a=2"), Err(ParseError::Duplicate(k)) if k == "a"));
        assert!(matches!(Fields::parse("a=1 b"), Err(ParseError::NotKeyValue(w)) if w == "b"));
        let f = Fields::parse("a=1 fault=list=src,seg=0").unwrap();
        assert_eq!(f.get("fault"), Some("list=src,seg=0"));
        assert!(matches!(f.req("b"), Err(ParseError::Missing("b"))));
    }
}
