//! Amazon S3: one read, the pinned version of the configuration document.

use crate::config::document::MAX_DOCUMENT_BYTES;
use crate::config::DocumentSource;
use crate::error::{aws_error, echo, Error, Retry};
use crate::report::{CallLog, Side};

/// Reads `source`'s version of the document as UTF-8 text. Reading a given version needs
/// `s3:GetObjectVersion` (not `s3:GetObject`). S3's refusals keep S3's code
/// (`AccessDenied`, `NoSuchKey`, `NoSuchVersion`, …); a bucket in another region than the
/// function is named as such.
pub async fn read_document(
    s3: &aws_sdk_s3::Client,
    source: &DocumentSource,
    calls: &CallLog,
) -> Result<String, Error> {
    calls.record(Side::Own, "s3:GetObjectVersion", false);
    let out = s3
        .get_object()
        .bucket(&source.bucket)
        .key(&source.key)
        .version_id(&source.version_id)
        .send()
        .await
        .map_err(|e| in_context(aws_error("s3", "GetObject", e), source))?;
    if out.version_id() != Some(source.version_id.as_str()) {
        return Err(Error::Config(format!(
            "{}: S3 answered version {} for version {}: the bucket must have versioning turned on",
            source.url(),
            echo(out.version_id().unwrap_or("(none)")),
            echo(&source.version_id)
        )));
    }
    let length = out.content_length().unwrap_or_default();
    if usize::try_from(length).map_or(true, |n| n > MAX_DOCUMENT_BYTES) {
        return Err(Error::Config(format!(
            "{}: {length} bytes, over the {MAX_DOCUMENT_BYTES} bytes read",
            source.url()
        )));
    }
    let bytes = out
        .body
        .collect()
        .await
        .map_err(|e| Error::Aws {
            service: "s3",
            operation: "GetObject",
            code: "ResponseError".to_string(),
            message: format!("the document's body could not be read: {e}"),
            retry: Retry::Retryable,
        })?
        .into_bytes();
    String::from_utf8(bytes.to_vec()).map_err(|_| {
        Error::Config(format!(
            "{} (version {}): not UTF-8 text",
            source.url(),
            echo(&source.version_id)
        ))
    })
}

/// Names the document in S3's refusal, and the cause of the refusals with a known one.
fn in_context(err: Error, source: &DocumentSource) -> Error {
    match err {
        Error::Aws {
            service,
            operation,
            code,
            message,
            retry,
        } => {
            let hint = match code.as_str() {
                "PermanentRedirect" | "AuthorizationHeaderMalformed" | "IllegalLocationConstraintException" => {
                    ": the bucket must be in the stack's region"
                }
                "AccessDenied" => ": the function's role may read exactly this object's versions (s3:GetObjectVersion); a bucket policy or a customer managed KMS key must allow it too",
                "NoSuchVersion" | "InvalidArgument" => ": no such version of the object",
                _ => "",
            };
            Error::Aws {
                service,
                operation,
                message: format!(
                    "{} (version {}): {message}{hint}",
                    source.url(),
                    echo(&source.version_id)
                ),
                code,
                retry,
            }
        }
        other => other,
    }
}
