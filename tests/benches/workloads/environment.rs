//! The environment: the benchmark's database, fresh schemas and stores, and the raw baselines' INSERT.

use super::*;

pub(super) struct Bench {
    pub(super) url: String,
    pub(super) admin: PgPool,
    pub(super) reps: usize,
    pub(super) schema_seq: AtomicU64,
}

/// Whether `fresh_store` puts schema version 6's query indexes back in place of version
/// 7's, for the `ab` workload's A/B of W3 and W6 on one build.
pub(super) static V6_INDEXES: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub(super) const V6_INDEX_SQL: &str =
    "DROP INDEX {schema}.events_type_topic_idx, {schema}.events_occurred_brin, \
    {schema}.events_recorded_brin, {schema}.events_tracing_brin, {schema}.events_metadata_idx;
    CREATE INDEX events_type_idx ON {schema}.events (event_type);
    CREATE INDEX events_topic_idx ON {schema}.events (topic);
    CREATE INDEX events_aggregate_id_idx ON {schema}.events (aggregate_id);
    CREATE INDEX events_occurred_idx ON {schema}.events (occurred_at);
    CREATE INDEX events_recorded_idx ON {schema}.events (recorded_at);
    CREATE INDEX events_metadata_idx ON {schema}.events USING GIN (metadata jsonb_path_ops);";

pub(super) const POOL: u32 = 24;
pub(super) const CONCURRENCY: usize = 16;
pub(super) const STREAMS: usize = 200;

impl Bench {
    /// A fresh, empty schema with the framework's tables in it, and a store on it.
    pub(super) async fn fresh_store(&self, tag: &str) -> (PostgresStore, String) {
        self.fresh_store_with(tag, true).await
    }

    /// `fresh_store`, with the query indexes or without (the lean schema).
    pub(super) async fn fresh_store_with(&self, tag: &str, query_indexes: bool) -> (PostgresStore, String) {
        let schema = self.fresh_schema(tag).await;
        let config = PostgresConfig::from_url(&self.url)
            .expect("bench url")
            .with_schema(SchemaNames::in_schema(schema.clone()).query_indexes(query_indexes))
            .with_pool(PoolSettings::default().max_connections(POOL));
        let store = PostgresStore::connect(config).await.expect("connect");
        store.migrate().await.expect("migrate");
        if query_indexes && V6_INDEXES.load(Ordering::Relaxed) {
            sqlx::raw_sql(AssertSqlSafe(V6_INDEX_SQL.replace("{schema}", &schema)))
                .execute(&self.admin)
                .await
                .unwrap();
        }
        (store, schema)
    }

    pub(super) async fn fresh_schema(&self, tag: &str) -> String {
        let n = self.schema_seq.fetch_add(1, Ordering::Relaxed);
        let schema = format!("bench_{tag}_{n}");
        sqlx::query(AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {schema} CASCADE")))
            .execute(&self.admin)
            .await
            .unwrap();
        schema
    }

    pub(super) async fn drop_schema(&self, schema: &str) {
        sqlx::query(AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {schema} CASCADE")))
            .execute(&self.admin)
            .await
            .unwrap();
    }

    /// A pool for raw statements, of the same size as the store's.
    pub(super) async fn raw_pool(&self) -> PgPool {
        PgPoolOptions::new().max_connections(POOL).connect(&self.url).await.expect("raw pool")
    }

    /// Flushes dirty buffers so that a checkpoint does not land inside a measurement.
    pub(super) async fn settle(&self) {
        sqlx::query("CHECKPOINT").execute(&self.admin).await.unwrap();
    }
}

/// One raw `INSERT` of `e` at `version + 1` of the stream `Account-{id}`, in its own
/// transaction: the raw baselines' append.
pub(super) async fn raw_insert(
    conn: &mut PgConnection,
    sql: &'static str,
    e: &NewEvent,
    id: &str,
    version: u64,
) {
    sqlx::query(sql)
        .bind(e.event_id)
        .bind("Account")
        .bind(id)
        .bind((version + 1) as i64)
        .bind(&e.event_type)
        .bind(e.schema_version as i32)
        .bind(e.topic.as_deref())
        .bind(&e.payload)
        .bind(e.metadata.to_json())
        .bind(e.occurred_at)
        .bind(e.metadata.correlation_id)
        .bind(e.metadata.causation_id)
        .execute(conn)
        .await
        .expect("raw insert");
}

/// A statement made at run time, shared so that each use only counts a reference.
pub(super) fn statement(sql: String) -> SqlStr {
    AssertSqlSafe(Arc::<str>::from(sql)).into_sql_str()
}

pub(super) fn raw_insert_sql(schema: &str) -> String {
    format!(
        "INSERT INTO {schema}.events (event_id, aggregate_type, aggregate_id, version, event_type, \
         event_version, topic, event_data, metadata, occurred_at, correlation_id, causation_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
    )
}
