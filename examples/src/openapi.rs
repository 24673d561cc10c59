//! The OpenAPI 3.1 document served at `/openapi.json`, written out by hand: the API is
//! small, and a test checks that every route the router serves is documented here.

use serde_json::{json, Value};

/// Every documented (method, path) pair; `tests/http.rs` drives each one.
pub const OPERATIONS: &[(&str, &str)] = &[
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
    ("post", "/ops/replay"),
    ("post", "/ops/retention/cleanup"),
    ("get", "/health"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
];

fn schema(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn body(name: &str) -> Value {
    json!({ "required": true, "content": { "application/json": { "schema": schema(name) } } })
}

fn ok(status: &str, name: &str, description: &str) -> Value {
    json!({ status: { "description": description, "content": { "application/json": { "schema": schema(name) } } } })
}

fn param(name: &str, location: &str, description: &str) -> Value {
    json!({ "name": name, "in": location, "required": location == "path", "description": description,
            "schema": { "type": "string" } })
}

/// A command's operation: its summary, path parameters, body schema and success status.
fn command(summary: &str, params: &[Value], request: Option<&str>, status: &str, errors: &[&str]) -> Value {
    let mut op = json!({
        "summary": summary,
        "parameters": params,
        "responses": ok(status, "Done", "The events were committed."),
    });
    if let Some(name) = request {
        op["requestBody"] = body(name);
    }
    let responses = op["responses"].as_object_mut().expect("an object");
    for code in errors {
        responses.insert((*code).to_owned(), json!({ "$ref": format!("#/components/responses/E{code}") }));
    }
    op
}

fn string(max: usize) -> Value {
    json!({ "type": "string", "maxLength": max })
}

fn id() -> Value {
    json!({ "type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$" })
}

/// The document.
pub fn document() -> Value {
    let cid = param("id", "path", "The customer's id.");
    let oid = param("id", "path", "The order's id.");
    let name = param("name", "path", "The projection's name.");
    let cmd_errors = ["400", "404", "409", "413", "415", "422"];
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "factum example: orders and customers",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Commands go to event-sourced aggregates; queries read projections, which \
                trail the commands by milliseconds. Send `x-correlation-id` (a UUID) to tie a request's \
                events together; it is echoed on every response."
        },
        "paths": {
            "/customers": { "post": command("Register a customer", &[], Some("Register"), "201", &cmd_errors) },
            "/customers/{id}": { "get": {
                "summary": "A customer's profile, orders and totals (read model)",
                "parameters": [cid],
                "responses": ok("200", "CustomerView", "The customer."),
            } },
            "/customers/{id}/email": { "put": command("Change a customer's email", std::slice::from_ref(&cid), Some("ChangeEmail"), "200", &cmd_errors) },
            "/customers/{id}/deactivate": { "post": command("Deactivate a customer", std::slice::from_ref(&cid), None, "200", &cmd_errors) },
            "/orders": { "post": command("Place an order for an active customer", &[], Some("Place"), "201", &cmd_errors) },
            "/orders/{id}": { "get": {
                "summary": "An order's summary: status, lines, total (read model)",
                "parameters": [oid],
                "responses": ok("200", "OrderView", "The order."),
            } },
            "/orders/{id}/items": { "post": command("Add items to an open order", std::slice::from_ref(&oid), Some("AddItem"), "200", &cmd_errors) },
            "/orders/{id}/items/{sku}": { "delete": command("Remove a line from an open order",
                &[oid.clone(), param("sku", "path", "The product.")], None, "200", &cmd_errors) },
            "/orders/{id}/confirm": { "post": command("Confirm a non-empty open order", std::slice::from_ref(&oid), None, "200", &cmd_errors) },
            "/orders/{id}/ship": { "post": command("Ship a confirmed order", std::slice::from_ref(&oid), None, "200", &cmd_errors) },
            "/orders/{id}/cancel": { "post": command("Cancel an order that has not shipped", std::slice::from_ref(&oid), Some("Cancel"), "200", &cmd_errors) },
            "/audit": { "get": {
                "summary": "The audit log: every event with its metadata, oldest first",
                "parameters": [
                    param("aggregate_type", "query", "`Order` or `Customer`."),
                    param("aggregate_id", "query", "One aggregate."),
                    param("correlation_id", "query", "One request's events."),
                    param("after", "query", "Entries after this global position."),
                    param("limit", "query", "1 to 1000 (default 100)."),
                ],
                "responses": ok("200", "AuditLog", "The entries."),
            } },
            "/ops/projections": { "get": {
                "summary": "Every projection's status",
                "responses": ok("200", "Statuses", "The statuses."),
            } },
            "/ops/projections/{name}": { "get": {
                "summary": "One projection's status, with its lag measured now",
                "parameters": [name],
                "responses": ok("200", "Status", "The status."),
            } },
            "/ops/projections/{name}/rebuild": { "post": {
                "summary": "Clear the read model and replay the log into it, while writes go on",
                "parameters": [name],
                "responses": ok("200", "Replay", "The rebuild's report."),
            } },
            "/ops/replay": { "post": {
                "summary": "Replay matching events, oldest first, through a tally (changes nothing)",
                "requestBody": body("ReplayFilter"),
                "responses": ok("200", "Replay", "The replay's report, with counts by event type."),
            } },
            "/ops/retention/cleanup": { "post": {
                "summary": "Run retention's clean-up now (safe mode, 90 days)",
                "responses": { "200": { "description": "What was deleted.",
                    "content": { "application/json": { "schema": { "type": "object" } } } } },
            } },
            "/health": { "get": {
                "summary": "200 when the database answers; projection states",
                "responses": { "200": { "description": "Healthy." }, "503": { "description": "The database does not answer." } },
            } },
            "/metrics": { "get": {
                "summary": "Prometheus metrics (OpenMetrics text format)",
                "responses": { "200": { "description": "The metrics.", "content": { "application/openmetrics-text": {} } } },
            } },
            "/openapi.json": { "get": {
                "summary": "This document",
                "responses": { "200": { "description": "OpenAPI 3.1." } },
            } },
        },
        "components": {
            "schemas": {
                "Register": { "type": "object", "additionalProperties": false, "required": ["name", "email"],
                    "properties": { "id": id(), "name": string(200), "email": string(200) } },
                "ChangeEmail": { "type": "object", "additionalProperties": false, "required": ["email"],
                    "properties": { "email": string(200) } },
                "Place": { "type": "object", "additionalProperties": false, "required": ["customer_id"],
                    "properties": { "id": id(), "customer_id": id() } },
                "AddItem": { "type": "object", "additionalProperties": false, "required": ["sku", "quantity", "unit_price"],
                    "properties": { "sku": id(),
                        "quantity": { "type": "integer", "minimum": 1, "maximum": 10000 },
                        "unit_price": { "type": "integer", "minimum": 1, "maximum": 100000000, "description": "cents" } } },
                "Cancel": { "type": "object", "additionalProperties": false, "required": ["reason"],
                    "properties": { "reason": string(200) } },
                "ReplayFilter": { "type": "object", "additionalProperties": false,
                    "properties": { "aggregate_type": { "type": "string" }, "aggregate_id": { "type": "string" },
                        "event_types": { "type": "array", "items": { "type": "string" } },
                        "topics": { "type": "array", "items": { "type": "string" }, "description": "`*` one word, `#` zero or more" } } },
                "Done": { "type": "object", "properties": { "id": { "type": "string" },
                    "version": { "type": "integer" }, "events": { "type": "array", "items": { "type": "string" } },
                    "correlation_id": { "type": "string", "format": "uuid" } } },
                "Line": { "type": "object", "properties": { "sku": { "type": "string" },
                    "quantity": { "type": "integer" }, "unit_price": { "type": "integer" } } },
                "OrderView": { "type": "object", "properties": { "order_id": { "type": "string" },
                    "customer_id": { "type": "string" },
                    "status": { "enum": ["open", "confirmed", "shipped", "cancelled"] },
                    "lines": { "type": "array", "items": schema("Line") }, "total": { "type": "integer" },
                    "version": { "type": "integer" }, "updated_at": { "type": "string", "format": "date-time" } } },
                "CustomerView": { "type": "object", "properties": { "customer_id": { "type": "string" },
                    "name": { "type": "string" }, "email": { "type": "string" }, "active": { "type": "boolean" },
                    "version": { "type": "integer" },
                    "totals": { "type": "object", "properties": { "orders": { "type": "integer" },
                        "open": { "type": "integer" }, "confirmed": { "type": "integer" },
                        "shipped": { "type": "integer" }, "cancelled": { "type": "integer" },
                        "spent": { "type": "integer", "description": "cents, confirmed and shipped orders" } } },
                    "orders": { "type": "array", "items": { "type": "object" } } } },
                "AuditLog": { "type": "array", "items": { "type": "object" } },
                "Status": { "type": "object", "properties": { "name": { "type": "string" },
                    "state": { "type": "string" }, "error": { "type": ["string", "null"] },
                    "checkpoint": { "type": "integer" }, "lag": { "type": ["integer", "null"] },
                    "handled": { "type": "integer" }, "skipped": { "type": "integer" } } },
                "Statuses": { "type": "array", "items": schema("Status") },
                "Replay": { "type": "object", "properties": { "replayed": { "type": "integer" },
                    "failed": { "type": "integer" }, "duration_ms": { "type": "integer" },
                    "stopped_early": { "type": "boolean" }, "errors": { "type": "array" },
                    "by_type": { "type": "object" } } },
                "Error": { "type": "object", "required": ["error", "message"],
                    "properties": { "error": { "type": "string", "description": "a stable code" },
                        "message": { "type": "string", "description": "what was wrong" } } },
            },
            "responses": {
                "E400": { "description": "Malformed JSON, or an invalid id or header.", "content": { "application/json": { "schema": schema("Error") } } },
                "E404": { "description": "No such customer, order or line.", "content": { "application/json": { "schema": schema("Error") } } },
                "E409": { "description": "The aggregate's state forbids this, or a concurrency conflict survived the retries.", "content": { "application/json": { "schema": schema("Error") } } },
                "E413": { "description": "The body is larger than 16 KiB.", "content": { "application/json": { "schema": schema("Error") } } },
                "E415": { "description": "The body is not `application/json`.", "content": { "application/json": { "schema": schema("Error") } } },
                "E422": { "description": "Missing or unknown fields, wrong types, or values the domain refuses.", "content": { "application/json": { "schema": schema("Error") } } },
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_is_documented_and_nothing_else() {
        let doc = document();
        let paths = doc["paths"].as_object().expect("paths");
        let mut documented: Vec<(String, String)> = paths
            .iter()
            .flat_map(|(path, ops)| {
                ops.as_object().expect("ops").keys().map(move |m| (m.clone(), path.clone()))
            })
            .collect();
        documented.sort();
        let mut listed: Vec<(String, String)> =
            OPERATIONS.iter().map(|(m, p)| ((*m).to_owned(), (*p).to_owned())).collect();
        listed.sort();
        assert_eq!(documented, listed);
        // Every $ref resolves.
        let text = doc.to_string();
        for piece in text.split("\"$ref\":\"#/components/").skip(1) {
            let target = &piece[..piece.find('"').expect("end of ref")];
            let (kind, name) = target.split_once('/').expect("kind/name");
            assert!(doc["components"][kind][name].is_object(), "dangling $ref {target}");
        }
    }
}
