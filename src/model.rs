//! The domain vocabulary every stage shares: releases and their statuses, check
//! states and levels, decisions, notifications and rollback attempts.
//!
//! Times are [`Millis`]: milliseconds since the Unix epoch, UTC. They are turned
//! into RFC 3339 strings only at the edges (API, reports, messages).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Longest accepted service, environment or version name.
pub const MAX_NAME_LEN: usize = 256;

/// Milliseconds since the Unix epoch (UTC).
pub type Millis = i64;

/// Formats a timestamp as RFC 3339 UTC with millisecond precision.
pub fn rfc3339(ms: Millis) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    match time::OffsetDateTime::from_unix_timestamp_nanos(nanos) {
        Ok(t) => t
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|_| ms.to_string()),
        Err(_) => ms.to_string(),
    }
}

/// Parses RFC 3339 or unix seconds (integer or fractional) into [`Millis`].
pub fn parse_time(s: &str) -> Option<Millis> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<f64>() {
        return secs.is_finite().then(|| (secs * 1000.0).round() as Millis);
    }
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    Some((t.unix_timestamp_nanos() / 1_000_000) as Millis)
}

/// Where a release stands. Part of the API contract.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug, Hash)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseStatus {
    Watching,
    Verified,
    RollingBack,
    RolledBack,
    RollbackFailed,
    Aborted,
    Superseded,
}

impl ReleaseStatus {
    pub const ALL: [ReleaseStatus; 7] = [
        Self::Watching,
        Self::Verified,
        Self::RollingBack,
        Self::RolledBack,
        Self::RollbackFailed,
        Self::Aborted,
        Self::Superseded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Watching => "watching",
            Self::Verified => "verified",
            Self::RollingBack => "rolling_back",
            Self::RolledBack => "rolled_back",
            Self::RollbackFailed => "rollback_failed",
            Self::Aborted => "aborted",
            Self::Superseded => "superseded",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// A release in a terminal status is no longer watched and never changes again.
    pub fn is_terminal(self) -> bool {
        !matches!(self, Self::Watching | Self::RollingBack)
    }

    /// Whether a rollback may be requested from this status: while watched,
    /// or once verified (a problem found after the window). Every store
    /// backend applies this same rule.
    pub fn can_roll_back(self) -> bool {
        matches!(self, Self::Watching | Self::Verified)
    }
}

impl fmt::Display for ReleaseStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rule level, ordered by gravity: `Ok < Warning < Critical < Rollback`.
#[derive(
    Serialize, Deserialize, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Hash, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    #[default]
    Ok,
    Warning,
    Critical,
    Rollback,
}

impl Level {
    /// The three levels a rule can define, in increasing gravity.
    pub const RULE_LEVELS: [Level; 3] = [Level::Warning, Level::Critical, Level::Rollback];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Warning => "warning",
            Self::Critical => "critical",
            Self::Rollback => "rollback",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Ok, Self::Warning, Self::Critical, Self::Rollback]
            .into_iter()
            .find(|x| x.as_str() == s)
    }

    /// The severity a notification about entering this level carries.
    pub fn severity(self) -> Severity {
        match self {
            Self::Ok => Severity::Info,
            Self::Warning => Severity::Warning,
            Self::Critical | Self::Rollback => Severity::Critical,
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The state of one check of a release. Part of the API contract.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug, Hash, Default)]
#[serde(rename_all = "snake_case")]
pub enum CheckState {
    #[default]
    Pending,
    Ok,
    Warning,
    Critical,
    Rollback,
    Inconclusive,
}

impl CheckState {
    pub const ALL: [CheckState; 6] = [
        Self::Pending,
        Self::Ok,
        Self::Warning,
        Self::Critical,
        Self::Rollback,
        Self::Inconclusive,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Ok => "ok",
            Self::Warning => "warning",
            Self::Critical => "critical",
            Self::Rollback => "rollback",
            Self::Inconclusive => "inconclusive",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

impl From<Level> for CheckState {
    fn from(l: Level) -> Self {
        match l {
            Level::Ok => Self::Ok,
            Level::Warning => Self::Warning,
            Level::Critical => Self::Critical,
            Level::Rollback => Self::Rollback,
        }
    }
}

/// Notification severity; notifiers filter on it with `min_severity`.
#[derive(
    Serialize, Deserialize, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Hash, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    #[default]
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Info, Self::Warning, Self::Critical]
            .into_iter()
            .find(|x| x.as_str() == s)
    }
}

