//! The command endpoints: each sends one command to its aggregate and answers what was
//! committed.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Extension;
use factum::aggregate::Executed;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::consistency::Committed;
use super::extract::{integer, path_error, present, ApiJson, Context, Id};
use super::ApiError;
use crate::app::App;
use crate::customer::CustomerCommand;
use crate::openapi::{self, ErrorBody};
use crate::order::OrderCommand;
use crate::validate::{check_id, MAX_QUANTITY, MAX_UNIT_PRICE};

/// What a command's response says.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Done {
    /// The aggregate's id (generated when the request named none).
    id: String,
    /// The aggregate's version after the command.
    #[schema(minimum = 0)]
    version: u64,
    /// The types of the events recorded, in order; empty when nothing changed.
    events: Vec<&'static str>,
    /// The request's correlation id.
    correlation_id: Uuid,
}

/// The reply to a command: what it committed, with where its events landed in the
/// `x-factum-position` header.
async fn done<A: factum::Aggregate>(
    app: &App,
    executed: Executed<A>,
    ctx: &Context,
) -> Result<Committed<Done>, ApiError> {
    use factum::DomainEvent;
    let body = Done {
        id: executed.aggregate_id.clone(),
        version: executed.version.0,
        events: executed.events.iter().map(DomainEvent::event_type).collect(),
        correlation_id: ctx.correlation_id,
    };
    Committed::new(app, &executed, body).await
}

fn new_or_checked_id(id: Option<String>, prefix: &str) -> Result<String, ApiError> {
    match id {
        None => Ok(format!("{prefix}-{}", Uuid::now_v7().simple())),
        Some(id) => {
            check_id(&id).map_err(|why| {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_id",
                    format!("invalid id {id:?}: {why}"),
                )
            })?;
            Ok(id)
        }
    }
}

/// A customer to register.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"id": "ada", "name": "Ada Lovelace", "email": "ada@example.com"}))]
pub(super) struct RegisterBody {
    /// The customer's id; one is generated when absent.
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = openapi::id, required = false)]
    id: Option<String>,
    #[schema(schema_with = openapi::name)]
    name: String,
    #[schema(schema_with = openapi::email)]
    email: String,
}

/// Registers a customer.
#[utoipa::path(post, path = "/customers", tag = "customers", request_body = RegisterBody,
    responses(
        (status = 201, description = "Registered.", body = Done, links(
                ("ChangeEmail" = (operation_id = "change_email", parameters(("id" = "$response.body#/id")))),
                ("Deactivate" = (operation_id = "deactivate", parameters(("id" = "$response.body#/id")))),
                ("GetCustomer" = (operation_id = "get_customer", parameters(("id" = "$response.body#/id")))),
                ("PlaceOrder" = (operation_id = "place_order", request_body = json!({"customer_id": "$response.body#/id"}))),
            )),
        (status = 409, description = "A customer with this id exists (`customer_exists`), or a concurrency conflict survived the retries (`concurrency_conflict`).", body = ErrorBody),
        (status = 422, description = "An invalid id, name or email (`invalid_id`, `invalid_name`, `invalid_email`).", body = ErrorBody),
        (status = 503, response = openapi::Unavailable),
    ))]
pub(super) async fn register_customer(
    State(app): State<App>,
    Extension(ctx): Extension<Context>,
    ApiJson(body): ApiJson<RegisterBody>,
) -> Result<(StatusCode, Committed<Done>), ApiError> {
    let customer_id = new_or_checked_id(body.id, "cus")?;
    let command = CustomerCommand::Register { customer_id, name: body.name, email: body.email };
    Ok((
        StatusCode::CREATED,
        done(&app, app.customer_once(command, ctx.metadata(), ctx.command_id).await?, &ctx).await?,
    ))
}

/// A customer's new email.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "ada@example.net"}))]
pub(super) struct EmailBody {
    #[schema(schema_with = openapi::email)]
    email: String,
}

