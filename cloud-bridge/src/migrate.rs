//! HQ's schema: versioned migrations, applied in order under an advisory lock and recorded in
//! `schema_migrations`.

use crate::{BridgeError, Client};

/// The migrations, in order. A database records the versions it has in `schema_migrations`.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "schema", include_str!("../migrations/0001_schema.sql")),
    (2, "origin", include_str!("../migrations/0002_origin.sql")),
    (3, "steward", include_str!("../migrations/0003_steward.sql")),
];

/// Apply the migrations this database lacks, each in its own transaction, under an advisory
/// lock (two bridges starting together do not race). Returns the versions applied.
pub async fn migrate(client: &mut Client) -> Result<Vec<i32>, BridgeError> {
    client
        .batch_execute(
            "SELECT pg_advisory_lock(7201); \
             CREATE TABLE IF NOT EXISTS schema_migrations ( \
                 version integer PRIMARY KEY, name text NOT NULL, \
                 applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await?;
    let mut applied = Vec::new();
    let result = async {
        for (version, name, sql) in MIGRATIONS {
            let have = client
                .query_opt(
                    "SELECT 1 FROM schema_migrations WHERE version = $1",
                    &[version],
                )
                .await?;
            if have.is_some() {
                continue;
            }
            let tx = client.transaction().await?;
            tx.batch_execute(sql).await?;
            tx.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                &[version, name],
            )
            .await?;
            tx.commit().await?;
            applied.push(*version);
        }
        Ok::<_, tokio_postgres::Error>(())
    }
    .await;
    client
        .batch_execute("SELECT pg_advisory_unlock(7201)")
        .await?;
    Ok(result.map(|_| applied)?)
}