/// A release: one version of one service in one environment, and its watch.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Release {
    pub id: String,
    pub service: String,
    pub environment: String,
    pub version: String,
    pub previous_version: Option<String>,
    pub annotations: BTreeMap<String, serde_json::Value>,
    pub status: ReleaseStatus,
    pub started_at: Millis,
    /// When the next tick is due; `None` once the watch has ended.
    pub next_check_at: Option<Millis>,
    pub ended_at: Option<Millis>,
    /// Set by `POST /v1/releases/{id}/ack`: no further pages for this release.
    pub acked: bool,
    /// The release the deploy tool registered after this one, if it superseded it.
    pub superseded_by: Option<String>,
}

/// One write through the API, as the audit log keeps it: who (the token's
/// name, or the webhook), what, to which release, when.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct AuditRecord {
    pub at: Millis,
    /// `token:NAME` (an `[auth]` token), `webhook:TOOL` (a deploy tool's
    /// signed webhook), or `anonymous` (no `[auth]`: loopback only).
    pub actor: String,
    /// `register`, `rollback`, `abort`, `ack`.
    pub action: String,
    pub release_id: String,
    /// What the write said or did (the version registered, the delivery,
    /// whether a new watch started).
    pub detail: String,
    /// The client's address, when known.
    pub client: Option<String>,
}

/// The annotation marking a release registered as a revert (a release of
/// the version the latest release replaced): the id of the release it
/// reverts. Set only by the guardian; a value a client sends is replaced.
pub const REVERT_ANNOTATION: &str = "revert_of";

/// Whether `release` was registered as a revert.
pub fn is_revert(release: &Release) -> bool {
    release.annotations.contains_key(REVERT_ANNOTATION)
}

/// The environment of a release or service that names none: `production`.
pub fn default_environment() -> String {
    "production".into()
}

/// What a deploy tool tells us: "this version is live".
#[derive(Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NewRelease {
    pub service: String,
    pub version: String,
    #[serde(default)]
    pub previous_version: Option<String>,
    #[serde(default)]
    pub environment: Option<String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, serde_json::Value>,
}

/// The persisted state of one check of one release, rewritten after every tick.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct CheckRecord {
    pub name: String,
    pub state: CheckState,
    pub level: Level,
    pub value: Option<f64>,
    /// The engine's tracker for this check, opaque to the store.
    pub tracker: serde_json::Value,
    /// The last instant a range source has evaluated up to (inclusive).
    pub evaluated_until: Option<Millis>,
    pub updated_at: Millis,
    /// Evidence: the log lines of the check's `logs` query at its latest
    /// reading (empty for checks without one).
    #[serde(default)]
    pub logs: Vec<LogLine>,
}

/// One log line kept as a check's evidence.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct LogLine {
    /// Nanoseconds since the Unix epoch, as Loki gives them (a string: they
    /// do not fit a JSON double).
    pub ts: String,
    /// The stream's labels, `{a="b",...}`.
    pub stream: String,
    /// The line (cut at [`MAX_LOG_LINE_BYTES`]).
    pub line: String,
}

/// Longest log line kept as evidence; longer ones are cut with `…`.
pub const MAX_LOG_LINE_BYTES: usize = 2048;

/// One entry of a release's decision timeline: what was decided and why.
///
/// Build one with the constructor named after its verb
/// (`Decision::verified(at, reason)`), then [`Decision::with_check`] /
/// [`Decision::with_level`] where the verb is about one check or level.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Decision {
    pub at: Millis,
    pub check: Option<String>,
    pub level: Option<Level>,
    /// What was decided; serialized (API, store) as its snake_case verb.
    pub action: DecisionAction,
    pub reason: String,
    /// The instant of the data the decision judged (a level change: the
    /// sample where the level changed), beside `at`, when it was decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_at: Option<Millis>,
    /// What was judged: the resolved query, the values around the
    /// transition, the condition and window, baseline values, p-values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<serde_json::Value>,
}

