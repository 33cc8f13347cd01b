//! Applying `schema/scylla/*.cql`: on start by `parley serve`, and by `parley migrate`.
//!
//! Idempotent (every statement is `IF NOT EXISTS`), with the version kept in
//! `schema_version`. Several nodes may migrate at the same moment: after each DDL statement
//! the driver waits for schema agreement, so that no node prepares statements against a table
//! that some replica does not know yet.

use super::cql;
use super::ScyllaUrl;
use ::scylla::client::session::Session;
use ::scylla::client::session_builder::SessionBuilder;
use ::scylla::response::query_result::QueryResult;

/// The schema files as single statements, with the keyspace and replication filled in.
pub fn schema_statements(text: &str, keyspace: &str, rf: u32) -> Vec<String> {
    let text: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    text.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.replace("{keyspace}", keyspace)
                .replace("{rf}", &rf.to_string())
        })
        .collect()
}

async fn version(session: &Session, keyspace: &str) -> i32 {
    let version_of = |res: QueryResult| -> Option<i32> {
        res.into_rows_result()
            .ok()?
            .maybe_first_row::<(Option<i32>,)>()
            .ok()?
            .and_then(|r| r.0)
    };
    session
        .query_unpaged(
            format!("SELECT version FROM {keyspace}.schema_version WHERE id = 'schema'"),
            (),
        )
        .await
        .ok()
        .and_then(version_of)
        .unwrap_or(0)
}

/// Applies what is pending; returns the version before and after.
pub(super) async fn migrate_session(
    session: &Session,
    keyspace: &str,
    rf: u32,
) -> Result<(i32, i32), String> {
    let before = version(session, keyspace).await;
    let mut after = before;
    for (v, text) in cql::SCHEMA {
        if *v <= before {
            continue;
        }
        for stmt in schema_statements(text, keyspace, rf) {
            if let Err(e) = session.query_unpaged(stmt.clone(), ()).await {
                // CQL has no ALTER ... ADD IF NOT EXISTS: a column another node added
                // first is what this statement wanted.
                let done =
                    stmt.starts_with("ALTER TABLE") && e.to_string().contains("already exist");
                if !done {
                    return Err(format!("scylla migration {v}: {e}\n{stmt}"));
                }
            }

            session
                .await_schema_agreement()
                .await
                .map_err(|e| format!("scylla migration {v}: no schema agreement: {e}"))?;
        }
        session
            .query_unpaged(
                format!("INSERT INTO {keyspace}.schema_version (id, version) VALUES ('schema', ?)"),
                (*v,),
            )
            .await
            .map_err(|e| format!("scylla migration {v}: {e}"))?;
        after = *v;
    }
    Ok((before, after))
}

/// `parley migrate --store scylla://...`: applies the schema without starting a node.
pub async fn migrate(url: &str, rf: u32) -> Result<(i32, i32), String> {
    let u = ScyllaUrl::parse(url)?;
    let session = SessionBuilder::new()
        .known_nodes(&u.nodes)
        .build()
        .await
        .map_err(|e| format!("scylla {}: {e}", u.nodes.join(",")))?;
    migrate_session(&session, &u.keyspace, rf).await
}
