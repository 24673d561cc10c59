//! The document against the router and the value rules.

use std::collections::BTreeSet;

use serde_json::Value;

use super::*;
use crate::validate::{check_email, check_id, check_name, check_text};

fn json() -> Value {
    document().clone()
}

/// Every (method, path) the document holds.
fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let paths = doc["paths"].as_object().expect("paths");
    paths
        .iter()
        .flat_map(|(path, item)| {
            item.as_object().expect("a path item").keys().map(move |m| (m.clone(), path.clone()))
        })
        .collect()
}

#[test]
fn every_route_is_documented() {
    // The router is built from the same `routes` as the document, so each route it
    // serves has its operation; this list is the API the docs promise.
    let expected: BTreeSet<(String, String)> = [
        ("post", "/customers"),
        ("get", "/customers/{id}"),
        ("put", "/customers/{id}/email"),
        ("post", "/customers/{id}/deactivate"),
        ("post", "/orders"),
        ("get", "/orders/{id}"),
        ("post", "/orders/{id}/items"),
        ("delete", "/orders/{id}/items/{sku}"),
        ("post", "/orders/{id}/confirm"),
        ("post", "/orders/{id}/ship"),
        ("post", "/orders/{id}/cancel"),
        ("get", "/audit"),
        ("get", "/ops/projections"),
        ("get", "/ops/projections/{name}"),
        ("post", "/ops/projections/{name}/rebuild"),
        ("get", "/ops/projections/{name}/builds"),
        ("get", "/ops/processes"),
        ("post", "/ops/replay"),
        ("post", "/ops/retention/cleanup"),
        ("get", "/health"),
        ("get", "/metrics"),
        ("get", "/openapi.json"),
    ]
    .into_iter()
    .map(|(m, p)| (m.to_owned(), p.to_owned()))
    .collect();
    assert_eq!(operations(&json()), expected);
}

#[test]
fn every_ref_resolves() {
    let doc = json();
    let text = doc.to_string();
    let refs: Vec<&str> = text.split("\"$ref\":\"#/components/").skip(1).collect();
    assert!(refs.len() > 20, "the document uses references");
    for piece in refs {
        let target = &piece[..piece.find('"').expect("end of ref")];
        let (kind, name) = target.split_once('/').expect("kind/name");
        assert!(doc["components"][kind][name].is_object(), "dangling $ref {target}");
    }
}

/// What every operation promises: a success, an error body for every refusal, the
/// header and path rules, and 503 with `Retry-After` wherever the store is touched.
#[test]
fn every_operation_documents_its_refusals() {
    let doc = json();
    let in_memory = ["/ops/projections", "/metrics", "/openapi.json"];
    for (method, path) in operations(&doc) {
        let op = &doc["paths"][&path][&method];
        let what = format!("{method} {path}");
        let responses = op["responses"].as_object().expect("responses");
        assert!(responses.keys().any(|s| s.starts_with('2')), "{what}: a success");
        for (status, response) in responses {
            if status.starts_with('4') {
                let schema = &response["content"]["application/json"]["schema"]["$ref"];
                assert_eq!(schema, "#/components/schemas/ErrorBody", "{what} {status}");
                assert!(
                    response["description"].as_str().is_some_and(|d| d.contains("(`")),
                    "{what} {status}: codes"
                );
            }
        }
        assert!(responses.contains_key("400"), "{what}: the headers can be refused");
        let params = op["parameters"].as_array().expect("parameters");
        for header in [CORRELATION_HEADER, USER_HEADER] {
            assert!(params.iter().any(|p| p["name"] == header && p["in"] == "header"), "{what}: {header}");
        }
        for p in params.iter().filter(|p| p["in"] == "path") {
            assert_eq!(p["schema"]["pattern"], validate::ID_PATTERN, "{what}: {}", p["name"]);
        }
        if op["requestBody"].is_object() {
            for status in ["400", "413", "415", "422"] {
                assert!(responses.contains_key(status), "{what}: a body can be refused with {status}");
            }
        }
        let unavailable = &responses.get("503");
        if in_memory.contains(&path.as_str()) {
            assert!(unavailable.is_none(), "{what} does not touch the store");
        } else {
            let unavailable = unavailable.unwrap_or_else(|| panic!("{what}: 503"));
            let unavailable = match unavailable["$ref"].as_str() {
                Some(r) => &doc["components"]["responses"][r.rsplit('/').next().expect("name")],
                None => unavailable,
            };
            assert!(unavailable["headers"]["Retry-After"].is_object(), "{what}: Retry-After");
        }
    }
}

