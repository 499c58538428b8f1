#[tokio::main]
async fn main() -> anyhow::Result<()> {
    server::telemetry::init();
    server::cli::main().await
}
