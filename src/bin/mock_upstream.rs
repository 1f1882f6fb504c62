//! `customs-mock-upstream`: the mock model server (OpenAI and Anthropic APIs) as a standalone
//! process.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use customs::mock::{MockOptions, MockUpstream};

/// A mock model server: OpenAI's chat, completions, embeddings, models and Responses (kept for
/// retrieval by id), and Anthropic's Messages; SSE streaming and fault injection by header.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: SocketAddr,
    /// Name sent back in `x-mock-upstream`.
    #[arg(long, default_value = "mock")]
    name: String,
    /// Upstream key the mock accepts (repeatable); none accepts any request.
    #[arg(long = "api-key")]
    api_keys: Vec<String>,
    /// Content chunks per streamed response.
    #[arg(long, default_value_t = 5)]
    chunks: usize,
    /// Delay between streamed chunks, e.g. `20ms`.
    #[arg(long, value_parser = humantime_serde::re::humantime::parse_duration, default_value = "0s")]
    chunk_delay: Duration,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let opts = MockOptions {
        name: args.name,
        api_keys: args.api_keys,
        chunks: args.chunks,
        chunk_delay: args.chunk_delay,
        record: false,
        tls: None,
    };
    let mock = MockUpstream::start(args.listen, opts).await?;
    let mut out = std::io::stdout();
    writeln!(out, "customs-mock-upstream listening on http://{}", mock.addr)?;
    out.flush()?;
    tokio::signal::ctrl_c().await?;
    mock.stop().await;
    Ok(())
}
