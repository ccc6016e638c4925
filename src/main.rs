//! The `tollgate` binary: parse the command line, load the config (exit 64 when it is
//! invalid), run. Everything else lives in the library.

use std::process::ExitCode;

use clap::Parser;
use tollgate::cli::{self, Cli, Command, EXIT_BAD_CONFIG};
use tollgate::config::{load_file, Environment};

/// mimalloc: the request path allocates many small, short-lived values (header maps, URLs,
/// records), which it serves faster than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { file } => cli::check_config(&file),
        Command::Ca { command: cli::CaCommand::Export { config } } => {
            match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt.block_on(cli::ca_export(&config)),
                Err(_) => ExitCode::FAILURE,
            }
        }
        Command::Keys { command } => match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt.block_on(async {
                match command {
                    cli::KeysCommand::Status { config } => cli::keys::status(&config).await,
                    cli::KeysCommand::Rewrap { config, batch } => cli::keys::rewrap(&config, batch).await,
                }
            }),
            Err(_) => ExitCode::FAILURE,
        },
        Command::Explain { config, connector, allow, url } => {
            cli::explain(config.as_deref(), connector.as_deref(), &allow, &url)
        }
        Command::Serve { config } => {
            let _logs = tollgate::logging::init();
            let path = config.clone();
            let config = match load_file(&config, &Environment::process()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{}: invalid configuration\n{e}", config.display());
                    return ExitCode::from(EXIT_BAD_CONFIG);
                }
            };
            let runtime = match runtime() {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(serve(config, path)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("tollgate: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// The scheduler for `serve`: with one core (or `TOKIO_WORKER_THREADS=1`) a single-threaded
/// one, which skips the cross-thread wake-ups and queues of the work-stealing scheduler;
/// otherwise one worker per core (or per `TOKIO_WORKER_THREADS`).
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let workers = std::env::var("TOKIO_WORKER_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
        .unwrap_or(1);
    if workers == 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(workers).enable_all().build()
    }
}

async fn serve(config: tollgate::config::Config, path: std::path::PathBuf) -> anyhow::Result<()> {
    let running = tollgate::app::start(config, tollgate::app::Deps::default()).await?;
    let _reloads = tollgate::live::reload::watch(running.shared.clone(), path);
    wait_for_signal().await;
    tracing::info!("shutting down");
    running.shutdown().await;
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
