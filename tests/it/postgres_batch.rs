//! PostgreSQL's group commit (`Store::register_batch`) against a real
//! server (`support::postgres`): the batch is one transaction, so another
//! connection sees none of it while it is written and all of it once it
//! returns; its items are written in (service, environment) order (the
//! order every replica takes the per-service locks in, so two replicas'
//! batches cannot deadlock) and answered in the batch's order. The
//! semantics of each item (savepoints, supersession, audit, deliveries)
//! are the store contract's (`store_contract.rs`, both backends).

use crate::support::postgres;
use release_guardian::model::{Decision, Millis, NewRelease, Release};
use release_guardian::store::{Lease, Registration, StoreSettings};
use std::sync::{Arc, Mutex};

/// Releases another connection (psql) sees in `db` now.
fn visible(db: &str) -> String {
    postgres::server().sql(db, "SELECT count(*) FROM releases")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_batch_is_one_transaction_written_in_service_order() {
    let dir = tempfile::tempdir().unwrap();
    let db = postgres::database();
    let toml = format!(
        "[store]\nurl = {:?}\nowner = \"a\"\n",
        postgres::server().url(&db)
    );
    let settings = crate::support::settings(dir.path(), &toml).store;
    assert!(matches!(settings, StoreSettings::Postgres(_)));
    let store = release_guardian::store::open(&settings).expect("open the store");

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
                new: NewRelease {
                    service: service.to_string(),
                    version: format!("v{i}"),
                    previous_version: None,
                    environment: None,
                    annotations: Default::default(),
                },
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
