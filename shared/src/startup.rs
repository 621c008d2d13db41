//! What a deciding function does at cold start: its configuration, from the environment and,
//! when `CONFIG_DOCUMENT` names one, the configuration document's pinned version, read once (a
//! pinned version never changes, so the container never reads it again; a new document comes
//! with a deploy, which replaces the containers). The parsing is `config`'s, pure; this module
//! only adds the read.

use crate::config::{begin_load, finish_load, Config, Loading};
use crate::error::Error;

/// Loads a deciding function's configuration (a license selection is required).
///
/// Every setting the environment holds is checked before the document is read: a bad setting,
/// or a selection set both ways, fails without any AWS call. A document S3 refuses to give is
/// an [`Error::Aws`] (`s3:GetObjectVersion`, with S3's code, `AccessDenied` for one); a
/// document that does not parse is an [`Error::Config`] naming the field.
pub async fn load(
    lookup: impl Fn(&str) -> Option<String>,
    sdk: &aws_config::SdkConfig,
) -> Result<Config, Error> {
    load_with(lookup, sdk, true).await
}

/// [`load`] for functions whose requests name their own licenses (no selection required).
pub async fn load_per_request(
    lookup: impl Fn(&str) -> Option<String>,
    sdk: &aws_config::SdkConfig,
) -> Result<Config, Error> {
    load_with(lookup, sdk, false).await
}

async fn load_with(
    lookup: impl Fn(&str) -> Option<String>,
    sdk: &aws_config::SdkConfig,
    require_selection: bool,
) -> Result<Config, Error> {
    let source = match begin_load(&lookup, require_selection)? {
        Loading::Ready(config) => return Ok(*config),
        Loading::NeedsDocument(source) => source,
    };
    let s3 = aws_sdk_s3::Client::new(sdk);
    let text = crate::aws::read_document(&s3, &source, &crate::report::CallLog::default()).await?;
    let (config, document) = finish_load(&lookup, require_selection, &text)?;
    tracing::info!(
        document = %source.url(),
        version = %source.version_id,
        summary = ?document.summary(),
        "configuration document read"
    );
    Ok(config)
}
