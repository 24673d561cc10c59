//! The SQL text of the store's operations: every statement the store sends at run time
//! lives in `sql/statements/*.sql`, beside the migrations, with the configured names
//! filled in once per store.

use sqlx::SqlStr;

use crate::config::SchemaNames;
use crate::schema::statement;

pub(crate) const INSERT_COLUMNS: &str =
    "event_id, aggregate_type, aggregate_id, version, event_type, event_version, \
     topic, event_data, metadata, occurred_at, correlation_id, causation_id";

pub(crate) const COLUMNS: &str = "global_position, transaction_id, event_id, aggregate_type, aggregate_id, \
     version, event_type, event_version, topic, event_data, metadata, occurred_at, recorded_at";

/// The SQL text for the configured names, expanded once (shared: a clone is a reference count).
pub(crate) struct Sql {
    pub(crate) append: SqlStr,
    /// The append function run in a subtransaction, for appends in a caller's transaction.
    pub(crate) append_in: SqlStr,
    /// Enters a projection's batch fence and checks its checkpoint (see `fence`).
    pub(crate) fence: SqlStr,
    /// The checked appends at a known version: one event; several.
    pub(crate) append_one: SqlStr,
    pub(crate) append_many: SqlStr,
    /// Appends to several streams in one statement: each on its own (a coalesced flush),
    /// or all or nothing.
    pub(crate) append_streams: SqlStr,
    pub(crate) append_atomic: SqlStr,
    pub(crate) legacy_heads: SqlStr,
    pub(crate) head: SqlStr,
    pub(crate) read_stream: SqlStr,
    /// An aggregate's load: its first page (with its snapshot in `load_aggregate`), then
    /// the rest in a transaction under the stream-index settings (`payloads.rs`).
    pub(crate) load_aggregate: SqlStr,
    pub(crate) read_payloads: SqlStr,
    pub(crate) read_payloads_rest: SqlStr,
    pub(crate) stream_index_only: SqlStr,
    pub(crate) read_all: SqlStr,
    pub(crate) read_category: SqlStr,
    /// A page of the log with a reader's selector applied (see `read_log.rs`).
    pub(crate) read_log: SqlStr,
    /// Waits for the synchronous standbys (see `durable.sql`).
    pub(crate) durable: SqlStr,
    pub(crate) latest_position: SqlStr,
    pub(crate) by_ids: SqlStr,
    pub(crate) select: SqlStr,
    pub(crate) count: SqlStr,
    pub(crate) count_streams: SqlStr,
    pub(crate) unread: SqlStr,
    pub(crate) checkpoint_of: SqlStr,
    /// One chunk of retention, through the owner's definer function.
    pub(crate) retain: SqlStr,
    pub(crate) save_snapshot: SqlStr,
    pub(crate) load_snapshot: SqlStr,
    pub(crate) delete_snapshot: SqlStr,
    pub(crate) load_checkpoint: SqlStr,
    pub(crate) save_checkpoint: SqlStr,
    pub(crate) advance_checkpoint: SqlStr,
    pub(crate) count_after: SqlStr,
    pub(crate) record_failure: SqlStr,
    pub(crate) failures: SqlStr,
    pub(crate) record_stop: SqlStr,
    pub(crate) stopped: SqlStr,
    pub(crate) resolve_failure: SqlStr,
    pub(crate) storage_bytes: SqlStr,
    /// The registry of projection builds (see `builds.rs`).
    pub(crate) build_lock: SqlStr,
    pub(crate) builds: SqlStr,
    pub(crate) insert_build: SqlStr,
    pub(crate) set_build_state: SqlStr,
    pub(crate) read_models: SqlStr,
    /// Durable timers.
    pub(crate) set_timer: SqlStr,
    pub(crate) cancel_timers: SqlStr,
    pub(crate) timers: SqlStr,
    pub(crate) remove_timer: SqlStr,
    /// The members of a build's slices: a heartbeat, and one leaving.
    pub(crate) heartbeat: SqlStr,
    pub(crate) leave: SqlStr,
    /// Operators' requests to consumers, and the count of what retention may delete.
    pub(crate) request: SqlStr,
    pub(crate) pending_request: SqlStr,
    pub(crate) complete_request: SqlStr,
    pub(crate) retainable_count: SqlStr,
    pub(crate) event_id_constraint: String,
    pub(crate) stream_version_constraint: String,
    pub(crate) transaction_order_constraint: String,
}

