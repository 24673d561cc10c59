//! The conformance cases of process managers' parts: durable timers
//! ([`TimerStore`](factum::store::TimerStore)), and commands run at most once under an id
//! ([`Factum::execute_once`]), alone and racing each other.

use std::time::Duration;

use chrono::{TimeZone, Utc};
use factum::store::Timer;
use factum::{CommandError, EventFilter, Factum, Metadata, StoreError, StreamId, Version};
use uuid::Uuid;

use crate::conformance::Store;
use crate::counter::{Counter, CounterCommand, CounterError, CounterEvent};

fn at(second: i64) -> chrono::DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000 + second, 0).single().expect("a time")
}

fn timer(stream: &StreamId, name: &str, second: i64) -> Timer {
    Timer {
        stream: stream.clone(),
        name: name.to_owned(),
        id: Uuid::now_v7(),
        deadline: at(second),
        version: V,
    }
}

/// The version the timers of these cases are set at.
const V: Version = Version(5);

/// Timers: set (one per stream and name, replaced with its id), listed by category
/// earliest first and by due time, cancelled by name or all but one, removed only by
/// the id they have; bad input refused.
pub async fn durable_timers(store: Store) {
    let a = StreamId::new("proc", "a").unwrap();
    let b = StreamId::new("proc", "b").unwrap();
    let other = StreamId::new("other", "a").unwrap();
    let first = timer(&a, "remind", 30);
    store.set_timer(&first).await.unwrap();
    store.set_timer(&timer(&a, "expire", 10)).await.unwrap();
    store.set_timer(&timer(&b, "remind", 20)).await.unwrap();
    store.set_timer(&timer(&other, "remind", 5)).await.unwrap();
    let names = |timers: Vec<Timer>| -> Vec<(String, String)> {
        timers.into_iter().map(|t| (t.stream.aggregate_id().to_owned(), t.name)).collect()
    };
    let all = store.timers("proc", None, 100).await.unwrap();
    assert_eq!(
        names(all),
        [("a".into(), "expire".into()), ("b".into(), "remind".into()), ("a".into(), "remind".into())]
    );
    assert_eq!(names(store.timers("proc", Some(at(21)), 100).await.unwrap()).len(), 2, "due before");
    assert_eq!(store.timers("proc", None, 1).await.unwrap().len(), 1, "limited");

    // Setting a name again replaces the timer and its id: the old id removes nothing.
    let again = timer(&a, "remind", 40);
    store.set_timer(&again).await.unwrap();
    assert!(!store.remove_timer(&a, first.id).await.unwrap());
    let listed = store.timers("proc", None, 100).await.unwrap();
    let remind = listed.iter().find(|t| t.stream == a && t.name == "remind").unwrap();
    assert_eq!((remind.id, remind.deadline), (again.id, at(40)));
    assert!(store.remove_timer(&a, again.id).await.unwrap());
    assert!(!store.remove_timer(&a, again.id).await.unwrap(), "removed once");

    // Cancelling: by name, then all of a stream's but the one firing.
    store.set_timer(&timer(&b, "expire", 50)).await.unwrap();
    let firing = timer(&b, "fire", 60);
    store.set_timer(&firing).await.unwrap();
    assert_eq!(store.cancel_timers(&b, Some("remind"), None, V).await.unwrap(), 1);
    assert_eq!(store.cancel_timers(&b, None, Some(firing.id), V).await.unwrap(), 1);
    let left: Vec<Uuid> = store.timers("proc", None, 100).await.unwrap().into_iter().map(|t| t.id).collect();
    assert!(left.contains(&firing.id) && left.len() == 2, "{left:?}");
    assert_eq!(store.cancel_timers(&b, Some("fire"), Some(firing.id), V).await.unwrap(), 0, "spared");
    assert_eq!(store.timers("other", None, 100).await.unwrap().len(), 1, "other categories untouched");

    // Versions: a write from an older version neither replaces nor cancels a newer timer.
    let c = StreamId::new("proc", "c").unwrap();
    let newer = Timer { version: Version(9), ..timer(&c, "t", 70) };
    store.set_timer(&newer).await.unwrap();
    store.set_timer(&Timer { version: Version(8), ..timer(&c, "t", 80) }).await.unwrap();
    assert_eq!(store.cancel_timers(&c, Some("t"), None, Version(8)).await.unwrap(), 0);
    let held = store.timers("proc", None, 100).await.unwrap().into_iter().find(|t| t.stream == c).unwrap();
    assert_eq!((held.id, held.version), (newer.id, Version(9)));
    let newest = Timer { version: Version(10), ..timer(&c, "t", 90) };
    store.set_timer(&newest).await.unwrap();
    assert_eq!(store.cancel_timers(&c, None, None, Version(10)).await.unwrap(), 1);

    // Bad input is refused and changes nothing.
    for bad in ["", "a\u{0}b"] {
        let err = store.set_timer(&timer(&a, bad, 1)).await.unwrap_err();
        assert!(matches!(err, StoreError::InvalidInput(_)), "{err:?}");
        assert!(matches!(
            store.cancel_timers(&a, Some(bad), None, V).await,
            Err(StoreError::InvalidInput(_))
        ));
    }
    assert!(matches!(store.timers("proc", None, 0).await, Err(StoreError::InvalidInput(_))));
    assert!(matches!(store.timers("", None, 10).await, Err(StoreError::InvalidInput(_))));
    assert_eq!(store.timers("proc", None, 100).await.unwrap().len(), 2, "a/expire and b/fire");
}

