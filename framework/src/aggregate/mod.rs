//! Aggregates, their commands and events, and the actors that run them.

pub(crate) mod actor;
mod config;
mod error;
mod load;
pub(crate) mod registry;
mod runner;
mod snapshot;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::store::{Checkpoint, NewEvent, Version};

pub use error::{CommandError, EventCodecError};
pub use factum_derive::{Aggregate, Command, DomainEvent};

pub(crate) use actor::event_id_of;
pub use config::FactumConfig;
pub use runner::Factum;
pub(crate) use runner::Shared;
pub use snapshot::{SnapshotContext, SnapshotPolicy, SnapshotPolicyError};

/// The default snapshot interval, from the usual 50–100 range.
pub const DEFAULT_SNAPSHOT_EVERY: u64 = 100;

/// A domain event type: usually an enum with `#[derive(DomainEvent)]`.
///
/// Each variant has a stable event-type name, a schema version and optionally a topic.
/// Payloads are stored as the variant's fields; an older stored schema version is upcast
/// to the current shape when loaded, and stored events are never rewritten.
pub trait DomainEvent: Sized + Send + Sync + 'static {
    /// The stable name stored in `event_type`.
    fn event_type(&self) -> &'static str;

    /// The current schema version of this event's payload.
    fn schema_version(&self) -> u32;

    /// The dot-separated topic, if the event has one.
    fn topic(&self) -> Option<&'static str> {
        None
    }

    /// The payload to store.
    fn to_payload(&self) -> Result<Value, EventCodecError>;

    /// The payload to store, as JSON text: what aggregates append, serialized once.
    ///
    /// The default serializes [`to_payload`](Self::to_payload)'s value;
    /// `#[derive(DomainEvent)]` serializes the variant straight to text, without building
    /// a [`Value`] first.
    fn to_json(&self) -> Result<Box<RawValue>, EventCodecError> {
        let payload = self.to_payload()?;
        serde_json::value::to_raw_value(&payload).map_err(|e| __private::malformed(self.event_type(), e))
    }

    /// Rebuilds an event from what was stored, upcasting older schema versions.
    fn from_stored(event_type: &str, schema_version: u32, payload: Value) -> Result<Self, EventCodecError>;

    /// Rebuilds an event from its stored payload's JSON text, as
    /// [`from_stored`](Self::from_stored) does from a parsed payload.
    ///
    /// Aggregates load through this. The default parses the text and calls
    /// `from_stored`; `#[derive(DomainEvent)]` decodes a current-version payload straight
    /// from the text into the variant, without building a [`Value`] first.
    ///
    /// ```
    /// use factum::DomainEvent;
    /// use factum::aggregate::EventCodecError;
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Debug, PartialEq, Serialize, Deserialize, DomainEvent)]
    /// enum CounterEvent {
    ///     #[event(name = "counter.incremented")]
    ///     Incremented { by: u32 },
    /// }
    ///
    /// let event = CounterEvent::from_json("counter.incremented", 1, r#"{"by":2}"#)?;
    /// assert_eq!(event, CounterEvent::Incremented { by: 2 });
    /// assert!(matches!(
    ///     CounterEvent::from_json("counter.incremented", 1, r#"{"by":"two"}"#),
    ///     Err(EventCodecError::Malformed { .. })
    /// ));
    /// # Ok::<(), EventCodecError>(())
    /// ```
    fn from_json(event_type: &str, schema_version: u32, json: &str) -> Result<Self, EventCodecError> {
        __private::parse_then_from_stored(event_type, schema_version, json)
    }
}

/// A command: usually an enum with `#[derive(Command)]`, which routes each command to the
/// aggregate it names.
pub trait Command: Send + Sync + 'static {
    /// The id of the aggregate this command is for.
    fn aggregate_id(&self) -> &str;
}

