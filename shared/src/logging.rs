//! Logging set-up shared by every function: JSON lines without ANSI colors (CloudWatch), or
//! plain text when the function's logging configuration says `AWS_LAMBDA_LOG_FORMAT=Text`; the
//! level from `RUST_LOG`, else Lambda's `AWS_LAMBDA_LOG_LEVEL`, else info; each line carries the
//! invocation's span (`requestId`, from the Lambda runtime). Report lines stay JSON in both
//! formats (their metrics need it).

/// Installs the global subscriber once (later calls are no-ops) and names the function for the
/// metrics' `Function` dimension.
pub(crate) fn init(function: &'static str) {
    crate::metrics::set_function(function);
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(level(
            std::env::var("AWS_LAMBDA_LOG_LEVEL").ok().as_deref(),
        ))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .without_time()
        .with_target(false);
    let _ = if text_format(std::env::var("AWS_LAMBDA_LOG_FORMAT").ok().as_deref()) {
        builder.try_init()
    } else {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    };
}

/// `AWS_LAMBDA_LOG_FORMAT=Text` (any case) asks for plain lines; JSON otherwise.
fn text_format(lambda: Option<&str>) -> bool {
    lambda.is_some_and(|f| f.eq_ignore_ascii_case("text"))
}

/// `AWS_LAMBDA_LOG_LEVEL` (TRACE, DEBUG, INFO, WARN, ERROR, FATAL) as a filter; info otherwise.
fn level(lambda: Option<&str>) -> &'static str {
    match lambda.map(str::to_ascii_uppercase).as_deref() {
        Some("TRACE") => "trace",
        Some("DEBUG") => "debug",
        Some("WARN") => "warn",
        Some("ERROR" | "FATAL") => "error",
        _ => "info",
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn lambda_log_levels_map_to_filters() {
        for (given, filter) in [
            (Some("DEBUG"), "debug"),
            (Some("warn"), "warn"),
            (Some("FATAL"), "error"),
            (Some("TRACE"), "trace"),
            (Some("loud"), "info"),
            (None, "info"),
        ] {
            assert_eq!(super::level(given), filter, "{given:?}");
        }
        assert!(super::text_format(Some("Text")) && super::text_format(Some("TEXT")));
        assert!(!super::text_format(Some("JSON")) && !super::text_format(None));
    }
}
