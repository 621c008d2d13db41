//! Logging set-up shared by every function: JSON lines without ANSI colors (CloudWatch); the
//! level from `RUST_LOG`, else Lambda's `AWS_LAMBDA_LOG_LEVEL` (the function's logging
//! configuration), else info; each line carries the invocation's span (`requestId`, from the
//! Lambda runtime).

/// Installs the global subscriber once (later calls are no-ops) and names the function for the
/// metrics' `Function` dimension.
pub fn init(function: &'static str) {
    crate::metrics::set_function(function);
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(level(
            std::env::var("AWS_LAMBDA_LOG_LEVEL").ok().as_deref(),
        ))
    });
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        .with_ansi(false)
        .without_time()
        .with_target(false)
        .try_init();
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
    }
}
