//! `factum migrate`: apply the embedded migrations, show their status, or write them out.

use std::path::PathBuf;

use clap::Args;
use factum_postgres::{create_roles, migrations, Roles};
use serde_json::json;

use crate::connect::Database;
use crate::error::CliError;
use crate::output::{self, Table};

#[derive(Args, Debug)]
pub(crate) struct MigrateArgs {
    /// Show applied and pending migrations; apply nothing.
    #[arg(long, conflicts_with_all = ["print_sql", "out"])]
    status: bool,
    /// Print every migration as plain SQL with the configured names filled in, for teams
    /// that apply SQL with their own tool; needs no database.
    #[arg(long, conflicts_with = "out")]
    print_sql: bool,
    /// Write each migration to DIR as NNNN_name.sql (see --print-sql); needs no database.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// After migrating, create the owner and runtime roles (if missing) and grant the
    /// runtime role what the service needs, as OWNER,RUNTIME (e.g. factum_owner,factum_app).
    /// Needs a role that may create roles.
    #[arg(long, value_name = "OWNER,RUNTIME")]
    create_roles: Option<String>,
    /// After migrating, grant ROLE what the service needs at run time (least privilege).
    #[arg(long, value_name = "ROLE", conflicts_with = "create_roles")]
    grant_to: Option<String>,
}

pub(crate) async fn run(db: &Database, args: MigrateArgs, json: bool) -> Result<(), CliError> {
    if args.print_sql || args.out.is_some() {
        return write_sql(db, &args);
    }
    let store = db.connect().await?;
    if args.status {
        let status = store.migrations().await?;
        if json {
            for m in &status {
                output::json_line(&json!({
                    "version": m.version,
                    "description": m.description,
                    "applied_at": m.applied_at,
                }))?;
            }
            return Ok(());
        }
        let mut table = Table::new(&["VERSION", "DESCRIPTION", "APPLIED"]);
        for m in &status {
            let applied = m.applied_at.map_or_else(|| "pending".to_owned(), |t| t.to_rfc3339());
            table.row(vec![m.version.to_string(), m.description.to_owned(), applied]);
        }
        return table.print();
    }
    // Roles first, so that a database set up in one go has them before its tables.
    let created = match &args.create_roles {
        Some(pair) => {
            let (owner, runtime) = pair.split_once(',').ok_or_else(|| {
                CliError::Usage(format!(
                    "--create-roles takes OWNER,RUNTIME (e.g. factum_owner,factum_app), not {pair:?}"
                ))
            })?;
            let roles = Roles::new(owner.trim(), runtime.trim());
            let mut conn = store.pool().acquire().await?;
            create_roles(&mut conn, store.names(), &roles).await?;
            Some(roles.runtime)
        }
        None => None,
    };
    let applied = store.migrate().await?;
    let version =
        store.migrations().await?.iter().filter(|m| m.applied_at.is_some()).map(|m| m.version).max();
    let version = version.unwrap_or(0);
    let roles = created.or_else(|| args.grant_to.clone());
    if let Some(role) = &roles {
        store.grant_runtime(role).await?;
    }
    if json {
        return output::json_line(&json!({ "applied": applied, "version": version, "granted_to": roles }));
    }
    let mut text = if applied.is_empty() {
        format!("nothing to apply: the schema is at version {version}\n")
    } else {
        let list: Vec<String> = applied.iter().map(i32::to_string).collect();
        format!("applied migration(s) {}: the schema is at version {version}\n", list.join(", "))
    };
    if let Some(role) = roles {
        text.push_str(&format!("granted the runtime privileges to {role}\n"));
    }
    output::print(&text)
}

fn write_sql(db: &Database, args: &MigrateArgs) -> Result<(), CliError> {
    let names = db.names()?;
    let mut scripts: Vec<(String, String)> = migrations(&names)
        .iter()
        .map(|m| {
            let slug: String =
                m.description.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
            (format!("{:04}_{slug}.sql", m.version), m.script(&names))
        })
        .collect();
    if let Some(role) = &args.grant_to {
        let sql = Roles::new("owner_unused", role.as_str()).grant_sql(&names)?;
        scripts.push(("9999_grant_runtime.sql".into(), sql));
    }
    match &args.out {
        Some(dir) => {
            let io = |what: String| move |source| CliError::Io { what, source };
            std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
            for (file, sql) in &scripts {
                let path = dir.join(file);
                std::fs::write(&path, sql).map_err(io(format!("writing {}", path.display())))?;
            }
            output::print(&format!("wrote {} file(s) to {}\n", scripts.len(), dir.display()))
        }
        None => output::print(&scripts.iter().map(|(_, sql)| sql.as_str()).collect::<Vec<_>>().join("\n")),
    }
}
