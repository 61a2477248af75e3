//! The example backend as a process: `SYNC_CONFIG` names the sync's configuration, `BACKEND_DATABASE_URL` the
//! backend's own database (default `sqlite://backend.db`), `BACKEND_BIND` the address (default 127.0.0.1:8090).

#![allow(clippy::print_stdout)]

use std::collections::HashMap;

use anyhow::Context;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let env: HashMap<String, String> = std::env::vars().collect();
    let path = env
        .get("SYNC_CONFIG")
        .context("set SYNC_CONFIG to the sync's configuration file")?;
    let config = integration_config::IntegrationConfig::load(std::path::Path::new(path), &env)?;
    let database = env
        .get("BACKEND_DATABASE_URL")
        .cloned()
        .unwrap_or_else(|| "sqlite://backend.db".to_owned());
    let backend = example_backend::Backend::new(config, &database, example_backend::BackendOptions::default()).await?;
    let _tasks = backend.spawn_background();
    let bind = env
        .get("BACKEND_BIND")
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:8090".to_owned());
    let listener = tokio::net::TcpListener::bind(&bind).await?;
    println!("example backend on http://{bind}/ (dashboard under /admin/integration)");
    axum::serve(listener, backend.router()?).await?;
    Ok(())
}
