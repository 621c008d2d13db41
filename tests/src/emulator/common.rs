//! Pieces shared by the emulated services: errors in the AWS JSON 1.1 shape, request field
//! access with AWS-style validation messages, ids, time and pagination.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use sha2::{Digest, Sha256};

/// An AWS JSON 1.1 error: HTTP status, `__type` code and message.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl ApiError {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            status: 400,
            code: code.to_string(),
            message: message.into(),
        }
    }
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new("ValidationException", message)
    }
    pub fn invalid_parameter(message: impl Into<String>) -> Self {
        Self::new("InvalidParameterValueException", message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new("ResourceNotFoundException", message)
    }
    pub fn access_denied(message: impl Into<String>) -> Self {
        Self::new("AccessDeniedException", message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new("ServerInternalException", message).with_status(500)
    }
}

/// The emulated service a request is addressed to; it decides some error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    LicenseManager,
    ServiceCatalog,
}

impl Service {
    pub fn name(self) -> &'static str {
        match self {
            Service::LicenseManager => "license-manager",
            Service::ServiceCatalog => "servicecatalog",
        }
    }
    /// Error code for malformed or missing input.
    pub fn validation_code(self) -> &'static str {
        match self {
            Service::LicenseManager => "ValidationException",
            Service::ServiceCatalog => "InvalidParametersException",
        }
    }
    pub fn throttling_error(self) -> ApiError {
        match self {
            Service::LicenseManager => ApiError::new("RateLimitExceededException", "Rate exceeded"),
            Service::ServiceCatalog => ApiError::new("ThrottlingException", "Rate exceeded"),
        }
    }
    pub fn internal_error(self) -> ApiError {
        match self {
            Service::LicenseManager => ApiError::internal("An internal error occurred"),
            Service::ServiceCatalog => {
                ApiError::new("InternalFailure", "An internal error occurred").with_status(500)
            }
        }
    }
}

/// Read access to a JSON request body with AWS-style validation errors.
pub struct Input<'a> {
    pub body: &'a Value,
    pub service: Service,
}

