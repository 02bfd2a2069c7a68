//! The `omnigate` command: parse arguments, load config, call `server::run`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use omnigate::config::{self, Loaded};
use omnigate::gateway::Gateway;

/// mimalloc instead of glibc's malloc: a request allocates a few dozen short-lived buffers and
/// maps across the serving threads, and mimalloc's per-thread free lists take fewer
/// instructions for each (measured in bench/PROFILE.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "omnigate",
    version,
    about = "REST, GraphQL and WebSocket in front of gRPC and HTTP backends"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway from a config file, or in quick mode from flags.
    Run(Source),
    /// Start the example backends in-process and the gateway in front of them.
    Demo {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
    },
    /// Check a config file (and the descriptors it names); exit 1 listing every error.
    Validate {
        #[arg(long)]
        config: PathBuf,
    },
    /// Print the route table: HTTP method, path template, target.
    Routes(Source),
    /// Print the GraphQL schema (SDL) generated from the descriptors.
    Schema(Source),
    /// Run only the example backends on fixed ports (for benchmarks and manual tests).
    #[command(hide = true)]
    Backends {
        #[arg(long, default_value = "127.0.0.1")]
        host: std::net::IpAddr,
        #[arg(long, default_value_t = 50051)]
        library_port: u16,
        #[arg(long, default_value_t = 50052)]
        authors_port: u16,
        #[arg(long, default_value_t = 5000)]
        http_port: u16,
        /// Delay every unary Library call by this many milliseconds.
        #[arg(long, default_value_t = 0)]
        library_delay_ms: u64,
        /// Delay every unary Authors call by this many milliseconds.
        #[arg(long, default_value_t = 0)]
        authors_delay_ms: u64,
        /// Threads serving all three backends (default: one per core).
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
        threads: Option<u16>,
    },
}

#[derive(Args)]
struct Source {
    /// YAML config file.
    #[arg(long, conflicts_with_all = ["grpc", "http", "descriptors"])]
    config: Option<PathBuf>,
    /// gRPC backend URL (repeatable); its API comes from server reflection unless --descriptors.
    #[arg(long, value_name = "URL")]
    grpc: Vec<String>,
    /// FileDescriptorSet file(s) describing the --grpc backend(s).
    #[arg(long, value_name = "FILE")]
    descriptors: Vec<String>,
    /// Reverse-proxy route PREFIX=URL (repeatable), e.g. /books=http://127.0.0.1:5000.
    #[arg(long, value_name = "PREFIX=URL")]
    http: Vec<String>,
    /// Address to listen on (overrides a config file's `listen`).
    #[arg(long)]
    listen: Option<String>,
}

