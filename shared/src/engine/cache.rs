//! What one container reads once, or reuses for a short while, across the accounts it works:
//! the organization, the held licenses, the OU tree, the organization/OU grants.

use super::Engine;
use crate::aws::{self, GrantView, HeldLicense, OrgInfo};
use crate::error::Error;
use crate::report::CallLog;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long the list of held licenses, and the organization/OU grants, are reused across
/// accounts of one container.
const HELD_LICENSES_TTL: Duration = Duration::from_secs(60);

/// The deepest OU nesting Organizations allows is 5 levels; guard the ancestor walk with it.
const MAX_OU_DEPTH: usize = 5;

impl Engine {
    /// The OU ids above an account, nearest first (its own OU, then that OU's parents up to
    /// the root). Each OU's parent is read once per container.
    pub(super) async fn ancestor_ous(
        &self,
        ou: Option<&str>,
        calls: &CallLog,
    ) -> Result<Vec<String>, Error> {
        let mut out: Vec<String> = Vec::new();
        let mut next = ou.map(str::to_string);
        while let Some(current) = next {
            if out.contains(&current) || out.len() > MAX_OU_DEPTH {
                break;
            }
            out.push(current.clone());
            let cached = self.ou_parents.lock().await.get(&current).cloned();
            next = match cached {
                Some(parent) => parent,
                None => {
                    let parent =
                        aws::parent_ou(&self.clients.organizations, &current, calls).await?;
                    self.ou_parents
                        .lock()
                        .await
                        .insert(current.clone(), parent.clone());
                    parent
                }
            };
        }
        Ok(out)
    }

    /// Grants the management account distributed to these organization/OU principals (every
    /// license), from a short-lived per-container cache.
    pub(super) async fn covering_grants(
        &self,
        principals: &[String],
        calls: &CallLog,
    ) -> Result<Vec<GrantView>, Error> {
        self.read_covering(principals, false, calls).await
    }

    /// The grants to `principals`, from the cache unless `fresh`; what is read is cached.
    async fn read_covering(
        &self,
        principals: &[String],
        fresh: bool,
        calls: &CallLog,
    ) -> Result<Vec<GrantView>, Error> {
        let reads = principals.iter().map(|principal| async move {
            let cached = self
                .principal_grants
                .lock()
                .await
                .get(principal)
                .filter(|(at, _)| !fresh && at.elapsed() < HELD_LICENSES_TTL)
                .map(|(_, grants)| grants.clone());
            if let Some(grants) = cached {
                return Ok::<_, Error>(grants);
            }
            let grants = Arc::new(
                aws::grants_to_principal(&self.clients.license_manager, principal, calls).await?,
            );
            self.principal_grants
                .lock()
                .await
                .insert(principal.clone(), (Instant::now(), grants.clone()));
            Ok(grants)
        });
        let lists = futures::future::try_join_all(reads).await?;
        Ok(lists.iter().flat_map(|l| l.iter().cloned()).collect())
    }

    /// [`Engine::covering_grants`], read now (the cache refreshed with what was read).
    pub(super) async fn covering_grants_fresh(
        &self,
        principals: &[String],
        calls: &CallLog,
    ) -> Result<Vec<GrantView>, Error> {
        self.read_covering(principals, true, calls).await
    }

    pub(super) async fn org_info(&self, calls: &CallLog) -> Result<OrgInfo, Error> {
        self.org
            .get_or_try_init(|| aws::describe_organization(&self.clients.organizations, calls))
            .await
            .cloned()
    }

    pub(super) async fn held_licenses(
        &self,
        calls: &CallLog,
    ) -> Result<Arc<Vec<HeldLicense>>, Error> {
        let mut cache = self.held.lock().await;
        if let Some((at, held)) = cache.as_ref() {
            if at.elapsed() < HELD_LICENSES_TTL {
                return Ok(held.clone());
            }
        }
        let held = Arc::new(aws::marketplace_licenses(&self.clients.license_manager, calls).await?);
        *cache = Some((Instant::now(), held.clone()));
        Ok(held)
    }
}
