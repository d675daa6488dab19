use clap::Parser;
use std::process::ExitCode;
use whatsip::cli::{Cli, Command};
use whatsip::config;

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
                eprintln!("{}", cfg.summary());
                eprintln!("the gateway runtime is not wired yet");
                ExitCode::from(2)
            }
            Err(code) => code,
        },
        Command::Sandbox => {
            eprintln!("not built yet");
            ExitCode::from(2)
        }
        Command::Cdr(args) => whatsip::store::cdr::main(&args),
    }
}