/// Changes a customer's email (the same email again changes nothing).
#[utoipa::path(put, path = "/customers/{id}/email", tag = "customers", request_body = EmailBody,
    params(("id" = inline(openapi::IdParam), Path, description = "The customer's id.")),
    responses(
        (status = 200, description = "Changed, or already this email (`events` empty).", body = Done),
        (status = 404, description = "No such customer (`customer_not_found`).", body = ErrorBody),
        (status = 409, description = "The customer is inactive (`customer_inactive`), or a concurrency conflict survived the retries (`concurrency_conflict`).", body = ErrorBody),
        (status = 422, description = "An invalid email (`invalid_email`).", body = ErrorBody),
        (status = 503, response = openapi::Unavailable),
    ))]
pub(super) async fn change_email(
    State(app): State<App>,
    Id(customer_id): Id,
    Extension(ctx): Extension<Context>,
    ApiJson(body): ApiJson<EmailBody>,
) -> Result<Committed<Done>, ApiError> {
    let command = CustomerCommand::ChangeEmail { customer_id, email: body.email };
    done(&app, app.customer_once(command, ctx.metadata(), ctx.command_id).await?, &ctx).await
}

/// Deactivates a customer: no new orders (deactivating twice changes nothing).
#[utoipa::path(post, path = "/customers/{id}/deactivate", tag = "customers",
    params(("id" = inline(openapi::IdParam), Path, description = "The customer's id.")),
    responses(
        (status = 200, description = "Deactivated, or already inactive (`events` empty).", body = Done),
        (status = 404, description = "No such customer (`customer_not_found`).", body = ErrorBody),
        (status = 409, description = "A concurrency conflict survived the retries (`concurrency_conflict`).", body = ErrorBody),
        (status = 503, response = openapi::Unavailable),
    ))]
pub(super) async fn deactivate(
    State(app): State<App>,
    Id(customer_id): Id,
    Extension(ctx): Extension<Context>,
) -> Result<Committed<Done>, ApiError> {
    done(
        &app,
        app.customer_once(CustomerCommand::Deactivate { customer_id }, ctx.metadata(), ctx.command_id)
            .await?,
        &ctx,
    )
    .await
}

/// An order to place.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"id": "o-1", "customer_id": "ada"}))]
pub(super) struct PlaceBody {
    /// The order's id; one is generated when absent.
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = openapi::id, required = false)]
    id: Option<String>,
    /// The ordering customer, who must be registered and active.
    #[schema(schema_with = openapi::id)]
    customer_id: String,
}

/// Places an order for an active customer.
#[utoipa::path(post, path = "/orders", tag = "orders", request_body = PlaceBody,
    responses(
        (status = 201, description = "Placed.", body = Done, links(
                ("AddItem" = (operation_id = "add_item", parameters(("id" = "$response.body#/id")))),
                ("RemoveItem" = (operation_id = "remove_item", parameters(("id" = "$response.body#/id")))),
                ("Confirm" = (operation_id = "confirm", parameters(("id" = "$response.body#/id")))),
                ("Ship" = (operation_id = "ship", parameters(("id" = "$response.body#/id")))),
                ("Cancel" = (operation_id = "cancel", parameters(("id" = "$response.body#/id")))),
                ("GetOrder" = (operation_id = "get_order", parameters(("id" = "$response.body#/id")))),
            )),
        (status = 404, description = "No such customer (`customer_not_found`).", body = ErrorBody),
        (status = 409, description = "An order with this id exists (`order_exists`), the customer is inactive (`customer_inactive`), or a concurrency conflict survived the retries (`concurrency_conflict`).", body = ErrorBody),
        (status = 422, description = "An invalid order or customer id (`invalid_id`, `invalid_customer_id`).", body = ErrorBody),
        (status = 503, response = openapi::Unavailable),
    ))]