/// The verb of a [`Decision`]. Part of the API contract and of the stored
/// timeline: each variant is written as the string [`DecisionAction::as_str`]
/// returns, and existing rows are read back by [`DecisionAction::parse`], so a
/// variant's string never changes.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug, Hash)]
#[serde(rename_all = "snake_case")]
pub enum DecisionAction {
    /// A check moved to another level (up or down).
    LevelChanged,
    /// A check could not be judged (source error, no data).
    Inconclusive,
    /// The release's service left the configuration; the watch waits for it.
    Paused,
    /// The watch was resumed after a restart with a tick overdue.
    Resumed,
    /// A check reached the rollback level and the service rolls back by hand.
    RollbackRecommended,
    /// A check reached the rollback level and no hook is configured.
    RollbackUnavailable,
    /// A rollback was decided (by a rule or through the API).
    RollbackRequested,
    /// The rollback hook starts (or is found unable to run).
    RollbackStarted,
    /// The rollback hook succeeded.
    RolledBack,
    /// The rollback hook failed, could not run, or was interrupted.
    RollbackFailed,
    /// The watch window ended without verifying the release (a check still
    /// unread, or one reached the rollback level).
    WindowEnded,
    /// The watch window ended and the release is verified.
    Verified,
    /// The watch was aborted through the API.
    Aborted,
    /// The release was acknowledged: no further pages.
    Acked,
    /// A newer release of the same service and environment replaced it.
    Superseded,
}

