//! Deterministic client tokens: a retried or duplicated write is the same write.

use crate::ids::AccountId;
use sha2::{Digest, Sha256};

/// Deterministic `ClientToken` for CreateGrant: the same account, license and generation always
/// give the same token, so a retried or duplicated create cannot make a second grant; the
/// replacement of a rejected or deleted grant has a higher generation, so a new token.
pub fn grant_client_token(account: &AccountId, license_arn: &str, generation: usize) -> String {
    token(&format!(
        "create-grant|{account}|{license_arn}|{generation}"
    ))
}

/// Deterministic `ClientToken` for an activation of one grant version.
pub(crate) fn activation_client_token(grant_arn: &str, source_version: &str) -> String {
    token(&format!("activate|{grant_arn}|{source_version}"))
}

pub(super) fn token(seed: &str) -> String {
    let digest = Sha256::digest(seed.as_bytes());
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("cte-{hex}")
}
