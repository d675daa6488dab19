//! Command-line interface: one binary, `whatsip`, with a subcommand per job.
use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
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
    Sandbox(SandboxArgs),
    /// A business number's calling settings at Meta (SIP server, password, call hours).
    Settings {
        #[command(subcommand)]
        command: Box<SettingsCommand>,
    },
    /// WhatsApp users' call permissions toward a business number.
    Permissions {
        #[command(subcommand)]
        command: Box<PermissionsCommand>,
    },
    /// Print call records (newest first) as a table, or as JSON lines with --json.
    Cdr(CdrArgs),
}

#[derive(Debug, Clone, Args)]
pub struct SandboxArgs {
    /// Address of the sandbox HTTP server (Graph twin + control API).
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub http: SocketAddr,
    /// Seed for the generated SIP passwords (deterministic when given).
    #[arg(long)]
    pub seed: Option<u64>,
    /// The gateway's public host: the fixture number's SIP server hostname.
    #[arg(long, default_value = "gateway.whatsip.test")]
    pub gateway_host: String,
    /// The fixture number's SIP server port.
    #[arg(long, default_value_t = 5061)]
    pub gateway_port: u16,
    /// Bearer token the Graph twin accepts.
    #[arg(long, default_value = "sandbox")]
    pub token: String,
    /// Address of the SIP edge (TLS, presents `wa.meta.vc`).
    #[arg(long, default_value = "127.0.0.1:5062")]
    pub edge: SocketAddr,
    /// Folder of the sandbox CA (`ca.pem`, `ca.key`).
    #[arg(long, default_value = "var/sandbox")]
    pub ca_dir: PathBuf,
    /// Digest algorithm of the edge's 407 challenge: sha-256 or md5.
    #[arg(long, default_value = "sha-256")]
    pub digest_algorithm: String,
    /// Record-Route style: `meta` (Meta's exact host names) or `loopback` (the edge's address).
    #[arg(long, default_value = "meta")]
    pub record_route: String,
    /// Where user-initiated calls connect for the gateway host (`--gateway-host`).
    #[arg(long, default_value = "127.0.0.1")]
    pub gateway_ip: std::net::IpAddr,
    /// Give up (CANCEL) on user-initiated calls not answered within this many seconds.
    #[arg(long, default_value_t = 60)]
    pub unanswered_timeout_s: u64,
    /// RTP ports of the sandbox users, `START-END` (even ports taken in turn; with `--seed`
    /// the SDP is then byte-identical across runs). Default: any free port.
    #[arg(long, value_parser = parse_port_range)]
    pub rtp_ports: Option<std::ops::RangeInclusive<u16>>,
}

/// `START-END` with `START <= END`.
fn parse_port_range(s: &str) -> Result<std::ops::RangeInclusive<u16>, String> {
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| format!("{s:?}: expected START-END"))?;
    let (a, b): (u16, u16) = (
        a.trim().parse().map_err(|e| format!("{a:?}: {e}"))?,
        b.trim().parse().map_err(|e| format!("{b:?}: {e}"))?,
    );
    if a == 0 || a > b {
        return Err(format!("{s:?}: need 0 < START <= END"));
    }
    Ok(a..=b)
}

/// Where the Graph API is and how to talk to it. Without `--phone-number-id`, the number
/// and every default below come from the whatsapp profile serving it (`--profiles`); flags
/// given explicitly override the profile.
#[derive(Debug, Clone, Args, Default)]
pub struct GraphArgs {
    /// Folder of SIP profiles to read the number, Graph settings and token from.
    #[arg(long)]
    pub profiles: Option<PathBuf>,
    /// Graph API base URL [default https://graph.facebook.com; the sandbox: http://127.0.0.1:8081].
    #[arg(long)]
    pub graph_url: Option<String>,
    /// Graph API version path segment [default v23.0].
    #[arg(long)]
    pub api_version: Option<String>,
    /// Environment variable holding the bearer token [default WHATSAPP_TOKEN].
    #[arg(long)]
    pub token_env: Option<String>,
    /// File holding the bearer token (instead of --token-env).
    #[arg(long, conflicts_with = "token_env")]
    pub token_file: Option<PathBuf>,
    /// The business number's phone_number_id (skips the profiles).
    #[arg(long)]
    pub phone_number_id: Option<String>,
    /// Per-request timeout in seconds [default 10].
    #[arg(long)]
    pub timeout_s: Option<u64>,
    /// Retries on HTTP 5xx and rate limits (613, 138005) [default 2].
    #[arg(long)]
    pub retries: Option<u32>,
    /// First backoff delay in milliseconds (doubles per retry, capped at 10 s).
    #[arg(long, default_value_t = 500)]
    pub retry_base_ms: u64,
}