impl DecisionAction {
    pub const ALL: [DecisionAction; 15] = [
        Self::LevelChanged,
        Self::Inconclusive,
        Self::Paused,
        Self::Resumed,
        Self::RollbackRecommended,
        Self::RollbackUnavailable,
        Self::RollbackRequested,
        Self::RollbackStarted,
        Self::RolledBack,
        Self::RollbackFailed,
        Self::WindowEnded,
        Self::Verified,
        Self::Aborted,
        Self::Acked,
        Self::Superseded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::LevelChanged => "level_changed",
            Self::Inconclusive => "inconclusive",
            Self::Paused => "paused",
            Self::Resumed => "resumed",
            Self::RollbackRecommended => "rollback_recommended",
            Self::RollbackUnavailable => "rollback_unavailable",
            Self::RollbackRequested => "rollback_requested",
            Self::RollbackStarted => "rollback_started",
            Self::RolledBack => "rolled_back",
            Self::RollbackFailed => "rollback_failed",
            Self::WindowEnded => "window_ended",
            Self::Verified => "verified",
            Self::Aborted => "aborted",
            Self::Acked => "acked",
            Self::Superseded => "superseded",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

impl fmt::Display for DecisionAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<str> for DecisionAction {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for DecisionAction {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl Decision {
    /// A decision about the release as a whole (no check, no level).
    pub fn new(action: DecisionAction, at: Millis, reason: impl Into<String>) -> Self {
        Decision {
            at,
            check: None,
            level: None,
            action,
            reason: reason.into(),
            observed_at: None,
            evidence: None,
        }
    }

    /// The same decision, about one check.
    pub fn with_check(mut self, check: impl Into<String>) -> Self {
        self.check = Some(check.into());
        self
    }

    /// The same decision, at one level.
    pub fn with_level(mut self, level: Level) -> Self {
        self.level = Some(level);
        self
    }

    /// The same decision, judging data observed at `observed_at`, with
    /// what it judged.
    pub fn with_evidence(
        mut self,
        observed_at: Millis,
        evidence: Option<serde_json::Value>,
    ) -> Self {
        self.observed_at = Some(observed_at);
        self.evidence = evidence;
        self
    }

    /// A check moved from one level to `level`.
    pub fn level_changed(
        at: Millis,
        check: impl Into<String>,
        level: Level,
        reason: impl Into<String>,
    ) -> Self {
        Self::new(DecisionAction::LevelChanged, at, reason)
            .with_check(check)
            .with_level(level)
    }

    /// A check became inconclusive.
    pub fn inconclusive(at: Millis, check: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::new(DecisionAction::Inconclusive, at, reason).with_check(check)
    }

    pub fn paused(at: Millis, reason: impl Into<String>) -> Self {
        Self::new(DecisionAction::Paused, at, reason)
    }

    pub fn resumed(at: Millis, reason: impl Into<String>) -> Self {
        Self::new(DecisionAction::Resumed, at, reason)
    }

    /// A rollback decided; at the rollback level. Add the check with
    /// [`Decision::with_check`] when a rule decided it.
    pub fn rollback_requested(at: Millis, reason: impl Into<String>) -> Self {
        Self::new(DecisionAction::RollbackRequested, at, reason).with_level(Level::Rollback)
    }

    pub fn rollback_recommended(
        at: Millis,
        check: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Self::new(DecisionAction::RollbackRecommended, at, reason)
            .with_check(check)
            .with_level(Level::Rollback)
    }

    pub fn rollback_unavailable(
        at: Millis,
        check: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Self::new(DecisionAction::RollbackUnavailable, at, reason)
            .with_check(check)
            .with_level(Level::Rollback)
    }

    /// The rollback starts; at the rollback level.
    pub fn rollback_started(at: Millis, reason: impl Into<String>) -> Self {
        Self::new(DecisionAction::RollbackStarted, at, reason).with_level(Level::Rollback)
    }

    pub fn rolled_back(at: Millis, reason: impl Into<String>) -> Self {
        Self::new(DecisionAction::RolledBack, at, reason)
    }

    pub fn rollback_failed(at: Millis, reason: impl Into<String>) -> Self {
        Self::new(DecisionAction::RollbackFailed, at, reason)
    }

    pub fn window_ended(at: Millis, reason: impl Into<String>) -> Self {
        Self::new(DecisionAction::WindowEnded, at, reason)
    }

    pub fn verified(at: Millis, reason: impl Into<String>) -> Self {
        Self::new(DecisionAction::Verified, at, reason)
    }

    pub fn aborted(at: Millis, reason: impl Into<String>) -> Self {
        Self::new(DecisionAction::Aborted, at, reason)
    }

    pub fn acked(at: Millis, reason: impl Into<String>) -> Self {
        Self::new(DecisionAction::Acked, at, reason)
    }

    pub fn superseded(at: Millis, reason: impl Into<String>) -> Self {
        Self::new(DecisionAction::Superseded, at, reason)
    }
}

/// Delivery state of a notification in the outbox.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug, Default)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Waiting for its next attempt.
    #[default]
    Pending,
    /// Delivered. Final.
    Sent,
    /// Given up after the last attempt. Final.
    Failed,
    /// Never sent because the release was acknowledged while the row was
    /// still pending. Final.
    Suppressed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Sent => "sent",
            Self::Failed => "failed",
            Self::Suppressed => "suppressed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Sent, Self::Failed, Self::Suppressed]
            .into_iter()
            .find(|x| x.as_str() == s)
    }
}

/// A message about a release, as every notifier receives it. Stored whole in
/// the outbox so that a restart re-sends exactly what was decided.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Message {
    /// Stable deduplication key: the same event always yields the same key.
    pub dedup_key: String,
    pub release_id: String,
    pub service: String,
    pub environment: String,
    pub version: String,
    pub previous_version: Option<String>,
    pub severity: Severity,
    /// `level_changed`, `recovered`, `resolved`, `reminder`,
    /// `rollback_started`, `rolled_back`, `rollback_failed`,
    /// `rollback_recommended`, `verified`, `inconclusive`.
    pub event: String,
    pub check: Option<String>,
    pub level: Option<Level>,
    pub value: Option<f64>,
    pub reason: String,
    pub at: Millis,
}

impl Message {
    /// The incident this message belongs to, the same for the message that
    /// opens it and the one that closes it: `RELEASE/CHECK` for a check's
    /// messages, `RELEASE` for the release's own. Receivers that group or
    /// resolve (PagerDuty's `dedup_key`, Alertmanager's labels) key on it.
    pub fn incident_key(&self) -> String {
        // A source's blindness: one incident per run of failed reads,
        // opened by `blind` and closed by `blind_cleared`.
        if matches!(self.event.as_str(), "blind" | "blind_cleared") {
            return self.dedup_key.trim_end_matches("/cleared").to_string();
        }
        match &self.check {
            Some(check) => format!("{}/{}", self.release_id, check),
            None => self.release_id.clone(),
        }
    }

    /// Whether this message closes its incident: `recovered` (a check back
    /// to `ok`) and `resolved` (a check still above `ok` when the watch
    /// ended, closed with the release).
    pub fn closes_incident(&self) -> bool {
        matches!(
            self.event.as_str(),
            "recovered" | "resolved" | "blind_cleared"
        )
    }

