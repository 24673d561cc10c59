//! Metrics of the crates built on factum (the bus), kept with the framework's own.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::Mutex;

use prometheus_client::registry::Registry;

/// Metrics of a crate built on factum, registered in the framework's registry by
/// [`Metrics::extension`](super::Metrics::extension) the first time they are asked for.
/// Cloning gives handles to the same counters.
pub trait MetricsExtension: Clone + Default + Send + Sync + 'static {
    /// Registers these metrics in `registry` (the application's, without a prefix).
    fn register(&self, registry: &mut Registry);
}

/// The extensions registered so far, one per type.
#[derive(Default)]
pub(super) struct Extensions(Mutex<HashMap<TypeId, Box<dyn Any + Send + Sync>>>);

impl Extensions {
    /// The registered `T`, or a new one, registered with `register`.
    pub(super) fn get_or_register<T: MetricsExtension>(&self, register: impl FnOnce(&T)) -> T {
        let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let slot = all.entry(TypeId::of::<T>()).or_insert_with(|| {
            let fresh = T::default();
            register(&fresh);
            Box::new(fresh)
        });
        // The slot of `TypeId::of::<T>()` only ever holds a `T`.
        slot.downcast_ref::<T>().cloned().unwrap_or_default()
    }
}
