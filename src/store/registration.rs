//! Registrations written in batches: what one item of
//! [`Store::register_batch`] carries ([`Registration`]), what it gives back
//! ([`Registered`] with its claim), and the one-by-one way any backend
//! can run a batch ([`one_by_one`], the trait's default).
//!
//! A batch exists for group commit: many concurrent registrations written
//! with one durable commit ([`crate::store::group_commit`] forms them). An
//! item is everything one registration writes, so a 201 needs that single
//! commit: the release (and the watches it supersedes), the lease on its
//! new watch, its audit record and the webhook delivery that asked for it.
//! The store still holds no policy: how a new release is completed from the
//! latest one and when its first tick is ([`Registration::plan`]), and what
//! its audit record says ([`Registration::audit`]), are the caller's,
//! applied to what the store reads inside the write.

use super::{Lease, Registered, ReleaseFilter, Store, StoreError};
use crate::model::{AuditRecord, Decision, Millis, NewRelease, Release};

/// Completes a new release from the latest release of its (service,
/// environment), read in the same write (`None`: the first), and answers
/// its first tick. A backend may call it more than once for one item (it
/// redoes a batch item by item when one item fails), so it must depend on
/// its arguments only.
pub type Plan = Box<dyn Fn(&mut NewRelease, Option<&Release>) -> Millis + Send>;

/// The audit record of a registration, from its outcome (like [`Plan`],
/// possibly called more than once).
pub type AuditOf = Box<dyn Fn(&Registered) -> AuditRecord + Send>;

/// One registration of a batch: what [`Store::register_release`] takes,
/// with the first tick and lineage decided by `plan` from the latest
/// release as the write finds it (so a batch holding two versions of one
/// service sees the first when it writes the second), plus what else the
/// registration writes in the same commit.
pub struct Registration {
    pub new: NewRelease,
    pub environment: String,
    /// The id of the release if it is new.
    pub id: String,
    pub now: Millis,
    pub plan: Plan,
    /// Appended to each release this one supersedes.
    pub superseded: Decision,
    /// A new release's watch is claimed with this lease in the same write
    /// (a new row is unclaimed, so the claim always succeeds).
    pub lease: Option<Lease>,
    /// Appended to the audit log in the same write, whatever the outcome.
    pub audit: Option<AuditOf>,
    /// `(source, delivery)`: the webhook delivery that asked, recorded as
    /// [`Store::record_delivery`] does (a delivery keeps its first release).
    pub delivery: Option<(String, String)>,
}

/// What one item of a batch did.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchRegistered {
    pub registered: Registered,
    /// True if this write took the new watch's lease
    /// ([`Registration::lease`] given and the release is new).
    pub claimed: bool,
}

/// What a batch of registrations gives: one result per item, in the
/// batch's order, or an error for the whole batch (nothing of it written).
pub type BatchResult = Result<Vec<Result<BatchRegistered, StoreError>>, StoreError>;

/// Runs a batch item by item through the other methods of the trait: the
/// same semantics, one write (and commit) per step, so an item may be
/// left half written by a crash (its release without its audit record).
/// Backends that can, do the whole batch in one transaction instead.
pub async fn one_by_one<S: Store + ?Sized>(
    store: &S,
    batch: Vec<Registration>,
) -> Vec<Result<BatchRegistered, StoreError>> {
    let mut out = Vec::with_capacity(batch.len());
    for item in batch {
        out.push(one(store, item).await);
    }
    out
}

async fn one<S: Store + ?Sized>(
    store: &S,
    item: Registration,
) -> Result<BatchRegistered, StoreError> {
    let Registration {
        mut new,
        environment,
        id,
        now,
        plan,
        superseded,
        lease,
        audit,
        delivery,
    } = item;
    let latest = store
        .list_releases(&ReleaseFilter {
            service: Some(new.service.clone()),
            environment: Some(environment.clone()),
            limit: 1,
            ..ReleaseFilter::default()
        })
        .await?;
    let first_check_at = plan(&mut new, latest.first());
    let registered = store
        .register_release(&new, &environment, &id, now, first_check_at, &superseded)
        .await?;
    let claimed = match &lease {
        Some(lease) if registered.created => {
            store
                .claim_watch(&registered.release.id, lease, now)
                .await?
        }
        _ => false,
    };
    if let Some(audit) = audit {
        store.append_audit(&audit(&registered)).await?;
    }
    if let Some((source, delivery)) = &delivery {
        store
            .record_delivery(source, delivery, &registered.release.id, now)
            .await?;
    }
    Ok(BatchRegistered {
        registered,
        claimed,
    })
}
