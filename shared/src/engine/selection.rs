//! Which licenses the configuration selects for an account: scope (`TARGET_OUS`,
//! `ACCOUNT_TAG_FILTER`), OU rules or the global selection, the licenses tag, and the `ou`-mode
//! licenses inherited from the OU rules above a nested OU.

use super::Engine;
use crate::aws::{self, HeldLicense};
use crate::config::{LicenseRef, Selection};
use crate::error::Error;
use crate::ids::AccountId;
use crate::report::CallLog;

/// What the selection asks for one account (see [`Engine::wanted`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wanted {
    /// Excluded by `TARGET_OUS` or `ACCOUNT_TAG_FILTER`.
    Skip(String),
    /// These licenses (ARNs); selections that matched no held license apart.
    Licenses {
        arns: Vec<String>,
        unmatched: Vec<String>,
    },
    /// The selection could not be read (a bad licenses tag): the account's own run reports it.
    Unknown(String),
}

/// One selected entry: a configured reference, or "all Marketplace licenses".
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Selected {
    All,
    Ref(LicenseRef),
}

impl std::fmt::Display for Selected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Selected::All => f.write_str("ALL_MARKETPLACE_LICENSES"),
            Selected::Ref(r) => r.fmt(f),
        }
    }
}

impl Engine {
    /// Why an account is outside the configured scope, if it is.
    pub(super) fn excluded(
        &self,
        ou_id: &Option<String>,
        tags: &[(String, String)],
    ) -> Option<String> {
        if !self.config.target_ous.is_empty()
            && !ou_id
                .as_ref()
                .is_some_and(|ou| self.config.target_ous.contains(ou))
        {
            return Some(format!(
                "account's OU {} is not in TARGET_OUS",
                ou_id.as_deref().unwrap_or("(root)")
            ));
        }
        if let Some((key, value)) = &self.config.account_tag_filter {
            if !tags.iter().any(|(k, v)| k == key && v == value) {
                return Some(format!(
                    "account lacks the tag {key}={value} (ACCOUNT_TAG_FILTER)"
                ));
            }
        }
        None
    }

    /// Whether any setting selects accounts or licenses by account tag.
    pub(crate) fn reads_tags(&self) -> bool {
        self.config.account_tag_filter.is_some() || self.config.licenses_tag_key.is_some()
    }

    /// What the configured selection asks for `account` (a product launch asking for a
    /// license is bounded by it): its OU (ListParents) and, when a rule reads them, its tags.
    pub async fn selection_of(&self, account: &AccountId) -> Result<Wanted, Error> {
        let calls = CallLog::default();
        let hints = aws::MemberHints {
            ou_id: None,
            skip_tags: !self.reads_tags(),
        };
        let (member, held) = futures::try_join!(
            aws::describe_member(&self.clients.organizations, account, hints, &calls),
            self.held_licenses(&calls),
        )?;
        let ancestors = self.inherited_from(&member.ou_id, &calls).await?;
        Ok(self.wanted(&member.ou_id, &ancestors, &member.tags, &held))
    }

    /// The account's selection and the organization/OU grants that cover it (the OUs above
    /// it included, from the container's cache): what the grantor-side listings weigh its own
    /// grants against ([`crate::reconcile::settled`]). The organization's grants alone would
    /// miss an OU-mode parent, and call a repair under it "to replace".
    pub(crate) async fn selection_and_covering(
        &self,
        org: &crate::aws::OrgInfo,
        account: &AccountId,
        calls: &CallLog,
    ) -> Result<(Wanted, Vec<crate::aws::GrantView>), Error> {
        let hints = aws::MemberHints {
            ou_id: None,
            skip_tags: !self.reads_tags(),
        };
        let (member, held) = futures::try_join!(
            aws::describe_member(&self.clients.organizations, account, hints, calls),
            self.held_licenses(calls),
        )?;
        let (ancestors, (_, covering)) = futures::try_join!(
            self.inherited_from(&member.ou_id, calls),
            self.covering_side(org, &member, calls),
        )?;
        Ok((
            self.wanted(&member.ou_id, &ancestors, &member.tags, &held),
            covering,
        ))
    }

    /// Whether an account in a nested OU can inherit licenses from the OU rules above it: some
    /// license is distributed in `ou` mode. Its OU grant reaches the nested OUs' accounts under
    /// one reading of AWS's guide (undocumented: `ouGrantsReachNestedOus`), so they are selected
    /// for it under every reading (a repair grants it where the OU grant does not reach).
    pub(crate) fn inherits_ou_rules(&self) -> bool {
        !self.config.ou_rules.is_empty()
            && self
                .config
                .distribution
                .values()
                .any(|m| m.parents_per_ou())
    }

