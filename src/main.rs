use clap::Parser;
use std::process::ExitCode;
use whatsip::cli::{Cli, Command, PermissionsCommand, SettingsCommand};
use whatsip::config;
use whatsip::whatsapp::graph::commands;

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn block_on<F: std::future::Future<Output = i32>>(f: F) -> ExitCode {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => ExitCode::from(rt.block_on(f).clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::from(1)
        }
    }
}

/// Resolves on SIGINT or SIGTERM (SIGINT only where SIGTERM does not exist).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                eprintln!("warning: cannot watch SIGTERM ({e}); only SIGINT stops the gateway");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { profiles } => match config::load_or_report(&profiles) {
            Ok(cfg) => {
                println!("{}", cfg.summary());
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Run { profiles } => match config::load_or_report(&profiles) {
            Ok(cfg) => {
                init_tracing();
                eprintln!("{}", cfg.summary());
                block_on(async move {
                    match whatsip::gateway::run(cfg, shutdown_signal()).await {
                        Ok(()) => 0,
                        Err(e) => {
                            eprintln!("error: {e}");
                            1
                        }
                    }
                })
            }
            Err(code) => code,
        },
        Command::Sandbox(args) => {
            init_tracing();
            let algorithm = match args.digest_algorithm.to_ascii_lowercase().as_str() {
                "sha-256" | "sha256" => whatsip::sip::auth::Algorithm::Sha256,
                "md5" => whatsip::sip::auth::Algorithm::Md5,
                other => {
                    eprintln!("error: --digest-algorithm {other:?}: use sha-256 or md5");
                    return ExitCode::from(2);
                }
            };
            let route_style = match args.record_route.as_str() {
                "meta" => whatsip::sandbox::edge::RouteStyle::Meta,
                // port 0: the edge's own address once bound
                "loopback" => whatsip::sandbox::edge::RouteStyle::Loopback(
                    std::net::SocketAddr::new(args.edge.ip(), 0),
                ),
                other => {
                    eprintln!("error: --record-route {other:?}: use meta or loopback");
                    return ExitCode::from(2);
                }
            };
            let config = whatsip::sandbox::runtime::RuntimeConfig {
                edge: args.edge,
                ca_dir: args.ca_dir.clone(),
                seed: args.seed,
                edge_config: whatsip::sandbox::edge::EdgeConfig {
                    algorithm,
                    route_style,
                },
                hosts: std::collections::HashMap::from([(
                    args.gateway_host.to_ascii_lowercase(),
                    args.gateway_ip,
                )]),
                unanswered_timeout: std::time::Duration::from_secs(args.unanswered_timeout_s),
                extra_roots_pem: None,
                rtp_ports: args.rtp_ports.clone(),
                ..Default::default()
            };
            let state = whatsip::sandbox::SandboxState::new(whatsip::sandbox::SandboxOptions {
                seed: args.seed,
                gateway_host: args.gateway_host,
                gateway_port: args.gateway_port,
                token: args.token,
                ..Default::default()
            });
            block_on(async move {
                match whatsip::sandbox::start(args.http, config, state).await {
                    Ok(running) => {
                        println!(
                            "sandbox SIP edge on {} (TLS, wa.meta.vc; CA {}), HTTP (Graph twin + control) on http://{}",
                            running.edge.edge_addr,
                            running.edge.ca_path.display(),
                            running.http_addr
                        );
                        let _ = tokio::signal::ctrl_c().await;
                        0
                    }
                    Err(e) => {
                        eprintln!("error: sandbox: {e}");
                        1
                    }
                }
            })
        }
        Command::Settings { command } => {
            init_tracing();
            block_on(async move {
                match *command {
                    SettingsCommand::Pull {
                        number,
                        graph,
                        password_file,
                        show_password,
                        json,
                    } => {
                        commands::settings_pull(
                            &number,
                            &graph,
                            password_file.as_deref(),
                            show_password,
                            json,
                        )
                        .await
                    }
                    SettingsCommand::Push {
                        number,
                        graph,
                        body,
                        dry_run,
                        no_validate,
                    } => {
                        commands::settings_push(&number, &graph, &body, dry_run, no_validate).await
                    }
                    SettingsCommand::Check {
                        number,
                        graph,
                        local,
                    } => commands::settings_check(number.as_deref(), &graph, &local).await,
                }
            })
        }
        Command::Permissions { command } => {
            init_tracing();
            block_on(async move {
                match *command {
                    PermissionsCommand::Check {
                        user,
                        number,
                        graph,
                        json,
                    } => commands::permissions_check(&user, number.as_deref(), &graph, json).await,
                    PermissionsCommand::Request {
                        user,
                        number,
                        graph,
                        body,
                    } => {
                        commands::permissions_request(&user, number.as_deref(), &graph, &body).await
                    }
                }
            })
        }
        Command::Cdr(args) => whatsip::store::cdr::main(&args),
    }
}