pub(super) async fn place_order(
    State(app): State<App>,
    Extension(ctx): Extension<Context>,
    ApiJson(body): ApiJson<PlaceBody>,
) -> Result<(StatusCode, Committed<Done>), ApiError> {
    let order_id = new_or_checked_id(body.id, "ord")?;
    check_id(&body.customer_id).map_err(|why| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_customer_id",
            format!("invalid customer id: {why}"),
        )
    })?;
    let command = OrderCommand::Place { order_id, customer_id: body.customer_id };
    Ok((
        StatusCode::CREATED,
        done(&app, app.order_once(command, ctx.metadata(), ctx.command_id).await?, &ctx).await?,
    ))
}

/// Items to add to an order.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"sku": "teapot", "quantity": 2, "unit_price": 3500}))]
pub(super) struct ItemBody {
    /// The product.
    #[schema(schema_with = openapi::id)]
    sku: String,
    #[serde(deserialize_with = "integer")]
    #[schema(schema_with = quantity)]
    quantity: i64,
    #[serde(deserialize_with = "integer")]
    #[schema(schema_with = unit_price)]
    unit_price: i64,
}

fn quantity() -> utoipa::openapi::schema::Object {
    openapi::integer(1, MAX_QUANTITY, "How many; a line holds at most 10,000")
}

fn unit_price() -> utoipa::openapi::schema::Object {
    openapi::integer(1, MAX_UNIT_PRICE, "The price of one, in cents")
}

/// Adds items to an open order; the same SKU again adds to its line, at the same price.
#[utoipa::path(post, path = "/orders/{id}/items", tag = "orders", request_body = ItemBody,
    params(("id" = inline(openapi::IdParam), Path, description = "The order's id.")),
    responses(
        (status = 200, description = "Added.", body = Done, links(
                ("RemoveItem" = (operation_id = "remove_item", parameters(("id" = "$request.path.id"), ("sku" = "$request.body#/sku")))),
                ("Confirm" = (operation_id = "confirm", parameters(("id" = "$request.path.id")))),
            )),
        (status = 404, description = "No such order (`order_not_found`).", body = ErrorBody),
        (status = 409, description = "The order is not open (`order_locked`, `order_closed`), the SKU has another price (`price_mismatch`), the line would hold more than 10,000 (`too_many_items`), or a concurrency conflict survived the retries (`concurrency_conflict`).", body = ErrorBody),
        (status = 422, description = "An invalid SKU, quantity or price (`invalid_sku`, `invalid_quantity`, `invalid_price`).", body = ErrorBody),
        (status = 503, response = openapi::Unavailable),
    ))]
pub(super) async fn add_item(
    State(app): State<App>,
    Id(order_id): Id,
    Extension(ctx): Extension<Context>,
    ApiJson(body): ApiJson<ItemBody>,
) -> Result<Committed<Done>, ApiError> {
    let command = OrderCommand::AddItem {
        order_id,
        sku: body.sku,
        quantity: body.quantity,
        unit_price: body.unit_price,
    };
    done(&app, app.order_once(command, ctx.metadata(), ctx.command_id).await?, &ctx).await
}

/// Removes a line from an open order.
#[utoipa::path(delete, path = "/orders/{id}/items/{sku}", tag = "orders",
    params(
        ("id" = inline(openapi::IdParam), Path, description = "The order's id."),
        ("sku" = inline(openapi::IdParam), Path, description = "The product."),
    ),
    responses(
        (status = 200, description = "Removed.", body = Done),
        (status = 404, description = "No such order (`order_not_found`) or line (`item_not_found`).", body = ErrorBody),
        (status = 409, description = "The order is not open (`order_locked`, `order_closed`), or a concurrency conflict survived the retries (`concurrency_conflict`).", body = ErrorBody),
        (status = 503, response = openapi::Unavailable),
    ))]
