//! The conformance case of the projection builds' registry (see
//! [`BuildStore`](factum::store::BuildStore)).

use factum::store::{BuildId, BuildState, Checkpoint, GlobalPosition, Retired, Switch};
use factum::StoreError;

use crate::conformance::Store;

fn cp(n: u64) -> Checkpoint {
    Checkpoint { transaction: n, position: GlobalPosition(n) }
}

/// Builds: the first is live at once, later ones build beside it; a cut-over happens
/// only once the new build has processed what the live one has, and is seen whole;
/// the replaced build can be switched back to, retired only when not live; bad names and
/// versions are refused.
pub async fn projection_builds(store: Store) {
    let first = store.register_build("p", 1, 1, false).await.unwrap();
    assert_eq!(first.id, BuildId::new("p", 1, 1));
    assert_eq!(first.state, BuildState::Live, "a projection's first build is live at once");
    assert_eq!(first.id.consumer(), "p", "version 1's first build keeps the projection's own name");
    assert_eq!(
        store.register_build("p", 1, 1, false).await.unwrap().id,
        first.id,
        "registering again finds it"
    );

    // A rebuild: a fresh build of the same version, building beside the live one.
    let copy = store.register_build("p", 1, 1, true).await.unwrap();
    assert_eq!((copy.id.clone(), copy.state), (BuildId::new("p", 1, 2), BuildState::Building));
    assert_eq!(copy.id.consumer(), "p@v1.2");
    assert_eq!(
        store.register_build("p", 1, 1, false).await.unwrap().id,
        first.id,
        "the live build of the version is the one to run"
    );

    // Not before it has processed what the live build has.
    store.save_checkpoint("p", cp(5)).await.unwrap();
    store.save_checkpoint("p@v1.2", cp(4)).await.unwrap();
    assert_eq!(store.cut_over(&copy.id).await.unwrap(), Switch::Behind { live: cp(5), build: cp(4) });
    assert_eq!(state_of(&store, &first.id).await, BuildState::Live, "a refused cut-over changes nothing");
    store.save_checkpoint("p@v1.2", cp(5)).await.unwrap();
    assert_eq!(
        store.cut_over(&copy.id).await.unwrap(),
        Switch::Switched { replaced: Some(first.id.clone()) }
    );
    assert_eq!(state_of(&store, &copy.id).await, BuildState::Live);
    assert_eq!(state_of(&store, &first.id).await, BuildState::Replaced);
    let builds = store.builds("p").await.unwrap();
    assert_eq!(builds.iter().filter(|b| b.state == BuildState::Live).count(), 1, "one live build");
    assert!(builds.iter().find(|b| b.id == copy.id).unwrap().live_at.is_some());
    assert_eq!(store.cut_over(&copy.id).await.unwrap(), Switch::Switched { replaced: None }, "already live");
    assert!(
        !store.advance_checkpoint("p", cp(5), cp(6)).await.unwrap(),
        "a replaced build takes no more batches"
    );
    assert!(!store.reopen_build(&copy.id).await.unwrap(), "only a replaced build reopens");

    // A new version builds beside the live one; a version with no build gets one.
    let v2 = store.register_build("p", 2, 1, false).await.unwrap();
    assert_eq!((v2.id.consumer(), v2.state), ("p@v2".to_owned(), BuildState::Building));

    // Back to the replaced build: opened again, caught up, then switched to.
    store.save_checkpoint("p@v1.2", cp(9)).await.unwrap();
    assert!(store.reopen_build(&first.id).await.unwrap());
    assert_eq!(state_of(&store, &first.id).await, BuildState::Building);
    assert!(matches!(store.cut_over(&first.id).await.unwrap(), Switch::Behind { .. }));
    assert!(store.advance_checkpoint("p", cp(5), cp(9)).await.unwrap(), "reopened, it takes batches again");
    assert_eq!(
        store.cut_over(&first.id).await.unwrap(),
        Switch::Switched { replaced: Some(copy.id.clone()) }
    );

    // Retiring: never the live build; a retired build is gone for good.
    assert_eq!(store.retire_build(&first.id).await.unwrap(), Retired::Live);
    assert_eq!(store.retire_build(&copy.id).await.unwrap(), Retired::Retired);
    assert_eq!(
        store.retire_build(&copy.id).await.unwrap(),
        Retired::Retired,
        "retiring again changes nothing"
    );
    assert_eq!(state_of(&store, &copy.id).await, BuildState::Retired);
    assert_eq!(store.cut_over(&copy.id).await.unwrap(), Switch::Unknown, "a retired build cannot go live");
    assert_eq!(store.retire_build(&BuildId::new("p", 7, 1)).await.unwrap(), Retired::Unknown);
    assert_eq!(store.cut_over(&BuildId::new("q", 1, 1)).await.unwrap(), Switch::Unknown);
    let next = store.register_build("p", 1, 1, true).await.unwrap();
    assert_eq!(next.id, BuildId::new("p", 1, 3), "build numbers are not reused");
    assert!(store.builds("q").await.unwrap().is_empty(), "projections are independent");

    for bad in [
        store.register_build("", 1, 1, false).await,
        store.register_build("p", 0, 1, false).await,
        store.register_build("a@v2", 1, 1, false).await,
        store.register_build(&"x".repeat(250), 1, 1, false).await,
    ] {
        assert!(matches!(bad, Err(StoreError::InvalidInput(_))), "{bad:?}");
    }
    assert!(matches!(store.cut_over(&BuildId::new("p", 1, 0)).await, Err(StoreError::InvalidInput(_))));
}

async fn state_of(store: &Store, id: &BuildId) -> BuildState {
    store.builds(&id.projection).await.unwrap().into_iter().find(|b| &b.id == id).expect("registered").state
}
