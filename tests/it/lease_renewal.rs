//! `Store::renew_watches`, the one write with which a replica renews the
//! leases of all its watches: it renews those the owner holds (even past
//! their expiry, as long as nobody took them over) and names the others.

use release_guardian::model::{Decision, NewRelease};
use release_guardian::store::{Lease, Store, StoreSettings};

async fn register(store: &dyn Store, service: &str, id: &str) {
    let new = NewRelease {
        service: service.into(),
        version: "v2".into(),
        previous_version: None,
        environment: None,
        annotations: Default::default(),
    };
    let superseded = Decision::superseded(1_000, "superseded");
    store
        .register_release(&new, "production", id, 1_000, 3_600_000, &superseded)
        .await
        .unwrap();
}

#[tokio::test]
async fn renew_watches_renews_what_the_owner_holds_and_names_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        release_guardian::store::open(&StoreSettings::sqlite(dir.path().join("g.db"))).unwrap();
    for (service, id) in [
        ("a", "r-mine"),
        ("b", "r-expired"),
        ("c", "r-other"),
        ("d", "r-free"),
    ] {
        register(&*store, service, id).await;
    }
    let mine = |exp| Lease::new("local", exp);
    let other = |exp| Lease::new("replica-b", exp);
    assert!(store
        .claim_watch("r-mine", &mine(10_000), 1_000)
        .await
        .unwrap());
    // Expired, but nobody took it over: still ours to renew.
    assert!(store
        .claim_watch("r-expired", &mine(2_000), 1_000)
        .await
        .unwrap());
    assert!(store
        .claim_watch("r-other", &other(90_000), 1_000)
        .await
        .unwrap());

    let ids: Vec<String> = ["r-mine", "r-expired", "r-other", "r-free", "r-gone"]
        .map(String::from)
        .into();
    let lost = store.renew_watches(&ids, &mine(50_000)).await.unwrap();
    assert_eq!(lost, ["r-other", "r-free", "r-gone"]);

    // Renewed to 50 s: another replica cannot claim them before then...
    for id in ["r-mine", "r-expired"] {
        assert!(
            !store.claim_watch(id, &other(99_000), 49_000).await.unwrap(),
            "{id}"
        );
    }
    // ...and the other replica's lease is untouched.
    assert!(!store
        .claim_watch("r-other", &mine(99_000), 60_000)
        .await
        .unwrap());
    assert!(store.renew_watches(&[], &mine(1)).await.unwrap().is_empty());
}