/// Commands run once under an id: the second run reports the first's events and records
/// nothing; eight runs racing land once; a refused run leaves nothing, so a later run
/// decides again; the id is the events' causation.
pub async fn commands_run_once(store: Store) {
    let factum = Factum::new(store.clone());
    let id = Uuid::now_v7();
    let inc = |by| CounterCommand::Increment { id: "once-1".into(), by };
    let first = factum.execute_once(inc(5), id, Metadata::default()).await.unwrap();
    assert!(!first.repeated);
    let again = factum.execute_once(inc(5), id, Metadata::default()).await.unwrap();
    assert!(again.repeated);
    assert_eq!(
        (again.version, again.events.clone()),
        (first.version, vec![CounterEvent::Incremented { by: 5 }])
    );
    assert_eq!(again.checkpoint, first.checkpoint);
    assert_eq!(factum.load::<Counter>("once-1").await.unwrap().0.value, 5);
    let caused = store
        .query(&EventFilter::new().aggregate_id("once-1").metadata(serde_json::json!({ "causation_id": id })))
        .await
        .unwrap();
    assert_eq!(caused.len(), 1);

    // Racing runs of one command, each through a Factum of its own (as in two instances).
    let race = Uuid::now_v7();
    let runs: Vec<_> = (0..8)
        .map(|_| {
            let factum = Factum::new(store.clone());
            tokio::spawn(async move { factum.execute_once(inc(7), race, Metadata::default()).await })
        })
        .collect();
    let mut landed = 0;
    for run in runs {
        let executed = run.await.unwrap().unwrap();
        landed += usize::from(!executed.repeated);
        assert_eq!(executed.events, vec![CounterEvent::Incremented { by: 7 }]);
    }
    assert!(landed <= 1, "{landed} runs reported landing");
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(Factum::new(store.clone()).load::<Counter>("once-1").await.unwrap().0.value, 12);

    // A refused run records nothing: the same id runs again on the current state.
    let refused = Uuid::now_v7();
    let err = factum.execute_once(inc(5000), refused, Metadata::default()).await.unwrap_err();
    assert!(matches!(err, CommandError::Domain(CounterError::BadIncrement(5000))));
    let later = factum.execute_once(inc(1), refused, Metadata::default()).await.unwrap();
    assert!(!later.repeated);
    assert_eq!(factum.load::<Counter>("once-1").await.unwrap().0.value, 13);
}