/// A statement's file in `sql/statements/`.
macro_rules! statement {
    ($name:literal) => {
        include_str!(concat!("../../sql/statements/", $name, ".sql"))
    };
}

impl Sql {
    pub(crate) fn new(names: &SchemaNames) -> Sql {
        let e = |t: &str| {
            statement(&t.replace("{columns}", COLUMNS).replace("{insert_columns}", INSERT_COLUMNS), names)
        };
        let streams = |all: &str| e(&statement!("append_streams").replace("{all}", all));
        Sql {
            append: e(statement!("append")),
            append_in: e(statement!("append_in")),
            fence: e(statement!("fence")),
            append_one: e(statement!("append_one")),
            append_many: e(statement!("append_many")),
            append_streams: streams("c.ok[b.idx]"),
            append_atomic: streams("false <> ALL (c.ok)"),
            legacy_heads: e(statement!("legacy_heads")),
            head: e(statement!("head")),
            read_stream: e(statement!("read_stream")),
            load_aggregate: e(statement!("load_aggregate")),
            read_payloads: e(statement!("read_payloads")),
            read_payloads_rest: e(statement!("read_payloads_rest")),
            stream_index_only: e(statement!("stream_index_only")),
            read_all: e(statement!("read_all")),
            read_category: e(statement!("read_category")),
            read_log: e(statement!("read_log")),
            latest_position: e(statement!("latest_position")),
            durable: e(statement!("durable")),
            by_ids: e(statement!("by_ids")),
            select: e(statement!("select")),
            count: e(statement!("count")),
            count_streams: e(statement!("count_streams")),
            unread: e(statement!("unread")),
            checkpoint_of: e(statement!("checkpoint_of")),
            retain: e(statement!("retain")),
            save_snapshot: e(statement!("save_snapshot")),
            load_snapshot: e(statement!("load_snapshot")),
            delete_snapshot: e(statement!("delete_snapshot")),
            load_checkpoint: e(statement!("load_checkpoint")),
            save_checkpoint: e(statement!("save_checkpoint")),
            advance_checkpoint: e(statement!("advance_checkpoint")),
            count_after: e(statement!("count_after")),
            record_failure: e(statement!("record_failure")),
            failures: e(statement!("failures")),
            record_stop: e(statement!("record_stop")),
            build_lock: e(statement!("build_lock")),
            builds: e(statement!("builds")),
            insert_build: e(statement!("insert_build")),
            set_build_state: e(statement!("set_build_state")),
            read_models: e(statement!("read_models")),
            heartbeat: e(statement!("heartbeat")),
            set_timer: e(statement!("set_timer")),
            cancel_timers: e(statement!("cancel_timers")),
            timers: e(statement!("timers")),
            remove_timer: e(statement!("remove_timer")),
            leave: e(statement!("leave")),
            stopped: e(statement!("stopped")),
            resolve_failure: e(statement!("resolve_failure")),
            storage_bytes: e(statement!("storage_bytes")),
            request: e(statement!("request")),
            pending_request: e(statement!("pending_request")),
            complete_request: e(statement!("complete_request")),
            retainable_count: e(statement!("retainable_count")),
            event_id_constraint: format!("{}_event_id_key", names.events),
            stream_version_constraint: format!("{}_stream_version_key", names.events),
            transaction_order_constraint: format!("{}_transaction_order", names.streams),
        }
    }
}
