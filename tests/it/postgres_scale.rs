//! What keeps PostgreSQL's cost per replica from growing with the cluster,
//! against a real server (`support::postgres`):
//!
//! - group commit (`Store::register_batch`) is one transaction: another
//!   connection sees none of the batch while it is written and all of it
//!   once it returns; its items are written in (service, environment)
//!   order (the order every replica takes the per-service locks in, so two
//!   replicas' batches cannot deadlock) and answered in the batch's order.
//!   The semantics of each item (savepoints, supersession, audit,
//!   deliveries) are the store contract's (`store_contract.rs`);
//! - the releases a replica looks at to adopt, at each renewal
//!   (`Store::adoptable_releases`), are only those whose lease is free,
//!   expired or its own, not every watch the other replicas hold.

use crate::support::postgres;
use release_guardian::model::ReleaseStatus;
use release_guardian::model::{Decision, Millis, NewRelease, Release};
use release_guardian::store::{Lease, Registration, Store, StoreSettings};
use std::sync::{Arc, Mutex};

/// Releases another connection (psql) sees in `db` now.
fn visible(db: &str) -> String {
    postgres::server().sql(db, "SELECT count(*) FROM releases")
}

/// A PostgreSQL store on a new database (lease owner `a`); its database.
fn open_store(dir: &std::path::Path) -> (Arc<dyn Store>, String) {
    let db = postgres::database();
    let toml = format!(
        "[store]\nurl = {:?}\nowner = \"a\"\n",
        postgres::server().url(&db)
    );
    let settings = crate::support::settings(dir, &toml).store;
    assert!(matches!(settings, StoreSettings::Postgres(_)));
    let store = release_guardian::store::open(&settings).expect("open the store");
    (store, db)
}

fn new_release(service: &str, version: &str) -> NewRelease {
    NewRelease {
        service: service.to_string(),
        version: version.to_string(),
        previous_version: None,
        environment: None,
        annotations: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_batch_is_one_transaction_written_in_service_order() {
    let dir = tempfile::tempdir().unwrap();
    let (store, db) = open_store(dir.path());

    // Each item's plan runs inside the batch's write: it notes its service
    // and what another connection sees at that moment.
    let planned = Arc::new(Mutex::new(Vec::<(String, String)>::new()));
    let now: Millis = 1_000;
    let items: Vec<Registration> = ["carts", "accounts", "billing", "accounts"]
        .iter()
        .enumerate()
        .map(|(i, service)| {
            let planned = Arc::clone(&planned);
            let db = db.clone();
            Registration {
                new: new_release(service, &format!("v{i}")),
                environment: "production".into(),
                id: format!("r{i}"),
                now,
                plan: Box::new(move |_: &mut NewRelease, _: Option<&Release>| {
                    planned
                        .lock()
                        .unwrap()
                        .push((service.to_string(), visible(&db)));
                    now + 60_000
                }),
                superseded: Decision::superseded(now, format!("superseded by r{i}")),
                lease: Some(Lease::new("a", now + 30_000)),
                audit: None,
                delivery: None,
            }
        })
        .collect();
    let out = store.register_batch(items).await.expect("the batch");

    // Answered in the batch's order.
    let ids: Vec<String> = out
        .into_iter()
        .map(|r| r.expect("each item").registered.release.id)
        .collect();
    assert_eq!(ids, ["r0", "r1", "r2", "r3"]);
    // Written in service order (the two `accounts` items in theirs), and
    // nothing was visible outside until the one commit.
    assert_eq!(
        *planned.lock().unwrap(),
        [
            ("accounts".to_string(), "0".to_string()),
            ("accounts".to_string(), "0".to_string()),
            ("billing".to_string(), "0".to_string()),
            ("carts".to_string(), "0".to_string()),
        ]
    );
    assert_eq!(visible(&db), "4");
    // The second `accounts` item superseded the first.
    let r1 = store.get_release("r1").await.unwrap().unwrap();
    assert_eq!(r1.superseded_by.as_deref(), Some("r3"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_looks_only_at_releases_it_can_adopt() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _db) = open_store(dir.path());
    let now: Millis = 100_000;
    for (service, id) in [
        ("free", "r-free"),
        ("mine", "r-mine"),
        ("held", "r-held"),
        ("expired", "r-expired"),
        ("ended", "r-ended"),
    ] {
        let d = Decision::superseded(now, "superseded");
        store
            .register_release(&new_release(service, "v1"), "production", id, now, now, &d)
            .await
            .unwrap();
    }
    let claim = |id: &'static str, owner: &'static str, until: Millis, at: Millis| {
        let store = Arc::clone(&store);
        async move {
            assert!(store
                .claim_watch(id, &Lease::new(owner, until), at)
                .await
                .unwrap());
        }
    };
    claim("r-mine", "a", now + 30_000, now).await;
    claim("r-held", "b", now + 30_000, now).await;
    claim("r-expired", "b", now - 1, now - 30_000).await;
    claim("r-ended", "b", now - 1, now - 30_000).await;
    let verified = Decision::verified(now, "verified");
    store
        .transition(
            "r-ended",
            &[ReleaseStatus::Watching],
            ReleaseStatus::Verified,
            &verified,
            now,
        )
        .await
        .unwrap();

    let mut ids: Vec<String> = store
        .adoptable_releases("a", now)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    ids.sort();
    assert_eq!(ids, ["r-expired", "r-free", "r-mine"]);
    // Once `b`'s lease on r-held expires, it is adoptable too.
    let later: Vec<String> = store
        .adoptable_releases("a", now + 30_000)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert!(later.contains(&"r-held".to_string()), "{later:?}");
}
