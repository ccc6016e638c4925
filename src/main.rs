//! The `tollgate` binary: parse the command line, load the config (exit 64 when it is
//! invalid), run. Everything else lives in the library.

use std::process::ExitCode;

use clap::Parser;
use tollgate::cli::{self, Cli, Command, EXIT_BAD_CONFIG};
use tollgate::config::{load_file, Environment};

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
        Command::Explain { config, connector, allow, url } => {
            cli::explain(config.as_deref(), connector.as_deref(), &allow, &url)
        }
        Command::Serve { config } => {
            tollgate::logging::init();
            let path = config.clone();
            let config = match load_file(&config, &Environment::process()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{}: invalid configuration\n{e}", config.display());
                    return ExitCode::from(EXIT_BAD_CONFIG);
                }
            };
            let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
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

async fn serve(config: tollgate::config::Config, path: std::path::PathBuf) -> anyhow::Result<()> {
    let running = tollgate::app::start(config, tollgate::app::Deps::default()).await?;
    let _reloads = tollgate::config::reload::watch(running.shared.clone(), path);
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
