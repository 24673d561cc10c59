//! The physical limit: the store's appends and catch-up against a minimal raw table (the
//! same columns with only a primary key, a unique event id and a unique stream/version),
//! beside the same-schema raw baseline of W1, W4 and W5, for the default schema (every
//! filter indexed) and the lean one (`SchemaNames::query_indexes(false)`), with the WAL
//! each writes per event. Selected as the workload `physical`.

use super::*;

/// The minimal raw table: what PostgreSQL needs to keep an append-only log with unique
/// event ids and versions, and nothing more.
const MINIMAL_TABLE: &str = "CREATE TABLE {schema}.events (
    global_position BIGSERIAL PRIMARY KEY,
    event_id UUID NOT NULL,
    aggregate_type VARCHAR(255) NOT NULL,
    aggregate_id VARCHAR(255) NOT NULL,
    version BIGINT NOT NULL CHECK (version > 0),
    event_type VARCHAR(255) NOT NULL,
    event_version INTEGER NOT NULL DEFAULT 1 CHECK (event_version > 0),
    topic VARCHAR(255),
    event_data JSONB NOT NULL,
    metadata JSONB NOT NULL DEFAULT '{}'::jsonb,
    occurred_at TIMESTAMPTZ NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    correlation_id UUID,
    causation_id UUID,
    transaction_id BIGINT NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
    UNIQUE (event_id),
    UNIQUE (aggregate_type, aggregate_id, version))";

/// Which table a phase writes: the framework's schema (default or lean) or a raw one.
#[derive(Clone, Copy, PartialEq)]
pub(super) enum Table {
    Default,
    Lean,
    SameSchemaRaw,
    Minimal,
}

const TABLES: [Table; 4] = [Table::Minimal, Table::SameSchemaRaw, Table::Default, Table::Lean];

impl Bench {
    /// A fresh schema holding `table`, and a store on it for the framework's tables.
    pub(super) async fn table(&self, tag: &str, table: Table) -> (Option<PostgresStore>, String) {
        if table == Table::Minimal {
            let schema = self.fresh_schema(tag).await;
            sqlx::query(AssertSqlSafe(format!("CREATE SCHEMA {schema}"))).execute(&self.admin).await.unwrap();
            sqlx::query(AssertSqlSafe(MINIMAL_TABLE.replace("{schema}", &schema)))
                .execute(&self.admin)
                .await
                .unwrap();
            return (None, schema);
        }
        let schema = self.fresh_schema(tag).await;
        let names = SchemaNames::in_schema(schema.clone()).query_indexes(table != Table::Lean);
        let config = PostgresConfig::from_url(&self.url)
            .expect("bench url")
            .with_schema(names)
            .with_pool(PoolSettings::default().max_connections(POOL));
        let store = PostgresStore::connect(config).await.expect("connect");
        store.migrate().await.expect("migrate");
        (Some(store), schema)
    }

    async fn wal_lsn(&self) -> String {
        sqlx::query_scalar("SELECT pg_current_wal_lsn()::text").fetch_one(&self.admin).await.unwrap()
    }

    /// WAL bytes written since `lsn`, per event.
    async fn wal_per_event(&self, lsn: &str, events: usize) -> f64 {
        let bytes: f64 =
            sqlx::query_scalar("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn)::float8")
                .bind(lsn)
                .fetch_one(&self.admin)
                .await
                .unwrap();
        bytes / events as f64
    }
}

/// W1 on `table`: appends of one event, 16 tasks over 200 streams; with WAL per event.
async fn append_one(b: &Bench, table: Table) -> (Rep, f64) {
    let (store, schema) = b.table("p1", table).await;
    let raw = matches!(table, Table::Minimal | Table::SameSchemaRaw);
    let mut conns = Vec::new();
    if raw {
        for _ in 0..CONCURRENCY {
            conns.push(tokio::sync::Mutex::new(PgConnection::connect(&b.url).await.expect("raw connection")));
        }
    }
    let conns = Arc::new(conns);
    let sql: &'static str = Box::leak(raw_insert_sql(&schema).into_boxed_str());
    b.settle().await;
    let lsn = b.wal_lsn().await;
    let rep = concurrent(W1_APPENDS, move |t, stream, version| {
        let conns = conns.clone();
        let store = store.clone();
        async move {
            let id = format!("acc-{stream}");
            let e = new_event(&id, 1);
            if let Some(store) = store {
                let s = StreamId::new("Account", id.as_str()).unwrap();
                store.append(&s, ExpectedVersion::Exact(Version(version)), vec![e]).await.expect("append");
                return;
            }
            let mut conn = conns[t].lock().await;
            raw_insert(&mut conn, sql, &e, &id, version).await;
        }
    })
    .await;
    let wal = b.wal_per_event(&lsn, W1_APPENDS).await;
    b.drop_schema(&schema).await;
    (rep, wal)
}

