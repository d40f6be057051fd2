//! The supervisor's use of leases, against a real SQLite store: a restart
//! resumes only the watches no other live replica holds, and takes over
//! those whose lease expired.

use super::{Guardian, LOCAL_OWNER};
use crate::clock::{Clock, SystemClock};
use crate::config::Settings;
use crate::context::Context;
use crate::model::{Decision, Millis, NewRelease};
use crate::store::{Lease, Store};
use std::sync::Arc;

fn settings(dir: &std::path::Path) -> Settings {
    crate::config::load_str(
        "[store]\npath = \"g.db\"\n",
        &dir.join("guardian.toml"),
        &[],
    )
    .expect("a valid config")
}

async fn register(store: &dyn Store, service: &str, id: &str, now: Millis) {
    let new = NewRelease {
        service: service.into(),
        version: "v2".into(),
        previous_version: None,
        environment: None,
        annotations: Default::default(),
    };
    let superseded = Decision::superseded(now, "superseded");
    store
        .register_release(&new, "production", id, now, now + 3_600_000, &superseded)
        .await
        .unwrap();
}

#[tokio::test]
async fn start_resumes_only_the_watches_it_can_claim() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    let store = crate::store::open(&s.store).unwrap();
    let now = SystemClock.now();
    register(&*store, "held", "r-held", now).await;
    register(&*store, "expired", "r-expired", now).await;
    register(&*store, "mine", "r-mine", now).await;
    register(&*store, "free", "r-free", now).await;
    // Another live replica holds one watch; another stopped renewing long
    // ago; this replica held one before its restart.
    let far = now + 3_600_000;
    let other = |exp| Lease::new("replica-b", exp);
    assert!(store.claim_watch("r-held", &other(far), now).await.unwrap());
    assert!(store
        .claim_watch("r-expired", &other(now - 1_000), now - 60_000)
        .await
        .unwrap());
    assert!(store
        .claim_watch("r-mine", &Lease::new(LOCAL_OWNER, far), now)
        .await
        .unwrap());

    let ctx = Context::new(s, store.clone(), Arc::new(SystemClock));
    let g = Guardian::new(ctx.clone());
    assert_eq!(g.owner(), LOCAL_OWNER);
    g.start().await.unwrap();
    assert_eq!(g.running_watches(), 3);

    // The live replica keeps its watch; the others are this replica's now.
    assert!(store.renew_watch("r-held", &other(far)).await.unwrap());
    for id in ["r-expired", "r-mine", "r-free"] {
        assert!(
            !store.claim_watch(id, &other(far), now).await.unwrap(),
            "{id}"
        );
        assert!(
            store
                .renew_watch(id, &Lease::new(LOCAL_OWNER, far))
                .await
                .unwrap(),
            "{id}"
        );
    }
    ctx.shutdown.cancel();
    ctx.tasks.close();
    ctx.tasks.wait().await;
}
