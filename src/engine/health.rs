//! The release's health score: the checks' states weighed out of 100.
//!
//! Each judged check counts with its `weight` (default 1): `ok` scores 1,
//! `warning` 0.5, `critical` and `rollback` 0. Inconclusive and pending
//! checks are left out (nothing is known about them); with none judged there
//! is no score.

use crate::model::CheckState;

/// A check state's score (None: not judged, left out).
pub fn state_score(state: CheckState) -> Option<f64> {
    match state {
        CheckState::Ok => Some(1.0),
        CheckState::Warning => Some(0.5),
        CheckState::Critical | CheckState::Rollback => Some(0.0),
        CheckState::Inconclusive | CheckState::Pending => None,
    }
}

/// The score out of 100 of `(state, weight)` pairs.
pub fn health_score(checks: impl IntoIterator<Item = (CheckState, f64)>) -> Option<f64> {
    let (mut got, mut total) = (0.0, 0.0);
    for (state, weight) in checks {
        if let Some(s) = state_score(state) {
            got += s * weight;
            total += weight;
        }
    }
    (total > 0.0).then(|| 100.0 * got / total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use CheckState::*;

    #[test]
    fn weighs_states_and_leaves_out_the_unjudged() {
        assert_eq!(health_score([(Ok, 1.0), (Ok, 1.0)]), Some(100.0));
        assert_eq!(health_score([(Ok, 1.0), (Warning, 1.0)]), Some(75.0));
        assert_eq!(health_score([(Ok, 3.0), (Critical, 1.0)]), Some(75.0));
        assert_eq!(
            health_score([(Ok, 19.0), (Rollback, 1.0), (Inconclusive, 50.0)]),
            Some(95.0)
        );
        assert_eq!(health_score([(Inconclusive, 1.0), (Pending, 1.0)]), None);
        assert_eq!(health_score([(Ok, 0.0)]), None);
    }
}