fn lower_camel(name: &str) -> String {
    let mut chars = name.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

impl<'a> Input<'a> {
    pub fn new(body: &'a Value, service: Service) -> Self {
        Self { body, service }
    }

    fn invalid(&self, message: String) -> ApiError {
        ApiError::new(self.service.validation_code(), message)
    }

    pub fn missing(&self, field: &str) -> ApiError {
        self.invalid(format!(
            "1 validation error detected: Value null at '{}' failed to satisfy constraint: \
             Member must not be null",
            lower_camel(field)
        ))
    }

    pub fn get(&self, field: &str) -> Option<&'a Value> {
        self.body.get(field).filter(|v| !v.is_null())
    }

    pub fn str_opt(&self, field: &str) -> Result<Option<&'a str>, ApiError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(self.invalid(format!("'{}' must be a string", lower_camel(field)))),
        }
    }

    pub fn str_req(&self, field: &str) -> Result<&'a str, ApiError> {
        match self.str_opt(field)? {
            Some(s) if !s.is_empty() => Ok(s),
            _ => Err(self.missing(field)),
        }
    }

    pub fn bool_opt(&self, field: &str) -> Result<Option<bool>, ApiError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(self.invalid(format!("'{}' must be a boolean", lower_camel(field)))),
        }
    }

    pub fn int_opt(&self, field: &str) -> Result<Option<i64>, ApiError> {
        match self.get(field) {
            None => Ok(None),
            Some(v) => v.as_i64().map(Some).ok_or_else(|| {
                self.invalid(format!("'{}' must be an integer", lower_camel(field)))
            }),
        }
    }

    pub fn list_opt(&self, field: &str) -> Result<Option<&'a Vec<Value>>, ApiError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Array(items)) => Ok(Some(items)),
            Some(_) => Err(self.invalid(format!("'{}' must be a list", lower_camel(field)))),
        }
    }

    pub fn string_list_opt(&self, field: &str) -> Result<Option<Vec<&'a str>>, ApiError> {
        let Some(items) = self.list_opt(field)? else {
            return Ok(None);
        };
        items
            .iter()
            .map(|v| {
                v.as_str().ok_or_else(|| {
                    self.invalid(format!(
                        "'{}' must be a list of strings",
                        lower_camel(field)
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    pub fn object_opt(&self, field: &str) -> Result<Option<Input<'a>>, ApiError> {
        match self.get(field) {
            None => Ok(None),
            Some(v @ Value::Object(_)) => Ok(Some(Input::new(v, self.service))),
            Some(_) => Err(self.invalid(format!("'{}' must be a structure", lower_camel(field)))),
        }
    }
}

/// Generates unique, unpredictable-looking ids (hex digests of a per-process nonce and a
/// counter), so ARNs look like AWS's without a random number generator.
#[derive(Debug)]
pub struct IdGen {
    nonce: u128,
    seq: u64,
}

impl IdGen {
    pub fn new() -> Self {
        let nonce = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
            ^ u128::from(std::process::id());
        Self { nonce, seq: 0 }
    }

    /// `len` lowercase hex characters (at most 64).
    pub fn hex(&mut self, len: usize) -> String {
        self.seq += 1;
        let digest = Sha256::digest(format!("{}-{}", self.nonce, self.seq).as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        hex[..len.min(hex.len())].to_string()
    }

    /// `len` lowercase alphanumeric characters.
    pub fn alnum(&mut self, len: usize) -> String {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        self.seq += 1;
        let digest = Sha256::digest(format!("{}-{}-alnum", self.nonce, self.seq).as_bytes());
        digest
            .iter()
            .cycle()
            .take(len)
            .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
            .collect()
    }

    /// A 12-digit account id that does not start with 0.
    pub fn account_id(&mut self) -> String {
        self.seq += 1;
        let digest = Sha256::digest(format!("{}-{}-acct", self.nonce, self.seq).as_bytes());
        let mut n = 0u64;
        for b in &digest[..8] {
            n = (n << 8) | u64::from(*b);
        }
        format!("{}", 100_000_000_000 + n % 900_000_000_000)
    }

    pub fn request_id(&mut self) -> String {
        let h = self.hex(32);
        format!(
            "{}-{}-{}-{}-{}",
            &h[..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )
    }
}

/// The emulator's clock: real time plus an offset that tests can advance.
#[derive(Debug, Default)]
pub struct Clock {
    offset: std::sync::Mutex<Duration>,
}

impl Clock {
    fn offset(&self) -> Duration {
        *self.offset.lock().unwrap_or_else(|e| e.into_inner())
    }
    pub fn now(&self) -> Instant {
        Instant::now() + self.offset()
    }
    pub fn epoch_ms(&self) -> u64 {
        let now = SystemTime::now() + self.offset();
        now.duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or_default()
    }
    pub fn advance(&self, by: Duration) -> Duration {
        let mut offset = self.offset.lock().unwrap_or_else(|e| e.into_inner());
        *offset += by;
        *offset
    }
    pub fn reset(&self) {
        *self.offset.lock().unwrap_or_else(|e| e.into_inner()) = Duration::ZERO;
    }
}

/// `YYYY-MM-DDTHH:MM:SS` (UTC) for seconds since the epoch.
pub fn iso8601_parts(epoch_secs: u64) -> (i64, u32, u32, u64, u64, u64) {
    let days = i64::try_from(epoch_secs / 86_400).unwrap_or_default();
    let secs = epoch_secs % 86_400;
    // Civil-from-days (proleptic Gregorian), after H. Hinnant's well-known algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let month = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        month,
        day,
        secs / 3_600,
        (secs % 3_600) / 60,
        secs % 60,
    )
}

/// `2026-01-01T00:00:00.000Z`
pub fn iso8601_millis(epoch_ms: u64) -> String {
    let (y, mo, d, h, mi, s) = iso8601_parts(epoch_ms / 1000);
    format!(
        "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:03}Z",
        epoch_ms % 1000
    )
}

/// EventBridge's `time` style (RFC 3339, UTC, whole seconds): `2026-01-01T00:00:00Z`.
pub fn eventbridge_time(epoch_ms: u64) -> String {
    let (y, mo, d, h, mi, s) = iso8601_parts(epoch_ms / 1000);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// Control Tower's event timestamp style: `2019-11-16T12:09:32+0000`.
pub fn control_tower_time(epoch_ms: u64) -> String {
    let (y, mo, d, h, mi, s) = iso8601_parts(epoch_ms / 1000);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}+0000")
}

/// JSON 1.1 timestamps are epoch seconds as a number.
pub fn epoch_seconds(epoch_ms: u64) -> Value {
    serde_json::json!(epoch_ms as f64 / 1000.0)
}

/// Splits `items` into one page. Tokens are opaque to callers (`"nt-<offset>"`).
pub fn paginate<T>(
    items: Vec<T>,
    max_results: Option<i64>,
    next_token: Option<&str>,
    default_page_size: usize,
    max_page_size: usize,
    service: Service,
) -> Result<(Vec<T>, Option<String>), ApiError> {
    let page_size = match max_results {
        None => default_page_size.max(1),
        Some(n) if n >= 1 && usize::try_from(n).is_ok_and(|n| n <= max_page_size) => {
            usize::try_from(n).unwrap_or(1)
        }
        Some(n) => {
            return Err(ApiError::new(
                service.validation_code(),
                format!(
                    "1 validation error detected: Value '{n}' at 'maxResults' failed to satisfy \
                     constraint: Member must have value between 1 and {max_page_size}"
                ),
            ))
        }
    };
    let start = match next_token {
        None => 0,
        Some(token) => token
            .strip_prefix("nt-")
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|n| *n <= items.len())
            .ok_or_else(|| ApiError::new(service.validation_code(), "Invalid NextToken"))?,
    };
    let end = (start + page_size).min(items.len());
    let next = (end < items.len()).then(|| format!("nt-{end}"));
    let page = items.into_iter().skip(start).take(end - start).collect();
    Ok((page, next))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn iso8601_known_dates() {
        assert_eq!(iso8601_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            iso8601_millis(1_573_906_172_000),
            "2019-11-16T12:09:32.000Z"
        );
        assert_eq!(
            control_tower_time(951_782_400_000),
            "2000-02-29T00:00:00+0000"
        );
        assert_eq!(eventbridge_time(1_573_906_172_999), "2019-11-16T12:09:32Z");
    }

    #[test]
    fn pagination_walks_all_items() {
        let items: Vec<u32> = (0..5).collect();
        let svc = Service::LicenseManager;
        let (p1, t1) = paginate(items.clone(), Some(2), None, 100, 100, svc).unwrap();
        assert_eq!(p1, vec![0, 1]);
        let (p2, t2) = paginate(items.clone(), Some(2), t1.as_deref(), 100, 100, svc).unwrap();
        assert_eq!(p2, vec![2, 3]);
        let (p3, t3) = paginate(items.clone(), Some(2), t2.as_deref(), 100, 100, svc).unwrap();
        assert_eq!(p3, vec![4]);
        assert_eq!(t3, None);
        assert!(paginate(items.clone(), Some(101), None, 100, 100, svc).is_err());
        assert!(paginate(items, None, Some("garbage"), 100, 100, svc).is_err());
    }

    #[test]
    fn ids_are_unique_and_shaped() {
        let mut ids = IdGen::new();
        let a = ids.hex(32);
        let b = ids.hex(32);
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        let acct = ids.account_id();
        assert_eq!(acct.len(), 12);
        assert!(acct.chars().all(|c| c.is_ascii_digit()));
    }
}
