//! The conformance suite on the in-memory store.

use std::sync::Arc;

use factum::{EventStore, InMemoryStore};

factum_tests::conformance_suite!((Arc::new(InMemoryStore::new()) as Arc<dyn EventStore>, ()));