/// Stores `total` events on `schema.events` in raw `INSERT`s of 1,000, one stream each, as
/// `bulk` does through the store (W5's raw baseline too); returns the latencies.
pub(super) async fn raw_bulk(pool: &PgPool, schema: &str, total: usize) -> Vec<Duration> {
    let sql = statement(format!(
        "INSERT INTO {schema}.events (event_id, aggregate_type, aggregate_id, version, event_type, \
         event_version, topic, event_data, metadata, occurred_at, correlation_id, causation_id) \
         SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::int[], \
         $7::text[], $8::jsonb[], $9::jsonb[], $10::timestamptz[], $11::uuid[], $12::uuid[])"
    ));
    let mut lat = Vec::new();
    let per_stream = total.div_ceil(STREAMS).max(1);
    let (mut done, mut version, mut s) = (0, 0usize, 0);
    while done < total {
        let k = (total - done).min(1_000);
        let id = format!("bulk-{s}");
        let events: Vec<NewEvent> = (0..k).map(|_| new_event(&id, 1)).collect();
        let began = Instant::now();
        sqlx::query(sql.clone())
            .bind(events.iter().map(|e| e.event_id).collect::<Vec<_>>())
            .bind(vec!["Account"; k])
            .bind(vec![id.as_str(); k])
            .bind((1..=k).map(|i| (version + i) as i64).collect::<Vec<_>>())
            .bind(events.iter().map(|e| e.event_type.as_str()).collect::<Vec<_>>())
            .bind(events.iter().map(|e| e.schema_version as i32).collect::<Vec<_>>())
            .bind(events.iter().map(|e| e.topic.as_deref()).collect::<Vec<_>>())
            .bind(events.iter().map(|e| &e.payload).collect::<Vec<_>>())
            .bind(events.iter().map(|e| e.metadata.to_json()).collect::<Vec<_>>())
            .bind(events.iter().map(|e| e.occurred_at).collect::<Vec<_>>())
            .bind(events.iter().map(|e| e.metadata.correlation_id).collect::<Vec<_>>())
            .bind(events.iter().map(|e| e.metadata.causation_id).collect::<Vec<_>>())
            .execute(pool)
            .await
            .expect("raw bulk");
        lat.push(began.elapsed());
        done += k;
        version += k;
        if version >= per_stream {
            s += 1;
            version = 0;
        }
    }
    lat
}

/// W5 on `table`: bulk appends of 1,000; with WAL and stored bytes per event.
async fn append_bulk(b: &Bench, table: Table) -> (Rep, f64, f64) {
    let (store, schema) = b.table("p5", table).await;
    let pool = b.raw_pool().await;
    b.settle().await;
    let lsn = b.wal_lsn().await;
    let began = Instant::now();
    let lat = match &store {
        Some(store) => bulk(store, W5_EVENTS, "bulk").await,
        None => raw_bulk(&pool, &schema, W5_EVENTS).await,
    };
    let rep = Rep { value: W5_EVENTS as f64 / began.elapsed().as_secs_f64(), latencies: lat, cpu: None };
    let wal = b.wal_per_event(&lsn, W5_EVENTS).await;
    let stored: i64 =
        sqlx::query_scalar(AssertSqlSafe(format!("SELECT pg_total_relation_size('{schema}.events')")))
            .fetch_one(&pool)
            .await
            .unwrap();
    b.drop_schema(&schema).await;
    (rep, wal, stored as f64 / W5_EVENTS as f64)
}

/// W4's raw catch-up on the minimal table: keyset pages of 1,000 in position order (the
/// only order it has an index for), every column decoded.
async fn catch_up_minimal(b: &Bench) -> Rep {
    let (_, schema) = b.table("p4", Table::Minimal).await;
    let pool = b.raw_pool().await;
    raw_bulk(&pool, &schema, W4_EVENTS).await;
    sqlx::query(AssertSqlSafe(format!("VACUUM ANALYZE {schema}.events"))).execute(&b.admin).await.unwrap();
    b.settle().await;
    let sql = statement(format!(
        "SELECT global_position, transaction_id, event_id, aggregate_type, aggregate_id, version, \
         event_type, event_version, topic, event_data, metadata, occurred_at, recorded_at \
         FROM {schema}.events WHERE global_position > $1 ORDER BY global_position LIMIT $2"
    ));
    let began = Instant::now();
    let (mut after, mut n, mut pages) = (0i64, 0, Vec::new());
    loop {
        let page_began = Instant::now();
        let rows = sqlx::query(sql.clone()).bind(after).bind(W4_BATCH as i64).fetch_all(&pool).await.unwrap();
        if rows.is_empty() {
            break;
        }
        for row in &rows {
            after = row.get(0);
            let _: i64 = row.get(1);
            let _: Uuid = row.get(2);
            let _: String = row.get(3);
            let _: String = row.get(4);
            let _: i64 = row.get(5);
            let _: String = row.get(6);
            let _: i32 = row.get(7);
            let _: Option<String> = row.get(8);
            let _: Value = row.get(9);
            let _: Value = row.get(10);
            let _: DateTime<Utc> = row.get(11);
            let _: DateTime<Utc> = row.get(12);
            n += 1;
        }
        pages.push(page_began.elapsed());
    }
    assert_eq!(n, W4_EVENTS);
    let rep = Rep { value: n as f64 / began.elapsed().as_secs_f64(), latencies: pages, cpu: None };
    b.drop_schema(&schema).await;
    rep
}