#[test]
fn links_name_their_operations() {
    let doc = json();
    let ids: BTreeSet<&str> =
        operations(&doc).iter().filter_map(|(m, p)| doc["paths"][p][m]["operationId"].as_str()).collect();
    let mut links = 0;
    for (method, path) in operations(&doc) {
        for response in doc["paths"][&path][&method]["responses"].as_object().expect("responses").values() {
            for (name, link) in response["links"].as_object().into_iter().flatten() {
                let target = link["operationId"].as_str().unwrap_or_else(|| panic!("{name}: operationId"));
                assert!(ids.contains(target), "{method} {path} links {name} to {target}");
                assert!(link.get("operation_id").is_none() && link.get("request_body").is_none(), "{link}");
                links += 1;
            }
        }
    }
    assert!(links >= 10, "{links} links");
}

#[test]
fn request_bodies_refuse_unknown_fields() {
    let doc = json();
    for name in ["RegisterBody", "EmailBody", "PlaceBody", "ItemBody", "CancelBody", "ReplayBody"] {
        let schema = &doc["components"]["schemas"][name];
        assert_eq!(schema["type"], "object", "{name}");
        assert_eq!(schema["additionalProperties"], false, "{name}");
    }
    let item = &doc["components"]["schemas"]["ItemBody"]["properties"];
    assert_eq!(
        (item["quantity"]["type"].as_str(), item["quantity"]["maximum"].as_f64()),
        (Some("integer"), Some(10_000.0))
    );
    assert_eq!(item["unit_price"]["minimum"].as_f64(), Some(1.0));
}

/// A value rule of `validate`.
type Rule = fn(&str) -> Result<(), &'static str>;

/// Each rule the service enforces against the pattern and lengths the document states.
#[test]
fn patterns_agree_with_the_rules() {
    let cases: [(Object, Rule, &[&str]); 4] = [
        (id(), check_id, &["a", "ord-1_A", "", "a b", "a\n", "ä", "a/b", &"x".repeat(64), &"x".repeat(65)]),
        (
            name(),
            check_name,
            &[
                "Ada",
                "  Ada  ",
                "",
                " ",
                "\u{a0}\u{3000}",
                "\u{2028}",
                "a\u{0}b",
                "a\u{85}",
                "é\u{200b}",
                "\u{180e}",
                "x\n",
                &"é".repeat(200),
                &"é".repeat(201),
                &format!(" {}", "a".repeat(199)),
                &format!(" {}", "a".repeat(200)),
            ],
        ),
        (text(), check_text, &["r", " ", "", "line\nbreak", "\u{7f}", "\u{9f}", "\u{a0}", &"é".repeat(201)]),
        (
            email(),
            check_email,
            &[
                "a@b.co",
                "ada.lovelace+shop@example.com",
                "",
                "a",
                "a@b",
                "@b.co",
                "a@@b.co",
                "a@b..co",
                "a@b.co.",
                "a@.b.co",
                "a b@c.de",
                "ä@b.co",
                "a@b.co\n",
                "a@b.c~",
                "!@#.$",
                &format!("{}@b.co", "a".repeat(195)),
                &format!("{}@b.co", "a".repeat(196)),
            ],
        ),
    ];
    for (schema, rule, samples) in cases {
        let pattern =
            regex::Regex::new(schema.pattern.as_deref().expect("a pattern")).expect("a valid pattern");
        let (min, max) = (schema.min_length.expect("min"), schema.max_length.expect("max"));
        for sample in samples {
            let len = sample.chars().count();
            let documented = pattern.is_match(sample) && (min..=max).contains(&len);
            assert_eq!(documented, rule(sample).is_ok(), "{:?}: {sample:?}", schema.pattern);
        }
    }
}