#[derive(Debug, Subcommand)]
pub enum SettingsCommand {
    /// GET the calling settings (with SIP credentials), show them, store the SIP password.
    Pull {
        /// Business number, E.164 (+15550001111).
        number: String,
        #[command(flatten)]
        graph: GraphArgs,
        /// Where to store the SIP password (mode 0600). Default var/secrets/<digits>.sip.
        #[arg(long)]
        password_file: Option<PathBuf>,
        /// Also print the SIP password.
        #[arg(long)]
        show_password: bool,
        /// Print the settings as JSON (password removed unless --show-password).
        #[arg(long)]
        json: bool,
    },
    /// Build the calling settings, validate them, show the diff against Meta, POST them.
    Push {
        number: String,
        #[command(flatten)]
        graph: GraphArgs,
        #[command(flatten)]
        body: SettingsBodyArgs,
        /// Validate and show the diff and body, but do not POST.
        #[arg(long)]
        dry_run: bool,
        /// Skip local validation (Meta still validates).
        #[arg(long)]
        no_validate: bool,
    },
    /// Diagnose "no INVITE arrives": Meta's SIP settings vs this gateway.
    Check {
        /// Business number (E.164); optional when the profiles serve one number.
        number: Option<String>,
        #[command(flatten)]
        graph: GraphArgs,
        #[command(flatten)]
        local: LocalSipArgs,
    },
}

/// The calling settings to push.
#[derive(Debug, Clone, Args, Default)]
pub struct SettingsBodyArgs {
    /// A JSON file with the `calling` object (or `{"calling": {...}}`); flags override it.
    #[arg(long)]
    pub body: Option<PathBuf>,
    /// calling.status: ENABLED | DISABLED.
    #[arg(long)]
    pub status: Option<String>,
    /// DEFAULT | DISABLE_ALL.
    #[arg(long)]
    pub call_icon_visibility: Option<String>,
    /// ENABLED | DISABLED.
    #[arg(long)]
    pub callback_permission_status: Option<String>,
    /// A JSON file with the `call_hours` object.
    #[arg(long)]
    pub call_hours: Option<PathBuf>,
    /// calling.sip.status: ENABLED | DISABLED (default ENABLED when --sip-host is given).
    #[arg(long)]
    pub sip_status: Option<String>,
    /// The SIP server hostname Meta sends INVITEs to (our public host).
    #[arg(long)]
    pub sip_host: Option<String>,
    /// The SIP server port (default 5061).
    #[arg(long)]
    pub sip_port: Option<u16>,
    /// request_uri_user_params entry KEY=VALUE (repeatable).
    #[arg(long = "sip-param")]
    pub sip_params: Vec<String>,
    /// srtp_key_exchange_protocol: SDES | DTLS.
    #[arg(long)]
    pub srtp_key_exchange: Option<String>,
    /// audio.additional_codecs entry: PCMA | PCMU (repeatable).
    #[arg(long = "codec")]
    pub codecs: Vec<String>,
    /// Send audio.additional_codecs = [] (remove G.711).
    #[arg(long, conflicts_with = "codecs")]
    pub no_codecs: bool,
}

/// This gateway's side, for `settings check`.
#[derive(Debug, Clone, Args, Default)]
pub struct LocalSipArgs {
    /// Our public host (what Meta's hostname should be).
    #[arg(long)]
    pub public_host: Option<String>,
    /// Our public port (what Meta's port should be) [default 5061].
    #[arg(long)]
    pub public_port: Option<u16>,
    /// Our TLS listen address.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Our TLS certificate chain (PEM) presented to Meta.
    #[arg(long)]
    pub cert: Option<PathBuf>,
    /// Our media mode toward Meta: SDES | DTLS.
    #[arg(long)]
    pub media: Option<String>,
    /// Where the SIP password is stored. Default var/secrets/<digits>.sip.
    #[arg(long)]
    pub password_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum PermissionsCommand {
    /// Show a user's call permission: status, expiry, per-action limits.
    Check {
        /// The user: E.164 (+15551234567) or BSUID (US.1349…).
        user: String,
        /// The business number (E.164) when the profiles serve several.
        #[arg(long)]
        number: Option<String>,
        #[command(flatten)]
        graph: GraphArgs,
        #[arg(long)]
        json: bool,
    },
    /// Send the user an interactive call_permission_request message.
    Request {
        user: String,
        /// The business number (E.164) when the profiles serve several.
        #[arg(long)]
        number: Option<String>,
        #[command(flatten)]
        graph: GraphArgs,
        /// Message body text.
        #[arg(long, default_value = "We would like to call you on WhatsApp. May we?")]
        body: String,
    },
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

#[cfg(test)]
mod tests {
    use super::parse_port_range;

    #[test]
    fn port_ranges() {
        assert_eq!(parse_port_range("42000-42999"), Ok(42000..=42999));
        assert!(parse_port_range("42999-42000").is_err());
        assert!(parse_port_range("0-10").is_err());
        assert!(parse_port_range("42000").is_err());
        assert!(parse_port_range("a-b").is_err());
    }
}
