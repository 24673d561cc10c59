//! The conformance suite on the PostgreSQL store, each case in a fresh database.

use std::sync::Arc;

use factum::EventStore;
use factum_tests::TestDb;

async fn make() -> (Arc<dyn EventStore>, TestDb) {
    let db = TestDb::new().await;
    let store = db.store().await;
    (Arc::new(store) as Arc<dyn EventStore>, db)
}

factum_tests::conformance_suite!(make().await);
