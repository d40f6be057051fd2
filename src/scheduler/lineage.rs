//! Where a new release comes from: the version it replaces when the deploy
//! tool did not say, and whether it is a revert (a release of the version
//! the latest release replaced), which is watched on the revert cadence
//! (`[cadence] revert_tiers`).
//!
//! The mark is the annotation [`REVERT_ANNOTATION`] (the id of the release
//! it reverts), set and cleared only here, so a watch resumed after a
//! restart keeps its cadence.

use crate::model::{NewRelease, Release, ReleaseStatus, REVERT_ANNOTATION};

/// Completes `new` from `latest`, the latest release of the same service and
/// environment (if any): a missing `previous_version` becomes the version
/// that was running (the latest's version, or the version it was rolled
/// back to), and a release of the version the latest one replaced is a
/// revert of it. A re-registration of the latest version is left alone
/// (registration answers the existing release).
pub fn complete(new: &mut NewRelease, latest: Option<&Release>) {
    new.annotations.remove(REVERT_ANNOTATION);
    let Some(latest) = latest.filter(|l| l.version != new.version) else {
        return;
    };
    let revert = latest.previous_version.as_deref() == Some(new.version.as_str());
    if revert {
        new.annotations
            .insert(REVERT_ANNOTATION.into(), latest.id.clone().into());
    }
    if new.previous_version.is_none() {
        let running = match (&latest.status, &latest.previous_version) {
            // Rolled back: the service runs what it was rolled back to,
            // unless that is this very version (a revert replaces the
            // latest release's version).
            (ReleaseStatus::RolledBack, Some(p)) if !revert => p.clone(),
            _ => latest.version.clone(),
        };
        new.previous_version = Some(running);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn release(version: &str, previous: Option<&str>, status: ReleaseStatus) -> Release {
        Release {
            id: format!("r-{version}"),
            service: "checkout".into(),
            environment: "production".into(),
            version: version.into(),
            previous_version: previous.map(str::to_owned),
            annotations: BTreeMap::new(),
            status,
            started_at: 0,
            next_check_at: None,
            ended_at: None,
            acked: false,
            superseded_by: None,
        }
    }

    fn new(version: &str, previous: Option<&str>) -> NewRelease {
        NewRelease {
            service: "checkout".into(),
            version: version.into(),
            previous_version: previous.map(str::to_owned),
            environment: None,
            annotations: BTreeMap::from([(REVERT_ANNOTATION.into(), "forged".into())]),
        }
    }

    #[test]
    fn a_missing_previous_version_is_the_running_version() {
        let mut n = new("v3", None);
        complete(
            &mut n,
            Some(&release("v2", Some("v1"), ReleaseStatus::Verified)),
        );
        assert_eq!(n.previous_version.as_deref(), Some("v2"));
        assert!(
            !n.annotations.contains_key(REVERT_ANNOTATION),
            "forged mark removed"
        );

        // v2 was rolled back to v1: v1 runs.
        let mut n = new("v3", None);
        complete(
            &mut n,
            Some(&release("v2", Some("v1"), ReleaseStatus::RolledBack)),
        );
        assert_eq!(n.previous_version.as_deref(), Some("v1"));

        // Said explicitly: kept.
        let mut n = new("v3", Some("v0"));
        complete(
            &mut n,
            Some(&release("v2", Some("v1"), ReleaseStatus::Watching)),
        );
        assert_eq!(n.previous_version.as_deref(), Some("v0"));

        // First release of the service: nothing to say.
        let mut n = new("v1", None);
        complete(&mut n, None);
        assert_eq!(n.previous_version, None);
    }

    #[test]
    fn a_release_of_the_replaced_version_is_a_revert() {
        for status in [ReleaseStatus::Watching, ReleaseStatus::RolledBack] {
            let mut n = new("v1", None);
            complete(&mut n, Some(&release("v2", Some("v1"), status)));
            assert_eq!(n.annotations[REVERT_ANNOTATION], "r-v2", "{status:?}");
            assert_eq!(n.previous_version.as_deref(), Some("v2"), "{status:?}");
        }
        // Not a revert: another version, or the same one again.
        let mut n = new("v3", None);
        complete(
            &mut n,
            Some(&release("v2", Some("v1"), ReleaseStatus::Watching)),
        );
        assert!(!n.annotations.contains_key(REVERT_ANNOTATION));
        let mut n = new("v2", None);
        complete(
            &mut n,
            Some(&release("v2", Some("v1"), ReleaseStatus::Watching)),
        );
        assert!(!n.annotations.contains_key(REVERT_ANNOTATION));
        assert_eq!(n.previous_version, None);
    }
}
