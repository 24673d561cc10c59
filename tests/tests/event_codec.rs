//! `#[derive(DomainEvent)]`'s two decoders agree: an event decoded from its payload's
//! JSON text (`from_json`, the aggregate load path) equals the one decoded from the parsed
//! payload (`from_stored`) and the event that was encoded, for every variant shape; and
//! both refuse the same bad input with the same typed errors.

use factum::aggregate::EventCodecError;
use factum::DomainEvent;
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
enum Shapes {
    #[event(name = "shapes.unit")]
    Unit,
    #[event(name = "shapes.newtype")]
    Newtype(Option<u32>),
    #[event(name = "shapes.tuple")]
    Tuple(u8, String),
    #[event(name = "shapes.struct", version = 2, upcast = upcast_struct)]
    Struct {
        amount: i64,
        tags: Vec<String>,
        #[serde(default)]
        note: Option<String>,
    },
    #[event(name = "shapes.nested")]
    Nested { inner: Inner, raw: Value },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Inner {
    x: f64,
    label: String,
}

/// Version 1 of `shapes.struct` called its amount `value`.
fn upcast_struct(_from: u32, mut payload: Value) -> Result<Value, String> {
    let value = payload.get_mut("value").map(Value::take).ok_or("no value")?;
    Ok(json!({ "amount": value, "tags": payload.get("tags").cloned().unwrap_or(json!([])) }))
}

fn text() -> impl Strategy<Value = String> {
    // Escapes, quotes, non-ASCII and empty strings all go through the JSON text.
    prop_oneof![Just(String::new()), "[a-z\"\\\\é€😀 \n\t]{0,12}"]
}

fn shapes() -> impl Strategy<Value = Shapes> {
    prop_oneof![
        Just(Shapes::Unit),
        proptest::option::of(any::<u32>()).prop_map(Shapes::Newtype),
        (any::<u8>(), text()).prop_map(|(a, b)| Shapes::Tuple(a, b)),
        (any::<i64>(), prop::collection::vec(text(), 0..4), proptest::option::of(text()))
            .prop_map(|(amount, tags, note)| Shapes::Struct { amount, tags, note }),
        // Quarters: serde_json parses decimal text without float_roundtrip, so only
        // such values survive text exactly; both paths parse text the same way.
        (-4_000_000i64..4_000_000, text(), any::<i32>()).prop_map(|(q, label, n)| Shapes::Nested {
            inner: Inner { x: q as f64 / 4.0, label },
            raw: json!({ "n": n, "list": [n, null, true] }),
        }),
    ]
}

fn decode_both(
    event_type: &str,
    version: u32,
    json: &str,
) -> (Result<Shapes, String>, Result<Shapes, String>) {
    let from_json = Shapes::from_json(event_type, version, json).map_err(|e| e.to_string());
    let from_stored = serde_json::from_str(json)
        .map_err(|e| e.to_string())
        .and_then(|v| Shapes::from_stored(event_type, version, v).map_err(|e| e.to_string()));
    (from_json, from_stored)
}

proptest! {
    #[test]
    fn from_json_equals_from_stored_equals_the_encoded_event(event in shapes()) {
        let payload = event.to_payload().unwrap();
        let text = payload.to_string();
        let direct: Value = serde_json::from_str(event.to_json().unwrap().get()).unwrap();
        prop_assert_eq!(&direct, &payload, "to_json is to_payload as text");
        let from_json = Shapes::from_json(event.event_type(), event.schema_version(), &text).unwrap();
        let from_stored = Shapes::from_stored(event.event_type(), event.schema_version(), payload).unwrap();
        let (json_again, parsed) = decode_both(event.event_type(), event.schema_version(), &text);
        prop_assert_eq!(&from_json, &event);
        prop_assert_eq!(&from_stored, &event);
        prop_assert_eq!(json_again, parsed);
    }
}

#[test]
fn shapes_of_stored_payloads() {
    let payload = |e: Shapes| e.to_payload().unwrap();
    assert_eq!(payload(Shapes::Unit), Value::Null);
    assert_eq!(payload(Shapes::Newtype(None)), Value::Null);
    assert_eq!(payload(Shapes::Newtype(Some(3))), json!(3));
    assert_eq!(payload(Shapes::Tuple(1, "a".into())), json!([1, "a"]));
    // A newtype variant holding null decodes (serde's tagged form would read it as a
    // unit variant and fail).
    assert_eq!(Shapes::from_json("shapes.newtype", 1, "null").unwrap(), Shapes::Newtype(None));
    assert_eq!(Shapes::from_stored("shapes.newtype", 1, Value::Null).unwrap(), Shapes::Newtype(None));
    // Whitespace around the text is JSON; a missing defaulted field takes its default.
    let event = Shapes::from_json("shapes.struct", 2, " {\"tags\":[],\"amount\":-5} \n").unwrap();
    assert_eq!(event, Shapes::Struct { amount: -5, tags: vec![], note: None });
}

#[test]
fn older_versions_are_upcast_from_text_too() {
    let old = r#"{"value": 7, "tags": ["a"]}"#;
    let (from_json, from_stored) = decode_both("shapes.struct", 1, old);
    let expected = Shapes::Struct { amount: 7, tags: vec!["a".into()], note: None };
    assert_eq!(from_json, Ok(expected.clone()));
    assert_eq!(from_stored, Ok(expected));
    let err = Shapes::from_json("shapes.struct", 1, r#"{"tags": []}"#).unwrap_err();
    assert!(
        matches!(err, EventCodecError::Upcast { from: 1, ref reason, .. } if reason == "no value"),
        "{err:?}"
    );
}

#[test]
fn bad_payloads_are_typed_errors_on_both_paths() {
    let cases: &[(&str, u32, &str)] = &[
        ("shapes.unit", 1, "{}"),
        ("shapes.unit", 1, "1"),
        ("shapes.newtype", 1, "-1"),
        ("shapes.newtype", 1, "\"x\""),
        ("shapes.tuple", 1, "[1]"),
        ("shapes.tuple", 1, "[1, \"a\", 2]"),
        ("shapes.tuple", 1, "[300, \"a\"]"),
        ("shapes.struct", 2, "{\"amount\": 1}"),
        ("shapes.struct", 2, "{\"amount\": \"1\", \"tags\": []}"),
        ("shapes.struct", 2, "[1, []]x"),
        ("shapes.nested", 1, "{\"inner\": {\"x\": 1}, \"raw\": 1}"),
    ];
    for &(event_type, version, text) in cases {
        let (from_json, from_stored) = decode_both(event_type, version, text);
        assert!(from_json.is_err(), "{event_type} {text}: from_json accepted it: {from_json:?}");
        assert!(from_stored.is_err(), "{event_type} {text}: from_stored accepted it: {from_stored:?}");
        let typed = Shapes::from_json(event_type, version, text).unwrap_err();
        assert!(matches!(typed, EventCodecError::Malformed { .. }), "{event_type} {text}: {typed:?}");
    }
    // Text that is not JSON at all, or JSON followed by more.
    for text in ["", "{", "nul", "{\"amount\": 1, \"tags\": []} {}", "[1, \"a\"] ,"] {
        let err = Shapes::from_json("shapes.struct", 2, text).unwrap_err();
        assert!(matches!(err, EventCodecError::Malformed { .. }), "{text:?}: {err:?}");
    }
    let unknown = Shapes::from_json("shapes.exploded", 1, "{}").unwrap_err();
    assert!(matches!(unknown, EventCodecError::UnknownEventType { .. }), "{unknown:?}");
    let newer = Shapes::from_json("shapes.struct", 3, "{}").unwrap_err();
    assert!(matches!(newer, EventCodecError::NewerSchema { stored: 3, supported: 2, .. }), "{newer:?}");
}
