//! Appends inside a caller's transaction (`append_in`) racing plain appends: a lost race
//! is a conflict carrying the stream's true version, and the caller's transaction stays
//! usable.

use factum::prelude::*;
use factum::store::VersionRange;
use factum::{ExpectedVersion, NewEvent, StoreError, StreamId, Version};
use factum_tests::TestDb;
use serde_json::json;
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use uuid::Uuid;

fn ev(t: &str) -> NewEvent {
    NewEvent::new(t, json!({}))
}

/// Writes version 1 of `stream` as a raw row in a transaction that stays open, the way a
/// checked append (which takes no stream lock) does before it commits.
async fn hold_version_one(conn: &mut PgConnection, stream: &StreamId) {
    sqlx::query("BEGIN").execute(&mut *conn).await.unwrap();
    sqlx::query(
        "INSERT INTO public.events (event_id, aggregate_type, aggregate_id, version, event_type, event_data, occurred_at) \
         VALUES ($1, $2, $3, 1, 'Held', '{}', now())",
    )
    .bind(Uuid::new_v4())
    .bind(stream.aggregate_type())
    .bind(stream.aggregate_id())
    .execute(&mut *conn)
    .await
    .unwrap();
}

/// The exact interleaving: `append_in` reads the head (0) under the stream's lock, a
/// writer that takes no lock holds version 1 uncommitted, `append_in` waits on the
/// unique index and loses once that commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_version_inside_a_transaction_reports_the_true_version() {
    let db = TestDb::new().await;
    let store = db.store().await;
    sqlx::query("CREATE TABLE outbox (body TEXT NOT NULL)").execute(store.pool()).await.unwrap();

    for isolation in ["READ COMMITTED", "REPEATABLE READ"] {
        let stream = StreamId::new("Order", format!("held-{}", isolation.replace(' ', "-"))).unwrap();
        let mut holder = db.connect().await;
        hold_version_one(&mut holder, &stream).await;

        let mut tx = store.pool().begin().await.unwrap();
        sqlx::query(AssertSqlSafe(format!("SET TRANSACTION ISOLATION LEVEL {isolation}")))
            .execute(&mut *tx)
            .await
            .unwrap();
        sqlx::query("INSERT INTO outbox VALUES ('before')").execute(&mut *tx).await.unwrap();
        let appending = {
            let store = store.clone();
            let stream = stream.clone();
            tokio::spawn(async move {
                let result = store
                    .append_in(&mut tx, &stream, ExpectedVersion::Exact(Version(0)), vec![ev("Mine")])
                    .await;
                (result, tx)
            })
        };
        // Let append_in reach the unique index and wait there.
        let waiting = async {
            let mut admin = db.connect().await;
            loop {
                let waits: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                     AND wait_event_type = 'Lock' AND query LIKE '%events_append_in%'",
                )
                .fetch_one(&mut admin)
                .await
                .unwrap();
                if waits > 0 {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(30), waiting)
            .await
            .expect("append_in never waited");
        sqlx::query("COMMIT").execute(&mut holder).await.unwrap();

        let (result, mut tx) = appending.await.unwrap();
        match (isolation, result) {
            ("READ COMMITTED", Err(StoreError::Conflict { actual, .. })) => {
                assert_eq!(actual, Version(1), "the conflict carries the stream's true version");
                // The transaction is usable: write, commit, and find the write.
                sqlx::query("INSERT INTO outbox VALUES ('after conflict')").execute(&mut *tx).await.unwrap();
                tx.commit().await.unwrap();
            }
            ("REPEATABLE READ", Err(StoreError::RetryTransaction { .. })) => {
                // The snapshot cannot see the winner: the one error that means "aborted".
                tx.rollback().await.unwrap();
            }
            (isolation, other) => panic!("{isolation}: unexpected outcome {other:?}"),
        }
        assert_eq!(store.stream_version(&stream).await.unwrap(), Version(1));
        holder.close().await.ok();
    }
    let bodies: Vec<String> =
        sqlx::query_scalar("SELECT body FROM outbox ORDER BY body").fetch_all(store.pool()).await.unwrap();
    assert_eq!(bodies, ["after conflict", "before"]);
}