/// An aggregate: the state of one consistency boundary, usually declared with
/// `#[derive(Aggregate)]`.
///
/// The decision is pure: [`handle`](Self::handle) looks at the state and a command and
/// returns the events to record, or a domain error. [`apply`](Self::apply) folds an event
/// into the state; the framework calls it only after the events are committed.
pub trait Aggregate: Default + Clone + Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The aggregate type's name, which is also its category in the store.
    const TYPE: &'static str;
    /// Snapshot every this many events (0: never): the default
    /// [`SnapshotPolicy`], which [`FactumConfig::snapshot_policy`](crate::FactumConfig::snapshot_policy)
    /// can override at run time.
    const SNAPSHOT_EVERY: u64 = DEFAULT_SNAPSHOT_EVERY;
    /// The schema version of the serialized state: bump it when the state's shape
    /// changes, and stored snapshots of another version are ignored (full replay).
    const SNAPSHOT_VERSION: u32 = 1;

    /// The commands it handles.
    type Command: Command;
    /// The events it records.
    type Event: DomainEvent;
    /// Its domain errors.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Decides what happens: events to record, or a domain error. Must not change state.
    fn handle(&self, command: &Self::Command) -> Result<Vec<Self::Event>, Self::Error>;

    /// Folds one committed event into the state.
    fn apply(&mut self, event: &Self::Event);
}

/// Links a command type to the aggregate that handles it, so that
/// [`Factum::execute`](crate::Factum::execute) needs no type annotation.
/// `#[derive(Aggregate)]` implements it for the aggregate's command type.
pub trait AggregateCommand: Command {
    /// The aggregate that handles this command.
    type Aggregate: Aggregate<Command = Self>;
}

/// What a successful command did.
#[derive(Debug, Clone)]
pub struct Executed<A: Aggregate> {
    /// The aggregate's id.
    pub aggregate_id: String,
    /// The aggregate's version after the command.
    pub version: Version,
    /// The events recorded (none if the command decided nothing needed to change).
    pub events: Vec<A::Event>,
    /// Where the command's last event landed in the log; `None` when it recorded none.
    /// Give it to [`Supervisor::wait_for`](crate::Supervisor::wait_for) to read your
    /// writes: a wait on a checkpoint answers without the store when this instance's
    /// projection is past it. A command that recorded nothing decided on the log as it
    /// stood: wait for [`EventLog::latest_position`](crate::store::EventLog::latest_position).
    pub checkpoint: Option<Checkpoint>,
    /// The command had already run: this is a retry of a command run with
    /// [`Factum::execute_once`](crate::Factum::execute_once) (or an exact retry of an
    /// append), and `events`, `version` and `checkpoint` are what the earlier run recorded.
    pub repeated: bool,
}

/// Encodes a domain event as an event to append.
pub(crate) fn encode<E: DomainEvent>(
    event: &E,
    metadata: &crate::store::Metadata,
) -> Result<NewEvent, EventCodecError> {
    let mut new = NewEvent::from_json_text(event.event_type(), event.to_json()?)
        .with_schema_version(event.schema_version())
        .with_metadata(metadata.clone());
    new.topic = event.topic().map(str::to_owned);
    Ok(new)
}

/// Helpers for the derive macros' generated code. Not public API.
#[doc(hidden)]
pub mod __private {
    pub use serde_json;

    use super::EventCodecError;
    use serde::de::{
        DeserializeSeed, Deserializer, EnumAccess, Error as _, IntoDeserializer, MapAccess, VariantAccess,
        Visitor,
    };
    use serde::Deserialize as _;
    use serde_json::Value;

    /// The payload of one variant in serde's externally tagged form (`"Variant"` for a
    /// unit variant, else `{"Variant": payload}`), given as JSON text: only the payload's
    /// span is kept, never parsed into a tree. As [`variant_payload`], `null` for any
    /// other form.
    pub fn variant_payload_text(
        event_type: &str,
        text: &str,
    ) -> Result<Box<serde_json::value::RawValue>, EventCodecError> {
        use serde_json::value::RawValue;
        let tagged = serde_json::from_str::<std::collections::BTreeMap<String, &RawValue>>(text).ok();
        match tagged.filter(|t| t.len() == 1).and_then(|t| t.into_values().next()) {
            Some(payload) => Ok(payload.to_owned()),
            None => RawValue::from_string("null".to_owned()).map_err(|e| malformed(event_type, e)),
        }
    }

    /// The payload of one variant in serde's externally tagged form, as a value.
    pub fn variant_payload(value: Value) -> Value {
        match value {
            Value::Object(mut map) if map.len() == 1 => {
                let key = map.keys().next().cloned().unwrap_or_default();
                map.remove(&key).unwrap_or(Value::Null)
            }
            _ => Value::Null,
        }
    }