/// The figures of one table's phases, over the repetitions.
#[derive(Default)]
struct Phases {
    one: Vec<Rep>,
    one_wal: Vec<Rep>,
    bulk: Vec<Rep>,
    bulk_wal: Vec<Rep>,
    stored: Vec<Rep>,
    catch_up: Vec<Rep>,
}

fn value(v: f64) -> Rep {
    Rep { value: v, latencies: Vec::new(), cpu: None }
}

/// Runs the phases, alternating the tables within each repetition, and prints their table.
pub(super) async fn run(b: &Bench) -> Vec<Value> {
    let mut phases: Vec<Phases> = TABLES.iter().map(|_| Phases::default()).collect();
    for _ in 0..b.reps {
        for (i, &table) in TABLES.iter().enumerate() {
            let (rep, wal) = append_one(b, table).await;
            phases[i].one.push(rep);
            phases[i].one_wal.push(value(wal));
        }
        for (i, &table) in TABLES.iter().enumerate() {
            let (rep, wal, stored) = append_bulk(b, table).await;
            phases[i].bulk.push(rep);
            phases[i].bulk_wal.push(value(wal));
            phases[i].stored.push(value(stored));
        }
        // TABLES' order: minimal, same-schema raw, default, lean.
        phases[0].catch_up.push(catch_up_minimal(b).await);
        let (default, same) = w4_on(b, false).await;
        phases[1].catch_up.push(same);
        phases[2].catch_up.push(default);
        phases[3].catch_up.push(w4_on(b, true).await.0);
    }
    // (what, unit, higher is better, the phases' figures, goal default, goal lean)
    type Pick = fn(&Phases) -> &Vec<Rep>;
    let rows: [(&str, &str, bool, Pick, f64, f64); 6] = [
        ("W1 append, 1 event", "appends/s", true, |p| &p.one, 0.8, 0.9),
        ("W1 WAL per event", "bytes", false, |p| &p.one_wal, f64::NAN, f64::NAN),
        ("W5 bulk append, 1,000", "events/s", true, |p| &p.bulk, 0.7, 0.85),
        ("W5 WAL per event", "bytes", false, |p| &p.bulk_wal, 1.5, 1.25),
        ("W5 stored per event", "bytes", false, |p| &p.stored, f64::NAN, f64::NAN),
        ("W4 catch-up", "events/s", true, |p| &p.catch_up, 0.8, 0.8),
    ];
    println!();
    println!("Physical limit: the framework's schema, default (every filter indexed) and lean (only the log's own indexes), against the minimal raw table (primary key, unique event id, unique stream/version), beside the same-schema raw baseline; medians (min–max) over {} repetitions.", b.reps);
    println!();
    println!("| measure | unit | default | lean | raw, same schema | raw, minimal table | default ÷ minimal (goal) | lean ÷ minimal (goal) |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    let mut json_rows = Vec::new();
    for (name, unit, higher, pick, goal_default, goal_lean) in rows {
        let f: Vec<Figure> = phases.iter().map(|p| figure(pick(p))).collect();
        let (minimal, same, default, lean) = (&f[0], &f[1], &f[2], &f[3]);
        let cell = |ratio: f64, goal: f64| {
            if goal.is_nan() {
                format!("{ratio:.2}x")
            } else {
                let met = if higher { ratio >= goal } else { ratio <= goal };
                let op = if higher { ">=" } else { "<=" };
                format!("{ratio:.2}x ({op} {goal:.2}x{})", if met { "" } else { ", **not met**" })
            }
        };
        let (rd, rl) = (default.median / minimal.median, lean.median / minimal.median);
        println!(
            "| {name} | {unit} | {} | {} | {} | {} | {} | {} |",
            fmt_figure(default),
            fmt_figure(lean),
            fmt_figure(same),
            fmt_figure(minimal),
            cell(rd, goal_default),
            cell(rl, goal_lean)
        );
        json_rows.push(json!({
            "physical": name, "unit": unit,
            "default": round(default.median), "lean": round(lean.median),
            "raw_same_schema": round(same.median), "raw_minimal": round(minimal.median),
            "default_to_minimal": round(rd), "lean_to_minimal": round(rl),
        }));
    }
    json_rows
}
