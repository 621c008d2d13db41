//! Logging set-up shared by every function: JSON lines without ANSI colors (CloudWatch), level
//! from RUST_LOG (default info).

/// Installs the global subscriber once (later calls are no-ops) and names the function for the
/// metrics' `Function` dimension.
pub fn init(function: &'static str) {
    crate::metrics::set_function(function);
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .with_ansi(false)
        .without_time()
        .with_target(false)
        .try_init();
}
