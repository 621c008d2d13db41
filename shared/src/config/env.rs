//! Reading the environment: the lookup every setting goes through, and the parsers of the value
//! shapes several settings share (lists, booleans, bounded numbers, queue URLs).

use crate::error::{echo, Error};

/// The environment as configuration reads it (the process environment in production, a map in
/// tests).
pub(super) struct Env<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
}

impl<'a> Env<'a> {
    pub(super) fn new(lookup: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Env { lookup }
    }

    /// The variable's value, trimmed; `None` when it is unset or blank.
    pub(super) fn get(&self, var: &str) -> Option<String> {
        (self.lookup)(var)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    /// The lookup itself, for readers that take their own variables
    /// ([`crate::ids::partition_from`]).
    pub(super) fn lookup(&self) -> &'a dyn Fn(&str) -> Option<String> {
        self.lookup
    }
}

/// The items of a list setting, separated by commas or whitespace (none when unset).
pub(super) fn split_list(raw: Option<&str>) -> impl Iterator<Item = &str> {
    raw.unwrap_or_default()
        .split(|c: char| c == ',' || c.is_whitespace())
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// Parses a true/false setting named `var` (also 1/0, yes/no); `None` gives `default`.
pub fn parse_bool(raw: Option<&str>, var: &str, default: bool) -> Result<bool, Error> {
    match raw.map(str::to_ascii_lowercase).as_deref() {
        None => Ok(default),
        Some("true" | "1" | "yes") => Ok(true),
        Some("false" | "0" | "no") => Ok(false),
        Some(other) => Err(Error::Config(format!(
            "{var}: {} must be true or false",
            echo(other)
        ))),
    }
}

/// An optional queue URL setting: absent, or an `http(s)://` URL (the error names `var`).
pub(crate) fn parse_queue_url(raw: Option<String>, var: &str) -> Result<Option<String>, Error> {
    match raw {
        Some(url) if !(url.starts_with("https://") || url.starts_with("http://")) => Err(
            Error::Config(format!("{var}: {} is not a queue URL", echo(&url))),
        ),
        other => Ok(other),
    }
}

/// Parses a whole-number setting named `var` within `min..=max`; `None` gives `default`.
pub fn parse_num(
    raw: Option<String>,
    var: &str,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64, Error> {
    let Some(raw) = raw else { return Ok(default) };
    match raw.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(Error::Config(format!(
            "{var}: {} must be a whole number from {min} to {max}",
            echo(&raw)
        ))),
    }
}