    /// Parses a payload's JSON text, then decodes it with `from_stored` (upcasting).
    pub fn parse_then_from_stored<E: super::DomainEvent>(
        event_type: &str,
        schema_version: u32,
        json: &str,
    ) -> Result<E, EventCodecError> {
        let payload = serde_json::from_str(json).map_err(|e| malformed(event_type, e))?;
        E::from_stored(event_type, schema_version, payload)
    }

    /// Decodes `T` (an externally tagged enum) from one variant's payload: `T`'s
    /// `Deserialize` sees `{variant: payload}` without that map being built.
    pub fn decode_variant<'de, T, D>(variant: &'static str, payload: D) -> Result<T, D::Error>
    where
        T: serde::Deserialize<'de>,
        D: Deserializer<'de>,
    {
        T::deserialize(Variant { name: variant, payload })
    }

    /// Decodes `T` from one variant's payload given as JSON text.
    pub fn decode_variant_json<'de, T>(variant: &'static str, json: &'de str) -> Result<T, serde_json::Error>
    where
        T: serde::Deserialize<'de>,
    {
        let mut de = serde_json::Deserializer::from_str(json);
        let value = decode_variant(variant, &mut de)?;
        de.end()?;
        Ok(value)
    }

    /// A deserializer presenting an enum variant's name and payload as serde's
    /// externally tagged form, `{name: payload}`.
    struct Variant<D> {
        name: &'static str,
        payload: D,
    }

    impl<'de, D: Deserializer<'de>> Deserializer<'de> for Variant<D> {
        type Error = D::Error;

        fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
            visitor.visit_map(OneEntry { name: Some(self.name), payload: Some(self.payload) })
        }

        fn deserialize_enum<V: Visitor<'de>>(
            self,
            _name: &'static str,
            _variants: &'static [&'static str],
            visitor: V,
        ) -> Result<V::Value, D::Error> {
            visitor.visit_enum(self)
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map struct identifier
            ignored_any
        }
    }

    impl<'de, D: Deserializer<'de>> EnumAccess<'de> for Variant<D> {
        type Error = D::Error;
        type Variant = Payload<D>;

        fn variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<(S::Value, Payload<D>), D::Error> {
            let variant = seed.deserialize(self.name.into_deserializer())?;
            Ok((variant, Payload(self.payload)))
        }
    }

    /// A variant's payload, decoded as the variant's shape asks.
    struct Payload<D>(D);

    impl<'de, D: Deserializer<'de>> VariantAccess<'de> for Payload<D> {
        type Error = D::Error;

        fn unit_variant(self) -> Result<(), D::Error> {
            <()>::deserialize(self.0)
        }

        fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, D::Error> {
            seed.deserialize(self.0)
        }

        fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, D::Error> {
            self.0.deserialize_tuple(len, visitor)
        }

        fn struct_variant<V: Visitor<'de>>(
            self,
            fields: &'static [&'static str],
            visitor: V,
        ) -> Result<V::Value, D::Error> {
            self.0.deserialize_struct("", fields, visitor)
        }
    }

    /// The one entry of `{name: payload}`, for a `Deserialize` that asks for any shape.
    struct OneEntry<D> {
        name: Option<&'static str>,
        payload: Option<D>,
    }

    impl<'de, D: Deserializer<'de>> MapAccess<'de> for OneEntry<D> {
        type Error = D::Error;

        fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, D::Error> {
            self.name.take().map(|name| seed.deserialize(name.into_deserializer())).transpose()
        }

        fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, D::Error> {
            match self.payload.take() {
                Some(payload) => seed.deserialize(payload),
                None => Err(D::Error::custom("a variant's payload was asked for twice")),
            }
        }

        fn size_hint(&self) -> Option<usize> {
            Some(usize::from(self.name.is_some()))
        }
    }

    /// Maps a serde error to a codec error.
    pub fn malformed(event_type: &str, error: serde_json::Error) -> EventCodecError {
        EventCodecError::Malformed { event_type: event_type.to_owned(), reason: error.to_string() }
    }
}