    /// The OUs above `ou` (its parents up to the root, nearest first; not `ou` itself) whose
    /// `ou`-mode licenses an account in `ou` inherits; none (and no call) when nothing can be
    /// inherited. Each OU's parent is read once per container.
    pub(crate) async fn inherited_from(
        &self,
        ou: &Option<String>,
        calls: &CallLog,
    ) -> Result<Vec<String>, Error> {
        if !self.inherits_ou_rules() {
            return Ok(Vec::new());
        }
        let mut chain = self.ancestor_ous(ou.as_deref(), calls).await?;
        if !chain.is_empty() {
            chain.remove(0);
        }
        Ok(chain)
    }

    /// The `ou`-mode licenses the OU rules of `ancestors` name (an account in a nested OU holds
    /// them as the accounts directly in those OUs do).
    pub(super) fn inherited(&self, ancestors: &[String], held: &[HeldLicense]) -> Vec<HeldLicense> {
        let mut out: Vec<HeldLicense> = Vec::new();
        for ou in ancestors {
            let Some(rule) = self.config.ou_rules.get(ou) else {
                continue;
            };
            let refs: Vec<Selected> = rule.iter().cloned().map(Selected::Ref).collect();
            let (licenses, _) = resolve(&refs, held);
            for l in licenses {
                let mode = self
                    .config
                    .mode_of(&l.arn, l.sku.as_deref().unwrap_or_default());
                if mode.parents_per_ou() && !out.iter().any(|o| o.arn == l.arn) {
                    out.push(l);
                }
            }
        }
        out
    }

    /// What the configured selection asks for an account in `ou_id` with `tags`, resolved
    /// against the held licenses: the same rules an account's own run applies.
    /// `ancestors`: the OUs above the account's ([`Engine::inherited_from`]).
    pub(crate) fn wanted(
        &self,
        ou_id: &Option<String>,
        ancestors: &[String],
        tags: &[(String, String)],
        held: &[HeldLicense],
    ) -> Wanted {
        if let Some(reason) = self.excluded(ou_id, tags) {
            return Wanted::Skip(reason);
        }
        match self.selection_for(ou_id, tags) {
            Err(e) => Wanted::Unknown(e.to_string()),
            Ok(refs) => {
                let (mut licenses, unmatched) = resolve(&refs, held);
                for l in self.inherited(ancestors, held) {
                    if !licenses.iter().any(|o| o.arn == l.arn) {
                        licenses.push(l);
                    }
                }
                Wanted::Licenses {
                    arns: licenses.into_iter().map(|l| l.arn).collect(),
                    unmatched: unmatched.iter().map(ToString::to_string).collect(),
                }
            }
        }
    }

    /// The license references that apply to an account: its OU rule or the global selection,
    /// plus any named in its licenses tag.
    pub(super) fn selection_for(
        &self,
        ou_id: &Option<String>,
        tags: &[(String, String)],
    ) -> Result<Vec<Selected>, Error> {
        let mut refs: Vec<Selected> =
            match ou_id.as_ref().and_then(|ou| self.config.ou_rules.get(ou)) {
                Some(rule) => rule.iter().cloned().map(Selected::Ref).collect(),
                None => match &self.config.selection {
                    Selection::AllMarketplace => vec![Selected::All],
                    Selection::Listed(list) => list.iter().cloned().map(Selected::Ref).collect(),
                    Selection::PerRequest => Vec::new(),
                },
            };
        if let Some(key) = &self.config.licenses_tag_key {
            for (_, value) in tags.iter().filter(|(k, _)| k == key) {
                for item in value.split_whitespace() {
                    let parsed = LicenseRef::parse(item, &format!("account tag {key}"))?;
                    if !refs.contains(&Selected::Ref(parsed.clone())) {
                        refs.push(Selected::Ref(parsed));
                    }
                }
            }
        }
        Ok(refs)
    }
}

/// Matches the selection against held licenses: (licenses, selections that matched nothing).
pub(super) fn resolve<'a>(
    refs: &'a [Selected],
    held: &[HeldLicense],
) -> (Vec<HeldLicense>, Vec<&'a Selected>) {
    let mut out: Vec<HeldLicense> = Vec::new();
    let mut unmatched = Vec::new();
    for r in refs {
        let matches: Vec<&HeldLicense> = held
            .iter()
            .filter(|l| match r {
                Selected::All => true,
                Selected::Ref(LicenseRef::Arn(arn)) => &l.arn == arn,
                Selected::Ref(LicenseRef::Sku(sku)) => l.sku.as_deref() == Some(sku.as_str()),
            })
            .collect();
        if matches.is_empty() && *r != Selected::All {
            unmatched.push(r);
        }
        for l in matches {
            if !out.iter().any(|o| o.arn == l.arn) {
                out.push(l.clone());
            }
        }
    }
    (out, unmatched)
}
