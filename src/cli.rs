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
    /// Print call records (newest first) as a table, or as JSON lines with --json.
    Cdr(CdrArgs),
}

/// `whatsip cdr` options.
#[derive(Debug, Clone, clap::Args)]
pub struct CdrArgs {
    /// Call-record database.
    #[arg(long, default_value = crate::store::DEFAULT_PATH)]
    pub db: PathBuf,
    /// At most N records.
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Only calls started since: RFC 3339 time, UTC date (2026-11-22) or age (90s, 15m, 2h, 7d).
    #[arg(long)]
    pub since: Option<String>,
    /// Only calls to or from this number (user or business; leading + optional).
    #[arg(long)]
    pub number: Option<String>,
    /// Only this direction: user_initiated or business_initiated.
    #[arg(long)]
    pub direction: Option<String>,
    /// Only calls in this state (Completed, Rejected, Failed, Accepted, …).
    #[arg(long)]
    pub state: Option<String>,
}
