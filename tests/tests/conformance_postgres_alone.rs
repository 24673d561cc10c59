//! The conformance suite on the PostgreSQL store with coalescing off: every append in a
//! transaction of its own (`conformance_postgres` runs it with coalescing on, the
//! default).

use std::sync::Arc;

use factum::EventStore;
use factum_postgres::Coalescing;
use factum_tests::TestDb;

async fn make() -> (Arc<dyn EventStore>, TestDb) {
    let db = TestDb::new().await;
    let store = db.store_with(db.config().with_coalescing(Coalescing::off())).await;
    (Arc::new(store) as Arc<dyn EventStore>, db)
}

factum_tests::conformance_suite!(make().await);
