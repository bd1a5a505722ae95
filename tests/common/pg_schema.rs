//! A fresh PostgreSQL schema per test, on the server at `OTPGATE_TEST_POSTGRES` (default
//! `postgres://postgres@127.0.0.1:5432/test`), dropped when its guard goes, even after a
//! failed test. Shared by the test binaries through `#[path]`.

/// The PostgreSQL server tests run against.
pub fn postgres_url() -> String {
    std::env::var("OTPGATE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

/// Drops its schema when it goes.
pub struct SchemaGuard {
    base: String,
    schema: String,
}

impl Drop for SchemaGuard {
    /// On a thread of its own with its own runtime: this may run while a panic unwinds out of
    /// the test's runtime.
    fn drop(&mut self) {
        let (base, schema) = (self.base.clone(), self.schema.clone());
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok(admin) = sqlx::PgPool::connect(&base).await {
                    let sql = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                        .execute(&admin)
                        .await;
                    admin.close().await;
                }
            });
        })
        .join();
    }
}

/// A new empty schema named `<prefix>_<random>` and the database URL that selects it; `None`
/// (the caller skips) when there is no server, except under `CI=true`, where that panics.
pub async fn fresh_schema(prefix: &str) -> Option<(String, SchemaGuard)> {
    let base = postgres_url();
    // A short timeout: without a server, the skip should be quick.
    let admin = match sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(std::time::Duration::from_secs(3))
        .connect(&base)
        .await
    {
        Ok(p) => p,
        Err(e) if std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!("skipped: no PostgreSQL at {base} ({e})");
            return None;
        }
        Err(e) => panic!("CI=true and no PostgreSQL at {base}: {e}"),
    };
    let schema = format!("{prefix}_{}", otpgate::domain::ids::random_hex(6));
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA \"{schema}\"")))
        .execute(&admin)
        .await
        .expect("create schema");
    admin.close().await;
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
    Some((url, SchemaGuard { base, schema }))
}