pub(super) async fn remove_item(
    State(app): State<App>,
    path: Result<Path<(String, String)>, PathRejection>,
    Extension(ctx): Extension<Context>,
) -> Result<Committed<Done>, ApiError> {
    let Path((order_id, sku)) = path.map_err(path_error)?;
    check_id(&order_id)
        .map_err(|why| ApiError::bad_request("invalid_id", format!("invalid id {order_id:?}: {why}")))?;
    check_id(&sku)
        .map_err(|why| ApiError::bad_request("invalid_sku", format!("invalid sku {sku:?}: {why}")))?;
    done(
        &app,
        app.order_once(OrderCommand::RemoveItem { order_id, sku }, ctx.metadata(), ctx.command_id).await?,
        &ctx,
    )
    .await
}

/// Confirms a non-empty open order (confirming twice changes nothing).
#[utoipa::path(post, path = "/orders/{id}/confirm", tag = "orders",
    params(("id" = inline(openapi::IdParam), Path, description = "The order's id.")),
    responses(
        (status = 200, description = "Confirmed, or already confirmed (`events` empty).", body = Done, links(
                ("Ship" = (operation_id = "ship", parameters(("id" = "$request.path.id")))),
                ("Cancel" = (operation_id = "cancel", parameters(("id" = "$request.path.id")))),
            )),
        (status = 404, description = "No such order (`order_not_found`).", body = ErrorBody),
        (status = 409, description = "The order is empty (`order_empty`) or closed (`order_closed`), or a concurrency conflict survived the retries (`concurrency_conflict`).", body = ErrorBody),
        (status = 503, response = openapi::Unavailable),
    ))]
pub(super) async fn confirm(
    State(app): State<App>,
    Id(order_id): Id,
    Extension(ctx): Extension<Context>,
) -> Result<Committed<Done>, ApiError> {
    done(
        &app,
        app.order_once(OrderCommand::Confirm { order_id }, ctx.metadata(), ctx.command_id).await?,
        &ctx,
    )
    .await
}

/// Ships a confirmed order.
#[utoipa::path(post, path = "/orders/{id}/ship", tag = "orders",
    params(("id" = inline(openapi::IdParam), Path, description = "The order's id.")),
    responses(
        (status = 200, description = "Shipped.", body = Done),
        (status = 404, description = "No such order (`order_not_found`).", body = ErrorBody),
        (status = 409, description = "The order is not confirmed (`order_not_confirmed`) or is closed (`order_closed`), or a concurrency conflict survived the retries (`concurrency_conflict`).", body = ErrorBody),
        (status = 503, response = openapi::Unavailable),
    ))]
pub(super) async fn ship(
    State(app): State<App>,
    Id(order_id): Id,
    Extension(ctx): Extension<Context>,
) -> Result<Committed<Done>, ApiError> {
    done(&app, app.order_once(OrderCommand::Ship { order_id }, ctx.metadata(), ctx.command_id).await?, &ctx)
        .await
}

/// Why an order is cancelled.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"reason": "changed my mind"}))]
pub(super) struct CancelBody {
    #[schema(schema_with = openapi::text)]
    reason: String,
}

/// Cancels an order that has not shipped.
#[utoipa::path(post, path = "/orders/{id}/cancel", tag = "orders", request_body = CancelBody,
    params(("id" = inline(openapi::IdParam), Path, description = "The order's id.")),
    responses(
        (status = 200, description = "Cancelled.", body = Done),
        (status = 404, description = "No such order (`order_not_found`).", body = ErrorBody),
        (status = 409, description = "The order is shipped or cancelled (`order_closed`), or a concurrency conflict survived the retries (`concurrency_conflict`).", body = ErrorBody),
        (status = 422, description = "An invalid reason (`invalid_reason`).", body = ErrorBody),
        (status = 503, response = openapi::Unavailable),
    ))]
pub(super) async fn cancel(
    State(app): State<App>,
    Id(order_id): Id,
    Extension(ctx): Extension<Context>,
    ApiJson(body): ApiJson<CancelBody>,
) -> Result<Committed<Done>, ApiError> {
    done(
        &app,
        app.order_once(
            OrderCommand::Cancel { order_id, reason: body.reason },
            ctx.metadata(),
            ctx.command_id,
        )
        .await?,
        &ctx,
    )
    .await
}