/// A duplicate event id inside the caller's transaction is answered like a plain
/// append's (an exact retry gets the stored result) and leaves the transaction usable.
#[tokio::test]
async fn a_duplicate_inside_a_transaction_leaves_it_usable() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let stream = StreamId::new("Order", "dup").unwrap();
    let events = vec![ev("A"), ev("B")];
    let stored = store.append(&stream, ExpectedVersion::NoStream, events.clone()).await.unwrap();

    let mut tx = store.pool().begin().await.unwrap();
    let retried = store.append_in(&mut tx, &stream, ExpectedVersion::NoStream, events.clone()).await.unwrap();
    assert!(retried.deduplicated);
    assert_eq!((retried.from_version, retried.to_version), (stored.from_version, stored.to_version));
    let mut other = vec![ev("C")];
    other.push(events[0].clone());
    let err = store.append_in(&mut tx, &stream, ExpectedVersion::Any, other).await.unwrap_err();
    assert!(
        matches!(err, StoreError::DuplicateEvent { event_id } if event_id == events[0].event_id),
        "{err:?}"
    );
    let more =
        store.append_in(&mut tx, &stream, ExpectedVersion::Exact(Version(2)), vec![ev("D")]).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(more.to_version, Version(3));
    assert_eq!(store.read_stream(&stream, VersionRange::ALL).await.unwrap().len(), 3);
}

/// 1,000 rounds of a plain `append(Exact(0))` of 5 events racing `append_in(Exact(0))` on
/// a fresh stream. Exactly one wins each round; the loser's conflict carries the winner's
/// version; the `append_in` transaction stays usable whenever it lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_racing_rounds() {
    const ROUNDS: usize = 1_000;
    let db = TestDb::new().await;
    let store = db.store().await;
    sqlx::query("CREATE TABLE outbox (round INT NOT NULL)").execute(store.pool()).await.unwrap();
    let (mut plain_won, mut in_tx_won) = (0, 0);
    for round in 0..ROUNDS {
        let stream = StreamId::new("Race", format!("r{round}")).unwrap();
        let plain = {
            let store = store.clone();
            let stream = stream.clone();
            tokio::spawn(async move {
                let five = (0..5).map(|_| ev("Plain")).collect();
                store.append(&stream, ExpectedVersion::Exact(Version(0)), five).await
            })
        };
        let mut tx = store.pool().begin().await.unwrap();
        let in_tx =
            store.append_in(&mut tx, &stream, ExpectedVersion::Exact(Version(0)), vec![ev("InTx")]).await;
        // Whatever happened, the transaction takes another statement and commits.
        sqlx::query("INSERT INTO outbox VALUES ($1)").bind(round as i32).execute(&mut *tx).await.unwrap();
        tx.commit().await.unwrap();
        let plain = plain.await.unwrap();
        match (&plain, &in_tx) {
            (Ok(p), Err(StoreError::Conflict { actual, .. })) => {
                assert_eq!(
                    *actual, p.to_version,
                    "round {round}: append_in's conflict must carry the true version"
                );
                assert_eq!(p.to_version, Version(5));
                plain_won += 1;
            }
            (Err(StoreError::Conflict { actual, .. }), Ok(r)) => {
                assert_eq!(
                    *actual, r.to_version,
                    "round {round}: the plain conflict must carry the true version"
                );
                in_tx_won += 1;
            }
            other => panic!("round {round}: not exactly one winner: {other:?}"),
        }
        let expected = if plain.is_ok() { Version(5) } else { Version(1) };
        assert_eq!(store.stream_version(&stream).await.unwrap(), expected, "round {round}");
    }
    let committed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM outbox").fetch_one(store.pool()).await.unwrap();
    assert_eq!(committed, ROUNDS as i64, "every append_in transaction committed");
    println!("append_in race: {ROUNDS} rounds, plain append won {plain_won}, append_in won {in_tx_won}, 0 wrong versions, 0 aborted transactions");
    assert_eq!(plain_won + in_tx_won, ROUNDS);
}