fn main() -> ExitCode {
    omnigate::telemetry::init();
    let cli = Cli::parse();
    let mut builder = match cli.command {
        // One thread: a multi-threaded runtime with one worker would still hand every wakeup
        // between the worker and the thread that blocks on `main` (measured: 12 % more CPU
        // per gRPC call in the example backends).
        Command::Backends {
            threads: Some(1), ..
        } => tokio::runtime::Builder::new_current_thread(),
        Command::Backends {
            threads: Some(n), ..
        } => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(usize::from(n));
            builder
        }
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run(source) => {
            // `--listen` beside `--config` overrides the file's `listen`.
            let listen = match (&source.config, &source.listen) {
                (Some(_), Some(text)) => {
                    match text.parse::<SocketAddr>() {
                        Ok(addr) => Some(addr),
                        Err(e) => {
                            eprintln!("--listen {text:?}: {e} (expected an address such as 127.0.0.1:8080)");
                            return Ok(ExitCode::FAILURE);
                        }
                    }
                }
                _ => None,
            };
            let Some((mut loaded, gateway)) = load(&source).await? else {
                return Ok(ExitCode::FAILURE);
            };
            if let Some(listen) = listen {
                loaded.validated.settings.listen = listen;
            }
            serve(loaded, gateway).await
        }
        Command::Demo { listen } => demo(listen).await,
        Command::Validate { config } => {
            let source = Source {
                config: Some(config),
                grpc: vec![],
                descriptors: vec![],
                http: vec![],
                listen: None,
            };
            match load(&source).await? {
                Some((loaded, gateway)) => {
                    let snapshot = gateway.snapshot();
                    println!(
                        "{}: OK ({} gRPC upstreams, {} HTTP routes, {} REST bindings)",
                        loaded.source.file(),
                        loaded.validated.grpc.len(),
                        loaded.validated.http.len(),
                        snapshot.table.binding_count()
                    );
                    Ok(ExitCode::SUCCESS)
                }
                None => Ok(ExitCode::FAILURE),
            }
        }
        Command::Schema(source) => {
            let Some((loaded, gateway)) = load(&source).await? else {
                return Ok(ExitCode::FAILURE);
            };
            match omnigate::ingress::graphql::sdl(&gateway) {
                Ok(sdl) => {
                    print!("{sdl}");
                    Ok(ExitCode::SUCCESS)
                }
                Err(errors) => {
                    eprintln!(
                        "{}",
                        loaded.locate(&omnigate::gateway::StartError::Routes(errors))
                    );
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Routes(source) => {
            let Some((_, gateway)) = load(&source).await? else {
                return Ok(ExitCode::FAILURE);
            };
            print_routes(&gateway);
            Ok(ExitCode::SUCCESS)
        }
        Command::Backends {
            host,
            library_port,
            authors_port,
            http_port,
            library_delay_ms,
            authors_delay_ms,
            threads: _,
        } => {
            let addrs = omnigate::demo::BackendAddrs {
                library: SocketAddr::new(host, library_port),
                authors: SocketAddr::new(host, authors_port),
                http: SocketAddr::new(host, http_port),
            };
            let backends = omnigate::demo::start_at(addrs).await?;
            let delay = std::time::Duration::from_millis;
            backends.library_backend.set_delay(delay(library_delay_ms));
            backends.authors_backend.set_delay(delay(authors_delay_ms));
            println!("library gRPC  http://{}", backends.library);
            println!("authors gRPC  http://{}", backends.authors);
            println!("reviews HTTP  http://{}", backends.http);
            shutdown_signal().await;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Load and validate the config and start the gateway; `None` after printing every error.
async fn load(source: &Source) -> anyhow::Result<Option<(Loaded, std::sync::Arc<Gateway>)>> {
    let checked = match &source.config {
        Some(path) => config::check_file(path),
        None => {
            let quick = config::quick::config(
                &source.grpc,
                &source.descriptors,
                &source.http,
                source.listen.as_deref(),
            )
            .map_err(anyhow::Error::msg)?;
            config::check_config(&quick, "<command line>")
        }
    };
    match Gateway::start_checked(checked).await {
        Ok((loaded, gateway)) => match omnigate::ingress::graphql::check(&gateway) {
            Ok(()) => Ok(Some((loaded, gateway))),
            Err(errors) => {
                let errors = omnigate::gateway::StartError::Routes(errors);
                eprintln!("{}", loaded.locate(&errors));
                Ok(None)
            }
        },
        Err(errors) => {
            eprintln!("{errors}");
            Ok(None)
        }
    }
}

async fn serve(loaded: Loaded, gateway: std::sync::Arc<Gateway>) -> anyhow::Result<ExitCode> {
    let listen = loaded.validated.settings.listen;
    // One listener and one single-threaded runtime per core (see `server::run_per_core`).
    let listeners =
        omnigate::server::bind_per_core(listen).with_context(|| format!("binding {listen}"))?;
    let address = listeners
        .first()
        .and_then(|l| l.local_addr().ok())
        .unwrap_or(listen);
    tracing::info!(%address, bindings = gateway.snapshot().table.binding_count(), "omnigate is listening.");
    omnigate::server::run_per_core(listeners, gateway, shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

fn print_routes(gateway: &Gateway) {
    let snapshot = gateway.snapshot();
    let lines = snapshot.table.lines();
    let width = lines.iter().map(|l| l.path.len()).max().unwrap_or(0);
    for line in lines {
        println!("{:<7} {:<width$}  {}", line.method, line.path, line.target);
    }
}

async fn demo(listen: SocketAddr) -> anyhow::Result<ExitCode> {
    let backends = omnigate::demo::start()
        .await
        .context("starting the example backends")?;
    let config = omnigate::demo::gateway_config(&backends, listen);
    let (_, gateway) = Gateway::start_checked(config::check_config(&config, "<demo>"))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    // The bound address, so `--listen 127.0.0.1:0` prints curl lines that work.
    let address = listener.local_addr().unwrap_or(listen);
    println!("{}", omnigate::demo::banner(address));
    omnigate::server::run(listener, gateway, shutdown_signal()).await?;
    drop(backends);
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    // nginx users send SIGHUP to reload: here it would end the process at once (the default
    // action) and cut every request in flight. There is no reload, so it is logged and the
    // gateway goes on serving.
    #[cfg(unix)]
    let hangup = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(mut signal) => loop {
                signal.recv().await;
                tracing::warn!("SIGHUP: omnigate does not reload its config; restart it to apply a new one. Still serving.");
            },
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let hangup = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
        () = hangup => {}
    }
}
