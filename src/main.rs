use clap::Parser;
use whatsip::cli::{Cli, Command};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { .. } | Command::Check { .. } | Command::Sandbox => {
            eprintln!("not built yet");
            std::process::ExitCode::from(2)
        }
        Command::Cdr(args) => whatsip::store::cdr::main(&args),
    }
}
