//! Throwaway PostgreSQL databases for tests and benchmarks: each gets a database of its own on
//! the server `FOREWARN_TEST_POSTGRES_URL` names, dropped when it is done. `forewarn run` never
//! uses this.

/// A database of its own, dropped with this value (connections still open to it are ended).
#[derive(Debug)]
pub struct ScratchDatabase {
    server: String,
    name: String,
}

impl ScratchDatabase {
    /// The server scratch databases are made on: `FOREWARN_TEST_POSTGRES_URL`, by default the
    /// local one as user `postgres`.
    pub fn server_url() -> String {
        std::env::var("FOREWARN_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
    }

    /// Creates an empty database on [`Self::server_url`]; the error says what to fix.
    pub async fn create() -> Result<Self, String> {
        Self::create_from(None).await
    }

    /// A copy of this database, made by the server (`CREATE DATABASE … TEMPLATE`): a populated
    /// directory once, then a fresh copy per run. Nothing may be connected to this one.
    pub async fn copy(&self) -> Result<Self, String> {
        Self::create_from(Some(&self.name)).await
    }

    async fn create_from(template: Option<&str>) -> Result<Self, String> {
        let server = Self::server_url();
        let name = format!(
            "forewarn_test_{}_{:08x}",
            std::process::id(),
            fastrand::u32(..)
        );
        let template = template.map_or(String::new(), |t| format!(" TEMPLATE {t}"));
        let admin = sqlx::PgPool::connect(&server).await.map_err(|e| {
            format!(
                "PostgreSQL at {server} (FOREWARN_TEST_POSTGRES_URL) cannot be reached: {e}. \
                 `.ci/run` starts one; or point the variable at a server where this user may \
                 create databases."
            )
        })?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE DATABASE {name}{template}"
        )))
        .execute(&admin)
        .await
        .map_err(|e| format!("cannot create a test database on {server}: {e}"))?;
        admin.close().await;
        Ok(Self { server, name })
    }

    /// The URL of this database (the server's, naming this database).
    pub fn url(&self) -> String {
        let server = self.server.as_str();
        let (base, query) = server
            .split_once('?')
            .map_or((server, String::new()), |(b, q)| (b, format!("?{q}")));
        let (host, _) = base
            .rsplit_once('/')
            .filter(|(host, _)| host.contains("//"))
            .unwrap_or((base, ""));
        format!("{host}/{}{query}", self.name)
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        // Drop may run inside an async runtime, which cannot block on itself: a thread of its
        // own drops the database.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(sqlx::Error::Io)?;
            runtime.block_on(async {
                let admin = sqlx::PgPool::connect(&server).await?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&admin)
                .await
                .map(|_| ())
            })
        })
        .join();
        if let Ok(Err(e)) = dropped {
            eprintln!("could not drop test database {}: {e}", self.name);
        }
    }
}
