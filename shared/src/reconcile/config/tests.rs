use super::*;

#[test]
fn configuration() {
    let err = |pairs: &[(&str, &str)]| {
        let map: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ReconcileConfig::from_lookup(|k| map.get(k).cloned())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    assert!(err(&[]).contains("ONBOARDING_QUEUE_URL"));
    let q = ("ONBOARDING_QUEUE_URL", "https://q");
    assert!(err(&[q, ("OFFBOARD_MODE", "nuke")]).contains("OFFBOARD_MODE"));
    assert!(err(&[q, ("RECONCILE_OUS", "ou-1")]).contains("RECONCILE_OUS"));
    assert!(err(&[q, ("DRY_RUN", "perhaps")]).contains("DRY_RUN"));
    assert!(err(&[q, ("BACKFILL_QUEUE_URL", "queue")]).contains("BACKFILL_QUEUE_URL"));
    assert!(err(&[q, ("GRANT_QUOTA_PER_LICENSE", "0")]).contains("GRANT_QUOTA_PER_LICENSE"));
    assert!(err(&[q, ("GRANT_QUOTA_WARN_PERCENT", "101")]).contains("GRANT_QUOTA_WARN_PERCENT"));
    assert_eq!(err(&[q, ("OFFBOARD_MODE", "delete")]), "");
    assert_eq!(err(&[q, ("GRANT_QUOTA_PER_LICENSE", "5000")]), "");
}
