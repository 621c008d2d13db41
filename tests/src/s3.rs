//! S3 in the local world (moto): a client, buckets with or without versioning, and objects put
//! with the version id S3 gave them. The configuration document lives there.

use crate::World;
use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};

/// An S3 client for moto; path-style addressing (moto serves one host, not one per bucket).
pub fn client(world: &World) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(world.sdk_config())
            .endpoint_url(world.moto_url())
            .force_path_style(true)
            .build(),
    )
}

/// Creates bucket `name`, with versioning enabled when `versioned`.
pub async fn bucket(
    s3: &aws_sdk_s3::Client,
    name: &str,
    versioned: bool,
) -> Result<(), aws_sdk_s3::Error> {
    s3.create_bucket().bucket(name).send().await?;
    if versioned {
        s3.put_bucket_versioning()
            .bucket(name)
            .versioning_configuration(
                VersioningConfiguration::builder()
                    .status(BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
            .await?;
    }
    Ok(())
}

/// Puts `text` at `bucket`/`key`; the version id S3 gave it (none in an unversioned bucket).
pub async fn put(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    text: &str,
) -> Result<Option<String>, aws_sdk_s3::Error> {
    let out = s3
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(text.as_bytes().to_vec().into())
        .send()
        .await?;
    Ok(out.version_id().map(str::to_string))
}
