//! Command-line interface: one binary, `whatsip`, with a subcommand per job.
use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// whatsip — SIP-to-WhatsApp gateway.
#[derive(Debug, Parser)]
#[command(name = "whatsip", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway with the SIP profiles in DIR.
    Run {
        /// Folder of SIP profile files (TOML, one profile per file).
        #[arg(long, default_value = "sip-profiles")]
        profiles: PathBuf,
    },
    /// Validate the SIP profiles in DIR and exit non-zero with one message per problem.
    Check {
        #[arg(long, default_value = "sip-profiles")]
        profiles: PathBuf,
    },
    /// Run the WhatsApp sandbox twin (Meta's SIP edge and Graph API, locally).
    Sandbox,
}