    /// One line naming service, environment, version, check, level and value.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "[{}] {} {} {}",
            self.severity.as_str().to_uppercase(),
            self.service,
            self.environment,
            self.version
        );
        match &self.check {
            Some(check) => s.push_str(&format!(" check {check}")),
            None => s.push_str(&format!(" {}", self.event)),
        }
        if let Some(level) = self.level {
            s.push_str(&format!(" level {level}"));
        }
        if let Some(v) = self.value {
            s.push_str(&format!(" value {}", format_value(v)));
        }
        s.push_str(&format!(": {}", self.reason));
        s
    }
}

/// Formats a sample value compactly (`0.0523`, `12`, `NaN`).
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v == v.trunc() && v.abs() < 1e15 {
        return format!("{}", v as i64);
    }
    let s = format!("{v:.6}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// A notification as recorded in the store (outbox row).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct NotificationRecord {
    pub key: String,
    pub notifier: String,
    pub message: Message,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub created_at: Millis,
    pub sent_at: Option<Millis>,
    /// Earliest time of the next delivery attempt.
    pub next_attempt_at: Millis,
}

/// State of the (single) rollback attempt of a release.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "snake_case")]
pub enum RollbackState {
    /// Decided and recorded, hook not yet started.
    Requested,
    /// Hook started; if the daemon dies now the outcome is unknown.
    Running,
    Succeeded,
    Failed,
    /// The daemon died while the hook ran: never re-run, reported as failed.
    Interrupted,
}

impl RollbackState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Interrupted => "interrupted",
        }
    }

    /// The status a release ends in once its rollback has this outcome:
    /// `rolled_back` after success, `rollback_failed` after a failure or an
    /// interruption (an unknown outcome is never reported as success).
    /// `None` for a rollback that has no outcome yet. Every store backend
    /// applies this same rule.
    pub fn release_status(self) -> Option<ReleaseStatus> {
        match self {
            Self::Succeeded => Some(ReleaseStatus::RolledBack),
            Self::Failed | Self::Interrupted => Some(ReleaseStatus::RollbackFailed),
            Self::Requested | Self::Running => None,
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Requested,
            Self::Running,
            Self::Succeeded,
            Self::Failed,
            Self::Interrupted,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }
}

/// The rollback attempt of a release: at most one per release, ever.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RollbackRecord {
    pub state: RollbackState,
    pub reason: String,
    /// `auto` (rule-triggered) or `manual` (`POST .../rollback`).
    pub trigger: String,
    pub requested_at: Millis,
    pub started_at: Option<Millis>,
    pub finished_at: Option<Millis>,
    pub exit_code: Option<i32>,
    /// Combined stdout+stderr of the hook, truncated.
    pub output: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::{Decision, DecisionAction};

    #[test]
    fn decision_verbs_keep_their_strings() {
        for a in DecisionAction::ALL {
            assert_eq!(DecisionAction::parse(a.as_str()), Some(a));
            assert_eq!(
                serde_json::to_value(a).unwrap(),
                serde_json::Value::String(a.as_str().into())
            );
        }
        assert_eq!(DecisionAction::RolledBack.as_str(), "rolled_back");
        assert_eq!(DecisionAction::WindowEnded.as_str(), "window_ended");
        assert_eq!(DecisionAction::parse("page"), None);
        let d = Decision::verified(5, "ok");
        assert_eq!(
            serde_json::to_value(&d).unwrap()["action"],
            serde_json::json!("verified")
        );
        assert!(d.action == "verified");
    }
}

/// One charted value of a check: a range-query point (the worst across the
/// check's series at that instant) or one probe result. `value` is `None`
/// where nothing usable was observed (a failed probe). Kept by the store, a
/// bounded number per check ([`MAX_POINTS_PER_CHECK`]), for reports and the
/// status page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckPoint {
    pub check: String,
    pub at: Millis,
    pub value: Option<f64>,
}

/// Most [`CheckPoint`]s the store keeps per check of a release: the newest
/// ones (six hours at the default 15 s step is 1,440).
pub const MAX_POINTS_PER_CHECK: usize = 2048;
